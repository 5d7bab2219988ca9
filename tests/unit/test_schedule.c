/* test_schedule.c — the CPU autoscheduler's passes: inline, fuse, fold, tile,
 * schedule (loop kinds, 1-d blocks, partitions), specialize, and what the C
 * back end does with their output (omp simd reductions, local buffers,
 * parallel loops inside loops, out-of-memory reports).  Structural checks
 * read the IR text after a pass; kernels that matter are compiled with the
 * real JIT flags and run through a minimal runtime against values computed
 * here.  The passes run with a fixed vector width (32 bytes), so the text
 * does not depend on the host. */
#include "tc.h"
#include "unit.h"
#include "front.h"

#include <dlfcn.h>
#include <math.h>
#include <unistd.h>

/* Under AddressSanitizer an impossible allocation must return NULL (the
 * kernel then reports it), not abort the test. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

/* ---- compiling a source ---- */

typedef struct Prog {
  Arena arena;
  jmp_buf jmp;
  tc_error err;
  Ctx c;
  SrcFile file;
  Def *d;
  IRFunc *f;
  Buf dump;     /* "== after PASS" and the IR, for every pass */
  char *source; /* generated C */
  void *so;
  tc_kernel_fn fn;
} Prog;

static void after(Prog *P, const char *pass) {
  ir_verify(&P->c, P->f, pass);
  buf_printf(&P->dump, "== after %s\n", pass);
  ir_print_func(&P->dump, P->f);
}

/* The pipeline of pipeline.c with a fixed vector width. */
static void passes(Prog *P) {
  Ctx *c = &P->c;
  P->f = lower_def(c, P->d);
  after(P, "lower");
  inline_func(c, P->f);
  after(P, "inline");
  fuse_func(c, P->f);
  after(P, "fuse");
  fold_func(c, P->f);
  after(P, "fold");
  tile_func(c, P->f, 32);
  after(P, "tile");
  schedule_default(c, P->f);
  after(P, "schedule");
  flatten_func(c, P->f);
  after(P, "flatten");
  specialize_func(c, P->f);
  after(P, "specialize");
  P->f->body = simplify_stmt(c, P->f->body);
  after(P, "simplify");
}

static bool compile_c(Prog *P) {
  Buf b = {0};
  emitc_func(&P->c, P->f, &b);
  P->source = buf_detach(&b);
  P->fn = front_load(P->source, &P->so);
  return P->fn != NULL;
}

/* Parses, checks and schedules `entry` of `src`; with `build`, also emits,
 * compiles and loads it. */
static bool prog_open(Prog *P, const char *src, const char *entry, bool build) {
  memset(P, 0, sizeof *P);
  front_init(&P->c, &P->arena, &P->err, &P->jmp, &P->file, src);
  if (setjmp(P->jmp)) {
    fprintf(stderr, "%s\n", P->err.message);
    return false;
  }
  P->d = front_def(&P->c, entry);
  if (!P->d)
    return false;
  passes(P);
  return !build || compile_c(P);
}

static void prog_close(Prog *P) {
  if (P->so)
    dlclose(P->so);
  free(P->source);
  buf_free(&P->dump);
  arena_free(&P->arena);
}

/* The IR text after `pass` (up to the next pass), without the function's
 * header line, in the arena. */
static const char *ir_after(Prog *P, const char *pass) {
  char head[64];
  snprintf(head, sizeof head, "== after %s\n", pass);
  const char *s = P->dump.s ? strstr(P->dump.s, head) : NULL;
  if (!s)
    return "";
  s += strlen(head);
  const char *nl = strchr(s, '\n');
  s = nl ? nl + 1 : s;
  const char *e = strstr(s, "== after ");
  return arena_strndup(&P->arena, s, e ? (size_t)(e - s) : strlen(s));
}

static int count(const char *s, const char *what) {
  int n = 0;
  for (const char *p = strstr(s, what); p; p = strstr(p + 1, what))
    n++;
  return n;
}

