/* test_lower.c — lowering, scheduling, flattening and the C back end on real
 * programs: golden IR after lowering (tests/golden/NAME.tc -> NAME.ir; run
 * with TC_UPDATE_GOLDEN=1 to rewrite them), structural checks on the passes,
 * and programs compiled with the real JIT flags and run on small arrays
 * against values computed by hand, through a minimal runtime (a serial
 * parallel_for cutting ranges in chunks, a failure recorder). */
#include "tc.h"
#include "unit.h"
#include "front.h"

#include <dlfcn.h>
#include <math.h>
#include <unistd.h>

/* ---- compiling a source ---- */

typedef struct Prog {
  Arena arena;
  jmp_buf jmp;
  tc_error err;
  Ctx c;
  SrcFile file;
  Def *d;
  IRFunc *f;
  char *lowered; /* ir_print_func after lower_def */
  char *dump;    /* after every pass */
  char *source;  /* generated C */
  void *so;
  tc_kernel_fn fn;
} Prog;

/* Parses, checks and lowers `entry` of `src`; with `build`, also emits and
 * loads the kernel.  Returns false (printing why) on failure. */
static bool prog_open(Prog *P, const char *src, const char *entry, bool build) {
  memset(P, 0, sizeof *P);
  front_init(&P->c, &P->arena, &P->err, &P->jmp, &P->file, src);
  if (setjmp(P->jmp)) {
    fprintf(stderr, "%s\n", P->err.diagnostic);
    return false;
  }
  Ctx *c = &P->c;
  P->d = front_def(c, entry);
  if (!P->d)
    return false;
  Buf b = {0};
  IRFunc *lowered = lower_def(c, P->d);
  ir_verify(c, lowered, "lower");
  ir_print_func(&b, lowered);
  P->lowered = arena_strdup(c->arena, b.s ? b.s : "");
  buf_free(&b);
  P->f = pipeline_run(c, P->d, &b);
  P->dump = arena_strdup(c->arena, b.s ? b.s : "");
  buf_free(&b);
  if (!build)
    return true;
  emitc_func(c, P->f, &b);
  P->source = arena_strdup(c->arena, b.s ? b.s : "");
  buf_free(&b);

  P->fn = front_load(P->source, &P->so);
  return P->fn != NULL;
}

static void prog_close(Prog *P) {
  if (P->so)
    dlclose(P->so);
  arena_free(&P->arena);
}

/* ---- a minimal runtime ---- */

typedef struct TestRT {
  tc_krt rt;
  int nfail, site;
  int64_t value, bound;
} TestRT;

static void rt_parallel_for(tc_krt *rt, tc_task_fn task, const void *args, int64_t lo,
                            int64_t hi) {
  (void)rt;
  int64_t step = (hi - lo + 2) / 3;
  for (int64_t s = lo; s < hi; s += step)
    task(args, s, s + step < hi ? s + step : hi);
}

static void rt_fail(tc_krt *rt, int site, int64_t value, int64_t bound) {
  TestRT *t = (TestRT *)rt;
  if (!t->nfail++) {
    t->site = site;
    t->value = value;
    t->bound = bound;
  }
  rt->failed = 1;
}

/* Tensors for a run, by tensor id: data, shape (inputs: given; outputs:
 * checked against inference), optional strides (0 rank => compact). */
typedef struct Run {
  void *data[8];
  int64_t shape[8][TC_MAX_RANK];
  int64_t stride[8][TC_MAX_RANK];
  bool strided[8];
  void *temps[8];
  TestRT rt;
} Run;

/* Runs P's kernel: sizes from the inputs, output extents checked against
 * range inference, temporaries allocated.  Returns the kernel's status, or
 * -1 when the outputs given do not have the inferred shape. */
