/* test_api.c — the public API end to end: compile errors with positions,
 * entries and parameters, running matmul on DLTensors (strided, transposed,
 * offset, empty), both targets, binding errors and their messages,
 * tc_run_alloc, aliasing checks, shape inference, explain, run-time
 * failures, the cache through tc_prepare, and threads sharing a context. */
#include "tensorc.h"
#include "unit.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

static char cache_dir[64];

static tc_context *new_context(int threads) {
  if (!cache_dir[0]) {
    strcpy(cache_dir, "/tmp/tc-test-api-XXXXXX");
    if (!mkdtemp(cache_dir))
      return NULL;
  }
  tc_context_options o;
  tc_context_options_init(&o);
  o.cache_dir = cache_dir;
  o.num_threads = threads;
  tc_context *ctx = NULL;
  tc_error err;
  if (tc_context_new(&o, &ctx, &err) != TC_OK)
    fprintf(stderr, "tc_context_new: %s\n", err.message);
  return ctx;
}

static tc_program *compile(tc_context *ctx, const char *src, tc_error *err) {
  tc_program *p = NULL;
  tc_status st = tc_compile(ctx, "test.tc", src, strlen(src), &p, err);
  if (st != TC_OK && st != TC_ERR_PROGRAM)
    fprintf(stderr, "tc_compile: %s\n", err->diagnostic);
  return p;
}

static DLTensor tensor(void *data, tc_dtype t, int ndim, int64_t *shape, int64_t *strides) {
  DLTensor d = {data, {kDLCPU, 0}, ndim, tc_dtype_to_dl(t), shape, strides, 0};
  return d;
}

/* Deterministic pseudo-random floats in [-1, 1). */
static void fill(float *x, int64_t n, uint32_t seed) {
  for (int64_t i = 0; i < n; i++) {
    seed = seed * 1664525u + 1013904223u;
    x[i] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
  }
}

static const char *matmul_src =
    "# matrix product\n"
    "def matmul(float(M,K) A, float(K,N) B) -> (C) {\n"
    "    C(m,n) +=! A(m,k) * B(k,n)\n"
    "}\n"
    "def scale(float(N) X, float alpha) -> (Y) {\n"
    "    Y(i) = X(i) * alpha\n"
    "}\n";

/* C = A * B with element strides for each operand. */
static void ref_matmul(const float *A, const float *B, float *C, int64_t M, int64_t K,
                       int64_t N, const int64_t *sa, const int64_t *sb) {
  for (int64_t m = 0; m < M; m++)
    for (int64_t n = 0; n < N; n++) {
      float acc = 0;
      for (int64_t k = 0; k < K; k++)
        acc += A[m * sa[0] + k * sa[1]] * B[k * sb[0] + n * sb[1]];
      C[m * N + n] = acc;
    }
}

static int64_t count_mismatches(const float *got, const int64_t *gs, const float *want,
                                int64_t M, int64_t N) {
  int64_t bad = 0;
  for (int64_t m = 0; m < M; m++)
    for (int64_t n = 0; n < N; n++) {
      float g = got[m * gs[0] + n * gs[1]], w = want[m * N + n];
      bad += !(fabsf(g - w) <= 1e-4f * (1 + fabsf(w)));
    }
  return bad;
}

TEST(compile_errors_have_positions) {
  tc_context *ctx = new_context(2);
  tc_error err;
  tc_program *p = compile(ctx, "def f(float(N) A) -> (B) {\n  B(i) = C(i)\n}\n", &err);
  CHECK(p == NULL);
  CHECK_INT(err.code, TC_ERR_PROGRAM);
  CHECK_INT(err.line, 2);
  CHECK_INT(err.col, 10);
  CHECK(strncmp(err.diagnostic, "test.tc:2:10: error: ", 21) == 0);
  CHECK(strstr(err.diagnostic, "\n  B(i) = C(i)\n         ^") != NULL);

  p = compile(ctx, "def f(float(N) A) -> (B) {\n  B(i) = A(i) +\n}\n", &err);
  CHECK(p == NULL);
  CHECK_INT(err.code, TC_ERR_PROGRAM);
  CHECK(err.line >= 2 && err.col > 0);

  p = compile(ctx, "\x01\xff garbage", &err);
  CHECK(p == NULL);
  CHECK_INT(err.code, TC_ERR_PROGRAM);
  CHECK_INT(err.line, 1);

  CHECK(tc_compile(ctx, "x", NULL, 3, &p, &err) == TC_ERR_ARGUMENT);
  tc_context_free(ctx);
}

