/* test_const.c — compile-time constants (tc_compile_ex): a scalar parameter
 * fixed at compile time disappears from the entry's inputs and becomes a
 * literal of its dtype; strided convolutions get their ranges from it;
 * values of every type keep their exact value; each value is its own
 * kernel; misuse is a named error; the same parameter passed at run time
 * still works. */
#include "tensorc.h"
#include "unit.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

static tc_context *context(void) {
  static tc_context *ctx;
  if (!ctx) {
    tc_context_options o;
    tc_context_options_init(&o);
    o.num_threads = 2;
    tc_error err;
    if (tc_context_new(&o, &ctx, &err) != TC_OK)
      fprintf(stderr, "tc_context_new: %s\n", err.message);
  }
  return ctx;
}

static tc_program *compile(const char *src, const tc_constant *k, int n, tc_status *st,
                           tc_error *err) {
  tc_program *p = NULL;
  *st = tc_compile_ex(context(), "const.tc", src, strlen(src), k, n, &p, err);
  return p;
}

static DLTensor tensor(void *data, tc_dtype t, int ndim, int64_t *shape) {
  DLTensor d = {data, {kDLCPU, 0}, ndim, tc_dtype_to_dl(t), shape, NULL, 0};
  return d;
}

static const char *conv_src =
    "def conv(float(N,C,H,W) I, float(M,C,KH,KW) W1, int32 stride) -> (O) {\n"
    "    O(n,m,h,w) +=! I(n,c,stride*h+kh,stride*w+kw) * W1(m,c,kh,kw)\n"
    "}\n";

/* Output shapes follow (H - KH) / stride + 1; compiled and interpreted
 * agree with a direct loop. */
TEST(const_strided_conv) {
  int64_t N = 2, C = 3, H = 11, W = 9, M = 2, KH = 3, KW = 2;
  float *I = malloc(sizeof(float) * (size_t)(N * C * H * W));
  float *Wt = malloc(sizeof(float) * (size_t)(M * C * KH * KW));
  for (int64_t i = 0; i < N * C * H * W; i++)
    I[i] = (float)((i * 7919) % 23) / 23.0f - 0.5f;
  for (int64_t i = 0; i < M * C * KH * KW; i++)
    Wt[i] = (float)((i * 104729) % 17) / 17.0f - 0.5f;
  for (int s = 1; s <= 4; s++) {
    tc_constant k = {"stride", 0, s, 0};
    tc_status st;
    tc_error err;
    tc_program *p = compile(conv_src, &k, 1, &st, &err);
    CHECK_INT(st, TC_OK);
    if (!p)
      continue;
    CHECK_INT(tc_entry_num_inputs(p, 0), 2); /* stride is gone */
    tc_shape in[2] = {{4, {N, C, H, W}}, {4, {M, C, KH, KW}}}, out;
    CHECK_INT(tc_infer_shapes(p, 0, in, 2, &out, 1, &err), TC_OK);
    int64_t OH = (H - KH) / s + 1, OW = (W - KW) / s + 1;
    CHECK(out.rank == 4 && out.dims[0] == N && out.dims[1] == M);
    CHECK_INT(out.dims[2], OH);
    CHECK_INT(out.dims[3], OW);
    int64_t ishape[4] = {N, C, H, W}, wshape[4] = {M, C, KH, KW}, oshape[4] = {N, M, OH, OW};
    float *O[2];
    for (int t = 0; t < 2; t++) {
      O[t] = calloc((size_t)(N * M * OH * OW), sizeof(float));
      DLTensor a = tensor(I, TC_FLOAT32, 4, ishape), b = tensor(Wt, TC_FLOAT32, 4, wshape);
      DLTensor o = tensor(O[t], TC_FLOAT32, 4, oshape);
      DLTensor *ins[2] = {&a, &b}, *outs[1] = {&o};
      CHECK_INT(tc_run(p, 0, ins, 2, outs, 1, t ? TC_TARGET_C : TC_TARGET_INTERP, &err), TC_OK);
    }
    int bad = 0;
    for (int64_t n = 0; n < N; n++)
      for (int64_t m = 0; m < M; m++)
        for (int64_t h = 0; h < OH; h++)
          for (int64_t w = 0; w < OW; w++) {
            double acc = 0;
            for (int64_t c = 0; c < C; c++)
              for (int64_t kh = 0; kh < KH; kh++)
                for (int64_t kw = 0; kw < KW; kw++)
                  acc += (double)I[((n * C + c) * H + s * h + kh) * W + s * w + kw] *
                         Wt[((m * C + c) * KH + kh) * KW + kw];
            int64_t o = ((n * M + m) * OH + h) * OW + w;
            bad += fabs(O[0][o] - acc) > 1e-4 || fabs(O[1][o] - acc) > 1e-4;
          }
    CHECK_INT(bad, 0);
    free(O[0]);
    free(O[1]);
    tc_program_free(p);
  }
  free(I);
  free(Wt);
}

