/*
 * jit.c — C source to shared object, by running the system C compiler.
 *
 * The compiler is `$CC` (cfg->cc): a command that may hold several words
 * ("ccache gcc", "clang -fcolor-diagnostics"), split on spaces and run with
 * posix_spawn — never through a shell, so nothing in a path or a flag is
 * interpreted.  The source goes to a temporary file next to the output; the
 * compiler's stdout and stderr go to a pipe whose text becomes the error
 * message when it fails, together with the command line.  With `verbose`
 * the exact command is printed to stderr first (chibicc's -###).
 *
 * Flags: -O3 -march=native for speed; -fwrapv because TC integers wrap;
 * -fno-math-errno so math calls vectorize; -ffp-contract=off so that a*b+c
 * rounds twice, as in the interpreter (a fused multiply-add only where the
 * IR asks for one, with fma()); -fopenmp-simd so that the `#pragma omp simd`
 * loops the scheduler marks vectorize (with their reduction clauses, and
 * glibc's libmvec for `declare simd` math functions, which -lm brings in)
 * without the OpenMP run time; -fno-tree-loop-distribute-patterns so that
 * the short copy loops of packed panels stay inline vector code rather
 * than calls to memcpy; -fvect-cost-model=very-cheap so that the compiler
 * vectorizes on its own only loops that need no run-time versions (the
 * loops that matter are `omp simd`, vectorized whatever the cost model):
 * generic-stride fallbacks stay small, which halves the compile time of
 * tiled kernels; -nostdlib, then only -lm: the kernel needs no start
 * files, its C needs no libgcc helper (64-bit integers, no long double or
 * __int128), and the few libc functions it calls (aligned_alloc, free) are
 * found at dlopen in libc, which every process has loaded — linking
 * against libc.so, libgcc and the start files took half of ld's time
 * (sanitizer flags in $TENSORC_CFLAGS still bring their run-time library).
 *
 * jit_identity names what the compiled code depends on besides its source:
 * the compiler binary (resolved path, size, mtime — cheap, no process
 * spawned), the flags, the CPU (for -march=native), tensorc's version and
 * kernel ABI.  The cache keys on it, so a compiler upgrade misses the cache.
 * jit_self_identity names tensorc's own code (the shared object or program
 * holding it: path, size, mtime, inode): the program-level cache key, which
 * skips lowering, includes it, so a rebuilt tensorc lowers again.
 */
#include "tc.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define JIT_FLAGS                                                             \
  "-fopenmp-simd", "-fno-tree-loop-distribute-patterns",                      \
      "-fvect-cost-model=very-cheap", "-std=c11", "-O3", "-march=native",     \
      "-fwrapv", "-fno-math-errno", "-ffp-contract=off", "-fPIC", "-shared",  \
      "-nostdlib"
#define JIT_FLAGS_TEXT                                                        \
  "-fopenmp-simd -fno-tree-loop-distribute-patterns "                         \
  "-fvect-cost-model=very-cheap -std=c11 -O3 -march=native -fwrapv "          \
  "-fno-math-errno -ffp-contract=off -fPIC -shared -nostdlib"
#define MAX_OUTPUT 65536 /* compiler output kept for the message */

/* A command split into words; `buf` holds the words' text. */
typedef struct Argv {
  char **v;
  int n, cap;
  char *buf;
} Argv;

static bool argv_push(Argv *a, char *s) {
  if (a->n + 2 > a->cap) {
    int cap = a->cap ? a->cap * 2 : 32;
    char **v = realloc(a->v, (size_t)cap * sizeof *v);
    if (!v)
      return false;
    a->v = v;
    a->cap = cap;
  }
  a->v[a->n++] = s;
  a->v[a->n] = NULL;
  return true;
}

/* Splits `s` on spaces and tabs into words that point into `*store`
 * (a malloc'ed copy the caller frees). */
static bool split_words(Argv *a, const char *s, char **store) {
  *store = strdup(s ? s : "");
  if (!*store)
    return false;
  for (char *p = *store; *p;) {
    while (*p == ' ' || *p == '\t')
      *p++ = '\0';
    if (!*p)
      break;
    if (!argv_push(a, p))
      return false;
    while (*p && *p != ' ' && *p != '\t')
      p++;
  }
  return true;
}

static void argv_free(Argv *a) {
  free(a->v);
  memset(a, 0, sizeof *a);
}

/* Finds `name` as execvp would: as given when it holds a '/', else in $PATH.
 * Writes the path of an executable regular file to `out`. */