TEST(entries_and_params) {
  tc_context *ctx = new_context(2);
  tc_error err;
  tc_program *p = compile(ctx, matmul_src, &err);
  CHECK(p != NULL);
  if (!p)
    return;
  CHECK_INT(tc_program_num_entries(p), 2);
  CHECK_STR(tc_program_entry_name(p, 0), "matmul");
  CHECK_STR(tc_program_entry_name(p, 1), "scale");
  CHECK(tc_program_entry_name(p, 2) == NULL);
  CHECK_INT(tc_program_find_entry(p, "scale"), 1);
  CHECK_INT(tc_program_find_entry(p, "nope"), -1);
  CHECK_INT(tc_entry_num_inputs(p, 0), 2);
  CHECK_INT(tc_entry_num_outputs(p, 0), 1);
  tc_param_info info;
  CHECK_INT(tc_entry_input(p, 0, 1, &info), TC_OK);
  CHECK_STR(info.name, "B");
  CHECK_INT(info.dtype, TC_FLOAT32);
  CHECK_INT(info.rank, 2);
  CHECK_STR(info.dim_names[0], "K");
  CHECK_STR(info.dim_names[1], "N");
  CHECK_INT(tc_entry_output(p, 0, 0, &info), TC_OK);
  CHECK_STR(info.name, "C");
  CHECK_INT(info.rank, 2);
  CHECK_INT(info.typed, 0);
  CHECK_INT(tc_entry_input(p, 1, 1, &info), TC_OK);
  CHECK_INT(info.rank, 0);
  CHECK_INT(tc_entry_input(p, 0, 2, &info), TC_ERR_ARGUMENT);
  tc_program_free(p);
  tc_program_free(NULL);
  tc_context_free(ctx);
  tc_context_free(NULL);
}

/* Runs matmul with B given through `bs` strides over a buffer, checks C. */
static void run_matmul(tc_program *p, tc_target target, int64_t M, int64_t K, int64_t N,
                       bool transposed_b) {
  float *A = malloc(sizeof(float) * (size_t)(M * K + 1));
  float *Bbuf = malloc(sizeof(float) * (size_t)(K * N + 1));
  float *C = malloc(sizeof(float) * (size_t)(M * N + 1));
  float *R = malloc(sizeof(float) * (size_t)(M * N + 1));
  fill(A, M * K, 1);
  fill(Bbuf, K * N, 2);
  int64_t sa[2] = {K, 1};
  int64_t sb[2] = {N, 1};
  if (transposed_b) { /* B(k,n) = Bbuf[n*K + k]: the transpose of an (N,K) array */
    sb[0] = 1;
    sb[1] = K;
  }
  int64_t ashape[2] = {M, K}, bshape[2] = {K, N}, cshape[2] = {M, N};
  DLTensor a = tensor(A, TC_FLOAT32, 2, ashape, NULL);
  DLTensor b = tensor(Bbuf, TC_FLOAT32, 2, bshape, sb);
  DLTensor c = tensor(C, TC_FLOAT32, 2, cshape, NULL);
  for (int64_t i = 0; i < M * N; i++)
    C[i] = NAN; /* every element must be written */
  DLTensor *in[2] = {&a, &b}, *out[1] = {&c};
  tc_error err;
  tc_status st = tc_run(p, 0, in, 2, out, 1, target, &err);
  CHECK_INT(st, TC_OK);
  if (st)
    fprintf(stderr, "tc_run: %s\n", err.diagnostic);
  ref_matmul(A, Bbuf, R, M, K, N, sa, sb);
  int64_t cs[2] = {N, 1};
  CHECK_INT(count_mismatches(C, cs, R, M, N), 0);
  free(A);
  free(Bbuf);
  free(C);
  free(R);
}

TEST(matmul_runs) {
  tc_context *ctx = new_context(4);
  tc_error err;
  tc_program *p = compile(ctx, matmul_src, &err);
  CHECK(p != NULL);
  if (!p)
    return;
  int64_t shapes[][3] = {{37, 29, 53}, {1, 1, 1}, {64, 64, 64}, {3, 100, 7}, {0, 5, 4},
                         {5, 0, 4},    {5, 4, 0}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    for (int t = 0; t < 2; t++) {
      run_matmul(p, TC_TARGET_C, shapes[i][0], shapes[i][1], shapes[i][2], t);
      run_matmul(p, TC_TARGET_INTERP, shapes[i][0], shapes[i][1], shapes[i][2], t);
    }
  }
  tc_program_free(p);
  tc_context_free(ctx);
}

