/* test_grad.c — automatic gradients (tc_gradient, src/grad.c).
 *
 * Every case compiles a forward def, derives its backward, compiles that,
 * runs it with the interpreter and with compiled C on random float64
 * inputs and a random output gradient d_O, and compares both with central
 * finite differences of L = sum(d_O * O) (eps 1e-6).  Then: ties in max=/min=
 * routed to the first winner exactly; the calling convention (names, order,
 * shapes); constants; name collisions; errors; golden derived sources in
 * tests/grad/ (UPDATE=1 rewrites them). */
#include "tensorc.h"
#include "unit.h"

#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

static tc_context *ctx; /* made before any thread starts; the default kernel cache */

static tc_context *context(void) {
  if (ctx)
    return ctx;
  tc_context_options o;
  tc_context_options_init(&o);
  o.num_threads = 2;
  tc_error err;
  if (tc_context_new(&o, &ctx, &err) != TC_OK)
    fprintf(stderr, "tc_context_new: %s\n", err.message);
  return ctx;
}

/* xorshift64 */
static double uniform(uint64_t *rng, double lo, double hi) {
  *rng ^= *rng << 13, *rng ^= *rng >> 7, *rng ^= *rng << 17;
  return lo + (hi - lo) * (double)(*rng >> 11) / 9007199254740992.0;
}

/* ---- tensors ---- */

typedef struct Tens {
  tc_dtype dt;
  int rank;
  int64_t shape[TC_MAX_RANK];
  int64_t n;
  void *data;
  DLTensor dl;
} Tens;

static void tens_init(Tens *t, tc_dtype dt, int rank, const int64_t *shape) {
  memset(t, 0, sizeof *t);
  t->dt = dt;
  t->rank = rank;
  t->n = 1;
  for (int k = 0; k < rank; k++) {
    t->shape[k] = shape[k];
    t->n *= shape[k];
  }
  t->data = calloc((size_t)t->n + 1, tc_dtype_size(dt));
  t->dl = (DLTensor){t->data, {kDLCPU, 0}, rank, tc_dtype_to_dl(dt), t->shape, NULL, 0};
}

static double get(const Tens *t, int64_t i) {
  switch (t->dt) {
  case TC_FLOAT64: return ((double *)t->data)[i];
  case TC_FLOAT32: return ((float *)t->data)[i];
  case TC_INT8: return ((int8_t *)t->data)[i];
  case TC_INT16: return ((int16_t *)t->data)[i];
  case TC_INT32: return ((int32_t *)t->data)[i];
  case TC_INT64: return (double)((int64_t *)t->data)[i];
  case TC_UINT8: case TC_BOOL: return ((uint8_t *)t->data)[i];
  case TC_UINT16: return ((uint16_t *)t->data)[i];
  case TC_UINT32: return ((uint32_t *)t->data)[i];
  case TC_UINT64: return (double)((uint64_t *)t->data)[i];
  default: return NAN;
  }
}

static void set(Tens *t, int64_t i, double v) {
  switch (t->dt) {
  case TC_FLOAT64: ((double *)t->data)[i] = v; break;
  case TC_FLOAT32: ((float *)t->data)[i] = (float)v; break;
  case TC_INT8: ((int8_t *)t->data)[i] = (int8_t)v; break;
  case TC_INT16: ((int16_t *)t->data)[i] = (int16_t)v; break;
  case TC_INT32: ((int32_t *)t->data)[i] = (int32_t)v; break;
  case TC_INT64: ((int64_t *)t->data)[i] = (int64_t)v; break;
  case TC_UINT8: ((uint8_t *)t->data)[i] = (uint8_t)v; break;
  case TC_UINT16: ((uint16_t *)t->data)[i] = (uint16_t)v; break;
  case TC_UINT32: ((uint32_t *)t->data)[i] = (uint32_t)v; break;
  case TC_UINT64: ((uint64_t *)t->data)[i] = (uint64_t)v; break;
  case TC_BOOL: ((uint8_t *)t->data)[i] = v != 0; break;
  default: break;
  }
}

static bool is_float(tc_dtype t) { return t == TC_FLOAT64 || t == TC_FLOAT32; }

/* ---- specs: "A=3x4 s=scalar", "Idx=0:5 X=0.5:3", "A B" ---- */

static bool has_word(const char *list, const char *w) {
  size_t n = strlen(w);
  for (const char *s = list; s && (s = strstr(s, w)); s += n)
    if ((s == list || s[-1] == ' ') && (s[n] == ' ' || !s[n]))
      return true;
  return false;
}

/* The value after "NAME=" in spec, or NULL. */
static const char *spec_of(const char *spec, const char *name) {
  size_t n = strlen(name);
  for (const char *s = spec; s && *s;) {
    while (*s == ' ')
      s++;
    if (!strncmp(s, name, n) && s[n] == '=')
      return s + n + 1;
    s = strchr(s, ' ');
  }
  return NULL;
}

static int parse_shape(const char *s, int64_t *shape) {
  if (!s || !strncmp(s, "scalar", 6))
    return 0;
  int r = 0;
  for (char *end; r < TC_MAX_RANK; s = end + 1) {
    shape[r++] = strtoll(s, &end, 10);
    if (*end != 'x')
      break;
  }
  return r;
}

/* ---- one case ---- */

typedef struct Case {
  const char *name;
  const char *src;
  const char *entry;
  const char *shapes;
  const char *values;  /* per input "lo:hi" (integers: [lo, hi)); default -1:1 */
  const char *wrt;     /* names with a gradient; NULL: every float input */
  const tc_constant *consts;
  int nconsts;
  bool interp_only;    /* the backward by the interpreter only (no compile) */
} Case;

typedef struct Problem {
  uint64_t rng;
  tc_program *fwd, *bwd;
  int entry, nin, nout, ngrad;
  Tens in[16], out[16], dout[16], grad[16];
  int wrt[16];
} Problem;

static void problem_free(Problem *P) {
  for (int i = 0; i < 16; i++) {
    free(P->in[i].data);
    free(P->out[i].data);
    free(P->dout[i].data);
    free(P->grad[i].data);
  }
  tc_program_free(P->fwd);
  tc_program_free(P->bwd);
}