static bool resolve_program(const char *name, char *out, size_t cap) {
  struct stat st;
  if (!*name)
    return false;
  if (strchr(name, '/')) {
    if (stat(name, &st) || !S_ISREG(st.st_mode) || access(name, X_OK))
      return false;
    snprintf(out, cap, "%s", name);
    return true;
  }
  const char *path = getenv("PATH");
  if (!path || !*path)
    path = "/usr/local/bin:/usr/bin:/bin";
  for (const char *p = path;;) {
    const char *q = strchr(p, ':');
    size_t n = q ? (size_t)(q - p) : strlen(p);
    int len = n ? snprintf(out, cap, "%.*s/%s", (int)n, p, name)
                : snprintf(out, cap, "%s", name); /* empty entry: cwd */
    if (len > 0 && (size_t)len < cap && !stat(out, &st) && S_ISREG(st.st_mode) &&
        !access(out, X_OK))
      return true;
    if (!q)
      return false;
    p = q + 1;
  }
}

/* Appends the command line, quoting words with spaces or quotes. */
static void print_command(Buf *b, char *const *argv) {
  for (int i = 0; argv[i]; i++) {
    const char *w = argv[i];
    if (i)
      buf_putn(b, " ", 1);
    if (*w && !strpbrk(w, " \t'\"\\$`")) {
      buf_puts(b, w);
      continue;
    }
    buf_putn(b, "'", 1);
    for (; *w; w++)
      if (*w == '\'')
        buf_puts(b, "'\\''");
      else
        buf_putn(b, w, 1);
    buf_putn(b, "'", 1);
  }
}


/* Runs argv[0] (already resolved to `prog`) with stdout and stderr into a
 * pipe; collects the output into `out`.  Returns the wait status, or -1 with
 * errno when the process could not be started. */
static int run_capture(const char *prog, char *const *argv, Buf *out) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC))
    return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  pid_t pid;
  int rc = posix_spawn(&pid, prog, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    errno = rc;
    return -1;
  }
  char chunk[4096];
  for (;;) {
    ssize_t r = read(fds[0], chunk, sizeof chunk);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    if (out->len < MAX_OUTPUT)
      buf_putn(out, chunk, (size_t)r);
  }
  close(fds[0]);
  int status;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR)
      return errno == ECHILD ? 0 : -1; /* SIGCHLD ignored: status unknown */
  }
  return status;
}

/* Builds the argument vector: the compiler's words, the fixed flags, the
 * extra flags, the output and source. */
static bool build_argv(const JitConfig *cfg, const char *so_path, const char *src,
                       Argv *a, char **store1, char **store2) {
  static const char *const flags[] = {JIT_FLAGS};
  if (!split_words(a, cfg->cc ? cfg->cc : "cc", store1))
    return false;
  for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
    if (!argv_push(a, (char *)flags[i]))
      return false;
  if (!split_words(a, cfg->extra_cflags, store2))
    return false;
  return argv_push(a, "-o") && argv_push(a, (char *)so_path) &&
         argv_push(a, (char *)src) && argv_push(a, "-lm");
}

static void trim_trailing_space(Buf *b) {
  while (b->len && (b->s[b->len - 1] == '\n' || b->s[b->len - 1] == ' '))
    b->s[--b->len] = '\0';
}

/* Runs the compiler on `src`; fills err on failure. */
static tc_status compile(const JitConfig *cfg, const char *so_path, const char *src,
                         tc_error *err) {
  Argv a = {0};
  char *store1 = NULL, *store2 = NULL;
  char prog[PATH_MAX];
  Buf cmd = {0}, out = {0};
  tc_status st = TC_OK;
  if (!build_argv(cfg, so_path, src, &a, &store1, &store2)) {
    error_set(err, TC_ERR_NOMEM, NULL, (Loc){0, 0}, "out of memory");
    st = TC_ERR_NOMEM;
    goto done;
  }
  if (a.n < 1 || a.v[0][0] == '-' || !resolve_program(a.v[0], prog, sizeof prog)) {
    error_set(err, TC_ERR_COMPILER, NULL, (Loc){0, 0},
              "C compiler '%s' not found; set $CC", cfg->cc ? cfg->cc : "cc");
    st = TC_ERR_COMPILER;
    goto done;
  }
  print_command(&cmd, a.v);
  if (cfg->verbose)
    fprintf(stderr, "tensorc: %s\n", cmd.s ? cmd.s : "");
  int status = run_capture(prog, a.v, &out);
  if (status < 0) {
    error_set(err, TC_ERR_COMPILER, NULL, (Loc){0, 0}, "cannot run C compiler '%s': %s",
              prog, strerror(errno));
    st = TC_ERR_COMPILER;
  } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    trim_trailing_space(&out);
    char how[64];
    if (WIFEXITED(status))
      snprintf(how, sizeof how, "exit status %d", WEXITSTATUS(status));
    else
      snprintf(how, sizeof how, "signal %d", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    error_set(err, TC_ERR_COMPILER, NULL, (Loc){0, 0}, "C compiler failed (%s): %s\n%s", how,
              cmd.s ? cmd.s : "", out.s ? out.s : "");
    st = TC_ERR_COMPILER;
  } else if (access(so_path, R_OK)) {
    error_set(err, TC_ERR_COMPILER, NULL, (Loc){0, 0}, "C compiler wrote no output: %s",
              cmd.s ? cmd.s : "");
    st = TC_ERR_COMPILER;
  }
done:
  buf_free(&cmd);
  buf_free(&out);
  argv_free(&a);
  free(store1);
  free(store2);
  return st;
}