TEST(strided_output_and_byte_offset) {
  tc_context *ctx = new_context(3);
  tc_error err;
  tc_program *p = compile(ctx, matmul_src, &err);
  if (!p) {
    CHECK(p != NULL);
    return;
  }
  enum { M = 6, K = 5, N = 4 };
  float A[M * K + 3], B[K * N], C[N * M], R[M * N];
  fill(A, M * K + 3, 7);
  fill(B, K * N, 8);
  int64_t ashape[2] = {M, K}, bshape[2] = {K, N}, cshape[2] = {M, N}, cstr[2] = {1, M};
  DLTensor a = tensor(A, TC_FLOAT32, 2, ashape, NULL);
  a.byte_offset = 3 * sizeof(float); /* A starts at A[3] */
  DLTensor b = tensor(B, TC_FLOAT32, 2, bshape, NULL);
  DLTensor c = tensor(C, TC_FLOAT32, 2, cshape, cstr); /* column-major output */
  DLTensor *in[2] = {&a, &b}, *out[1] = {&c};
  for (int target = 0; target < 2; target++) {
    memset(C, 0, sizeof C);
    CHECK_INT(tc_run(p, 0, in, 2, out, 1, (tc_target)target, &err), TC_OK);
    int64_t sa[2] = {K, 1}, sb[2] = {N, 1};
    ref_matmul(A + 3, B, R, M, K, N, sa, sb);
    CHECK_INT(count_mismatches(C, cstr, R, M, N), 0);
  }
  tc_program_free(p);
  tc_context_free(ctx);
}

TEST(scalar_input) {
  tc_context *ctx = new_context(2);
  tc_error err;
  tc_program *p = compile(ctx, matmul_src, &err);
  if (!p) {
    CHECK(p != NULL);
    return;
  }
  float x[5] = {1, 2, 3, 4, 5}, alpha = 2.5f, y[5] = {0};
  int64_t n[1] = {5};
  DLTensor X = tensor(x, TC_FLOAT32, 1, n, NULL), A = tensor(&alpha, TC_FLOAT32, 0, NULL, NULL),
           Y = tensor(y, TC_FLOAT32, 1, n, NULL);
  DLTensor *in[2] = {&X, &A}, *out[1] = {&Y};
  CHECK_INT(tc_run(p, 1, in, 2, out, 1, TC_TARGET_C, &err), TC_OK);
  CHECK(y[0] == 2.5f && y[4] == 12.5f);
  tc_program_free(p);
  tc_context_free(ctx);
}