static bool run(tc_program *p, int entry, Tens *in, int nin, Tens *out, int nout, tc_target tg) {
  DLTensor *ins[32], *outs[32];
  for (int i = 0; i < nin; i++)
    ins[i] = &in[i].dl;
  for (int i = 0; i < nout; i++)
    outs[i] = &out[i].dl;
  tc_error err;
  if (tc_run(p, entry, ins, nin, outs, nout, tg, &err) != TC_OK) {
    fprintf(stderr, "run %s: %s\n", tc_program_entry_name(p, entry), err.diagnostic);
    return false;
  }
  return true;
}

/* The forward's outputs, flattened into `o` (the interpreter runs it:
 * compiling it would double the kernels this test builds). */
static bool outputs(Problem *P, double *o) {
  if (!run(P->fwd, P->entry, P->in, P->nin, P->out, P->nout, TC_TARGET_INTERP))
    return false;
  for (int j = 0; j < P->nout; j++)
    for (int64_t i = 0; i < P->out[j].n; i++)
      *o++ = is_float(P->out[j].dt) ? get(&P->out[j], i) : 0;
  return true;
}

/* dL/dx for L = sum(d_O * O), by central differences of each output. */
static double central_difference(Problem *P, Tens *x, int64_t k, double eps, double *op,
                                 double *om) {
  double v = get(x, k), sum = 0;
  set(x, k, v + eps);
  bool ok = outputs(P, op);
  set(x, k, v - eps);
  ok &= outputs(P, om);
  set(x, k, v);
  for (int j = 0; j < P->nout; j++)
    for (int64_t i = 0; i < P->out[j].n; i++, op++, om++)
      sum += is_float(P->dout[j].dt) ? get(&P->dout[j], i) * (*op - *om) : 0;
  return ok ? sum / (2 * eps) : NAN;
}

static bool close_to(double got, double want, double rtol, double atol);

/* The derivative with eps 1e-6, or NaN (not checked) where the function is
 * not smooth within that step: a jump of floor, a cast or a comparison
 * makes it disagree with the step 2.5e-7. */
static double finite_difference(Problem *P, Tens *x, int64_t k, double *op, double *om) {
  double d1 = central_difference(P, x, k, 1e-6, op, om);
  double d2 = central_difference(P, x, k, 2.5e-7, op, om);
  return close_to(d1, d2, 1e-3, 1e-4) ? d1 : NAN;
}

/* Builds inputs, outputs, d_O; compiles forward and backward. */
static bool setup(const Case *c, Problem *P, uint64_t seed) {
  memset(P, 0, sizeof *P);
  P->rng = seed;
  tc_error err;
  if (tc_compile_ex(context(), "grad.tc", c->src, strlen(c->src), c->consts, c->nconsts, &P->fwd,
                    &err) != TC_OK) {
    fprintf(stderr, "%s: %s\n", c->entry, err.diagnostic);
    return false;
  }
  P->entry = tc_program_find_entry(P->fwd, c->entry);
  P->nin = tc_entry_num_inputs(P->fwd, P->entry);
  P->nout = tc_entry_num_outputs(P->fwd, P->entry);
  tc_shape ishape[16], oshape[16];
  for (int i = 0; i < P->nin; i++) {
    tc_param_info pi;
    tc_entry_input(P->fwd, P->entry, i, &pi);
    int64_t shape[TC_MAX_RANK];
    int r = parse_shape(spec_of(c->shapes, pi.name), shape);
    tens_init(&P->in[i], pi.dtype, r, shape);
    ishape[i].rank = r;
    memcpy(ishape[i].dims, shape, sizeof shape);
    const char *v = spec_of(c->values, pi.name);
    bool sgn = pi.dtype != TC_BOOL && pi.dtype < TC_UINT8;
    double lo = v ? strtod(v, NULL) : is_float(pi.dtype) ? -1 : sgn ? -8 : 0;
    double hi = v ? strtod(strchr(v, ':') + 1, NULL) : is_float(pi.dtype) ? 1 : sgn ? 8 : 2;
    for (int64_t k = 0; k < P->in[i].n; k++)
      set(&P->in[i], k, is_float(pi.dtype) ? uniform(&P->rng, lo, hi)
                                           : floor(uniform(&P->rng, lo, hi)));
    P->wrt[i] = is_float(pi.dtype) && (!c->wrt || has_word(c->wrt, pi.name));
  }
  if (tc_infer_shapes(P->fwd, P->entry, ishape, P->nin, oshape, P->nout, &err) != TC_OK) {
    fprintf(stderr, "%s: %s\n", c->entry, err.message);
    return false;
  }
  for (int j = 0; j < P->nout; j++) {
    tc_param_info pi;
    tc_entry_output(P->fwd, P->entry, j, &pi);
    tens_init(&P->out[j], pi.dtype, oshape[j].rank, oshape[j].dims);
    tens_init(&P->dout[j], pi.dtype, oshape[j].rank, oshape[j].dims);
    for (int64_t k = 0; is_float(pi.dtype) && k < P->dout[j].n; k++)
      set(&P->dout[j], k, uniform(&P->rng, -1, 1));
  }
  char *text = NULL;
  if (tc_gradient(P->fwd, P->entry, P->wrt, &text, &err) != TC_OK) {
    fprintf(stderr, "%s: tc_gradient: %s\n", c->entry, err.diagnostic);
    return false;
  }
  tc_status st = tc_compile(context(), "backward.tc", text, strlen(text), &P->bwd, &err);
  if (st != TC_OK)
    fprintf(stderr, "%s: the backward does not compile: %s\n%s\n", c->entry, err.diagnostic, text);
  tc_free(text);
  if (st != TC_OK)
    return false;
  for (int i = 0; i < P->nin; i++) {
    if (!P->wrt[i])
      continue;
    tens_init(&P->grad[P->ngrad++], P->in[i].dt, P->in[i].rank, P->in[i].shape);
  }
  return tc_entry_num_inputs(P->bwd, 0) == P->nin + P->nout &&
         tc_entry_num_outputs(P->bwd, 0) == P->ngrad;
}

/* Runs the backward on `tg` into P->grad. */
static bool backward(Problem *P, tc_target tg) {
  Tens all[32];
  for (int i = 0; i < P->nin; i++)
    all[i] = P->in[i];
  for (int j = 0; j < P->nout; j++)
    all[P->nin + j] = P->dout[j];
  return run(P->bwd, 0, all, P->nin + P->nout, P->grad, P->ngrad, tg);
}