/* Each value is its own kernel: the generated sources differ, and a second
 * program with the same value shares the first one's kernel. */
TEST(const_kernel_per_value) {
  char *src[3] = {0};
  int vals[3] = {2, 3, 2};
  for (int i = 0; i < 3; i++) {
    tc_constant k = {"stride", 0, vals[i], 0};
    tc_status st;
    tc_error err;
    tc_program *p = compile(conv_src, &k, 1, &st, &err);
    CHECK(p && tc_emit(p, 0, TC_TARGET_C, &src[i], &err) == TC_OK);
    tc_program_free(p);
  }
  CHECK(src[0] && src[1] && src[2]);
  if (src[0] && src[1] && src[2]) {
    CHECK(strcmp(src[0], src[1]) != 0);
    CHECK_STR(src[0], src[2]);
  }
  for (int i = 0; i < 3; i++)
    tc_free(src[i]);
}

/* Passed at run time (not a constant), a scalar is an input as before; in a
 * subscript it makes the subscript non-affine, so the index needs a where
 * range and the reads are checked element by element. */
TEST(const_runtime_scalar) {
  const char *src = "def scale(float(N) X, float alpha) -> (Y) { Y(i) = X(i) * alpha }\n"
                    "def pick(float(N) X, int32 s) -> (Y) { Y(i) = X(s * i) where i in 0:N }\n"
                    "def bad(float(N) X, int32 s) -> (Y) { Y(i) = X(s * i) }\n";
  tc_status st;
  tc_error err;
  tc_program *p = compile(src, NULL, 0, &st, &err);
  CHECK_INT(st, TC_ERR_PROGRAM); /* 'bad': i has no range */
  CHECK(strstr(err.message, "cannot infer the range of index 'i'") != NULL);
  CHECK_INT(err.line, 3);
  src = "def scale(float(N) X, float alpha) -> (Y) { Y(i) = X(i) * alpha }\n"
        "def pick(float(N) X, int32 s) -> (Y) { Y(i) = X(s * i) where i in 0:N }\n";
  p = compile(src, NULL, 0, &st, &err);
  CHECK_INT(st, TC_OK);
  CHECK_INT(tc_entry_num_inputs(p, 0), 2);
  float x[4] = {1, 2, 3, 4}, y[4] = {0}, alpha = 0.5f;
  int32_t s = 0;
  int64_t n = 4;
  DLTensor X = tensor(x, TC_FLOAT32, 1, &n), A = tensor(&alpha, TC_FLOAT32, 0, NULL);
  DLTensor S = tensor(&s, TC_INT32, 0, NULL), Y = tensor(y, TC_FLOAT32, 1, &n);
  DLTensor *in[2] = {&X, &A}, *out[1] = {&Y};
  CHECK_INT(tc_run(p, 0, in, 2, out, 1, TC_TARGET_C, &err), TC_OK);
  CHECK(y[3] == 2.0f);
  in[1] = &S;
  for (int t = 0; t < 2; t++) { /* s = 0 reads X(0) everywhere; s = 1 copies; s = 2 fails */
    tc_target tg = t ? TC_TARGET_C : TC_TARGET_INTERP;
    s = 0;
    CHECK_INT(tc_run(p, 1, in, 2, out, 1, tg, &err), TC_OK);
    CHECK(y[0] == 1 && y[3] == 1);
    s = 1;
    CHECK_INT(tc_run(p, 1, in, 2, out, 1, tg, &err), TC_OK);
    CHECK(y[3] == 4);
    s = 2;
    CHECK_INT(tc_run(p, 1, in, 2, out, 1, tg, &err), TC_ERR_RUNTIME);
    CHECK(strstr(err.message, "out of range for X dim 0") != NULL);
  }
  tc_program_free(p);
  /* the same definition with s constant: affine, no where clause needed */
  tc_constant k = {"s", 0, 2, 0};
  p = compile("def pick(float(N) X, int32 s) -> (Y) { Y(i) = X(s * i) }", &k, 1, &st, &err);
  CHECK_INT(st, TC_OK);
  tc_shape xs = {1, {9}}, ys;
  CHECK(p && tc_infer_shapes(p, 0, &xs, 1, &ys, 1, &err) == TC_OK && ys.dims[0] == 5);
  tc_program_free(p);
}