TEST(binding_errors) {
  tc_context *ctx = new_context(2);
  tc_error err;
  tc_program *p = compile(ctx, matmul_src, &err);
  if (!p) {
    CHECK(p != NULL);
    return;
  }
  static float A[37 * 37], B[53 * 53], C[37 * 53];
  static double D[37 * 37];
  int64_t ashape[2] = {37, 37}, bshape[2] = {53, 53}, cshape[2] = {37, 53};
  DLTensor a = tensor(A, TC_FLOAT32, 2, ashape, NULL), b = tensor(B, TC_FLOAT32, 2, bshape, NULL),
           c = tensor(C, TC_FLOAT32, 2, cshape, NULL);
  DLTensor *in[2] = {&a, &b}, *out[1] = {&c};
  CHECK_INT(tc_run(p, 0, in, 2, out, 1, TC_TARGET_C, &err), TC_ERR_ARGUMENT);
  CHECK_STR(err.message, "matmul: B has size 53 in dim 0, but K = 37 (from A dim 1)");

  DLTensor d = tensor(D, TC_FLOAT64, 2, ashape, NULL);
  DLTensor *in2[2] = {&d, &b};
  CHECK_INT(tc_run(p, 0, in2, 2, out, 1, TC_TARGET_C, &err), TC_ERR_ARGUMENT);
  CHECK_STR(err.message, "matmul: A has dtype float64, expected float32");

  DLTensor r1 = tensor(A, TC_FLOAT32, 1, ashape, NULL);
  DLTensor *in3[2] = {&r1, &b};
  CHECK_INT(tc_run(p, 0, in3, 2, out, 1, TC_TARGET_C, &err), TC_ERR_ARGUMENT);
  CHECK_STR(err.message, "matmul: A has rank 1, expected 2");

  DLTensor g = a;
  g.device.device_type = kDLCUDA;
  DLTensor *in4[2] = {&g, &b};
  CHECK_INT(tc_run(p, 0, in4, 2, out, 1, TC_TARGET_C, &err), TC_ERR_ARGUMENT);
  CHECK(strstr(err.message, "B is on cpu:0 but A is on cuda:0") != NULL); /* one device a run */

  CHECK_INT(tc_run(p, 0, in, 1, out, 1, TC_TARGET_C, &err), TC_ERR_ARGUMENT);
  CHECK(strstr(err.message, "matmul takes 2 inputs") != NULL);
  CHECK_INT(tc_run(p, 7, in, 2, out, 1, TC_TARGET_C, &err), TC_ERR_ARGUMENT);

  /* wrong output shape: B is 37x53 now, C must be 37x53 */
  int64_t bshape2[2] = {37, 53}, cbad[2] = {37, 52};
  DLTensor b2 = tensor(B, TC_FLOAT32, 2, bshape2, NULL), c2 = tensor(C, TC_FLOAT32, 2, cbad, NULL);
  DLTensor *in5[2] = {&a, &b2}, *out5[1] = {&c2};
  CHECK_INT(tc_run(p, 0, in5, 2, out5, 1, TC_TARGET_C, &err), TC_ERR_ARGUMENT);
  CHECK_STR(err.message, "matmul: output C has size 52 in dim 1, expected 53 (inferred)");
  DLTensor c3 = tensor(D, TC_FLOAT64, 2, cshape, NULL);
  DLTensor *out6[1] = {&c3};
  CHECK_INT(tc_run(p, 0, in5, 2, out6, 1, TC_TARGET_C, &err), TC_ERR_ARGUMENT);
  CHECK_STR(err.message, "matmul: C has dtype float64, expected float32");
  DLTensor *out7[1] = {&c};
  CHECK_INT(tc_run(p, 0, in5, 2, out7, 1, TC_TARGET_C, &err), TC_OK);
  DLTensor nodata = a;
  nodata.data = NULL;
  DLTensor *in8[2] = {&nodata, &b2};
  CHECK_INT(tc_run(p, 0, in8, 2, out7, 1, TC_TARGET_C, &err), TC_ERR_ARGUMENT);
  CHECK(strstr(err.message, "A has no data") != NULL);
  tc_program_free(p);
  tc_context_free(ctx);
}

TEST(overlap_detection) {
  tc_context *ctx = new_context(2);
  tc_error err;
  tc_program *p = compile(ctx, matmul_src, &err);
  if (!p) {
    CHECK(p != NULL);
    return;
  }
  static float A[16], B[16], C[16];
  int64_t s[2] = {4, 4};
  DLTensor a = tensor(A, TC_FLOAT32, 2, s, NULL), b = tensor(B, TC_FLOAT32, 2, s, NULL);
  DLTensor c = tensor(A + 15, TC_FLOAT32, 2, s, NULL); /* shares A[15] */
  DLTensor *in[2] = {&a, &b}, *out[1] = {&c};
  CHECK_INT(tc_run(p, 0, in, 2, out, 1, TC_TARGET_C, &err), TC_ERR_ARGUMENT);
  CHECK_STR(err.message, "matmul: output C overlaps input A in memory");

  static float BB[40];
  int64_t bstr[2] = {-4, 1}; /* B walked backwards from its last row */
  DLTensor bneg = tensor(BB + 12, TC_FLOAT32, 2, s, bstr);
  DLTensor c_in_b = tensor(BB + 1, TC_FLOAT32, 2, s, NULL);
  DLTensor *in2[2] = {&a, &bneg}, *out2[1] = {&c_in_b};
  CHECK_INT(tc_run(p, 0, in2, 2, out2, 1, TC_TARGET_C, &err), TC_ERR_ARGUMENT);
  CHECK_STR(err.message, "matmul: output C overlaps input B in memory");

  int64_t zero[2] = {0, 1}; /* broadcast output: rows share memory */
  DLTensor cz = tensor(C, TC_FLOAT32, 2, s, zero);
  DLTensor *out3[1] = {&cz};
  CHECK_INT(tc_run(p, 0, in, 2, out3, 1, TC_TARGET_C, &err), TC_ERR_ARGUMENT);
  CHECK(strstr(err.message, "output C has overlapping elements") != NULL);
  int64_t inter[2] = {2, 1}; /* rows of 4 every 2 elements */
  DLTensor ci = tensor(C, TC_FLOAT32, 2, s, inter);
  DLTensor *out4[1] = {&ci};
  CHECK_INT(tc_run(p, 0, in, 2, out4, 1, TC_TARGET_C, &err), TC_ERR_ARGUMENT);

  /* inputs may alias each other; disjoint interleaved views are fine */
  static float W[32];
  int64_t str2[2] = {8, 2};
  DLTensor even = tensor(W, TC_FLOAT32, 2, s, str2);
  DLTensor *in5[2] = {&a, &a}, *out5[1] = {&even};
  CHECK_INT(tc_run(p, 0, in5, 2, out5, 1, TC_TARGET_C, &err), TC_OK);
  /* broadcast (stride 0) inputs are fine */
  DLTensor abc = tensor(A, TC_FLOAT32, 2, s, zero);
  DLTensor c0 = tensor(C, TC_FLOAT32, 2, s, NULL);
  DLTensor *in6[2] = {&abc, &b}, *out6[1] = {&c0};
  CHECK_INT(tc_run(p, 0, in6, 2, out6, 1, TC_TARGET_C, &err), TC_OK);
  tc_program_free(p);
  tc_context_free(ctx);
}

