/*
 * interp.c — the reference interpreter: runs a checked, inferred Def by
 * evaluating its statements directly, one element at a time.  It is the
 * tests' oracle, so it is written to be obviously right rather than fast:
 * no IR, no lowering, no cleverness, only docs/language.md read literally.
 *
 * Statements run in program order.  Each statement's index ranges come from
 * IndexVar.lo/hi (range inference) evaluated with the bound sizes; the
 * left-hand variables iterate outermost, in order, then the reduction
 * variables, lexicographically.  `=` evaluates the right-hand side, converts
 * it to the tensor's type and stores it.  A reduction keeps, per left-hand
 * point, an accumulator of the tensor's type that starts at the identity
 * (Stmt.init) or at the element's current value, folds in every reduction
 * point and is stored once at the end (so a float16 sum accumulates in
 * float32 and rounds once).  Before the first definition of a tensor marked
 * zero_fill the whole tensor is set to 0 (and an output that no statement
 * writes is zeroed before the first statement).
 *
 * Values are small tagged cells (Val): integers and bools keep their bit
 * pattern canonical for their type (sign- or zero-extended to 64 bits) and
 * are wrapped to the type's width after every operation; float32 arithmetic
 * is done in C `float` and float64 in `double`, so that results agree with
 * the compiled code bit for bit.  float16 and bfloat16 are storage types:
 * loads widen them, their arithmetic (and operand promotion to them) stays in
 * float32, and only stores and casts round to nearest even.
 *
 * Inside subscripts every integer node computes in int64 and integer casts
 * do not narrow (eval's `ix`), so indices are exact whatever the types of
 * their parts.  Every read and write is bounds-checked: a dimension under a
 * boundary condition applies it, any other index out of range is a located
 * TC_ERR_RUNTIME.  `exists` clauses are never evaluated.
 *
 * Errors do not jump: the first one is recorded in the Interp and every
 * evaluation after it returns 0 at once, and no memory is touched with an
 * index that was not checked.  All arithmetic on user values goes through
 * unsigned 64-bit integers, so no input can cause undefined behaviour here.
 */
#include "tc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A value: integers and bools in `u`, floats in `f`.  Which one is meant
 * comes from the static type of the expression that produced it. */
typedef struct Val {
  uint64_t u;
  double f;
} Val;

typedef struct Interp {
  const SrcFile *file;
  const Binding *b;
  tc_error *err;
  bool failed;    /* an error was recorded; evaluation unwinds returning 0 */
  tc_status code; /* ... and its code */
  int64_t *idx;   /* current value of each variable of the running statement */
  int nvars;      /* ... and how many it has */
} Interp;

static void fail(Interp *in, tc_status code, Loc loc, const char *fmt, ...) TC_PRINTF(4, 5);

static void fail(Interp *in, tc_status code, Loc loc, const char *fmt, ...) {
  if (in->failed)
    return;
  in->failed = true;
  in->code = code;
  va_list ap;
  va_start(ap, fmt);
  error_vset(in->err, code, in->file, loc, fmt, ap);
  va_end(ap);
}

/* ---- type categories and integer helpers ---- */

static bool is_float(tc_dtype t) { return dtype_info[t].is_float; }
static bool is_f64(tc_dtype t) { return t == TC_FLOAT64; }
static bool is_signed_int(tc_dtype t) { return dtype_info[t].is_int && dtype_info[t].is_signed; }

/* The two's-complement reading of 64 bits, without implementation-defined
 * conversions. */
static int64_t as_i64(uint64_t u) {
  return u <= (uint64_t)INT64_MAX ? (int64_t)u : -(int64_t)(~u) - 1;
}

/* Canonical bits of integer (or bool) type t: wrapped to its width. */
static uint64_t wrap(tc_dtype t, uint64_t u) {
  const DTypeInfo *d = &dtype_info[t];
  if (d->is_bool)
    return u != 0;
  if (d->bits >= 64)
    return u;
  uint64_t mask = ((uint64_t)1 << d->bits) - 1;
  u &= mask;
  if (d->is_signed && (u >> (d->bits - 1)))
    u |= ~mask;
  return u;
}

