/*
 * cache.c — the kernel cache: in memory, then on disk, then the compiler.
 *
 * A kernel is found by a 128-bit key, MurmurHash3 (x64, 128-bit) of the
 * compiler identity (jit_identity: compiler binary, flags, CPU, tensorc's
 * version and kernel ABI) and the generated C source — which is a canonical
 * form of the program: emit_c names everything from counters in program
 * order, never from pointers.
 *
 * Memory: a hash table from key to the loaded kernel (dlopen handle and
 * tc_kernel), under a mutex.  A key being built is in the table as a
 * placeholder; other threads asking for it wait on a condition variable
 * instead of compiling it a second time.
 *
 * Disk: `<dir>/<hex key>.so`, the shared object followed by a 32-byte
 * trailer (little-endian):
 *
 *   0  "TCK1"    magic
 *   4  uint32    payload length (the file's size minus 32)
 *   8  uint64    checksum of the payload (MurmurHash3, another seed)
 *   16 uint64[2] the key
 *
 * ELF loaders ignore trailing bytes, but we never dlopen the entry file
 * anyway.  Loading reads the whole file, verifies the trailer (magic, length,
 * checksum, key: a truncated, torn, corrupted or misnamed file fails), and
 * then dlopens a private copy of exactly the bytes it verified, in a mode
 * 0700 directory of our own: another process replacing the entry between
 * the check and the dlopen cannot slip other bytes in (no TOCTOU).  We chose
 * a private file over memfd_create + /proc/self/fd/N because glibc's dlopen
 * recognises already-loaded objects by name, and fd numbers are reused;
 * private names hold the key, the pid and a counter, so they never repeat.
 * A bad entry is unlinked and rebuilt.
 *
 * Storing: the kernel is compiled in the private directory and loaded from
 * there; then its bytes plus the trailer are written to
 * `<dir>/tmp-<pid>-XXXXXX.so`, fsync'ed and renamed to `<hex>.so`.  rename
 * is atomic, so other processes see either no entry or a complete one;
 * processes racing on one key all succeed (the last rename wins, each loaded
 * its own copy).  Temp files older than an hour (their writer died) are
 * swept on a Cache's first store.  If the directory cannot be created or
 * written, the cache keeps working without it (memory only); a read-only
 * directory is still read.
 */
#include "tc.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TRAILER 32
#define MAX_ENTRY (1u << 30)

typedef struct Key {
  uint64_t h[2];
} Key;

typedef struct Entry Entry;
struct Entry {
  Entry *next;
  Key key;
  bool ready;        /* false: a thread is building it */
  void *handle;      /* dlopen */
  tc_kernel_fn fn;
  char *path;        /* the shared object it came from (for messages) */
};

/* A program's first-level key, its kernel's key and its metadata. */
typedef struct Alias Alias;
struct Alias {
  Alias *next;
  Key key, kernel;
  unsigned char *meta;
  size_t n;
};

#define ALIAS_BUCKETS 256

struct Cache {
  char *dir;         /* NULL: no disk cache */
  bool writable;     /* dir exists and is writable */
  char *priv;        /* our private mode-0700 directory, made on first use */
  pthread_mutex_t mu;
  pthread_cond_t built;
  Entry **buckets;
  size_t nbuckets, count;
  uint64_t counter;  /* private file names */
  bool swept;        /* stale temp files of dead writers removed */
  Alias *aliases[ALIAS_BUCKETS]; /* programs: first-level key -> kernel key */
};

/* ---- hashing: MurmurHash3_x64_128 (Austin Appleby, public domain) ---- */

static uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static uint64_t fmix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ull;
  k ^= k >> 33;
  return k;
}

static uint64_t load64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}

static void store64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++, v >>= 8)
    p[i] = (unsigned char)v;
}