static const char *two_outputs_src =
    "def two(float(N) A) -> (B, C) {\n"
    "    B(i) = A(i) + 1\n"
    "    C(i) = A(i) * 2\n"
    "}\n";

TEST(outputs_overlapping_each_other) {
  tc_context *ctx = new_context(2);
  tc_error err;
  tc_program *p = compile(ctx, two_outputs_src, &err);
  if (!p) {
    CHECK(p != NULL);
    return;
  }
  float A[8] = {0}, O[12];
  int64_t n[1] = {8};
  DLTensor a = tensor(A, TC_FLOAT32, 1, n, NULL), b = tensor(O, TC_FLOAT32, 1, n, NULL),
           c = tensor(O + 4, TC_FLOAT32, 1, n, NULL);
  DLTensor *in[1] = {&a}, *out[2] = {&b, &c};
  CHECK_INT(tc_run(p, 0, in, 1, out, 2, TC_TARGET_C, &err), TC_ERR_ARGUMENT);
  CHECK_STR(err.message, "two: output C overlaps output B in memory");
  tc_program_free(p);
  tc_context_free(ctx);
}

TEST(run_alloc) {
  tc_context *ctx = new_context(2);
  tc_error err;
  tc_program *p = compile(ctx, matmul_src, &err);
  if (!p) {
    CHECK(p != NULL);
    return;
  }
  enum { M = 9, K = 7, N = 11 };
  float A[M * K], B[K * N], R[M * N];
  fill(A, M * K, 3);
  fill(B, K * N, 4);
  int64_t ashape[2] = {M, K}, bshape[2] = {K, N};
  DLTensor a = tensor(A, TC_FLOAT32, 2, ashape, NULL), b = tensor(B, TC_FLOAT32, 2, bshape, NULL);
  DLTensor *in[2] = {&a, &b};
  for (int target = 0; target < 2; target++) {
    DLManagedTensor *out[1] = {NULL};
    CHECK_INT(tc_run_alloc(p, 0, in, 2, out, 1, (tc_target)target, &err), TC_OK);
    if (!out[0])
      continue;
    DLTensor *c = &out[0]->dl_tensor;
    CHECK_INT(c->ndim, 2);
    CHECK_INT(c->shape[0], M);
    CHECK_INT(c->shape[1], N);
    CHECK_INT(c->device.device_type, kDLCPU);
    CHECK_INT(c->dtype.code, kDLFloat);
    CHECK_INT(c->dtype.bits, 32);
    CHECK_INT(((uintptr_t)c->data) % 64, 0);
    int64_t sa[2] = {K, 1}, sb[2] = {N, 1}, cs[2] = {N, 1};
    ref_matmul(A, B, R, M, K, N, sa, sb);
    CHECK_INT(count_mismatches(c->data, cs, R, M, N), 0);
    out[0]->deleter(out[0]);
  }
  /* on failure no output is left allocated */
  int64_t bad[2] = {K + 1, N};
  DLTensor b2 = tensor(B, TC_FLOAT32, 2, bad, NULL);
  DLTensor *in2[2] = {&a, &b2};
  DLManagedTensor *out2[1] = {(DLManagedTensor *)&err};
  CHECK_INT(tc_run_alloc(p, 0, in2, 2, out2, 1, TC_TARGET_C, &err), TC_ERR_ARGUMENT);
  CHECK(out2[0] == NULL);
  tc_program_free(p);
  tc_context_free(ctx);
}