/* True when every float output is finite at the inputs. */
static bool defined_at(Problem *P) {
  if (!run(P->fwd, P->entry, P->in, P->nin, P->out, P->nout, TC_TARGET_INTERP))
    return false;
  for (int j = 0; j < P->nout; j++)
    for (int64_t i = 0; is_float(P->out[j].dt) && i < P->out[j].n; i++)
      if (!isfinite(get(&P->out[j], i)))
        return false;
  return true;
}

static bool close_to(double got, double want, double rtol, double atol) {
  return fabs(got - want) <= atol + rtol * fmax(fabs(got), fabs(want));
}

enum { MAX_FD = 32 }; /* finite differences per input, spread over it */

/* Compares the backward with finite differences (at most MAX_FD elements
 * of each input) and, on every element, compiled with interpreted.  Returns
 * the number of mismatches. */
static int check_case(const Case *c, uint64_t seed) {
  Problem P;
  int bad = 0;
  if (!setup(c, &P, seed)) {
    problem_free(&P);
    return 1;
  }
  if (c->interp_only && !defined_at(&P)) { /* NaN or inf outputs: no finite differences */
    problem_free(&P);
    return 0;
  }
  double *want[16] = {0};
  int64_t nout = 1;
  for (int j = 0; j < P.nout; j++)
    nout += P.out[j].n;
  double *op = calloc((size_t)nout, sizeof(double)), *om = calloc((size_t)nout, sizeof(double));
  for (int i = 0, g = 0; i < P.nin; i++) {
    if (!P.wrt[i])
      continue;
    int64_t n = P.in[i].n, step = n > MAX_FD ? n / MAX_FD : 1;
    want[g] = calloc((size_t)n + 1, sizeof(double));
    for (int64_t k = 0; k < n; k++)
      want[g][k] = k % step && k != n - 1 ? NAN : finite_difference(&P, &P.in[i], k, op, om);
    g++;
  }
  free(op);
  free(om);
  double *interp[16] = {0};
  for (int t = 0; t < (c->interp_only ? 1 : 2); t++) {
    tc_target tg = t ? TC_TARGET_C : TC_TARGET_INTERP;
    if (!backward(&P, tg)) {
      bad++;
      continue;
    }
    for (int g = 0; g < P.ngrad; g++) {
      if (!t)
        interp[g] = calloc((size_t)P.grad[g].n + 1, sizeof(double));
      for (int64_t k = 0; k < P.grad[g].n; k++) {
        double v = get(&P.grad[g], k), w = want[g][k];
        if (!t)
          interp[g][k] = v;
        bool ok = (isnan(w) || close_to(v, w, 1e-5, 1e-6)) &&
                  (!t || !interp[g] || close_to(v, interp[g][k], 1e-9, 1e-12));
        if (!ok && bad++ < 8)
          fprintf(stderr, "%s (%s): gradient %d [%lld] = %.9g, finite differences %.9g%s\n",
                  c->name, t ? "c" : "interp", g, (long long)k, v, w, t ? " (or interp)" : "");
      }
    }
  }
  for (int g = 0; g < 16; g++) {
    free(want[g]);
    free(interp[g]);
  }
  problem_free(&P);
  return bad;
}

static const tc_constant stride3[] = {{"stride", 0, 3, 0}, {"scale", 1, 0, 0.25}};