static int prog_run(Prog *P, Run *r) {
  Def *d = P->d;
  int64_t sizes[16] = {0}, shape[64], stride[64];
  for (int i = 0; i < d->nsyms; i++)
    sizes[i] = r->shape[d->syms[i]->tensor->id][d->syms[i]->dim];
  for (int i = d->ninputs; i < d->ntensors; i++) {
    Tensor *t = d->tensors[i];
    for (int k = 0; k < t->rank; k++) {
      int64_t v;
      if (!ir_eval_int(t->size[k], sizes, &v))
        return -1;
      if (t->role == T_TEMP)
        r->shape[i][k] = v;
      else if (r->shape[i][k] != v) {
        fprintf(stderr, "output %s dim %d: inferred %lld, given %lld\n", t->name, k,
                (long long)v, (long long)r->shape[i][k]);
        return -1;
      }
    }
    if (t->role == T_TEMP) {
      int64_t n = 1;
      for (int k = 0; k < t->rank; k++)
        n *= r->shape[i][k];
      r->temps[i] = r->data[i] = calloc((size_t)(n ? n : 1), (size_t)dtype_info[t->dtype].size);
    }
  }
  for (int i = 0; i < d->ntensors; i++) {
    Buffer *b = P->f->bufs[i];
    int64_t s = 1;
    for (int k = b->rank - 1; k >= 0; k--) {
      shape[b->dim_offset + k] = r->shape[i][k];
      stride[b->dim_offset + k] = r->strided[i] ? r->stride[i][k] : s;
      s *= r->shape[i][k];
    }
  }
  memset(&r->rt, 0, sizeof r->rt);
  r->rt.rt.parallel_for = rt_parallel_for;
  r->rt.rt.fail = rt_fail;
  r->rt.site = -1;
  tc_kargs a = {r->data, shape, stride, sizes, &r->rt.rt};
  int st = P->fn(&a);
  for (int i = 0; i < 8; i++) {
    free(r->temps[i]);
    r->temps[i] = NULL;
  }
  return st;
}

static void set1(Run *r, int id, void *data, int64_t n) {
  r->data[id] = data;
  r->shape[id][0] = n;
}

static void set2(Run *r, int id, void *data, int64_t n0, int64_t n1) {
  r->data[id] = data;
  r->shape[id][0] = n0;
  r->shape[id][1] = n1;
}

/* ---- golden IR ---- */

static char *read_file(const char *path) {
  FILE *fp = fopen(path, "rb");
  if (!fp)
    return NULL;
  Buf b = {0};
  char tmp[4096];
  size_t n;
  while ((n = fread(tmp, 1, sizeof tmp, fp)) > 0)
    buf_putn(&b, tmp, n);
  fclose(fp);
  return buf_detach(&b);
}

/* tests/golden from the repository root (where `make` runs tests), else
 * next to this file. */
static char *golden_path(const char *name, const char *ext) {
  static char path[512]; /* test-only scratch */
  snprintf(path, sizeof path, "tests/golden/%s.%s", name, ext);
  if (access(path, R_OK) == 0 || access("tests/golden", F_OK) == 0)
    return path;
  const char *me = __FILE__, *slash = strrchr(me, '/');
  snprintf(path, sizeof path, "%.*s/../golden/%s.%s", slash ? (int)(slash - me) : 1,
           slash ? me : ".", name, ext);
  return path;
}

static void golden(const char *name, const char *entry) {
  char *src = read_file(golden_path(name, "tc"));
  CHECK(src != NULL);
  if (!src)
    return;
  Prog P;
  bool ok = prog_open(&P, src, entry, false);
  CHECK(ok);
  if (ok) {
    const char *path = golden_path(name, "ir");
    if (getenv("TC_UPDATE_GOLDEN")) {
      FILE *fp = fopen(path, "wb");
      CHECK(fp != NULL);
      if (fp) {
        fputs(P.lowered, fp);
        fclose(fp);
      }
    }
    char *want = read_file(path);
    CHECK(want != NULL);
    if (want && strcmp(want, P.lowered))
      fprintf(stderr, "golden %s differs:\n--- got:\n%s--- expected:\n%s", name, P.lowered, want);
    CHECK(want && !strcmp(want, P.lowered));
    free(want);
  }
  prog_close(&P);
  free(src);
}

TEST(golden_matmul) { golden("matmul", "matmul"); }
TEST(golden_conv_constant_boundary) { golden("conv_same", "conv_same"); }
TEST(golden_gather) { golden("gather", "gather"); }
TEST(golden_softmax_temps) { golden("softmax", "softmax"); }
TEST(golden_zero_fill) { golden("shift", "shift"); }
TEST(golden_where_check) { golden("where_check", "add_prefix"); }
TEST(golden_blur_clamp) { golden("blur", "blur"); }

/* ---- the passes' shape ---- */

