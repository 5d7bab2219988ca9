/* test_cache_program.c — the program-level cache key (cache.c, runtime.c):
 * a repeat prepare of the same program, in the process or from the disk
 * cache of a new context, finds the kernel without lowering
 * (tc_prepare_info.lowered == 0); a change of any input of the key — source
 * text, schedule, entry, constants, compiler flags, compiler command —
 * lowers again and runs the right kernel; failure sites read back from the
 * cache give the same located errors; damaged entries fall back to
 * lowering. */
#include "tc.h"
#include "unit.h"

#include <dirent.h>
#include <unistd.h>

static char *fresh_dir(void) {
  char tmpl[] = "/tmp/tc-test-cachep-XXXXXX";
  char *d = mkdtemp(tmpl);
  return d ? strdup(d) : NULL;
}

static void remove_dir(const char *dir) {
  DIR *d = opendir(dir);
  struct dirent *e;
  while (d && (e = readdir(d))) {
    char path[512];
    if (e->d_name[0] != '.' && snprintf(path, sizeof path, "%s/%s", dir, e->d_name) < 512)
      unlink(path);
  }
  if (d)
    closedir(d);
  rmdir(dir);
}

/* A context on `dir` with these compiler command and extra flags (NULL:
 * the defaults). */
static tc_context *context(const char *dir, const char *cc, const char *cflags) {
  tc_context_options o;
  tc_context_options_init(&o);
  o.cache_dir = dir;
  o.num_threads = 1;
  o.cc = cc;
  o.extra_cflags = cflags;
  tc_context *ctx = NULL;
  tc_error err;
  if (tc_context_new(&o, &ctx, &err) != TC_OK)
    fprintf(stderr, "tc_context_new: %s\n", err.message);
  return ctx;
}

typedef struct Prep {
  tc_status st;
  int source, lowered;
} Prep;

/* Compiles `src` (with constants), prepares `entry`, frees the program. */
static Prep prepare_ex(tc_context *ctx, const char *src, const tc_constant *k, int nk,
                       int entry) {
  tc_program *p = NULL;
  tc_error err;
  Prep r = {TC_ERR_ARGUMENT, -1, -1};
  if (!ctx || tc_compile_ex(ctx, "prog.tc", src, strlen(src), k, nk, &p, &err) != TC_OK) {
    fprintf(stderr, "compile: %s\n", ctx ? err.diagnostic : "no context");
    return r;
  }
  tc_prepare_info info;
  r.st = tc_prepare(p, entry, &info, &err);
  r.source = info.source;
  r.lowered = info.lowered;
  tc_program_free(p);
  return r;
}

static Prep prepare(tc_context *ctx, const char *src) { return prepare_ex(ctx, src, NULL, 0, 0); }

/* Runs entry 0 on X = {1, 2, 3} and returns Y[1]. */
static double run_x(tc_context *ctx, const char *src, const tc_constant *k, int nk) {
  tc_program *p = NULL;
  tc_error err;
  if (!ctx || tc_compile_ex(ctx, "prog.tc", src, strlen(src), k, nk, &p, &err) != TC_OK)
    return -1e30;
  float X[3] = {1, 2, 3}, Y[3] = {0};
  int64_t n[1] = {3};
  DLTensor x = {X, {kDLCPU, 0}, 1, tc_dtype_to_dl(TC_FLOAT32), n, NULL, 0};
  DLTensor y = {Y, {kDLCPU, 0}, 1, tc_dtype_to_dl(TC_FLOAT32), n, NULL, 0};
  DLTensor *in[1] = {&x}, *out[1] = {&y};
  tc_status st = tc_run(p, 0, in, 1, out, 1, TC_TARGET_C, &err);
  if (st)
    fprintf(stderr, "run: %s\n", err.message);
  tc_program_free(p);
  return st ? -1e30 : Y[1];
}

static const char *scale_src = "def scale(float(N) X) -> (Y) {\n"
                               "    Y(i) = X(i) * 3.0\n"
                               "}\n";