/* Lines of `s` at indentation `ind` (2 spaces each) that start with `what`. */
static int count_at(const char *s, int ind, const char *what) {
  int n = 0;
  for (const char *p = s; *p;) {
    int sp = 0;
    while (p[sp] == ' ')
      sp++;
    if (sp == 2 * ind && !strncmp(p + sp, what, strlen(what)))
      n++;
    const char *nl = strchr(p, '\n');
    p = nl ? nl + 1 : p + strlen(p);
  }
  return n;
}

/* ---- a minimal runtime ---- */

typedef struct TestRT {
  tc_krt rt;
  int nfail, site, ntasks;
  int64_t value, bound;
} TestRT;

static void rt_parallel_for(tc_krt *rt, tc_task_fn task, const void *args, int64_t lo,
                            int64_t hi) {
  int64_t step = (hi - lo + 2) / 3;
  for (int64_t s = lo; s < hi; s += step) {
    ((TestRT *)rt)->ntasks++;
    task(args, s, s + step < hi ? s + step : hi);
  }
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


static int run(Prog *P, Args *a, TestRT *rt) {
  memset(rt, 0, sizeof *rt);
  rt->rt.parallel_for = rt_parallel_for;
  rt->rt.fail = rt_fail;
  rt->site = -1;
  tc_kargs ka = {a->data, a->shape, a->stride, a->sizes, &rt->rt};
  return P->fn(&ka);
}

static float frand(unsigned *seed) {
  *seed = *seed * 1103515245u + 12345u;
  return (float)((*seed >> 8) % 2001) / 1000.0f - 1.0f;
}

/* ---- inline ---- */

static const char softmax_src[] = "def softmax(float(N,D) X) -> (O) {\n"
                                  "  mx(n) max=! X(n,d)\n"
                                  "  e(n,d) = exp(X(n,d) - mx(n))\n"
                                  "  s(n) +=! e(n,d)\n"
                                  "  O(n,d) = e(n,d) / s(n)\n"
                                  "}\n";

TEST(inline_pointwise_temporary) {
  /* layer norm's centred values, cheap, read by two statements */
  Prog P;
  CHECK(prog_open(&P,
                  "def ln(float(N,D) X) -> (Y) {\n"
                  "  mean(n) +=! X(n,d) / float(D)\n"
                  "  xc(n,d) = X(n,d) - mean(n)\n"
                  "  var(n) +=! xc(n,d) * xc(n,d) / float(D)\n"
                  "  Y(n,d) = xc(n,d) * rsqrt(var(n) + 1e-5)\n"
                  "}\n",
                  "ln", false));
  CHECK(count(ir_after(&P, "lower"), "b_xc[") == 4);
  CHECK(count(ir_after(&P, "inline"), "b_xc[") == 0); /* neither stored nor loaded */
  prog_close(&P);
  /* a costly value read by one statement */
  CHECK(prog_open(&P,
                  "def f(float(N,D) X) -> (O) {\n"
                  "  e(n,d) = exp(X(n,d))\n"
                  "  O(n,d) = e(n,d) * 2.0\n"
                  "}\n",
                  "f", false));
  CHECK(count(ir_after(&P, "inline"), "b_e[") == 0);
  CHECK(count(ir_after(&P, "inline"), "exp(") == 1);
  prog_close(&P);
}

TEST(inline_keeps_costly_reread) {
  /* softmax's exponentials, read by the sum and the output: not
   * recomputed, but kept a row at a time (fold) */
  Prog Q;
  CHECK(prog_open(&Q, softmax_src, "softmax", false));
  CHECK(count(ir_after(&Q, "inline"), "b_e[") == 3);
  CHECK(count(ir_after(&Q, "inline"), "exp(") == 1);
  prog_close(&Q);
  /* T is read once per k: recomputing exp() K times would cost more */
  Prog P;
  CHECK(prog_open(&P,
                  "def f(float(N,M) A, float(K) B) -> (O) {\n"
                  "  T(i,j) = exp(A(i,j))\n"
                  "  O(i,j,k) = T(i,j) * B(k)\n"
                  "}\n",
                  "f", false));
  CHECK(count(ir_after(&P, "inline"), "b_T[") == 2);
  prog_close(&P);
  /* a cheap value is recomputed even when re-read */
  CHECK(prog_open(&P,
                  "def g(float(N,M) A, float(K) B) -> (O) {\n"
                  "  T(i,j) = A(i,j) * 2.0\n"
                  "  O(i,j,k) = T(i,j) * B(k)\n"
                  "}\n",
                  "g", false));
  CHECK(count(ir_after(&P, "inline"), "b_T[") == 0);
  prog_close(&P);
}

TEST(inline_respects_later_writes) {
  /* T's value reads P, which a later statement overwrites */
  Prog P;
  CHECK(prog_open(&P,
                  "def f(float(N) A) -> (O, P) {\n"
                  "  P(i) = A(i) + 1.0\n"
                  "  T(i) = P(i) * 2.0\n"
                  "  P(i) = P(i) * 3.0\n"
                  "  O(i) = T(i)\n"
                  "}\n",
                  "f", false));
  CHECK(count(ir_after(&P, "inline"), "b_T[") == 2);
  prog_close(&P);
}

/* ---- fuse ---- */

TEST(fuse_row_statements) {
  Prog P;
  CHECK(prog_open(&P, softmax_src, "softmax", false));
  const char *ir = ir_after(&P, "fuse");
  CHECK(count_at(ir, 1, "for ") == 1); /* one loop over the rows */
  CHECK(count_at(ir, 2, "for ") == 4); /* max, exp, sum, output */
  prog_close(&P);
}

TEST(fold_row_temporaries) {
  Prog P;
  CHECK(prog_open(&P, softmax_src, "softmax", true));
  const char *ir = ir_after(&P, "fold");
  CHECK(count(ir, "b_e[x") == 0 && count(ir, "b_mx[x") == 0 && count(ir, "b_s[x") == 0);
  CHECK(strstr(ir, "alloc float32 lb") && strstr(ir, "[b_e_n1] {")); /* one row of e */
  CHECK(count(ir, "alloc float32") == 3);
  if (P.fn) { /* one allocation per task, not per row; right values */
    CHECK(strstr(P.source, "aligned_alloc") && strstr(P.source, "aligned_alloc") <
                                                    strstr(P.source, "for (int64_t x0_n = lo;"));
    enum { N = 5, D = 19 };
    float x[N * D], o[N * D], e[N * D], mx[N], sm[N];
    unsigned seed = 3;
    for (int i = 0; i < N * D; i++)
      x[i] = 10 * frand(&seed);
    Args ar = {.sizes = {N, D}};
    set_buf(&ar, P.f->bufs[0], x, (int64_t[]){N, D});
    set_buf(&ar, P.f->bufs[1], o, (int64_t[]){N, D});
    set_buf(&ar, P.f->bufs[2], mx, (int64_t[]){N});
    set_buf(&ar, P.f->bufs[3], e, (int64_t[]){N, D});
    set_buf(&ar, P.f->bufs[4], sm, (int64_t[]){N});
    TestRT rt;
    CHECK_INT(run(&P, &ar, &rt), 0);
    for (int n = 0; n < N; n++) {
      double m = -INFINITY, t = 0;
      for (int d = 0; d < D; d++)
        m = fmax(m, x[n * D + d]);
      for (int d = 0; d < D; d++)
        t += exp(x[n * D + d] - m);
      for (int d = 0; d < D; d++)
        CHECK(fabs(o[n * D + d] - exp(x[n * D + d] - m) / t) < 1e-6);
    }
  }
  prog_close(&P);
}

TEST(fuse_refuses_neighbours) {
  /* C(i) reads B(i+1), written by the other nest in another iteration */
  Prog P;
  CHECK(prog_open(&P,
                  "def f(float(N) A) -> (B, C) {\n"
                  "  B(i) = A(i) * 2.0\n"
                  "  C(i) = B(i+1) where i in 0:N-1\n"
                  "}\n",
                  "f", false));
  CHECK(count_at(ir_after(&P, "fuse"), 1, "for ") == 2);
  prog_close(&P);
  /* different ranges do not fuse either */
  CHECK(prog_open(&P,
                  "def g(float(N) A, float(M) B) -> (X, Y) {\n"
                  "  X(i) = A(i) * 2.0\n"
                  "  Y(j) = B(j) * 2.0\n"
                  "}\n",
                  "g", false));
  CHECK(count_at(ir_after(&P, "fuse"), 1, "for ") == 2);
  prog_close(&P);
}

/* ---- tile ---- */

static const char matmul_src[] =
    "def mm(float(M,K) A, float(K,N) B) -> (C) { C(m,n) +=! A(m,k) * B(k,n) }\n"
    "def mm_i(int32(M,K) A, int32(K,N) B) -> (C) { C(m,n) +=! A(m,k) * B(k,n) }\n"
    "def mm_both(float(M,N,K) A, float(K,N) B) -> (C) { C(m,n) +=! A(m,n,k) * B(k,n) }\n"
    "def mm_max(float(M,K) A, float(K,N) B) -> (C) { C(m,n) max=! A(m,k) * B(k,n) }\n";

TEST(tile_contraction) {
  Prog P;
  CHECK(prog_open(&P, matmul_src, "mm", false));
  const char *ir = ir_after(&P, "tile");
  CHECK(count(ir, "parallel") == 1);
  CHECK(count(ir, "alloc float32") == 3); /* V's panel, W's panel, the register tile */
  CHECK(count(ir, "fma(") == 1);
  CHECK(count(ir, "in [0, 16) vectorized") >= 3); /* 32-byte vectors: NR = 16 */
  CHECK(count(ir, "in [0, 6) unrolled") == 4);    /* MR = 6: W packed, C in, fma, C out */
  CHECK(count(ir, "nomem") == 3);
  prog_close(&P);
}

TEST(tile_leaves_other_reductions) {
  const char *entries[] = {"mm_i", "mm_both", "mm_max"};
  for (int i = 0; i < 3; i++) {
    Prog P;
    CHECK(prog_open(&P, matmul_src, entries[i], false));
    CHECK(count(ir_after(&P, "tile"), "alloc") == 0);
    prog_close(&P);
  }
}

/* C = A B with C's columns strided (stride 2): the tiles' loads and stores
 * of C take the generic version. */
TEST(tile_runs_on_strided_output) {
  Prog P;
  CHECK(prog_open(&P, matmul_src, "mm", true));
  if (!P.fn) {
    prog_close(&P);
    return;
  }
  enum { M = 13, K = 300, N = 37 };
  static float a[M * K], b[K * N], c[M * N * 2];
  unsigned seed = 1;
  for (int i = 0; i < M * K; i++)
    a[i] = frand(&seed);
  for (int i = 0; i < K * N; i++)
    b[i] = frand(&seed);
  for (int i = 0; i < M * N * 2; i++)
    c[i] = 1234.0f;
  Args ar = {.sizes = {M, K, N}};
  set_buf(&ar, P.f->bufs[0], a, (int64_t[]){M, K});
  set_buf(&ar, P.f->bufs[1], b, (int64_t[]){K, N});
  set_buf(&ar, P.f->bufs[2], c, (int64_t[]){M, N});
  ar.stride[P.f->bufs[2]->dim_offset] = 2 * N;
  ar.stride[P.f->bufs[2]->dim_offset + 1] = 2;
  TestRT rt;
  CHECK_INT(run(&P, &ar, &rt), 0);
  CHECK(rt.ntasks >= 1);
  int bad = 0;
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++) {
      double want = 0;
      for (int k = 0; k < K; k++)
        want += (double)a[m * K + k] * b[k * N + n];
      bad += fabs(c[m * 2 * N + 2 * n] - want) > 1e-4 * (1 + fabs(want));
      bad += c[m * 2 * N + 2 * n + 1] != 1234.0f; /* the gaps stay */
    }
  CHECK_INT(bad, 0);
  prog_close(&P);
}