static uint64_t int_max(tc_dtype t) {
  const DTypeInfo *d = &dtype_info[t];
  if (d->is_bool)
    return 1;
  uint64_t all = d->bits >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << d->bits) - 1;
  return d->is_signed ? all >> 1 : all;
}

static uint64_t int_min(tc_dtype t) {
  const DTypeInfo *d = &dtype_info[t];
  if (!d->is_signed || d->is_bool)
    return 0;
  return ~int_max(t); /* sign-extended minimum */
}

static Val ival(uint64_t u) { return (Val){u, 0}; }
static Val fval(double f) { return (Val){0, f}; }

/* ---- float16 / bfloat16 ---- */

/* Rounds x to the nearest number with a p-bit significand and exponents in
 * [emin, emax] (subnormals below emin), ties to even; too large gives
 * infinity.  Exact for any double input: no double rounding. */
static double round_format(double x, int p, int emin, int emax) {
  if (isnan(x) || isinf(x) || x == 0)
    return x;
  double a = fabs(x);
  int ex;
  frexp(a, &ex); /* a = m * 2^ex, m in [0.5, 1) */
  int e = ex - 1 < emin ? emin : ex - 1;
  double q = ldexp(1.0, e - (p - 1));
  double r = nearbyint(a / q) * q;
  if (r >= ldexp(1.0, emax + 1))
    r = INFINITY;
  return copysign(r, x);
}

static double round_f16(double x) { return round_format(x, 11, -14, 15); }
static double round_bf16(double x) { return round_format(x, 8, -126, 127); }

/* Bits of a float16 from a value it represents exactly. */
static uint16_t f16_bits(double r) {
  uint16_t sign = signbit(r) ? 0x8000 : 0;
  if (isnan(r))
    return sign | 0x7e00;
  if (isinf(r))
    return sign | 0x7c00;
  double a = fabs(r);
  if (a == 0)
    return sign;
  int ex;
  frexp(a, &ex);
  int e = ex - 1;
  if (e < -14)
    return sign | (uint16_t)ldexp(a, 24);
  return sign | (uint16_t)((e + 15) << 10) | (uint16_t)(ldexp(a, 10 - e) - 1024);
}

static double f16_value(uint16_t h) {
  int exp = (h >> 10) & 31, mant = h & 1023;
  double a;
  if (exp == 0)
    a = ldexp(mant, -24);
  else if (exp == 31)
    a = mant ? NAN : INFINITY;
  else
    a = ldexp(1024 + mant, exp - 25);
  return (h & 0x8000) ? -a : a;
}

static uint16_t bf16_bits(double r) {
  float f = (float)r; /* exact: r is a bfloat16 value */
  uint32_t u;
  memcpy(&u, &f, 4);
  if (isnan(f))
    return (uint16_t)((u >> 16) | 0x40);
  return (uint16_t)(u >> 16);
}