static const char *conv_src =
    "def conv1d(float(BS) B, float(KS) W) -> (A) {\n"
    "    A(i) +=! B(i + k) * W(k)\n"
    "}\n";

TEST(infer_shapes) {
  tc_context *ctx = new_context(2);
  tc_error err;
  tc_program *p = compile(ctx, conv_src, &err);
  if (!p) {
    CHECK(p != NULL);
    return;
  }
  tc_shape in[2] = {{1, {10}}, {1, {3}}}, out[1];
  CHECK_INT(tc_infer_shapes(p, 0, in, 2, out, 1, &err), TC_OK);
  CHECK_INT(out[0].rank, 1);
  CHECK_INT(out[0].dims[0], 8);
  tc_shape small[2] = {{1, {2}}, {1, {6}}};
  CHECK_INT(tc_infer_shapes(p, 0, small, 2, out, 1, &err), TC_ERR_ARGUMENT);
  CHECK_STR(err.message, "conv1d: inferred size of A dim 0 is -3 (shapes too small for the "
                         "ranges of this definition)");
  tc_shape rank[2] = {{2, {2, 2}}, {1, {6}}};
  CHECK_INT(tc_infer_shapes(p, 0, rank, 2, out, 1, &err), TC_ERR_ARGUMENT);
  CHECK_STR(err.message, "conv1d: B has rank 2, expected 1");

  /* and running computes the same thing */
  float B[10], W[3], A[8], R[8];
  fill(B, 10, 5);
  fill(W, 3, 6);
  for (int i = 0; i < 8; i++)
    R[i] = B[i] * W[0] + B[i + 1] * W[1] + B[i + 2] * W[2];
  int64_t bs[1] = {10}, ws[1] = {3}, as[1] = {8};
  DLTensor b = tensor(B, TC_FLOAT32, 1, bs, NULL), w = tensor(W, TC_FLOAT32, 1, ws, NULL),
           a = tensor(A, TC_FLOAT32, 1, as, NULL);
  DLTensor *ins[2] = {&b, &w}, *outs[1] = {&a};
  CHECK_INT(tc_run(p, 0, ins, 2, outs, 1, TC_TARGET_C, &err), TC_OK);
  int bad = 0;
  for (int i = 0; i < 8; i++)
    bad += fabsf(A[i] - R[i]) > 1e-5f;
  CHECK_INT(bad, 0);
  tc_program_free(p);
  tc_context_free(ctx);
}

TEST(explain_shows_ranges) {
  tc_context *ctx = new_context(2);
  tc_error err;
  tc_program *p = compile(ctx, matmul_src, &err);
  if (!p) {
    CHECK(p != NULL);
    return;
  }
  char *text = NULL;
  CHECK_INT(tc_explain(p, 0, NULL, 0, &text, &err), TC_OK);
  CHECK(text && strstr(text, "C(m,n) +=! A(m,k) * B(k,n)"));
  CHECK(text && strstr(text, "m in [0, "));
  CHECK(text && strstr(text, "k in [0, "));
  CHECK(text && strstr(text, "(reduction)"));
  CHECK(text && strstr(text, "loop nest:"));
  tc_free(text);
  tc_shape in[2] = {{2, {37, 29}}, {2, {29, 53}}};
  CHECK_INT(tc_explain(p, 0, in, 2, &text, &err), TC_OK);
  CHECK(text && strstr(text, "= [0, 37)"));
  CHECK(text && strstr(text, "= [0, 29)"));
  CHECK(text && strstr(text, "= (37, 53)"));
  tc_free(text);
  tc_shape bad[2] = {{2, {37, 29}}, {2, {30, 53}}};
  CHECK_INT(tc_explain(p, 0, bad, 2, &text, &err), TC_ERR_ARGUMENT);
  CHECK_STR(err.message, "matmul: B has size 30 in dim 0, but K = 29 (from A dim 1)");

  char *src = NULL;
  CHECK_INT(tc_emit(p, 0, TC_TARGET_C, &src, &err), TC_OK);
  CHECK(src && strstr(src, "tc_kernel"));
  tc_free(src);
  CHECK_INT(tc_emit(p, 0, TC_TARGET_INTERP, &src, &err), TC_ERR_UNSUPPORTED);
  char *dump = NULL;
  CHECK_INT(tc_dump_passes(p, 0, &dump, &err), TC_OK);
  CHECK(dump && strlen(dump) > 0);
  tc_free(dump);
  tc_program_free(p);
  tc_context_free(ctx);
}

