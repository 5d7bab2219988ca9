/* test_cache.c — the JIT and the kernel cache on hand-written kernels:
 * build, memory hit, disk hit from a new Cache, corrupt and truncated
 * entries detected and rebuilt, processes racing on one key, threads racing
 * on one key, an unusable cache directory, compiler errors; and a generated
 * kernel, which includes no system header, compiled with undeclared
 * functions as errors. */
#include "tc.h"
#include "unit.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* A kernel writing sizes[0] * 2 + K into data[0][0]. */
static char *kernel_source(int k) {
  Buf b = {0};
  buf_puts(&b, "#include <stdint.h>\n" TC_KERNEL_ABI_DECLS);
  buf_printf(&b, "const int tc_kernel_abi = %d;\n", TC_KERNEL_ABI);
  buf_printf(&b,
             "int tc_kernel(const tc_kargs *a) {\n"
             "  int64_t *out = a->data[0];\n"
             "  out[0] = a->sizes[0] * 2 + %d;\n"
             "  return 0;\n"
             "}\n",
             k);
  return buf_detach(&b);
}

static int64_t call_kernel(tc_kernel_fn fn, int64_t size) {
  int64_t out = -1;
  void *data[1] = {&out};
  int64_t sizes[1] = {size};
  tc_kargs a = {data, NULL, NULL, sizes, NULL};
  if (fn(&a) != 0)
    return -2;
  return out;
}

static JitConfig config(void) {
  const char *cc = getenv("CC");
  JitConfig cfg = {cc && *cc ? cc : "cc", NULL, 0};
  return cfg;
}

static char *fresh_dir(void) {
  char tmpl[] = "/tmp/tc-test-cache-XXXXXX";
  char *d = mkdtemp(tmpl);
  return d ? strdup(d) : NULL;
}

static void remove_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (!d)
    return;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.')
      continue;
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    unlink(p);
  }
  closedir(d);
  rmdir(dir);
}

/* Counts the files in `dir` whose name starts with `prefix` (or every file). */
static int count_files(const char *dir, const char *prefix) {
  DIR *d = opendir(dir);
  int n = 0;
  if (!d)
    return -1;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.' && (!prefix || !strncmp(e->d_name, prefix, strlen(prefix))))
      n++;
  closedir(d);
  return n;
}

/* Returns the path of the only entry (<hex>.so) in dir. */
static bool entry_path(const char *dir, char *out, size_t cap) {
  DIR *d = opendir(dir);
  bool found = false;
  if (!d)
    return false;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strlen(e->d_name) == 35 && !strcmp(e->d_name + 32, ".so")) {
      snprintf(out, cap, "%s/%s", dir, e->d_name);
      found = true;
    }
  closedir(d);
  return found;
}

/* An entry is complete: trailer magic, and length == size - 32. */
static bool entry_complete(const char *path) {
  int fd = open(path, O_RDONLY);
  if (fd < 0)
    return true; /* vanished: a rename replaced it, fine */
  struct stat st;
  unsigned char t[32];
  bool ok = !fstat(fd, &st) && st.st_size >= 32 &&
            pread(fd, t, 32, st.st_size - 32) == 32 && !memcmp(t, "TCK1", 4) &&
            ((uint32_t)t[4] | (uint32_t)t[5] << 8 | (uint32_t)t[6] << 16 |
             (uint32_t)t[7] << 24) == (uint64_t)st.st_size - 32;
  close(fd);
  return ok;
}

typedef struct Got {
  tc_status st;
  tc_kernel_fn fn;
  int how;
  char path[512];
  tc_error err;
} Got;

static Got get(Cache *k, const JitConfig *cfg, const char *identity, const char *src) {
  Got g = {0};
  g.how = -1;
  g.st = cache_get(k, cfg, identity, src, strlen(src), &g.fn, &g.how, g.path, sizeof g.path,
                   &g.err);
  if (g.st)
    fprintf(stderr, "cache_get: %s\n", g.err.message);
  return g;
}