static double bf16_value(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* ---- conversions ---- */

/* Float to integer: truncate toward zero, saturate, NaN gives 0. */
static uint64_t float_to_int(tc_dtype t, double x) {
  const DTypeInfo *d = &dtype_info[t];
  if (d->is_bool)
    return x != 0;
  if (isnan(x))
    return 0;
  if (d->is_signed) {
    double lim = ldexp(1.0, d->bits - 1);
    if (x >= lim)
      return int_max(t);
    if (x <= -lim)
      return int_min(t);
    return wrap(t, (uint64_t)(int64_t)x);
  }
  if (x < 1)
    return 0;
  if (x >= ldexp(1.0, d->bits))
    return int_max(t);
  return (uint64_t)x;
}

static bool is_half(tc_dtype t) { return t == TC_FLOAT16 || t == TC_BFLOAT16; }

/* Integer (or bool) bits of type `from` as a number of float type `to`,
 * converted directly as C does (float32 and the 16-bit types: through
 * float, rounded once). */
static double int_to_float(tc_dtype from, tc_dtype to, uint64_t u) {
  if (is_signed_int(from)) {
    int64_t v = as_i64(u);
    return is_f64(to) ? (double)v : (double)(float)v;
  }
  return is_f64(to) ? (double)u : (double)(float)u;
}

/* Converts v from type `from` to type `to` with TC's rules: float to
 * integer saturates (NaN gives 0), to bool is != 0.  `rounding`: a cast or a
 * store, which rounds to float16/bfloat16 precision (an integer through
 * float32, a float64 directly, once); other conversions (operand promotion)
 * only move into float32 arithmetic, where float16 and bfloat16 values live.
 * A cast rounds even a value of its own type: float16(a + b). */
static Val convert(Val v, tc_dtype from, tc_dtype to, bool rounding) {
  if (from == to && !(rounding && is_half(to)))
    return v;
  if (dtype_info[to].is_bool)
    return ival(is_float(from) ? v.f != 0 : v.u != 0);
  if (!is_float(to))
    return ival(is_float(from) ? float_to_int(to, v.f) : wrap(to, v.u));
  double x;
  if (!is_float(from))
    x = int_to_float(from, to, v.u);
  else if (is_f64(to) || !is_f64(from) || (rounding && is_half(to)))
    x = v.f; /* exact, or float64 rounded to 16 bits once, below */
  else
    x = (double)(float)v.f;
  if (rounding && to == TC_FLOAT16)
    x = round_f16(x);
  else if (rounding && to == TC_BFLOAT16)
    x = round_bf16(x);
  return fval(x);
}

static bool truth(Val v, tc_dtype t) { return is_float(t) ? v.f != 0 : v.u != 0; }

/* ---- memory ---- */

/* The address of element `off` (wrapping arithmetic: offsets are checked). */
static char *elem_addr(const View *v, int64_t off) {
  return v->data + as_i64((uint64_t)off * (uint64_t)dtype_info[v->dtype].size);
}

static Val load_elem(const View *v, int64_t off) {
  const char *p = elem_addr(v, off);
  uint8_t u8;
  uint16_t u16;
  uint32_t u32;
  uint64_t u64;
  float f;
  double d;
  switch (v->dtype) {
  case TC_BOOL: memcpy(&u8, p, 1); return ival(u8 != 0);
  case TC_INT8: case TC_UINT8: memcpy(&u8, p, 1); return ival(wrap(v->dtype, u8));
  case TC_INT16: case TC_UINT16: memcpy(&u16, p, 2); return ival(wrap(v->dtype, u16));
  case TC_INT32: case TC_UINT32: memcpy(&u32, p, 4); return ival(wrap(v->dtype, u32));
  case TC_INT64: case TC_UINT64: memcpy(&u64, p, 8); return ival(u64);
  case TC_FLOAT16: memcpy(&u16, p, 2); return fval(f16_value(u16));
  case TC_BFLOAT16: memcpy(&u16, p, 2); return fval(bf16_value(u16));
  case TC_FLOAT32: memcpy(&f, p, 4); return fval(f);
  case TC_FLOAT64: memcpy(&d, p, 8); return fval(d);
  case TC_NUM_DTYPES: break;
  }
  return ival(0);
}

/* Stores x, a value of the view's type; float16/bfloat16 round here. */
static void store_elem(const View *v, int64_t off, Val x) {
  char *p = elem_addr(v, off);
  uint8_t u8 = (uint8_t)x.u;
  uint16_t u16 = (uint16_t)x.u;
  uint32_t u32 = (uint32_t)x.u;
  float f = (float)x.f;
  switch (v->dtype) {
  case TC_BOOL: u8 = x.u != 0; memcpy(p, &u8, 1); break;
  case TC_INT8: case TC_UINT8: memcpy(p, &u8, 1); break;
  case TC_INT16: case TC_UINT16: memcpy(p, &u16, 2); break;
  case TC_INT32: case TC_UINT32: memcpy(p, &u32, 4); break;
  case TC_INT64: case TC_UINT64: memcpy(p, &x.u, 8); break;
  case TC_FLOAT16: u16 = f16_bits(round_f16(x.f)); memcpy(p, &u16, 2); break;
  case TC_BFLOAT16: u16 = bf16_bits(round_bf16(x.f)); memcpy(p, &u16, 2); break;
  case TC_FLOAT32: memcpy(p, &f, 4); break;
  case TC_FLOAT64: memcpy(p, &x.f, 8); break;
  case TC_NUM_DTYPES: break;
  }
}

/* Element offset of a checked multi-index (wrapping: strides are the
 * caller's, indices are in range). */
static int64_t offset_of(const View *v, const int64_t *idx) {
  uint64_t off = 0;
  for (int d = 0; d < v->rank; d++)
    off += (uint64_t)idx[d] * (uint64_t)v->stride[d];
  return as_i64(off);
}

/* Sets every element of the view to 0 (all-zero bits are 0 in every type). */
static void zero_view(const View *v) {
  int64_t idx[TC_MAX_RANK] = {0};
  for (int d = 0; d < v->rank; d++)
    if (v->shape[d] <= 0)
      return;
  Val zero = {0, 0};
  for (;;) {
    store_elem(v, offset_of(v, idx), zero);
    int d = v->rank - 1;
    while (d >= 0 && ++idx[d] == v->shape[d])
      idx[d--] = 0;
    if (d < 0)
      return;
  }
}

/* ---- arithmetic ---- */

/* min/max propagate NaN: a NaN first operand is the result, and a NaN
 * second one loses every comparison. */
static double fmin_nan(double a, double b) { return a < b || a != a ? a : b; }
static double fmax_nan(double a, double b) { return a > b || a != a ? a : b; }

/* float32 arithmetic, in float.  `%` is the floored remainder
 * a - b * floor(a / b), each operation rounded in the type. */
static float arith_f32(int op, float a, float b) {
  switch (op) {
  case OP_ADD: return a + b;
  case OP_SUB: return a - b;
  case OP_MUL: return a * b;
  case OP_DIV: return a / b;
  case OP_MOD: {
    float q = floorf(a / b);
    float m = b * q;
    return a - m;
  }
  case OP_MIN: return (float)fmin_nan(a, b);
  case OP_MAX: return (float)fmax_nan(a, b);
  }
  return 0;
}

static double arith_f64(int op, double a, double b) {
  switch (op) {
  case OP_ADD: return a + b;
  case OP_SUB: return a - b;
  case OP_MUL: return a * b;
  case OP_DIV: return a / b;
  case OP_MOD: {
    double q = floor(a / b);
    double m = b * q;
    return a - m;
  }
  case OP_MIN: return fmin_nan(a, b);
  case OP_MAX: return fmax_nan(a, b);
  }
  return 0;
}

/* Floor division and remainder of signed 64-bit values: x/0 and x%0 give 0,
 * MIN/-1 wraps (the caller wraps to the type's width). */
static uint64_t floordiv_i64(int64_t a, int64_t b, bool mod) {
  if (b == 0)
    return 0;
  if (b == -1)
    return mod ? 0 : 0 - (uint64_t)a;
  int64_t q = a / b, r = a % b;
  if (r != 0 && ((r < 0) != (b < 0))) {
    q -= 1;
    r += b;
  }
  return (uint64_t)(mod ? r : q);
}

/* Integer arithmetic on canonical bits of type t; wraps to t's width. */
static uint64_t arith_int(int op, tc_dtype t, uint64_t x, uint64_t y) {
  bool sgn = is_signed_int(t);
  bool lt = sgn ? as_i64(x) < as_i64(y) : x < y;
  switch (op) {
  case OP_ADD: return wrap(t, x + y);
  case OP_SUB: return wrap(t, x - y);
  case OP_MUL: return wrap(t, x * y);
  case OP_DIV:
  case OP_MOD:
    if (sgn)
      return wrap(t, floordiv_i64(as_i64(x), as_i64(y), op == OP_MOD));
    if (y == 0)
      return 0;
    return wrap(t, op == OP_MOD ? x % y : x / y);
  case OP_MIN: return lt ? x : y;
  case OP_MAX: return lt ? y : x;
  }
  return 0;
}

/* x op y, both already of type t. */
static Val arith(int op, tc_dtype t, Val x, Val y) {
  if (is_f64(t))
    return fval(arith_f64(op, x.f, y.f));
  if (is_float(t))
    return fval(arith_f32(op, (float)x.f, (float)y.f));
  return ival(arith_int(op, t, x.u, y.u));
}

/* x cmp y, both of type t. */
static bool compare(int op, tc_dtype t, Val x, Val y) {
  int c;
  if (is_float(t)) {
    switch (op) {
    case OP_LT: return x.f < y.f;
    case OP_LE: return x.f <= y.f;
    case OP_GT: return x.f > y.f;
    case OP_GE: return x.f >= y.f;
    case OP_EQ: return x.f == y.f;
    case OP_NE: return x.f != y.f;
    }
    return false;
  }
  if (is_signed_int(t))
    c = as_i64(x.u) < as_i64(y.u) ? -1 : as_i64(x.u) > as_i64(y.u);
  else
    c = x.u < y.u ? -1 : x.u > y.u;
  switch (op) {
  case OP_LT: return c < 0;
  case OP_LE: return c <= 0;
  case OP_GT: return c > 0;
  case OP_GE: return c >= 0;
  case OP_EQ: return c == 0;
  case OP_NE: return c != 0;
  }
  return false;
}

static bool is_compare(int op) {
  return op == OP_LT || op == OP_LE || op == OP_GT || op == OP_GE || op == OP_EQ ||
         op == OP_NE;
}

/* ---- builtins: float32 calls the `f` variants, float64 the double ones ---- */

#define UNARY_BUILTINS(X)                                                     \
  X(exp) X(exp2) X(expm1) X(log) X(log2) X(log10) X(log1p) X(sqrt) X(cbrt)    \
  X(fabs) X(floor) X(ceil) X(round) X(trunc) X(rint) X(sin) X(cos) X(tan)     \
  X(asin) X(acos) X(atan) X(sinh) X(cosh) X(tanh) X(asinh) X(acosh) X(atanh)  \
  X(erf) X(erfc) X(tgamma)
#define BINARY_BUILTINS(X)                                                    \
  X(pow) X(fmax) X(fmin) X(fmod) X(atan2) X(hypot) X(copysign) X(fdim)

static float builtin_f32(int bi, const float *a) {
  int sign;
  switch (bi) {
#define X(n) case BI_##n: return n##f(a[0]);
    UNARY_BUILTINS(X)
#undef X
#define X(n) case BI_##n: return n##f(a[0], a[1]);
    BINARY_BUILTINS(X)
#undef X
  case BI_rsqrt: return 1.0f / sqrtf(a[0]);
  case BI_lgamma: return lgammaf_r(a[0], &sign);
  case BI_fma: return fmaf(a[0], a[1], a[2]);
  }
  return 0;
}

static double builtin_f64(int bi, const double *a) {
  int sign;
  switch (bi) {
#define X(n) case BI_##n: return n(a[0]);
    UNARY_BUILTINS(X)
#undef X
#define X(n) case BI_##n: return n(a[0], a[1]);
    BINARY_BUILTINS(X)
#undef X
  case BI_rsqrt: return 1.0 / sqrt(a[0]);
  case BI_lgamma: return lgamma_r(a[0], &sign);
  case BI_fma: return fma(a[0], a[1], a[2]);
  }
  return 0;
}

/* ---- evaluation ---- */

static Val eval(Interp *in, const Expr *e, bool ix);

/* The type e computes in: its own, except that inside a subscript (`ix`)
 * integers compute in int64. */
static tc_dtype type_in(const Expr *e, bool ix) {
  return ix && dtype_is_int(e->type) ? TC_INT64 : e->type;
}

/* e evaluated and converted (implicitly) to type `to`. */
static Val eval_as(Interp *in, const Expr *e, bool ix, tc_dtype to) {
  return convert(eval(in, e, ix), type_in(e, ix), to, false);
}

static bool eval_truth(Interp *in, const Expr *e, bool ix) {
  return truth(eval(in, e, ix), type_in(e, ix));
}

/* Maps an out-of-range index i into [0, n) by the boundary condition
 * (n > 0). */
static int64_t apply_boundary(BCKind bc, int64_t i, int64_t n) {
  switch (bc) {
  case BC_CLAMP:
    return i < 0 ? 0 : n - 1;
  case BC_WRAP: {
    int64_t m = i % n;
    return m < 0 ? m + n : m;
  }
  case BC_MIRROR: {
    /* symmetric: period 2n, -1 -> 0, n -> n-1 (n <= 2^62 as a real extent) */
    int64_t p = n > INT64_MAX / 2 ? INT64_MAX : 2 * n;
    int64_t m = i % p;
    if (m < 0)
      m += p;
    return m >= n ? p - 1 - m : m;
  }
  default:
    return i;
  }
}

/* A tensor read: subscripts in int64, bounds-checked, boundary conditions
 * applied.  Returns a value of the tensor's type. */
static Val load(Interp *in, const Expr *e) {
  const Tensor *t = e->tensor;
  const View *v = &in->b->views[t->id];
  int64_t idx[TC_MAX_RANK];
  bool outside = false; /* a dimension under constant(v) is out of range */
  if (e->nargs != v->rank) {
    fail(in, TC_ERR_INTERNAL, e->loc, "interp: %s read with %d subscripts", t->name, e->nargs);
    return ival(0);
  }
  for (int d = 0; d < e->nargs; d++) {
    int64_t i = as_i64(eval_as(in, e->args[d], true, TC_INT64).u);
    if (in->failed)
      return ival(0);
    int64_t n = v->shape[d];
    if (i < 0 || i >= n) {
      if (t->bc == BC_NONE || !t->bc_dim[d]) {
        fail(in, TC_ERR_RUNTIME, e->loc, "index %lld is out of range for %s dim %d (size %lld)",
             (long long)i, t->name, d, (long long)n);
        return ival(0);
      }
      if (t->bc == BC_CONSTANT) {
        outside = true;
        i = 0;
      } else if (n == 0) {
        fail(in, TC_ERR_RUNTIME, e->loc,
             "%s has a boundary condition on dim %d, which has extent 0", t->name, d);
        return ival(0);
      } else {
        i = apply_boundary(t->bc, i, n);
      }
    }
    idx[d] = i;
  }
  if (outside)
    return convert(fval(t->bc_value), TC_FLOAT64, t->dtype, true);
  return load_elem(v, offset_of(v, idx));
}

/* A literal of type ty, from its exact value (an integer literal may have
 * been given a float type). */
static Val literal(const Expr *e, tc_dtype ty) {
  if (e->kind == EX_FLOAT)
    return convert(fval(e->fval), TC_FLOAT64, ty, false);
  if (is_float(ty))
    return convert(fval((double)e->ival), TC_FLOAT64, ty, false);
  return convert(ival((uint64_t)e->ival), TC_INT64, ty, false);
}

static Val eval_builtin(Interp *in, const Expr *e, bool ix, tc_dtype ty) {
  if (e->nargs > 3 || e->nargs != builtin_info[e->builtin].arity || !is_float(e->type)) {
    fail(in, TC_ERR_INTERNAL, e->loc, "interp: bad builtin call");
    return fval(0);
  }
  Val a[3] = {{0, 0}, {0, 0}, {0, 0}};
  for (int i = 0; i < e->nargs; i++)
    a[i] = eval_as(in, e->args[i], ix, e->type);
  Val r;
  if (is_f64(e->type)) {
    double x[3] = {a[0].f, a[1].f, a[2].f};
    r = fval(builtin_f64(e->builtin, x));
  } else {
    float x[3] = {(float)a[0].f, (float)a[1].f, (float)a[2].f};
    r = convert(fval(builtin_f32(e->builtin, x)), TC_FLOAT32, e->type, false);
  }
  return convert(r, e->type, ty, false);
}

static Val eval_binary(Interp *in, const Expr *e, bool ix, tc_dtype ty) {
  if (e->op == OP_AND || e->op == OP_OR) {
    bool x = eval_truth(in, e->a, ix);
    if (e->op == OP_AND ? !x : x)
      return ival(x);
    return ival(eval_truth(in, e->b, ix));
  }
  tc_dtype t = is_compare(e->op) ? dtype_promote(e->a->type, e->b->type) : ty;
  Val x = eval_as(in, e->a, ix, t);
  Val y = eval_as(in, e->b, ix, t);
  if (is_compare(e->op))
    return ival(compare(e->op, t, x, y));
  return arith(e->op, t, x, y);
}

/* Evaluates e; the result is a value of type type_in(e, ix).  `ix`: inside
 * a subscript (docs/language.md), where integer nodes compute in int64 and
 * integer casts do not narrow; the operands of other nodes (comparisons,
 * floats) are ordinary values. */
static Val eval(Interp *in, const Expr *e, bool ix) {
  if (in->failed)
    return ival(0);
  ix = ix && dtype_is_int(e->type);
  tc_dtype ty = type_in(e, ix);
  switch (e->kind) {
  case EX_INT:
  case EX_FLOAT:
    return literal(e, ty);
  case EX_INDEX:
    if (e->var->id < 0 || e->var->id >= in->nvars)
      break;
    return convert(ival((uint64_t)in->idx[e->var->id]), TC_INT64, ty, false);
  case EX_SIZE:
    if (e->sym->id < 0 || e->sym->id >= in->b->def->nsyms)
      break;
    return convert(ival((uint64_t)in->b->sizes[e->sym->id]), TC_INT64, ty, false);
  case EX_ACCESS:
    return convert(load(in, e), e->tensor->dtype, ty, false);
  case EX_BUILTIN:
    return eval_builtin(in, e, ix, ty);
  case EX_CAST: {
    const Expr *a = e->args[0];
    if (ix) /* an integer cast in a subscript: exact, to int64 */
      return dtype_is_int(a->type) ? eval(in, a, true) : eval_as(in, a, false, TC_INT64);
    return convert(eval(in, a, false), a->type, e->type, true);
  }
  case EX_UNARY:
    if (e->op == OP_NOT)
      return ival(!eval_truth(in, e->a, ix));
    {
      Val x = eval_as(in, e->a, ix, ty);
      return is_float(ty) ? fval(-x.f) : ival(wrap(ty, 0 - x.u));
    }
  case EX_BINARY:
    return eval_binary(in, e, ix, ty);
  case EX_SELECT: {
    const Expr *pick = eval_truth(in, e->a, ix) ? e->b : e->c;
    return eval_as(in, pick, ix, ty);
  }
  case EX_IDENT:
  case EX_CALL:
    break;
  }
  fail(in, TC_ERR_INTERNAL, e->loc, "interp: malformed expression");
  return ival(0);
}

/* ---- statements ---- */

static BinOp red_binop(RedOp op) {
  switch (op) {
  case RED_MUL: return OP_MUL;
  case RED_MIN: return OP_MIN;
  case RED_MAX: return OP_MAX;
  default: return OP_ADD;
  }
}

static Val identity(RedOp op, tc_dtype t) {
  bool f = is_float(t);
  switch (op) {
  case RED_MUL: return f ? fval(1) : ival(1);
  case RED_MIN: return f ? fval(INFINITY) : ival(int_max(t));
  case RED_MAX: return f ? fval(-INFINITY) : ival(int_min(t));
  default: return f ? fval(0) : ival(0);
  }
}

/* Offset of the left-hand element at the current point; false (after
 * recording the error) when it is outside the tensor. */
static bool lhs_offset(Interp *in, const Stmt *s, int64_t *off) {
  const View *v = &in->b->views[s->lhs->id];
  for (int d = 0; d < s->nidx; d++) {
    int64_t i = in->idx[d];
    if (i < 0 || i >= v->shape[d]) {
      fail(in, TC_ERR_RUNTIME, s->lhs_loc, "index %lld is out of range for %s dim %d (size %lld)",
           (long long)i, s->lhs->name, d, (long long)v->shape[d]);
      return false;
    }
  }
  *off = offset_of(v, in->idx);
  return true;
}

/* Steps the variables [from, to) to the next point, lexicographically;
 * false after the last one. */
static bool advance(int64_t *idx, const int64_t *lo, const int64_t *hi, int from, int to) {
  for (int k = to - 1; k >= from; k--) {
    if (++idx[k] < hi[k])
      return true;
    idx[k] = lo[k];
  }
  return false;
}

/* Starts the variables [from, to) at their first point; false when some
 * range is empty. */
static bool start(int64_t *idx, const int64_t *lo, const int64_t *hi, int from, int to) {
  for (int k = from; k < to; k++) {
    if (lo[k] >= hi[k])
      return false;
    idx[k] = lo[k];
  }
  return true;
}

/* One left-hand point of statement s. */
static void run_point(Interp *in, const Stmt *s, const int64_t *lo, const int64_t *hi) {
  const View *v = &in->b->views[s->lhs->id];
  tc_dtype t = s->lhs->dtype;
  int64_t off;
  if (s->op == RED_NONE) {
    Val x = eval_as(in, s->rhs, false, t);
    if (!in->failed && lhs_offset(in, s, &off))
      store_elem(v, off, x);
    return;
  }
  if (!lhs_offset(in, s, &off))
    return;
  Val acc = s->init ? identity(s->op, t) : load_elem(v, off);
  BinOp op = red_binop(s->op);
  if (start(in->idx, lo, hi, s->nidx, s->nvars)) {
    do {
      Val x = eval_as(in, s->rhs, false, t);
      if (in->failed)
        return;
      acc = arith(op, t, acc, x);
    } while (advance(in->idx, lo, hi, s->nidx, s->nvars));
  }
  store_elem(v, off, acc);
}

static void run_stmt(Interp *in, const Stmt *s, int64_t *lo, int64_t *hi) {
  const Binding *b = in->b;
  in->nvars = s->nvars;
  for (int k = 0; k < s->nvars; k++) {
    IndexVar *iv = s->vars[k];
    if (!ir_eval_int(iv->lo, b->sizes, &lo[k]) || !ir_eval_int(iv->hi, b->sizes, &hi[k])) {
      fail(in, TC_ERR_INTERNAL, iv->loc, "interp: cannot evaluate the range of '%s'", iv->name);
      return;
    }
  }
  if (s->first_def && s->lhs->zero_fill)
    zero_view(&b->views[s->lhs->id]);
  if (!start(in->idx, lo, hi, 0, s->nidx))
    return;
  do
    run_point(in, s, lo, hi);
  while (!in->failed && advance(in->idx, lo, hi, 0, s->nidx));
}

/* The binding must match the def: one view per tensor of its rank and type. */
static bool binding_ok(Interp *in) {
  const Binding *b = in->b;
  if (!b || !b->def || (!b->sizes && b->def->nsyms) || (!b->views && b->def->ntensors)) {
    fail(in, TC_ERR_INTERNAL, (Loc){0, 0}, "interp: incomplete binding");
    return false;
  }
  for (int i = 0; i < b->def->ntensors; i++) {
    const Tensor *t = b->def->tensors[i];
    const View *v = &b->views[i];
    if (v->dtype != t->dtype || v->rank != t->rank || t->rank > TC_MAX_RANK) {
      fail(in, TC_ERR_INTERNAL, t->loc, "interp: view of %s does not match its declaration",
           t->name);
      return false;
    }
  }
  for (int i = 0; i < b->def->nstmts; i++) {
    const Stmt *s = b->def->stmts[i];
    if (!s->lhs || !s->rhs || s->nidx != s->lhs->rank || s->nvars < s->nidx) {
      fail(in, TC_ERR_INTERNAL, s->loc, "interp: statement not checked");
      return false;
    }
  }
  return true;
}

tc_status interp_run(const SrcFile *file, const Binding *b, tc_error *err) {
  Interp in = {file, b, err, false, TC_OK, NULL, 0};
  error_clear(err);
  if (!binding_ok(&in))
    return in.code;
  const Def *d = b->def;
  int maxvars = 1;
  for (int i = 0; i < d->nstmts; i++)
    if (d->stmts[i]->nvars > maxvars)
      maxvars = d->stmts[i]->nvars;
  int64_t *mem = calloc((size_t)maxvars * 3, sizeof(int64_t));
  if (!mem) {
    error_set(err, TC_ERR_NOMEM, NULL, (Loc){0, 0}, "out of memory in the interpreter");
    return TC_ERR_NOMEM;
  }
  in.idx = mem;
  for (int i = 0; i < d->ntensors; i++) /* outputs no statement writes */
    if (d->tensors[i]->zero_fill && !d->tensors[i]->def)
      zero_view(&b->views[i]);
  for (int i = 0; i < d->nstmts && !in.failed; i++)
    run_stmt(&in, d->stmts[i], mem + maxvars, mem + 2 * (size_t)maxvars);
  free(mem);
  return in.failed ? in.code : TC_OK;
}