static const Case cases[] = {
    /* ---- contractions ---- */
    {.name = "grad_matmul",
     .src = "def matmul(double(M,K) A, double(K,N) B) -> (C) { C(m,n) +=! A(m,k) * B(k,n) }",
     .entry = "matmul",
     .shapes = "A=3x4 B=4x5",
    },
    {.name = "grad_matmul_bt",
     .src = "def abt(double(M,K) A, double(N,K) B) -> (C) { C(m,n) +=! A(m,k) * B(n,k) }",
     .entry = "abt",
     .shapes = "A=3x4 B=5x4",
    },
    {.name = "grad_bmm",
     .src = "def bmm(double(B,M,K) X, double(B,K,N) Y) -> (Z) { Z(b,m,n) +=! X(b,m,k) * Y(b,k,n) }",
     .entry = "bmm",
     .shapes = "X=2x3x4 Y=2x4x3",
    },
    {.name = "grad_bilinear_trace",
     .src = "def f(double(N,I) X, double(O,I,J) Wb, double(N,J) Y, double(I,I) A) -> (Z, t) {\n"
             "  Z(n,o) +=! X(n,i) * Wb(o,i,j) * Y(n,j)\n"
             "  t +=! A(i,i) * A(i,i)\n"
             "}",
     .entry = "f",
     .shapes = "X=2x3 Wb=2x3x4 Y=2x4 A=3x3",
    },

    /* ---- convolutions and pooling ---- */
    {.name = "grad_conv_valid",
     .src = "def conv(double(N,C,H,W) I, double(M,C,KH,KW) W1) -> (O) {\n"
             "  O(n,m,h,w) +=! I(n,c,h+kh,w+kw) * W1(m,c,kh,kw)\n"
             "}",
     .entry = "conv",
     .shapes = "I=2x2x5x6 W1=3x2x3x2",
    },
    {.name = "grad_conv_stride_dilation",
     .src = "def conv(double(N,C,H,W) I, double(M,C,KH,KW) W1) -> (O) {\n"
             "  O(n,m,h,w) +=! I(n,c,2*h+2*kh,w+3*kw) * W1(m,c,kh,kw)\n"
             "}",
     .entry = "conv",
     .shapes = "I=1x2x9x10 W1=2x2x2x3",
    },
    {.name = "grad_conv_same_padded",
     .src = "def conv(double(N,C,H,W) I : constant(0) [H,W], double(F,C,3,3) Wt, double(F) B)"
             " -> (O) {\n"
             "  O(n,f,h,w) +=! I(n,c,2*h+kh-1,2*w+kw-1) * Wt(f,c,kh,kw)"
             " where h in 0:(H+1)/2, w in 0:(W+1)/2\n"
             "  O(n,f,h,w) = tanh(O(n,f,h,w) + B(f))\n"
             "}",
     .entry = "conv",
     .shapes = "I=2x2x5x6 Wt=3x2x3x3 B=3",
    },
    {.name = "grad_group_conv",
     .src = "def gconv(double(N,G,C,H,W) I, double(G,F,C,KH,KW) W1, double(G,F) B) -> (O) {\n"
             "  O(n,g,f,h,w) +=! I(n,g,c,h+kh,w+kw) * W1(g,f,c,kh,kw)\n"
             "  O(n,g,f,h,w) = O(n,g,f,h,w) + B(g,f)\n"
             "}",
     .entry = "gconv",
     .shapes = "I=1x2x2x4x4 W1=2x3x2x2x2 B=2x3",
    },
    {.name = "grad_group_conv_flat",
     .src = "def gconv(double(N,CI,H,W) I, double(CO,CG,KH,KW) W1) -> (O) {\n"
             "  O(n,o,h,w) +=! I(n, o * CI / (CO * CG) * CG + c, h + kh, w + kw) * W1(o,c,kh,kw)\n"
             "}",
     .entry = "gconv",
     .shapes = "I=1x4x4x4 W1=6x2x2x2",
    },
    {.name = "grad_maxpool",
     .src = "def pool(double(N,C,H,W) I) -> (O) {\n"
             "  O(n,c,h,w) max=! I(n,c,2*h+kh,2*w+kw) where kh in 0:2, kw in 0:2\n"
             "}",
     .entry = "pool",
     .shapes = "I=2x2x5x4",
    },
    {.name = "grad_avgpool_minpool",
     .src = "def pool(double(N,C,H,W) I) -> (A, Mn) {\n"
             "  A(n,c,h,w) +=! I(n,c,2*h+kh,2*w+kw) / 9.0 where kh in 0:3, kw in 0:3\n"
             "  Mn(n,c) min=! I(n,c,h,w)\n"
             "}",
     .entry = "pool",
     .shapes = "I=2x2x7x6",
    },

    /* ---- boundary conditions ---- */
    {.name = "grad_blur_clamp",
     .src = "def blur(double(B,H,W) I : clamp [H,W]) -> (O) {\n"
             "  O(b,y,x) +=! I(b, y+dy-1, x+dx-1) * float(dy + 2*dx + 1)"
             " where dy in 0:3, dx in 0:3, y in 0:H, x in 0:W\n"
             "}",
     .entry = "blur",
     .shapes = "I=2x4x5",
    },
    {.name = "grad_pad_clamp_wide",
     .src = "def pad(double(H,W) I : clamp) -> (O) { O(i,j) = I(i-2, j-1) * float(i + 1)"
             " where i in 0:H+5, j in 0:W+2 }",
     .entry = "pad",
     .shapes = "I=3x4",
    },
    {.name = "grad_mirror_wrap",
     .src = "def f(double(H,W) I : mirror, double(N) X : wrap) -> (O, Y) {\n"
             "  O(i,j) = I(i-2, j-3) * float(i * 13 + j) where i in 0:H+4, j in 0:W+6\n"
             "  Y(i) +=! X(i + k - 1) * float(k + 1) * float(i + 2) where i in 0:3*N, k in 0:3\n"
             "}",
     .entry = "f",
     .shapes = "I=2x3 X=4",
    },
    {.name = "grad_constant_pad_value",
     .src = "def f(double(H,W) I : constant(-1.5) [W]) -> (O) {\n"
             "  O(i,j) = I(i, j-1) * I(i, j-1) where j in 0:W+1\n"
             "}",
     .entry = "f",
     .shapes = "I=3x4",
    },
    {.name = "grad_mixed_boundary",
     .src = "def f(double(H,W) I : clamp [H]) -> (O) {\n"
             "  O(i,j) = I(i-1, j) * float(i + 3) + I(i+1, j) where i in 0:H\n"
             "}",
     .entry = "f",
     .shapes = "I=4x3",
    },
    {.name = "grad_bc_nonaffine",
     .src = "def f(double(N) X : wrap, int32(M) Idx) -> (O) {\n"
             "  O(i) = X(Idx(i)) * float(i + 1)\n"
             "}",
     .entry = "f",
     .shapes = "X=4 Idx=9",
     .values = "Idx=-6:10",
    },

    /* ---- normalisations and activations ---- */
    {.name = "grad_softmax",
     .src = "def softmax(double(N,D) X) -> (O) {\n"
             "  mx(n) max=! X(n,d)\n"
             "  e(n,d) = exp(X(n,d) - mx(n))\n"
             "  s(n) +=! e(n,d)\n"
             "  O(n,d) = e(n,d) / s(n)\n"
             "}",
     .entry = "softmax",
     .shapes = "X=3x5",
     .values = "X=-3:3",
    },
    {.name = "grad_log_softmax_nll",
     .src = "def nll(double(N,C) logits, int64(N) L) -> (loss) {\n"
             "  mx(i) max=! logits(i,c)\n"
             "  s(i) +=! exp(logits(i,c) - mx(i))\n"
             "  picked(i) +=! L(i) == c ? logits(i,c) : 0.0\n"
             "  loss +=! (mx(i) + log(s(i)) - picked(i)) / float(N)\n"
             "}",
     .entry = "nll",
     .shapes = "logits=4x5 L=4",
     .values = "L=0:5",
    },
    {.name = "grad_layernorm",
     .src = "def layernorm(double(N,D) X, double(D) gamma, double(D) beta) -> (Y) {\n"
             "  mean(n) +=! X(n,d) / float(D)\n"
             "  xc(n,d) = X(n,d) - mean(n)\n"
             "  var(n) +=! xc(n,d) * xc(n,d) / float(D)\n"
             "  Y(n,d) = xc(n,d) * rsqrt(var(n) + 1e-5) * gamma(d) + beta(d)\n"
             "}",
     .entry = "layernorm",
     .shapes = "X=3x6 gamma=6 beta=6",
    },
    {.name = "grad_gelu_chains",
     .src = "def act(double(N) X) -> (G1, G2, S, C) {\n"
             "  G1(i) = 0.5 * X(i) * (1.0 + erf(X(i) * 0.7071067811865476))\n"
             "  G2(i) = 0.5 * X(i) * (1.0 + tanh(0.7978845608028654 * (X(i) + 0.044715 * X(i) * "
             "X(i) * X(i))))\n"
             "  S(i) = 1.0 / (1.0 + exp(-X(i)))\n"
             "  C(i) = tanh(tanh(tanh(X(i) * 2.0)))\n"
             "}",
     .entry = "act",
     .shapes = "X=7",
     .values = "X=-3:3",
    },

    /* ---- every builtin and operator ---- */
    {.name = "grad_builtins_positive",
     .src = "def f(double(N) P, double(N) Q) -> (O) {\n"
             "  O(i) = log(P(i)) + log2(P(i)) + log10(P(i)) + log1p(P(i)) + sqrt(P(i)) + "
             "rsqrt(P(i)) + cbrt(P(i)) + pow(P(i), Q(i)) + pow(P(i), 3) + lgamma(P(i)) + "
             "tgamma(P(i)) + acosh(P(i) + 1.5) + hypot(P(i), Q(i)) + atan2(Q(i), P(i))\n"
             "}",
     .entry = "f",
     .shapes = "P=6 Q=6",
     .values = "P=0.2:3 Q=0.2:2",
    },
    {.name = "grad_builtins_any",
     .src = "def f(double(N) X, double(N) Y) -> (O) {\n"
             "  O(i) = exp(X(i)) + exp2(X(i)) + expm1(X(i)) + sin(X(i)) * cos(Y(i)) + tan(X(i)) + "
             "asin(X(i) * 0.5) + acos(Y(i) * 0.5) + atan(X(i)) + sinh(X(i)) + cosh(Y(i)) + "
             "tanh(X(i)) + asinh(X(i)) + atanh(Y(i) * 0.5) + erf(X(i)) + erfc(Y(i)) + fabs(X(i)) + "
             "fmax(X(i), Y(i)) + fmin(X(i), Y(i)) + fmod(X(i), Y(i) + 2.0) + "
             "copysign(X(i), Y(i)) + fma(X(i), Y(i), X(i)) + fdim(X(i), Y(i)) + "
             "floor(X(i)) * X(i) + lgamma(X(i) - 3.0) + X(i) % (Y(i) + 2.0)\n"
             "}",
     .entry = "f",
     .shapes = "X=9 Y=9",
    },
    {.name = "grad_operators",
     .src = "def f(double(N) X, double(N) Y, float(N) F) -> (O) {\n"
             "  O(i) = -X(i) * Y(i) / (Y(i) * Y(i) + 1.0) - min(X(i), Y(i)) + max(X(i), 2.0 * Y(i))"
             " + (X(i) > Y(i) ? X(i) * X(i) : -Y(i)) + X(i) * double(F(i)) + double(int32(X(i) * 5.0))"
             " + float(i) * X(i)\n"
             "}",
     .entry = "f",
     .shapes = "X=8 Y=8 F=8",
     .wrt = "X Y",
    },

    /* ---- gathers ---- */
    {.name = "grad_embedding",
     .src = "def emb(double(V,D) E, int32(B,L) Idx, double(B,L) Wt) -> (O, P) {\n"
             "  O(b,l,d) = E(Idx(b,l), d) * Wt(b,l)\n"
             "  P(b,d) +=! E(Idx(b,l), d)\n"
             "}",
     .entry = "emb",
     .shapes = "E=5x3 Idx=2x4 Wt=2x4",
     .values = "Idx=0:5",
    },
    {.name = "grad_take_along_strided",
     .src = "def f(double(N,M) X, int32(N,K) Idx, double(L) A) -> (O, Ev, R, Up) {\n"
             "  O(i,k) = X(i, Idx(i,k))\n"
             "  Ev(i) = A(2*i) + A(2*i + 1)\n"
             "  R(i) = A(L - 1 - i) * float(i)\n"
             "  Up(i) = A(i / 3) * float(i) where i in 0:3*L\n"
             "}",
     .entry = "f",
     .shapes = "X=3x4 Idx=3x5 A=7",
     .values = "Idx=0:4",
    },
    {.name = "grad_shifts_guards",
     .src = "def f(double(N) A, double(N,M) B) -> (S, G, C, T) {\n"
             "  S(i) = A(i-1) * A(i-1)\n"
             "  G(i) = i > 0 ? A(i-1) : 0.0 where i in 0:N\n"
             "  C(i) +=! j <= i ? A(j) : 0.0 where i in 0:N\n"
             "  T(i,j) = B(i-2, j-1) + B(i-2, j-1) * B(0, j-1)\n"
             "}",
     .entry = "f",
     .shapes = "A=5 B=5x3",
    },

    /* ---- multi-statement programs, temporaries, redefinitions ---- */
    {.name = "grad_temporaries",
     .src = "def f(double(N,K) A, double(K,M) B, double(M,P) C, double(N) X) -> (D, O) {\n"
             "  AB(n,m) +=! A(n,k) * B(k,m)\n"
             "  D(n,p) +=! AB(n,m) * C(m,p)\n"
             "  t1(i) = X(i) * 2.0\n"
             "  t2(i) = t1(i) + 1.0\n"
             "  t3(i) = t2(i) * t1(i)\n"
             "  O(i) = t3(i) - t2(i) + D(i, 0)\n"
             "}",
     .entry = "f",
     .shapes = "A=3x2 B=2x4 C=4x3 X=3",
    },
    {.name = "grad_redefinitions",
     .src = "def f(double(B,M) I, double(N,M) W1, double(N) B1, double(N) A, double(M) Z)"
             " -> (O1, O, P, Q) {\n"
             "  O1(b,n) +=! I(b,m) * W1(n,m)\n"
             "  O1(b,n) = O1(b,n) + B1(n)\n"
             "  O1(b,n) = fmax(O1(b,n), 0)\n"
             "  O(i) = A(i) * 2.0\n"
             "  O(i) = O(i) * O(i) + Z(i)\n"
             "  P(i) = A(i)\n"
             "  P(i) +=! W1(i,j) * A(i)\n"
             "  P(i) = P(i) * 3.0 where i in 1:N\n"
             "  Q(i) = A(i)\n"
             "  Q(i) max=! W1(i,j)\n"
             "  Q(i) *=! W1(i,j) * A(i)\n"
             "}",
     .entry = "f",
     .shapes = "I=2x4 W1=3x4 B1=3 A=3 Z=4",
     .values = "I=-1:1 W1=0.5:2",
    },
    {.name = "grad_outputs_read_later",
     .src = "def f(double(N) A) -> (nrm, O) {\n"
             "  nrm +=! A(i) * A(i)\n"
             "  nrm = sqrt(nrm)\n"
             "  O(i) = A(i) / nrm\n"
             "}",
     .entry = "f",
     .shapes = "A=5",
    },
    {.name = "grad_products",
     .src = "def f(double(N,M) A, double(N) B) -> (P, Q) {\n"
             "  P(i) *=! A(i,j)\n"
             "  Q(i) = B(i)\n"
             "  Q(i) *= A(i,j) * 2.0\n"
             "}",
     .entry = "f",
     .shapes = "A=3x4 B=3",
    },
    {.name = "grad_scalars_typed",
     .src = "def f(double alpha, double(N) X, float(N) F) -> (double(N) O, s, float(N) G) {\n"
             "  O(i) = alpha * X(i) + F(i)\n"
             "  s +=! O(i) * alpha\n"
             "  G(i) = F(i) * 2.0\n"
             "}",
     .entry = "f",
     .shapes = "alpha=scalar X=4 F=4",
     .wrt = "alpha X",
    },
    {.name = "grad_wavenet_partial",
     .src = "def f(double(B,C,T) Data, double(D,C,2) FW, double(D) FB, double(DIL) Dilation)"
             " -> (Out, NL) {\n"
             "  Out(b,d,t) = FB(d) where b in 0:B, d in 0:D, t in 0:T\n"
             "  Out(b,d,t) += Data(b,r,t) * FW(d,r,1) where b in 0:B, d in 0:D, t in 0:T\n"
             "  Out(b,d,t) += Data(b,r,t - DIL) * FW(d,r,0) where t in DIL:T\n"
             "  NL(b,d,t) = tanh(Out(b,d,t)) where t in 0:T\n"
             "  NL(b,d,t) = NL(b,d,t) * Out(b,d,t) where t in 1:T\n"
             "}",
     .entry = "f",
     .shapes = "Data=2x3x5 FW=2x3x2 FB=2 Dilation=2",
     .wrt = "Data FW FB",
    },
    {.name = "grad_offset_outputs",
     .src = "def f(double(N,M) A) -> (S, Mx, O) {\n"
             "  S(i) +=! A(i-1, k)\n"
             "  Mx(i) max=! A(i-3, k)\n"
             "  O(i,j) = A(i-2, j-1)\n"
             "}",
     .entry = "f",
     .shapes = "A=4x3",
    },
    {.name = "grad_attention",
     .src = "def attention(double(T,D) X) -> (O) {\n"
             "  sc(t,s) +=! X(t,d) * X(s,d)\n"
             "  m(t,s) = s <= t ? sc(t,s) : -1.0e30\n"
             "  mx(t) max=! m(t,s)\n"
             "  p(t,s) = exp(m(t,s) - mx(t))\n"
             "  den(t) +=! p(t,s)\n"
             "  O(t,d) +=! p(t,s) * X(s,d)\n"
             "  O(t,d) = O(t,d) / den(t)\n"
             "}",
     .entry = "attention",
     .shapes = "X=4x3",
    },
    {.name = "grad_constants",
     .src = "def conv(double(N,C,H,W) I, double(M,C,KH,KW) W1, int32 stride, double scale)"
             " -> (O) {\n"
             "  O(n,m,h,w) +=! I(n,c,stride*h+kh,stride*w+kw) * W1(m,c,kh,kw) * scale\n"
             "}",
     .entry = "conv",
     .shapes = "I=1x2x8x7 W1=2x2x2x3",
     .consts = stride3,
     .nconsts = 2,
    },
};