static Key murmur3_128(const void *data, size_t len, uint64_t seed) {
  const unsigned char *p = data;
  const uint64_t c1 = 0x87c37b91114253d5ull, c2 = 0x4cf5ad432745937full;
  uint64_t h1 = seed, h2 = seed;
  size_t nblocks = len / 16;
  for (size_t i = 0; i < nblocks; i++) {
    uint64_t k1 = load64(p + 16 * i), k2 = load64(p + 16 * i + 8);
    k1 *= c1, k1 = rotl64(k1, 31), k1 *= c2, h1 ^= k1;
    h1 = rotl64(h1, 27), h1 += h2, h1 = h1 * 5 + 0x52dce729;
    k2 *= c2, k2 = rotl64(k2, 33), k2 *= c1, h2 ^= k2;
    h2 = rotl64(h2, 31), h2 += h1, h2 = h2 * 5 + 0x38495ab5;
  }
  const unsigned char *tail = p + 16 * nblocks;
  uint64_t k1 = 0, k2 = 0;
  size_t rest = len & 15;
  for (size_t i = rest; i > 8; i--)
    k2 ^= (uint64_t)tail[i - 1] << (8 * (i - 9));
  if (rest > 8)
    k2 *= c2, k2 = rotl64(k2, 33), k2 *= c1, h2 ^= k2;
  for (size_t i = rest < 8 ? rest : 8; i > 0; i--)
    k1 ^= (uint64_t)tail[i - 1] << (8 * (i - 1));
  if (rest)
    k1 *= c1, k1 = rotl64(k1, 31), k1 *= c2, h1 ^= k1;
  h1 ^= (uint64_t)len, h2 ^= (uint64_t)len;
  h1 += h2, h2 += h1;
  h1 = fmix64(h1), h2 = fmix64(h2);
  h1 += h2, h2 += h1;
  return (Key){{h1, h2}};
}

static uint64_t checksum(const void *data, size_t len) {
  return murmur3_128(data, len, 0x544b43484b53554dull).h[0];
}

/* ---- small file helpers ---- */


/* Reads the whole file; NULL when it cannot (or is absurdly large). */
static unsigned char *read_file(int fd, size_t *len) {
  struct stat st;
  if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > (off_t)MAX_ENTRY)
    return NULL;
  size_t n = (size_t)st.st_size, got = 0;
  unsigned char *p = malloc(n ? n : 1);
  while (p && got < n) {
    ssize_t r = read(fd, p + got, n - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    got += (size_t)r;
  }
  if (p && got != n) { /* shrank under us: the caller sees a short file */
    n = got;
  }
  *len = n;
  return p;
}

/* mkdir -p with mode 0700 for the directories it creates. */
static bool mkdir_p(const char *dir) {
  char path[PATH_MAX];
  size_t n = strlen(dir);
  if (n == 0 || n >= sizeof path)
    return false;
  memcpy(path, dir, n + 1);
  for (char *p = path + 1;; p++) {
    if (*p == '/' || *p == '\0') {
      char c = *p;
      *p = '\0';
      if (mkdir(path, 0700) && errno != EEXIST)
        return false;
      *p = c;
      if (!c)
        break;
    }
  }
  struct stat st;
  return !stat(dir, &st) && S_ISDIR(st.st_mode);
}

static void key_hex(Key key, char out[33]) {
  snprintf(out, 33, "%016llx%016llx", (unsigned long long)key.h[0],
           (unsigned long long)key.h[1]);
}

/* ---- the cache object ---- */

Cache *cache_new(const char *dir) {
  Cache *k = calloc(1, sizeof *k);
  if (!k)
    return NULL;
  k->nbuckets = 64;
  k->buckets = calloc(k->nbuckets, sizeof *k->buckets);
  if (!k->buckets) {
    free(k);
    return NULL;
  }
  pthread_mutex_init(&k->mu, NULL);
  pthread_cond_init(&k->built, NULL);
  if (dir && *dir) {
    k->dir = strdup(dir);
    k->writable = k->dir && mkdir_p(dir) && !access(dir, W_OK | X_OK);
  }
  return k;
}