TEST(build_memory_hit_disk_hit) {
  JitConfig cfg = config();
  char *id = jit_identity(&cfg);
  char *dir = fresh_dir();
  char *src = kernel_source(7);
  Cache *k = cache_new(dir);
  Got a = get(k, &cfg, id, src);
  CHECK_INT(a.st, TC_OK);
  CHECK_INT(a.how, 0);
  CHECK_INT(call_kernel(a.fn, 10), 27);
  CHECK_INT(count_files(dir, NULL), 1); /* the entry, no temp files left */
  char path[1024];
  CHECK(entry_path(dir, path, sizeof path));
  CHECK(entry_complete(path));
  CHECK_STR(a.path, path);

  Got b = get(k, &cfg, id, src);
  CHECK_INT(b.st, TC_OK);
  CHECK_INT(b.how, 1);
  CHECK(b.fn == a.fn);

  Cache *k2 = cache_new(dir);
  Got c = get(k2, &cfg, id, src);
  CHECK_INT(c.st, TC_OK);
  CHECK_INT(c.how, 2);
  CHECK_INT(call_kernel(c.fn, 1), 9);

  /* another identity is another key */
  Got d = get(k2, &cfg, "another compiler", src);
  CHECK_INT(d.how, 0);
  CHECK_INT(count_files(dir, NULL), 2);
  cache_free(k2);
  cache_free(k);
  free(src);
  free(id);
  remove_dir(dir);
  free(dir);
}

TEST(memory_only_cache) {
  JitConfig cfg = config();
  char *src = kernel_source(3);
  Cache *k = cache_new(NULL);
  Got a = get(k, &cfg, "id", src);
  CHECK_INT(a.st, TC_OK);
  CHECK_INT(a.how, 0);
  CHECK_INT(call_kernel(a.fn, 5), 13);
  Got b = get(k, &cfg, "id", src);
  CHECK_INT(b.how, 1);
  cache_free(k);
  cache_free(NULL);
  free(src);
}

/* Damages the entry with `damage`, then checks a new Cache rebuilds it. */
static void check_damage(void (*damage)(const char *path)) {
  JitConfig cfg = config();
  char *dir = fresh_dir();
  char *src = kernel_source(11);
  Cache *k = cache_new(dir);
  Got a = get(k, &cfg, "id", src);
  CHECK_INT(a.how, 0);
  cache_free(k);
  char path[1024];
  CHECK(entry_path(dir, path, sizeof path));
  damage(path);

  k = cache_new(dir);
  Got b = get(k, &cfg, "id", src);
  CHECK_INT(b.st, TC_OK);
  CHECK_INT(b.how, 0); /* detected, rebuilt: never loaded */
  CHECK_INT(call_kernel(b.fn, 2), 15);
  CHECK(entry_complete(path));
  cache_free(k);

  k = cache_new(dir); /* and the rebuilt entry is good */
  Got c = get(k, &cfg, "id", src);
  CHECK_INT(c.how, 2);
  CHECK_INT(call_kernel(c.fn, 0), 11);
  cache_free(k);
  free(src);
  remove_dir(dir);
  free(dir);
}

static void truncate_half(const char *path) {
  struct stat st;
  stat(path, &st);
  CHECK(truncate(path, st.st_size / 2) == 0);
}

static void truncate_trailer(const char *path) {
  struct stat st;
  stat(path, &st);
  CHECK(truncate(path, st.st_size - 32) == 0); /* a bare, valid ELF file */
}

static void flip_byte(const char *path, long where) {
  int fd = open(path, O_RDWR);
  struct stat st;
  fstat(fd, &st);
  off_t at = where >= 0 ? where : st.st_size + where;
  unsigned char c;
  CHECK(pread(fd, &c, 1, at) == 1);
  c ^= 0x40;
  CHECK(pwrite(fd, &c, 1, at) == 1);
  close(fd);
}

static void flip_middle(const char *path) {
  struct stat st;
  stat(path, &st);
  flip_byte(path, (long)st.st_size / 2);
}

static void flip_key(const char *path) { flip_byte(path, -1); }
static void flip_magic(const char *path) { flip_byte(path, -32); }

static void empty_file(const char *path) { CHECK(truncate(path, 0) == 0); }

static void garbage_file(const char *path) {
  FILE *f = fopen(path, "w");
  fputs("this is not a shared object, but it is long enough to have a trailer\n", f);
  fclose(f);
}

TEST(truncated_entry_rebuilt) { check_damage(truncate_half); }
TEST(entry_without_trailer_rebuilt) { check_damage(truncate_trailer); }
TEST(flipped_byte_rebuilt) { check_damage(flip_middle); }
TEST(flipped_key_rebuilt) { check_damage(flip_key); }
TEST(flipped_magic_rebuilt) { check_damage(flip_magic); }
TEST(empty_entry_rebuilt) { check_damage(empty_file); }
TEST(garbage_entry_rebuilt) { check_damage(garbage_file); }

/* Another key's valid entry renamed to this key's name: the key in the
 * trailer catches it. */