enum { NCASES = sizeof cases / sizeof cases[0] };

typedef struct Worker {
  const Case *cases;
  int n;
  int next;               /* guarded by mu */
  int *bad;
  pthread_mutex_t mu;
} Worker;

static void *work(void *arg) {
  Worker *w = arg;
  for (;;) {
    pthread_mutex_lock(&w->mu);
    int i = w->next++;
    pthread_mutex_unlock(&w->mu);
    if (i >= w->n)
      return NULL;
    uint64_t seed = 0x9e3779b97f4a7c15ull; /* from the name: the same inputs on every machine */
    for (const char *s = w->cases[i].name; *s; s++)
      seed = (seed ^ (unsigned char)*s) * 0x100000001b3ull;
    w->bad[i] = check_case(&w->cases[i], seed | 1);
  }
}

/* Runs the cases on 8 threads (compiling their kernels is most of the time). */
static void check_all(const Case *cs, int n) {
  CHECK(context() != NULL);
  Worker w = {cs, n, 0, calloc((size_t)n + 1, sizeof(int)), PTHREAD_MUTEX_INITIALIZER};
  pthread_t th[8];
  for (int t = 0; t < 8; t++)
    pthread_create(&th[t], NULL, work, &w);
  for (int t = 0; t < 8; t++)
    pthread_join(th[t], NULL);
  for (int i = 0; i < n; i++)
    if (w.bad[i]) {
      fprintf(stderr, "FAIL %s: %d mismatches\n", cs[i].name, w.bad[i]);
      unit_failures_in_test++;
    }
  free(w.bad);
}