/* C = A B^T: B's full tiles are packed as 8 x 8 in-register transposes
 * (32-byte vectors) where B's last stride is 1, one element at a time
 * otherwise (here a stride of 2), and the partial tile and the steps past
 * the last whole block (K = 300: 44 in the second block, 5 blocks and 4)
 * one element at a time in both cases. */
TEST(tile_transposed_packing) {
  Prog P;
  CHECK(prog_open(&P, "def mmnt(float(M,K) A, float(N,K) B) -> (C) { C(m,n) +=! A(m,k) * B(n,k) }\n",
                  "mmnt", true));
  CHECK(P.source && strstr(P.source, "tc_tr8_f32(&") != NULL);
  if (!P.fn) {
    prog_close(&P);
    return;
  }
  enum { M = 13, K = 300, N = 37 };
  static float a[M * K], b[N * K * 2], c[M * N];
  unsigned seed = 3;
  for (int i = 0; i < M * K; i++)
    a[i] = frand(&seed);
  for (int i = 0; i < N * K * 2; i++)
    b[i] = frand(&seed);
  for (int bs = 1; bs <= 2; bs++) {
    Args ar = {.sizes = {M, K, N}};
    set_buf(&ar, P.f->bufs[0], a, (int64_t[]){M, K});
    set_buf(&ar, P.f->bufs[1], b, (int64_t[]){N, K});
    set_buf(&ar, P.f->bufs[2], c, (int64_t[]){M, N});
    ar.stride[P.f->bufs[1]->dim_offset] = bs * K;
    ar.stride[P.f->bufs[1]->dim_offset + 1] = bs;
    TestRT rt;
    CHECK_INT(run(&P, &ar, &rt), 0);
    int bad = 0;
    for (int m = 0; m < M; m++)
      for (int n = 0; n < N; n++) {
        double want = 0;
        for (int k = 0; k < K; k++)
          want += (double)a[m * K + k] * b[n * bs * K + k * bs];
        bad += fabs(c[m * N + n] - want) > 1e-4 * (1 + fabs(want));
      }
    CHECK_INT(bad, 0);
  }
  prog_close(&P);
}