tc_status jit_build(const JitConfig *cfg, const char *source, size_t len,
                    const char *so_path, tc_error *err) {
  size_t n = strlen(so_path);
  char *src = malloc(n + 16);
  if (!src) {
    error_set(err, TC_ERR_NOMEM, NULL, (Loc){0, 0}, "out of memory");
    return TC_ERR_NOMEM;
  }
  memcpy(src, so_path, n);
  memcpy(src + n, "-XXXXXX.c", 10);
  int fd = mkostemps(src, 2, O_CLOEXEC);
  if (fd < 0) {
    error_set(err, TC_ERR_IO, NULL, (Loc){0, 0}, "cannot create %s: %s", src, strerror(errno));
    free(src);
    return TC_ERR_IO;
  }
  bool ok = util_write_all(fd, source, len);
  int saved = errno;
  close(fd);
  tc_status st;
  if (!ok) {
    error_set(err, TC_ERR_IO, NULL, (Loc){0, 0}, "cannot write %s: %s", src, strerror(saved));
    st = TC_ERR_IO;
  } else {
    st = compile(cfg, so_path, src, err);
  }
  unlink(src);
  free(src);
  return st;
}

/* The CPU's model line (x86 "model name", else the ARM part numbers). */
static void cpu_model(Buf *b) {
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f)
    return;
  char line[512];
  int found = 0;
  while (found < 3 && fgets(line, sizeof line, f)) {
    if (!strncmp(line, "model name", 10) || !strncmp(line, "CPU implementer", 15) ||
        !strncmp(line, "CPU part", 8) || !strncmp(line, "cpu model", 9)) {
      line[strcspn(line, "\n")] = '\0';
      buf_printf(b, "cpu: %s\n", line);
      found += !strncmp(line, "model name", 10) ? 3 : 1;
    }
  }
  fclose(f);
}

char *jit_identity(const JitConfig *cfg) {
  Buf b = {0};
  buf_printf(&b, "tensorc %s abi %d\ncc: %s\n", TC_VERSION, TC_KERNEL_ABI,
             cfg->cc ? cfg->cc : "cc");
  /* every word of the command that names a program: "ccache gcc" */
  Argv a = {0};
  char *store = NULL;
  if (split_words(&a, cfg->cc ? cfg->cc : "cc", &store)) {
    for (int i = 0; i < a.n; i++) {
      char path[PATH_MAX], real[PATH_MAX];
      struct stat st;
      if (a.v[i][0] == '-' || !resolve_program(a.v[i], path, sizeof path))
        continue;
      const char *p = realpath(path, real) ? real : path;
      if (!stat(p, &st))
        buf_printf(&b, "bin: %s %lld %lld.%09ld\n", p, (long long)st.st_size,
                   (long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec);
    }
  }
  argv_free(&a);
  free(store);
  buf_printf(&b, "flags: %s\nextra: %s\n", JIT_FLAGS_TEXT,
             cfg->extra_cflags ? cfg->extra_cflags : "");
  struct utsname u;
  if (!uname(&u))
    buf_printf(&b, "machine: %s\n", u.machine);
  cpu_model(&b);
  return buf_detach(&b);
}

char *jit_self_identity(void) {
  Dl_info info;
  char exe[PATH_MAX];
  const char *path = NULL;
  void *self = (void *)(uintptr_t)jit_self_identity; /* POSIX: code addresses fit a void * */
  if (dladdr(self, &info) && info.dli_fname && info.dli_fname[0] == '/')
    path = info.dli_fname;
  if (!path) { /* the main program (dladdr names it as argv[0] or not at all) */
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
      return NULL;
    exe[n] = '\0';
    path = exe;
  }
  struct stat st;
  if (stat(path, &st))
    return NULL;
  Buf b = {0};
  buf_printf(&b, "self: %s %lld %lld.%09ld %llu\n", path, (long long)st.st_size,
             (long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec,
             (unsigned long long)st.st_ino);
  return buf_detach(&b);
}