TEST(pass_dump_and_schedule) {
  Prog P;
  bool ok = prog_open(&P,
                      "def mm(float(M,K) A, float(K,N) B) -> (C) { C(m,n) +=! A(m,k) * B(k,n) }\n"
                      "def add(float(M,N) A, float(M,N) B) -> (C) { C(i,j) = A(i,j) + B(i,j) }\n",
                      "add", false);
  CHECK(ok);
  if (ok) {
    CHECK(strstr(P.dump, "== after lower\n"));
    CHECK(strstr(P.dump, "== after schedule\n"));
    CHECK(strstr(P.dump, "== after flatten\n"));
    CHECK(strstr(P.dump, "== after simplify\n"));
    CHECK(strstr(P.dump, "for x0_i in [0, z_M) parallel {"));
    CHECK(strstr(P.dump, "for x0_j in [0, z_N) vectorized {"));
    CHECK(strstr(P.dump, "b_C[x0_i * b_C_s0 + x0_j * b_C_s1] = "));
  }
  prog_close(&P);
  ok = prog_open(&P,
                 "def mm(float(M,K) A, float(K,N) B) -> (C) { C(m,n) +=! A(m,k) * B(k,n) }\n"
                 "def tot(float(N) A) -> (s) { s +=! A(i) }\n",
                 "tot", false);
  CHECK(ok);
  if (ok) { /* a reduction loop is never parallel */
    CHECK(!strstr(P.dump, "parallel"));
    CHECK(strstr(P.dump, "b_s[0] = acc0"));
  }
  prog_close(&P);
}

TEST(user_names_are_mangled) {
  Prog P;
  /* a tensor named like another's extent variable, and C keywords */
  bool ok = prog_open(&P,
                      "def f(float(N) A, float(N) A_n0, float(N) int) -> (return) {\n"
                      "  return(i) = A(i) + A_n0(i) + int(i)\n}\n",
                      "f", true);
  CHECK(ok);
  if (ok) {
    CHECK(strstr(P.source, "b_A_n0_1"));
    CHECK(strstr(P.source, "b_return"));
    float a[3] = {1, 2, 3}, b[3] = {10, 20, 30}, c3[3] = {100, 200, 300}, o[3];
    Run r = {0};
    set1(&r, 0, a, 3);
    set1(&r, 1, b, 3);
    set1(&r, 2, c3, 3);
    set1(&r, 3, o, 3);
    CHECK_INT(prog_run(&P, &r), 0);
    CHECK(o[0] == 111 && o[1] == 222 && o[2] == 333);
  }
  prog_close(&P);
}

/* ---- compiled and run ---- */

TEST(run_matmul_strided) {
  Prog P;
  bool ok = prog_open(&P,
                      "def mm(float(M,K) A, float(K,N) B) -> (C) { C(m,n) +=! A(m,k) * B(k,n) }",
                      "mm", true);
  CHECK(ok);
  if (!ok) {
    prog_close(&P);
    return;
  }
  enum { M = 7, K = 5, N = 4 };
  float a[M * K], bt[N * K], c[M * N];
  for (int i = 0; i < M * K; i++)
    a[i] = (float)((i * 7) % 11) - 5.0f;
  for (int i = 0; i < N * K; i++)
    bt[i] = (float)((i * 3) % 7) * 0.25f;
  Run r = {0};
  set2(&r, 0, a, M, K);
  set2(&r, 1, bt, K, N); /* B(k,n) = bt[n*K + k]: a transposed view */
  r.strided[1] = true;
  r.stride[1][0] = 1;
  r.stride[1][1] = K;
  set2(&r, 2, c, M, N);
  CHECK_INT(prog_run(&P, &r), 0);
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      float s = 0;
      for (int k = 0; k < K; k++)
        s += a[i * K + k] * bt[j * K + k];
      CHECK(c[i * N + j] == s);
    }
  prog_close(&P);
}