/* The same in float64: 4 x 4 blocks (4 doubles fill 32 bytes). */
TEST(tile_transposed_packing_f64) {
  Prog P;
  CHECK(prog_open(&P, "def mmnt(double(M,K) A, double(N,K) B) -> (C) { C(m,n) +=! A(m,k) * B(n,k) }\n",
                  "mmnt", true));
  CHECK(P.source && strstr(P.source, "tc_tr4_f64(&") != NULL);
  if (!P.fn) {
    prog_close(&P);
    return;
  }
  enum { M = 9, K = 70, N = 19 };
  static double a[M * K], b[N * K], c[M * N];
  unsigned seed = 5;
  for (int i = 0; i < M * K; i++)
    a[i] = frand(&seed);
  for (int i = 0; i < N * K; i++)
    b[i] = frand(&seed);
  Args ar = {.sizes = {M, K, N}};
  set_buf(&ar, P.f->bufs[0], a, (int64_t[]){M, K});
  set_buf(&ar, P.f->bufs[1], b, (int64_t[]){N, K});
  set_buf(&ar, P.f->bufs[2], c, (int64_t[]){M, N});
  TestRT rt;
  CHECK_INT(run(&P, &ar, &rt), 0);
  int bad = 0;
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++) {
      double want = 0;
      for (int k = 0; k < K; k++)
        want += a[m * K + k] * b[n * K + k];
      bad += fabs(c[m * N + n] - want) > 1e-12 * (1 + fabs(want));
    }
  CHECK_INT(bad, 0);
  prog_close(&P);
}