void cache_free(Cache *k) {
  if (!k)
    return;
  for (size_t i = 0; i < k->nbuckets; i++) {
    for (Entry *e = k->buckets[i], *next; e; e = next) {
      next = e->next;
      if (e->handle)
        dlclose(e->handle);
      free(e->path);
      free(e);
    }
  }
  for (size_t i = 0; i < ALIAS_BUCKETS; i++) {
    for (Alias *a = k->aliases[i], *next; a; a = next) {
      next = a->next;
      free(a->meta);
      free(a);
    }
  }
  if (k->priv)
    rmdir(k->priv);
  free(k->priv);
  free(k->buckets);
  free(k->dir);
  pthread_cond_destroy(&k->built);
  pthread_mutex_destroy(&k->mu);
  free(k);
}

static Entry **find(Cache *k, Key key) {
  Entry **pe = &k->buckets[key.h[0] & (k->nbuckets - 1)];
  while (*pe && ((*pe)->key.h[0] != key.h[0] || (*pe)->key.h[1] != key.h[1]))
    pe = &(*pe)->next;
  return pe;
}

/* Doubles the table when it is full (keeps the old one on OOM). */
static void grow(Cache *k) {
  size_t n = k->nbuckets * 2;
  Entry **b = calloc(n, sizeof *b);
  if (!b)
    return;
  for (size_t i = 0; i < k->nbuckets; i++) {
    for (Entry *e = k->buckets[i], *next; e; e = next) {
      next = e->next;
      Entry **pe = &b[e->key.h[0] & (n - 1)];
      e->next = *pe;
      *pe = e;
    }
  }
  free(k->buckets);
  k->buckets = b;
  k->nbuckets = n;
}

/* Makes the private directory (once) and a fresh name in it.  Under k->mu. */
static bool private_name(Cache *k, Key key, char *out, size_t cap) {
  struct stat st;
  if (k->priv && (stat(k->priv, &st) || !S_ISDIR(st.st_mode))) {
    free(k->priv); /* removed under us, by a temp-file cleaner say */
    k->priv = NULL;
  }
  if (!k->priv) {
    const char *bases[] = {getenv("TMPDIR"), "/tmp", "/var/tmp", k->writable ? k->dir : NULL};
    for (size_t i = 0; i < sizeof bases / sizeof bases[0] && !k->priv; i++) {
      char tmpl[PATH_MAX];
      if (!bases[i] || !*bases[i] ||
          snprintf(tmpl, sizeof tmpl, "%s/tensorc-XXXXXX", bases[i]) >= (int)sizeof tmpl)
        continue;
      if (mkdtemp(tmpl))
        k->priv = strdup(tmpl);
    }
    if (!k->priv)
      return false;
  }
  char hex[33];
  key_hex(key, hex);
  int n = snprintf(out, cap, "%s/%s-%ld-%llu.so", k->priv, hex, (long)getpid(),
                   (unsigned long long)k->counter++);
  return n > 0 && (size_t)n < cap;
}

/* dlopens `path` and checks the kernel's ABI; NULL and err on failure. */
static void *load_kernel(const char *path, tc_kernel_fn *fn, tc_error *err) {
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *msg = dlerror();
    error_set(err, TC_ERR_IO, NULL, (Loc){0, 0}, "cannot load kernel %s: %s", path,
              msg ? msg : "?");
    return NULL;
  }
  const int *abi = dlsym(h, "tc_kernel_abi");
  void *sym = dlsym(h, "tc_kernel");
  if (!abi || *abi != TC_KERNEL_ABI || !sym) {
    dlclose(h);
    error_set(err, TC_ERR_INTERNAL, NULL, (Loc){0, 0}, "kernel %s: %s", path,
            !abi || !sym ? "missing tc_kernel or tc_kernel_abi" : "kernel ABI mismatch");
    return NULL;
  }
  /* POSIX: a dlsym'd function pointer round-trips through void * */
  memcpy(fn, &sym, sizeof *fn);
  return h;
}

/* Verifies an entry's bytes: trailer magic ("TCK1" kernels, "TCB1" blobs),
 * length, checksum, key. */
static bool verify(const unsigned char *p, size_t n, Key key, const char *magic) {
  if (n < TRAILER)
    return false;
  const unsigned char *t = p + n - TRAILER;
  uint32_t len = (uint32_t)t[4] | (uint32_t)t[5] << 8 | (uint32_t)t[6] << 16 |
                 (uint32_t)t[7] << 24;
  return !memcmp(t, magic, 4) && len == n - TRAILER && load64(t + 8) == checksum(p, len) &&
         load64(t + 16) == key.h[0] && load64(t + 24) == key.h[1];
}

