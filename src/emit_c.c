/*
 * emit_c.c — IR to C source.
 *
 * Requires a flattened IRFunc (every IR_LOAD / S_STORE has one index, in
 * elements) whose loops are serial, vectorized, unrolled or parallel.
 * Produces one self-contained C11 translation unit:
 *
 *   no system header: the fixed-width types, limits and constants from the
 *   compiler's predefined macros, and prototypes of the C library functions
 *   the kernel calls (parsing <math.h>, <stdint.h>, <string.h> took a
 *   small kernel's compiler about 10 ms); `omp declare simd` prototypes of
 *   the math functions glibc's libmvec vectorizes (GCC, x86-64 glibc only:
 *   <features.h> says which glibc)
 *   the kernel ABI (TC_KERNEL_ABI_DECLS, the same text runtime.c compiles)
 *   static inline helpers, only those the body uses; `omp declare
 *   reduction`s for vectorized min/max
 *   [typedef struct task_K_env ...]  what a parallel loop captures
 *   static void task_K(const void *args, int64_t lo, int64_t hi)  per parallel loop
 *   int tc_kernel(const tc_kargs *a)
 *   const int tc_kernel_abi = TC_KERNEL_ABI;
 *
 * It is compiled with `-fopenmp-simd -std=c11 -O3 -march=native -fwrapv
 * -fno-math-errno -ffp-contract=off` (and jit.c's others); the code relies
 * on -fwrapv for int32/int64 wrap-around (docs/language.md: integers wrap)
 * and on -ffp-contract=off so that a*b+c rounds twice, as in the
 * interpreter (fused only where the IR calls fma).
 *
 * Values: an IR expression of type T is a C expression of dtype_info[T].vtype.
 * float16 and bfloat16 are storage types: lowering computes their arithmetic
 * in float32, a value of IR type float16 is a float holding a representable
 * value; loads widen (tc_h2f/tc_b2f), stores and casts to them round to
 * nearest even (tc_f2h...; from an integer through float32, from a double
 * once, through float rounded to odd), as the interpreter does.  bool
 * values are _Bool, stored as one byte.  Integer types narrower than int are
 * cast back to their type after every operation, so they wrap at their width.
 * Integer / and % round toward minus infinity, x/0 == x%0 == 0 and MIN/-1
 * wraps (helpers); float % is x - y * floor(x / y); min/max on floats
 * propagate NaN; float-to-integer casts saturate and send NaN to 0.
 *
 * Semantics of the IR that the C form must keep: IR_SELECT and && / || are
 * lazy (C's ?:, &&, ||), IR_FAIL reports a failure and yields 0 (the kernel
 * then returns 1 at the next check), S_CHECK stops the kernel.  Loops other
 * than parallel ones are plain `for`s: vectorized ones get `#pragma omp
 * simd` with a reduction clause per accumulator the body updates
 * (`acc = acc OP e`: the scheduler vouches that iterations are otherwise
 * independent), unrolled ones of constant extent `#pragma GCC unroll`,
 * except that two unrolled N x N loops copying a block of a buffer into a
 * local one transposed (tile.c's packing) call tc_tr<N>, an in-register
 * transpose, where the source's stride is 1 at run time; GPU
 * loop kinds are not for this back end (an internal error).  S_ALLOC
 * declares a local buffer: a stack array up to STACK_BYTES, else aligned
 * heap memory, freed at the end of its scope and before every return; an
 * allocation that fails reports its site (FAIL_NOMEM) with the size.
 *
 * Each parallel loop outside a task is outlined into a task function that
 * re-derives what it uses from the kernel arguments, and runs through
 * a->rt->parallel_for; what the loop's body uses from around it (loop
 * variables, locals, local buffers) travels in a task_K_env struct; a task
 * stops early once any failure is recorded.
 * Generated names are the IR's mangled names (b_, z_, x<k>_, f<k>_, acc<k>,
 * ix<k>, pc<k>, and the scheduler's o<k>, g<k>, t<k>, q<k>, h<k>, w<k>,
 * lb<k>) plus tc_*, tcr_*, task_*, env_*, `a` and `env`; user names appear
 * only behind those prefixes.  The text depends
 * only on the IR (no pointers, no counters from outside), so the same program
 * always gives the same bytes: the kernel cache keys on them.
 */
#include "tc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Helper families emitted on demand, per value type. */
typedef enum {
  H_DIV,  /* floored integer division */
  H_MOD,  /* floored integer remainder */
  H_FMOD, /* floored float remainder */
  H_MIN,  /* min; NaN-propagating on floats */
  H_MAX,
  H_FMIN, /* C's fmin/fmax (a NaN operand loses) as a select, which vectorizes */
  H_FMAX,
  H_SAT,  /* saturating float -> integer */
  H_F16,  /* float16 <-> float */
  H_BF16, /* bfloat16 <-> float */
  H_RMIN, /* `#pragma omp declare reduction` for min, max (on H_MIN/H_MAX) */
  H_RMAX,
  NUM_HELPERS
} Helper;

typedef VEC(IRVar *) VarList;
typedef VEC(Buffer *) BufList;

typedef struct Emit {
  Ctx *c;
  IRFunc *f;
  bool need[NUM_HELPERS][TC_NUM_DTYPES];
  bool calls[NUM_BUILTINS][2]; /* math builtins used: [float32, float64] */
  Buf tasks;   /* outlined task functions, in order */
  int ntasks;
  bool in_task;
  int depth;   /* loops around the statement being emitted */
  BufList heap; /* heap local buffers live here (freed before a return) */
  bool stdlib; /* the code calls aligned_alloc/free */
  bool transpose[2][5]; /* tc_tr<N>_<type> used: [float64][log2 N] */
} Emit;

/* What a function body uses, for its preamble. */
typedef struct Uses {
  bool *buf;   /* [nbufs] */
  bool *size;  /* [nsizes] */
  bool *shape; /* [ndims] */
  bool *stride;
} Uses;

static void emit_expr(Emit *E, Buf *b, const IRExpr *e);
static void emit_bare(Emit *E, Buf *b, const IRExpr *e);

/* ---- types and names ---- */

static const char *vtype(tc_dtype t) { return dtype_info[t].vtype; }

/* float16 and bfloat16 values are floats: their helpers are float's. */
static tc_dtype value_dtype(tc_dtype t) {
  return t == TC_FLOAT16 || t == TC_BFLOAT16 ? TC_FLOAT32 : t;
}

static const char *suffix(tc_dtype t) {
  static const char *const s[TC_NUM_DTYPES] = {
      [TC_BOOL] = "b",     [TC_INT8] = "i8",   [TC_INT16] = "i16",   [TC_INT32] = "i32",
      [TC_INT64] = "i64",  [TC_UINT8] = "u8",  [TC_UINT16] = "u16",  [TC_UINT32] = "u32",
      [TC_UINT64] = "u64", [TC_FLOAT16] = "f32", [TC_BFLOAT16] = "f32",
      [TC_FLOAT32] = "f32", [TC_FLOAT64] = "f64",
  };
  return s[t];
}

static bool is_narrow_int(tc_dtype t) { return dtype_info[t].is_int && dtype_info[t].bits < 32; }

static bool is_64(tc_dtype t) { return t == TC_INT64 || t == TC_UINT64; }

static void use(Emit *E, Helper h, tc_dtype t) { E->need[h][value_dtype(t)] = true; }

/* ---- helpers' text ---- */

static void helper_divmod(Buf *b, tc_dtype t) {
  const char *ty = vtype(t), *s = suffix(t);
  if (!dtype_info[t].is_signed) {
    buf_printf(b, "static inline %s tc_div_%s(%s x, %s y) { return y ? (%s)(x / y) : 0; }\n",
               ty, s, ty, ty, ty);
    buf_printf(b, "static inline %s tc_mod_%s(%s x, %s y) { return y ? (%s)(x %% y) : 0; }\n",
               ty, s, ty, ty, ty);
    return;
  }
  if (t == TC_INT64) {
    buf_puts(b, "static inline int64_t tc_div_i64(int64_t x, int64_t y) {\n"
                "  if (y == 0) return 0;\n"
                "  if (y == -1) return (int64_t)(0 - (uint64_t)x);\n"
                "  int64_t q = x / y;\n"
                "  return (x % y != 0 && (x < 0) != (y < 0)) ? q - 1 : q;\n"
                "}\n"
                "static inline int64_t tc_mod_i64(int64_t x, int64_t y) {\n"
                "  if (y == 0 || y == -1) return 0;\n"
                "  int64_t r = x % y;\n"
                "  return (r != 0 && (r < 0) != (y < 0)) ? r + y : r;\n"
                "}\n");
    return;
  }
  buf_printf(b, "static inline %s tc_div_%s(%s x, %s y) { return (%s)tc_div_i64(x, y); }\n", ty,
             s, ty, ty, ty);
  buf_printf(b, "static inline %s tc_mod_%s(%s x, %s y) { return (%s)tc_mod_i64(x, y); }\n", ty,
             s, ty, ty, ty);
}

/* docs/language.md: x - y * floor(x / y), each operation rounded. */
static void helper_fmod(Buf *b, tc_dtype t) {
  const char *ty = vtype(t), *s = suffix(t), *f = t == TC_FLOAT64 ? "" : "f";
  buf_printf(b,
             "static inline %s tc_fmod_%s(%s x, %s y) {\n"
             "  %s q = floor%s(x / y);\n"
             "  %s m = y * q;\n"
             "  return x - m;\n"
             "}\n",
             ty, s, ty, ty, ty, f, ty);
}