TEST(misnamed_entry_rebuilt) {
  JitConfig cfg = config();
  char *dir = fresh_dir();
  char *s1 = kernel_source(100), *s2 = kernel_source(200);
  Cache *k = cache_new(dir);
  get(k, &cfg, "id", s1);
  char p1[1024];
  CHECK(entry_path(dir, p1, sizeof p1));
  char moved[1100];
  snprintf(moved, sizeof moved, "%s.keep", p1);
  rename(p1, moved);
  get(k, &cfg, "id", s2);
  char p2[1024];
  CHECK(entry_path(dir, p2, sizeof p2));
  cache_free(k);
  CHECK(rename(moved, p2) == 0); /* entry of s1 under s2's name */
  k = cache_new(dir);
  Got g = get(k, &cfg, "id", s2);
  CHECK_INT(g.how, 0);
  CHECK_INT(call_kernel(g.fn, 0), 200);
  cache_free(k);
  free(s1);
  free(s2);
  remove_dir(dir);
  free(dir);
}

/* 8 processes ask for one new key at once; a watcher checks that every
 * entry it ever sees is complete. */
TEST(processes_race_on_one_key) {
  JitConfig cfg = config();
  char *dir = fresh_dir();
  char sub[1024];
  snprintf(sub, sizeof sub, "%s/nested/cache", dir); /* created on demand */
  char *src = kernel_source(42);
  char *id = jit_identity(&cfg);
  int fds[2];
  CHECK(pipe(fds) == 0);
  pid_t kids[8];
  for (int i = 0; i < 8; i++) {
    kids[i] = fork();
    if (kids[i] == 0) {
      close(fds[0]);
      Cache *k = cache_new(sub);
      tc_kernel_fn fn = NULL;
      int how = -1;
      tc_status st = cache_get(k, &cfg, id, src, strlen(src), &fn, &how, NULL, 0, NULL);
      int64_t r = st == TC_OK ? call_kernel(fn, 4) : -100 - (int64_t)st;
      if (write(fds[1], &r, sizeof r) != sizeof r)
        _exit(3);
      cache_free(k);
      _exit(st == TC_OK ? 0 : 1);
    }
  }
  close(fds[1]);
  int torn = 0, polls = 0;
  bool all_done = false;
  while (!all_done) {
    all_done = true;
    for (int i = 0; i < 8; i++) {
      if (kids[i] > 0) {
        int status;
        pid_t r = waitpid(kids[i], &status, WNOHANG);
        if (r == kids[i]) {
          CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
          kids[i] = 0;
        } else {
          all_done = false;
        }
      }
    }
    char path[1024];
    if (entry_path(sub, path, sizeof path)) {
      polls++;
      torn += !entry_complete(path);
    }
    usleep(200);
  }
  CHECK_INT(torn, 0);
  int64_t r;
  int n = 0;
  while (read(fds[0], &r, sizeof r) == sizeof r) {
    CHECK_INT(r, 50);
    n++;
  }
  close(fds[0]);
  CHECK_INT(n, 8);
  CHECK_INT(count_files(sub, "tmp-"), 0); /* no temp file left behind */
  CHECK_INT(count_files(sub, NULL), 1);
  Cache *k = cache_new(sub);
  Got g = get(k, &cfg, id, src);
  CHECK_INT(g.how, 2);
  cache_free(k);
  char nested[1100];
  remove_dir(sub);
  snprintf(nested, sizeof nested, "%s/nested", dir);
  rmdir(nested);
  remove_dir(dir);
  free(dir);
  free(src);
  free(id);
}

typedef struct {
  Cache *k;
  const JitConfig *cfg;
  const char *src;
  Got got;
} ThreadArg;

static void *thread_get(void *p) {
  ThreadArg *a = p;
  a->got = get(a->k, a->cfg, "id", a->src);
  return NULL;
}

TEST(threads_race_on_one_key) {
  JitConfig cfg = config();
  char *dir = fresh_dir();
  char *src = kernel_source(5);
  Cache *k = cache_new(dir);
  pthread_t th[8];
  ThreadArg args[8];
  for (int i = 0; i < 8; i++) {
    args[i] = (ThreadArg){k, &cfg, src, {0}};
    pthread_create(&th[i], NULL, thread_get, &args[i]);
  }
  int built = 0;
  for (int i = 0; i < 8; i++) {
    pthread_join(th[i], NULL);
    CHECK_INT(args[i].got.st, TC_OK);
    CHECK_INT(call_kernel(args[i].got.fn, 1), 7);
    built += args[i].got.how == 0;
  }
  CHECK_INT(built, 1); /* compiled once; the others waited for it */
  cache_free(k);
  free(src);
  remove_dir(dir);
  free(dir);
}