/* Writes bytes to a new private file (exclusive) and dlopens it. */
static void *load_private(Cache *k, Key key, const unsigned char *p, size_t n,
                          tc_kernel_fn *fn, tc_error *err) {
  char path[PATH_MAX];
  pthread_mutex_lock(&k->mu);
  bool ok = private_name(k, key, path, sizeof path);
  pthread_mutex_unlock(&k->mu);
  if (!ok) {
    error_set(err, TC_ERR_IO, NULL, (Loc){0, 0}, "cannot create a private temporary directory");
    return NULL;
  }
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
  if (fd < 0 || !util_write_all(fd, p, n)) {
    error_set(err, TC_ERR_IO, NULL, (Loc){0, 0}, "cannot write %s: %s", path, strerror(errno));
    if (fd >= 0) {
      close(fd);
      unlink(path);
    }
    return NULL;
  }
  close(fd);
  void *h = load_kernel(path, fn, err);
  unlink(path);
  return h;
}

/* Looks the key up on disk.  Returns the handle, or NULL on a miss; a bad
 * entry is removed. */
static void *disk_lookup(Cache *k, Key key, const char *path, tc_kernel_fn *fn) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return NULL;
  size_t n = 0;
  unsigned char *p = read_file(fd, &n);
  void *h = NULL;
  if (p && verify(p, n, key, "TCK1")) {
    tc_error ignored;
    h = load_private(k, key, p, n - TRAILER, fn, &ignored);
  }
  if (!h) {
    /* corrupt, truncated or unloadable: remove it unless it was replaced */
    struct stat a, b;
    if (!fstat(fd, &a) && !stat(path, &b) && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
      unlink(path);
  }
  free(p);
  close(fd);
  return h;
}

/* Removes `tmp-*` files older than an hour: left by a process that died
 * between creating and renaming one.  Once per Cache, on the first store. */
static void sweep_stale(Cache *k) {
  pthread_mutex_lock(&k->mu);
  bool done = k->swept;
  k->swept = true;
  pthread_mutex_unlock(&k->mu);
  DIR *d = done ? NULL : opendir(k->dir);
  if (!d)
    return;
  time_t now = time(NULL);
  struct dirent *e;
  while ((e = readdir(d))) {
    char path[PATH_MAX];
    struct stat st;
    if (strncmp(e->d_name, "tmp-", 4) ||
        snprintf(path, sizeof path, "%s/%s", k->dir, e->d_name) >= (int)sizeof path)
      continue;
    if (!lstat(path, &st) && S_ISREG(st.st_mode) && now - st.st_mtime > 3600)
      unlink(path);
  }
  closedir(d);
}

/* Publishes the built object as `path`: temp file, trailer, fsync, rename. */
static void disk_store(Cache *k, Key key, const char *path, const unsigned char *p,
                       size_t n, const char *magic) {
  if (n > MAX_ENTRY)
    return;
  sweep_stale(k);
  char tmp[PATH_MAX];
  if (snprintf(tmp, sizeof tmp, "%s/tmp-%ld-XXXXXX.so", k->dir, (long)getpid()) >=
      (int)sizeof tmp)
    return;
  int fd = mkostemps(tmp, 3, O_CLOEXEC);
  if (fd < 0) {
    if (errno == EACCES || errno == EROFS || errno == ENOENT || errno == EPERM) {
      pthread_mutex_lock(&k->mu);
      k->writable = false;
      pthread_mutex_unlock(&k->mu);
    }
    return;
  }
  unsigned char t[TRAILER];
  memcpy(t, magic, 4);
  for (int i = 0; i < 4; i++)
    t[4 + i] = (unsigned char)(n >> (8 * i));
  store64(t + 8, checksum(p, n));
  store64(t + 16, key.h[0]);
  store64(t + 24, key.h[1]);
  bool ok = util_write_all(fd, p, n) && util_write_all(fd, t, TRAILER) && !fsync(fd);
  ok = !close(fd) && ok;
  if (!ok || rename(tmp, path))
    unlink(tmp);
}