TEST(grad_numeric) { check_all(cases, NCASES); }

/* ---- every differentiable def of tests/programs ---- */

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  char *s = calloc(1, 1 << 20);
  size_t n = s ? fread(s, 1, (1 << 20) - 1, f) : 0;
  s[n] = '\0';
  fclose(f);
  return s;
}


/* The source with every float type made float64, so that finite
 * differences work (as the PyTorch layer's gradcheck does). */
static char *to_double(const char *src) {
  static const char *const types[] = {"float32", "float16", "bfloat16", "float"};
  size_t n = strlen(src);
  char *out = calloc(2 * n + 1, 1), *o = out;
  for (const char *s = src; *s;) {
    bool word = s == src || !(isalnum((unsigned char)s[-1]) || s[-1] == '_');
    size_t k = 0, len = 0;
    for (; word && k < 4; k++) {
      len = strlen(types[k]);
      if (!strncmp(s, types[k], len) && !isalnum((unsigned char)s[len]) && s[len] != '_')
        break;
    }
    if (word && k < 4) {
      o += sprintf(o, "double"), s += len;
    } else {
      *o++ = *s++;
    }
  }
  return out;
}

/* Elements of the inputs in a "shapes" spec. */
static int64_t spec_elements(const char *spec) {
  int64_t total = 0;
  for (const char *s = spec; s && (s = strchr(s, '=')); s++) {
    int64_t shape[TC_MAX_RANK], n = 1;
    int r = parse_shape(s + 1, shape);
    for (int k = 0; k < r; k++)
      n *= shape[k];
    total += n;
  }
  return total;
}

/* One case per entry of a tests/programs file: its smallest shapes line
 * (not one expected to fail), its value ranges; the backward interpreted. */