TEST(run_int_floor_division) {
  Prog P;
  bool ok = prog_open(&P,
                      "def dm(int32(N) A, int32(N) B) -> (Q, R) {\n"
                      "  Q(i) = A(i) / B(i)\n  R(i) = A(i) % B(i)\n}\n",
                      "dm", true);
  CHECK(ok);
  if (ok) {
    int32_t a[] = {-7, 7, -7, 7, 5, INT32_MIN, -1}, b[] = {2, -2, -2, 2, 0, -1, 3};
    int32_t q[7], r7[7];
    int32_t wq[] = {-4, -4, 3, 3, 0, INT32_MIN, -1}, wr[] = {1, -1, -1, 1, 0, 0, 2};
    Run r = {0};
    set1(&r, 0, a, 7);
    set1(&r, 1, b, 7);
    set1(&r, 2, q, 7);
    set1(&r, 3, r7, 7);
    CHECK_INT(prog_run(&P, &r), 0);
    for (int i = 0; i < 7; i++) {
      CHECK_INT(q[i], wq[i]);
      CHECK_INT(r7[i], wr[i]);
    }
  }
  prog_close(&P);
}

TEST(run_int8_wraps) {
  Prog P;
  bool ok = prog_open(&P,
                      "def w(int8(N) A, int8(N) B) -> (O, P) {\n"
                      "  O(i) = A(i) * B(i) + 1\n  P(i) = -A(i) / B(i)\n}\n",
                      "w", true);
  CHECK(ok);
  if (ok) {
    int8_t a[] = {100, -128, 7, -128}, b[] = {3, 1, -2, -1}, p[4];
    int32_t o[4]; /* int8 * int8 + int32 literal: int32, after an int8 product */
    Run r = {0};
    set1(&r, 0, a, 4);
    set1(&r, 1, b, 4);
    set1(&r, 2, o, 4);
    set1(&r, 3, p, 4);
    CHECK_INT(prog_run(&P, &r), 0);
    CHECK_INT(o[0], (int8_t)(300 + 1)); /* 45 */
    CHECK_INT(o[1], -127);
    CHECK_INT(o[2], -13);
    CHECK_INT(p[1], -128); /* -(-128) wraps to -128, / 1 */
    CHECK_INT(p[2], 3);    /* -7 / -2 = 3.5 -> 3 */
    CHECK_INT(p[3], -128); /* -128 / -1 wraps */
  }
  prog_close(&P);
}

TEST(run_float16_round_trip) {
  Prog P;
  bool ok = prog_open(&P,
                      "def h(float(N) A) -> (float16(N) H, F) {\n"
                      "  H(i) = float16(A(i))\n  F(i) = float(H(i))\n}\n",
                      "h", true);
  CHECK(ok);
  if (ok) {
    float a[] = {0.1f, 65519.0f, 65520.0f, 2049.0f, 3e-8f, -1.5f};
    uint16_t h[6], hw[] = {0x2e66, 0x7bff, 0x7c00, 0x6800, 0x0001, 0xbe00};
    float f[6];
    Run r = {0};
    set1(&r, 0, a, 6);
    set1(&r, 1, h, 6);
    set1(&r, 2, f, 6);
    CHECK_INT(prog_run(&P, &r), 0);
    for (int i = 0; i < 6; i++)
      CHECK_INT(h[i], hw[i]);
    CHECK(f[0] == 0.0999755859375f && f[1] == 65504.0f && isinf(f[2]) && f[3] == 2048.0f);
    CHECK(f[4] == 0x1p-24f && f[5] == -1.5f);
  }
  prog_close(&P);
}

TEST(run_nan_min_max) {
  Prog P;
  bool ok = prog_open(&P,
                      "def mm(float(N) A, float(N) B, float(R,N) X) -> (O, P, F, Mx) {\n"
                      "  O(i) = min(A(i), B(i))\n  P(i) = max(A(i), B(i))\n"
                      "  F(i) = fmin(A(i), B(i))\n  Mx(i) max=! X(r,i)\n}\n",
                      "mm", true);
  CHECK(ok);
  if (ok) {
    float a[] = {NAN, 1, 2}, b[] = {1, NAN, 3}, x[] = {1, 5, -1, NAN, 2, -7};
    float o[3], p[3], f[3], mx[3];
    Run r = {0};
    set1(&r, 0, a, 3);
    set1(&r, 1, b, 3);
    set2(&r, 2, x, 2, 3);
    set1(&r, 3, o, 3);
    set1(&r, 4, p, 3);
    set1(&r, 5, f, 3);
    set1(&r, 6, mx, 3);
    CHECK_INT(prog_run(&P, &r), 0);
    CHECK(isnan(o[0]) && isnan(o[1]) && o[2] == 2);
    CHECK(isnan(p[0]) && isnan(p[1]) && p[2] == 3);
    CHECK(f[0] == 1 && f[1] == 1 && f[2] == 2);
    CHECK(isnan(mx[0]) && mx[1] == 5 && mx[2] == -1);
  }
  prog_close(&P);
}