/* ---- schedule ---- */

TEST(schedule_vectorizes_reductions) {
  Prog P;
  CHECK(prog_open(&P, "def rs(float(N,D) X) -> (s) { s(n) +=! X(n,d) }\n", "rs", true));
  const char *ir = ir_after(&P, "schedule");
  CHECK(count(ir, "for x0_n in [0, z_N) parallel") == 1);
  /* four chains over the quarters of the row, the rest after them */
  CHECK(count(ir, "int64 q1 = z_D / 4") == 1);
  CHECK(count(ir, "for x0_d_j in [0, q1) vectorized") == 1);
  CHECK(count(ir, "acc0_3 = acc0_3 + b_X[x0_n, x0_d_j + 3 * q1]") == 1);
  CHECK(count(ir, "for x0_d in [4 * q1, ") == 1);
  CHECK(count(ir, "acc0 = acc0 + acc0_1 + (acc0_2 + acc0_3)") == 1);
  CHECK(count(ir, "vectorized") == 1);
  if (P.source)
    CHECK(strstr(P.source, "#pragma omp simd reduction(+:acc0) reduction(+:acc0_1) "
                           "reduction(+:acc0_2) reduction(+:acc0_3)") != NULL);
  prog_close(&P);
  CHECK(prog_open(&P, softmax_src, "softmax", true));
  if (P.source) {
    CHECK(strstr(P.source, "#pragma omp declare reduction(tcr_max_f32 : float :") != NULL);
    CHECK(strstr(P.source, "reduction(tcr_max_f32:acc0)") != NULL);
  }
  prog_close(&P);
}