static int program_cases(const char *path, Case *out, int cap) {
  char *text = read_file(path);
  if (!text)
    return 0;
  char *src = to_double(text);
  int n = 0;
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    char a[128], b[64], c[64];
    if (sscanf(line, "# test: entry %127s", a) == 1 && n < cap) {
      Case *k = &out[n++];
      memset(k, 0, sizeof *k);
      k->name = strdup(a), k->entry = k->name, k->src = src, k->interp_only = true;
      k->values = calloc(1, 1024);
    } else if (n && !strncmp(line, "# test: shapes ", 15) && !strstr(line, "expect=")) {
      Case *k = &out[n - 1];
      if (!k->shapes || spec_elements(line + 15) < spec_elements(k->shapes)) {
        free((char *)k->shapes);
        k->shapes = strdup(line + 15);
      }
    } else if (n && sscanf(line, "# test: values %63s %63s %63s", a, b, c) == 3) {
      char *v = (char *)out[n - 1].values;
      snprintf(v + strlen(v), 1024 - strlen(v), "%s%s=%s:%s", *v ? " " : "", a, b, c);
    }
  }
  free(text);
  if (!n)
    free(src);
  return n;
}

/* Every def with a floating-point input, as the PyTorch layer's gradcheck
 * sees them (small shapes, float64). */
TEST(grad_test_programs) {
  DIR *dir = opendir("tests/programs");
  CHECK(dir != NULL);
  Case *cs = calloc(1024, sizeof *cs);
  int n = 0;
  for (struct dirent *e; dir && (e = readdir(dir));) {
    size_t len = strlen(e->d_name);
    if (len < 4 || strcmp(e->d_name + len - 3, ".tc"))
      continue;
    char path[512];
    snprintf(path, sizeof path, "tests/programs/%s", e->d_name);
    n += program_cases(path, cs + n, 1024 - n);
  }
  if (dir)
    closedir(dir);
  Case *all = calloc((size_t)n + 1, sizeof *all);
  memcpy(all, cs, sizeof *cs * (size_t)n);
  int m = 0, tried = 0;
  for (int i = 0; i < n; i++) { /* keep those with a float input, small enough */
    tc_program *p = NULL;
    tc_error err;
    bool keep = cs[i].shapes && spec_elements(cs[i].shapes) <= 400 &&
                tc_compile(context(), "p.tc", cs[i].src, strlen(cs[i].src), &p, &err) == TC_OK;
    int e = keep ? tc_program_find_entry(p, cs[i].entry) : -1;
    for (int k = 0; keep && k < tc_entry_num_inputs(p, e); k++) {
      tc_param_info pi;
      tc_entry_input(p, e, k, &pi);
      keep = k + 1 < tc_entry_num_inputs(p, e) || pi.dtype == TC_FLOAT64;
      if (pi.dtype == TC_FLOAT64)
        break;
    }
    tc_program_free(p);
    tried += keep;
    if (keep)
      cs[m++] = cs[i];
  }
  if (getenv("VERBOSE"))
    fprintf(stderr, "grad_test_programs: %d defs\n", tried);
  CHECK(tried > 100);
  check_all(cs, m);
  for (int i = 0; i < n; i++) {
    free((char *)all[i].name);
    free((char *)all[i].shapes);
    free((char *)all[i].values);
    if (i + 1 == n || all[i + 1].src != all[i].src)
      free((char *)all[i].src);
  }
  free(all);
  free(cs);
}

/* ---- exact routing of ties ---- */

/* max=/min= send the gradient to the first winner only: lexicographic in the
 * reduction indices; max/min/fmax to their first operand on ties. */
TEST(grad_ties_first_winner) {
  const char *src = "def f(double(N,M,K) A, double(N) X, double(N) Y) -> (Mx, Mn, P, Q) {\n"
                  "  Mx(i) max=! A(i,j,k)\n"
                  "  Mn(i) min=! A(i,j,k)\n"
                  "  P(i) = max(X(i), Y(i)) + min(X(i), Y(i))\n"
                  "  Q(i) = fmax(Y(i), X(i))\n"
                  "}";
  Case c = {.name = "ties", .src = src, .entry = "f", .shapes = "A=2x3x2 X=2 Y=2"};
  Problem P;
  CHECK(setup(&c, &P, 1));
  double a[12] = {1, 5, 5, 2, 5, 0, /* row 0: max 5 at (0,1), (1,0), (2,0); min 0 */
                  3, 3, 3, 3, 3, 3};
  for (int k = 0; k < 12; k++)
    set(&P.in[0], k, a[k]);
  for (int k = 0; k < 2; k++) {
    set(&P.in[1], k, 2.0);
    set(&P.in[2], k, 2.0);
  }
  for (int j = 0; j < 4; j++)
    for (int k = 0; k < P.dout[j].n; k++)
      set(&P.dout[j], k, 1.0 + j);
  for (int t = 0; t < 2; t++) {
    CHECK(backward(&P, t ? TC_TARGET_C : TC_TARGET_INTERP));
    /* Mx (dO = 1) and Mn (dO = 2) */
    double want[12] = {0, 1, 0, 0, 0, 2, 3, 0, 0, 0, 0, 0};
    for (int k = 0; k < 12; k++)
      CHECK(get(&P.grad[0], k) == want[k]);
    /* P: max and min both pick X on a tie (3 + 3); Q: fmax(Y, X) picks Y */
    for (int k = 0; k < 2; k++) {
      CHECK(get(&P.grad[1], k) == 6.0);
      CHECK(get(&P.grad[2], k) == 4.0);
    }
  }
  problem_free(&P);
}

/* ---- the calling convention ---- */

static char *gradient_of(const char *src, const char *entry, const int *wrt, tc_error *err,
                         tc_status *st) {
  tc_program *p = NULL;
  char *text = NULL;
  *st = tc_compile(context(), "conv.tc", src, strlen(src), &p, err);
  if (*st == TC_OK)
    *st = tc_gradient(p, tc_program_find_entry(p, entry), wrt, &text, err);
  tc_program_free(p);
  return text;
}