TEST(repeat_and_disk_skip_lowering) {
  char *dir = fresh_dir();
  tc_context *ctx = context(dir, NULL, NULL);
  Prep a = prepare(ctx, scale_src);
  CHECK_INT(a.st, TC_OK);
  CHECK_INT(a.source, 0);
  CHECK_INT(a.lowered, 1);
  Prep b = prepare(ctx, scale_src); /* a new program, same text: memory */
  CHECK_INT(b.st, TC_OK);
  CHECK_INT(b.source, 1);
  CHECK_INT(b.lowered, 0);
  tc_context_free(ctx);
  ctx = context(dir, NULL, NULL); /* a new context: disk */
  Prep c = prepare(ctx, scale_src);
  CHECK_INT(c.st, TC_OK);
  CHECK_INT(c.source, 2);
  CHECK_INT(c.lowered, 0);
  CHECK(run_x(ctx, scale_src, NULL, 0) == 6.0);
  tc_context_free(ctx);
  remove_dir(dir);
  free(dir);
}

TEST(source_text_and_schedule_are_in_the_key) {
  char *dir = fresh_dir();
  tc_context *ctx = context(dir, NULL, NULL);
  CHECK_INT(prepare(ctx, scale_src).lowered, 1);
  /* a comment only: the same C, but a new key (failure sites move with the
   * text), so it lowers and finds the kernel by its C */
  char text[512];
  snprintf(text, sizeof text, "# scaled\n%s", scale_src);
  Prep a = prepare(ctx, text);
  CHECK_INT(a.lowered, 1);
  CHECK_INT(a.source, 1);
  /* another constant in the body: another kernel, compiled */
  const char *times4 = "def scale(float(N) X) -> (Y) {\n"
                       "    Y(i) = X(i) * 4.0\n"
                       "}\n";
  Prep b = prepare(ctx, times4);
  CHECK_INT(b.lowered, 1);
  CHECK_INT(b.source, 0);
  CHECK(run_x(ctx, times4, NULL, 0) == 8.0);
  /* a schedule after the def: a new key and new C */
  snprintf(text, sizeof text, "%sschedule scale {\n    Y.split(i, io, ii, 8)\n}\n", scale_src);
  Prep c = prepare(ctx, text);
  CHECK_INT(c.st, TC_OK);
  CHECK_INT(c.lowered, 1);
  CHECK_INT(c.source, 0);
  CHECK(run_x(ctx, text, NULL, 0) == 6.0);
  tc_context_free(ctx);
  remove_dir(dir);
  free(dir);
}

TEST(entry_is_in_the_key) {
  const char *two = "def add1(float(N) X) -> (Y) {\n"
                    "    Y(i) = X(i) + 1.0\n"
                    "}\n"
                    "def add2(float(N) X) -> (Y) {\n"
                    "    Y(i) = X(i) + 2.0\n"
                    "}\n";
  char *dir = fresh_dir();
  tc_context *ctx = context(dir, NULL, NULL);
  CHECK_INT(prepare_ex(ctx, two, NULL, 0, 0).lowered, 1);
  Prep b = prepare_ex(ctx, two, NULL, 0, 1);
  CHECK_INT(b.lowered, 1);
  CHECK_INT(b.source, 0);
  CHECK_INT(prepare_ex(ctx, two, NULL, 0, 1).lowered, 0);
  tc_context_free(ctx);
  remove_dir(dir);
  free(dir);
}

TEST(constants_are_in_the_key) {
  const char *src = "def scale(float(N) X, float alpha) -> (Y) {\n"
                    "    Y(i) = X(i) * alpha\n"
                    "}\n";
  tc_constant two = {"alpha", 1, 0, 2.0}, five = {"alpha", 1, 0, 5.0};
  char *dir = fresh_dir();
  tc_context *ctx = context(dir, NULL, NULL);
  CHECK_INT(prepare_ex(ctx, src, &two, 1, 0).lowered, 1);
  CHECK_INT(prepare_ex(ctx, src, &two, 1, 0).lowered, 0);
  Prep b = prepare_ex(ctx, src, &five, 1, 0);
  CHECK_INT(b.lowered, 1);
  CHECK_INT(b.source, 0);
  CHECK(run_x(ctx, src, &two, 1) == 4.0);
  CHECK(run_x(ctx, src, &five, 1) == 10.0);
  tc_context_free(ctx);
  ctx = context(dir, NULL, NULL);
  CHECK(run_x(ctx, src, &five, 1) == 10.0);
  CHECK(run_x(ctx, src, &two, 1) == 4.0);
  tc_context_free(ctx);
  remove_dir(dir);
  free(dir);
}