/* The failure names the access: its site records the tensor, dimension
 * and source position of E(Idx(b), d). */
TEST(run_indirect_failure_site) {
  Prog P;
  bool ok = prog_open(&P,
                      "def g(float(V,D) E, int32(B) Idx) -> (O) {\n"
                      "  O(b,d) = E(Idx(b), d)\n}\n",
                      "g", true);
  CHECK(ok);
  if (ok) {
    float e[6] = {0, 1, 10, 11, 20, 21}, o[8];
    int32_t idx[4] = {2, 0, 1, 2};
    Run r = {0};
    set2(&r, 0, e, 3, 2);
    set1(&r, 1, idx, 4);
    set2(&r, 2, o, 4, 2);
    CHECK_INT(prog_run(&P, &r), 0);
    CHECK(o[0] == 20 && o[1] == 21 && o[2] == 0 && o[5] == 11 && o[7] == 21);
    idx[2] = 3;
    CHECK_INT(prog_run(&P, &r), 1);
    CHECK_INT(r.rt.value, 3);
    CHECK_INT(r.rt.bound, 3);
    CHECK(r.rt.site >= 0 && r.rt.site < P.f->sites.len);
    if (r.rt.site >= 0 && r.rt.site < P.f->sites.len) {
      FailSite *fs = &P.f->sites.data[r.rt.site];
      CHECK_INT(fs->kind, FAIL_INDEX);
      CHECK_STR(fs->tensor->name, "E");
      CHECK_INT(fs->dim, 0);
      CHECK_INT(fs->loc.line, 2);
      CHECK_INT(fs->loc.col, 12);
    }
    idx[2] = -5;
    CHECK_INT(prog_run(&P, &r), 1);
    CHECK_INT(r.rt.value, -5);
  }
  prog_close(&P);
}

/* Reads at i-3 .. i+3 of [1 2 3 4] under each boundary condition, as numpy's
 * pad modes edge / symmetric / wrap / constant. */
static void bc_case(const char *bc, const float want[4][7]) {
  char src[256];
  snprintf(src, sizeof src,
           "def f(float(N) I : %s, float(N) J) -> (O) {\n"
           "  O(i, k) = I(i + k - 3) + 0.0 * J(i) where k in 0:7\n}\n",
           bc);
  Prog P;
  bool ok = prog_open(&P, src, "f", true);
  CHECK(ok);
  if (ok) {
    float in[4] = {1, 2, 3, 4}, j[4] = {0}, o[28];
    Run r = {0};
    set1(&r, 0, in, 4);
    set1(&r, 1, j, 4);
    set2(&r, 2, o, 4, 7);
    CHECK_INT(prog_run(&P, &r), 0);
    for (int i = 0; i < 4; i++)
      for (int k = 0; k < 7; k++) {
        if (o[i * 7 + k] != want[i][k])
          fprintf(stderr, "%s: O(%d,%d) = %g, expected %g\n", bc, i, k, (double)o[i * 7 + k],
                  (double)want[i][k]);
        CHECK(o[i * 7 + k] == want[i][k]);
      }
  }
  prog_close(&P);
}

TEST(run_boundary_conditions) {
  /* index:                      i-3 i-2 i-1  i  i+1 i+2 i+3 */
  static const float clamp[4][7] = {{1, 1, 1, 1, 2, 3, 4},
                                    {1, 1, 1, 2, 3, 4, 4},
                                    {1, 1, 2, 3, 4, 4, 4},
                                    {1, 2, 3, 4, 4, 4, 4}};
  /* symmetric: ... 3 2 1 1 2 3 4 4 3 2 ... */
  static const float mirror[4][7] = {{3, 2, 1, 1, 2, 3, 4},
                                     {2, 1, 1, 2, 3, 4, 4},
                                     {1, 1, 2, 3, 4, 4, 3},
                                     {1, 2, 3, 4, 4, 3, 2}};
  static const float wrap[4][7] = {{2, 3, 4, 1, 2, 3, 4},
                                   {3, 4, 1, 2, 3, 4, 1},
                                   {4, 1, 2, 3, 4, 1, 2},
                                   {1, 2, 3, 4, 1, 2, 3}};
  static const float konst[4][7] = {{-1, -1, -1, 1, 2, 3, 4},
                                    {-1, -1, 1, 2, 3, 4, -1},
                                    {-1, 1, 2, 3, 4, -1, -1},
                                    {1, 2, 3, 4, -1, -1, -1}};
  bc_case("clamp", clamp);
  bc_case("mirror", mirror);
  bc_case("wrap", wrap);
  bc_case("constant(-1)", konst);
}