TEST(grad_convention) {
  const char *src = "def f(float(N,K) A, int32(N) Idx, float alpha, float(K) d_A) -> (O, I2) {\n"
                  "  O(n,k) = A(n,k) * alpha + d_A(k)\n"
                  "  I2(n) = Idx(n) * 2\n"
                  "}";
  tc_error err;
  tc_status st;
  char *text = gradient_of(src, "f", NULL, &err, &st);
  CHECK_INT(st, TC_OK);
  tc_program *g = NULL;
  CHECK(text && tc_compile(context(), "g.tc", text, strlen(text), &g, &err) == TC_OK);
  CHECK_STR(tc_program_entry_name(g, 0), "f_grad");
  const char *ins[] = {"A", "Idx", "alpha", "d_A", "d_O", "d_I2"};
  const tc_dtype idt[] = {TC_FLOAT32, TC_INT32, TC_FLOAT32, TC_FLOAT32, TC_FLOAT32, TC_INT32};
  CHECK_INT(tc_entry_num_inputs(g, 0), 6);
  for (int i = 0; i < 6 && i < tc_entry_num_inputs(g, 0); i++) {
    tc_param_info pi;
    tc_entry_input(g, 0, i, &pi);
    CHECK_STR(pi.name, ins[i]);
    CHECK_INT(pi.dtype, idt[i]);
  }
  /* d_A is taken by the input: A's gradient is d_A_2 */
  const char *outs[] = {"d_A_2", "d_alpha", "d_d_A"};
  const int ranks[] = {2, 0, 1};
  CHECK_INT(tc_entry_num_outputs(g, 0), 3);
  for (int i = 0; i < 3 && i < tc_entry_num_outputs(g, 0); i++) {
    tc_param_info pi;
    tc_entry_output(g, 0, i, &pi);
    CHECK_STR(pi.name, outs[i]);
    CHECK_INT(pi.rank, ranks[i]);
    CHECK_INT(pi.dtype, TC_FLOAT32);
  }
  tc_shape in[6] = {{2, {3, 4}}, {1, {3}}, {0, {0}}, {1, {4}}, {2, {3, 4}}, {1, {3}}};
  tc_shape out[3];
  CHECK_INT(tc_infer_shapes(g, 0, in, 6, out, 3, &err), TC_OK);
  CHECK(out[0].rank == 2 && out[0].dims[0] == 3 && out[0].dims[1] == 4);
  CHECK(out[1].rank == 0 && out[2].rank == 1 && out[2].dims[0] == 4);
  tc_program_free(g);
  tc_free(text);
  /* only the selected inputs */
  int wrt[4] = {0, 0, 1, 0};
  text = gradient_of(src, "f", wrt, &err, &st);
  CHECK(text && strstr(text, "-> (d_alpha)"));
  tc_free(text);
}

TEST(grad_errors) {
  const char *src = "def f(float(N) A, int32(N) K) -> (O) { O(i) = A(i) * K(i) }";
  tc_error err;
  tc_status st;
  int wrt[2] = {0, 1};
  char *text = gradient_of(src, "f", wrt, &err, &st);
  CHECK_INT(st, TC_ERR_ARGUMENT);
  CHECK(!text && strstr(err.message, "K is int32"));
  int none[2] = {0, 0};
  text = gradient_of(src, "f", none, &err, &st);
  CHECK_INT(st, TC_ERR_ARGUMENT);
  CHECK(strstr(err.message, "no input is selected"));
  text = gradient_of("def g(int32(N) K) -> (O) { O(i) = K(i) }", "g", NULL, &err, &st);
  CHECK_INT(st, TC_ERR_ARGUMENT);
  tc_program *p = NULL;
  CHECK_INT(tc_compile(context(), "t.tc", src, strlen(src), &p, &err), TC_OK);
  CHECK_INT(tc_gradient(p, 7, NULL, &text, &err), TC_ERR_ARGUMENT);
  CHECK_INT(tc_gradient(p, 0, NULL, NULL, &err), TC_ERR_ARGUMENT);
  tc_program_free(p);
}

/* Inputs nothing depends on get zeros; outputs that do not depend on the
 * selected inputs do not matter. */
TEST(grad_unreached_inputs_are_zero) {
  Case c = {.name = "unreached",
            .src = "def f(double(N) A, double(N) B, int32(N) K) -> (O, Q) {\n"
                   "  O(i) = A(K(i)) * 0.0 + float(B(i) > 0.0)\n"
                   "  Q(i) = A(i) * 2.0\n"
                   "}",
            .entry = "f", .shapes = "A=4 B=4 K=4", .values = "K=0:4", .wrt = "B"};
  CHECK_INT(check_case(&c, 7), 0);
}

/* Second derivatives: the backward is a def like any other. */
TEST(grad_second_order) {
  const char *src = "def f(double(N) X, double(N,M) W) -> (O) {\n"
                    "  h(i) +=! tanh(X(j) * W(i,j))\n"
                    "  O(i) = h(i) * h(i) * X(i) where i in 0:N\n"
                    "}";
  tc_error err;
  tc_status st;
  char *text = gradient_of(src, "f", NULL, &err, &st);
  CHECK_INT(st, TC_OK);
  Case c = {.name = "second_order", .src = text, .entry = "f_grad",
            .shapes = "X=3 W=3x4 d_O=3"};
  CHECK(text && check_case(&c, 11) == 0);
  tc_free(text);
}

/* ---- golden derived sources ---- */


/* tests/grad/NAME.tc: "# entry: E" lines; the backward of each in NAME.expected. */
static void golden(const char *name) {
  char path[256];
  snprintf(path, sizeof path, "tests/grad/%s.tc", name);
  char *src = read_file(path);
  CHECK(src != NULL);
  if (!src)
    return;
  tc_program *p = NULL;
  tc_error err;
  CHECK_INT(tc_compile(context(), path, src, strlen(src), &p, &err), TC_OK);
  size_t cap = 1 << 20, len = 0;
  char *got = calloc(1, cap);
  for (const char *s = strstr(src, "# entry: "); p && s; s = strstr(s + 1, "# entry: ")) {
    char entry[64];
    sscanf(s, "# entry: %63s", entry);
    char *text = NULL;
    tc_status st = tc_gradient(p, tc_program_find_entry(p, entry), NULL, &text, &err);
    len += (size_t)snprintf(got + len, cap - len, "%s", st == TC_OK ? text : err.diagnostic);
    tc_free(text);
  }
  snprintf(path, sizeof path, "tests/grad/%s.expected", name);
  if (getenv("UPDATE")) {
    FILE *f = fopen(path, "wb");
    if (f) {
      fputs(got, f);
      fclose(f);
    }
  }
  char *want = read_file(path);
  CHECK_STR(got, want ? want : "(missing)");
  free(want);
  free(got);
  free(src);
  tc_program_free(p);
}

TEST(grad_golden_contractions) { golden("contractions"); }
TEST(grad_golden_convolutions) { golden("convolutions"); }
TEST(grad_golden_reductions) { golden("reductions"); }

RUN_TESTS()