TEST(compiler_and_flags_are_in_the_key) {
  char *dir = fresh_dir();
  tc_context *ctx = context(dir, NULL, NULL);
  CHECK_INT(prepare(ctx, scale_src).lowered, 1);
  tc_context_free(ctx);
  ctx = context(dir, NULL, "-DTC_TEST_FLAG=1");
  Prep a = prepare(ctx, scale_src);
  CHECK_INT(a.lowered, 1);
  CHECK_INT(a.source, 0);
  tc_context_free(ctx);
  /* the same compiler under another command: the identity names both */
  const char *cc = getenv("CC");
  char cmd[256];
  snprintf(cmd, sizeof cmd, "%s -DTC_TEST_CC=1", cc && *cc ? cc : "cc");
  ctx = context(dir, cmd, NULL);
  Prep b = prepare(ctx, scale_src);
  CHECK_INT(b.lowered, 1);
  CHECK_INT(b.source, 0);
  tc_context_free(ctx);
  ctx = context(dir, NULL, NULL);
  CHECK_INT(prepare(ctx, scale_src).lowered, 0);
  tc_context_free(ctx);
  remove_dir(dir);
  free(dir);
}

/* tensorc's own code is named in the key: a rebuilt tensorc lowers again. */
TEST(self_identity) {
  char *a = jit_self_identity(), *b = jit_self_identity();
  CHECK(a != NULL);
  CHECK_STR(a, b);
  char exe[512];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    CHECK(a && strstr(a, exe) != NULL); /* libtensorc.a is linked in */
  }
  free(a);
  free(b);
}

static const char *shift_src = "def shift(float(N) A) -> (B) {\n"
                               "    B(i) = A(i + 2) where i in 0:N\n"
                               "}\n";

/* Runs shift on 5 elements (it fails: reads A(6)); the error's line. */
static int shift_error_line(tc_context *ctx, const char *src, int *lowered) {
  tc_program *p = NULL;
  tc_error err;
  if (tc_compile(ctx, "prog.tc", src, strlen(src), &p, &err) != TC_OK)
    return -1;
  tc_prepare_info info;
  tc_prepare(p, 0, &info, &err);
  *lowered = info.lowered;
  float A[5] = {0}, B[5];
  int64_t n[1] = {5};
  DLTensor a = {A, {kDLCPU, 0}, 1, tc_dtype_to_dl(TC_FLOAT32), n, NULL, 0};
  DLTensor b = {B, {kDLCPU, 0}, 1, tc_dtype_to_dl(TC_FLOAT32), n, NULL, 0};
  DLTensor *in[1] = {&a}, *out[1] = {&b};
  int line = -1;
  if (tc_run(p, 0, in, 1, out, 1, TC_TARGET_C, &err) == TC_ERR_RUNTIME &&
      !strcmp(err.message, "with these sizes the read of A dim 0 reaches index 6, but its "
                           "size is 5 (check the where clause)") &&
      err.col == 12)
    line = err.line;
  tc_program_free(p);
  return line;
}

TEST(failure_sites_from_the_cache) {
  char *dir = fresh_dir();
  tc_context *ctx = context(dir, NULL, NULL);
  int lowered = -1;
  CHECK_INT(shift_error_line(ctx, shift_src, &lowered), 2);
  CHECK_INT(lowered, 1);
  tc_context_free(ctx);
  ctx = context(dir, NULL, NULL);
  CHECK_INT(shift_error_line(ctx, shift_src, &lowered), 2);
  CHECK_INT(lowered, 0);
  /* two lines down: the same C kernel, the sites of the new text */
  char text[256];
  snprintf(text, sizeof text, "\n\n%s", shift_src);
  CHECK_INT(shift_error_line(ctx, text, &lowered), 4);
  CHECK_INT(lowered, 1);
  tc_context_free(ctx);
  remove_dir(dir);
  free(dir);
}

/* Applies `damage` to every `.tcp` (or `.so`) entry in dir. */
static int damage_entries(const char *dir, const char *ext, int how) {
  DIR *d = opendir(dir);
  struct dirent *e;
  int count = 0;
  while (d && (e = readdir(d))) {
    size_t n = strlen(e->d_name), m = strlen(ext);
    char path[512];
    if (n < m || strcmp(e->d_name + n - m, ext) ||
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= 512)
      continue;
    if (how == 0) {
      unlink(path);
    } else {
      FILE *f = fopen(path, "r+b");
      if (!f)
        continue;
      fseek(f, 20, SEEK_SET); /* inside the metadata text */
      fputc('#', f);
      fclose(f);
    }
    count++;
  }
  if (d)
    closedir(d);
  return count;
}