static void helper_minmax(Buf *b, tc_dtype t, bool is_min) {
  const char *ty = vtype(t), *s = suffix(t), *name = is_min ? "min" : "max";
  const char *cmp = is_min ? "<" : ">";
  if (dtype_is_float(t))
    buf_printf(b, "static inline %s tc_%s_%s(%s x, %s y) { return (x %s y || x != x) ? x : y; }\n",
               ty, name, s, ty, ty, cmp);
  else
    buf_printf(b, "static inline %s tc_%s_%s(%s x, %s y) { return x %s y ? x : y; }\n", ty, name,
               s, ty, ty, cmp);
}

/* fmin/fmax as C99 defines them (a NaN operand loses to a number), written
 * as glibc's generic version is: a compare and a select, which the
 * vectorizer turns into a masked move where a call to libm's fmaxf would
 * keep the loop scalar. */
static void helper_fminmax(Buf *b, tc_dtype t, bool is_min) {
  const char *ty = vtype(t);
  buf_printf(b, "static inline %s tc_f%s_%s(%s x, %s y) { return (x %s y || y != y) ? x : y; }\n",
             ty, is_min ? "min" : "max", suffix(t), ty, ty, is_min ? "<=" : ">=");
}

/* Saturating conversion from double: truncates toward zero, NaN gives 0. */
static void helper_sat(Buf *b, tc_dtype t) {
  const DTypeInfo *d = &dtype_info[t];
  const char *ty = d->vtype;
  double lo = d->is_signed ? -ldexp(1, d->bits - 1) : -1.0;
  double hi = d->is_signed ? ldexp(1, d->bits - 1) : ldexp(1, d->bits);
  char mx[32], mn[32];
  snprintf(mx, sizeof mx, "%s%d_MAX", d->is_signed ? "INT" : "UINT", d->bits);
  if (d->is_signed)
    snprintf(mn, sizeof mn, "INT%d_MIN", d->bits);
  else
    snprintf(mn, sizeof mn, "0");
  buf_printf(b,
             "static inline %s tc_sat_%s(double x) {\n"
             "  if (x != x) return 0;\n"
             "  if (x <= %.1f) return %s;\n"
             "  if (x >= %.1f) return %s;\n"
             "  return (%s)x;\n"
             "}\n",
             ty, suffix(t), lo, mn, hi, mx, ty);
}

/* IEEE binary16, round to nearest even (F. Giesen's float_to_half_fast3_rtne);
 * double goes through float rounded to odd, which rounds correctly once. */
static const char half_text[] =
    "static inline float tc_h2f(uint16_t h) {\n"
    "  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, em = h & 0x7fffu, x;\n"
    "  if (em >= 0x7c00u) x = sign | 0x7f800000u | ((em & 0x3ffu) << 13);\n"
    "  else if (em >= 0x400u) x = sign | ((em << 13) + (112u << 23));\n"
    "  else { float f = (float)em * 0x1p-24f; memcpy(&x, &f, 4); x |= sign; }\n"
    "  float f; memcpy(&f, &x, 4); return f;\n"
    "}\n"
    "static inline uint16_t tc_f2h(float v) {\n"
    "  uint32_t f; memcpy(&f, &v, 4);\n"
    "  uint32_t sign = f & 0x80000000u; uint16_t o;\n"
    "  f ^= sign;\n"
    "  if (f >= (143u << 23)) o = f > 0x7f800000u ? 0x7e00u : 0x7c00u;\n"
    "  else if (f < (113u << 23)) {\n"
    "    float x, m; const uint32_t mu = 126u << 23;\n"
    "    memcpy(&x, &f, 4); memcpy(&m, &mu, 4); x += m;\n"
    "    memcpy(&f, &x, 4); o = (uint16_t)(f - mu);\n"
    "  } else {\n"
    "    uint32_t odd = (f >> 13) & 1u;\n"
    "    f += 0xc8000fffu + odd;\n"
    "    o = (uint16_t)(f >> 13);\n"
    "  }\n"
    "  return (uint16_t)(o | (sign >> 16));\n"
    "}\n";

/* float rounded to odd: exact when d is a float, else the nearest float
 * toward zero with its last bit set; NaN stays NaN. */
static const char round_odd_text[] =
    "static inline float tc_d2f_odd(double d) {\n"
    "  float f = (float)d;\n"
    "  if (d == d && (double)f != d) {\n"
    "    uint32_t u; memcpy(&u, &f, 4);\n"
    "    if (fabs((double)f) > fabs(d)) u -= 1;\n"
    "    u |= 1; memcpy(&f, &u, 4);\n"
    "  }\n"
    "  return f;\n"
    "}\n";

static const char bf16_text[] =
    "static inline float tc_b2f(uint16_t h) {\n"
    "  uint32_t x = (uint32_t)h << 16; float f; memcpy(&f, &x, 4); return f;\n"
    "}\n"
    "static inline uint16_t tc_f2b(float v) {\n"
    "  uint32_t u; memcpy(&u, &v, 4);\n"
    "  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);\n"
    "  u += 0x7fffu + ((u >> 16) & 1u);\n"
    "  return (uint16_t)(u >> 16);\n"
    "}\n";

/* The identity of min (`is_min`) or max on t, as C text. */
static const char *minmax_identity(tc_dtype t, bool is_min) {
  switch (t) {
  case TC_FLOAT32: return is_min ? "INFINITY" : "-INFINITY";
  case TC_FLOAT64: return is_min ? "(double)INFINITY" : "-(double)INFINITY";
  case TC_INT32: return is_min ? "INT32_MAX" : "INT32_MIN";
  case TC_INT64: return is_min ? "INT64_MAX" : "INT64_MIN";
  case TC_UINT32: return is_min ? "UINT32_MAX" : "0";
  case TC_UINT64: return is_min ? "UINT64_MAX" : "0";
  default: return "0";
  }
}

/* An OpenMP reduction for a vectorized min/max loop: each lane keeps its own
 * partial result, combined with tc_min/tc_max (NaN-propagating on floats). */
static void declare_reduction(Buf *b, tc_dtype t, bool is_min) {
  const char *name = is_min ? "min" : "max", *s = suffix(t);
  buf_printf(b,
             "#pragma omp declare reduction(tcr_%s_%s : %s : omp_out = tc_%s_%s(omp_out, omp_in)) "
             "initializer(omp_priv = %s)\n",
             name, s, vtype(t), name, s, minmax_identity(t, is_min));
}

/* tc_tr<N>_<type>(d, ds, s, ss): d[b*ds + a] = s[a*ss + b] for a, b < N,
 * an N x N block transposed in registers: N vector loads, log2(N) rounds
 * of N two-input shuffles (each round swaps the off-diagonal blocks of
 * size h in every 2h x 2h block), N vector stores.  The vector types are
 * unaligned and may alias.  Not inlined: a call per N*N elements costs
 * little, inlined copies a third of a tiled kernel's compile time. */
static void helper_transpose(Buf *b, tc_dtype t, int n) {
  const char *ty = t == TC_FLOAT64 ? "double" : "float", *it = t == TC_FLOAT64 ? "int64_t" : "int32_t";
  int bytes = n * dtype_info[t].size, sz = dtype_info[t].size;
  const char *sfx = t == TC_FLOAT64 ? "f64" : "f32";
  buf_printf(b, "typedef %s tc_v%d%s __attribute__((vector_size(%d), aligned(%d), may_alias));\n", ty,
             n, sfx, bytes, sz);
  buf_printf(b, "#if defined(__clang__)\n#define TC_SHUF%d%s(x, y, ...) __builtin_shufflevector(x, y, __VA_ARGS__)\n",
             n, sfx);
  buf_printf(b, "#else\ntypedef %s tc_m%d%s __attribute__((vector_size(%d)));\n", it, n, sfx, bytes);
  buf_printf(b, "#define TC_SHUF%d%s(x, y, ...) __builtin_shuffle(x, y, (tc_m%d%s){__VA_ARGS__})\n#endif\n",
             n, sfx, n, sfx);
  buf_printf(b, "static __attribute__((noinline)) void tc_tr%d_%s(%s *d, int64_t ds, const %s *s, "
             "int64_t ss) {\n", n, sfx, ty, ty);
  buf_printf(b, "  tc_v%d%s r[%d], x, y;\n", n, sfx, n);
  for (int i = 0; i < n; i++)
    buf_printf(b, "  r[%d] = *(const tc_v%d%s *)(s + %d * ss);\n", i, n, sfx, i);
  for (int h = n / 2; h >= 1; h /= 2)
    for (int i = 0; i < n; i++) {
      if (i & h)
        continue;
      for (int hi = 0; hi < 2; hi++) {
        if (!hi)
          buf_printf(b, "  x = r[%d]; y = r[%d];\n", i, i + h);
        buf_printf(b, "  r[%d] = TC_SHUF%d%s(x, y", hi ? i + h : i, n, sfx);
        for (int k = 0; k < n; k++) {
          int lo = k & h ? n + k - h : k, up = k & h ? n + k : k + h;
          buf_printf(b, ", %d", hi ? up : lo);
        }
        buf_puts(b, ");\n");
      }
    }
  for (int i = 0; i < n; i++)
    buf_printf(b, "  *(tc_v%d%s *)(d + %d * ds) = r[%d];\n", n, sfx, i, i);
  buf_puts(b, "}\n");
}