/* Compiles the source privately, loads it, and publishes it on disk. */
static void *build(Cache *k, const JitConfig *cfg, Key key, const char *entry,
                   const char *source, size_t len, tc_kernel_fn *fn, char *where,
                   size_t wherecap, tc_error *err) {
  char path[PATH_MAX];
  pthread_mutex_lock(&k->mu);
  bool ok = private_name(k, key, path, sizeof path);
  bool publish = entry && k->writable;
  pthread_mutex_unlock(&k->mu);
  if (!ok) {
    error_set(err, TC_ERR_IO, NULL, (Loc){0, 0}, "cannot create a private temporary directory");
    return NULL;
  }
  if (jit_build(cfg, source, len, path, err) != TC_OK) {
    unlink(path);
    return NULL;
  }
  unsigned char *bytes = NULL;
  size_t n = 0;
  if (publish) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      bytes = read_file(fd, &n);
      close(fd);
    }
  }
  void *h = load_kernel(path, fn, err);
  unlink(path);
  if (h && bytes)
    disk_store(k, key, entry, bytes, n, "TCK1");
  free(bytes);
  snprintf(where, wherecap, "%s", h && publish ? entry : path);
  return h;
}

/* Hashes identity, a NUL, then `len` bytes of data; {0, 0} on OOM. */
static Key text_key(const char *identity, const void *data, size_t len, uint64_t seed) {
  size_t ilen = strlen(identity);
  unsigned char *text = malloc(ilen + 1 + len);
  if (!text)
    return (Key){{0, 0}};
  memcpy(text, identity, ilen + 1); /* the NUL separates identity and data */
  if (len)
    memcpy(text + ilen + 1, data, len);
  Key key = murmur3_128(text, ilen + 1 + len, seed);
  free(text);
  return key;
}

static Key kernel_key(const char *identity, const char *source, size_t len) {
  return text_key(identity, source, len, 0x74656e736f7263ull);
}

/* Finds the kernel `key`: memory, disk, then (with a source) the compiler.
 * Without a source a miss is TC_OK with *fn NULL. */
static tc_status obtain(Cache *k, const JitConfig *cfg, Key key, const char *source,
                        size_t len, tc_kernel_fn *fn, int *how, char *path, size_t pathlen,
                        tc_error *err) {
  *fn = NULL;
  pthread_mutex_lock(&k->mu);
  Entry **pe;
  while (*(pe = find(k, key)) && !(*pe)->ready)
    pthread_cond_wait(&k->built, &k->mu);
  if (*pe) {
    *fn = (*pe)->fn;
    if (how)
      *how = 1;
    if (path && pathlen)
      snprintf(path, pathlen, "%s", (*pe)->path ? (*pe)->path : "");
    pthread_mutex_unlock(&k->mu);
    return TC_OK;
  }
  Entry *e = calloc(1, sizeof *e);
  if (!e) {
    pthread_mutex_unlock(&k->mu);
    error_set(err, TC_ERR_NOMEM, NULL, (Loc){0, 0}, "out of memory");
    return TC_ERR_NOMEM;
  }
  e->key = key;
  *pe = e; /* a placeholder: others wait for it */
  char *dir = k->dir ? strdup(k->dir) : NULL;
  pthread_mutex_unlock(&k->mu);

  char entry[PATH_MAX], where[PATH_MAX] = "";
  char hex[33];
  key_hex(key, hex);
  bool on_disk = dir && snprintf(entry, sizeof entry, "%s/%s.so", dir, hex) < (int)sizeof entry;
  free(dir);
  int got = 2;
  tc_kernel_fn f = NULL;
  void *h = on_disk ? disk_lookup(k, key, entry, &f) : NULL;
  if (h) {
    snprintf(where, sizeof where, "%s", entry);
  } else if (source) {
    got = 0;
    h = build(k, cfg, key, on_disk ? entry : NULL, source, len, &f, where, sizeof where, err);
  }

  pthread_mutex_lock(&k->mu);
  pe = find(k, key);
  if (h) {
    e->ready = true;
    e->handle = h;
    e->fn = f;
    e->path = strdup(where);
    if (++k->count > k->nbuckets)
      grow(k);
  } else {
    *pe = e->next;
    free(e);
  }
  pthread_cond_broadcast(&k->built);
  pthread_mutex_unlock(&k->mu);
  if (!h)
    return source ? (err->code ? err->code : TC_ERR_INTERNAL) : TC_OK;
  *fn = f;
  if (how)
    *how = got;
  if (path && pathlen)
    snprintf(path, pathlen, "%s", where);
  return TC_OK;
}