/* Only float reductions are split; integer ones stay one loop. */
TEST(schedule_keeps_int_reductions) {
  Prog P;
  CHECK(prog_open(&P, "def ri(int32(N,D) X) -> (s) { s(n) +=! X(n,d) }\n", "ri", false));
  const char *ir = ir_after(&P, "schedule");
  CHECK(count(ir, "for x0_d in [0, z_D) vectorized") == 1);
  CHECK(count(ir, "_j in") == 0);
  prog_close(&P);
}

/* A division by what a vector loop does not change is a multiplication by
 * its reciprocal, computed once, when the divisor's reciprocal is normal;
 * the loop as written runs otherwise.  A constant divisor needs no test. */
TEST(schedule_reciprocal_divisors) {
  Prog P;
  CHECK(prog_open(&P, "def nd(float(N,D) X, float(N) s) -> (O) { O(n,d) = X(n,d) / s(n) }\n",
                  "nd", false));
  const char *ir = ir_after(&P, "schedule");
  CHECK(count(ir, "= 1.0f / h") == 1);
  CHECK(count(ir, "b_X[x0_n, x0_d] * r") == 1);
  CHECK(count(ir, "b_X[x0_n, x0_d] / h") == 1);
  CHECK(count(ir, ">= 1.1754944e-38f") == 1);
  CHECK(count(ir, "vectorized") == 2);
  prog_close(&P);
  CHECK(prog_open(&P, "def nd(double(N,D) X, double(N) s) -> (O) { O(n,d) = X(n,d) / s(n) }\n",
                  "nd", false));
  ir = ir_after(&P, "schedule");
  CHECK(count(ir, "b_X[x0_n, x0_d] * r") == 1);
  CHECK(count(ir, ">= 2.2250738585072014e-308") == 1); /* float64's bounds */
  CHECK(count(ir, "<= 4.49423283715579e+307") == 1);
  prog_close(&P);
  CHECK(prog_open(&P, "def nc(float(N) X) -> (O) { O(i) = X(i) / 3.0 }\n", "nc", false));
  ir = ir_after(&P, "schedule");
  CHECK(count(ir, "= 1.0f / 3.0f") == 1);
  CHECK(count(ir, "b_O[x0_i] = b_X[x0_i] * r") == 1);
  CHECK(count(ir, "if ") == 1); /* the loop runs at all; no divisor test */
  prog_close(&P);
  /* the loop's own values are divided as written */
  CHECK(prog_open(&P, "def nv(float(N) X, float(N) Y) -> (O) { O(i) = X(i) / Y(i) }\n", "nv",
                  false));
  ir = ir_after(&P, "schedule");
  CHECK(count(ir, "b_X[x0_i] / b_Y[x0_i]") == 1);
  prog_close(&P);
}