static void emit_helpers(Emit *E, Buf *b) {
  for (int t = 0; t < TC_NUM_DTYPES; t++)
    if (E->need[H_FMOD][t])
      E->calls[BI_floor][t == TC_FLOAT64] = true;
  if (E->need[H_F16][TC_FLOAT32] || E->need[H_BF16][TC_FLOAT32])
    E->calls[BI_fabs][1] = true; /* tc_d2f_odd */
  bool any_div64 = false;
  for (int t = 0; t < TC_NUM_DTYPES; t++)
    if (E->need[H_DIV][t] || E->need[H_MOD][t])
      any_div64 |= dtype_info[t].is_signed;
  if (any_div64)
    helper_divmod(b, TC_INT64);
  for (int t = 0; t < TC_NUM_DTYPES; t++)
    if ((E->need[H_DIV][t] || E->need[H_MOD][t]) && t != TC_INT64)
      helper_divmod(b, (tc_dtype)t);
  for (int t = 0; t < TC_NUM_DTYPES; t++) {
    if (E->need[H_FMOD][t])
      helper_fmod(b, (tc_dtype)t);
    if (E->need[H_MIN][t])
      helper_minmax(b, (tc_dtype)t, true);
    if (E->need[H_MAX][t])
      helper_minmax(b, (tc_dtype)t, false);
    if (E->need[H_FMIN][t])
      helper_fminmax(b, (tc_dtype)t, true);
    if (E->need[H_FMAX][t])
      helper_fminmax(b, (tc_dtype)t, false);
    if (E->need[H_SAT][t])
      helper_sat(b, (tc_dtype)t);
  }
  for (int t = 0; t < TC_NUM_DTYPES; t++) {
    if (E->need[H_RMIN][t])
      declare_reduction(b, (tc_dtype)t, true);
    if (E->need[H_RMAX][t])
      declare_reduction(b, (tc_dtype)t, false);
  }
  for (int d = 0; d < 2; d++)
    for (int l = 0; l < 5; l++)
      if (E->transpose[d][l])
        helper_transpose(b, d ? TC_FLOAT64 : TC_FLOAT32, 1 << l);
  bool half = E->need[H_F16][TC_FLOAT32], bf = E->need[H_BF16][TC_FLOAT32];
  if (half || bf)
    buf_puts(b, round_odd_text);
  if (half)
    buf_puts(b, half_text);
  if (bf)
    buf_puts(b, bf16_text);
}

/* Math functions glibc's libmvec has vector versions of (x86-64): declared
 * `omp declare simd` so that vectorized loops call them; `since` is the
 * glibc minor version (2.x) that added the float and double variants. */
static const struct {
  int builtin;
  int since;
} vector_math[] = {
    {BI_exp, 22},   {BI_log, 22},   {BI_sin, 22},    {BI_cos, 22},   {BI_pow, 22},
    {BI_exp2, 35},  {BI_expm1, 35}, {BI_log2, 35},   {BI_log10, 35}, {BI_log1p, 35},
    {BI_cbrt, 35},  {BI_tan, 35},   {BI_asin, 35},   {BI_acos, 35},  {BI_atan, 35},
    {BI_atan2, 35}, {BI_sinh, 35},  {BI_cosh, 35},   {BI_tanh, 35},  {BI_asinh, 35},
    {BI_acosh, 35}, {BI_atanh, 35}, {BI_erf, 35},    {BI_erfc, 35},  {BI_hypot, 35},
};

/* What the kernel would take from <stdint.h>, <string.h>, <stdlib.h> and
 * <math.h>, from the compiler's predefined macros (GCC and Clang). */
static const char prologue_text[] =
    "typedef __INT8_TYPE__ int8_t;\n"
    "typedef __INT16_TYPE__ int16_t;\n"
    "typedef __INT32_TYPE__ int32_t;\n"
    "typedef __INT64_TYPE__ int64_t;\n"
    "typedef __UINT8_TYPE__ uint8_t;\n"
    "typedef __UINT16_TYPE__ uint16_t;\n"
    "typedef __UINT32_TYPE__ uint32_t;\n"
    "typedef __UINT64_TYPE__ uint64_t;\n"
    "typedef __SIZE_TYPE__ size_t;\n"
    "#define INT8_MAX __INT8_MAX__\n"
    "#define INT16_MAX __INT16_MAX__\n"
    "#define INT32_MAX __INT32_MAX__\n"
    "#define INT64_MAX __INT64_MAX__\n"
    "#define INT8_MIN (-INT8_MAX - 1)\n"
    "#define INT16_MIN (-INT16_MAX - 1)\n"
    "#define INT32_MIN (-INT32_MAX - 1)\n"
    "#define INT64_MIN (-INT64_MAX - 1)\n"
    "#define UINT8_MAX __UINT8_MAX__\n"
    "#define UINT16_MAX __UINT16_MAX__\n"
    "#define UINT32_MAX __UINT32_MAX__\n"
    "#define UINT64_MAX __UINT64_MAX__\n"
    "#define INT64_C(c) ((int64_t)(c##LL))\n"
    "#define UINT64_C(c) ((uint64_t)(c##ULL))\n"
    "#define NAN (__builtin_nanf(\"\"))\n"
    "#define INFINITY (__builtin_inff())\n"
    "#define NULL ((void *)0)\n"
    "void *memcpy(void *restrict, const void *restrict, size_t);\n";

/* The prototype of builtin `bi`'s C function on double (`d`) or float. */
static void math_prototype(Buf *b, int bi, int d) {
  const char *t = d ? "double" : "float";
  const char *name = bi == BI_rsqrt ? "sqrt" : builtin_info[bi].name; /* 1 / sqrt(x) */
  buf_printf(b, "%s %s%s(%s", t, name, d ? "" : "f", t);
  for (int k = 1; k < builtin_info[bi].arity; k++)
    buf_printf(b, ", %s", t);
  buf_puts(b, ");\n");
}

/* The prototypes of the C library functions the kernel calls; then, for
 * GCC on x86-64 glibc (which provides them in libmvec), the math functions
 * that loops can call in vector form again, with `declare simd`. */
static void emit_math_decls(Emit *E, Buf *b) {
  if (E->stdlib)
    buf_puts(b, "void *aligned_alloc(size_t, size_t);\nvoid free(void *);\n");
  for (int bi = 0; bi < NUM_BUILTINS; bi++)
    for (int d = 0; d < 2; d++)
      if (E->calls[bi][d] && !(bi == BI_sqrt && E->calls[BI_rsqrt][d]))
        math_prototype(b, bi, d);
  bool any = false;
  for (size_t i = 0; i < sizeof vector_math / sizeof vector_math[0]; i++)
    any |= E->calls[vector_math[i].builtin][0] || E->calls[vector_math[i].builtin][1];
  if (!any)
    return;
  buf_puts(b, "\n#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && "
              "defined(__linux__)\n#include <features.h>\n#endif\n"
              "#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && "
              "defined(__GLIBC__)\n");
  for (int since = 22; since <= 35; since += 13) {
    bool group = false;
    for (size_t i = 0; i < sizeof vector_math / sizeof vector_math[0]; i++) {
      int bi = vector_math[i].builtin;
      if (vector_math[i].since != since || !(E->calls[bi][0] || E->calls[bi][1]))
        continue;
      if (!group)
        buf_printf(b, "#if __GLIBC__ > 2 || __GLIBC_MINOR__ >= %d\n", since);
      group = true;
      for (int d = 0; d < 2; d++) {
        if (!E->calls[bi][d])
          continue;
        buf_puts(b, "#pragma omp declare simd notinbranch\n");
        math_prototype(b, bi, d);
      }
    }
    if (group)
      buf_puts(b, "#endif\n");
  }
  buf_puts(b, "#endif\n");
}

/* ---- constants ---- */

/* `wide`: the constant starts a 64-bit operation, so it must have a 64-bit C type. */
static void emit_int(Buf *b, tc_dtype t, int64_t v, bool wide) {
  switch (t) {
  case TC_BOOL:
    buf_puts(b, v ? "1" : "0");
    return;
  case TC_UINT64:
    buf_printf(b, "UINT64_C(%llu)", (unsigned long long)v);
    return;
  case TC_UINT32:
    buf_printf(b, "%lluu", (unsigned long long)v);
    return;
  case TC_INT64:
    if (v == INT64_MIN)
      buf_puts(b, "(-INT64_C(9223372036854775807) - 1)");
    else if (wide || v < INT32_MIN + 1 || v > INT32_MAX)
      buf_printf(b, v < 0 ? "(INT64_C(%lld))" : "INT64_C(%lld)", (long long)v);
    else
      buf_printf(b, v < 0 ? "(%lld)" : "%lld", (long long)v);
    return;
  default:
    if (v == INT32_MIN)
      buf_puts(b, "(-2147483647 - 1)");
    else
      buf_printf(b, v < 0 ? "(%lld)" : "%lld", (long long)v);
    return;
  }
}