static const char *gather_src =
    "def gather(float(V,D) E, int32(L) Idx) -> (O) {\n"
    "    O(l,d) = E(Idx(l), d)\n"
    "}\n";

TEST(runtime_failure_is_located) {
  tc_context *ctx = new_context(2);
  tc_error err;
  tc_program *p = compile(ctx, gather_src, &err);
  if (!p) {
    CHECK(p != NULL);
    return;
  }
  float E[10 * 2], O[4 * 2];
  int32_t idx[4] = {1, 9, 12, 0};
  fill(E, 20, 9);
  int64_t es[2] = {10, 2}, is[1] = {4}, os[2] = {4, 2};
  DLTensor e = tensor(E, TC_FLOAT32, 2, es, NULL), i = tensor(idx, TC_INT32, 1, is, NULL),
           o = tensor(O, TC_FLOAT32, 2, os, NULL);
  DLTensor *in[2] = {&e, &i}, *out[1] = {&o};
  for (int target = 0; target < 2; target++) {
    CHECK_INT(tc_run(p, 0, in, 2, out, 1, (tc_target)target, &err), TC_ERR_RUNTIME);
    CHECK_STR(err.message, "index 12 is out of range for E dim 0 (size 10)");
    CHECK_INT(err.line, 2);
    CHECK(err.col > 0);
  }
  idx[2] = 3;
  CHECK_INT(tc_run(p, 0, in, 2, out, 1, TC_TARGET_C, &err), TC_OK);
  CHECK(O[2] == E[18] && O[3] == E[19] && O[4] == E[6]);
  tc_program_free(p);
  tc_context_free(ctx);
}

static const char *shift_src =
    "def shift(float(N) A) -> (B) {\n"
    "    B(i) = A(i + 2) where i in 0:N\n"
    "}\n";

TEST(range_check_before_running) {
  tc_context *ctx = new_context(2);
  tc_error err;
  tc_program *p = compile(ctx, shift_src, &err);
  if (!p) {
    CHECK(p != NULL);
    return;
  }
  float A[5] = {0}, B[5];
  int64_t n[1] = {5};
  DLTensor a = tensor(A, TC_FLOAT32, 1, n, NULL), b = tensor(B, TC_FLOAT32, 1, n, NULL);
  DLTensor *in[1] = {&a}, *out[1] = {&b};
  CHECK_INT(tc_run(p, 0, in, 1, out, 1, TC_TARGET_C, &err), TC_ERR_RUNTIME);
  CHECK_STR(err.message, "with these sizes the read of A dim 0 reaches index 6, but its size is 5 "
                         "(check the where clause)");
  CHECK_INT(err.line, 2);
  CHECK_INT(err.col, 12);
  CHECK(strstr(err.diagnostic, "test.tc:2:12: error: ") == err.diagnostic);
  CHECK_INT(tc_run(p, 0, in, 1, out, 1, TC_TARGET_INTERP, &err), TC_ERR_RUNTIME);
  CHECK_INT(err.line, 2);
  tc_program_free(p);
  tc_context_free(ctx);
}

static const char *temp_src =
    "def withtemp(float(N) A) -> (B) {\n"
    "    T(i) = A(i) * 2\n"
    "    B(i) = T(i) + 1\n"
    "}\n";

TEST(temporaries_and_prepare_info) {
  tc_context *ctx = new_context(2);
  tc_error err;
  /* a source nobody compiled before in this cache directory */
  char src[256];
  snprintf(src, sizeof src, "# %ld\n%s", (long)getpid(), temp_src);
  tc_program *p = compile(ctx, src, &err);
  if (!p) {
    CHECK(p != NULL);
    return;
  }
  tc_prepare_info info;
  CHECK_INT(tc_prepare(p, 0, &info, &err), TC_OK);
  CHECK_INT(info.source, 0);
  CHECK(info.seconds > 0);
  CHECK(strstr(info.path, cache_dir) != NULL);
  CHECK_INT(tc_prepare(p, 0, &info, &err), TC_OK);
  CHECK_INT(info.source, 1);
  float A[3] = {1, 2, 3}, B[3];
  int64_t n[1] = {3};
  DLTensor a = tensor(A, TC_FLOAT32, 1, n, NULL), b = tensor(B, TC_FLOAT32, 1, n, NULL);
  DLTensor *in[1] = {&a}, *out[1] = {&b};
  CHECK_INT(tc_run(p, 0, in, 1, out, 1, TC_TARGET_C, &err), TC_OK);
  CHECK(B[0] == 3 && B[1] == 5 && B[2] == 7);
  tc_program_free(p);
  tc_context_free(ctx);

  ctx = new_context(2); /* a new context: the kernel comes from disk */
  p = compile(ctx, src, &err);
  CHECK_INT(tc_prepare(p, 0, &info, &err), TC_OK);
  CHECK_INT(info.source, 2);
  tc_program_free(p);
  tc_context_free(ctx);
}