TEST(schedule_splits_1d_loops) {
  Prog P;
  CHECK(prog_open(&P, "def f(float(N) A) -> (O) { O(i) = A(i) * 2.0 }\n", "f", false));
  const char *ir = ir_after(&P, "schedule");
  CHECK(strstr(ir, "/ 4096) parallel {") != NULL); /* blocks of 4096 in parallel */
  CHECK(count_at(ir, 2, "for x0_i in ") == 1);     /* each a vector loop */
  CHECK(count(ir, "vectorized") == 1);
  prog_close(&P);
}

static const char clamp_src[] = "def sh(float(N) I : clamp) -> (O) {\n"
                                "  O(i) = I(i-1) + I(i+1) where i in 0:N\n"
                                "}\n";

TEST(schedule_partitions_boundaries) {
  Prog P;
  CHECK(prog_open(&P, clamp_src, "sh", true));
  const char *ir = ir_after(&P, "schedule");
  CHECK(count(ir, "for x0_i in") == 3); /* edge, interior, edge */
  const char *mid = strstr(ir, "vectorized {");
  CHECK(mid != NULL);
  if (mid) { /* the interior reads without clamps */
    const char *end = strchr(mid, '}');
    CHECK(end && strstr(mid, "b_I[x0_i - 1] + b_I[x0_i + 1]") &&
          strstr(mid, "b_I[x0_i - 1] + b_I[x0_i + 1]") < end);
  }
  if (P.fn) { /* and computes what the clamps say, every length */
    for (int64_t n = 1; n <= 9; n++) {
      float in[9], out[9];
      for (int i = 0; i < n; i++)
        in[i] = (float)(i * i + 1);
      Args ar = {.sizes = {n}};
      set_buf(&ar, P.f->bufs[0], in, (int64_t[]){n});
      set_buf(&ar, P.f->bufs[1], out, (int64_t[]){n});
      TestRT rt;
      CHECK_INT(run(&P, &ar, &rt), 0);
      for (int i = 0; i < n; i++)
        CHECK(out[i] == in[i > 0 ? i - 1 : 0] + in[i + 1 < n ? i + 1 : n - 1]);
    }
  }
  prog_close(&P);
}

TEST(schedule_hoists_invariant_loads) {
  Prog P;
  CHECK(prog_open(&P, softmax_src, "softmax", false));
  const char *ir = ir_after(&P, "schedule");
  CHECK(count(ir, "float32 h") == 2); /* the row's max and sum, before their loops */
  prog_close(&P);
}

/* ---- specialize ---- */

TEST(specialize_unit_strides) {
  Prog P;
  CHECK(prog_open(&P, "def f(float(M,N) A) -> (O) { O(i,j) = A(i,j) + 1.0 }\n", "f", false));
  const char *ir = ir_after(&P, "specialize");
  CHECK(strstr(ir, "if b_A_s1 == 1 && b_O_s1 == 1 {") || strstr(ir, "if b_O_s1 == 1 && b_A_s1 == 1 {"));
  CHECK(count(ir, "vectorized") == 1); /* the other version is serial */
  const char *simp = ir_after(&P, "simplify");
  CHECK(strstr(simp, "b_O[x0_j + x0_i * b_O_s0] = b_A[x0_j + x0_i * b_A_s0] + 1.0f") != NULL);
  prog_close(&P);
}

/* ---- the back end: local buffers and parallel loops in loops ---- */