static void emit_float(Buf *b, tc_dtype t, double v) {
  bool dbl = t == TC_FLOAT64;
  if (isnan(v)) {
    buf_puts(b, dbl ? "((double)NAN)" : "NAN");
    return;
  }
  if (isinf(v)) {
    buf_puts(b, v < 0 ? (dbl ? "(-(double)INFINITY)" : "(-INFINITY)")
                      : (dbl ? "((double)INFINITY)" : "INFINITY"));
    return;
  }
  char s[64];
  if (!dbl)
    v = (double)(float)v;
  for (int p = 1; p <= 17; p++) {
    snprintf(s, sizeof s, "%.*g", p, v);
    double r = strtod(s, NULL);
    if (dbl ? r == v : (float)r == (float)v)
      break;
  }
  if (!strpbrk(s, ".e"))
    strcat(s, ".0");
  buf_printf(b, signbit(v) ? "(%s%s)" : "%s%s", s, dbl ? "" : "f");
}

/* ---- expressions ---- */

/* Converts the C expression `x` (without outer parentheses) of IR type
 * `from` to IR type `to`. */
static void emit_convert(Emit *E, Buf *b, tc_dtype to, tc_dtype from, const char *x) {
  const DTypeInfo *dt = &dtype_info[to], *df = &dtype_info[from];
  if (to == from || (to == TC_FLOAT32 && (from == TC_FLOAT16 || from == TC_BFLOAT16))) {
    buf_printf(b, "(%s)", x); /* float16/bfloat16 values are already floats */
  } else if (dt->is_bool) {
    buf_printf(b, "((%s) != 0)", x);
  } else if (to == TC_FLOAT16 || to == TC_BFLOAT16) {
    bool h = to == TC_FLOAT16;
    use(E, h ? H_F16 : H_BF16, TC_FLOAT32);
    const char *back = h ? "tc_h2f" : "tc_b2f", *round = h ? "tc_f2h" : "tc_f2b";
    if (from == TC_FLOAT64) /* rounded once, through float rounded to odd */
      buf_printf(b, "%s(%s(tc_d2f_odd(%s)))", back, round, x);
    else if (df->is_float)
      buf_printf(b, "%s(%s(%s))", back, round, x);
    else /* an integer goes through float32, as the interpreter's */
      buf_printf(b, "%s(%s((float)(%s)))", back, round, x);
  } else if (df->is_float && !dt->is_float) {
    use(E, H_SAT, to);
    buf_printf(b, "tc_sat_%s((double)(%s))", suffix(to), x);
  } else {
    buf_printf(b, "(%s)(%s)", dt->vtype, x);
  }
}

/* e's text without outer parentheses. */
static char *expr_text(Emit *E, const IRExpr *e) {
  Buf t = {0};
  emit_bare(E, &t, e);
  char *s = arena_strdup(E->c->arena, t.s ? t.s : "");
  buf_free(&t);
  return s;
}

/* An operand of a binary operation; constants on the left of a 64-bit
 * operation get a 64-bit C type. */
static void emit_operand(Emit *E, Buf *b, const IRExpr *e, bool left) {
  if (left && e->kind == IR_INT && is_64(e->type))
    emit_int(b, e->type, e->ival, true);
  else
    emit_expr(E, b, e);
}

static void emit_call2(Emit *E, Buf *b, const char *name, tc_dtype t, const IRExpr *e) {
  buf_printf(b, "tc_%s_%s(", name, suffix(t));
  emit_bare(E, b, e->a);
  buf_puts(b, ", ");
  emit_bare(E, b, e->b);
  buf_puts(b, ")");
}

static void emit_bin(Emit *E, Buf *b, const IRExpr *e) {
  tc_dtype t = e->a->type;
  bool fl = dtype_is_float(t);
  switch (e->op) {
  case OP_DIV:
    if (fl)
      break;
    use(E, H_DIV, t);
    emit_call2(E, b, "div", t, e);
    return;
  case OP_MOD:
    use(E, fl ? H_FMOD : H_MOD, t);
    emit_call2(E, b, fl ? "fmod" : "mod", value_dtype(t), e);
    return;
  case OP_MIN:
  case OP_MAX:
    use(E, e->op == OP_MIN ? H_MIN : H_MAX, t);
    emit_call2(E, b, e->op == OP_MIN ? "min" : "max", value_dtype(t), e);
    return;
  default:
    break;
  }
  bool wrap = is_narrow_int(e->type);
  if (wrap)
    buf_printf(b, "((%s)", vtype(e->type));
  buf_puts(b, "(");
  emit_operand(E, b, e->a, true);
  buf_printf(b, " %s ", binop_names[e->op]);
  emit_operand(E, b, e->b, false);
  buf_puts(b, ")");
  if (wrap)
    buf_puts(b, ")");
}

static void emit_call(Emit *E, Buf *b, const IRExpr *e) {
  IASSERT(E->c, (unsigned)e->builtin < NUM_BUILTINS);
  const char *f = e->type == TC_FLOAT64 ? "" : "f";
  if (e->builtin == BI_fmax || e->builtin == BI_fmin) {
    bool is_min = e->builtin == BI_fmin;
    use(E, is_min ? H_FMIN : H_FMAX, e->type);
    buf_printf(b, "tc_f%s_%s(", is_min ? "min" : "max", suffix(e->type));
    emit_bare(E, b, e->args[0]);
    buf_puts(b, ", ");
    emit_bare(E, b, e->args[1]);
    buf_puts(b, ")");
    return;
  }
  E->calls[e->builtin][e->type == TC_FLOAT64] = true;
  if (e->builtin == BI_rsqrt) {
    buf_printf(b, "(%s / sqrt%s(", e->type == TC_FLOAT64 ? "1.0" : "1.0f", f);
    emit_expr(E, b, e->args[0]);
    buf_puts(b, "))");
    return;
  }
  buf_printf(b, "%s%s(", builtin_info[e->builtin].name, f);
  for (int i = 0; i < e->nargs; i++) {
    if (i)
      buf_puts(b, ", ");
    emit_bare(E, b, e->args[i]);
  }
  buf_puts(b, ")");
}

static void emit_load(Emit *E, Buf *b, const IRExpr *e) {
  IASSERT(E->c, e->nidx == 1);
  tc_dtype t = e->buf->dtype;
  const char *wrap = t == TC_FLOAT16    ? "tc_h2f("
                     : t == TC_BFLOAT16 ? "tc_b2f("
                     : t == TC_BOOL     ? "("
                                        : "";
  if (t == TC_FLOAT16 || t == TC_BFLOAT16)
    use(E, t == TC_FLOAT16 ? H_F16 : H_BF16, TC_FLOAT32);
  buf_printf(b, "%s%s[", wrap, e->buf->name);
  emit_bare(E, b, e->idx[0]);
  buf_puts(b, t == TC_BOOL ? "] != 0)" : *wrap ? "])" : "]");
}

static void emit_fail(Emit *E, Buf *b, const IRExpr *e) {
  IASSERT(E->c, e->site >= 0 && e->site < E->f->sites.len);
  buf_printf(b, "(a->rt->fail(a->rt, %d, (int64_t)(", e->site);
  emit_bare(E, b, e->a);
  buf_puts(b, "), (int64_t)(");
  emit_bare(E, b, e->b);
  buf_printf(b, ")), (%s)0)", vtype(e->type));
}

/* e without its outermost parentheses, where the context delimits it
 * (an index, a statement's value, a condition). */
static void emit_bare(Emit *E, Buf *b, const IRExpr *e) {
  size_t start = b->len;
  emit_expr(E, b, e);
  if (e->kind == IR_FAIL) /* a comma expression keeps its parentheses */
    return;
  if (b->oom || b->len - start < 2 || b->s[start] != '(' || b->s[b->len - 1] != ')')
    return;
  int depth = 0;
  for (size_t i = start; i < b->len; i++) {
    depth += b->s[i] == '(' ? 1 : b->s[i] == ')' ? -1 : 0;
    if (depth == 0 && i != b->len - 1)
      return; /* "(a) + (b)": the first parenthesis closes early */
  }
  memmove(b->s + start, b->s + start + 1, b->len - start - 2);
  b->len -= 2;
  b->s[b->len] = '\0';
}

static void emit_expr(Emit *E, Buf *b, const IRExpr *e) {
  switch (e->kind) {
  case IR_INT:
    emit_int(b, e->type, e->ival, false);
    return;
  case IR_FLOAT:
    emit_float(b, e->type, e->fval);
    return;
  case IR_VAR:
    buf_puts(b, e->var->name);
    return;
  case IR_LOAD:
    emit_load(E, b, e);
    return;
  case IR_BIN:
    IASSERT(E->c, e->a->type == e->b->type);
    emit_bin(E, b, e);
    return;
  case IR_UN:
    if (e->op == OP_NOT) {
      buf_puts(b, "(!");
      emit_expr(E, b, e->a);
      buf_puts(b, ")");
    } else if (is_narrow_int(e->type)) {
      buf_printf(b, "((%s)(-", vtype(e->type));
      emit_expr(E, b, e->a);
      buf_puts(b, "))");
    } else {
      buf_puts(b, "(-");
      emit_expr(E, b, e->a);
      buf_puts(b, ")");
    }
    return;
  case IR_SELECT:
    buf_puts(b, "(");
    emit_expr(E, b, e->a);
    buf_puts(b, " ? ");
    emit_expr(E, b, e->b);
    buf_puts(b, " : ");
    emit_expr(E, b, e->c);
    buf_puts(b, ")");
    return;
  case IR_CALL:
    emit_call(E, b, e);
    return;
  case IR_CAST:
    emit_convert(E, b, e->type, e->a->type, expr_text(E, e->a));
    return;
  case IR_FAIL:
    emit_fail(E, b, e);
    return;
  case NUM_IR_EXPR_KINDS:
    break;
  }
  IASSERT(E->c, !"bad IR expression kind");
}