/* Mirror far outside the tensor: the reflection repeats with period 2n. */
TEST(run_mirror_far) {
  Prog P;
  bool ok = prog_open(&P,
                      "def f(float(N) I : mirror, float(M) J) -> (O) {\n"
                      "  O(i) = I(i - 9) + 0.0 * J(i)\n}\n",
                      "f", true);
  CHECK(ok);
  if (ok) {
    float in[3] = {1, 2, 3}, j[12] = {0}, o[12];
    /* index -9..2 under symmetric padding of [1 2 3], period 6 */
    float want[12] = {3, 2, 1, 1, 2, 3, 3, 2, 1, 1, 2, 3};
    Run r = {0};
    set1(&r, 0, in, 3);
    set1(&r, 1, j, 12);
    set1(&r, 2, o, 12);
    CHECK_INT(prog_run(&P, &r), 0);
    for (int i = 0; i < 12; i++)
      CHECK(o[i] == want[i]);
  }
  prog_close(&P);
}

TEST(run_boundary_empty_fails) {
  Prog P;
  bool ok = prog_open(&P,
                      "def f(float(N) I : clamp, float(M) J) -> (O) {\n"
                      "  O(i) = I(i) + J(i)\n}\n",
                      "f", true);
  CHECK(ok);
  if (ok) {
    float in[1] = {0}, j[3] = {1, 2, 3}, o[3];
    Run r = {0};
    set1(&r, 0, in, 0);
    set1(&r, 1, j, 3);
    set1(&r, 2, o, 3);
    CHECK_INT(prog_run(&P, &r), 1);
    CHECK(r.rt.site >= 0 && r.rt.site < P.f->sites.len &&
          P.f->sites.data[r.rt.site].kind == FAIL_BC_EMPTY);
    set1(&r, 1, j, 0); /* nothing read: no failure */
    set1(&r, 2, o, 0);
    CHECK_INT(prog_run(&P, &r), 0);
  }
  prog_close(&P);
}

/* A where range wider than a read allows: checked once, up front. */
TEST(run_range_check) {
  Prog P;
  bool ok = prog_open(&P,
                      "def f(float(N) A, float(M) B) -> (O) {\n"
                      "  O(i) = A(i) + B(i + 1) where i in 0:N\n}\n",
                      "f", true);
  CHECK(ok);
  if (ok) {
    float a[4] = {1, 2, 3, 4}, b[5] = {10, 20, 30, 40, 50}, o[4] = {0};
    Run r = {0};
    set1(&r, 0, a, 4);
    set1(&r, 1, b, 5);
    set1(&r, 2, o, 4);
    CHECK_INT(prog_run(&P, &r), 0);
    CHECK(o[0] == 21 && o[3] == 54);
    set1(&r, 1, b, 4);
    o[0] = 0;
    CHECK_INT(prog_run(&P, &r), 1);
    CHECK(o[0] == 0); /* stopped before the loop */
    CHECK_INT(r.rt.value, 4);
    CHECK_INT(r.rt.bound, 4);
    FailSite *fs = &P.f->sites.data[r.rt.site];
    CHECK_INT(fs->kind, FAIL_RANGE);
    CHECK_STR(fs->tensor->name, "B");
  }
  prog_close(&P);
}

/* O(i) = A(i-1) has i in [1, N+1): O(0) is zero-filled. */
TEST(run_zero_fill) {
  Prog P;
  bool ok = prog_open(&P, "def s(int32(N) A) -> (O) { O(i) = A(i-1) where i in 1:N+1 }", "s", true);
  CHECK(ok);
  if (ok) {
    int32_t a[3] = {5, 6, 7}, o[4] = {-1, -1, -1, -1};
    Run r = {0};
    set1(&r, 0, a, 3);
    set1(&r, 1, o, 4);
    CHECK_INT(prog_run(&P, &r), 0);
    CHECK(o[0] == 0 && o[1] == 5 && o[2] == 6 && o[3] == 7);
  }
  prog_close(&P);
}