tc_status cache_get(Cache *k, const JitConfig *cfg, const char *identity,
                    const char *source, size_t len, tc_kernel_fn *fn, int *how,
                    char *path, size_t pathlen, tc_error *user_err) {
  tc_error local, *err = user_err ? user_err : &local;
  error_clear(err);
  Key key = kernel_key(identity, source, len);
  if (!key.h[0] && !key.h[1]) {
    error_set(err, TC_ERR_NOMEM, NULL, (Loc){0, 0}, "out of memory");
    return TC_ERR_NOMEM;
  }
  return obtain(k, cfg, key, source ? source : "", len, fn, how, path, pathlen, err);
}

/* ---- blobs: other compiled artifacts (CUDA cubins) ----
 * `<dir>/<hex>.<ext>`, keyed like kernels by identity and source, with the
 * same trailer under the magic "TCB1", verified on load and published by
 * atomic rename; nothing is dlopen'ed, so no private copy is needed. */

static bool blob_path(Cache *k, Key key, const char *ext, char *out, size_t cap) {
  char hex[33];
  key_hex(key, hex);
  return k->dir && snprintf(out, cap, "%s/%s.%s", k->dir, hex, ext) < (int)cap;
}

static Key blob_key(const char *identity, const char *source, size_t len) {
  return text_key(identity, source, len, 0x74656e736f7262ull);
}

/* Reads and verifies the entry `path` of `key` under `magic`: the payload
 * (malloc'ed, its trailer still after it) in *out.  A bad entry is removed. */
static bool read_entry(const char *path, Key key, const char *magic, unsigned char **out,
                       size_t *n) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  size_t size = 0;
  unsigned char *p = read_file(fd, &size);
  bool ok = p && verify(p, size, key, magic);
  if (!ok) { /* corrupt or truncated: removed unless replaced meanwhile */
    struct stat a, b;
    if (!fstat(fd, &a) && !stat(path, &b) && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
      unlink(path);
    free(p);
  } else {
    *out = p;
    *n = size - TRAILER;
  }
  close(fd);
  return ok;
}

bool cache_blob_load(Cache *k, const char *identity, const char *source, size_t len,
                     const char *ext, unsigned char **out, size_t *n) {
  *out = NULL;
  *n = 0;
  char path[PATH_MAX];
  Key key = blob_key(identity, source, len);
  if ((!key.h[0] && !key.h[1]) || !blob_path(k, key, ext, path, sizeof path))
    return false;
  return read_entry(path, key, "TCB1", out, n);
}

void cache_blob_store(Cache *k, const char *identity, const char *source, size_t len,
                      const char *ext, const unsigned char *data, size_t n) {
  char path[PATH_MAX];
  Key key = blob_key(identity, source, len);
  pthread_mutex_lock(&k->mu);
  bool writable = k->writable;
  pthread_mutex_unlock(&k->mu);
  if (writable && (key.h[0] || key.h[1]) && blob_path(k, key, ext, path, sizeof path))
    disk_store(k, key, path, data, n, "TCB1");
}

/* ---- programs: a first-level key to a kernel key and metadata ---- */

static Key program_key(const char *identity, const void *text, size_t len) {
  return text_key(identity, text, len, 0x74637072676d6bull);
}

static Alias **find_alias(Cache *k, Key key) {
  Alias **pa = &k->aliases[key.h[0] % ALIAS_BUCKETS];
  while (*pa && ((*pa)->key.h[0] != key.h[0] || (*pa)->key.h[1] != key.h[1]))
    pa = &(*pa)->next;
  return pa;
}