/* ---- uses (for preambles) ---- */

static void uses_var(Uses *u, const IRVar *v) {
  switch (v->kind) {
  case VAR_SIZE:
    u->size[v->sym->id] = true;
    break;
  case VAR_SHAPE:
    u->shape[v->buf->dim_offset + v->dim] = true;
    break;
  case VAR_STRIDE:
    u->stride[v->buf->dim_offset + v->dim] = true;
    break;
  default:
    break;
  }
}

static void uses_expr(Uses *u, const IRExpr *e) {
  if (!e)
    return;
  if (e->kind == IR_VAR)
    uses_var(u, e->var);
  if (e->kind == IR_LOAD && !e->buf->local)
    u->buf[e->buf->slot] = true;
  for (int i = 0; i < e->nidx; i++)
    uses_expr(u, e->idx[i]);
  for (int i = 0; i < e->nargs; i++)
    uses_expr(u, e->args[i]);
  uses_expr(u, e->a);
  uses_expr(u, e->b);
  uses_expr(u, e->c);
}

/* `kernel`: what the kernel function itself uses: the bodies of parallel
 * loops are the tasks'. */
static void uses_stmt(Uses *u, const IRStmt *s, bool kernel) {
  if (!s)
    return;
  if (kernel && s->kind == S_FOR && s->fkind == FOR_PARALLEL) {
    uses_expr(u, s->lo);
    uses_expr(u, s->extent);
    return;
  }
  if (s->kind == S_STORE && !s->buf->local)
    u->buf[s->buf->slot] = true;
  for (int i = 0; i < s->nidx; i++)
    uses_expr(u, s->idx[i]);
  uses_expr(u, s->lo);
  uses_expr(u, s->extent);
  uses_expr(u, s->value);
  uses_expr(u, s->cond);
  uses_stmt(u, s->body, kernel);
  uses_stmt(u, s->then, kernel);
  uses_stmt(u, s->els, kernel);
  for (int i = 0; i < s->n; i++)
    uses_stmt(u, s->stmts[i], kernel);
}

static Uses new_uses(Emit *E) {
  Arena *a = E->c->arena;
  IRFunc *f = E->f;
  Uses u;
  u.buf = arena_alloc(a, (size_t)f->nbufs + 1);
  u.size = arena_alloc(a, (size_t)f->nsizes + 1);
  u.shape = arena_alloc(a, (size_t)f->ndims + 1);
  u.stride = arena_alloc(a, (size_t)f->ndims + 1);
  return u;
}

/* Declares what `u` marks, from the kernel arguments `a`. */
static void emit_preamble(Emit *E, Buf *b, const Uses *u) {
  IRFunc *f = E->f;
  for (int i = 0; i < f->nsizes; i++)
    if (u->size[i])
      buf_printf(b, "  const int64_t %s = a->sizes[%d];\n", f->sizes[i]->name, i);
  for (int i = 0; i < f->nbufs; i++) {
    Buffer *bf = f->bufs[i];
    for (int d = 0; d < bf->rank; d++) {
      int k = bf->dim_offset + d;
      if (u->shape[k])
        buf_printf(b, "  const int64_t %s = a->shape[%d];\n", bf->shape[d]->name, k);
      if (u->stride[k])
        buf_printf(b, "  const int64_t %s = a->stride[%d];\n", bf->stride[d]->name, k);
    }
  }
  for (int i = 0; i < f->nbufs; i++) {
    Buffer *bf = f->bufs[i];
    if (!u->buf[i])
      continue;
    const char *cq = bf->tensor && bf->tensor->role == T_INPUT ? "const " : "";
    const char *ct = dtype_info[bf->dtype].ctype;
    buf_printf(b, "  %s%s *restrict %s = (%s%s *)a->data[%d];\n", cq, ct, bf->name, cq, ct,
               bf->slot);
  }
}

/* ---- statements ---- */

static bool expr_fails(const IRExpr *e) {
  if (!e)
    return false;
  if (e->kind == IR_FAIL)
    return true;
  for (int i = 0; i < e->nidx; i++)
    if (expr_fails(e->idx[i]))
      return true;
  for (int i = 0; i < e->nargs; i++)
    if (expr_fails(e->args[i]))
      return true;
  return expr_fails(e->a) || expr_fails(e->b) || expr_fails(e->c);
}

enum { STACK_BYTES = 32768 }; /* local buffers up to this size live on the stack */

/* Whether the local buffer of S_ALLOC s lives on the stack: a constant
 * size, small enough. */
static bool is_stack(const IRStmt *s) {
  int64_t n;
  return ir_is_const(s->extent, &n) && n >= 0 && n * dtype_info[s->buf->dtype].size <= STACK_BYTES;
}

/* Whether s may record a failure; `checks`: counting S_CHECKs too, which
 * stop the function they are in (a task) but not its caller. */
static bool stmt_fails(const IRStmt *s, bool checks) {
  if (!s)
    return false;
  if (s->kind == S_CHECK)
    return checks;
  if (s->kind == S_ALLOC && !is_stack(s))
    return true; /* out of memory */
  for (int i = 0; i < s->nidx; i++)
    if (expr_fails(s->idx[i]))
      return true;
  for (int i = 0; i < s->n; i++)
    if (stmt_fails(s->stmts[i], checks))
      return true;
  return expr_fails(s->lo) || expr_fails(s->extent) || expr_fails(s->value) ||
         expr_fails(s->cond) || stmt_fails(s->body, checks) || stmt_fails(s->then, checks) ||
         stmt_fails(s->els, checks);
}

static void emit_stmt(Emit *E, Buf *b, const IRStmt *s, int ind);
static void emit_loop(Emit *E, Buf *b, const IRStmt *s, int ind);
static void emit_store(Emit *E, Buf *b, const IRStmt *s, int ind);

/* Leaves the function after a failure: frees the live heap buffers first. */
static void emit_return(Emit *E, Buf *b, int ind) {
  for (int i = E->heap.len - 1; i >= 0; i--) {
    buf_indent(b, ind);
    buf_printf(b, "free(%s);\n", E->heap.data[i]->name);
  }
  buf_indent(b, ind);
  buf_puts(b, E->in_task ? "return;\n" : "return 1;\n");
}

/* `if (a->rt->failed) return` as one line, or a block when buffers are live. */
static void emit_stop_if_failed(Emit *E, Buf *b, int ind) {
  buf_indent(b, ind);
  if (!E->heap.len) {
    buf_printf(b, "if (a->rt->failed) %s\n", E->in_task ? "return;" : "return 1;");
    return;
  }
  buf_puts(b, "if (a->rt->failed) {\n");
  emit_return(E, b, ind + 1);
  buf_indent(b, ind);
  buf_puts(b, "}\n");
}

/* The loop's end, lo + extent (constants folded). */
static void emit_end(Emit *E, Buf *b, const IRStmt *s) {
  emit_bare(E, b, ir_add(E->c, s->lo, s->extent));
}

static void emit_block_body(Emit *E, Buf *b, const IRStmt *s, int ind) {
  if (s && s->kind == S_BLOCK)
    for (int i = 0; i < s->n; i++)
      emit_stmt(E, b, s->stmts[i], ind);
  else if (s)
    emit_stmt(E, b, s, ind);
}

/* ---- local buffers ---- */

/* Opens S_ALLOC s: declares its buffer (a stack array, or aligned heap
 * memory whose failure is reported at the alloc's site). */
static void emit_alloc_open(Emit *E, Buf *b, const IRStmt *s, int ind) {
  const Buffer *lb = s->buf;
  const char *ct = dtype_info[lb->dtype].ctype;
  int size = dtype_info[lb->dtype].size;
  int64_t n;
  if (is_stack(s)) {
    ir_is_const(s->extent, &n);
    buf_indent(b, ind);
    buf_printf(b, "_Alignas(64) %s %s[%lld];\n", ct, lb->name, (long long)(n > 0 ? n : 1));
    return;
  }
  E->stdlib = true;
  buf_indent(b, ind);
  buf_printf(b, "const int64_t %s_bytes = (", lb->name);
  emit_bare(E, b, s->extent);
  buf_printf(b, ") * %d;\n", size);
  buf_indent(b, ind);
  buf_printf(b, "%s *restrict %s = %s_bytes > 0 ? (%s *)aligned_alloc(64, ((size_t)%s_bytes + 63) & "
                "~(size_t)63) : NULL;\n",
             ct, lb->name, lb->name, ct, lb->name);
  buf_indent(b, ind);
  buf_printf(b, "if (!%s && %s_bytes > 0) {\n", lb->name, lb->name);
  buf_indent(b, ind + 1);
  buf_printf(b, "a->rt->fail(a->rt, %d, %s_bytes, 0);\n", s->site, lb->name);
  emit_return(E, b, ind + 1);
  buf_indent(b, ind);
  buf_puts(b, "}\n");
  vec_push(E->c->arena, &E->heap, s->buf);
}

static void emit_alloc_close(Emit *E, Buf *b, const IRStmt *s, int ind) {
  if (is_stack(s))
    return;
  E->heap.len--;
  buf_indent(b, ind);
  buf_printf(b, "free(%s);\n", s->buf->name);
}