/* Temporaries, a reduction onto an earlier definition, a rank-0 result,
 * guarded reads under ?:, and min= on integers (identity: the type's max). */
TEST(run_temps_and_reductions) {
  Prog P;
  bool ok = prog_open(&P,
                      "def f(float(N,D) X, int32(N,D) Y) -> (S, T, O, Mn) {\n"
                      "  mx(n) max=! X(n,d)\n"
                      "  e(n,d) = exp(X(n,d) - mx(n))\n"
                      "  S(n) +=! e(n,d)\n"
                      "  T +=! X(n,d)\n"
                      "  O(n) = X(n,0)\n"
                      "  O(n) +=! n > 0 ? X(n-1,d) : 100.0 where n in 0:N\n"
                      "  Mn(n) min= Y(n,d) where d in 1:D\n"
                      "}\n",
                      "f", true);
  CHECK(ok);
  if (ok) {
    float x[6] = {1, 2, 3, -1, 0, 1}, s[2], t, o[2];
    int32_t y[6] = {9, 8, 7, 6, 5, 4}, mn[2];
    Run r = {0};
    set2(&r, 0, x, 2, 3);
    set2(&r, 1, y, 2, 3);
    set1(&r, 2, s, 2);
    r.data[3] = &t;
    set1(&r, 4, o, 2);
    set1(&r, 5, mn, 2);
    CHECK_INT(prog_run(&P, &r), 0);
    double s0 = exp(1 - 3.0f) + exp(2 - 3.0f) + exp(0.0);
    CHECK(fabs(s[0] - s0) < 1e-5);
    CHECK(fabs(s[1] - (exp(-2.0) + exp(-1.0) + 1)) < 1e-5);
    CHECK(t == 6);
    CHECK(o[0] == 1 + 300 && o[1] == -1 + 6);
    CHECK(mn[0] == 7 && mn[1] == 4);
  }
  prog_close(&P);
}

/* A padded convolution against a direct loop with explicit zero padding. */
TEST(run_conv_same) {
  Prog P;
  char *src = read_file(golden_path("conv_same", "tc"));
  bool ok = src && prog_open(&P, src, "conv_same", true);
  CHECK(ok);
  free(src);
  if (!ok) {
    if (src)
      prog_close(&P);
    return;
  }
  enum { N = 2, C = 2, H = 4, W = 5, F = 3 };
  static float in[N * C * H * W], wt[F * C * 3 * 3], out[N * F * H * W];
  for (int i = 0; i < N * C * H * W; i++)
    in[i] = (float)((i * 13) % 17) - 8.0f;
  for (int i = 0; i < F * C * 9; i++)
    wt[i] = (float)((i * 5) % 7) * 0.5f - 1.0f;
  Run r = {0};
  r.data[0] = in;
  memcpy(r.shape[0], (int64_t[]){N, C, H, W}, 4 * sizeof(int64_t));
  r.data[1] = wt;
  memcpy(r.shape[1], (int64_t[]){F, C, 3, 3}, 4 * sizeof(int64_t));
  r.data[2] = out;
  memcpy(r.shape[2], (int64_t[]){N, F, H, W}, 4 * sizeof(int64_t));
  CHECK_INT(prog_run(&P, &r), 0);
  for (int n = 0; n < N; n++)
    for (int f = 0; f < F; f++)
      for (int h = 0; h < H; h++)
        for (int w = 0; w < W; w++) {
          float s = 0;
          for (int c = 0; c < C; c++)
            for (int kh = 0; kh < 3; kh++)
              for (int kw = 0; kw < 3; kw++) {
                int y = h + kh - 1, x = w + kw - 1;
                float v = y < 0 || y >= H || x < 0 || x >= W ? 0.0f
                                                             : in[((n * C + c) * H + y) * W + x];
                s += v * wt[((f * C + c) * 3 + kh) * 3 + kw];
              }
          CHECK(out[((n * F + f) * H + h) * W + w] == s);
        }
  prog_close(&P);
}