/* Runs `src` (entry 0: one float64 input X of 3 elements, one output O) with
 * constants k; O into o. */
static bool run3(const char *src, const tc_constant *k, int n, const double *x, double *o) {
  tc_status st;
  tc_error err;
  tc_program *p = compile(src, k, n, &st, &err);
  if (!p) {
    fprintf(stderr, "%s\n", err.diagnostic);
    return false;
  }
  int64_t len = 3;
  DLTensor X = tensor((void *)x, TC_FLOAT64, 1, &len), O = tensor(o, TC_FLOAT64, 1, &len);
  DLTensor *in[1] = {&X}, *out[1] = {&O};
  bool ok = true;
  double other[3];
  for (int t = 0; t < 2; t++) {
    O.data = t ? other : o;
    ok &= tc_run(p, 0, in, 1, out, 1, t ? TC_TARGET_C : TC_TARGET_INTERP, &err) == TC_OK;
  }
  ok &= !memcmp(o, other, sizeof other); /* compiled and interpreted agree exactly */
  tc_program_free(p);
  return ok;
}

/* Values keep the parameter's type: a double is exact, a float rounds to
 * float32, float16/bfloat16 to theirs, integers stay integers of their
 * width, bools are 0/1; integer constants may bound where ranges. */
TEST(const_types) {
  double x[3] = {1, 2, 3}, o[3];
  tc_constant k[6] = {{"d", 1, 0, 0.1}, {"f", 1, 0, 0.1}, {"h", 1, 0, 0.1},
                      {"b", 1, 0, 0.1}, {"i", 0, 5000000000LL, 0}, {"flag", 0, 1, 0}};
  CHECK(run3("def f(double(N) X, double d) -> (O) { O(n) = X(n) * d }", k, 1, x, o));
  CHECK(o[2] == 3 * 0.1);
  CHECK(run3("def f(double(N) X, float f) -> (O) { O(n) = X(n) * f }", k + 1, 1, x, o));
  CHECK(o[2] == 3 * (double)0.1f);
  CHECK(run3("def f(double(N) X, float16 h) -> (O) { O(n) = X(n) * h }", k + 2, 1, x, o));
  CHECK(o[0] == 0.0999755859375); /* 0.1 in float16 */
  CHECK(run3("def f(double(N) X, bfloat16 b) -> (O) { O(n) = X(n) * b }", k + 3, 1, x, o));
  CHECK(o[0] == 0.10009765625); /* 0.1 in bfloat16 */
  CHECK(run3("def f(double(N) X, int64 i) -> (O) { O(n) = X(n) + double(i * 2) }", k + 4, 1, x,
             o));
  CHECK(o[0] == 10000000001.0);
  CHECK(run3("def f(double(N) X, bool flag) -> (O) { O(n) = flag ? X(n) : -X(n) }", k + 5, 1, x,
             o));
  CHECK(o[1] == 2);
  tc_constant kk = {"K", 0, 2, 0}, ki = {"d", 0, 3, 0};
  CHECK(run3("def f(double(N) X, int32 K) -> (O) { O(n) +=! X(k) where k in 0:K, n in 0:N }", &kk, 1, x,
             o));
  CHECK(o[0] == 3 && o[2] == 3);
  CHECK(run3("def f(double(N) X, double d) -> (O) { O(n) = X(n) * d }", &ki, 1, x, o));
  CHECK(o[2] == 9); /* an integer value for a float parameter */
}

/* Every def declaring the parameter gets the value; defs without it are
 * unchanged. */
TEST(const_several_defs) {
  const char *src = "def a(float(N) X, float s) -> (Y) { Y(i) = X(i) * s }\n"
                    "def b(float(N) X) -> (Y) { Y(i) = X(i) }\n"
                    "def c(float s, float(N) X, float t) -> (Y) { Y(i) = X(i) * s + t }\n";
  tc_constant k = {"s", 1, 0, 2.0};
  tc_status st;
  tc_error err;
  tc_program *p = compile(src, &k, 1, &st, &err);
  CHECK_INT(st, TC_OK);
  CHECK_INT(tc_entry_num_inputs(p, 0), 1);
  CHECK_INT(tc_entry_num_inputs(p, 1), 1);
  CHECK_INT(tc_entry_num_inputs(p, 2), 2);
  tc_param_info pi;
  CHECK(tc_entry_input(p, 2, 0, &pi) == TC_OK && !strcmp(pi.name, "X"));
  CHECK(tc_entry_input(p, 2, 1, &pi) == TC_OK && !strcmp(pi.name, "t"));
  tc_program_free(p);
}