static void emit_alloc(Emit *E, Buf *b, const IRStmt *s, int ind) {
  buf_indent(b, ind);
  buf_puts(b, "{\n");
  emit_alloc_open(E, b, s, ind + 1);
  emit_block_body(E, b, s->body, ind + 1);
  emit_alloc_close(E, b, s, ind + 1);
  buf_indent(b, ind);
  buf_puts(b, "}\n");
}

/* ---- parallel loops ---- */

/* What a parallel loop's body uses from around it: loop variables and
 * locals it does not declare, local buffers it does not allocate. */
typedef struct Captures {
  VarList used, bound;
  BufList bufs, allocd;
} Captures;

static void add_var(Emit *E, VarList *l, IRVar *v) {
  for (int i = 0; i < l->len; i++)
    if (l->data[i] == v)
      return;
  vec_push(E->c->arena, l, v);
}

static void add_buf(Emit *E, BufList *l, Buffer *bf) {
  for (int i = 0; i < l->len; i++)
    if (l->data[i] == bf)
      return;
  vec_push(E->c->arena, l, bf);
}

static void capture_expr(Emit *E, Captures *k, const IRExpr *e) {
  if (!e)
    return;
  if (e->kind == IR_VAR && (e->var->kind == VAR_LOOP || e->var->kind == VAR_LOCAL))
    add_var(E, &k->used, e->var);
  if (e->kind == IR_LOAD && e->buf->local)
    add_buf(E, &k->bufs, e->buf);
  for (int i = 0; i < e->nidx; i++)
    capture_expr(E, k, e->idx[i]);
  for (int i = 0; i < e->nargs; i++)
    capture_expr(E, k, e->args[i]);
  capture_expr(E, k, e->a);
  capture_expr(E, k, e->b);
  capture_expr(E, k, e->c);
}

static void capture_stmt(Emit *E, Captures *k, const IRStmt *s) {
  if (!s)
    return;
  if (s->kind == S_FOR || s->kind == S_DECL)
    add_var(E, &k->bound, s->var);
  if (s->kind == S_ASSIGN)
    add_var(E, &k->used, s->var);
  if (s->kind == S_ALLOC)
    add_buf(E, &k->allocd, s->buf);
  if (s->kind == S_STORE && s->buf->local)
    add_buf(E, &k->bufs, s->buf);
  for (int i = 0; i < s->nidx; i++)
    capture_expr(E, k, s->idx[i]);
  capture_expr(E, k, s->lo);
  capture_expr(E, k, s->extent);
  capture_expr(E, k, s->value);
  capture_expr(E, k, s->cond);
  for (int i = 0; i < s->n; i++)
    capture_stmt(E, k, s->stmts[i]);
  capture_stmt(E, k, s->body);
  capture_stmt(E, k, s->then);
  capture_stmt(E, k, s->els);
}

/* The captures of parallel loop s, in `vars` and `bufs`. */
static void captures_of(Emit *E, const IRStmt *s, VarList *vars, BufList *bufs) {
  Captures k = {0};
  add_var(E, &k.bound, s->var);
  capture_stmt(E, &k, s->body);
  for (int i = 0; i < k.used.len; i++) {
    bool bound = false;
    for (int j = 0; j < k.bound.len; j++)
      bound |= k.bound.data[j] == k.used.data[i];
    if (!bound)
      vec_push(E->c->arena, vars, k.used.data[i]);
  }
  for (int i = 0; i < k.bufs.len; i++) {
    bool allocd = false;
    for (int j = 0; j < k.allocd.len; j++)
      allocd |= k.allocd.data[j] == k.bufs.data[i];
    if (!allocd)
      vec_push(E->c->arena, bufs, k.bufs.data[i]);
  }
}

static bool uses_loop_var(const IRExpr *e, const IRVar *v) {
  if (!e)
    return false;
  if (e->kind == IR_VAR)
    return e->var == v;
  for (int i = 0; i < e->nidx; i++)
    if (uses_loop_var(e->idx[i], v))
      return true;
  for (int i = 0; i < e->nargs; i++)
    if (uses_loop_var(e->args[i], v))
      return true;
  return uses_loop_var(e->a, v) || uses_loop_var(e->b, v) || uses_loop_var(e->c, v);
}

/* A parallel loop outside any task: the body becomes task_K, called through
 * the runtime's parallel_for.  What the body uses from around the loop
 * (enclosing loop variables, locals, local buffers) travels in a
 * task_K_env struct; without any, the task gets the kernel arguments
 * directly.  A body that is an S_ALLOC (or a chain of them) whose size does
 * not depend on the loop variable allocates once per task, not once per
 * iteration (its contents are undefined at each entry anyway). */
static void emit_parallel(Emit *E, Buf *b, const IRStmt *s, int ind) {
  int k = E->ntasks++;
  Buf t = {0};
  VarList vars = {0};
  BufList bufs = {0};
  captures_of(E, s, &vars, &bufs);
  bool env = vars.len || bufs.len;
  Uses u = new_uses(E);
  uses_stmt(&u, s->body, false);
  if (env) {
    buf_printf(&t, "\ntypedef struct task_%d_env {\n  const tc_kargs *a;\n", k);
    for (int i = 0; i < vars.len; i++)
      buf_printf(&t, "  %s %s;\n", vars.data[i]->kind == VAR_LOOP ? "int64_t" : vtype(vars.data[i]->type),
                 vars.data[i]->name);
    for (int i = 0; i < bufs.len; i++)
      buf_printf(&t, "  %s *%s;\n", dtype_info[bufs.data[i]->dtype].ctype, bufs.data[i]->name);
    buf_printf(&t, "} task_%d_env;\n", k);
  }
  buf_printf(&t, "\nstatic void task_%d(const void *args, int64_t lo, int64_t hi) {\n", k);
  if (env) {
    buf_printf(&t, "  const task_%d_env *env = (const task_%d_env *)args;\n", k, k);
    buf_puts(&t, "  const tc_kargs *a = env->a;\n");
    for (int i = 0; i < vars.len; i++)
      buf_printf(&t, "  const %s %s = env->%s;\n",
                 vars.data[i]->kind == VAR_LOOP ? "int64_t" : vtype(vars.data[i]->type),
                 vars.data[i]->name, vars.data[i]->name);
    for (int i = 0; i < bufs.len; i++)
      buf_printf(&t, "  %s *restrict %s = env->%s;\n", dtype_info[bufs.data[i]->dtype].ctype,
                 bufs.data[i]->name, bufs.data[i]->name);
  } else {
    buf_puts(&t, "  const tc_kargs *a = (const tc_kargs *)args;\n");
  }
  emit_preamble(E, &t, &u);
  BufList saved = E->heap;
  memset(&E->heap, 0, sizeof E->heap);
  int saved_depth = E->depth;
  E->in_task = true;
  E->depth = 1;
  const IRStmt *body = s->body, *hoist[16];
  int nhoist = 0;
  while (body->kind == S_ALLOC && !uses_loop_var(body->extent, s->var) && nhoist < 16) {
    hoist[nhoist++] = body;
    emit_alloc_open(E, &t, body, 1);
    body = body->body;
  }
  buf_printf(&t, "  for (int64_t %s = lo; %s < hi; %s++) {\n", s->var->name, s->var->name,
             s->var->name);
  if (stmt_fails(body, false) || nhoist)
    emit_stop_if_failed(E, &t, 2);
  emit_block_body(E, &t, body, 2);
  buf_puts(&t, "  }\n");
  while (nhoist > 0)
    emit_alloc_close(E, &t, hoist[--nhoist], 1);
  buf_puts(&t, "}\n");
  E->in_task = false;
  E->depth = saved_depth;
  E->heap = saved;
  buf_putn(&E->tasks, t.s ? t.s : "", t.len);
  if (t.oom)
    E->tasks.oom = true;
  buf_free(&t);

  buf_indent(b, ind);
  if (env) {
    buf_printf(b, "{\n");
    buf_indent(b, ind + 1);
    buf_printf(b, "const task_%d_env env_%d = {a", k, k);
    for (int i = 0; i < vars.len; i++)
      buf_printf(b, ", %s", vars.data[i]->name);
    for (int i = 0; i < bufs.len; i++)
      buf_printf(b, ", %s", bufs.data[i]->name);
    buf_puts(b, "};\n");
    buf_indent(b, ind + 1);
    buf_printf(b, "a->rt->parallel_for(a->rt, task_%d, &env_%d, ", k, k);
  } else {
    buf_printf(b, "a->rt->parallel_for(a->rt, task_%d, a, ", k);
  }
  emit_bare(E, b, s->lo);
  buf_puts(b, ", ");
  emit_end(E, b, s);
  buf_puts(b, ");\n");
  if (env) {
    buf_indent(b, ind);
    buf_puts(b, "}\n");
  }
  if (stmt_fails(s->body, true))
    emit_stop_if_failed(E, b, ind);
}

/* ---- vectorized loops ---- */

/* Locals declared in s, and locals assigned in s. */
typedef struct LocalUse {
  VEC(IRVar *) declared;
  VEC(const IRStmt *) assigns;
} LocalUse;

static void local_uses(Emit *E, const IRStmt *s, LocalUse *u) {
  if (!s)
    return;
  if (s->kind == S_DECL)
    vec_push(E->c->arena, &u->declared, s->var);
  if (s->kind == S_ASSIGN)
    vec_push(E->c->arena, &u->assigns, s);
  for (int i = 0; i < s->n; i++)
    local_uses(E, s->stmts[i], u);
  local_uses(E, s->body, u);
  local_uses(E, s->then, u);
  local_uses(E, s->els, u);
}

