/* test_emit.c — the C back end, end to end on hand-built IR: each test builds
 * a function's loop nest by hand, runs schedule/flatten/simplify and the
 * verifier, emits C, compiles it with the real JIT flags (jit_build), loads
 * it and runs it on small arrays through a minimal runtime (serial
 * parallel_for that splits the range in chunks, failure recorder), then
 * compares with values computed by hand.  These tests need no front end. */
#include "tc.h"
#include "unit.h"
#include "front.h"

#include <dlfcn.h>
#include <math.h>
#include <unistd.h>

/* ---- a minimal kernel runtime ---- */

typedef struct TestRT {
  tc_krt rt; /* first: the kernel sees a tc_krt * */
  int nfail, site;
  int64_t value, bound;
  int ntasks; /* task calls */
} TestRT;

static void rt_parallel_for(tc_krt *rt, tc_task_fn task, const void *args, int64_t lo,
                            int64_t hi) {
  TestRT *t = (TestRT *)rt;
  int64_t step = (hi - lo + 2) / 3;
  for (int64_t s = lo; s < hi; s += step) {
    t->ntasks++;
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

static void rt_init(TestRT *t) {
  memset(t, 0, sizeof *t);
  t->rt.parallel_for = rt_parallel_for;
  t->rt.fail = rt_fail;
  t->site = -1;
}

/* ---- hand-built functions ---- */

typedef struct K {
  Arena arena;
  jmp_buf jmp;
  tc_error err;
  Ctx c;
  Def def;
  Tensor tens[8];
  Tensor *tp[8];
  SizeSym sym[4];
  SizeSym *sp[4];
  IRFunc *f;
  char *source;
  void *so;
  tc_kernel_fn fn;
} K;

static Ctx *k_init(K *k, int nsyms) {
  memset(k, 0, sizeof *k);
  k->c.arena = &k->arena;
  k->c.err = &k->err;
  k->c.jmp = &k->jmp;
  Ctx *c = &k->c;
  k->f = arena_alloc(c->arena, sizeof *k->f);
  k->f->def = &k->def;
  k->def.name = "test";
  k->def.tensors = k->tp;
  k->def.syms = k->sp;
  k->def.nsyms = nsyms;
  k->f->nsizes = nsyms;
  k->f->sizes = arena_alloc(c->arena, sizeof(IRVar *) * 4);
  static const char *const names[] = {"z_M", "z_N", "z_K", "z_L"};
  for (int i = 0; i < nsyms; i++) {
    k->sym[i].id = i;
    k->sym[i].name = names[i] + 2;
    k->sp[i] = &k->sym[i];
    IRVar *v = ir_new_var(c, names[i], VAR_SIZE, TC_INT64);
    v->sym = &k->sym[i];
    k->sym[i].var = v;
    k->f->sizes[i] = v;
  }
  k->f->bufs = arena_alloc(c->arena, sizeof(Buffer *) * 8);
  return c;
}

static Buffer *k_buf(K *k, const char *name, tc_dtype t, int rank, TensorRole role) {
  Ctx *c = &k->c;
  int id = k->def.ntensors++;
  Tensor *ts = &k->tens[id];
  ts->name = name;
  ts->id = id;
  ts->role = role;
  ts->dtype = t;
  ts->rank = rank;
  k->tp[id] = ts;
  Buffer *b = arena_alloc(c->arena, sizeof *b);
  b->name = arena_printf(c->arena, "b_%s", name);
  b->tensor = ts;
  b->slot = id;
  b->dtype = t;
  b->rank = rank;
  b->dim_offset = k->f->ndims;
  for (int d = 0; d < rank; d++) {
    b->shape[d] = ir_new_var(c, arena_printf(c->arena, "%s_n%d", b->name, d), VAR_SHAPE, TC_INT64);
    b->stride[d] =
        ir_new_var(c, arena_printf(c->arena, "%s_s%d", b->name, d), VAR_STRIDE, TC_INT64);
    b->shape[d]->buf = b->stride[d]->buf = b;
    b->shape[d]->dim = b->stride[d]->dim = d;
  }
  k->f->ndims += rank;
  k->f->bufs[k->f->nbufs++] = b;
  return b;
}

static int k_site(K *k, FailKind kind, Buffer *b, int dim) {
  FailSite fs = {kind, {1, 1}, b->tensor, dim, false};
  vec_push(k->c.arena, &k->f->sites, fs);
  return k->f->sites.len - 1;
}

static IRVar *loopv(K *k, const char *name) { return ir_new_var(&k->c, name, VAR_LOOP, TC_INT64); }
static IRExpr *V(K *k, IRVar *v) { return ir_var(&k->c, v); }
static IRExpr *I(K *k, int64_t v) { return ir_i64(&k->c, v); }

static IRExpr *load1(K *k, Buffer *b, IRExpr *i) { return ir_load(&k->c, b, &i, 1); }
static IRExpr *load2(K *k, Buffer *b, IRExpr *i, IRExpr *j) {
  IRExpr *idx[2] = {i, j};
  return ir_load(&k->c, b, idx, 2);
}
static IRStmt *store1(K *k, Buffer *b, IRExpr *i, IRExpr *v) {
  return ir_store(&k->c, b, &i, 1, v);
}
static IRStmt *store2(K *k, Buffer *b, IRExpr *i, IRExpr *j, IRExpr *v) {
  IRExpr *idx[2] = {i, j};
  return ir_store(&k->c, b, idx, 2, v);
}
static IRStmt *loop(K *k, IRVar *v, IRExpr *extent, IRStmt *body) {
  return ir_for(&k->c, v, I(k, 0), extent, FOR_SERIAL, body);
}
static IRStmt *block(K *k, IRStmt *a, IRStmt *b, IRStmt *c3) {
  IRStmt *s[3] = {a, b, c3};
  return ir_block(&k->c, s, c3 ? 3 : b ? 2 : 1);
}

/* Runs the passes after lowering, emits C and loads the kernel; false (with
 * a message) on any failure. */
static bool k_build(K *k, IRStmt *body) {
  Ctx *c = &k->c;
  k->f->body = body;
  k->def.ninputs = k->def.ntensors;
  int status = setjmp(k->jmp);
  if (status) {
    fprintf(stderr, "compile error: %s\n", k->err.message);
    return false;
  }
  ir_verify(c, k->f, "lower");
  schedule_default(c, k->f);
  ir_verify(c, k->f, "schedule");
  flatten_func(c, k->f);
  ir_verify(c, k->f, "flatten");
  k->f->body = simplify_stmt(c, k->f->body);
  ir_verify(c, k->f, "simplify");
  Buf out = {0};
  emitc_func(c, k->f, &out);
  k->source = buf_detach(&out);
  /* determinism: a second emission gives the same bytes */
  Buf again = {0};
  emitc_func(c, k->f, &again);
  CHECK_STR(again.s, k->source);
  buf_free(&again);

  k->fn = front_load(k->source, &k->so);
  if (!k->so)
    return false;
  const int *abi = dlsym(k->so, "tc_kernel_abi");
  return k->fn && abi && *abi == TC_KERNEL_ABI;
}

static void k_free(K *k) {
  if (k->so)
    dlclose(k->so);
  free(k->source);
  arena_free(&k->arena);
}

static int run(K *k, Args *a, TestRT *rt) {
  rt_init(rt);
  tc_kargs ka = {a->data, a->shape, a->stride, a->sizes, &rt->rt};
  return k->fn(&ka);
}

/* ---- tests ---- */

/* C(m,n) +=! A(m,k) * B(k,n), B given transposed (strides (1, K)). */
TEST(matmul_f32) {
  K k;
  Ctx *c = k_init(&k, 3);
  Buffer *A = k_buf(&k, "A", TC_FLOAT32, 2, T_INPUT);
  Buffer *B = k_buf(&k, "B", TC_FLOAT32, 2, T_INPUT);
  Buffer *C = k_buf(&k, "C", TC_FLOAT32, 2, T_OUTPUT);
  IRVar *m = loopv(&k, "x0_m"), *n = loopv(&k, "x0_n"), *kk = loopv(&k, "x0_k");
  IRVar *acc = ir_new_var(c, "acc0", VAR_LOCAL, TC_FLOAT32);
  IRStmt *red = loop(&k, kk, V(&k, k.f->sizes[2]),
                     ir_assign(c, acc, ir_bin(c, OP_ADD, V(&k, acc),
                                              ir_bin(c, OP_MUL, load2(&k, A, V(&k, m), V(&k, kk)),
                                                     load2(&k, B, V(&k, kk), V(&k, n))))));
  IRStmt *body = block(&k, ir_decl(c, acc, ir_float(c, TC_FLOAT32, 0)), red,
                       store2(&k, C, V(&k, m), V(&k, n), V(&k, acc)));
  IRStmt *nest = loop(&k, m, V(&k, k.f->sizes[0]), loop(&k, n, V(&k, k.f->sizes[1]), body));
  if (!k_build(&k, nest)) {
    CHECK(!"build");
    k_free(&k);
    return;
  }
  CHECK(strstr(k.source, "static void task_0(const void *args, int64_t lo, int64_t hi)"));
  CHECK(!strstr(k.source, "#pragma GCC ivdep")); /* the innermost loop reduces */
  CHECK(strstr(k.source, "const float *restrict b_A = (const float *)a->data[0];"));
  CHECK(strstr(k.source, "float *restrict b_C = (float *)a->data[2];"));
  enum { M = 5, KK = 4, N = 3 };
  float a[M * KK], bt[N * KK], cc[M * N];
  for (int i = 0; i < M * KK; i++)
    a[i] = (float)(i % 7) - 2.5f;
  for (int i = 0; i < N * KK; i++)
    bt[i] = (float)(i % 5) * 0.5f;
  Args ar = {.sizes = {M, N, KK}};
  set_buf(&ar, A, a, (int64_t[]){M, KK});
  set_buf(&ar, B, bt, (int64_t[]){KK, N});
  ar.stride[B->dim_offset] = 1; /* B(k,n) = bt[n*K + k] */
  ar.stride[B->dim_offset + 1] = KK;
  set_buf(&ar, C, cc, (int64_t[]){M, N});
  TestRT rt;
  CHECK_INT(run(&k, &ar, &rt), 0);
  CHECK(rt.ntasks >= 2);
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      float s = 0;
      for (int l = 0; l < KK; l++)
        s += a[i * KK + l] * bt[j * KK + l];
      CHECK(cc[i * N + j] == s);
    }
  k_free(&k);
}

/* O(i) = A(i) op B(i) for integer types: floored / and %, x/0 == 0, MIN/-1. */
static void int_divmod_case(tc_dtype t, const int64_t *x, const int64_t *y, int n,
                            const int64_t *q, const int64_t *r) {
  K k;
  Ctx *c = k_init(&k, 1);
  Buffer *A = k_buf(&k, "A", t, 1, T_INPUT);
  Buffer *B = k_buf(&k, "B", t, 1, T_INPUT);
  Buffer *Q = k_buf(&k, "Q", t, 1, T_OUTPUT);
  Buffer *R = k_buf(&k, "R", t, 1, T_OUTPUT);
  IRVar *i = loopv(&k, "x0_i"), *j = loopv(&k, "x1_i");
  IRExpr *ai = load1(&k, A, V(&k, i)), *bi = load1(&k, B, V(&k, i));
  IRExpr *aj = load1(&k, A, V(&k, j)), *bj = load1(&k, B, V(&k, j));
  IRExpr *len = V(&k, k.f->sizes[0]);
  IRStmt *s1 = loop(&k, i, len, store1(&k, Q, V(&k, i), ir_bin(c, OP_DIV, ai, bi)));
  IRStmt *s2 = loop(&k, j, len, store1(&k, R, V(&k, j), ir_bin(c, OP_MOD, aj, bj)));
  if (!k_build(&k, block(&k, s1, s2, NULL))) {
    CHECK(!"build");
    k_free(&k);
    return;
  }
  size_t sz = (size_t)dtype_info[t].size;
  unsigned char a[64], b[64], qq[64], rr[64];
  for (int e = 0; e < n; e++) {
    memcpy(a + e * sz, &x[e], sz); /* little-endian: the low bytes */
    memcpy(b + e * sz, &y[e], sz);
  }
  Args ar = {.sizes = {n}};
  int64_t shp[1] = {n};
  set_buf(&ar, A, a, shp);
  set_buf(&ar, B, b, shp);
  set_buf(&ar, Q, qq, shp);
  set_buf(&ar, R, rr, shp);
  TestRT rt;
  CHECK_INT(run(&k, &ar, &rt), 0);
  for (int e = 0; e < n; e++) {
    int64_t gq = 0, gr = 0;
    memcpy(&gq, qq + e * sz, sz);
    memcpy(&gr, rr + e * sz, sz);
    if (dtype_info[t].is_signed && sz < 8) { /* sign-extend */
      int sh = 64 - 8 * (int)sz;
      gq = (int64_t)((uint64_t)gq << sh) >> sh;
      gr = (int64_t)((uint64_t)gr << sh) >> sh;
    }
    if (gq != q[e] || gr != r[e])
      fprintf(stderr, "%s: %lld / %lld = %lld r %lld, expected %lld r %lld\n", dtype_info[t].name,
              (long long)x[e], (long long)y[e], (long long)gq, (long long)gr, (long long)q[e],
              (long long)r[e]);
    CHECK_INT(gq, q[e]);
    CHECK_INT(gr, r[e]);
  }
  k_free(&k);
}

TEST(int_floor_division) {
  int64_t x[] = {-7, 7, -7, 7, 5, -6, 0, INT32_MIN, INT32_MIN};
  int64_t y[] = {2, -2, -2, 2, 0, 3, -5, -1, 1};
  int64_t q[] = {-4, -4, 3, 3, 0, -2, 0, INT32_MIN, INT32_MIN};
  int64_t r[] = {1, -1, -1, 1, 0, 0, 0, 0, 0};
  int_divmod_case(TC_INT32, x, y, 9, q, r);
  int64_t x8[] = {-128, -128, -7, 100, -1};
  int64_t y8[] = {-1, 3, 0, -7, 127};
  int64_t q8[] = {-128, -43, 0, -15, -1};
  int64_t r8[] = {0, 1, 0, -5, 126};
  int_divmod_case(TC_INT8, x8, y8, 5, q8, r8);
  int64_t x64[] = {INT64_MIN, -9, 9, INT64_MIN};
  int64_t y64[] = {-1, 4, -4, 0};
  int64_t q64[] = {INT64_MIN, -3, -3, 0};
  int64_t r64[] = {0, 3, -3, 0};
  int_divmod_case(TC_INT64, x64, y64, 4, q64, r64);
  int64_t xu[] = {255, 7, 200};
  int64_t yu[] = {2, 0, 201};
  int64_t qu[] = {127, 0, 0};
  int64_t ru[] = {1, 0, 200};
  int_divmod_case(TC_UINT8, xu, yu, 3, qu, ru);
}

/* O(i) = cast<to>(A(i)) for every element. */
static bool cast_kernel(K *k, tc_dtype from, tc_dtype to, Buffer **A, Buffer **O) {
  Ctx *c = k_init(k, 1);
  *A = k_buf(k, "A", from, 1, T_INPUT);
  *O = k_buf(k, "O", to, 1, T_OUTPUT);
  IRVar *i = loopv(k, "x0_i");
  IRStmt *s = loop(k, i, V(k, k->f->sizes[0]),
                   store1(k, *O, V(k, i), ir_cast(c, to, load1(k, *A, V(k, i)))));
  return k_build(k, s);
}

static void run_cast(K *k, Buffer *A, Buffer *O, void *in, void *out, int n) {
  Args ar = {.sizes = {n}};
  int64_t shp[1] = {n};
  set_buf(&ar, A, in, shp);
  set_buf(&ar, O, out, shp);
  TestRT rt;
  CHECK_INT(run(k, &ar, &rt), 0);
}

TEST(float16_round_trip) {
  K k;
  Buffer *A, *O;
  if (!cast_kernel(&k, TC_FLOAT32, TC_FLOAT16, &A, &O)) {
    CHECK(!"build");
    k_free(&k);
    return;
  }
  float in[] = {1.0f, 65504.0f, 65519.0f, 65520.0f, 1e-8f, 3e-8f, 0.1f, NAN,
                -0.0f, 2049.0f, 2051.0f, -INFINITY, 0x1p-14f, 6.1e-5f, 1e10f};
  uint16_t want[] = {0x3c00, 0x7bff, 0x7bff, 0x7c00, 0x0000, 0x0001, 0x2e66, 0x7e00,
                     0x8000, 0x6800, 0x6802, 0xfc00, 0x0400, 0x03ff, 0x7c00};
  int n = (int)(sizeof in / sizeof in[0]);
  uint16_t out[16];
  run_cast(&k, A, O, in, out, n);
  for (int i = 0; i < n; i++) {
    if (out[i] != want[i])
      fprintf(stderr, "f16(%g) = 0x%04x, expected 0x%04x\n", (double)in[i], out[i], want[i]);
    CHECK_INT(out[i], want[i]);
  }
  k_free(&k);

  /* back to float32: exact */
  if (!cast_kernel(&k, TC_FLOAT16, TC_FLOAT32, &A, &O)) {
    CHECK(!"build");
    k_free(&k);
    return;
  }
  uint16_t h[] = {0x3c00, 0x7bff, 0x0001, 0x03ff, 0x8000, 0x7c00, 0x2e66, 0xc000};
  float back[8];
  run_cast(&k, A, O, h, back, 8);
  CHECK(back[0] == 1.0f);
  CHECK(back[1] == 65504.0f);
  CHECK(back[2] == 0x1p-24f);
  CHECK(back[3] == 1023 * 0x1p-24f);
  CHECK(back[4] == 0 && signbit(back[4]));
  CHECK(isinf(back[5]) && back[5] > 0);
  CHECK(back[6] == 0.0999755859375f);
  CHECK(back[7] == -2.0f);
  k_free(&k);

  /* from double: one rounding, no double rounding through float */
  if (!cast_kernel(&k, TC_FLOAT64, TC_FLOAT16, &A, &O)) {
    CHECK(!"build");
    k_free(&k);
    return;
  }
  double d[] = {1 + 0x1p-11 + 0x1p-40, 1 + 0x1p-11, 1 + 3 * 0x1p-11, 1e300, -1e-300};
  uint16_t dwant[] = {0x3c01, 0x3c00, 0x3c02, 0x7c00, 0x8000};
  uint16_t dout[5];
  run_cast(&k, A, O, d, dout, 5);
  for (int i = 0; i < 5; i++)
    CHECK_INT(dout[i], dwant[i]);
  k_free(&k);
}

TEST(bfloat16_round_trip) {
  K k;
  Buffer *A, *O;
  if (!cast_kernel(&k, TC_FLOAT32, TC_BFLOAT16, &A, &O)) {
    CHECK(!"build");
    k_free(&k);
    return;
  }
  float in[] = {1.0f, 1.00390625f, 1.01171875f, 3.0e38f, 3.4e38f, NAN, -2.5f, 1e-40f};
  uint16_t want[] = {0x3f80, 0x3f80, 0x3f82, 0x7f62, 0x7f80, 0x7fc0, 0xc020, 0x0001};
  uint16_t out[8];
  run_cast(&k, A, O, in, out, 8);
  for (int i = 0; i < 8; i++) {
    if (out[i] != want[i])
      fprintf(stderr, "bf16(%g) = 0x%04x, expected 0x%04x\n", (double)in[i], out[i], want[i]);
    CHECK_INT(out[i], want[i]);
  }
  k_free(&k);
}

TEST(saturating_casts) {
  K k;
  Buffer *A, *O;
  if (!cast_kernel(&k, TC_FLOAT32, TC_INT8, &A, &O)) {
    CHECK(!"build");
    k_free(&k);
    return;
  }
  float in[] = {300.0f, -300.0f, NAN, 2.7f, -2.7f, 127.9f, -128.9f, INFINITY};
  int8_t want[] = {127, -128, 0, 2, -2, 127, -128, 127};
  int8_t out[8];
  run_cast(&k, A, O, in, out, 8);
  for (int i = 0; i < 8; i++)
    CHECK_INT(out[i], want[i]);
  k_free(&k);

  if (!cast_kernel(&k, TC_FLOAT64, TC_UINT64, &A, &O)) {
    CHECK(!"build");
    k_free(&k);
    return;
  }
  double d[] = {-5.0, 1e30, 12345.9, NAN, -0.5};
  uint64_t uw[] = {0, UINT64_MAX, 12345, 0, 0};
  uint64_t uo[5];
  run_cast(&k, A, O, d, uo, 5);
  for (int i = 0; i < 5; i++)
    CHECK(uo[i] == uw[i]);
  k_free(&k);

  if (!cast_kernel(&k, TC_FLOAT64, TC_INT64, &A, &O)) {
    CHECK(!"build");
    k_free(&k);
    return;
  }
  double d2[] = {1e30, -1e30, 9223372036854775807.0, -9223372036854775808.0};
  int64_t w2[] = {INT64_MAX, INT64_MIN, INT64_MAX, INT64_MIN};
  int64_t o2[4];
  run_cast(&k, A, O, d2, o2, 4);
  for (int i = 0; i < 4; i++)
    CHECK(o2[i] == w2[i]);
  k_free(&k);

  if (!cast_kernel(&k, TC_FLOAT32, TC_BOOL, &A, &O)) {
    CHECK(!"build");
    k_free(&k);
    return;
  }
  float fb[] = {0.0f, -0.0f, 0.5f, NAN};
  uint8_t bw[] = {0, 0, 1, 1}, bo[4];
  run_cast(&k, A, O, fb, bo, 4);
  for (int i = 0; i < 4; i++)
    CHECK_INT(bo[i], bw[i]);
  k_free(&k);
}

/* min/max propagate NaN; fmin/fmax ignore it; float % is floored. */
TEST(nan_min_max_and_float_mod) {
  K k;
  Ctx *c = k_init(&k, 1);
  Buffer *A = k_buf(&k, "A", TC_FLOAT32, 1, T_INPUT);
  Buffer *B = k_buf(&k, "B", TC_FLOAT32, 1, T_INPUT);
  Buffer *O[5];
  static const char *const names[] = {"Mn", "Mx", "Fmn", "Fmx", "Md"};
  for (int i = 0; i < 5; i++)
    O[i] = k_buf(&k, names[i], TC_FLOAT32, 1, T_OUTPUT);
  IRStmt *st[5];
  for (int q = 0; q < 5; q++) {
    IRVar *i = loopv(&k, arena_printf(c->arena, "x%d_i", q));
    IRExpr *a = load1(&k, A, V(&k, i)), *b = load1(&k, B, V(&k, i));
    IRExpr *args[2] = {a, b};
    IRExpr *v = q == 0   ? ir_bin(c, OP_MIN, a, b)
                : q == 1 ? ir_bin(c, OP_MAX, a, b)
                : q == 2 ? ir_call(c, TC_FLOAT32, BI_fmin, args, 2)
                : q == 3 ? ir_call(c, TC_FLOAT32, BI_fmax, args, 2)
                         : ir_bin(c, OP_MOD, a, b);
    st[q] = loop(&k, i, V(&k, k.f->sizes[0]), store1(&k, O[q], V(&k, i), v));
  }
  IRStmt *body = ir_block(c, st, 5);
  if (!k_build(&k, body)) {
    CHECK(!"build");
    k_free(&k);
    return;
  }
  float a[] = {NAN, 1.0f, 2.0f, -7.0f, 7.0f, -1.0f};
  float b[] = {1.0f, NAN, 3.0f, 2.0f, -2.0f, INFINITY};
  float out[5][6];
  Args ar = {.sizes = {6}};
  int64_t shp[1] = {6};
  set_buf(&ar, A, a, shp);
  set_buf(&ar, B, b, shp);
  for (int q = 0; q < 5; q++)
    set_buf(&ar, O[q], out[q], shp);
  TestRT rt;
  CHECK_INT(run(&k, &ar, &rt), 0);
  CHECK(isnan(out[0][0]) && isnan(out[0][1]) && out[0][2] == 2.0f);
  CHECK(isnan(out[1][0]) && isnan(out[1][1]) && out[1][2] == 3.0f);
  CHECK(out[2][0] == 1.0f && out[2][1] == 1.0f);
  CHECK(out[3][0] == 1.0f && out[3][1] == 1.0f && out[3][2] == 3.0f);
  CHECK(out[4][3] == 1.0f);  /* -7 % 2 */
  CHECK(out[4][4] == -1.0f); /* 7 % -2 */
  CHECK(isnan(out[4][5]));   /* -1 - inf * floor(-1 / inf) */
  k_free(&k);
}

/* O(i) = E(Idx(i)) guarded per element: a bad index reports its site, the
 * value and the extent, and the kernel returns 1. */
TEST(indirect_index_failure) {
  K k;
  Ctx *c = k_init(&k, 2);
  Buffer *E = k_buf(&k, "E", TC_FLOAT32, 1, T_INPUT);
  Buffer *Ix = k_buf(&k, "Idx", TC_INT32, 1, T_INPUT);
  Buffer *O = k_buf(&k, "O", TC_FLOAT32, 1, T_OUTPUT);
  k_site(&k, FAIL_RANGE, E, 0); /* a decoy: site numbers must come through */
  int site = k_site(&k, FAIL_INDEX, E, 0);
  IRVar *i = loopv(&k, "x0_i");
  IRExpr *ix = ir_cast(c, TC_INT64, load1(&k, Ix, V(&k, i)));
  IRExpr *n = V(&k, E->shape[0]);
  IRExpr *ok = ir_bin(c, OP_AND, ir_bin(c, OP_GE, ix, I(&k, 0)), ir_bin(c, OP_LT, ix, n));
  IRExpr *v = ir_select(c, ok, load1(&k, E, ix), ir_fail(c, TC_FLOAT32, site, ix, n));
  IRStmt *s = loop(&k, i, V(&k, k.f->sizes[1]), store1(&k, O, V(&k, i), v));
  if (!k_build(&k, s)) {
    CHECK(!"build");
    k_free(&k);
    return;
  }
  float e[4] = {10, 11, 12, 13}, o[5];
  int32_t idx[5] = {3, 0, 2, 1, 1};
  Args ar = {.sizes = {4, 5}};
  set_buf(&ar, E, e, (int64_t[]){4});
  set_buf(&ar, Ix, idx, (int64_t[]){5});
  set_buf(&ar, O, o, (int64_t[]){5});
  TestRT rt;
  CHECK_INT(run(&k, &ar, &rt), 0);
  CHECK(o[0] == 13 && o[1] == 10 && o[2] == 12 && o[3] == 11);
  idx[3] = 4;
  CHECK_INT(run(&k, &ar, &rt), 1);
  CHECK_INT(rt.site, site);
  CHECK_INT(rt.value, 4);
  CHECK_INT(rt.bound, 4);
  idx[3] = -1;
  CHECK_INT(run(&k, &ar, &rt), 1);
  CHECK_INT(rt.value, -1);
  k_free(&k);
}

/* An S_CHECK before a loop stops the kernel before any store. */
TEST(check_stops_kernel) {
  K k;
  Ctx *c = k_init(&k, 1);
  Buffer *A = k_buf(&k, "A", TC_INT16, 1, T_INPUT);
  Buffer *O = k_buf(&k, "O", TC_INT16, 1, T_OUTPUT);
  int site = k_site(&k, FAIL_RANGE, A, 0);
  IRVar *i = loopv(&k, "x0_i");
  IRExpr *n = V(&k, k.f->sizes[0]);
  /* reads A(i + 1): needs N + 1 <= extent of A */
  IRExpr *hi = ir_add(c, n, I(&k, 0));
  IRStmt *chk = ir_check(c, ir_bin(c, OP_LT, hi, V(&k, A->shape[0])),
                         ir_fail(c, TC_INT64, site, hi, V(&k, A->shape[0])));
  /* int16 arithmetic wraps: O(i) = A(i+1) * 300 */
  IRExpr *v = ir_bin(c, OP_MUL, load1(&k, A, ir_add(c, V(&k, i), I(&k, 1))),
                     ir_int(c, TC_INT16, 300));
  IRStmt *s = block(&k, chk, loop(&k, i, n, store1(&k, O, V(&k, i), v)), NULL);
  if (!k_build(&k, s)) {
    CHECK(!"build");
    k_free(&k);
    return;
  }
  int16_t a[4] = {1, 2, 200, -3}, o[4] = {0};
  Args ar = {.sizes = {3}};
  set_buf(&ar, A, a, (int64_t[]){4});
  set_buf(&ar, O, o, (int64_t[]){3});
  TestRT rt;
  CHECK_INT(run(&k, &ar, &rt), 0);
  CHECK_INT(o[0], 600);
  CHECK_INT(o[1], (int16_t)(200 * 300)); /* wraps to -5536 */
  CHECK_INT(o[2], -900);
  o[0] = 0;
  ar.sizes[0] = 4;
  set_buf(&ar, O, o, (int64_t[]){4});
  CHECK_INT(run(&k, &ar, &rt), 1);
  CHECK_INT(rt.site, site);
  CHECK_INT(rt.value, 4);
  CHECK_INT(rt.bound, 4);
  CHECK_INT(o[0], 0);
  k_free(&k);
}

/* A rank-0 reduction with a float16 accumulator: the sum is kept in float32
 * precision and rounded once at the store. */
TEST(float16_accumulator) {
  K k;
  Ctx *c = k_init(&k, 1);
  Buffer *A = k_buf(&k, "A", TC_FLOAT16, 1, T_INPUT);
  Buffer *S = k_buf(&k, "S", TC_FLOAT16, 0, T_OUTPUT);
  IRVar *i = loopv(&k, "x0_i");
  IRVar *acc = ir_new_var(c, "acc0", VAR_LOCAL, TC_FLOAT16);
  IRStmt *red = loop(&k, i, V(&k, k.f->sizes[0]),
                     ir_assign(c, acc, ir_bin(c, OP_ADD, V(&k, acc), load1(&k, A, V(&k, i)))));
  IRStmt *s = block(&k, ir_decl(c, acc, ir_float(c, TC_FLOAT16, 0)), red,
                    ir_store(c, S, NULL, 0, V(&k, acc)));
  if (!k_build(&k, s)) {
    CHECK(!"build");
    k_free(&k);
    return;
  }
  /* 2048 + 1 + 1 + 1 + 1: in float16 steps 2048 + 1 == 2048; in float 2052 */
  uint16_t a[5] = {0x6800, 0x3c00, 0x3c00, 0x3c00, 0x3c00}, s16 = 0;
  Args ar = {.sizes = {5}};
  set_buf(&ar, A, a, (int64_t[]){5});
  set_buf(&ar, S, &s16, NULL);
  TestRT rt;
  CHECK_INT(run(&k, &ar, &rt), 0);
  CHECK_INT(s16, 0x6802); /* 2052 */
  k_free(&k);
}

RUN_TESTS()