/* Misuse names the constant; a located error when a parameter is involved. */
TEST(const_errors) {
  const char *src = "def f(float(N) X, float(N) W, int8 k, float s) -> (Y) {\n"
                    "  Y(i) = X(i) * W(i) * s + k\n"
                    "}\n";
  struct {
    tc_constant k[2];
    int n;
    int line;
    const char *msg;
  } cases[] = {
      {{{"stride", 0, 2, 0}}, 1, 0, "compile-time constant 'stride': no definition has a parameter"},
      {{{"W", 0, 2, 0}}, 1, 1, "'W' is given as a compile-time constant, but it is a tensor of rank 1"},
      {{{"k", 1, 0, 1.5}}, 1, 1, "constant 'k' is a int8 parameter: its value must be an integer"},
      {{{"k", 0, 300, 0}}, 1, 1, "constant 'k' = 300 does not fit int8"},
      {{{"s", 1, 0, 1e300}}, 1, 1, "constant 's' = 1e+300 does not fit float32"},
      {{{"s", 0, 1, 0}, {"s", 0, 2, 0}}, 2, 0, "compile-time constant 's' is given twice"},
      {{{NULL, 0, 1, 0}}, 1, 0, "compile-time constant 0 has no name"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    tc_status st;
    tc_error err;
    tc_program *p = compile(src, cases[i].k, cases[i].n, &st, &err);
    CHECK(p == NULL);
    CHECK_INT(st, TC_ERR_ARGUMENT);
    CHECK_INT(err.line, cases[i].line);
    if (!strstr(err.message, cases[i].msg))
      fprintf(stderr, "got: %s\nwant: %s\n", err.message, cases[i].msg);
    CHECK(strstr(err.message, cases[i].msg) != NULL);
  }
  tc_program *p = NULL;
  tc_error err;
  tc_constant k = {"k", 0, 1, 0};
  CHECK_INT(tc_compile_ex(context(), "x.tc", src, strlen(src), NULL, 1, &p, &err), TC_ERR_ARGUMENT);
  CHECK_INT(tc_compile_ex(context(), "x.tc", src, strlen(src), &k, -1, &p, &err), TC_ERR_ARGUMENT);
  /* a constant cannot be written, nor read with subscripts */
  tc_status st;
  p = compile("def f(float(N) X, float s) -> (Y) { s = 1.0\n Y(i) = X(i) }", &k, 0, &st, &err);
  CHECK_INT(st, TC_ERR_PROGRAM);
  tc_constant ks = {"s", 1, 0, 1};
  p = compile("def f(float(N) X, float s) -> (Y) { Y(i) = X(i) * s(i) }", &ks, 1, &st, &err);
  CHECK_INT(st, TC_ERR_PROGRAM);
  CHECK(strstr(err.message, "'s' is a compile-time constant and is read with 1 subscript") != NULL);
  p = compile("def f(float(N) X, float s) -> (Y) { s = 1.0\n Y(i) = X(i) }", &ks, 1, &st, &err);
  CHECK_INT(st, TC_ERR_PROGRAM);
  CHECK(strstr(err.message, "cannot assign to input 's'") != NULL);
}

/* The backward of a def with constants has them as literals of their type:
 * d_X = d_O * 0.1 exactly, in float64. */
TEST(const_gradient) {
  tc_constant k = {"c", 1, 0, 0.1};
  tc_status st;
  tc_error err;
  tc_program *p = compile("def f(double(N) X, double c) -> (O) { O(n) = X(n) * c }", &k, 1,
                          &st, &err);
  char *text = NULL;
  CHECK(p && tc_gradient(p, 0, NULL, &text, &err) == TC_OK);
  tc_program *g = NULL;
  CHECK(text && tc_compile(context(), "g.tc", text, strlen(text), &g, &err) == TC_OK);
  double x[3] = {1, 2, 3}, d[3] = {1, -2, 0.3}, dx[3];
  int64_t n = 3;
  DLTensor X = tensor(x, TC_FLOAT64, 1, &n), D = tensor(d, TC_FLOAT64, 1, &n);
  DLTensor DX = tensor(dx, TC_FLOAT64, 1, &n);
  DLTensor *in[2] = {&X, &D}, *out[1] = {&DX};
  for (int t = 0; g && t < 2; t++) {
    CHECK_INT(tc_run(g, 0, in, 2, out, 1, t ? TC_TARGET_C : TC_TARGET_INTERP, &err), TC_OK);
    for (int i = 0; i < 3; i++)
      CHECK(dx[i] == d[i] * 0.1);
  }
  tc_free(text);
  tc_program_free(g);
  tc_program_free(p);
}

RUN_TESTS()