/* for x: for y parallel: O[x, y] = x * 100 + y + bias  (bias a local) */
TEST(emit_parallel_loop_inside_loop) {
  Prog P;
  CHECK(prog_open(&P, "def f(float(N,M) A) -> (O) { O(i,j) = A(i,j) }\n", "f", false));
  Ctx *c = &P.c;
  if (setjmp(P.jmp)) {
    CHECK(!"internal error");
    prog_close(&P);
    return;
  }
  Buffer *O = P.f->bufs[1];
  IRVar *x = ir_new_var(c, "tx", VAR_LOOP, TC_INT64), *y = ir_new_var(c, "ty", VAR_LOOP, TC_INT64);
  IRVar *bias = ir_new_var(c, "bias", VAR_LOCAL, TC_FLOAT32);
  IRExpr *idx[2] = {ir_var(c, x), ir_var(c, y)};
  IRExpr *v = ir_add(c, ir_mul(c, ir_var(c, x), ir_i64(c, 100)), ir_var(c, y));
  IRStmt *st = ir_store(c, O, idx, 2, ir_bin(c, OP_ADD, ir_cast(c, TC_FLOAT32, v), ir_var(c, bias)));
  IRStmt *inner = ir_for(c, y, ir_i64(c, 0), ir_var(c, P.f->sizes[1]), FOR_PARALLEL, st);
  IRStmt *parts[2] = {ir_decl(c, bias, ir_float(c, TC_FLOAT32, 0.5)), inner};
  P.f->body = ir_for(c, x, ir_i64(c, 0), ir_var(c, P.f->sizes[0]), FOR_SERIAL, ir_block(c, parts, 2));
  flatten_func(c, P.f);
  ir_verify(c, P.f, "flatten");
  CHECK(compile_c(&P));
  if (P.fn) {
    CHECK(strstr(P.source, "typedef struct task_0_env {") != NULL);
    enum { N = 4, M = 7 };
    float a[N * M] = {0}, o[N * M];
    Args ar = {.sizes = {N, M}};
    set_buf(&ar, P.f->bufs[0], a, (int64_t[]){N, M});
    set_buf(&ar, O, o, (int64_t[]){N, M});
    TestRT rt;
    CHECK_INT(run(&P, &ar, &rt), 0);
    CHECK(rt.ntasks >= N);
    for (int i = 0; i < N; i++)
      for (int j = 0; j < M; j++)
        CHECK(o[i * M + j] == (float)(i * 100 + j) + 0.5f);
  }
  prog_close(&P);
}

/* An alloc too big for memory reports its failure site, with the bytes. */
TEST(emit_alloc_out_of_memory) {
  Prog P;
  CHECK(prog_open(&P, "def f(float(N) A) -> (O) { O(i) = A(i) }\n", "f", false));
  Ctx *c = &P.c;
  if (setjmp(P.jmp)) {
    CHECK(!"internal error");
    prog_close(&P);
    return;
  }
  Buffer *lb = arena_alloc(c->arena, sizeof *lb);
  lb->name = "lb_big";
  lb->slot = -1;
  lb->dtype = TC_FLOAT32;
  lb->rank = 1;
  lb->local = true;
  FailSite fs = {FAIL_NOMEM, {1, 1}, NULL, 0, false};
  vec_push(c->arena, &P.f->sites, fs);
  int site = P.f->sites.len - 1;
  IRExpr *zero = ir_i64(c, 0);
  IRStmt *use = ir_store(c, lb, &zero, 1, ir_float(c, TC_FLOAT32, 1));
  int64_t huge = (int64_t)1 << 60; /* elements: 2^62 bytes */
  P.f->body = ir_alloc(c, lb, ir_i64(c, huge), site, use);
  ir_verify(c, P.f, "simplify");
  CHECK(compile_c(&P));
  if (P.fn) {
    float a[1] = {0}, o[1];
    Args ar = {.sizes = {1}};
    set_buf(&ar, P.f->bufs[0], a, (int64_t[]){1});
    set_buf(&ar, P.f->bufs[1], o, (int64_t[]){1});
    TestRT rt;
    CHECK_INT(run(&P, &ar, &rt), 1);
    CHECK_INT(rt.site, site);
    CHECK_INT(rt.value, huge * 4);
  }
  prog_close(&P);
}

RUN_TESTS()