typedef struct {
  tc_context *ctx;
  int id;
  int failures;
} Worker;

static void *worker(void *arg) {
  Worker *w = arg;
  for (int rep = 0; rep < 3; rep++) {
    tc_error err;
    tc_program *p = compile(w->ctx, matmul_src, &err);
    if (!p) {
      w->failures++;
      continue;
    }
    int64_t M = 8 + w->id, K = 5 + rep, N = 9;
    float *A = calloc((size_t)(M * K), sizeof(float)), *B = calloc((size_t)(K * N), sizeof(float));
    float *C = calloc((size_t)(M * N), sizeof(float)), *R = calloc((size_t)(M * N), sizeof(float));
    fill(A, M * K, (uint32_t)w->id);
    fill(B, K * N, (uint32_t)rep);
    int64_t as[2] = {M, K}, bs[2] = {K, N}, cs[2] = {M, N}, sa[2] = {K, 1}, sb[2] = {N, 1},
            cst[2] = {N, 1};
    DLTensor a = tensor(A, TC_FLOAT32, 2, as, NULL), b = tensor(B, TC_FLOAT32, 2, bs, NULL),
             c = tensor(C, TC_FLOAT32, 2, cs, NULL);
    DLTensor *in[2] = {&a, &b}, *out[1] = {&c};
    for (int r = 0; r < 20; r++) {
      if (tc_run(p, 0, in, 2, out, 1, TC_TARGET_C, &err) != TC_OK)
        w->failures++;
    }
    ref_matmul(A, B, R, M, K, N, sa, sb);
    w->failures += count_mismatches(C, cst, R, M, N) != 0;
    free(A);
    free(B);
    free(C);
    free(R);
    tc_program_free(p);
  }
  return NULL;
}

TEST(threads_share_a_context) {
  tc_context *ctx = new_context(4);
  pthread_t th[4];
  Worker w[4];
  for (int i = 0; i < 4; i++) {
    w[i] = (Worker){ctx, i, 0};
    pthread_create(&th[i], NULL, worker, &w[i]);
  }
  int failures = 0;
  for (int i = 0; i < 4; i++) {
    pthread_join(th[i], NULL);
    failures += w[i].failures;
  }
  CHECK_INT(failures, 0);
  tc_context_free(ctx);
}

TEST(context_options) {
  tc_context *ctx = NULL;
  tc_error err;
  tc_context_options o;
  tc_context_options_init(&o);
  CHECK_INT(o.disk_cache, 1);
  o.disk_cache = 0;
  o.cc = "/nonexistent/cc";
  CHECK_INT(tc_context_new(&o, &ctx, &err), TC_OK);
  tc_program *p = compile(ctx, matmul_src, &err);
  CHECK(p != NULL);
  if (p) {
    CHECK_INT(tc_prepare(p, 0, NULL, &err), TC_ERR_COMPILER);
    CHECK(strstr(err.message, "'/nonexistent/cc' not found; set $CC") != NULL);
    /* the interpreter needs no compiler */
    float x[2] = {1, 2}, alpha = 3, y[2];
    int64_t n[1] = {2};
    DLTensor X = tensor(x, TC_FLOAT32, 1, n, NULL), A = tensor(&alpha, TC_FLOAT32, 0, NULL, NULL),
             Y = tensor(y, TC_FLOAT32, 1, n, NULL);
    DLTensor *in[2] = {&X, &A}, *out[1] = {&Y};
    CHECK_INT(tc_run(p, 1, in, 2, out, 1, TC_TARGET_INTERP, &err), TC_OK);
    CHECK(y[1] == 6);
  }
  tc_program_free(p);
  tc_context_free(ctx);
}

/* The cache directory holds only entry files. */
static void remove_cache_dir(void) {
  DIR *d = cache_dir[0] ? opendir(cache_dir) : NULL;
  if (!d)
    return;
  struct dirent *e;
  while ((e = readdir(d))) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", cache_dir, e->d_name);
    if (e->d_name[0] != '.')
      unlink(path);
  }
  closedir(d);
  rmdir(cache_dir);
}

int main(void) {
  int rc = unit_run_all();
  remove_cache_dir();
  return rc;
}