TEST(damaged_entries_fall_back_to_lowering) {
  char *dir = fresh_dir();
  tc_context *ctx = context(dir, NULL, NULL);
  CHECK_INT(prepare(ctx, scale_src).lowered, 1);
  tc_context_free(ctx);
  CHECK_INT(damage_entries(dir, ".tcp", 1), 1); /* checksum fails: removed */
  ctx = context(dir, NULL, NULL);
  Prep a = prepare(ctx, scale_src);
  CHECK_INT(a.lowered, 1);
  CHECK_INT(a.source, 2); /* the kernel itself is fine */
  CHECK(run_x(ctx, scale_src, NULL, 0) == 6.0);
  tc_context_free(ctx);
  CHECK_INT(damage_entries(dir, ".so", 0), 1); /* the kernel gone, its alias kept */
  ctx = context(dir, NULL, NULL);
  Prep b = prepare(ctx, scale_src);
  CHECK_INT(b.lowered, 1);
  CHECK_INT(b.source, 0);
  CHECK(run_x(ctx, scale_src, NULL, 0) == 6.0);
  tc_context_free(ctx);
  ctx = context(dir, NULL, NULL); /* and both rewritten */
  CHECK_INT(prepare(ctx, scale_src).lowered, 0);
  tc_context_free(ctx);
  remove_dir(dir);
  free(dir);
}

/* Memory only (no disk cache): the in-process repeat still skips lowering. */
TEST(memory_only_context) {
  tc_context_options o;
  tc_context_options_init(&o);
  o.disk_cache = 0;
  o.num_threads = 1;
  tc_context *ctx = NULL;
  tc_error err;
  CHECK_INT(tc_context_new(&o, &ctx, &err), TC_OK);
  CHECK_INT(prepare(ctx, scale_src).lowered, 1);
  Prep b = prepare(ctx, scale_src);
  CHECK_INT(b.lowered, 0);
  CHECK_INT(b.source, 1);
  CHECK(run_x(ctx, scale_src, NULL, 0) == 6.0);
  tc_context_free(ctx);
}

RUN_TESTS()

/* The unit-stride kernel and the generic one (specialize.c, runtime.c): a
 * transposed output runs the generic kernel after the unit-stride one
 * stopped at its layout check; row-major runs before and after it use the
 * unit-stride kernel. */
TEST(layout_variants) {
  const char *src = "def twice(float(M,N) A) -> (O) {\n"
                    "    O(i,j) = A(i,j) * 2.0\n"
                    "}\n";
  char *dir = fresh_dir();
  tc_context *ctx = context(dir, NULL, NULL);
  tc_program *p = NULL;
  tc_error err;
  CHECK_INT(tc_compile(ctx, "twice.tc", src, strlen(src), &p, &err), TC_OK);
  if (!p) {
    tc_context_free(ctx);
    remove_dir(dir);
    free(dir);
    return;
  }
  char *c = NULL;
  CHECK_INT(tc_emit(p, 0, TC_TARGET_C, &c, &err), TC_OK);
  CHECK(c && strstr(c, "a->rt->fail(a->rt, ") != NULL); /* the layout check */
  tc_free(c);
  enum { M = 5, N = 37 };
  float A[M * N], O[M * N];
  for (int i = 0; i < M * N; i++)
    A[i] = (float)(i % 13) - 6.0f;
  int64_t sa[2] = {M, N}, so[2] = {M, N}, st[2] = {1, M};
  for (int layout = 0; layout < 3; layout++) { /* row-major, transposed, row-major */
    for (int i = 0; i < M * N; i++)
      O[i] = -100.0f;
    DLTensor a = {A, {kDLCPU, 0}, 2, tc_dtype_to_dl(TC_FLOAT32), sa, NULL, 0};
    DLTensor o = {O, {kDLCPU, 0}, 2, tc_dtype_to_dl(TC_FLOAT32), so, layout == 1 ? st : NULL, 0};
    DLTensor *in[1] = {&a}, *out[1] = {&o};
    CHECK_INT(tc_run(p, 0, in, 1, out, 1, TC_TARGET_C, &err), TC_OK);
    int bad = 0;
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++)
        bad += O[layout == 1 ? j * M + i : i * N + j] != 2.0f * A[i * N + j];
    CHECK_INT(bad, 0);
  }
  tc_program_free(p);
  tc_context_free(ctx);
  remove_dir(dir);
  free(dir);
}