/* Records (or replaces) an alias in memory; false on OOM.  Under k->mu. */
static bool remember(Cache *k, Key key, Key kernel, const unsigned char *meta, size_t n) {
  unsigned char *copy = malloc(n ? n : 1);
  if (!copy)
    return false;
  if (n)
    memcpy(copy, meta, n);
  Alias **pa = find_alias(k, key);
  if (!*pa && !(*pa = calloc(1, sizeof **pa))) {
    free(copy);
    return false;
  }
  free((*pa)->meta);
  (*pa)->key = key;
  (*pa)->kernel = kernel;
  (*pa)->meta = copy;
  (*pa)->n = n;
  return true;
}

static bool alias_path(Cache *k, Key key, char *out, size_t cap) {
  char hex[33];
  key_hex(key, hex);
  return k->dir && snprintf(out, cap, "%s/%s.tcp", k->dir, hex) < (int)cap;
}

/* The alias from memory, else from disk (then remembered). */
static bool lookup_alias(Cache *k, Key key, Key *kernel, unsigned char **meta, size_t *n,
                         bool *from_disk) {
  pthread_mutex_lock(&k->mu);
  Alias *a = *find_alias(k, key);
  bool found = false;
  if (a && (*meta = malloc(a->n ? a->n : 1))) {
    memcpy(*meta, a->meta, a->n);
    *n = a->n;
    *kernel = a->kernel;
    found = true;
  }
  pthread_mutex_unlock(&k->mu);
  *from_disk = false;
  char path[PATH_MAX];
  unsigned char *p = NULL;
  size_t size = 0;
  if (found || !alias_path(k, key, path, sizeof path) || !read_entry(path, key, "TCP1", &p, &size))
    return found;
  if (size < 16) {
    free(p);
    return false;
  }
  *kernel = (Key){{load64(p), load64(p + 8)}};
  *n = size - 16;
  memmove(p, p + 16, *n);
  *meta = p;
  *from_disk = true;
  pthread_mutex_lock(&k->mu);
  remember(k, key, *kernel, p, *n);
  pthread_mutex_unlock(&k->mu);
  return true;
}

bool cache_find_program(Cache *k, const char *identity, const void *text, size_t len,
                        tc_kernel_fn *fn, unsigned char **meta, size_t *metalen, int *how,
                        char *path, size_t pathlen) {
  *fn = NULL;
  *meta = NULL;
  *metalen = 0;
  Key key = program_key(identity, text, len), kernel;
  bool from_disk;
  if ((!key.h[0] && !key.h[1]) || !lookup_alias(k, key, &kernel, meta, metalen, &from_disk))
    return false;
  tc_error ignored;
  int got = 0;
  if (obtain(k, NULL, kernel, NULL, 0, fn, &got, path, pathlen, &ignored) != TC_OK || !*fn) {
    free(*meta);
    *meta = NULL;
    *metalen = 0;
    *fn = NULL;
    return false;
  }
  if (how)
    *how = from_disk ? 2 : got;
  return true;
}

void cache_put_program(Cache *k, const char *identity, const void *text, size_t len,
                       const char *kernel_identity, const char *source, size_t srclen,
                       const unsigned char *meta, size_t metalen) {
  Key key = program_key(identity, text, len);
  Key kernel = kernel_key(kernel_identity, source, srclen);
  if ((!key.h[0] && !key.h[1]) || (!kernel.h[0] && !kernel.h[1]) || metalen > MAX_ENTRY)
    return;
  pthread_mutex_lock(&k->mu);
  remember(k, key, kernel, meta, metalen);
  bool writable = k->writable;
  pthread_mutex_unlock(&k->mu);
  char path[PATH_MAX];
  unsigned char *p = writable ? malloc(16 + metalen) : NULL;
  if (p && alias_path(k, key, path, sizeof path)) {
    store64(p, kernel.h[0]);
    store64(p + 8, kernel.h[1]);
    if (metalen)
      memcpy(p + 16, meta, metalen);
    disk_store(k, key, path, p, 16 + metalen, "TCP1");
  }
  free(p);
}