/* A pointwise statement reading what it writes, at the same point. */
TEST(run_update_in_place) {
  Prog P;
  bool ok = prog_open(&P,
                      "def f(float(N) A) -> (O) {\n  O(i) = A(i) + 1.0\n  O(i) = O(i) * O(i)\n}\n",
                      "f", true);
  CHECK(ok);
  if (ok) {
    float a[3] = {1, 2, -3}, o[3];
    Run r = {0};
    set1(&r, 0, a, 3);
    set1(&r, 1, o, 3);
    CHECK_INT(prog_run(&P, &r), 0);
    CHECK(o[0] == 4 && o[1] == 9 && o[2] == 4);
  }
  prog_close(&P);
}

/* float16 arithmetic is float32: an int promoted to float16 is not rounded,
 * an explicit cast and the store are; a float16 sum accumulates in float32. */
TEST(run_float16_arithmetic) {
  Prog P;
  bool ok = prog_open(&P,
                      "def f(float16(N) H, int32(N) I) -> (O, P, S) {\n"
                      "  O(i) = float(H(i) + I(i))\n"
                      "  P(i) = float(float16(H(i) + I(i)))\n"
                      "  S +=! H(i)\n}\n",
                      "f", true);
  CHECK(ok);
  if (ok) {
    uint16_t h[5] = {0x3800, 0x3800, 0x6800, 0x3c00, 0x3c00}; /* 0.5 0.5 2048 1 1 */
    int32_t in[5] = {2049, 1, 0, 0, 0};
    float o[5], p[5];
    uint16_t sum;
    Run r = {0};
    set1(&r, 0, h, 5);
    set1(&r, 1, in, 5);
    set1(&r, 2, o, 5);
    set1(&r, 3, p, 5);
    r.data[4] = &sum;
    CHECK_INT(prog_run(&P, &r), 0);
    CHECK(o[0] == 2049.5f && p[0] == 2050.0f);
    CHECK(o[1] == 1.5f && p[1] == 1.5f);
    CHECK_INT(sum, 0x6802); /* 0.5+0.5+2048+1+1 = 2051 in float32, stored as 2052 */
  }
  prog_close(&P);
}

/* Deeply nested indirect reads, some under ?: and &&: each subscript is
 * computed once (IR and C stay linear in size) and only where it runs. */
TEST(run_nested_indirect) {
  enum { DEPTH = 60 };
  char src[2048], *p = src;
  p += sprintf(p, "def f(int32(N) A, int32(N) B) -> (O, P) {\n  O(i) = i > 0 ? ");
  for (int k = 0; k < DEPTH; k++)
    p += sprintf(p, "A(");
  p += sprintf(p, "i");
  for (int k = 0; k < DEPTH; k++)
    p += sprintf(p, ")");
  p += sprintf(p, " : -1\n  P(i) = B(i) > 2 && A(B(i)) > 1 ? 1 : 0\n}\n");
  Prog P;
  bool ok = prog_open(&P, src, "f", true);
  CHECK(ok);
  if (ok) {
    CHECK(strlen(P.source) < 60000);
    int32_t a[5] = {1, 2, 3, 4, 0}, b[5] = {-1, 3, 4, 0, 2}, o[5], q[5];
    Run r = {0};
    set1(&r, 0, a, 5);
    set1(&r, 1, b, 5);
    set1(&r, 2, o, 5);
    set1(&r, 3, q, 5);
    CHECK_INT(prog_run(&P, &r), 0);
    CHECK(o[0] == -1);
    for (int i = 1; i < 5; i++)
      CHECK_INT(o[i], (i + DEPTH) % 5);
    CHECK(q[0] == 0 && q[1] == 1 && q[2] == 0 && q[3] == 0 && q[4] == 0);
    b[4] = 9; /* now read: 9 > 2 */
    CHECK_INT(prog_run(&P, &r), 1);
    CHECK_INT(r.rt.value, 9);
    b[4] = 2;
    a[0] = 7; /* read by O only for i == 0, which ?: skips */
    a[1] = 0;
    CHECK_INT(prog_run(&P, &r), 1); /* O(1) = A(A(1)) ... = A(0) = 7, then A(7) */
    CHECK_INT(r.rt.value, 7);
  }
  prog_close(&P);
}

RUN_TESTS()