static int expr_reads(const IRExpr *e, const IRVar *v) {
  if (!e)
    return 0;
  int n = e->kind == IR_VAR && e->var == v;
  for (int i = 0; i < e->nidx; i++)
    n += expr_reads(e->idx[i], v);
  for (int i = 0; i < e->nargs; i++)
    n += expr_reads(e->args[i], v);
  return n + expr_reads(e->a, v) + expr_reads(e->b, v) + expr_reads(e->c, v);
}

static int stmt_reads(const IRStmt *s, const IRVar *v) {
  if (!s)
    return 0;
  int n = expr_reads(s->lo, v) + expr_reads(s->extent, v) + expr_reads(s->value, v) +
          expr_reads(s->cond, v);
  for (int i = 0; i < s->nidx; i++)
    n += expr_reads(s->idx[i], v);
  for (int i = 0; i < s->n; i++)
    n += stmt_reads(s->stmts[i], v);
  return n + stmt_reads(s->body, v) + stmt_reads(s->then, v) + stmt_reads(s->els, v);
}

static bool declared_in(const LocalUse *u, const IRVar *v) {
  for (int i = 0; i < u->declared.len; i++)
    if (u->declared.data[i] == v)
      return true;
  return false;
}

/* The OpenMP reduction clause for `v = v OP e`, or false when the update
 * is no reduction OpenMP can split into lanes. */
static bool reduction_clause(Emit *E, const IRStmt *a, Buf *out) {
  const IRExpr *e = a->value;
  tc_dtype t = a->var->type;
  if (t != TC_FLOAT32 && t != TC_FLOAT64 && t != TC_INT32 && t != TC_INT64 && t != TC_UINT32 &&
      t != TC_UINT64)
    return false;
  if (e->kind != IR_BIN || e->type != t || e->a->kind != IR_VAR || e->a->var != a->var ||
      expr_reads(e->b, a->var))
    return false;
  switch (e->op) {
  case OP_ADD:
    buf_printf(out, " reduction(+:%s)", a->var->name);
    return true;
  case OP_MUL:
    buf_printf(out, " reduction(*:%s)", a->var->name);
    return true;
  case OP_MIN:
  case OP_MAX:
    use(E, e->op == OP_MIN ? H_RMIN : H_RMAX, t);
    buf_printf(out, " reduction(tcr_%s_%s:%s)", e->op == OP_MIN ? "min" : "max", suffix(t),
               a->var->name);
    return true;
  default:
    return false;
  }
}

/* `#pragma omp simd` for a vectorized loop, with a reduction clause per
 * local the body updates as `v = v OP e` (each lane reduces its share, the
 * shares are combined at the end: a reordered sum for floats, see
 * docs/language.md).  A body that assigns an outer local any other way gets
 * no pragma: the scheduler promised independent iterations, and anything
 * else would be a bug, so the loop stays as written. */
static void emit_simd_pragma(Emit *E, Buf *b, const IRStmt *s, int ind) {
  LocalUse u = {0};
  local_uses(E, s->body, &u);
  Buf clauses = {0};
  bool ok = true;
  for (int i = 0; i < u.assigns.len && ok; i++) {
    const IRStmt *a = u.assigns.data[i];
    if (declared_in(&u, a->var))
      continue;
    bool dup = false; /* one clause per local */
    for (int j = 0; j < i; j++)
      dup |= u.assigns.data[j]->var == a->var;
    ok = !dup && stmt_reads(s->body, a->var) == 1 && reduction_clause(E, a, &clauses);
  }
  if (ok) {
    buf_indent(b, ind);
    buf_printf(b, "#pragma omp simd%s\n", clauses.s ? clauses.s : "");
  }
  buf_free(&clauses);
}

/* ---- transposed block copies ----
 * tile.c packs a transposed operand as N x N blocks:
 *   for a < N unrolled: for b < N unrolled: L[s] = X[l]
 * with L a local buffer, X another buffer of the same float type, s and l
 * affine in a and b, s's coefficient of a 1 and of b a constant of at
 * least N (rows that do not overlap), l's of b a stride that is 1 in the
 * usual layout.  Such a nest becomes a call of tc_tr<N>, when l's
 * coefficient of b is 1 at run time (else the loops). */
typedef struct Transposed {
  int n;                    /* N */
  const IRStmt *store;
  IRExpr *s0, *sb;          /* s at a = b = 0; s's coefficient of b */
  IRExpr *l0, *la, *lb;     /* l at a = b = 0; its coefficients of a, b */
} Transposed;

typedef struct VarAt {
  const IRVar *v;
  int64_t k;
} VarAt;

static IRExpr *var_at(Ctx *c, void *st, IRExpr *e) {
  VarAt *at = st;
  if (e->kind == IR_VAR && e->var == at->v)
    return ir_i64(c, at->k);
  return ir_mutate_expr_children(c, e, var_at, st);
}

static IRExpr *at_value(Emit *E, IRExpr *e, const IRVar *v, int64_t k) {
  VarAt at = {v, k};
  return simplify_expr(E->c, var_at(E->c, &at, e));
}

/* The coefficient of v in the int64 expression e, or NULL when e is not
 * affine in v. */
static IRExpr *coef_of(Ctx *c, IRExpr *e, const IRVar *v) {
  if (!uses_loop_var(e, v))
    return ir_i64(c, 0);
  if (e->kind == IR_VAR)
    return ir_i64(c, 1);
  if (e->type != TC_INT64)
    return NULL;
  IRExpr *a = e->a && (e->kind == IR_UN || e->kind == IR_BIN) ? coef_of(c, e->a, v) : NULL;
  IRExpr *b = e->kind == IR_BIN ? coef_of(c, e->b, v) : NULL;
  if (e->kind == IR_UN && e->op == OP_NEG && a)
    return ir_sub(c, ir_i64(c, 0), a);
  if (e->kind != IR_BIN || !a || !b)
    return NULL;
  if (e->op == OP_ADD)
    return ir_add(c, a, b);
  if (e->op == OP_SUB)
    return ir_sub(c, a, b);
  if (e->op == OP_MUL && !uses_loop_var(e->a, v))
    return ir_mul(c, e->a, b);
  if (e->op == OP_MUL && !uses_loop_var(e->b, v))
    return ir_mul(c, a, e->b);
  return NULL;
}

/* e's value at a = b = 0 and its coefficients of a and b, none of them
 * using a or b. */
static bool affine_ab(Emit *E, IRExpr *e, const IRVar *a, const IRVar *b, IRExpr **e0,
                      IRExpr **ca, IRExpr **cb) {
  *ca = coef_of(E->c, e, a);
  *cb = coef_of(E->c, e, b);
  if (!*ca || !*cb)
    return false;
  *ca = simplify_expr(E->c, *ca);
  *cb = simplify_expr(E->c, *cb);
  *e0 = at_value(E, at_value(E, e, a, 0), b, 0);
  return !uses_loop_var(*ca, a) && !uses_loop_var(*ca, b) && !uses_loop_var(*cb, a) &&
         !uses_loop_var(*cb, b);
}

static const IRStmt *only_stmt(const IRStmt *s) {
  while (s && s->kind == S_BLOCK && s->n == 1)
    s = s->stmts[0];
  return s;
}

static bool unrolled_n(const IRStmt *s, int64_t n) {
  int64_t lo, ext;
  return s && s->kind == S_FOR && s->fkind == FOR_UNROLLED && ir_is_const(s->lo, &lo) && lo == 0 &&
         ir_is_const(s->extent, &ext) && ext == n;
}

static bool transposed_copy(Emit *E, const IRStmt *s, Transposed *t) {
  int64_t n, one;
  if (s->kind != S_FOR || !ir_is_const(s->extent, &n))
    return false;
  const IRStmt *in = only_stmt(s->body);
  if (!unrolled_n(s, n) || !unrolled_n(in, n))
    return false;
  const IRStmt *st = only_stmt(in->body);
  if (!st || st->kind != S_STORE || !st->buf->local || st->nidx != 1)
    return false;
  const IRExpr *x = st->value;
  tc_dtype ty = st->buf->dtype;
  if ((ty != TC_FLOAT32 && ty != TC_FLOAT64) || x->kind != IR_LOAD || x->buf == st->buf ||
      x->buf->dtype != ty || x->type != ty || x->nidx != 1)
    return false;
  int bytes = (int)n * dtype_info[ty].size;
  if ((bytes != 32 && bytes != 64) || (n & (n - 1)))
    return false;
  const IRVar *a = s->var, *b = in->var;
  IRExpr *sa;
  if (!affine_ab(E, st->idx[0], a, b, &t->s0, &sa, &t->sb) ||
      !affine_ab(E, x->idx[0], a, b, &t->l0, &t->la, &t->lb))
    return false;
  int64_t rows; /* the rows of the copy do not overlap (their order is the loops') */
  if (!ir_is_const(sa, &one) || one != 1 || (ir_is_const(t->lb, &one) && one != 1) ||
      !ir_is_const(t->sb, &rows) || rows < n)
    return false;
  t->n = (int)n;
  t->store = st;
  return true;
}

/* The call of tc_tr<N> for a transposed copy, under a test of the stride
 * (unless it is the constant 1); the loops in the other branch. */