TEST(unusable_directory_falls_back) {
  JitConfig cfg = config();
  char *dir = fresh_dir();
  char file[1024], bad[1100];
  snprintf(file, sizeof file, "%s/plain-file", dir);
  FILE *f = fopen(file, "w");
  fclose(f);
  snprintf(bad, sizeof bad, "%s/sub", file); /* under a regular file: mkdir fails */
  char *src = kernel_source(9);
  Cache *k = cache_new(bad);
  Got a = get(k, &cfg, "id", src);
  CHECK_INT(a.st, TC_OK);
  CHECK_INT(a.how, 0);
  CHECK_INT(call_kernel(a.fn, 3), 15);
  Got b = get(k, &cfg, "id", src);
  CHECK_INT(b.how, 1);
  cache_free(k);
  CHECK_INT(count_files(dir, NULL), 1);
  free(src);
  remove_dir(dir);
  free(dir);
}

TEST(compiler_errors) {
  JitConfig cfg = config();
  Cache *k = cache_new(NULL);
  const char *bad = "int tc_kernel(void) { return undeclared_thing; }\n";
  Got a = get(k, &cfg, "id", bad);
  CHECK_INT(a.st, TC_ERR_COMPILER);
  CHECK(strstr(a.err.message, "undeclared_thing") != NULL); /* the compiler's words */
  CHECK(strstr(a.err.message, "-O3") != NULL);              /* the command line */

  JitConfig missing = {"/nonexistent/bin/xyzcc", NULL, 0};
  char *src = kernel_source(1);
  Got b = get(k, &missing, "id2", src);
  CHECK_INT(b.st, TC_ERR_COMPILER);
  CHECK(strstr(b.err.message, "'/nonexistent/bin/xyzcc' not found; set $CC") != NULL);
  JitConfig missing2 = {"no-such-compiler-here -O1", NULL, 0};
  Got c = get(k, &missing2, "id3", src);
  CHECK_INT(c.st, TC_ERR_COMPILER);
  CHECK(strstr(c.err.message, "not found") != NULL);

  /* a kernel of another ABI is refused */
  const char *abi = "#include <stdint.h>\nconst int tc_kernel_abi = 999;\n"
                    "int tc_kernel(const void *a) { (void)a; return 0; }\n";
  Got d = get(k, &cfg, "id4", abi);
  CHECK(d.st != TC_OK);
  CHECK(strstr(d.err.message, "ABI") != NULL);
  cache_free(k);
  free(src);
}

TEST(extra_cflags_and_spaces_in_cc) {
  JitConfig cfg = config();
  char cc[256];
  snprintf(cc, sizeof cc, "  %s   -DUNUSED_FLAG=1 ", cfg.cc); /* words, not a shell */
  JitConfig spaced = {cc, "-DK=5 -O1", 0};
  Cache *k = cache_new(NULL);
  const char *src = "#include <stdint.h>\n" TC_KERNEL_ABI_DECLS
                    "const int tc_kernel_abi = 1;\n"
                    "int tc_kernel(const tc_kargs *a) {\n"
                    "  *(int64_t *)a->data[0] = K + UNUSED_FLAG; return 0; }\n";
  Got g = get(k, &spaced, "id", src);
  CHECK_INT(g.st, TC_OK);
  if (g.st == TC_OK)
    CHECK_INT(call_kernel(g.fn, 0), 6);
  cache_free(k);
}

/* a writer that died left temp files: old ones are swept, recent ones kept */
TEST(stale_temp_files_swept) {
  JitConfig cfg = config();
  char *dir = fresh_dir();
  char old[1024], recent[1024];
  snprintf(old, sizeof old, "%s/tmp-1-AAAAAA.so", dir);
  snprintf(recent, sizeof recent, "%s/tmp-2-BBBBBB.so", dir);
  fclose(fopen(old, "w"));
  fclose(fopen(recent, "w"));
  struct timespec times[2] = {{time(NULL) - 7200, 0}, {time(NULL) - 7200, 0}};
  CHECK(utimensat(AT_FDCWD, old, times, 0) == 0);
  char *src = kernel_source(31);
  Cache *k = cache_new(dir);
  Got g = get(k, &cfg, "id", src);
  CHECK_INT(g.st, TC_OK);
  CHECK(access(old, F_OK) != 0);
  CHECK(access(recent, F_OK) == 0);
  cache_free(k);
  free(src);
  remove_dir(dir);
  free(dir);
}