static void emit_transposed(Emit *E, Buf *b, const IRStmt *s, const Transposed *t, int ind) {
  tc_dtype ty = t->store->buf->dtype;
  int l = 0;
  while ((1 << l) < t->n)
    l++;
  E->transpose[ty == TC_FLOAT64][l] = true;
  int64_t one;
  bool test = !ir_is_const(t->lb, &one);
  buf_indent(b, ind);
  if (test) {
    buf_puts(b, "if (");
    emit_bare(E, b, t->lb);
    buf_puts(b, " == 1) {\n");
    buf_indent(b, ind + 1);
  }
  buf_printf(b, "tc_tr%d_%s(&%s[", t->n, ty == TC_FLOAT64 ? "f64" : "f32", t->store->buf->name);
  emit_bare(E, b, t->s0);
  buf_puts(b, "], ");
  emit_bare(E, b, t->sb);
  buf_printf(b, ", &%s[", t->store->value->buf->name);
  emit_bare(E, b, t->l0);
  buf_puts(b, "], ");
  emit_bare(E, b, t->la);
  buf_puts(b, ");\n");
  if (!test)
    return;
  buf_indent(b, ind);
  buf_puts(b, "} else {\n"); /* rolled: a rare case, kept small */
  const IRStmt *in = only_stmt(s->body);
  buf_indent(b, ind + 1);
  buf_printf(b, "for (int64_t %s = 0; %s < %d; %s++)\n", s->var->name, s->var->name, t->n,
             s->var->name);
  buf_indent(b, ind + 2);
  buf_printf(b, "for (int64_t %s = 0; %s < %d; %s++) {\n", in->var->name, in->var->name, t->n,
             in->var->name);
  emit_store(E, b, t->store, ind + 3);
  buf_indent(b, ind + 2);
  buf_puts(b, "}\n");
  buf_indent(b, ind);
  buf_puts(b, "}\n");
}

static void emit_for(Emit *E, Buf *b, const IRStmt *s, int ind) {
  IASSERT(E->c, s->fkind != FOR_GPU_BLOCK && s->fkind != FOR_GPU_THREAD);
  Transposed t;
  if (s->fkind == FOR_UNROLLED && transposed_copy(E, s, &t)) {
    emit_transposed(E, b, s, &t, ind);
    return;
  }
  emit_loop(E, b, s, ind);
}

static void emit_loop(Emit *E, Buf *b, const IRStmt *s, int ind) {
  if (s->fkind == FOR_PARALLEL && !E->in_task) {
    emit_parallel(E, b, s, ind);
    return;
  }
  if (s->fkind == FOR_VECTORIZED)
    emit_simd_pragma(E, b, s, ind);
  int64_t n;
  if (s->fkind == FOR_UNROLLED && ir_is_const(s->extent, &n) && n > 1 && n <= 64) {
    buf_indent(b, ind);
    buf_printf(b, "#pragma GCC unroll %lld\n", (long long)n);
  }
  const char *v = s->var->name;
  buf_indent(b, ind);
  buf_printf(b, "for (int64_t %s = ", v);
  emit_bare(E, b, s->lo);
  buf_printf(b, "; %s < ", v);
  emit_end(E, b, s);
  buf_printf(b, "; %s++) {\n", v);
  E->depth++;
  emit_block_body(E, b, s->body, ind + 1);
  E->depth--;
  buf_indent(b, ind);
  buf_puts(b, "}\n");
}

static void emit_store(Emit *E, Buf *b, const IRStmt *s, int ind) {
  IASSERT(E->c, s->nidx == 1);
  tc_dtype t = s->buf->dtype;
  IASSERT(E->c, s->value->type == t);
  buf_indent(b, ind);
  buf_printf(b, "%s[", s->buf->name);
  emit_bare(E, b, s->idx[0]);
  buf_puts(b, "] = ");
  if (t == TC_FLOAT16 || t == TC_BFLOAT16) {
    /* the store rounds: a cast to t from a float32 value needs no rounding
     * of its own */
    const IRExpr *v = s->value;
    use(E, t == TC_FLOAT16 ? H_F16 : H_BF16, TC_FLOAT32);
    buf_puts(b, t == TC_FLOAT16 ? "tc_f2h(" : "tc_f2b(");
    if (v->kind == IR_CAST && v->a->type != TC_FLOAT64)
      emit_convert(E, b, TC_FLOAT32, v->a->type, expr_text(E, v->a));
    else
      emit_bare(E, b, v);
    buf_puts(b, ")");
  } else if (t == TC_BOOL) {
    buf_puts(b, "(uint8_t)(");
    emit_expr(E, b, s->value);
    buf_puts(b, " != 0)");
  } else {
    emit_bare(E, b, s->value);
  }
  buf_puts(b, ";\n");
}

static void emit_check(Emit *E, Buf *b, const IRStmt *s, int ind) {
  IASSERT(E->c, s->value && s->value->kind == IR_FAIL);
  const IRExpr *fl = s->value;
  buf_indent(b, ind);
  buf_puts(b, "if (!(");
  emit_bare(E, b, s->cond);
  buf_puts(b, ")) {\n");
  buf_indent(b, ind + 1);
  buf_printf(b, "a->rt->fail(a->rt, %d, ", fl->site);
  emit_bare(E, b, fl->a);
  buf_puts(b, ", ");
  emit_bare(E, b, fl->b);
  buf_puts(b, ");\n");
  emit_return(E, b, ind + 1);
  buf_indent(b, ind);
  buf_puts(b, "}\n");
}

static void emit_stmt(Emit *E, Buf *b, const IRStmt *s, int ind) {
  switch (s->kind) {
  case S_BLOCK:
    emit_block_body(E, b, s, ind);
    return;
  case S_FOR:
    emit_for(E, b, s, ind);
    return;
  case S_STORE:
    emit_store(E, b, s, ind);
    return;
  case S_DECL:
  case S_ASSIGN:
    IASSERT(E->c, s->var->kind == VAR_LOCAL && s->value->type == s->var->type);
    buf_indent(b, ind);
    if (s->kind == S_DECL)
      buf_printf(b, "%s ", vtype(s->var->type));
    buf_printf(b, "%s = ", s->var->name);
    emit_bare(E, b, s->value);
    buf_puts(b, ";\n");
    return;
  case S_IF:
    buf_indent(b, ind);
    buf_puts(b, "if (");
    emit_bare(E, b, s->cond);
    buf_puts(b, ") {\n");
    emit_block_body(E, b, s->then, ind + 1);
    if (s->els) {
      buf_indent(b, ind);
      buf_puts(b, "} else {\n");
      emit_block_body(E, b, s->els, ind + 1);
    }
    buf_indent(b, ind);
    buf_puts(b, "}\n");
    return;
  case S_CHECK:
    emit_check(E, b, s, ind);
    return;
  case S_ALLOC:
    emit_alloc(E, b, s, ind);
    return;
  case NUM_IR_STMT_KINDS:
    break;
  }
  IASSERT(E->c, !"bad IR statement kind");
}

/* The kernel's body: each top-level statement that may have recorded a
 * failure is followed by a check, so a failed kernel stops early and the
 * end is reached only without failure. */
static void emit_kernel_body(Emit *E, Buf *b, const IRStmt *body) {
  const IRStmt *one[1] = {body};
  const IRStmt *const *list = one;
  int n = 1;
  if (body && body->kind == S_BLOCK) {
    list = (const IRStmt *const *)body->stmts;
    n = body->n;
  }
  for (int i = 0; i < n; i++) {
    if (!list[i])
      continue;
    if (i)
      buf_puts(b, "\n");
    emit_stmt(E, b, list[i], 1);
    if (stmt_fails(list[i], false) && !(list[i]->kind == S_FOR && list[i]->fkind == FOR_PARALLEL))
      buf_puts(b, "  if (a->rt->failed) return 1;\n");
  }
}

void emitc_func(Ctx *c, IRFunc *f, Buf *out) {
  Emit E = {.c = c, .f = f};
  Buf body = {0};
  Uses u = new_uses(&E);
  uses_stmt(&u, f->body, true);
  emit_preamble(&E, &body, &u);
  emit_kernel_body(&E, &body, f->body);

  Buf helpers = {0}, decls = {0};
  emit_helpers(&E, &helpers);
  emit_math_decls(&E, &decls);

  buf_printf(out, "/* generated by tensorc %s */\n", TC_VERSION);
  buf_puts(out, prologue_text);
  if (decls.len)
    buf_putn(out, decls.s, decls.len);
  buf_puts(out, "\n");
  buf_puts(out, TC_KERNEL_ABI_DECLS);
  if (helpers.len) {
    buf_puts(out, "\n");
    buf_putn(out, helpers.s, helpers.len);
  }
  if (E.tasks.len)
    buf_putn(out, E.tasks.s, E.tasks.len);
  buf_puts(out, "\nint tc_kernel(const tc_kargs *a) {\n");
  if (body.len)
    buf_putn(out, body.s, body.len);
  buf_puts(out, "  return 0;\n}\n\n");
  buf_printf(out, "const int tc_kernel_abi = %d;\n", TC_KERNEL_ABI);
  if (body.oom || helpers.oom || decls.oom || E.tasks.oom)
    out->oom = true;
  buf_free(&body);
  buf_free(&helpers);
  buf_free(&decls);
  buf_free(&E.tasks);
}