/* verbose prints the exact command to stderr before running it */
TEST(verbose_prints_the_command) {
  JitConfig cfg = config();
  cfg.verbose = 1;
  char log[] = "/tmp/tc-test-verbose-XXXXXX";
  int fd = mkstemp(log);
  int saved = dup(2);
  fflush(stderr);
  dup2(fd, 2);
  Cache *k = cache_new(NULL);
  char *src = kernel_source(77);
  Got g = get(k, &cfg, "id", src);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  CHECK_INT(g.st, TC_OK);
  char text[4096] = "";
  ssize_t n = pread(fd, text, sizeof text - 1, 0);
  text[n > 0 ? n : 0] = '\0';
  CHECK(strstr(text, "tensorc: ") == text);
  CHECK(strstr(text, " -std=c11 -O3 -march=native -fwrapv -fno-math-errno -ffp-contract=off "
                     "-fPIC -shared -nostdlib -o ") != NULL);
  CHECK(strstr(text, " -lm\n") != NULL);
  close(fd);
  unlink(log);
  cache_free(k);
  free(src);
}

TEST(identity) {
  JitConfig a = config();
  char *i1 = jit_identity(&a), *i2 = jit_identity(&a);
  CHECK_STR(i1, i2);
  CHECK(strstr(i1, TC_VERSION) != NULL);
  CHECK(strstr(i1, "bin: /") != NULL); /* the resolved compiler */
  CHECK(strstr(i1, "-ffp-contract=off") != NULL);
  JitConfig b = a;
  b.extra_cflags = "-DX=1";
  char *i3 = jit_identity(&b);
  CHECK(strcmp(i1, i3) != 0);
  free(i1);
  free(i2);
  free(i3);
}

/* Generated kernels include no system header but <features.h> (parsing
 * <math.h> and <stdint.h> cost a small kernel's compiler about 10 ms), so
 * emit_c declares what they use: every math builtin on float and double,
 * the helpers' floor/fabs/memcpy, aligned_alloc/free of a tiled matmul's
 * panels.  Compiled here with an undeclared or misdeclared function as an
 * error, then loaded (the JIT links -nostdlib). */
static void strict_build(const char *tc) {
  tc_context *ctx = NULL;
  tc_context_options o;
  tc_context_options_init(&o);
  o.disk_cache = 0;
  tc_error err;
  CHECK_INT(tc_context_new(&o, &ctx, &err), TC_OK);
  tc_program *p = NULL;
  CHECK_INT(tc_compile(ctx, "strict.tc", tc, strlen(tc), &p, &err), TC_OK);
  char *c = NULL;
  CHECK_INT(p ? tc_emit(p, 0, TC_TARGET_C, &c, &err) : TC_ERR_ARGUMENT, TC_OK);
  for (const char *q = c ? c : ""; (q = strstr(q, "#include")); q++)
    CHECK(!strncmp(q, "#include <features.h>\n", 22));
  JitConfig cfg = config();
  cfg.extra_cflags = "-Werror=implicit-function-declaration -Werror=builtin-declaration-mismatch "
                     "-Werror=implicit-int";
  char *dir = fresh_dir(), so[PATH_MAX];
  snprintf(so, sizeof so, "%s/k.so", dir ? dir : "/tmp");
  tc_status st = c ? jit_build(&cfg, c, strlen(c), so, &err) : TC_ERR_INTERNAL;
  if (st)
    fprintf(stderr, "%s\n", err.message);
  CHECK_INT(st, TC_OK);
  void *h = st ? NULL : dlopen(so, RTLD_NOW | RTLD_LOCAL);
  CHECK(h && dlsym(h, "tc_kernel"));
  if (h)
    dlclose(h);
  unlink(so);
  if (dir)
    rmdir(dir);
  free(dir);
  free(c);
  tc_program_free(p);
  tc_context_free(ctx);
}

TEST(kernel_source_declares_what_it_uses) {
  for (int d = 0; d < 2; d++) {
    Buf b = {0};
    buf_printf(&b, "def f(%s(N) X, int64(N) I) -> (A, J) {\n  A(i) = X(i) %% 2.5", d ? "double" : "float");
    for (int bi = 0; bi < NUM_BUILTINS; bi++) {
      buf_printf(&b, " + %s(X(i)", builtin_info[bi].name);
      for (int k = 1; k < builtin_info[bi].arity; k++)
        buf_puts(&b, ", X(i)");
      buf_puts(&b, ")");
    }
    buf_puts(&b, "\n  J(i) = I(i) / 3 + I(i) % 5\n}\n");
    strict_build(b.s);
    buf_free(&b);
  }
  strict_build("def mm(float(M,K) A, float(K,N) B) -> (C) {\n  C(m,n) +=! A(m,k) * B(k,n)\n}\n");
}

RUN_TESTS()
