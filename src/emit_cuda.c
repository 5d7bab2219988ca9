/*
 * emit_cuda.c — the GPU dialect of the IR to CUDA C for NVRTC, and the host
 * plan that launches it.
 *
 * Requires the output of pipeline_run_gpu: flattened accesses, loops marked
 * by schedule_gpu (its header describes the dialect).  Produces one
 * translation unit that needs no header (NVRTC compiles it with
 * -arch=sm_XY --fmad=false) with:
 *
 *   fixed-width typedefs, the failure record, helpers the kernels use
 *   extern "C" __global__ void tc_k<N>(const tc_args a)     per kernel
 *
 * and a GpuPlan, the host's half: the top-level statements in order, each a
 * host check (S_CHECK over sizes, shapes and strides, evaluated by cuda.c
 * before anything is launched after it), a host branch (S_IF over the same:
 * a choice between schedules made with the run's sizes), or a kernel:
 *
 *   a top-level FOR_GPU_BLOCK or FOR_GPU_THREAD loop is one kernel: the
 *   chain of directly nested block loops, then the rest;
 *   any other run of top-level statements (a rank-0 reduction: a local, a
 *   loop, a store) is one single-block kernel.
 *
 * How a kernel maps onto the hardware:
 *
 *   POINTWISE  block loops, then exactly one thread loop with no collective
 *              (below): the thread loop's iterations on x (blockIdx.x *
 *              blockDim.x + threadIdx.x, grid-stride), the block loops'
 *              collapsed iterations on y (with threadIdx.y, grid-stride);
 *              the host picks blockDim from the run's extents (256 threads:
 *              as many on x as the thread loop can use), so a short inner
 *              loop still fills warps.  Every thread runs its iterations'
 *              bodies sequentially.
 *   ROWS       block loops, then any "block scope" code: one group of
 *              threads per iteration of the collapsed block loops (a row;
 *              grid-stride), cooperating on the body: the whole block
 *              (blockDim.y == 1: 64 to 1024 threads) for long rows, or one
 *              warp (blockDim.x == 32, a row per threadIdx.y) for short
 *              ones, whose barriers are then __syncwarp (tc_bar) and whose
 *              reductions are warp shuffles alone.  The host chooses.
 *   SINGLE     one block; block scope code.
 *   TILED      a contraction that schedule_gpu.c hinted (GpuHint) and that
 *              still has its shape: 128x128 tiles of the output per block
 *              (x: n tiles, y: m tiles, z: the other loops), 256 threads
 *              with 8x8 outputs each, k in steps of 8 through shared memory
 *              (the next step fetched into registers meanwhile), FMA
 *              accumulation, the epilogue statements per output.  A product
 *              of two float16 (or bfloat16) loads summed in float32 runs
 *              on the tensor cores instead (kernel_mma, its own comment).
 *              A convolution hinted by schedule_gpu.c runs as an implicit
 *              GEMM in the same launch shape (kernel_conv: output positions
 *              x output channels x the collapsed window), with one of two
 *              tiles chosen on the host by the number of output channels.
 *
 * A ROWS kernel whose thread loops read the same input row (at each loop's
 * variable) stages it: the first loop stores what it loads into dynamic
 * shared memory, later ones read it there — when the launch gave the room
 * (the host asks for the row's bytes when they fit; the kernel checks
 * %dynamic_smem_size, else reads memory).
 *
 * Block scope code is run by every thread of the block alike (its control
 * flow is uniform); its stores and failure reports are done by thread 0;
 * after a store or a thread loop, a barrier (tc_bar) precedes the next
 * statement.  A thread loop there is a block-stride loop (threadIdx.x from
 * its start, step blockDim.x).  A local declared outside a thread loop and
 * updated inside it as `v = v OP e` (OP one of + * min max, e free of v) is a
 * collective reduction: each thread accumulates from the identity, a
 * warp-shuffle and shared-memory reduction (a fixed order: deterministic)
 * gives every thread the block's result, and v = v OP result.  A thread
 * loop that updates an outer local otherwise runs as a serial loop.
 * Inside a thread loop everything is sequential per thread.
 *
 * Values follow emit_c.c exactly (the interpreter's semantics): float16 and
 * bfloat16 computed in float32 with round-to-nearest-even conversions,
 * floored integer division, NaN-propagating min/max, saturating
 * float-to-integer casts; signed 32- and 64-bit + - * wrap (computed on
 * unsigned types: no undefined behaviour for the optimizer to exploit).
 * IR_FAIL records the first failure (atomicCAS on the record) and yields 0;
 * a failed S_CHECK in a kernel records and returns.  The text depends only
 * on the IR, so the cubin cache keys on it.
 */
#include "tc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { ROW_THREADS = 256 };

typedef enum {
  H_DIV, H_MOD, H_FMOD, H_MIN, H_MAX, H_SAT, H_F16, H_BF16, NUM_HELPERS
} Helper;

typedef enum { SC_BLOCK, SC_THREAD } Scope;

typedef struct Rename {
  const IRVar *from;
  IRVar *to;
} Rename;

typedef struct Emit {
  Ctx *c;
  IRFunc *f;
  GpuPlan *plan;
  bool need[NUM_HELPERS][TC_NUM_DTYPES];
  bool need_red[NUM_BINOPS][TC_NUM_DTYPES]; /* block reductions */
  bool need_qdiv;
  bool narrow;         /* emitting a subscript's 32-bit arithmetic (emit_subscript) */
  Buf kernels;
  /* the kernel being emitted */
  GpuKernelKind gk;
  bool dirty;          /* block scope: a store or thread loop since the last barrier */
  bool uses_red;       /* needs the shared scratch */
  VEC(Rename) renames;
  int ntmp;
  /* ROWS: a row of an input read by several thread loops, staged in shared
   * memory by the first (when the launch gives it the room) */
  struct {
    const Buffer *buf;      /* NULL: no staging in this kernel */
    IRExpr *pat;            /* its index, over `canon` for the loop variable */
    IRVar *canon;
    const IRStmt *loop;     /* the first thread loop reading it: its range */
    const IRVar *cur;       /* the thread loop being emitted reads it at cur */
    bool first;             /* ... and is the one that stages it */
    bool staged;            /* an earlier loop staged it */
    const IRStmt *vout;     /* a vector pass's store, emitted as a lane of tc_o */
    /* restaging (find_restage): a value of the row that the last two
     * readers both compute, written over the row by the first of them */
    IRExpr *rpat;           /* the value, over `canon` */
    const IRStmt *rprod, *rcons; /* the loop that writes it, the one that reads it */
    bool rmatch;            /* occurrences of rpat are emitted as tc_ev */
  } st;
} Emit;

static void emit_expr(Emit *E, Buf *b, const IRExpr *e);
static void emit_bare(Emit *E, Buf *b, const IRExpr *e);
static bool reads_stage(Emit *E, const IRStmt *s);
static void emit_stage_value(Emit *E, Buf *b, const IRStmt *s, int ind);
static void emit_list(Emit *E, Buf *b, IRStmt *const *list, int n, int ind, Scope sc);

/* ---- types ---- */

static tc_dtype value_dtype(tc_dtype t) {
  return t == TC_FLOAT16 || t == TC_BFLOAT16 ? TC_FLOAT32 : t;
}

/* The CUDA type of an element in memory (the prelude's typedefs: NVRTC
 * has no <stdint.h>, and nvcc's would clash). */
static const char *ctype(tc_dtype t) {
  static const char *const n[TC_NUM_DTYPES] = {
      [TC_BOOL] = "tc_u8",     [TC_INT8] = "tc_i8",      [TC_INT16] = "tc_i16",
      [TC_INT32] = "tc_i32",   [TC_INT64] = "tc_i64",    [TC_UINT8] = "tc_u8",
      [TC_UINT16] = "tc_u16",  [TC_UINT32] = "tc_u32",   [TC_UINT64] = "tc_u64",
      [TC_FLOAT16] = "tc_u16", [TC_BFLOAT16] = "tc_u16", [TC_FLOAT32] = "float",
      [TC_FLOAT64] = "double",
  };
  return n[t];
}

/* The CUDA type of a value of IR type t. */
static const char *vtype(tc_dtype t) { return t == TC_BOOL ? "bool" : ctype(value_dtype(t)); }

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
static bool is_wide_signed(tc_dtype t) { return t == TC_INT32 || t == TC_INT64; }

static void use(Emit *E, Helper h, tc_dtype t) { E->need[h][value_dtype(t)] = true; }

/* ---- helpers' text ---- */

static const char prelude[] =
    "typedef signed char tc_i8;\n"
    "typedef short tc_i16;\n"
    "typedef int tc_i32;\n"
    "typedef long long tc_i64;\n"
    "typedef unsigned char tc_u8;\n"
    "typedef unsigned short tc_u16;\n"
    "typedef unsigned int tc_u32;\n"
    "typedef unsigned long long tc_u64;\n"
    "struct tc_fail_rec { int claimed, site; long long value, bound; };\n"
    "__device__ __noinline__ void tc_report(tc_fail_rec *f, int site, long long v, long long b) {\n"
    "  if (atomicCAS(&f->claimed, 0, 1) == 0) { f->site = site; f->value = v; f->bound = b; }\n"
    "}\n"
    "__device__ __forceinline__ unsigned tc_dyn_smem() {\n"
    "  unsigned r;\n"
    "  asm(\"mov.u32 %0, %%dynamic_smem_size;\" : \"=r\"(r));\n"
    "  return r;\n"
    "}\n"
    "/* block scope's barrier: the block's, or the warp's when each warp of the\n"
    " * block (blockDim 32 x rows) works on a row of its own */\n"
    "__device__ __forceinline__ void tc_bar() {\n"
    "  if (blockDim.y == 1) __syncthreads(); else __syncwarp();\n"
    "}\n"
    "/* a row kernel's vector counter: 64-bit in the wide variant, 32-bit in the\n"
    " * narrow one (its row lies in a buffer whose offsets fit in int32) */\n"
    "template <bool W> struct tc_ix_of { typedef long long t; };\n"
    "template <> struct tc_ix_of<false> { typedef int t; };\n";

static void helper_divmod(Buf *b, tc_dtype t) {
  const char *ty = vtype(t), *s = suffix(t);
  const char *pre = "__device__ __forceinline__";
  if (!dtype_info[t].is_signed) {
    buf_printf(b, "%s %s tc_div_%s(%s x, %s y) { return y ? (%s)(x / y) : (%s)0; }\n", pre, ty,
               s, ty, ty, ty, ty);
    buf_printf(b, "%s %s tc_mod_%s(%s x, %s y) { return y ? (%s)(x %% y) : (%s)0; }\n", pre, ty,
               s, ty, ty, ty, ty);
    return;
  }
  if (t == TC_INT64) {
    buf_printf(b,
               "%s tc_i64 tc_div_i64(tc_i64 x, tc_i64 y) {\n"
               "  if (y == 0) return 0;\n"
               "  if (y == -1) return (tc_i64)(0ull - (tc_u64)x);\n"
               "  tc_i64 q = x / y;\n"
               "  return (x %% y != 0 && (x < 0) != (y < 0)) ? q - 1 : q;\n"
               "}\n"
               "%s tc_i64 tc_mod_i64(tc_i64 x, tc_i64 y) {\n"
               "  if (y == 0 || y == -1) return 0;\n"
               "  tc_i64 r = x %% y;\n"
               "  return (r != 0 && (r < 0) != (y < 0)) ? r + y : r;\n"
               "}\n",
               pre, pre);
    return;
  }
  buf_printf(b, "%s %s tc_div_%s(%s x, %s y) { return (%s)tc_div_i64(x, y); }\n", pre, ty, s, ty,
             ty, ty);
  buf_printf(b, "%s %s tc_mod_%s(%s x, %s y) { return (%s)tc_mod_i64(x, y); }\n", pre, ty, s, ty,
             ty, ty);
}

static void helper_fmod(Buf *b, tc_dtype t) {
  const char *ty = vtype(t), *s = suffix(t), *f = t == TC_FLOAT64 ? "" : "f";
  buf_printf(b,
             "__device__ __forceinline__ %s tc_fmod_%s(%s x, %s y) {\n"
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
    buf_printf(b,
               "__device__ __forceinline__ %s tc_%s_%s(%s x, %s y) { return (x %s y || x != x) ? x "
               ": y; }\n",
               ty, name, s, ty, ty, cmp);
  else
    buf_printf(b, "__device__ __forceinline__ %s tc_%s_%s(%s x, %s y) { return x %s y ? x : y; }\n",
               ty, name, s, ty, ty, cmp);
}

static void helper_sat(Buf *b, tc_dtype t) {
  const DTypeInfo *d = &dtype_info[t];
  const char *ty = vtype(t);
  double lo = d->is_signed ? -ldexp(1, d->bits - 1) : -1.0;
  double hi = d->is_signed ? ldexp(1, d->bits - 1) : ldexp(1, d->bits);
  char mx[48], mn[48];
  if (d->is_signed) {
    snprintf(mx, sizeof mx, "(%s)%lldll", ty, (long long)(ldexp(1, d->bits - 1) - 1));
    if (d->bits == 64)
      snprintf(mn, sizeof mn, "(-9223372036854775807ll - 1)");
    else
      snprintf(mn, sizeof mn, "(%s)(%lldll)", ty, (long long)-ldexp(1, d->bits - 1));
  } else {
    snprintf(mx, sizeof mx, "(%s)%lluull", ty,
             d->bits == 64 ? 18446744073709551615ull : (unsigned long long)ldexp(1, d->bits) - 1);
    snprintf(mn, sizeof mn, "(%s)0", ty);
  }
  buf_printf(b,
             "__device__ __forceinline__ %s tc_sat_%s(double x) {\n"
             "  if (x != x) return 0;\n"
             "  if (x <= %.1f) return %s;\n"
             "  if (x >= %.1f) return %s;\n"
             "  return (%s)x;\n"
             "}\n",
             ty, suffix(t), lo, mn, hi, mx, ty);
}

/* binary16 <-> float, round to nearest even; the same algorithm as emit_c.c. */
static const char half_text[] =
    "__device__ __forceinline__ float tc_h2f(tc_u16 h) {\n"
    "  tc_u32 sign = (tc_u32)(h & 0x8000u) << 16, em = h & 0x7fffu, x;\n"
    "  if (em >= 0x7c00u) x = sign | 0x7f800000u | ((em & 0x3ffu) << 13);\n"
    "  else if (em >= 0x400u) x = sign | ((em << 13) + (112u << 23));\n"
    "  else x = __float_as_uint((float)em * 5.9604644775390625e-8f) | sign;\n"
    "  return __uint_as_float(x);\n"
    "}\n"
    "__device__ __forceinline__ tc_u16 tc_f2h(float v) {\n"
    "  tc_u32 f = __float_as_uint(v);\n"
    "  tc_u32 sign = f & 0x80000000u; tc_u16 o;\n"
    "  f ^= sign;\n"
    "  if (f >= (143u << 23)) o = f > 0x7f800000u ? 0x7e00u : 0x7c00u;\n"
    "  else if (f < (113u << 23)) {\n"
    "    const tc_u32 mu = 126u << 23;\n"
    "    float x = __uint_as_float(f) + __uint_as_float(mu);\n"
    "    o = (tc_u16)(__float_as_uint(x) - mu);\n"
    "  } else {\n"
    "    tc_u32 odd = (f >> 13) & 1u;\n"
    "    f += 0xc8000fffu + odd;\n"
    "    o = (tc_u16)(f >> 13);\n"
    "  }\n"
    "  return (tc_u16)(o | (sign >> 16));\n"
    "}\n";

/* float rounded to odd: exact floats stay, others get the nearest float
 * toward zero with the last bit set (so one more rounding is correct). */
static const char round_odd_text[] =
    "__device__ __forceinline__ float tc_d2f_odd(double d) {\n"
    "  float f = __double2float_rz(d);\n"
    "  if (d == d && (double)f != d) f = __uint_as_float(__float_as_uint(f) | 1u);\n"
    "  return f;\n"
    "}\n";

static const char bf16_text[] =
    "__device__ __forceinline__ float tc_b2f(tc_u16 h) { return __uint_as_float((tc_u32)h << 16); }\n"
    "__device__ __forceinline__ tc_u16 tc_f2b(float v) {\n"
    "  tc_u32 u = __float_as_uint(v);\n"
    "  if ((u & 0x7fffffffu) > 0x7f800000u) return (tc_u16)((u >> 16) | 0x40u);\n"
    "  u += 0x7fffu + ((u >> 16) & 1u);\n"
    "  return (tc_u16)(u >> 16);\n"
    "}\n";

/* q / e for 0 <= q and 0 < e, in 32 bits when both fit. */
static const char qdiv_text[] =
    "__device__ __forceinline__ tc_i64 tc_qdiv(tc_i64 q, tc_i64 e) {\n"
    "  return ((tc_u64)(q | e) >> 32) == 0 ? (tc_i64)((tc_u32)q / (tc_u32)e) : q / e;\n"
    "}\n";

static void emit_red_helper(Emit *E, Buf *b, BinOp op, tc_dtype t);

static void emit_helpers(Emit *E, Buf *b) {
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
    if (E->need[H_SAT][t])
      helper_sat(b, (tc_dtype)t);
  }
  bool half = E->need[H_F16][TC_FLOAT32], bf = E->need[H_BF16][TC_FLOAT32];
  if (half || bf)
    buf_puts(b, round_odd_text);
  if (half)
    buf_puts(b, half_text);
  if (bf)
    buf_puts(b, bf16_text);
  if (E->need_qdiv)
    buf_puts(b, qdiv_text);
}

/* ---- constants ---- */

static void emit_int(Buf *b, tc_dtype t, int64_t v) {
  switch (t) {
  case TC_BOOL:
    buf_puts(b, v ? "true" : "false");
    return;
  case TC_UINT64:
    buf_printf(b, "%lluull", (unsigned long long)v);
    return;
  case TC_UINT32:
    buf_printf(b, "%lluu", (unsigned long long)v);
    return;
  case TC_INT64:
    if (v == INT64_MIN)
      buf_puts(b, "(-9223372036854775807ll - 1)");
    else
      buf_printf(b, v < 0 ? "(%lldll)" : "%lldll", (long long)v);
    return;
  default:
    if (v == INT32_MIN)
      buf_puts(b, "(-2147483647 - 1)");
    else if (t == TC_INT32)
      buf_printf(b, v < 0 ? "(%lld)" : "%lld", (long long)v);
    else
      buf_printf(b, "((%s)%lld)", vtype(t), (long long)v);
    return;
  }
}

static void emit_float(Buf *b, tc_dtype t, double v) {
  bool dbl = t == TC_FLOAT64;
  if (isnan(v)) {
    buf_puts(b, dbl ? "__longlong_as_double(0x7ff8000000000000ll)" : "__int_as_float(0x7fc00000)");
    return;
  }
  if (isinf(v)) {
    if (dbl)
      buf_puts(b, v < 0 ? "__longlong_as_double((long long)0xfff0000000000000ull)"
                        : "__longlong_as_double(0x7ff0000000000000ll)");
    else
      buf_puts(b, v < 0 ? "__int_as_float((int)0xff800000u)" : "__int_as_float(0x7f800000)");
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

static char *expr_text(Emit *E, const IRExpr *e) {
  Buf t = {0};
  emit_bare(E, &t, e);
  char *s = arena_strdup(E->c->arena, t.s ? t.s : "");
  if (t.oom)
    E->kernels.oom = true;
  buf_free(&t);
  return s;
}

/* Converts the CUDA expression `x` of IR type `from` to IR type `to`. */
static void emit_convert(Emit *E, Buf *b, tc_dtype to, tc_dtype from, const char *x) {
  const DTypeInfo *dt = &dtype_info[to], *df = &dtype_info[from];
  if (to == from || (to == TC_FLOAT32 && (from == TC_FLOAT16 || from == TC_BFLOAT16))) {
    buf_printf(b, "(%s)", x);
  } else if (dt->is_bool) {
    buf_printf(b, "((%s) != 0)", x);
  } else if (to == TC_FLOAT16 || to == TC_BFLOAT16) {
    bool h = to == TC_FLOAT16;
    use(E, h ? H_F16 : H_BF16, TC_FLOAT32);
    const char *back = h ? "tc_h2f" : "tc_b2f", *round = h ? "tc_f2h" : "tc_f2b";
    if (from == TC_FLOAT64)
      buf_printf(b, "%s(%s(tc_d2f_odd(%s)))", back, round, x);
    else if (df->is_float)
      buf_printf(b, "%s(%s(%s))", back, round, x);
    else
      buf_printf(b, "%s(%s((float)(%s)))", back, round, x);
  } else if (df->is_float && !dt->is_float) {
    use(E, H_SAT, to);
    buf_printf(b, "tc_sat_%s((double)(%s))", suffix(to), x);
  } else {
    buf_printf(b, "(%s)(%s)", vtype(to), x);
  }
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
  bool arith = e->op == OP_ADD || e->op == OP_SUB || e->op == OP_MUL;
  if (arith && is_wide_signed(e->type)) { /* wrapping, through the unsigned type */
    const char *u = e->type == TC_INT64 && !E->narrow ? "tc_u64" : "tc_u32";
    buf_printf(b, "((%s)((%s)", E->narrow ? "tc_i32" : vtype(e->type), u);
    emit_expr(E, b, e->a);
    buf_printf(b, " %s (%s)", binop_names[e->op], u);
    emit_expr(E, b, e->b);
    buf_puts(b, "))");
    return;
  }
  bool wrap = is_narrow_int(e->type);
  if (wrap)
    buf_printf(b, "((%s)", vtype(e->type));
  buf_puts(b, "(");
  emit_expr(E, b, e->a);
  buf_printf(b, " %s ", binop_names[e->op]);
  emit_expr(E, b, e->b);
  buf_puts(b, ")");
  if (wrap)
    buf_puts(b, ")");
}

static void emit_call(Emit *E, Buf *b, const IRExpr *e) {
  IASSERT(E->c, (unsigned)e->builtin < NUM_BUILTINS);
  const char *f = e->type == TC_FLOAT64 ? "" : "f";
  if (e->builtin == BI_rsqrt) { /* exactly rounded, as the interpreter's */
    buf_printf(b, "(%s / sqrt%s(", e->type == TC_FLOAT64 ? "1.0" : "1.0f", f);
    emit_bare(E, b, e->args[0]);
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

/* e with the variable `from` replaced by `to`. */
typedef struct VarSub {
  const IRVar *from;
  IRExpr *to;
} VarSub;

static IRExpr *var_sub(Ctx *c, void *st, IRExpr *e) {
  VarSub *v = st;
  if (e->kind == IR_VAR && e->var == v->from)
    return v->to;
  return ir_mutate_expr_children(c, e, var_sub, st);
}

/* Whether idx is the staged row's index at the current thread loop's variable. */
static bool staged_index(Emit *E, IRExpr *idx) {
  VarSub v = {E->st.cur, ir_var(E->c, E->st.canon)};
  return ir_equal(var_sub(E->c, &v, idx), E->st.pat);
}

/* Whether e, in the thread loop being emitted, is the value restaged over
 * the row (find_restage). */
static bool is_restaged(Emit *E, const IRExpr *e) {
  if (!E->st.cur || e->kind != E->st.rpat->kind || e->type != E->st.rpat->type)
    return false;
  VarSub v = {E->st.cur, ir_var(E->c, E->st.canon)};
  return ir_equal(var_sub(E->c, &v, (IRExpr *)e), E->st.rpat);
}

/* Whether e is 64-bit + - * (or negation): what a narrow subscript computes
 * on 32 bits. */
static bool is_narrowable(const IRExpr *e) {
  if (e->type != TC_INT64)
    return false;
  if (e->kind == IR_BIN)
    return e->op == OP_ADD || e->op == OP_SUB || e->op == OP_MUL;
  return e->kind == IR_UN && e->op == OP_NEG;
}

/* A subscript (an element offset), for both variants of the kernel: the
 * wide one (tc_w) computes it as the IR says, on 64 bits; the narrow one,
 * which the host launches only when every offset of every buffer of the run
 * fits in int32, computes the top + - * of the index on 32 bits (operands
 * computed otherwise, such as loads and selects, in full, then truncated):
 * the same value modulo 2^32, so the same offset. */
static void emit_subscript(Emit *E, Buf *b, const IRExpr *idx) {
  if (!is_narrowable(idx) || E->narrow) {
    emit_bare(E, b, idx);
    return;
  }
  buf_puts(b, "tc_w ? ");
  emit_expr(E, b, idx);
  buf_puts(b, " : (tc_i64)");
  E->narrow = true;
  emit_expr(E, b, idx);
  E->narrow = false;
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
  if (E->st.cur && e->buf == E->st.buf && staged_index(E, e->idx[0])) {
    buf_printf(b, "%stc_sv%s", wrap, t == TC_BOOL ? " != 0)" : *wrap ? ")" : "");
    return;
  }
  buf_printf(b, "%s%s[", wrap, e->buf->name);
  emit_subscript(E, b, e->idx[0]);
  buf_puts(b, t == TC_BOOL ? "] != 0)" : *wrap ? "])" : "]");
}

static void emit_fail(Emit *E, Buf *b, const IRExpr *e) {
  IASSERT(E->c, e->site >= 0 && e->site < E->f->sites.len);
  E->plan->can_fail = true;
  buf_printf(b, "(tc_report(tc_fr, %d, (long long)(", e->site);
  emit_bare(E, b, e->a);
  buf_puts(b, "), (long long)(");
  emit_bare(E, b, e->b);
  buf_printf(b, ")), (%s)0)", vtype(e->type));
}

static void emit_var(Emit *E, Buf *b, const IRVar *v) {
  for (int i = E->renames.len - 1; i >= 0; i--)
    if (E->renames.data[i].from == v) {
      buf_puts(b, E->renames.data[i].to->name);
      return;
    }
  buf_puts(b, v->name);
}

static void emit_bare(Emit *E, Buf *b, const IRExpr *e) {
  size_t start = b->len;
  emit_expr(E, b, e);
  if (e->kind == IR_FAIL)
    return;
  if (b->oom || b->len - start < 2 || b->s[start] != '(' || b->s[b->len - 1] != ')')
    return;
  int depth = 0;
  for (size_t i = start; i < b->len; i++) {
    depth += b->s[i] == '(' ? 1 : b->s[i] == ')' ? -1 : 0;
    if (depth == 0 && i != b->len - 1)
      return;
  }
  memmove(b->s + start, b->s + start + 1, b->len - start - 2);
  b->len -= 2;
  b->s[b->len] = '\0';
}

static void emit_expr(Emit *E, Buf *b, const IRExpr *e) {
  if (E->st.rmatch && is_restaged(E, e)) { /* the row's restaged value */
    buf_puts(b, "tc_ev");
    return;
  }
  if (E->narrow && !is_narrowable(e) && e->kind != IR_VAR && e->kind != IR_INT) {
    E->narrow = false; /* an operand of a narrow subscript: computed in full */
    emit_expr(E, b, e);
    E->narrow = true;
    return;
  }
  switch (e->kind) {
  case IR_INT:
    emit_int(b, e->type, e->ival);
    return;
  case IR_FLOAT:
    emit_float(b, e->type, e->fval);
    return;
  case IR_VAR:
    emit_var(E, b, e->var);
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
    } else if (is_wide_signed(e->type)) {
      const char *u = e->type == TC_INT64 && !E->narrow ? "tc_u64" : "tc_u32";
      buf_printf(b, "((%s)((%s)0 - (%s)", E->narrow ? "tc_i32" : vtype(e->type), u, u);
      emit_expr(E, b, e->a);
      buf_puts(b, "))");
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
  default:
    break;
  }
  IASSERT(E->c, !"IR expression kind outside the GPU dialect");
}

/* ---- walking the IR ---- */

static IRStmt *unwrap(IRStmt *s) {
  while (s && s->kind == S_BLOCK && s->n == 1)
    s = s->stmts[0];
  return s;
}

static bool is_var_expr(const IRExpr *e, const IRVar *v) {
  return e && e->kind == IR_VAR && e->var == v;
}

static bool is_gpu_loop(const IRStmt *s) {
  return s && s->kind == S_FOR && (s->fkind == FOR_GPU_BLOCK || s->fkind == FOR_GPU_THREAD);
}

/* Whether e reads memory, a loop variable or a local (not a host expression). */
static bool is_host_expr(const IRExpr *e) {
  if (!e)
    return true;
  if (e->kind == IR_LOAD || dtype_is_float(e->type))
    return false;
  if (e->kind == IR_VAR && (e->var->kind == VAR_LOOP || e->var->kind == VAR_LOCAL))
    return false;
  if (e->kind == IR_CALL)
    return false;
  for (int i = 0; i < e->nargs; i++)
    if (!is_host_expr(e->args[i]))
      return false;
  return is_host_expr(e->a) && is_host_expr(e->b) && is_host_expr(e->c);
}

static bool stmt_uses_var(const IRStmt *s, const IRVar *v) {
  if (!s)
    return false;
  if (s->var == v && (s->kind == S_ASSIGN))
    return true;
  for (int i = 0; i < s->nidx; i++)
    if (ir_uses_var(s->idx[i], v))
      return true;
  for (int i = 0; i < s->n; i++)
    if (stmt_uses_var(s->stmts[i], v))
      return true;
  return ir_uses_var(s->lo, v) || ir_uses_var(s->extent, v) || ir_uses_var(s->value, v) ||
         ir_uses_var(s->cond, v) || stmt_uses_var(s->body, v) || stmt_uses_var(s->then, v) ||
         stmt_uses_var(s->els, v);
}

static bool stmt_has_thread_loop(const IRStmt *s) {
  if (!s)
    return false;
  if (s->kind == S_FOR && s->fkind == FOR_GPU_THREAD)
    return true;
  for (int i = 0; i < s->n; i++)
    if (stmt_has_thread_loop(s->stmts[i]))
      return true;
  return stmt_has_thread_loop(s->body) || stmt_has_thread_loop(s->then) ||
         stmt_has_thread_loop(s->els);
}

typedef VEC(IRVar *) VarList;
typedef VEC(IRStmt *) StmtList;
typedef VEC(IRExpr *) ExprList;

/* Locals declared anywhere in s. */

static void collect_decls(Emit *E, const IRStmt *s, VarList *out) {
  if (!s)
    return;
  if (s->kind == S_DECL)
    vec_push(E->c->arena, out, s->var);
  for (int i = 0; i < s->n; i++)
    collect_decls(E, s->stmts[i], out);
  collect_decls(E, s->body, out);
  collect_decls(E, s->then, out);
  collect_decls(E, s->els, out);
}

static bool in_list(const VarList *l, const IRVar *v) {
  for (int i = 0; i < l->len; i++)
    if (l->data[i] == v)
      return true;
  return false;
}

/* Locals assigned in s but declared outside it. */
static void collect_outer_assigns(Emit *E, const IRStmt *s, const VarList *inner, VarList *out) {
  if (!s)
    return;
  if (s->kind == S_ASSIGN && !in_list(inner, s->var) && !in_list(out, s->var))
    vec_push(E->c->arena, out, s->var);
  for (int i = 0; i < s->n; i++)
    collect_outer_assigns(E, s->stmts[i], inner, out);
  collect_outer_assigns(E, s->body, inner, out);
  collect_outer_assigns(E, s->then, inner, out);
  collect_outer_assigns(E, s->els, inner, out);
}

/* Every assignment to v in s is v = v OP e (or OP(v, e)) with e free of v and
 * one OP throughout; v is not read otherwise.  Sets *op. */
static bool reduction_of(const IRStmt *s, const IRVar *v, int *op) {
  if (!s)
    return true;
  if (s->kind == S_ASSIGN && s->var == v) {
    const IRExpr *x = s->value;
    if (x->kind != IR_BIN ||
        !(x->op == OP_ADD || x->op == OP_MUL || x->op == OP_MIN || x->op == OP_MAX))
      return false;
    if (!(x->a->kind == IR_VAR && x->a->var == v) || ir_uses_var(x->b, v))
      return false;
    if (*op >= 0 && *op != x->op)
      return false;
    *op = x->op;
    return true;
  }
  for (int i = 0; i < s->nidx; i++)
    if (ir_uses_var(s->idx[i], v))
      return false;
  if (ir_uses_var(s->lo, v) || ir_uses_var(s->extent, v) || ir_uses_var(s->value, v) ||
      ir_uses_var(s->cond, v))
    return false;
  for (int i = 0; i < s->n; i++)
    if (!reduction_of(s->stmts[i], v, op))
      return false;
  return reduction_of(s->body, v, op) && reduction_of(s->then, v, op) &&
         reduction_of(s->els, v, op);
}

/* ---- block reductions ---- */

/* The identity of `op` on values of type t, as IR. */
static IRExpr *red_identity(Ctx *c, int op, tc_dtype t) {
  const DTypeInfo *d = &dtype_info[t];
  switch (op) {
  case OP_ADD:
    return d->is_float ? ir_float(c, t, 0) : ir_int(c, t, 0);
  case OP_MUL:
    return d->is_float ? ir_float(c, t, 1) : ir_int(c, t, 1);
  case OP_MIN:
    if (d->is_float)
      return ir_float(c, t, INFINITY);
    if (d->is_bool || !d->is_signed)
      return ir_int(c, t, -1);
    return ir_int(c, t, (int64_t)(((uint64_t)1 << (d->bits - 1)) - 1));
  default:
    if (d->is_float)
      return ir_float(c, t, -INFINITY);
    if (d->is_bool || !d->is_signed)
      return ir_int(c, t, 0);
    return ir_int(c, t, (int64_t)((uint64_t)-1 << (d->bits - 1)));
  }
}

static const char *op_name(int op) {
  return op == OP_ADD ? "add" : op == OP_MUL ? "mul" : op == OP_MIN ? "min" : "max";
}

/* tc_bred_<op>_<type>(v, scratch): the block's reduction of every thread's
 * v, returned to every thread; warp shuffles, then the warps' partials
 * combined in warp order by every thread (deterministic, uniform). */
static void emit_red_helper(Emit *E, Buf *b, BinOp op, tc_dtype t) {
  Ctx *c = E->c;
  const char *ty = vtype(t);
  const char *sh = (t == TC_BOOL || is_narrow_int(t)) ? "int" : ty;
  IRVar *x = ir_new_var(c, "x", VAR_LOCAL, t), *y = ir_new_var(c, "y", VAR_LOCAL, t);
  char *comb = expr_text(E, ir_bin(c, op, ir_var(c, x), ir_var(c, y)));
  buf_printf(b,
             "__device__ __forceinline__ %s tc_comb_%s_%s(%s x, %s y) { return %s; }\n"
             "__device__ %s tc_bred_%s_%s(%s v, unsigned long long *sm) {\n"
             "  for (int o = 16; o > 0; o >>= 1)\n"
             "    v = tc_comb_%s_%s(v, (%s)__shfl_xor_sync(0xffffffffu, (%s)v, o));\n"
             "  if (blockDim.x == 32) return v; /* a warp per row */\n"
             "  %s *p = (%s *)sm;\n"
             "  __syncthreads();\n"
             "  if ((threadIdx.x & 31) == 0) p[threadIdx.x >> 5] = v;\n"
             "  __syncthreads();\n"
             "  v = p[0];\n"
             "  for (int w = 1; w < (int)(blockDim.x >> 5); w++) v = tc_comb_%s_%s(v, p[w]);\n"
             "  return v;\n"
             "}\n",
             ty, op_name(op), suffix(t), ty, ty, comb, ty, op_name(op), suffix(t), ty,
             op_name(op), suffix(t), ty, sh, ty, ty, op_name(op), suffix(t));
}

/* ---- uses: what a kernel's preamble declares ---- */

typedef struct Uses {
  bool *buf, *size, *shape, *stride;
  bool fail;
} Uses;

static void uses_var(Uses *u, const IRVar *v) {
  switch (v->kind) {
  case VAR_SIZE: u->size[v->sym->id] = true; break;
  case VAR_SHAPE: u->shape[v->buf->dim_offset + v->dim] = true; break;
  case VAR_STRIDE: u->stride[v->buf->dim_offset + v->dim] = true; break;
  default: break;
  }
}

static bool uses_expr(void *st, const IRExpr *e) {
  Uses *u = st;
  if (e->kind == IR_VAR)
    uses_var(u, e->var);
  if (e->kind == IR_LOAD)
    u->buf[e->buf->slot] = true;
  if (e->kind == IR_FAIL)
    u->fail = true;
  return true;
}

static bool uses_stmt(void *st, const IRStmt *s) {
  Uses *u = st;
  if (s->kind == S_STORE)
    u->buf[s->buf->slot] = true;
  if (s->kind == S_CHECK)
    u->fail = true;
  return true;
}

static Uses new_uses(Emit *E) {
  Arena *a = E->c->arena;
  IRFunc *f = E->f;
  Uses u = {0};
  u.buf = arena_alloc(a, (size_t)f->nbufs + 1);
  u.size = arena_alloc(a, (size_t)f->nsizes + 1);
  u.shape = arena_alloc(a, (size_t)f->ndims + 1);
  u.stride = arena_alloc(a, (size_t)f->ndims + 1);
  return u;
}

int emitcuda_fail_slot(const IRFunc *f) { return f->nbufs + 2 * f->ndims + f->nsizes; }

static void emit_preamble(Emit *E, Buf *b, const Uses *u) {
  IRFunc *f = E->f;
  for (int i = 0; i < f->nsizes; i++)
    if (u->size[i])
      buf_printf(b, "  const tc_i64 %s = (tc_i64)a.s[%d];\n", f->sizes[i]->name,
                 f->nbufs + 2 * f->ndims + i);
  for (int i = 0; i < f->nbufs; i++) {
    Buffer *bf = f->bufs[i];
    for (int d = 0; d < bf->rank; d++) {
      int k = bf->dim_offset + d;
      if (u->shape[k])
        buf_printf(b, "  const tc_i64 %s = (tc_i64)a.s[%d];\n", bf->shape[d]->name,
                   f->nbufs + k);
      if (u->stride[k])
        buf_printf(b, "  const tc_i64 %s = (tc_i64)a.s[%d];\n", bf->stride[d]->name,
                   f->nbufs + f->ndims + k);
    }
  }
  for (int i = 0; i < f->nbufs; i++) {
    Buffer *bf = f->bufs[i];
    if (!u->buf[i])
      continue;
    const char *cq = bf->tensor && bf->tensor->role == T_INPUT ? "const " : "";
    const char *ct = ctype(bf->dtype);
    buf_printf(b, "  %s%s *__restrict__ %s = (%s%s *)a.s[%d];\n", cq, ct, bf->name, cq, ct,
               bf->slot);
  }
  if (u->fail)
    buf_printf(b, "  tc_fail_rec *tc_fr = (tc_fail_rec *)a.s[%d];\n", emitcuda_fail_slot(f));
}

/* ---- statements ---- */

static void emit_end(Emit *E, Buf *b, const IRStmt *s) {
  emit_bare(E, b, ir_add(E->c, s->lo, s->extent));
}

static void emit_store(Emit *E, Buf *b, const IRStmt *s, int ind) {
  IASSERT(E->c, s->nidx == 1);
  tc_dtype t = s->buf->dtype;
  IASSERT(E->c, s->value->type == t);
  buf_indent(b, ind);
  if (s == E->st.vout) { /* a lane of a vector pass's 16-byte store */
    buf_puts(b, "(&tc_o.x)[tc_j] = ");
    emit_bare(E, b, s->value);
    buf_puts(b, ";\n");
    return;
  }
  buf_printf(b, "%s[", s->buf->name);
  emit_subscript(E, b, s->idx[0]);
  buf_puts(b, "] = ");
  if (t == TC_FLOAT16 || t == TC_BFLOAT16) {
    const IRExpr *v = s->value;
    use(E, t == TC_FLOAT16 ? H_F16 : H_BF16, TC_FLOAT32);
    buf_puts(b, t == TC_FLOAT16 ? "tc_f2h(" : "tc_f2b(");
    if (v->kind == IR_CAST && v->a->type != TC_FLOAT64)
      emit_convert(E, b, TC_FLOAT32, v->a->type, expr_text(E, v->a));
    else
      emit_bare(E, b, v);
    buf_puts(b, ")");
  } else if (t == TC_BOOL) {
    buf_puts(b, "(tc_u8)(");
    emit_expr(E, b, s->value);
    buf_puts(b, " ? 1 : 0)");
  } else {
    emit_bare(E, b, s->value);
  }
  buf_puts(b, ";\n");
}

static void emit_check(Emit *E, Buf *b, const IRStmt *s, int ind, Scope sc) {
  IASSERT(E->c, s->value && s->value->kind == IR_FAIL);
  /* a return is safe only where every thread takes it together, or where
   * no barrier follows */
  IASSERT(E->c, sc == SC_BLOCK || E->gk == GK_POINTWISE);
  E->plan->can_fail = true;
  const IRExpr *fl = s->value;
  buf_indent(b, ind);
  buf_puts(b, "if (!(");
  emit_bare(E, b, s->cond);
  buf_puts(b, ")) {\n");
  buf_indent(b, ind + 1);
  buf_printf(b, "tc_report(tc_fr, %d, (long long)(", fl->site);
  emit_bare(E, b, fl->a);
  buf_puts(b, "), (long long)(");
  emit_bare(E, b, fl->b);
  buf_puts(b, "));\n");
  buf_indent(b, ind + 1);
  buf_puts(b, "return;\n");
  buf_indent(b, ind);
  buf_puts(b, "}\n");
}

static void barrier_if_dirty(Emit *E, Buf *b, int ind) {
  if (!E->dirty)
    return;
  buf_indent(b, ind);
  buf_puts(b, "tc_bar();\n");
  E->dirty = false;
}

static IRVar *fresh_local(Emit *E, const char *prefix, tc_dtype t) {
  return ir_new_var(E->c, arena_printf(E->c->arena, "%s%d", prefix, E->ntmp++), VAR_LOCAL, t);
}

static void emit_serial_for(Emit *E, Buf *b, const IRStmt *s, int ind, Scope sc) {
  const char *v = s->var->name;
  buf_indent(b, ind);
  buf_printf(b, "for (tc_i64 %s = ", v);
  emit_bare(E, b, s->lo);
  buf_printf(b, "; %s < ", v);
  emit_end(E, b, s);
  buf_printf(b, "; %s++) {\n", v);
  IRStmt *body = s->body;
  if (body && body->kind == S_BLOCK)
    emit_list(E, b, body->stmts, body->n, ind + 1, sc);
  else if (body)
    emit_list(E, b, &body, 1, ind + 1, sc);
  if (sc == SC_BLOCK)
    barrier_if_dirty(E, b, ind + 1); /* before the next iteration */
  buf_indent(b, ind);
  buf_puts(b, "}\n");
}

/* The 16-byte vector type of a staged element type, or NULL. */
static const char *vector_type(tc_dtype t) {
  switch (t) {
  case TC_FLOAT32: return "float4";
  case TC_INT32: return "int4";
  case TC_UINT32: return "uint4";
  default: return NULL;
  }
}

/* The staged row's subscript with the canonical variable at `at`. */
static IRExpr *stage_index_at(Emit *E, IRExpr *at) {
  VarSub v = {E->st.canon, at};
  return var_sub(E->c, &v, E->st.pat);
}

/* Whether e is affine in v (modulo 2^64): free of v, v itself, or + - of
 * affine terms, a product by a factor free of v, a negation. */
static bool is_affine_in(const IRExpr *e, const IRVar *v) {
  if (!ir_uses_var(e, v) || e->kind == IR_VAR)
    return true;
  if (e->kind == IR_UN && e->op == OP_NEG)
    return is_affine_in(e->a, v);
  if (e->kind != IR_BIN || e->type != TC_INT64)
    return false;
  if (e->op == OP_ADD || e->op == OP_SUB)
    return is_affine_in(e->a, v) && is_affine_in(e->b, v);
  if (e->op == OP_MUL)
    return (!ir_uses_var(e->a, v) && is_affine_in(e->b, v)) ||
           (!ir_uses_var(e->b, v) && is_affine_in(e->a, v));
  return false;
}

/* The store of a later pass over the staged row that can go out in 16-byte
 * stores: the loop's only statement, of a 4-byte element type, at an index
 * affine in the loop variable (the host-side test checks that it grows by
 * one and starts aligned), its value not reading what it stores. */
static const IRStmt *vector_store(Emit *E, const IRStmt *s) {
  const IRStmt *st = unwrap(s->body);
  if (!st || st->kind != S_STORE || st->nidx != 1 || st->buf == E->st.buf)
    return NULL;
  tc_dtype t = st->buf->dtype;
  if (!vector_type(t) || st->value->type != t || !ir_uses_var(st->idx[0], s->var) ||
      !is_affine_in(st->idx[0], s->var) || ir_loads_buf(st->value, st->buf) ||
      ir_has_kind(st->value, IR_FAIL))
    return NULL;
  return st;
}

/* The run-time test that a row's elements are consecutive (its subscript,
 * affine, grows by one) from a 16-byte aligned first one: `&& idx(lo + 1) -
 * idx(lo) == 1 && (bn + idx(lo)) % 16 == 0`. */
static void emit_vec_test(Emit *E, Buf *b, const char *bn, IRExpr *first, IRExpr *second) {
  buf_puts(b, " && (");
  emit_expr(E, b, second);
  buf_puts(b, ") - (");
  emit_expr(E, b, first);
  buf_printf(b, ") == 1 && ((tc_u64)(%s + (", bn);
  emit_expr(E, b, first);
  buf_puts(b, ")) & 15) == 0");
}

/* The restaged value of thread loop s into tc_ev (find_restage): the loop
 * that writes it computes it from tc_sv; the one that reads it has it in
 * tc_sv when the row is on chip, else computes it. Occurrences in the body
 * are then emitted as tc_ev. */
static void emit_restage_value(Emit *E, Buf *b, const IRStmt *s, bool vec, int ind) {
  if (s != E->st.rprod && s != E->st.rcons)
    return;
  const char *ct = ctype(E->st.buf->dtype);
  buf_indent(b, ind);
  buf_printf(b, "const %s tc_ev = %s", ct, s == E->st.rcons ? "tc_st ? tc_sv : " : "");
  VarSub v = {E->st.canon, ir_var(E->c, s->var)};
  emit_bare(E, b, var_sub(E->c, &v, E->st.rpat));
  buf_puts(b, ";\n");
  if (s == E->st.rprod) {
    buf_indent(b, ind);
    if (vec)
      buf_puts(b, "(&tc_e.x)[tc_j] = tc_ev;\n");
    else
      buf_printf(b, "if (tc_st) tc_row[%s] = tc_ev;\n",
                 expr_text(E, ir_sub(E->c, ir_var(E->c, s->var), s->lo)));
  }
  E->st.rmatch = true;
}

static void emit_loop_body(Emit *E, Buf *b, const IRStmt *s, int ind) {
  IRStmt *body = s->body;
  if (body && body->kind == S_BLOCK)
    emit_list(E, b, body->stmts, body->n, ind, SC_THREAD);
  else if (body)
    emit_list(E, b, &body, 1, ind, SC_THREAD);
}

/* A pass over a staged row in 16-byte accesses: taken (tc_vec) when the
 * row's length is a multiple of 4, its elements are consecutive (the
 * subscript grows by one with the loop variable) and its first is 16-byte
 * aligned — all uniform over the row's threads — and, for a pass whose
 * store goes out in 16-byte stores (vector_store), the same of the
 * output's row.  Thread t takes elements 4t .. 4t+3 (then 4(t +
 * blockDim.x) ...): the first pass loads them from memory and stages them,
 * later ones read the stage (or memory, when the launch gave no room); the
 * loop's body runs on each, in order, its store collected into one vector.
 * Opens the branch `if (tc_vec) {`; the caller emits `} else {` the scalar
 * loop `}`. */
static void emit_vector_stage_loop(Emit *E, Buf *b, const IRStmt *s, int ind) {
  Ctx *c = E->c;
  const char *vt = vector_type(E->st.buf->dtype), *ct = ctype(E->st.buf->dtype);
  const char *bn = E->st.buf->name, *v = s->var->name;
  bool first = E->st.first, prod = s == E->st.rprod;
  const IRStmt *out = first ? NULL : vector_store(E, s);
  IRVar *tv = ir_new_var(c, "tc_v", VAR_LOCAL, TC_INT64);
  IRExpr *lo1 = ir_add(c, s->lo, ir_int(c, TC_INT64, 1));
  IRExpr *at = ir_add(c, s->lo, ir_mul(c, ir_int(c, TC_INT64, 4), ir_var(c, tv)));
  char *len = expr_text(E, s->extent);
  buf_indent(b, ind);
  buf_printf(b, "const bool tc_vec = (%s) %% 4 == 0", len);
  emit_vec_test(E, b, bn, stage_index_at(E, s->lo), stage_index_at(E, lo1));
  if (out) {
    VarSub v0 = {s->var, s->lo}, v1 = {s->var, lo1};
    emit_vec_test(E, b, out->buf->name, var_sub(c, &v0, out->idx[0]), var_sub(c, &v1, out->idx[0]));
  }
  buf_puts(b, ";\n");
  buf_indent(b, ind);
  buf_puts(b, "if (tc_vec) {\n");
  buf_indent(b, ind + 1);
  buf_puts(b, "#pragma unroll 4\n"); /* (8 measured no faster on an H200, with more registers) */
  buf_indent(b, ind + 1);
  buf_printf(b, "for (tc_ix tc_v = threadIdx.x; tc_v < (tc_ix)((%s) / 4); tc_v += blockDim.x) {\n",
             len);
  buf_indent(b, ind + 2);
  buf_printf(b, "const %s tc_q = ", vt);
  if (!first)
    buf_printf(b, "tc_st ? *(const %s *)&tc_row[4 * tc_v] : ", vt);
  buf_printf(b, "*(const %s *)&%s[", vt, bn);
  emit_subscript(E, b, stage_index_at(E, at));
  buf_puts(b, "];\n");
  if (first) {
    buf_indent(b, ind + 2);
    buf_printf(b, "if (tc_st) *(%s *)&tc_row[4 * tc_v] = tc_q;\n", vt);
  }
  if (prod) {
    buf_indent(b, ind + 2);
    buf_printf(b, "%s tc_e;\n", vt);
  }
  if (out) {
    buf_indent(b, ind + 2);
    buf_printf(b, "%s tc_o;\n", vector_type(out->buf->dtype));
  }
  buf_indent(b, ind + 2);
  buf_puts(b, "#pragma unroll\n");
  buf_indent(b, ind + 2);
  buf_puts(b, "for (int tc_j = 0; tc_j < 4; tc_j++) {\n");
  buf_indent(b, ind + 3);
  buf_printf(b, "const tc_i64 %s = ", v);
  emit_expr(E, b, s->lo);
  buf_printf(b, " + 4 * (tc_i64)tc_v + tc_j;\n");
  buf_indent(b, ind + 3);
  buf_printf(b, "(void)%s;\n", v);
  buf_indent(b, ind + 3);
  buf_printf(b, "const %s tc_sv = (&tc_q.x)[tc_j];\n", ct);
  E->st.cur = s->var;
  emit_restage_value(E, b, s, true, ind + 3);
  E->st.vout = out;
  emit_loop_body(E, b, s, ind + 3);
  E->st.vout = NULL;
  E->st.rmatch = false;
  E->st.cur = NULL;
  buf_indent(b, ind + 2);
  buf_puts(b, "}\n");
  if (prod) {
    buf_indent(b, ind + 2);
    buf_printf(b, "if (tc_st) *(%s *)&tc_row[4 * tc_v] = tc_e;\n", vt);
  }
  if (out) {
    VarSub va = {s->var, at};
    buf_indent(b, ind + 2);
    buf_printf(b, "*(%s *)&%s[", vector_type(out->buf->dtype), out->buf->name);
    emit_subscript(E, b, var_sub(c, &va, out->idx[0]));
    buf_puts(b, "] = tc_o;\n");
  }
  buf_indent(b, ind + 1);
  buf_puts(b, "}\n");
}

/* A thread loop in block scope: block-stride, with collective reductions of
 * the outer locals it updates (or serial, when it updates one otherwise). */
static void emit_thread_loop(Emit *E, Buf *b, const IRStmt *s, int ind) {
  Ctx *c = E->c;
  VarList inner = {0}, outer = {0};
  collect_decls(E, s->body, &inner);
  collect_outer_assigns(E, s->body, &inner, &outer);
  int *ops = arena_alloc(c->arena, sizeof(int) * (size_t)(outer.len + 1));
  for (int i = 0; i < outer.len; i++) {
    ops[i] = -1;
    if (!reduction_of(s->body, outer.data[i], &ops[i]) || ops[i] < 0) {
      emit_serial_for(E, b, s, ind, SC_BLOCK);
      return;
    }
  }
  barrier_if_dirty(E, b, ind);
  buf_indent(b, ind);
  buf_puts(b, "{\n");
  int mark = E->renames.len;
  IRVar **part = arena_alloc(c->arena, sizeof(IRVar *) * (size_t)(outer.len + 1));
  for (int i = 0; i < outer.len; i++) {
    tc_dtype t = outer.data[i]->type;
    part[i] = fresh_local(E, "tc_p", t);
    buf_indent(b, ind + 1);
    buf_printf(b, "%s %s = ", vtype(t), part[i]->name);
    emit_bare(E, b, red_identity(c, ops[i], t));
    buf_puts(b, ";\n");
    Rename r = {outer.data[i], part[i]};
    vec_push(c->arena, &E->renames, r);
  }
  const char *v = s->var->name;
  bool staged = reads_stage(E, s);
  bool vec = staged && vector_type(E->st.buf->dtype) && is_affine_in(E->st.pat, E->st.canon);
  if (staged)
    E->st.first = !E->st.staged;
  if (vec) { /* the row in 16-byte accesses when it allows: tc_vec */
    emit_vector_stage_loop(E, b, s, ind + 1);
    buf_indent(b, ind + 1);
    buf_puts(b, "} else {\n");
  }
  int in = ind + (vec ? 2 : 1);
  buf_indent(b, in);
  buf_puts(b, "#pragma unroll 4\n"); /* loads of several iterations in flight */
  buf_indent(b, in);
  buf_printf(b, "for (tc_i64 %s = ", v);
  emit_bare(E, b, s->lo);
  buf_printf(b, " + (tc_i64)threadIdx.x; %s < ", v);
  emit_end(E, b, s);
  buf_printf(b, "; %s += (tc_i64)blockDim.x) {\n", v);
  if (staged) {
    emit_stage_value(E, b, s, in + 1);
    E->st.cur = s->var;
    emit_restage_value(E, b, s, false, in + 1);
  }
  emit_loop_body(E, b, s, in + 1);
  if (staged) {
    E->st.rmatch = false;
    E->st.cur = NULL;
    E->st.staged = true;
  }
  buf_indent(b, in);
  buf_puts(b, "}\n");
  if (vec) {
    buf_indent(b, ind + 1);
    buf_puts(b, "}\n");
  }
  E->renames.len = mark;
  for (int i = 0; i < outer.len; i++) {
    tc_dtype t = outer.data[i]->type;
    E->need_red[ops[i]][t] = true;
    E->uses_red = true;
    buf_indent(b, ind + 1);
    buf_printf(b, "%s = tc_bred_%s_%s(%s, tc_red);\n", part[i]->name, op_name(ops[i]),
               suffix(t), part[i]->name);
    IRStmt *upd = ir_assign(c, outer.data[i],
                            ir_bin(c, (BinOp)ops[i], ir_var(c, outer.data[i]), ir_var(c, part[i])));
    emit_list(E, b, &upd, 1, ind + 1, SC_THREAD);
  }
  buf_indent(b, ind);
  buf_puts(b, "}\n");
  E->dirty = true;
}

static void emit_stmt(Emit *E, Buf *b, IRStmt *s, int ind, Scope sc) {
  switch (s->kind) {
  case S_BLOCK:
    emit_list(E, b, s->stmts, s->n, ind, sc);
    return;
  case S_FOR:
    if (sc == SC_BLOCK && s->fkind == FOR_GPU_THREAD) {
      emit_thread_loop(E, b, s, ind);
      return;
    }
    if (sc == SC_BLOCK)
      barrier_if_dirty(E, b, ind);
    emit_serial_for(E, b, s, ind, sc);
    return;
  case S_STORE:
    if (sc == SC_BLOCK) {
      barrier_if_dirty(E, b, ind);
      buf_indent(b, ind);
      buf_puts(b, "if (threadIdx.x == 0) {\n");
      emit_store(E, b, s, ind + 1);
      buf_indent(b, ind);
      buf_puts(b, "}\n");
      E->dirty = true;
      return;
    }
    emit_store(E, b, s, ind);
    return;
  case S_DECL:
  case S_ASSIGN:
    IASSERT(E->c, s->var->kind == VAR_LOCAL && s->value->type == s->var->type);
    if (sc == SC_BLOCK && ir_has_kind(s->value, IR_LOAD))
      barrier_if_dirty(E, b, ind);
    buf_indent(b, ind);
    if (s->kind == S_DECL)
      buf_printf(b, "%s ", vtype(s->var->type));
    emit_var(E, b, s->var);
    buf_puts(b, " = ");
    emit_bare(E, b, s->value);
    buf_puts(b, ";\n");
    return;
  case S_IF: {
    if (sc == SC_BLOCK)
      barrier_if_dirty(E, b, ind);
    buf_indent(b, ind);
    buf_puts(b, "if (");
    emit_bare(E, b, s->cond);
    buf_puts(b, ") {\n");
    if (s->then)
      emit_stmt(E, b, s->then, ind + 1, sc);
    bool dirty = E->dirty;
    if (s->els) {
      buf_indent(b, ind);
      buf_puts(b, "} else {\n");
      E->dirty = false;
      emit_stmt(E, b, s->els, ind + 1, sc);
    }
    E->dirty |= dirty;
    buf_indent(b, ind);
    buf_puts(b, "}\n");
    return;
  }
  case S_CHECK:
    if (sc == SC_BLOCK)
      barrier_if_dirty(E, b, ind);
    emit_check(E, b, s, ind, sc);
    return;
  case S_ALLOC: /* the CPU scheduler's (tile.c) */
  default: /* S_ALLOC and any later kind: not in the GPU dialect */
    break;
  }
  IASSERT(E->c, !"IR statement kind outside the GPU dialect");
}

static void emit_list(Emit *E, Buf *b, IRStmt *const *list, int n, int ind, Scope sc) {
  for (int i = 0; i < n; i++)
    if (list[i])
      emit_stmt(E, b, list[i], ind, sc);
}

/* ---- kernels ---- */

typedef struct KernelShape {
  IRStmt *blocks[TC_MAX_RANK * 4]; /* the chain of block loops, outermost first */
  int nblocks;
  IRStmt *rest;                    /* what the innermost block loop runs */
} KernelShape;

static KernelShape kernel_shape(IRStmt *root) {
  KernelShape k = {{0}, 0, root};
  IRStmt *s = unwrap(root);
  while (s && s->kind == S_FOR && s->fkind == FOR_GPU_BLOCK &&
         k.nblocks < (int)(sizeof k.blocks / sizeof k.blocks[0])) {
    k.blocks[k.nblocks++] = s;
    k.rest = s->body;
    s = unwrap(s->body);
  }
  return k;
}

/* The product of the block loops' extents, or NULL for none. */
static IRExpr *outer_count(Emit *E, const KernelShape *k) {
  IRExpr *n = NULL;
  for (int i = 0; i < k->nblocks; i++)
    n = n ? ir_mul(E->c, n, k->blocks[i]->extent) : k->blocks[i]->extent;
  return n ? simplify_expr(E->c, n) : NULL;
}

/* Sets the block loops' variables from the collapsed iteration `q`. */
static void emit_decompose(Emit *E, Buf *b, const KernelShape *k, const char *q, int ind) {
  if (k->nblocks == 0)
    return;
  const char *rest = q;
  for (int i = k->nblocks - 1; i >= 0; i--) {
    IRStmt *L = k->blocks[i];
    buf_indent(b, ind);
    buf_printf(b, "const tc_i64 %s = ", L->var->name);
    int64_t lo;
    if (!(ir_is_const(L->lo, &lo) && lo == 0)) {
      emit_expr(E, b, L->lo);
      buf_puts(b, " + ");
    }
    if (i == 0) {
      buf_printf(b, "%s;\n", rest);
      break;
    }
    E->need_qdiv = true;
    char *ext = expr_text(E, L->extent);
    const char *next = arena_printf(E->c->arena, "tc_q%d", E->ntmp++);
    buf_printf(b, "(%s - tc_qdiv(%s, %s) * (%s));\n", rest, rest, ext, ext);
    buf_indent(b, ind);
    buf_printf(b, "const tc_i64 %s = tc_qdiv(%s, %s);\n", next, rest, ext);
    rest = next;
  }
}

static void emit_body_of(Emit *E, Buf *b, IRStmt *s, int ind, Scope sc) {
  if (!s)
    return;
  if (s->kind == S_BLOCK)
    emit_list(E, b, s->stmts, s->n, ind, sc);
  else
    emit_list(E, b, &s, 1, ind, sc);
}

/* Emits tc_k<N> with `body` text, declaring what `stmts` use; `minb`:
 * blocks per multiprocessor for __launch_bounds__. */
static void finish_kernel_minb(Emit *E, int k, int threads, int minb, IRStmt **stmts, int n,
                               Buf *body, const IRExpr *extra1, const IRExpr *extra2) {
  Uses u = new_uses(E);
  for (int i = 0; i < n; i++)
    ir_stmt_visit(stmts[i], uses_stmt, uses_expr, &u);
  ir_expr_visit(extra1, uses_expr, &u);
  ir_expr_visit(extra2, uses_expr, &u);
  for (int i = 0; i < E->f->nbufs; i++)
    E->plan->buf_used[i] |= u.buf[i];
  Buf *o = &E->kernels;
  buf_printf(o, "\ntemplate <bool tc_w> __device__ __forceinline__ void tc_body%d(const tc_args a) {\n",
             k);
  emit_preamble(E, o, &u);
  if (E->uses_red)
    buf_puts(o, "  __shared__ unsigned long long tc_red[32];\n");
  buf_putn(o, body->s ? body->s : "", body->len);
  buf_puts(o, "}\n");
  for (int w = 1; w >= 0; w--)
    buf_printf(o, "extern \"C\" __global__ void __launch_bounds__(%d, %d) tc_k%d%s(const tc_args a) "
                  "{ tc_body%d<%s>(a); }\n",
               threads, minb, k, w ? "" : "n", k, w ? "true" : "false");
  if (body->oom)
    o->oom = true;
  buf_free(body);
}

/* Emits tc_k<N> with `body` text, declaring what `stmts` use. */
static void finish_kernel(Emit *E, int k, int threads, IRStmt **stmts, int n, Buf *body,
                          const IRExpr *extra1, const IRExpr *extra2) {
  finish_kernel_minb(E, k, threads, 1, stmts, n, body, extra1, extra2);
}

static GpuStep *new_step(Emit *E, GpuStepKind k) {
  GpuStep *s = arena_alloc(E->c->arena, sizeof *s);
  s->kind = k;
  return s;
}

static void begin_kernel(Emit *E, GpuKernelKind gk) {
  E->gk = gk;
  E->dirty = false;
  E->uses_red = false;
  E->renames.len = 0;
}

/* A POINTWISE kernel: block loops on y, the thread loop on x. */
/* The launch of a POINTWISE kernel: 256 threads a block over thread loop t,
 * `outer` iterations of the block loops. */
static GpuStep *pointwise_step(Emit *E, int id, IRExpr *outer, const IRStmt *t) {
  GpuStep *s = new_step(E, GS_LAUNCH);
  s->kernel = id;
  s->gk = GK_POINTWISE;
  s->outer = outer;
  s->inner = t->extent;
  s->threads = 256;
  return s;
}

static GpuStep *kernel_pointwise(Emit *E, IRStmt *root, const KernelShape *k, IRStmt *t) {
  int id = E->plan->nkernels++;
  begin_kernel(E, GK_POINTWISE);
  IRExpr *outer = outer_count(E, k);
  Buf b = {0};
  int ind = 1;
  if (outer) {
    buf_puts(&b, "  const tc_i64 tc_ny = ");
    emit_bare(E, &b, outer);
    buf_puts(&b, ";\n  for (tc_i64 tc_y = (tc_i64)blockIdx.y * blockDim.y + threadIdx.y; "
                 "tc_y < tc_ny; tc_y += (tc_i64)gridDim.y * blockDim.y) {\n");
    emit_decompose(E, &b, k, "tc_y", 2);
    ind = 2;
  } else {
    buf_puts(&b, "  if (blockIdx.y == 0 && threadIdx.y == 0) {\n");
    ind = 2;
  }
  buf_indent(&b, ind);
  buf_puts(&b, "const tc_i64 tc_nx = ");
  emit_bare(E, &b, t->extent);
  buf_puts(&b, ";\n");
  buf_indent(&b, ind);
  buf_puts(&b, "#pragma unroll 4\n");
  buf_indent(&b, ind);
  buf_puts(&b, "for (tc_i64 tc_x = (tc_i64)blockIdx.x * blockDim.x + threadIdx.x; "
               "tc_x < tc_nx; tc_x += (tc_i64)gridDim.x * blockDim.x) {\n");
  buf_indent(&b, ind + 1);
  buf_printf(&b, "const tc_i64 %s = ", t->var->name);
  emit_bare(E, &b, ir_add(E->c, t->lo, ir_var(E->c, ir_new_var(E->c, "tc_x", VAR_LOCAL,
                                                                    TC_INT64))));
  buf_puts(&b, ";\n");
  emit_body_of(E, &b, t->body, ind + 1, SC_THREAD);
  buf_indent(&b, ind);
  buf_puts(&b, "}\n  }\n");
  finish_kernel(E, id, 256, &root, 1, &b, outer, NULL);
  return pointwise_step(E, id, outer, t);
}

/* ---- staging a row in shared memory ---- */

/* Loads in s evaluated whenever s runs (not under a select's arms, the
 * right of && or ||, an if or a nested loop). */
static void uncond_loads_expr(Emit *E, IRExpr *e, ExprList *out) {
  if (!e)
    return;
  if (e->kind == IR_LOAD)
    vec_push(E->c->arena, out, e);
  if (e->kind == IR_SELECT) {
    uncond_loads_expr(E, e->a, out);
    return;
  }
  if (e->kind == IR_BIN && (e->op == OP_AND || e->op == OP_OR)) {
    uncond_loads_expr(E, e->a, out);
    return;
  }
  for (int i = 0; i < e->nargs; i++)
    uncond_loads_expr(E, e->args[i], out);
  uncond_loads_expr(E, e->a, out);
  uncond_loads_expr(E, e->b, out);
  uncond_loads_expr(E, e->c, out);
}

static void uncond_loads(Emit *E, IRStmt *s, ExprList *out) {
  if (!s)
    return;
  if (s->kind == S_BLOCK)
    for (int i = 0; i < s->n; i++)
      uncond_loads(E, s->stmts[i], out);
  if (s->kind == S_DECL || s->kind == S_ASSIGN || s->kind == S_STORE)
    uncond_loads_expr(E, s->value, out);
}

/* The thread loops of a block-scope list, in order. */
static void thread_loops(IRStmt *s, StmtList *out, Arena *a) {
  if (!s)
    return;
  if (s->kind == S_BLOCK)
    for (int i = 0; i < s->n; i++)
      thread_loops(s->stmts[i], out, a);
  else if (s->kind == S_FOR && s->fkind == FOR_GPU_THREAD)
    vec_push(a, out, s);
}

/* Chooses the row to stage: an input read unconditionally, at the loop's
 * variable, by at least two thread loops over the same range. */
static void find_stage(Emit *E, IRStmt *root, IRStmt *rest) {
  memset(&E->st, 0, sizeof E->st);
  StmtList loops = {0};
  thread_loops(rest, &loops, E->c->arena);
  IRVar *canon = ir_new_var(E->c, "tc_canon", VAR_LOOP, TC_INT64);
  for (int i = 0; i < loops.len && !E->st.buf; i++) {
    IRStmt *L = loops.data[i];
    ExprList lds = {0};
    uncond_loads(E, L->body, &lds);
    for (int k = 0; k < lds.len && !E->st.buf; k++) {
      IRExpr *ld = lds.data[k];
      if (!ir_uses_var(ld->idx[0], L->var) || ir_stmt_stores(root, ld->buf) ||
          dtype_info[ld->buf->dtype].size > 8)
        continue;
      VarSub v = {L->var, ir_var(E->c, canon)};
      IRExpr *pat = var_sub(E->c, &v, ld->idx[0]);
      for (int j = i + 1; j < loops.len && !E->st.buf; j++) {
        IRStmt *M = loops.data[j];
        if (!ir_equal(M->lo, L->lo) || !ir_equal(M->extent, L->extent) ||
            !is_host_expr(L->extent))
          continue;
        ExprList l2 = {0};
        uncond_loads(E, M->body, &l2);
        VarSub w = {M->var, ir_var(E->c, canon)};
        for (int q = 0; q < l2.len && !E->st.buf; q++)
          if (l2.data[q]->buf == ld->buf && ir_equal(var_sub(E->c, &w, l2.data[q]->idx[0]), pat)) {
            E->st.buf = ld->buf;
            E->st.pat = pat;
            E->st.canon = canon;
            E->st.loop = L;
          }
      }
    }
  }
}

/* Whether thread loop s reads the staged row. */
static bool reads_stage(Emit *E, const IRStmt *s) {
  if (!E->st.buf || !ir_equal(s->lo, E->st.loop->lo) || !ir_equal(s->extent, E->st.loop->extent))
    return false;
  ExprList lds = {0};
  uncond_loads(E, s->body, &lds);
  VarSub v = {s->var, ir_var(E->c, E->st.canon)};
  for (int i = 0; i < lds.len; i++)
    if (lds.data[i]->buf == E->st.buf && ir_equal(var_sub(E->c, &v, lds.data[i]->idx[0]), E->st.pat))
      return true;
  return false;
}

/* The staged element of thread loop s into tc_sv: the first reader loads
 * and stages it, later ones read the stage (when the launch gave room). */
static void emit_stage_value(Emit *E, Buf *b, const IRStmt *s, int ind) {
  VarSub v = {E->st.canon, ir_var(E->c, s->var)};
  IRExpr *idx = var_sub(E->c, &v, E->st.pat);
  IRExpr *ld = ir_load(E->c, (Buffer *)E->st.buf, &idx, 1);
  const char *ct = ctype(E->st.buf->dtype);
  char *slot = expr_text(E, ir_sub(E->c, ir_var(E->c, s->var), s->lo));
  buf_indent(b, ind);
  buf_printf(b, "const %s tc_sv = ", ct);
  if (!E->st.first)
    buf_printf(b, "tc_st ? tc_row[%s] : ", slot);
  buf_printf(b, "%s[", E->st.buf->name);
  emit_subscript(E, b, ld->idx[0]);
  buf_puts(b, "];\n");
  if (E->st.first) {
    buf_indent(b, ind);
    buf_printf(b, "if (tc_st) tc_row[%s] = tc_sv;\n", slot);
  }
}

/* The variables e reads. */
static void collect_vars(Emit *E, const IRExpr *e, VarList *out) {
  if (!e)
    return;
  if (e->kind == IR_VAR && !in_list(out, e->var))
    vec_push(E->c->arena, out, e->var);
  for (int i = 0; i < e->nidx; i++)
    collect_vars(E, e->idx[i], out);
  for (int i = 0; i < e->nargs; i++)
    collect_vars(E, e->args[i], out);
  collect_vars(E, e->a, out);
  collect_vars(E, e->b, out);
  collect_vars(E, e->c, out);
}

static void flatten_list(Emit *E, IRStmt *const *list, int n, StmtList *out);

/* Whether s assigns v (S_ASSIGN) anywhere. */
static bool assigns(const void *v, const IRStmt *s) { return s->kind == S_ASSIGN && s->var == v; }

static bool stmt_assigns(const IRStmt *s, const IRVar *v) { return ir_stmt_any(s, assigns, v); }

/* Whether e is worth restaging (a math function or a division) and pure
 * over the row: its only load the staged element at `var`, no failure. */
typedef struct Restage {
  Emit *E;
  const IRVar *var;
  bool costly, ok;
} Restage;

static void restage_check(Restage *r, const IRExpr *e) {
  if (!e || !r->ok)
    return;
  if (e->kind == IR_FAIL)
    r->ok = false;
  if (e->kind == IR_LOAD) {
    VarSub v = {r->var, ir_var(r->E->c, r->E->st.canon)};
    r->ok &= e->buf == r->E->st.buf && ir_equal(var_sub(r->E->c, &v, e->idx[0]), r->E->st.pat);
    return;
  }
  if (e->kind == IR_CALL || (e->kind == IR_BIN && e->op == OP_DIV && dtype_info[e->type].is_float))
    r->costly = true;
  for (int i = 0; i < e->nargs; i++)
    restage_check(r, e->args[i]);
  restage_check(r, e->a);
  restage_check(r, e->b);
  restage_check(r, e->c);
}

/* Occurrences of e (over canon) in s's expressions. */
typedef struct Occur {
  Emit *E;
  const IRVar *var;
  IRExpr *pat;
  int n;
} Occur;

static bool occur_expr(void *st, const IRExpr *e) {
  Occur *o = st;
  if (e->kind == o->pat->kind && e->type == o->pat->type) {
    VarSub v = {o->var, ir_var(o->E->c, o->E->st.canon)};
    if (ir_equal(var_sub(o->E->c, &v, (IRExpr *)e), o->pat)) {
      o->n++;
      return false;
    }
  }
  return true;
}

/* Whether the value `pat` of the staged row is all that loop M reads of the
 * row: the staged loads outside its occurrences are none. */
static bool only_through(Emit *E, const IRStmt *M, IRExpr *pat) {
  Occur all = {E, M->var, E->st.pat, 0}, in_pat = {E, E->st.canon, E->st.pat, 0};
  IRExpr *ld = ir_load(E->c, (Buffer *)E->st.buf, &E->st.pat, 1);
  all.pat = ld;
  in_pat.pat = ld;
  ir_stmt_visit(M->body, NULL, occur_expr, &all);
  ir_expr_visit(pat, occur_expr, &in_pat);
  Occur uses = {E, M->var, pat, 0};
  ir_stmt_visit(M->body, NULL, occur_expr, &uses);
  return uses.n > 0 && all.n == uses.n * in_pat.n;
}

/* Candidate values: the subexpressions of e (over canon), largest first. */
static void restage_candidates(Emit *E, const IRStmt *M, IRExpr *e, ExprList *out) {
  if (!e || e->kind == IR_LOAD || e->kind == IR_VAR)
    return;
  if (e->type == E->st.buf->dtype) {
    Restage r = {E, M->var, false, true};
    restage_check(&r, e);
    if (r.ok && r.costly && ir_has_kind(e, IR_LOAD)) {
      VarSub v = {M->var, ir_var(E->c, E->st.canon)};
      vec_push(E->c->arena, out, var_sub(E->c, &v, e));
    }
  }
  for (int i = 0; i < e->nargs; i++)
    restage_candidates(E, M, e->args[i], out);
  restage_candidates(E, M, e->a, out);
  restage_candidates(E, M, e->b, out);
  restage_candidates(E, M, e->c, out);
}

static void restage_candidates_stmt(Emit *E, const IRStmt *M, const IRStmt *s, ExprList *out) {
  if (!s)
    return;
  if (s->kind == S_BLOCK)
    for (int i = 0; i < s->n; i++)
      restage_candidates_stmt(E, M, s->stmts[i], out);
  if (s->kind == S_DECL || s->kind == S_ASSIGN || s->kind == S_STORE)
    restage_candidates(E, M, s->value, out);
}

/* Chooses a value to restage: when the last two passes over the staged row
 * (not the first) both compute the same costly value of each element (a
 * pure function of the element and of locals neither they nor anything
 * between them assigns: softmax's exp(X - max)), and the last reads the row
 * through that value only, the first of them writes it over its element of
 * the stage and the last reads it there instead of computing it again (the
 * same operations on the same operands: the same bits). */
static void find_restage(Emit *E, IRStmt *rest) {
  E->st.rpat = NULL;
  E->st.rprod = E->st.rcons = NULL;
  if (!E->st.buf || !rest)
    return;
  StmtList flat = {0};
  flatten_list(E, &rest, 1, &flat);
  int idx[2] = {-1, -1}, nread = 0; /* the last two readers, and the count */
  for (int i = 0; i < flat.len; i++) {
    IRStmt *s = flat.data[i];
    if (s && s->kind == S_FOR && s->fkind == FOR_GPU_THREAD && reads_stage(E, s)) {
      idx[0] = idx[1];
      idx[1] = i;
      nread++;
    } else if (s && stmt_has_thread_loop(s)) {
      return; /* a reader out of the top level: keep it simple */
    }
  }
  if (nread < 3)
    return;
  const IRStmt *P = flat.data[idx[0]], *M = flat.data[idx[1]];
  ExprList cands = {0};
  restage_candidates_stmt(E, M, M->body, &cands);
  for (int k = 0; k < cands.len; k++) {
    IRExpr *pat = cands.data[k];
    Occur inP = {E, P->var, pat, 0};
    ir_stmt_visit(P->body, NULL, occur_expr, &inP);
    if (inP.n == 0 || !only_through(E, M, pat))
      continue;
    VarList vars = {0};
    collect_vars(E, pat, &vars);
    bool stable = true;
    for (int i = 0; i < vars.len && stable; i++)
      for (int j = idx[0]; j <= idx[1] && stable; j++)
        stable = !stmt_assigns(flat.data[j], vars.data[i]);
    if (!stable)
      continue;
    E->st.rpat = pat;
    E->st.rprod = P;
    E->st.rcons = M;
    return;
  }
}

/* The extent of the first thread loop in block scope, when a host
 * expression: the length of the rows. */
static const IRExpr *row_length(const IRStmt *s) {
  if (!s)
    return NULL;
  if (s->kind == S_FOR && s->fkind == FOR_GPU_THREAD)
    return is_host_expr(s->extent) ? s->extent : NULL;
  if (s->kind == S_FOR)
    return NULL;
  for (int i = 0; i < s->n; i++) {
    const IRExpr *e = row_length(s->stmts[i]);
    if (e)
      return e;
  }
  const IRExpr *e = row_length(s->then);
  return e ? e : row_length(s->els);
}

/* A ROWS kernel: one block per collapsed block-loop iteration; the host
 * sizes the block from the row length (about 32 elements a thread, 64 to
 * 1024 threads), and gives it shared memory for the staged row when the
 * row fits (then its later passes read the row on chip). */
static GpuStep *kernel_rows(Emit *E, IRStmt *root, const KernelShape *k) {
  int id = E->plan->nkernels++;
  begin_kernel(E, GK_ROWS);
  IRExpr *outer = outer_count(E, k);
  Buf b = {0};
  find_stage(E, root, k->rest);
  find_restage(E, unwrap(k->rest));
  if (E->st.buf) {
    const char *ct = ctype(E->st.buf->dtype);
    char *len = expr_text(E, E->st.loop->extent);
    buf_printf(&b, "  typedef typename tc_ix_of<tc_w>::t tc_ix;\n"
                   "  extern __shared__ __align__(16) unsigned char tc_dyn[];\n"
                   "  %s *tc_row = (%s *)tc_dyn + (tc_i64)threadIdx.y * (%s);\n"
                   "  const bool tc_st = (tc_u64)tc_dyn_smem() >= (tc_u64)(%s) * %d * blockDim.y;\n",
               ct, ct, len, len, dtype_info[E->st.buf->dtype].size);
  }
  buf_puts(&b, "  const tc_i64 tc_nb = ");
  emit_bare(E, &b, outer);
  buf_puts(&b, ";\n  for (tc_i64 tc_b = (tc_i64)blockIdx.x * blockDim.y + threadIdx.y; tc_b < tc_nb;"
               " tc_b += (tc_i64)gridDim.x * blockDim.y) {\n");
  emit_decompose(E, &b, k, "tc_b", 2);
  emit_body_of(E, &b, k->rest, 2, SC_BLOCK);
  barrier_if_dirty(E, &b, 2);
  buf_puts(&b, "  }\n");
  finish_kernel(E, id, 1024, &root, 1, &b, outer, NULL);
  GpuStep *s = new_step(E, GS_LAUNCH);
  s->kernel = id;
  s->gk = GK_ROWS;
  s->outer = outer;
  s->inner = row_length(k->rest);
  s->threads = ROW_THREADS;
  if (E->st.buf) {
    s->stage = E->st.loop->extent;
    s->stage_size = dtype_info[E->st.buf->dtype].size;
  }
  memset(&E->st, 0, sizeof E->st);
  return s;
}

/* ---- stencils: consecutive rows per thread ---- */

enum { STENCIL_ROWS = 8 }; /* block-loop iterations a stencil thread computes */

/* Distinct subscripts of buf's loads in e that use v. */
static void stencil_loads(Emit *E, const IRExpr *e, const IRVar *v, ExprList *out) {
  if (!e)
    return;
  if (e->kind == IR_LOAD && e->nidx == 1 && ir_uses_var(e->idx[0], v)) {
    bool seen = false;
    for (int i = 0; i < out->len && !seen; i++)
      seen = out->data[i]->buf == e->buf && ir_equal(out->data[i]->idx[0], e->idx[0]);
    if (!seen)
      vec_push(E->c->arena, out, (IRExpr *)e);
  }
  for (int i = 0; i < e->nidx; i++)
    stencil_loads(E, e->idx[i], v, out);
  for (int i = 0; i < e->nargs; i++)
    stencil_loads(E, e->args[i], v, out);
  stencil_loads(E, e->a, v, out);
  stencil_loads(E, e->b, v, out);
  stencil_loads(E, e->c, v, out);
}

/* The store of a POINTWISE kernel that is a stencil over its one block
 * loop: the thread loop's only statement, a plain store (not of float16,
 * bfloat16 or bool; no failure; not reading what it stores) whose value reads one
 * input at three or more subscripts that move with that loop (the blur's
 * rows y-1, y, y+1; the horizontal pass recomputed by the readers) — or NULL. */
static const IRStmt *stencil_store(Emit *E, const KernelShape *k, const IRStmt *t) {
  const IRStmt *st = unwrap(t->body);
  if (k->nblocks != 1 || !st || st->kind != S_STORE || st->nidx != 1)
    return NULL; /* (with several block loops, consecutive iterations may not
                    be consecutive rows: nothing would be shared) */
  tc_dtype dt = st->buf->dtype;
  if (dt == TC_FLOAT16 || dt == TC_BFLOAT16 || dt == TC_BOOL || st->value->type != dt ||
      ir_has_kind(st->value, IR_FAIL) || ir_loads_buf(st->value, st->buf))
    return NULL;
  ExprList lds = {0};
  stencil_loads(E, st->value, k->blocks[k->nblocks - 1]->var, &lds);
  for (int i = 0; i < lds.len; i++) {
    int n = 0;
    for (int j = 0; j < lds.len; j++)
      n += lds.data[j]->buf == lds.data[i]->buf;
    if (n >= 3)
      return st;
  }
  return NULL;
}

/* The block and thread variables of row `r` of a stencil thread's rows. */
static void emit_stencil_vars(Emit *E, Buf *b, const KernelShape *k, const IRStmt *t,
                              const char *r, int ind) {
  buf_indent(b, ind);
  buf_printf(b, "const tc_i64 tc_y = tc_y0 + %s;\n", r);
  emit_decompose(E, b, k, "tc_y", ind);
  buf_indent(b, ind);
  buf_printf(b, "const tc_i64 %s = ", t->var->name);
  emit_bare(E, b, ir_add(E->c, t->lo, ir_var(E->c, ir_new_var(E->c, "tc_x", VAR_LOCAL, TC_INT64))));
  buf_puts(b, ";\n");
}

/* A POINTWISE kernel for a stencil (stencil_store): each thread computes
 * STENCIL_ROWS consecutive iterations of the block loops at one x, all the
 * values before any store, so that the compiler loads each input element and
 * computes each shared subexpression (a row of the blur's horizontal pass)
 * once for the rows that read it: about 3 loads an output instead of 9.
 * The last, partial group of rows runs row by row. */
static GpuStep *kernel_stencil(Emit *E, IRStmt *root, const KernelShape *k, IRStmt *t,
                               const IRStmt *st) {
  int id = E->plan->nkernels++;
  begin_kernel(E, GK_POINTWISE);
  IRExpr *outer = outer_count(E, k);
  const char *vt = vtype(st->buf->dtype);
  Buf b = {0};
  buf_puts(&b, "  const tc_i64 tc_ny = ");
  emit_bare(E, &b, outer);
  buf_puts(&b, ";\n  const tc_i64 tc_nx = ");
  emit_bare(E, &b, t->extent);
  buf_printf(&b, ";\n  for (tc_i64 tc_y0 = ((tc_i64)blockIdx.y * blockDim.y + threadIdx.y) * %d; "
                 "tc_y0 < tc_ny; tc_y0 += (tc_i64)gridDim.y * blockDim.y * %d) {\n",
             STENCIL_ROWS, STENCIL_ROWS);
  buf_puts(&b, "    for (tc_i64 tc_x = (tc_i64)blockIdx.x * blockDim.x + threadIdx.x; tc_x < tc_nx; "
               "tc_x += (tc_i64)gridDim.x * blockDim.x) {\n");
  buf_printf(&b, "      if (tc_y0 + %d <= tc_ny) {\n", STENCIL_ROWS);
  buf_printf(&b, "        %s tc_s[%d];\n", vt, STENCIL_ROWS);
  /* the values in straight-line code (NVRTC merges their common loads
   * there, not across a `#pragma unroll` loop's copies), then the stores */
  for (int r = 0; r < STENCIL_ROWS; r++) {
    buf_puts(&b, "        {\n");
    emit_stencil_vars(E, &b, k, t, arena_printf(E->c->arena, "%d", r), 5);
    buf_indent(&b, 5);
    buf_printf(&b, "tc_s[%d] = ", r);
    emit_bare(E, &b, st->value);
    buf_puts(&b, ";\n        }\n");
  }
  buf_puts(&b, "        #pragma unroll\n");
  buf_printf(&b, "        for (int tc_r = 0; tc_r < %d; tc_r++) {\n", STENCIL_ROWS);
  emit_stencil_vars(E, &b, k, t, "tc_r", 5);
  buf_indent(&b, 5);
  buf_printf(&b, "%s[", st->buf->name);
  emit_subscript(E, &b, st->idx[0]);
  buf_puts(&b, "] = tc_s[tc_r];\n        }\n");
  buf_puts(&b, "      } else {\n");
  buf_printf(&b, "        for (int tc_r = 0; tc_y0 + tc_r < tc_ny; tc_r++) {\n");
  emit_stencil_vars(E, &b, k, t, "tc_r", 5);
  emit_body_of(E, &b, t->body, 5, SC_THREAD);
  buf_puts(&b, "        }\n      }\n    }\n  }\n");
  finish_kernel(E, id, 256, &root, 1, &b, outer, NULL);
  GpuStep *s = pointwise_step(E, id, outer, t);
  s->rows = STENCIL_ROWS;
  return s;
}

/* A SINGLE kernel: statements run by one block. */
static GpuStep *kernel_single(Emit *E, IRStmt **list, int n) {
  int id = E->plan->nkernels++;
  begin_kernel(E, GK_SINGLE);
  bool coop = false;
  for (int i = 0; i < n; i++)
    coop |= stmt_has_thread_loop(list[i]);
  int threads = coop ? ROW_THREADS : 1;
  Buf b = {0};
  emit_list(E, &b, list, n, 1, SC_BLOCK);
  finish_kernel(E, id, threads, list, n, &b, NULL, NULL);
  GpuStep *s = new_step(E, GS_LAUNCH);
  s->kernel = id;
  s->gk = GK_SINGLE;
  s->threads = threads;
  return s;
}

/* Whether the thread loop t can run POINTWISE: no collective, no barrier. */
static bool pointwise_ok(Emit *E, const IRStmt *t, const KernelShape *k) {
  if (!t || t->kind != S_FOR || t->fkind != FOR_GPU_THREAD)
    return false;
  if (!is_host_expr(t->extent) || !is_host_expr(t->lo))
    return false;
  for (int i = 0; i < k->nblocks; i++)
    if (!is_host_expr(k->blocks[i]->extent))
      return false;
  VarList inner = {0}, outer = {0};
  collect_decls(E, t->body, &inner);
  collect_outer_assigns(E, t->body, &inner, &outer);
  return outer.len == 0;
}

/* ---- the tiled contraction ---- */

enum { TILE = 128, TILE_K = 8, SUB = 8, TILED_MINB = 1 }; /* blocks per SM asked of ptxas */ /* 16 x 16 threads, 8 x 8 outputs each */

typedef struct Tiled {
  const GpuHint *h;
  IRStmt *loops[4 * TC_MAX_RANK]; /* the kernel's loops, outermost first */
  int nloops;
  IRStmt *mloop, *nloop, *kloop;
  const IRStmt *decl;             /* acc = init */
  IRStmt **epi;                   /* after the reduction */
  int nepi;
  const IRExpr *rhs, *pa, *pb;    /* acc = acc + rhs; pa, pb: its factors */
} Tiled;

static const IRExpr *strip(const IRExpr *e) {
  while (e && e->kind == IR_CAST)
    e = e->a;
  return e;
}

/* Finds the hinted contraction in the kernel at `root`, or false. */
static bool find_tiled(Emit *E, IRStmt *root, Tiled *t) {
  memset(t, 0, sizeof *t);
  for (const GpuHint *h = E->f->gpu; h && !t->h; h = h->next)
    if (h->root == root->var)
      t->h = h;
  if (!t->h)
    return false;
  IRStmt *s = unwrap(root);
  while (is_gpu_loop(s) && t->nloops < (int)(sizeof t->loops / sizeof t->loops[0])) {
    t->loops[t->nloops++] = s;
    if (s->var == t->h->m)
      t->mloop = s;
    if (s->var == t->h->n)
      t->nloop = s;
    s = unwrap(s->body);
  }
  if (!t->mloop || !t->nloop || !s || s->kind != S_BLOCK || s->n < 3)
    return false;
  for (int i = 0; i < t->nloops; i++)
    if (!is_host_expr(t->loops[i]->lo) || !is_host_expr(t->loops[i]->extent))
      return false;
  t->decl = s->stmts[0];
  t->kloop = s->stmts[1];
  IRStmt *u = unwrap(t->kloop->body);
  if (t->decl->kind != S_DECL || t->decl->var != t->h->acc || t->kloop->kind != S_FOR ||
      t->kloop->var != t->h->k || !is_host_expr(t->kloop->extent) ||
      !is_host_expr(t->kloop->lo) || !u || u->kind != S_ASSIGN || u->var != t->h->acc ||
      u->value->kind != IR_BIN || u->value->op != OP_ADD || !is_var_expr(u->value->a, t->h->acc))
    return false;
  t->rhs = u->value->b;
  const IRExpr *p = strip(t->rhs);
  if (!p || p->kind != IR_BIN || p->op != OP_MUL)
    return false;
  bool swap = ir_uses_var(p->a, t->h->n);
  t->pa = swap ? p->b : p->a;
  t->pb = swap ? p->a : p->b;
  if (ir_uses_var(t->pa, t->h->n) || ir_uses_var(t->pb, t->h->m) ||
      ir_has_kind(t->pa, IR_FAIL) || ir_has_kind(t->pb, IR_FAIL) ||
      ir_uses_var(t->decl->value, t->h->k))
    return false;
  t->epi = s->stmts + 2;
  t->nepi = s->n - 2;
  for (int i = 0; i < t->nepi; i++)
    if (stmt_uses_var(t->epi[i], t->h->k) || stmt_has_thread_loop(t->epi[i]) ||
        t->epi[i]->kind == S_FOR)
      return false;
  return true;
}

/* rhs with the factors (by identity) replaced by variables. */
typedef struct Factors {
  const IRExpr *pa, *pb;
  IRExpr *va, *vb;
} Factors;

static IRExpr *subst_factors(Ctx *c, void *st, IRExpr *e) {
  Factors *f = st;
  if (e == f->pa)
    return f->va;
  if (e == f->pb)
    return f->vb;
  return ir_mutate_expr_children(c, e, subst_factors, st);
}

/* `var = lo + tile * TILE + offset`, declared with the IR's name. */
static void emit_tile_var(Emit *E, Buf *b, const IRStmt *L, const char *tile, const char *off,
                          int ind) {
  buf_indent(b, ind);
  buf_printf(b, "const tc_i64 %s = ", L->var->name);
  emit_expr(E, b, L->lo);
  buf_printf(b, " + %s * %d + %s;\n", tile, TILE, off);
}

/* The element (tc_r, tc_kk) of fetch q of one operand's tile: k-fast or
 * m/n-fast, so that consecutive threads read consecutive addresses. */
static void emit_tile_coords(Buf *b, bool kfast, int ind) {
  buf_indent(b, ind);
  if (kfast)
    buf_printf(b, "const int tc_l = threadIdx.x + 256 * tc_q, tc_r = tc_l / %d, tc_kk = tc_l %% %d;\n",
               TILE_K, TILE_K);
  else
    buf_printf(b, "const int tc_l = threadIdx.x + 256 * tc_q, tc_r = tc_l %% %d, tc_kk = tc_l / %d;\n",
               TILE, TILE);
}

/* Fetches one operand's tile at k offset `kbase` into registers `regs`. */
static void emit_tile_fetch(Emit *E, Buf *b, const IRStmt *L, const IRStmt *K, const IRExpr *p,
                            bool kfast, const char *regs, const char *tile, const char *kbase,
                            int ind) {
  buf_indent(b, ind);
  buf_printf(b, "#pragma unroll\n");
  buf_indent(b, ind);
  buf_printf(b, "for (int tc_q = 0; tc_q < %d; tc_q++) {\n", TILE * TILE_K / 256);
  emit_tile_coords(b, kfast, ind + 1);
  emit_tile_var(E, b, L, tile, "tc_r", ind + 1);
  buf_indent(b, ind + 1);
  buf_printf(b, "const tc_i64 %s = ", K->var->name);
  emit_expr(E, b, K->lo);
  buf_printf(b, " + %s + tc_kk;\n", kbase);
  buf_indent(b, ind + 1);
  buf_printf(b, "%s[tc_q] = (%s < ", regs, L->var->name);
  emit_end(E, b, L);
  buf_printf(b, " && %s < ", K->var->name);
  emit_end(E, b, K);
  buf_puts(b, ") ? ");
  emit_expr(E, b, p);
  buf_printf(b, " : (%s)0;\n", vtype(p->type));
  buf_indent(b, ind);
  buf_puts(b, "}\n");
}

/* Registers `regs` into the shared tile `arr`. */
static void emit_tile_put(Buf *b, bool kfast, const char *arr, const char *regs, int ind) {
  buf_indent(b, ind);
  buf_printf(b, "#pragma unroll\n");
  buf_indent(b, ind);
  buf_printf(b, "for (int tc_q = 0; tc_q < %d; tc_q++) {\n", TILE * TILE_K / 256);
  emit_tile_coords(b, kfast, ind + 1);
  buf_indent(b, ind + 1);
  buf_printf(b, "%s[tc_kk][tc_r] = %s[tc_q];\n", arr, regs);
  buf_indent(b, ind);
  buf_puts(b, "}\n");
}

/* Row or column `sub` (0..7) of a thread's 8: 4 at 4 * t, 4 at 64 + 4 * t,
 * so that a quarter warp reads 128 consecutive bytes of shared memory. */
#define SUB_OFF(t, sub) "((" sub ") & 4 ? 64 : 0) + 4 * " t " + ((" sub ") & 3)"

/* The loops around a tile: the batch loops (every loop of the nest but m and
 * n) collapsed onto blockIdx.z, the row and column tiles on blockIdx.y and
 * .x, all grid-stride; tc_nk is k's extent, in steps of `kstep` when that is
 * above 1.  Returns the number of batch iterations (NULL: one), which the
 * launch step needs. */
static IRExpr *emit_tile_loops(Emit *E, Buf *b, const Tiled *t, int kstep) {
  KernelShape batch = {{0}, 0, NULL};
  for (int i = 0; i < t->nloops; i++)
    if (t->loops[i] != t->mloop && t->loops[i] != t->nloop)
      batch.blocks[batch.nblocks++] = t->loops[i];
  IRExpr *nb = outer_count(E, &batch);
  buf_puts(b, "  const tc_i64 tc_tm = (");
  emit_expr(E, b, t->mloop->extent);
  buf_printf(b, " + %d) / %d, tc_tn = (", TILE - 1, TILE);
  emit_expr(E, b, t->nloop->extent);
  buf_printf(b, " + %d) / %d, tc_nk = ", TILE - 1, TILE);
  if (kstep > 1)
    buf_puts(b, "(");
  emit_expr(E, b, t->kloop->extent);
  if (kstep > 1)
    buf_printf(b, " + %d) / %d", kstep - 1, kstep);
  buf_puts(b, ", tc_nz = ");
  if (nb)
    emit_expr(E, b, nb);
  else
    buf_puts(b, "1");
  buf_puts(b, ";\n  for (tc_i64 tc_z = blockIdx.z; tc_z < tc_nz; tc_z += gridDim.z) {\n");
  emit_decompose(E, b, &batch, "tc_z", 2);
  buf_puts(b, "  for (tc_i64 tc_bm = blockIdx.y; tc_bm < tc_tm; tc_bm += gridDim.y) {\n"
              "    for (tc_i64 tc_bn = blockIdx.x; tc_bn < tc_tn; tc_bn += gridDim.x) {\n");
  return nb;
}

/* The store of one output of the tile, its m and n already set: when both
 * are in range, acc = init + the register `cref` (of type `ct`), then the
 * fused epilogue statements. */
static void emit_tile_store(Emit *E, Buf *b, const Tiled *t, const char *cref, tc_dtype ct,
                            int ind) {
  Ctx *c = E->c;
  buf_printf(b, "%*sif (%s < ", 2 * ind, "", t->mloop->var->name);
  emit_end(E, b, t->mloop);
  buf_printf(b, " && %s < ", t->nloop->var->name);
  emit_end(E, b, t->nloop);
  buf_printf(b, ") {\n%*s%s &tc_cv = %s;\n", 2 * ind + 2, "", vtype(ct), cref);
  IRVar *vc = ir_new_var(c, "tc_cv", VAR_LOCAL, ct);
  const IRExpr *init = t->decl->value;
  bool zero = init->kind == IR_FLOAT && init->fval == 0 && !signbit(init->fval);
  IRStmt *d = ir_decl(c, (IRVar *)t->h->acc,
                      zero ? ir_var(c, vc) : ir_bin(c, OP_ADD, (IRExpr *)init, ir_var(c, vc)));
  emit_list(E, b, &d, 1, ind + 1, SC_THREAD);
  emit_list(E, b, t->epi, t->nepi, ind + 1, SC_THREAD);
  buf_printf(b, "%*s}\n", 2 * ind, "");
}

/* The launch of a tiled kernel: TILE x TILE outputs a block of 256 threads. */
static GpuStep *tiled_step(Emit *E, int id, IRExpr *nb, const Tiled *t) {
  GpuStep *st = new_step(E, GS_LAUNCH);
  st->kernel = id;
  st->gk = GK_TILED;
  st->outer = nb;
  st->inner = t->nloop->extent;
  st->mid = t->mloop->extent;
  st->threads = 256;
  st->tile_m = st->tile_n = TILE;
  return st;
}

static GpuStep *kernel_tiled(Emit *E, IRStmt *root, Tiled *t) {
  Ctx *c = E->c;
  int id = E->plan->nkernels++;
  begin_kernel(E, GK_TILED);
  tc_dtype at = t->h->acc->type, ta = t->pa->type, tb = t->pb->type;
  int per = TILE * TILE_K / 256;
  Buf b = {0};
  buf_printf(&b,
             "  __shared__ __align__(16) %s tc_As[%d][%d];\n"
             "  __shared__ __align__(16) %s tc_Bs[%d][%d];\n"
             "  const int tc_tx = threadIdx.x %% 16, tc_ty = threadIdx.x / 16;\n",
             vtype(ta), TILE_K, TILE + 4, vtype(tb), TILE_K, TILE + 4);
  IRExpr *nb = emit_tile_loops(E, &b, t, 1);
  buf_printf(&b, "      %s tc_c[%d][%d];\n      %s tc_ra[%d];\n      %s tc_rb[%d];\n",
             vtype(at), SUB, SUB, vtype(ta), per, vtype(tb), per);
  buf_printf(&b, "#pragma unroll\n      for (int tc_i = 0; tc_i < %d; tc_i++)\n"
                 "#pragma unroll\n        for (int tc_j = 0; tc_j < %d; tc_j++) tc_c[tc_i][tc_j] = ",
             SUB, SUB);
  emit_expr(E, &b, red_identity(c, OP_ADD, at));
  buf_puts(&b, ";\n");
  /* the first tile, then each step: fetch the next tile into registers,
   * multiply the one in shared memory, store the next */
  emit_tile_fetch(E, &b, t->mloop, t->kloop, t->pa, t->h->a_kfast, "tc_ra", "tc_bm", "0", 3);
  emit_tile_fetch(E, &b, t->nloop, t->kloop, t->pb, t->h->b_kfast, "tc_rb", "tc_bn", "0", 3);
  emit_tile_put(&b, t->h->a_kfast, "tc_As", "tc_ra", 3);
  emit_tile_put(&b, t->h->b_kfast, "tc_Bs", "tc_rb", 3);
  buf_printf(&b, "      __syncthreads();\n"
                 "      for (tc_i64 tc_k0 = 0; tc_k0 < tc_nk; tc_k0 += %d) {\n"
                 "        const bool tc_more = tc_k0 + %d < tc_nk;\n"
                 "        if (tc_more) {\n",
             TILE_K, TILE_K);
  char kn[32];
  snprintf(kn, sizeof kn, "tc_k0 + %d", TILE_K);
  emit_tile_fetch(E, &b, t->mloop, t->kloop, t->pa, t->h->a_kfast, "tc_ra", "tc_bm", kn, 5);
  emit_tile_fetch(E, &b, t->nloop, t->kloop, t->pb, t->h->b_kfast, "tc_rb", "tc_bn", kn, 5);
  buf_puts(&b, "        }\n");
  /* the inner product, in registers */
  IRVar *va = ir_new_var(c, "tc_av", VAR_LOCAL, ta), *vb = ir_new_var(c, "tc_bv", VAR_LOCAL, tb);
  IRVar *vc = ir_new_var(c, "tc_cv", VAR_LOCAL, at);
  Factors fs = {t->pa, t->pb, ir_var(c, va), ir_var(c, vb)};
  IRExpr *r = subst_factors(c, &fs, (IRExpr *)t->rhs);
  bool fma = (at == TC_FLOAT32 || at == TC_FLOAT64) && r->kind == IR_BIN && r->op == OP_MUL &&
             r->type == at && strip(r->a) == r->a && strip(r->b) == r->b;
  buf_printf(&b,
             "#pragma unroll\n"
             "        for (int tc_kk = 0; tc_kk < %d; tc_kk++) {\n"
             "          %s tc_a[%d];\n          %s tc_b[%d];\n",
             TILE_K, vtype(ta), SUB, vtype(tb), SUB);
  for (int o = 0; o < 2; o++) { /* two float4 reads per operand, or scalar reads */
    const char *arr = o ? "tc_Bs" : "tc_As", *reg = o ? "tc_b" : "tc_a", *tv = o ? "tc_tx" : "tc_ty";
    if ((o ? tb : ta) == TC_FLOAT32) {
      for (int h = 0; h < 2; h++)
        buf_printf(&b,
                   "          { const float4 tc_v = *(const float4 *)&%s[tc_kk][%d + 4 * %s];\n"
                   "            %s[%d] = tc_v.x; %s[%d] = tc_v.y; %s[%d] = tc_v.z; %s[%d] = tc_v.w; }\n",
                   arr, 64 * h, tv, reg, 4 * h, reg, 4 * h + 1, reg, 4 * h + 2, reg, 4 * h + 3);
    } else {
      buf_printf(&b,
                 "#pragma unroll\n"
                 "          for (int tc_s = 0; tc_s < %d; tc_s++) %s[tc_s] = %s[tc_kk][" SUB_OFF("%s", "tc_s") "];\n",
                 SUB, reg, arr, tv);
    }
  }
  buf_printf(&b,
             "#pragma unroll\n"
             "          for (int tc_i = 0; tc_i < %d; tc_i++)\n"
             "#pragma unroll\n"
             "            for (int tc_j = 0; tc_j < %d; tc_j++) {\n",
             SUB, SUB);
  if (fma) {
    buf_printf(&b, "              tc_c[tc_i][tc_j] = %s(tc_a[tc_i], tc_b[tc_j], tc_c[tc_i][tc_j]);\n",
               at == TC_FLOAT32 ? "__fmaf_rn" : "__fma_rn");
  } else {
    buf_printf(&b,
               "              const %s tc_av = tc_a[tc_i];\n"
               "              const %s tc_bv = tc_b[tc_j];\n"
               "              %s &tc_cv = tc_c[tc_i][tc_j];\n              tc_cv = ",
               vtype(ta), vtype(tb), vtype(at));
    emit_bare(E, &b, ir_bin(c, OP_ADD, ir_var(c, vc), r));
    buf_puts(&b, ";\n");
  }
  buf_puts(&b, "            }\n        }\n        __syncthreads();\n        if (tc_more) {\n");
  emit_tile_put(&b, t->h->a_kfast, "tc_As", "tc_ra", 5);
  emit_tile_put(&b, t->h->b_kfast, "tc_Bs", "tc_rb", 5);
  buf_puts(&b, "          __syncthreads();\n        }\n      }\n");
  /* the epilogue, per output */
  buf_printf(&b,
             "#pragma unroll\n      for (int tc_i = 0; tc_i < %d; tc_i++)\n"
             "#pragma unroll\n        for (int tc_j = 0; tc_j < %d; tc_j++) {\n",
             SUB, SUB);
  emit_tile_var(E, &b, t->mloop, "tc_bm", SUB_OFF("tc_ty", "tc_i"), 5);
  emit_tile_var(E, &b, t->nloop, "tc_bn", SUB_OFF("tc_tx", "tc_j"), 5);
  emit_tile_store(E, &b, t, "tc_c[tc_i][tc_j]", at, 5);
  buf_puts(&b, "        }\n    }\n  }\n  }\n");
  finish_kernel_minb(E, id, 256, TILED_MINB, &root, 1, &b, nb, NULL);
  return tiled_step(E, id, nb, t);
}

/* ---- the tensor-core contraction ---- */

/* A TILED contraction whose product is of two float16 (or two bfloat16)
 * loads, widened to a float32 accumulator, runs on the tensor cores
 * (mma.sync m16n8k16, sm_80 and later): the same 128x128 output tiles and
 * grid, k in steps of 32 through two shared-memory stages (the next step's
 * copies in flight while the tensor cores work on this one).  Each of the 8
 * warps owns 64x32 outputs: 4x4 mma tiles of f32 accumulators.  An operand
 * tile is kept with its fast dimension contiguous: [m or n][k] when its
 * last subscript is k (fragments by ldmatrix), else [k][m or n] (ldmatrix
 * .trans); rows are padded by 16 bytes so that the 8 rows an ldmatrix
 * reads fall in distinct banks.  A thread fills 8 consecutive elements of
 * a row at a time: one 16-byte cp.async when they are in range and
 * contiguous and aligned in memory (checked at run time, where the
 * subscript is linear in that dimension), else element by element with
 * zeros outside the ranges.  Products of 16-bit floats are exact in f32,
 * so this differs from the SIMT kernel only in the order of the sums. */

enum { MMA_K = 32, MMA_MINB = 2 };

static const char mma_text[] =
    "#ifndef TC_MMA_DEFS\n"
    "#define TC_MMA_DEFS\n"
    "__device__ __forceinline__ unsigned tc_saddr(const void *p) {\n"
    "  return (unsigned)__cvta_generic_to_shared(p);\n"
    "}\n"
    "__device__ __forceinline__ void tc_cp16(unsigned dst, const void *src) {\n"
    "  asm volatile(\"cp.async.cg.shared.global [%0], [%1], 16;\\n\" :: \"r\"(dst), \"l\"(src) : \"memory\");\n"
    "}\n"
    "__device__ __forceinline__ void tc_cp_commit(void) {\n"
    "  asm volatile(\"cp.async.commit_group;\\n\" ::: \"memory\");\n"
    "}\n"
    "__device__ __forceinline__ void tc_cp_wait1(void) {\n"
    "  asm volatile(\"cp.async.wait_group 1;\\n\" ::: \"memory\");\n"
    "}\n"
    "__device__ __forceinline__ void tc_ldm4(unsigned *r, unsigned addr) {\n"
    "  asm volatile(\"ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\\n\"\n"
    "               : \"=r\"(r[0]), \"=r\"(r[1]), \"=r\"(r[2]), \"=r\"(r[3]) : \"r\"(addr) : \"memory\");\n"
    "}\n"
    "__device__ __forceinline__ void tc_ldm4t(unsigned *r, unsigned addr) {\n"
    "  asm volatile(\"ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\\n\"\n"
    "               : \"=r\"(r[0]), \"=r\"(r[1]), \"=r\"(r[2]), \"=r\"(r[3]) : \"r\"(addr) : \"memory\");\n"
    "}\n"
    "#define TC_MMA(NAME, T) \\\n"
    "__device__ __forceinline__ void NAME(float *d, const unsigned *a, const unsigned *b) { \\\n"
    "  asm(\"mma.sync.aligned.m16n8k16.row.col.f32.\" T \".\" T \".f32 \" \\\n"
    "      \"{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\\n\" \\\n"
    "      : \"+f\"(d[0]), \"+f\"(d[1]), \"+f\"(d[2]), \"+f\"(d[3]) \\\n"
    "      : \"r\"(a[0]), \"r\"(a[1]), \"r\"(a[2]), \"r\"(a[3]), \"r\"(b[0]), \"r\"(b[1])); \\\n"
    "}\n"
    "TC_MMA(tc_mma_bf16, \"bf16\")\n"
    "TC_MMA(tc_mma_f16, \"f16\")\n"
    "#endif\n";

/* The load of a 16-bit float that p is (widened to float32, or not). */
static const IRExpr *half_load(const IRExpr *p) {
  if (p->kind == IR_CAST && p->type == TC_FLOAT32)
    p = p->a;
  if (p->kind != IR_LOAD || p->nidx != 1 || p->type != p->buf->dtype)
    return NULL;
  return p->buf->dtype == TC_FLOAT16 || p->buf->dtype == TC_BFLOAT16 ? p : NULL;
}

/* Whether t (find_tiled's) multiplies two loads of one 16-bit float type
 * into a float32 sum: what the tensor cores compute exactly. */
static bool is_mma(const Tiled *t) {
  const IRExpr *r = t->rhs, *a = half_load(t->pa), *b = half_load(t->pb);
  return t->h->acc->type == TC_FLOAT32 && r->kind == IR_BIN && r->op == OP_MUL &&
         r->type == TC_FLOAT32 && a && b && a->buf->dtype == b->buf->dtype;
}

/* Whether integer e is affine in u and v: sums of terms free of both and of
 * u or v times factors free of both (coefficients that stay fixed while a
 * tile is filled). */
static bool is_affine2(const IRExpr *e, const IRVar *u, const IRVar *v) {
  bool has_u = ir_uses_var(e, u), has_v = ir_uses_var(e, v);
  if ((!has_u && !has_v) || is_var_expr(e, u) || is_var_expr(e, v))
    return true;
  if (e->kind == IR_CAST)
    return dtype_info[e->type].is_int && dtype_info[e->a->type].is_int &&
           dtype_info[e->type].bits == 64 && is_affine2(e->a, u, v);
  if (e->kind == IR_UN)
    return e->op == OP_NEG && is_affine2(e->a, u, v);
  if (e->kind != IR_BIN)
    return false;
  if (e->op == OP_ADD || e->op == OP_SUB)
    return is_affine2(e->a, u, v) && is_affine2(e->b, u, v);
  if (e->op != OP_MUL)
    return false;
  bool a_free = !ir_uses_var(e->a, u) && !ir_uses_var(e->a, v);
  bool b_free = !ir_uses_var(e->b, u) && !ir_uses_var(e->b, v);
  return (a_free && is_affine2(e->b, u, v)) || (b_free && is_affine2(e->a, u, v));
}

/* One operand of the tensor-core kernel. */
typedef struct MmaOperand {
  const IRExpr *load;  /* the 16-bit load */
  const IRStmt *L, *K; /* its m (or n) loop, the k loop */
  const char *arr, *tile, *tag;
  bool kfast;          /* shared tile [m][k] (else [k][m]) */
  bool affine;         /* its subscript is affine in m and k: 16-byte copies */
} MmaOperand;

/* `DST = <o's subscript>`, with F's variable at `at` when not NULL. */
static void emit_index_at(Emit *E, Buf *b, const MmaOperand *o, const IRStmt *F, const char *at,
                          const char *dst, int ind) {
  buf_indent(b, ind);
  if (at)
    buf_printf(b, "{ const tc_i64 tc_f = %s; const tc_i64 %s = tc_f; ", at, F->var->name);
  buf_printf(b, "%s = ", dst);
  emit_subscript(E, b, o->load->idx[0]);
  buf_puts(b, at ? "; }\n" : ";\n");
}

/* The run of 8 elements a thread fills (q: its first or second) at row
 * tc_r, k offset tc_kk of the tile, and the loops' variables there (k from
 * `kbase`). */
static void emit_mma_run(Emit *E, Buf *b, const MmaOperand *o, const char *kbase, int ind) {
  buf_indent(b, ind);
  if (o->kfast)
    buf_puts(b, "const int tc_l = threadIdx.x + 256 * tc_q, tc_r = tc_l >> 2, tc_kk = (tc_l & 3) * 8;\n");
  else
    buf_puts(b, "const int tc_l = threadIdx.x + 256 * tc_q, tc_kk = tc_l >> 4, tc_r = (tc_l & 15) * 8;\n");
  emit_tile_var(E, b, o->L, o->tile, "tc_r", ind);
  buf_indent(b, ind);
  buf_printf(b, "const tc_i64 %s = ", o->K->var->name);
  emit_expr(E, b, o->K->lo);
  buf_printf(b, " + %s + tc_kk;\n", kbase);
}

/* Per tile, where the subscript is affine: for each of the thread's runs,
 * its offset at the first k step (tc_o<tag>), whether it is in range along
 * m (or n), contiguous and 16-byte aligned (tc_ok<tag>), and the offset's
 * step per k step (tc_d<tag>). */
static void emit_mma_setup(Emit *E, Buf *b, const MmaOperand *o, int ind) {
  if (!o->affine)
    return;
  const IRStmt *F = o->kfast ? o->K : o->L;
  char at[256];
  buf_indent(b, ind);
  buf_printf(b, "tc_i64 tc_o%s[2], tc_d%s = 0;\n", o->tag, o->tag);
  buf_indent(b, ind);
  buf_printf(b, "bool tc_ok%s[2];\n", o->tag);
  buf_indent(b, ind);
  buf_puts(b, "#pragma unroll\n");
  buf_indent(b, ind);
  buf_puts(b, "for (int tc_q = 0; tc_q < 2; tc_q++) {\n");
  emit_mma_run(E, b, o, "0", ind + 1);
  buf_indent(b, ind + 1);
  buf_puts(b, "tc_i64 tc_i7;\n");
  char dst[32];
  snprintf(dst, sizeof dst, "tc_o%s[tc_q]", o->tag);
  emit_index_at(E, b, o, F, NULL, dst, ind + 1);
  snprintf(at, sizeof at, "%s + 7", F->var->name);
  emit_index_at(E, b, o, F, at, "tc_i7", ind + 1);
  snprintf(at, sizeof at, "%s + %d", o->K->var->name, MMA_K);
  snprintf(dst, sizeof dst, "tc_d%s", o->tag);
  emit_index_at(E, b, o, o->K, at, dst, ind + 1);
  buf_indent(b, ind + 1);
  buf_printf(b, "tc_d%s -= tc_o%s[tc_q];\n", o->tag, o->tag);
  buf_indent(b, ind + 1);
  buf_printf(b, "tc_ok%s[tc_q] = %s%s < ", o->tag, o->L->var->name, o->kfast ? "" : " + 7");
  emit_end(E, b, o->L);
  buf_printf(b, " && (tc_u64)(tc_i7 - tc_o%s[tc_q]) == 7 && "
                "((unsigned long long)(%s + tc_o%s[tc_q]) & 15) == 0;\n",
             o->tag, o->load->buf->name, o->tag);
  buf_indent(b, ind);
  buf_puts(b, "}\n");
}

/* Fills shared stage `stage` of o's tile with k step `step` (k from
 * `kbase`): 2 runs of 8 elements per thread, each one 16-byte cp.async
 * (tc_ok) or 8 loads, zero out of range. */
static void emit_mma_fetch(Emit *E, Buf *b, const MmaOperand *o, const char *stage,
                           const char *step, const char *kbase, int ind) {
  const IRStmt *F = o->kfast ? o->K : o->L;
  const char *buf = o->load->buf->name;
  buf_indent(b, ind);
  buf_puts(b, "#pragma unroll\n");
  buf_indent(b, ind);
  buf_puts(b, "for (int tc_q = 0; tc_q < 2; tc_q++) {\n");
  emit_mma_run(E, b, o, kbase, ind + 1);
  buf_indent(b, ind + 1);
  if (o->kfast)
    buf_printf(b, "tc_u16 *tc_dst = &%s[%s][tc_r][tc_kk];\n", o->arr, stage);
  else
    buf_printf(b, "tc_u16 *tc_dst = &%s[%s][tc_kk][tc_r];\n", o->arr, stage);
  buf_indent(b, ind + 1);
  if (o->affine) {
    /* the offset is o + step * d modulo 2^64 (2^32 in the narrow variant,
     * where every offset in range fits in int32) */
    buf_printf(b, "if (tc_ok%s[tc_q] && %s%s < ", o->tag, o->K->var->name, o->kfast ? " + 7" : "");
    emit_end(E, b, o->K);
    buf_printf(b, ") {\n");
    buf_indent(b, ind + 2);
    buf_printf(b, "const tc_u64 tc_u = (tc_u64)tc_o%s[tc_q] + (tc_u64)(%s) * (tc_u64)tc_d%s;\n",
               o->tag, step, o->tag);
    buf_indent(b, ind + 2);
    buf_printf(b, "tc_cp16(tc_saddr(tc_dst), %s + (tc_w ? (tc_i64)tc_u : (tc_i64)(tc_i32)(tc_u32)tc_u));\n",
               buf);
    buf_indent(b, ind + 1);
    buf_puts(b, "} else ");
  }
  buf_puts(b, "{\n");
  buf_indent(b, ind + 2);
  buf_puts(b, "unsigned tc_e[8];\n");
  buf_indent(b, ind + 2);
  buf_puts(b, "#pragma unroll\n");
  buf_indent(b, ind + 2);
  buf_printf(b, "for (int tc_j = 0; tc_j < 8; tc_j++) {\n");
  buf_indent(b, ind + 3);
  buf_printf(b, "const tc_i64 tc_f = %s + tc_j;\n", F->var->name);
  buf_indent(b, ind + 3);
  buf_printf(b, "const tc_i64 %s = tc_f;\n", F->var->name);
  buf_indent(b, ind + 3);
  buf_printf(b, "tc_e[tc_j] = (%s < ", o->L->var->name);
  emit_end(E, b, o->L);
  buf_printf(b, " && %s < ", o->K->var->name);
  emit_end(E, b, o->K);
  buf_printf(b, ") ? (unsigned)%s[", buf);
  emit_subscript(E, b, o->load->idx[0]);
  buf_puts(b, "] : 0u;\n");
  buf_indent(b, ind + 2);
  buf_puts(b, "}\n");
  buf_indent(b, ind + 2);
  buf_puts(b, "*(uint4 *)tc_dst = make_uint4(tc_e[0] | tc_e[1] << 16, tc_e[2] | tc_e[3] << 16,\n");
  buf_indent(b, ind + 2);
  buf_puts(b, "                              tc_e[4] | tc_e[5] << 16, tc_e[6] | tc_e[7] << 16);\n");
  buf_indent(b, ind + 1);
  buf_puts(b, "}\n");
  buf_indent(b, ind);
  buf_puts(b, "}\n");
}

/* ldmatrix addresses of warp tile `sub` (0..3) at k offset tc_kk of stage
 * tc_s: A's four 8x8 pieces (m 0-7, 8-15) x (k 0-7, 8-15) in a0..a7 order;
 * B's two n8 tiles' (k 0-7, 8-15) pieces. */
static void emit_mma_frag(Buf *b, const MmaOperand *o, bool is_a, int ind) {
  const char *off = is_a ? "tc_wm + tc_t * 16" : "tc_wn + tc_t * 16";
  /* which 8 of the 16 rows (m/n) and which 8 of k this lane's row is in */
  const char *mn8 = is_a ? "((tc_lane >> 3) & 1) * 8" : "(tc_lane >> 4) * 8";
  const char *k8 = is_a ? "(tc_lane >> 4) * 8" : "((tc_lane >> 3) & 1) * 8";
  buf_indent(b, ind);
  if (o->kfast)
    buf_printf(b, "tc_ldm4(tc_f%c[tc_t], tc_saddr(&%s[tc_s][%s + (tc_lane & 7) + %s][tc_kk + %s]));\n",
               is_a ? 'a' : 'b', o->arr, off, mn8, k8);
  else
    buf_printf(b, "tc_ldm4t(tc_f%c[tc_t], tc_saddr(&%s[tc_s][tc_kk + (tc_lane & 7) + %s][%s + %s]));\n",
               is_a ? 'a' : 'b', o->arr, k8, off, mn8);
}

static void emit_mma_smem(Buf *b, const MmaOperand *o) {
  if (o->kfast)
    buf_printf(b, "  __shared__ __align__(16) tc_u16 %s[2][%d][%d];\n", o->arr, TILE, MMA_K + 8);
  else
    buf_printf(b, "  __shared__ __align__(16) tc_u16 %s[2][%d][%d];\n", o->arr, MMA_K, TILE + 8);
}

static GpuStep *kernel_mma(Emit *E, IRStmt *root, Tiled *t) {
  int id = E->plan->nkernels++;
  begin_kernel(E, GK_TILED);
  MmaOperand A = {half_load(t->pa), t->mloop, t->kloop, "tc_As", "tc_bm", "A", t->h->a_kfast, false};
  MmaOperand B = {half_load(t->pb), t->nloop, t->kloop, "tc_Bs", "tc_bn", "B", t->h->b_kfast, false};
  A.affine = is_affine2(A.load->idx[0], A.L->var, A.K->var);
  B.affine = is_affine2(B.load->idx[0], B.L->var, B.K->var);
  bool bf = A.load->buf->dtype == TC_BFLOAT16;
  buf_puts(&E->kernels, mma_text);
  Buf b = {0};
  emit_mma_smem(&b, &A);
  emit_mma_smem(&b, &B);
  buf_puts(&b, "  const int tc_lane = threadIdx.x & 31, tc_warp = threadIdx.x >> 5;\n"
               "  const int tc_wm = (tc_warp >> 2) * 64, tc_wn = (tc_warp & 3) * 32;\n");
  IRExpr *nb = emit_tile_loops(E, &b, t, MMA_K);
  buf_puts(&b, "      float tc_c[4][4][4];\n"
               "#pragma unroll\n"
               "      for (int tc_i = 0; tc_i < 64; tc_i++) tc_c[tc_i >> 4][(tc_i >> 2) & 3][tc_i & 3] = 0.0f;\n");
  /* stage 0, then each step: the next step's copies, wait for this one's,
   * multiply it */
  emit_mma_setup(E, &b, &A, 3);
  emit_mma_setup(E, &b, &B, 3);
  emit_mma_fetch(E, &b, &A, "0", "0", "0", 3);
  emit_mma_fetch(E, &b, &B, "0", "0", "0", 3);
  buf_printf(&b, "      tc_cp_commit();\n"
                 "      for (tc_i64 tc_kt = 0; tc_kt < tc_nk; tc_kt++) {\n"
                 "        const int tc_s = (int)(tc_kt & 1);\n"
                 "        if (tc_kt + 1 < tc_nk) {\n"
                 "          const tc_i64 tc_k1 = (tc_kt + 1) * %d;\n",
             MMA_K);
  emit_mma_fetch(E, &b, &A, "tc_s ^ 1", "tc_kt + 1", "tc_k1", 5);
  emit_mma_fetch(E, &b, &B, "tc_s ^ 1", "tc_kt + 1", "tc_k1", 5);
  buf_printf(&b, "        }\n"
                 "        tc_cp_commit();\n"
                 "        tc_cp_wait1();\n"
                 "        __syncthreads();\n"
                 "#pragma unroll\n"
                 "        for (int tc_kk = 0; tc_kk < %d; tc_kk += 16) {\n"
                 "          unsigned tc_fa[4][4], tc_fb[2][4];\n"
                 "#pragma unroll\n"
                 "          for (int tc_t = 0; tc_t < 4; tc_t++)\n",
             MMA_K);
  emit_mma_frag(&b, &A, true, 6);
  buf_puts(&b, "#pragma unroll\n          for (int tc_t = 0; tc_t < 2; tc_t++)\n");
  emit_mma_frag(&b, &B, false, 6);
  buf_printf(&b, "#pragma unroll\n"
                 "          for (int tc_i = 0; tc_i < 4; tc_i++)\n"
                 "#pragma unroll\n"
                 "            for (int tc_j = 0; tc_j < 4; tc_j++)\n"
                 "              %s(tc_c[tc_i][tc_j], tc_fa[tc_i], &tc_fb[tc_j >> 1][(tc_j & 1) * 2]);\n"
                 "        }\n"
                 "        __syncthreads();\n"
                 "      }\n",
             bf ? "tc_mma_bf16" : "tc_mma_f16");
  /* the epilogue, per output: c0 c1 at row lane/4, columns 2 (lane%4) + 0, 1; c2 c3 8 rows down */
  buf_puts(&b, "#pragma unroll\n      for (int tc_i = 0; tc_i < 64; tc_i++) {\n");
  emit_tile_var(E, &b, t->mloop, "tc_bm",
                "tc_wm + (tc_i >> 4) * 16 + (tc_lane >> 2) + ((tc_i >> 1) & 1) * 8", 4);
  emit_tile_var(E, &b, t->nloop, "tc_bn",
                "tc_wn + ((tc_i >> 2) & 3) * 8 + (tc_lane & 3) * 2 + (tc_i & 1)", 4);
  emit_tile_store(E, &b, t, "tc_c[tc_i >> 4][(tc_i >> 2) & 3][tc_i & 3]", TC_FLOAT32, 4);
  buf_puts(&b, "      }\n    }\n  }\n  }\n");
  finish_kernel_minb(E, id, 256, MMA_MINB, &root, 1, &b, nb, NULL);
  return tiled_step(E, id, nb, t);
}

/* ---- the implicit GEMM (convolutions) ---- */

/* A conv-hinted kernel (schedule_gpu.c) as a matrix product: M the output
 * positions (the kernel loops read by one factor A only: n, h, w), N the
 * output channels (read by the other factor B only: f), K the reduction
 * loops (c, kh, kw), collapsed in loop order; the loops both factors or
 * neither read (a group) run on blockIdx.z.  Each k step gathers a TM x
 * CONV_K tile of A and a TN x CONV_K tile of B into shared memory by
 * evaluating the factors' own expressions (a boundary condition stays a
 * predicated load of zero), the next step's tiles fetched into registers
 * meanwhile; each thread accumulates RM x RN outputs with FMAs.  A thread
 * gathers fixed rows of A and B for the whole tile, their m and n
 * decompositions done once per tile, the k decomposition once per step. */

enum { CONV_K = 8, CONV_NARROW = 16 }; /* k step; n extents up to CONV_NARROW take the narrow tile */

typedef struct ConvCfg {
  int tm, tn, rm, rn; /* the block's tile, a thread's tile (multiples of 4) */
} ConvCfg;

typedef struct Conv {
  const GpuHint *h;
  KernelShape m, n, z, k;      /* the loops of each dimension, outermost first */
  const IRStmt *decl;          /* acc = init */
  IRStmt **epi;                /* after the reduction */
  int nepi;
  const IRExpr *rhs, *pa, *pb; /* acc = acc + rhs; pa, pb: its factors */
} Conv;

enum { CONV_MAXL = (int)(sizeof ((KernelShape *)0)->blocks / sizeof(IRStmt *)) };

/* The kernel's loops sorted into M, N and z by which factor reads them. */
static bool conv_classify(IRStmt **loops, int n, Conv *cv) {
  const IRVar *inner = loops[n - 1]->var;
  const IRExpr *p = strip(cv->rhs);
  bool swap = ir_uses_var(p->b, inner) && !ir_uses_var(p->a, inner);
  cv->pa = swap ? p->b : p->a;
  cv->pb = swap ? p->a : p->b;
  for (int i = 0; i < n; i++) {
    bool a = ir_uses_var(cv->pa, loops[i]->var), b = ir_uses_var(cv->pb, loops[i]->var);
    KernelShape *to = a && !b ? &cv->m : b && !a ? &cv->n : &cv->z;
    to->blocks[to->nblocks++] = loops[i];
  }
  return cv->m.nblocks > 0 && cv->n.nblocks > 0;
}

/* Finds the hinted implicit GEMM in the kernel at `root`, or false. */
static bool find_conv(Emit *E, IRStmt *root, Conv *cv) {
  memset(cv, 0, sizeof *cv);
  for (const GpuHint *h = E->f->gpu; h && !cv->h; h = h->next)
    if (h->conv && h->root == root->var)
      cv->h = h;
  if (!cv->h || !dtype_is_float(cv->h->acc->type))
    return false;
  IRStmt *loops[CONV_MAXL];
  int nl = 0;
  IRStmt *s = unwrap(root);
  for (; is_gpu_loop(s) && nl < CONV_MAXL; s = unwrap(s->body)) {
    if (!is_host_expr(s->lo) || !is_host_expr(s->extent))
      return false;
    loops[nl++] = s;
  }
  if (nl == 0 || !s || s->kind != S_BLOCK || s->n < 3)
    return false;
  cv->decl = s->stmts[0];
  if (cv->decl->kind != S_DECL || cv->decl->var != cv->h->acc)
    return false;
  IRStmt *u = s->stmts[1];
  for (; u && u->kind == S_FOR && !is_gpu_loop(u) && cv->k.nblocks < CONV_MAXL;
       u = unwrap(u->body)) {
    if (!is_host_expr(u->lo) || !is_host_expr(u->extent))
      return false;
    cv->k.blocks[cv->k.nblocks++] = u;
  }
  const IRVar *acc = cv->h->acc;
  if (cv->k.nblocks == 0 || !u || u->kind != S_ASSIGN || u->var != acc ||
      u->value->kind != IR_BIN || u->value->op != OP_ADD || !is_var_expr(u->value->a, acc) ||
      ir_uses_var(u->value->b, acc))
    return false;
  cv->rhs = u->value->b;
  const IRExpr *p = strip(cv->rhs);
  if (!p || p->kind != IR_BIN || p->op != OP_MUL || !conv_classify(loops, nl, cv))
    return false;
  if (ir_has_kind(cv->pa, IR_FAIL) || ir_has_kind(cv->pb, IR_FAIL) || ir_uses_local(cv->pa) ||
      ir_uses_local(cv->pb))
    return false;
  cv->epi = s->stmts + 2;
  cv->nepi = s->n - 2;
  for (int i = 0; i < cv->nepi; i++) {
    if (stmt_has_thread_loop(cv->epi[i]) || cv->epi[i]->kind == S_FOR)
      return false;
    for (int j = 0; j < cv->k.nblocks; j++)
      if (stmt_uses_var(cv->epi[i], cv->k.blocks[j]->var))
        return false;
  }
  return true;
}

/* The product of the extents of a dimension's loops (1 for none). */
static IRExpr *conv_count(Emit *E, const KernelShape *k) {
  IRExpr *n = outer_count(E, k);
  return n ? n : ir_i64(E->c, 1);
}

/* A boundary condition's `e >= 0 && e < n` with n a size or a shape (never
 * negative) as the one unsigned compare (uint64)e < (uint64)n: the same
 * truth value, half the 64-bit compares in a gather. */
static IRExpr *range_compares(Ctx *c, void *st, IRExpr *e) {
  e = ir_mutate_expr_children(c, e, range_compares, st);
  if (e->kind != IR_BIN || e->op != OP_AND)
    return e;
  const IRExpr *lo = e->a, *hi = e->b;
  int64_t zero;
  if (lo->kind != IR_BIN || lo->op != OP_GE || hi->kind != IR_BIN || hi->op != OP_LT ||
      lo->a->type != TC_INT64 || !ir_is_const(lo->b, &zero) || zero != 0 ||
      !ir_equal(lo->a, hi->a) || hi->b->kind != IR_VAR ||
      (hi->b->var->kind != VAR_SHAPE && hi->b->var->kind != VAR_SIZE))
    return e;
  return ir_bin(c, OP_LT, ir_cast(c, TC_UINT64, lo->a), ir_cast(c, TC_UINT64, hi->b));
}

/* A factor prepared for gathering: its integer arithmetic that mixes the
 * row's loops (m or n) with the k loops, split exactly into a row part and a
 * k part (int64 + - * wrap around: a ring, so distributing and regrouping
 * changes no value).  The row parts are computed once per row and tile, the
 * k parts once per k value and step; an element then costs one addition per
 * split (a subscript, a boundary compare's operand). */
enum { MAX_SPLITS = 8 };

typedef struct Gather {
  const KernelShape *k;           /* the k loops */
  char op;                        /* 'a' or 'b': names */
  const IRExpr *f;                /* the factor */
  IRExpr *g;                      /* f with its splits replaced by row + k variables */
  IRExpr *m[MAX_SPLITS], *kp[MAX_SPLITS];
  IRVar *vm[MAX_SPLITS], *vk[MAX_SPLITS];
  int n;
  Emit *E;
} Gather;

static bool in_shape(const KernelShape *ks, const IRVar *v) {
  for (int i = 0; i < ks->nblocks; i++)
    if (ks->blocks[i]->var == v)
      return true;
  return false;
}

/* Whether e uses a k loop (*in) and another loop or a local (*out). */
static void scan_vars(const IRExpr *e, const KernelShape *ks, bool *in, bool *out) {
  if (!e)
    return;
  if (e->kind == IR_VAR && (e->var->kind == VAR_LOOP || e->var->kind == VAR_LOCAL)) {
    if (in_shape(ks, e->var))
      *in = true;
    else
      *out = true;
  }
  for (int i = 0; i < e->nidx; i++)
    scan_vars(e->idx[i], ks, in, out);
  for (int i = 0; i < e->nargs; i++)
    scan_vars(e->args[i], ks, in, out);
  scan_vars(e->a, ks, in, out);
  scan_vars(e->b, ks, in, out);
  scan_vars(e->c, ks, in, out);
}

static IRExpr *part_op(Ctx *c, BinOp op, IRExpr *x, IRExpr *y) {
  if (!y)
    return x;
  if (!x)
    return op == OP_SUB ? ir_un(c, OP_NEG, y) : y;
  return ir_bin(c, op, x, y);
}

/* e as *m + *k (NULL: zero), *m free of the k loops, *k free of the
 * others; false where a product mixes them. */
static bool split_expr(Ctx *c, IRExpr *e, const KernelShape *ks, IRExpr **m, IRExpr **k) {
  bool in = false, out = false;
  scan_vars(e, ks, &in, &out);
  *m = *k = NULL;
  if (!in || !out) {
    *(in ? k : m) = e;
    return true;
  }
  if (e->type != TC_INT64)
    return false;
  IRExpr *am, *ak, *bm, *bk;
  if (e->kind == IR_BIN && (e->op == OP_ADD || e->op == OP_SUB)) {
    if (!split_expr(c, e->a, ks, &am, &ak) || !split_expr(c, e->b, ks, &bm, &bk))
      return false;
    *m = part_op(c, (BinOp)e->op, am, bm);
    *k = part_op(c, (BinOp)e->op, ak, bk);
    return true;
  }
  if (e->kind == IR_UN && e->op == OP_NEG) {
    if (!split_expr(c, e->a, ks, &am, &ak))
      return false;
    *m = am ? ir_un(c, OP_NEG, am) : NULL;
    *k = ak ? ir_un(c, OP_NEG, ak) : NULL;
    return true;
  }
  if (e->kind == IR_BIN && e->op == OP_MUL) {
    for (int side = 0; side < 2; side++) { /* a factor of no loop: distributed */
      IRExpr *x = side ? e->a : e->b, *y = side ? e->b : e->a;
      bool xi = false, xo = false;
      scan_vars(x, ks, &xi, &xo);
      if (xi || xo || !split_expr(c, y, ks, &am, &ak))
        continue;
      *m = am ? ir_mul(c, am, x) : NULL;
      *k = ak ? ir_mul(c, ak, x) : NULL;
      return true;
    }
  }
  return false;
}

/* The outermost integer subexpressions that mix the row's loops and the k
 * loops and split, replaced by `row part + k part` variables. */
static IRExpr *split_walk(Ctx *c, void *st, IRExpr *e) {
  Gather *G = st;
  bool in = false, out = false;
  scan_vars(e, G->k, &in, &out);
  if (!in || !out)
    return e;
  IRExpr *m, *k;
  if (G->n < MAX_SPLITS && e->type == TC_INT64 && split_expr(c, e, G->k, &m, &k) && m && k) {
    int i = G->n++;
    G->m[i] = m;
    G->kp[i] = k;
    G->vm[i] = ir_new_var(c, arena_printf(c->arena, "tc_sm%c%d", G->op, i), VAR_LOCAL, TC_INT64);
    G->vk[i] = ir_new_var(c, arena_printf(c->arena, "tc_sk%c%d", G->op, i), VAR_LOCAL, TC_INT64);
    return ir_add(c, ir_var(c, G->vm[i]), ir_var(c, G->vk[i]));
  }
  return ir_mutate_expr_children(c, e, split_walk, st);
}

static void new_gather(Emit *E, Gather *G, const IRExpr *f, const KernelShape *k, char op) {
  memset(G, 0, sizeof *G);
  G->E = E;
  G->k = k;
  G->op = op;
  G->f = f;
  G->g = split_walk(E->c, G, range_compares(E->c, NULL, (IRExpr *)f));
}

/* Row p of a thread's share of a tile, at index `at` of the dimension:
 * whether it is in range (tc_<op><p>ok), its loops' values (tc_<op><p>_<i>)
 * and the row parts of the factor's splits (tc_<op><p>_s<i>). */
static void conv_row(Emit *E, Buf *b, const KernelShape *d, const Gather *G, int p, const char *at,
                     const char *count) {
  char op = G->op;
  for (int i = 0; i < d->nblocks; i++)
    buf_printf(b, "      tc_i64 tc_%c%d_%d;\n", op, p, i);
  for (int i = 0; i < G->n; i++)
    buf_printf(b, "      tc_i64 tc_%c%d_s%d;\n", op, p, i);
  buf_printf(b, "      bool tc_%c%dok;\n      {\n        const tc_i64 tc_at = %s;\n", op, p, at);
  buf_printf(b, "        tc_%c%dok = tc_at < %s;\n", op, p, count);
  emit_decompose(E, b, d, "tc_at", 4);
  for (int i = 0; i < d->nblocks; i++)
    buf_printf(b, "        tc_%c%d_%d = %s;\n", op, p, i, d->blocks[i]->var->name);
  for (int i = 0; i < G->n; i++) {
    buf_printf(b, "        tc_%c%d_s%d = ", op, p, i);
    emit_bare(E, b, G->m[i]);
    buf_puts(b, ";\n");
  }
  buf_puts(b, "      }\n");
}

/* One factor's row p: its loops' values and row parts from the saved ones,
 * then regs[slot] = the factor (zero outside the tile). */
static void conv_gather(Emit *E, Buf *b, const KernelShape *d, const Gather *G, int p,
                        const char *slot, int ind) {
  char op = G->op;
  buf_indent(b, ind);
  buf_puts(b, "{\n");
  for (int i = 0; i < d->nblocks; i++) {
    buf_indent(b, ind + 1);
    buf_printf(b, "const tc_i64 %s = tc_%c%d_%d;\n", d->blocks[i]->var->name, op, p, i);
  }
  for (int i = 0; i < G->n; i++) {
    buf_indent(b, ind + 1);
    buf_printf(b, "const tc_i64 %s = tc_%c%d_s%d;\n", G->vm[i]->name, op, p, i);
  }
  buf_indent(b, ind + 1);
  buf_printf(b, "tc_r%c[%s] = (tc_%c%dok && tc_k < tc_kn) ? ", op, slot, op, p);
  emit_expr(E, b, G->g);
  buf_printf(b, " : (%s)0;\n", vtype(G->f->type));
  buf_indent(b, ind);
  buf_puts(b, "}\n");
}

/* The k decomposition at tc_k and the k parts of G's splits. */
static void conv_kparts(Emit *E, Buf *b, const Conv *cv, const Gather *G, int ind) {
  emit_decompose(E, b, &cv->k, "tc_k", ind);
  for (int i = 0; i < G->n; i++) {
    buf_indent(b, ind);
    buf_printf(b, "const tc_i64 %s = ", G->vk[i]->name);
    emit_bare(E, b, G->kp[i]);
    buf_puts(b, ";\n");
  }
}

/* The fetch of conv_fetch, k computed as `wrap`(k) ("%s": as is). */
static void conv_fetch_as(Emit *E, Buf *b, const Conv *cv, const Gather *ga, const Gather *gb,
                          const ConvCfg *g, int nt, const char *kb, const char *wrap, int ind) {
  int ar = g->tm / nt, br = g->tn * CONV_K / nt;
  buf_indent(b, ind);
  buf_printf(b, "#pragma unroll\n");
  buf_indent(b, ind);
  buf_printf(b, "for (int tc_q = 0; tc_q < %d; tc_q++) {\n", CONV_K);
  buf_indent(b, ind + 1);
  buf_puts(b, "const tc_i64 tc_k = ");
  buf_printf(b, wrap, arena_printf(E->c->arena, "%s + tc_q", kb));
  buf_puts(b, ";\n");
  conv_kparts(E, b, cv, ga, ind + 1);
  for (int p = 0; p < ar; p++)
    conv_gather(E, b, &cv->m, ga, p, arena_printf(E->c->arena, "%d * %d + tc_q", p, CONV_K), ind + 1);
  buf_indent(b, ind);
  buf_puts(b, "}\n");
  buf_indent(b, ind);
  buf_puts(b, "{\n");
  buf_indent(b, ind + 1);
  buf_puts(b, "const tc_i64 tc_k = ");
  buf_printf(b, wrap, arena_printf(E->c->arena, "%s + threadIdx.x %% %d", kb, CONV_K));
  buf_puts(b, ";\n");
  conv_kparts(E, b, cv, gb, ind + 1);
  for (int p = 0; p < br; p++)
    conv_gather(E, b, &cv->n, gb, p, arena_printf(E->c->arena, "%d", p), ind + 1);
  buf_indent(b, ind);
  buf_puts(b, "}\n");
}

/* Fetches the tiles of the k step at `kb` into registers tc_ra, tc_rb;
 * while the step's k values fit in 32 bits (a uniform branch), k is given
 * as a 32-bit value, so that its decomposition by constant extents needs
 * no 64-bit division. */
static void conv_fetch(Emit *E, Buf *b, const Conv *cv, const Gather *ga, const Gather *gb,
                       const ConvCfg *g, int nt, const char *kb, int ind) {
  buf_indent(b, ind);
  buf_printf(b, "if (%s + %d <= 0xffffffffll) {\n", kb, CONV_K);
  conv_fetch_as(E, b, cv, ga, gb, g, nt, kb, "(tc_i64)(tc_u32)(%s)", ind + 1);
  buf_indent(b, ind);
  buf_puts(b, "} else {\n");
  conv_fetch_as(E, b, cv, ga, gb, g, nt, kb, "%s", ind + 1);
  buf_indent(b, ind);
  buf_puts(b, "}\n");
}

/* The registers into the shared tiles. */
static void conv_put(Buf *b, const ConvCfg *g, int nt, int ind) {
  int ar = g->tm / nt, br = g->tn * CONV_K / nt;
  for (int p = 0; p < ar; p++) {
    buf_indent(b, ind);
    buf_printf(b, "#pragma unroll\n");
    buf_indent(b, ind);
    buf_printf(b, "for (int tc_q = 0; tc_q < %d; tc_q++) tc_As[tc_q][threadIdx.x + %d] = tc_ra[%d + tc_q];\n",
               CONV_K, p * nt, p * CONV_K);
  }
  for (int p = 0; p < br; p++) {
    buf_indent(b, ind);
    buf_printf(b, "tc_Bs[threadIdx.x %% %d][threadIdx.x / %d + %d] = tc_rb[%d];\n", CONV_K, CONV_K,
               p * (nt / CONV_K), p);
  }
}

/* A thread's `r` values of a tile row from shared memory: groups of 4 at
 * 4 * t + 4 * T * group (float4 reads for float32). */
static void conv_read(Buf *b, tc_dtype t, const char *arr, const char *reg, int r, int T,
                      const char *tv) {
  for (int h = 0; h < r / 4; h++) {
    if (t == TC_FLOAT32)
      buf_printf(b,
                 "          { const float4 tc_v = *(const float4 *)&%s[tc_kk][%d + 4 * %s];\n"
                 "            %s[%d] = tc_v.x; %s[%d] = tc_v.y; %s[%d] = tc_v.z; %s[%d] = tc_v.w; }\n",
                 arr, 4 * T * h, tv, reg, 4 * h, reg, 4 * h + 1, reg, 4 * h + 2, reg, 4 * h + 3);
    else
      for (int i = 0; i < 4; i++)
        buf_printf(b, "          %s[%d] = %s[tc_kk][%d + 4 * %s + %d];\n", reg, 4 * h + i, arr,
                   4 * T * h, tv, i);
  }
}

/* The inner product of one k step, in registers. */
static void conv_product(Emit *E, Buf *b, const Conv *cv, const ConvCfg *g, int tx, int ty) {
  Ctx *c = E->c;
  tc_dtype at = cv->h->acc->type, ta = cv->pa->type, tb = cv->pb->type;
  IRVar *va = ir_new_var(c, "tc_av", VAR_LOCAL, ta), *vb = ir_new_var(c, "tc_bv", VAR_LOCAL, tb);
  IRVar *vc = ir_new_var(c, "tc_cv", VAR_LOCAL, at);
  Factors fs = {cv->pa, cv->pb, ir_var(c, va), ir_var(c, vb)};
  IRExpr *r = subst_factors(c, &fs, (IRExpr *)cv->rhs);
  bool fma = (at == TC_FLOAT32 || at == TC_FLOAT64) && r->kind == IR_BIN && r->op == OP_MUL &&
             r->type == at && strip(r->a) == r->a && strip(r->b) == r->b;
  buf_printf(b,
             "#pragma unroll\n"
             "        for (int tc_kk = 0; tc_kk < %d; tc_kk++) {\n"
             "          %s tc_a[%d];\n          %s tc_b[%d];\n",
             CONV_K, vtype(ta), g->rm, vtype(tb), g->rn);
  conv_read(b, ta, "tc_As", "tc_a", g->rm, ty, "tc_ty");
  conv_read(b, tb, "tc_Bs", "tc_b", g->rn, tx, "tc_tx");
  buf_printf(b,
             "#pragma unroll\n"
             "          for (int tc_i = 0; tc_i < %d; tc_i++)\n"
             "#pragma unroll\n"
             "            for (int tc_j = 0; tc_j < %d; tc_j++) {\n",
             g->rm, g->rn);
  if (fma) {
    buf_printf(b, "              tc_c[tc_i][tc_j] = %s(tc_a[tc_i], tc_b[tc_j], tc_c[tc_i][tc_j]);\n",
               at == TC_FLOAT32 ? "__fmaf_rn" : "__fma_rn");
  } else {
    buf_printf(b,
               "              const %s tc_av = tc_a[tc_i];\n"
               "              const %s tc_bv = tc_b[tc_j];\n"
               "              %s &tc_cv = tc_c[tc_i][tc_j];\n              tc_cv = ",
               vtype(ta), vtype(tb), vtype(at));
    emit_bare(E, b, ir_bin(c, OP_ADD, ir_var(c, vc), r));
    buf_puts(b, ";\n");
  }
  buf_puts(b, "            }\n        }\n");
}

/* The epilogue: per output in range, its loops' values, acc, the statements. */
static void conv_epilogue(Emit *E, Buf *b, const Conv *cv, const ConvCfg *g, int tx, int ty) {
  Ctx *c = E->c;
  tc_dtype at = cv->h->acc->type;
  buf_printf(b,
             "#pragma unroll\n      for (int tc_i = 0; tc_i < %d; tc_i++) {\n"
             "        const tc_i64 tc_m = tc_bm * %d + (tc_i / 4) * %d + 4 * tc_ty + tc_i %% 4;\n"
             "        if (tc_m < tc_mm) {\n",
             g->rm, g->tm, 4 * ty);
  emit_decompose(E, b, &cv->m, "tc_m", 5);
  buf_printf(b,
             "#pragma unroll\n          for (int tc_j = 0; tc_j < %d; tc_j++) {\n"
             "            const tc_i64 tc_n = tc_bn * %d + (tc_j / 4) * %d + 4 * tc_tx + tc_j %% 4;\n"
             "            if (tc_n < tc_nn) {\n",
             g->rn, g->tn, 4 * tx);
  emit_decompose(E, b, &cv->n, "tc_n", 7);
  buf_printf(b, "              %s &tc_cv = tc_c[tc_i][tc_j];\n", vtype(at));
  IRVar *vc = ir_new_var(c, "tc_cv", VAR_LOCAL, at);
  const IRExpr *init = cv->decl->value;
  bool zero = init->kind == IR_FLOAT && init->fval == 0 && !signbit(init->fval);
  IRStmt *d = ir_decl(c, (IRVar *)cv->h->acc,
                      zero ? ir_var(c, vc) : ir_bin(c, OP_ADD, (IRExpr *)init, ir_var(c, vc)));
  emit_list(E, b, &d, 1, 7, SC_THREAD);
  emit_list(E, b, cv->epi, cv->nepi, 7, SC_THREAD);
  buf_puts(b, "            }\n          }\n        }\n      }\n");
}

/* The implicit GEMM with tile g: a TILED launch (x: n tiles, y: m tiles). */
static GpuStep *kernel_conv(Emit *E, IRStmt *root, const Conv *cv, const ConvCfg *g) {
  Ctx *c = E->c;
  int id = E->plan->nkernels++;
  begin_kernel(E, GK_TILED);
  int tx = g->tn / g->rn, ty = g->tm / g->rm, nt = tx * ty;
  int ar = g->tm / nt, br = g->tn * CONV_K / nt;
  IASSERT(c, g->tm % nt == 0 && nt % CONV_K == 0 && g->tn * CONV_K % nt == 0 && g->rm % 4 == 0 &&
                 g->rn % 4 == 0);
  tc_dtype at = cv->h->acc->type, ta = cv->pa->type, tb = cv->pb->type;
  IRExpr *nm = conv_count(E, &cv->m), *nn = conv_count(E, &cv->n), *nk = conv_count(E, &cv->k);
  IRExpr *nz = outer_count(E, &cv->z);
  Buf b = {0};
  buf_printf(&b,
             "  __shared__ __align__(16) %s tc_As[%d][%d];\n"
             "  __shared__ __align__(16) %s tc_Bs[%d][%d];\n"
             "  const int tc_ty = threadIdx.x %% %d, tc_tx = threadIdx.x / %d;\n",
             vtype(ta), CONV_K, g->tm, vtype(tb), CONV_K, g->tn + 4, ty, ty);
  buf_puts(&b, "  const tc_i64 tc_mm = ");
  emit_expr(E, &b, nm);
  buf_puts(&b, ", tc_nn = ");
  emit_expr(E, &b, nn);
  buf_puts(&b, ", tc_kn = ");
  emit_expr(E, &b, nk);
  buf_puts(&b, ", tc_nz = ");
  emit_expr(E, &b, nz ? nz : ir_i64(c, 1));
  buf_printf(&b, ";\n  const tc_i64 tc_tm = (tc_mm + %d) / %d, tc_tn = (tc_nn + %d) / %d;\n",
             g->tm - 1, g->tm, g->tn - 1, g->tn);
  buf_puts(&b, "  for (tc_i64 tc_z = blockIdx.z; tc_z < tc_nz; tc_z += gridDim.z) {\n");
  emit_decompose(E, &b, &cv->z, "tc_z", 2);
  buf_puts(&b, "  for (tc_i64 tc_bm = blockIdx.y; tc_bm < tc_tm; tc_bm += gridDim.y) {\n"
               "    for (tc_i64 tc_bn = blockIdx.x; tc_bn < tc_tn; tc_bn += gridDim.x) {\n");
  buf_printf(&b, "      %s tc_c[%d][%d];\n      %s tc_ra[%d];\n      %s tc_rb[%d];\n", vtype(at),
             g->rm, g->rn, vtype(ta), ar * CONV_K, vtype(tb), br);
  buf_printf(&b,
             "#pragma unroll\n      for (int tc_i = 0; tc_i < %d; tc_i++)\n"
             "#pragma unroll\n        for (int tc_j = 0; tc_j < %d; tc_j++) tc_c[tc_i][tc_j] = ",
             g->rm, g->rn);
  emit_expr(E, &b, red_identity(c, OP_ADD, at));
  buf_puts(&b, ";\n");
  Gather ga, gb;
  new_gather(E, &ga, cv->pa, &cv->k, 'a');
  new_gather(E, &gb, cv->pb, &cv->k, 'b');
  for (int p = 0; p < ar; p++)
    conv_row(E, &b, &cv->m, &ga, p, arena_printf(c->arena, "tc_bm * %d + threadIdx.x + %d", g->tm, p * nt),
             "tc_mm");
  for (int p = 0; p < br; p++)
    conv_row(E, &b, &cv->n, &gb, p,
             arena_printf(c->arena, "tc_bn * %d + threadIdx.x / %d + %d", g->tn, CONV_K,
                          p * (nt / CONV_K)),
             "tc_nn");
  conv_fetch(E, &b, cv, &ga, &gb, g, nt, "0", 3);
  conv_put(&b, g, nt, 3);
  buf_printf(&b, "      __syncthreads();\n"
                 "      for (tc_i64 tc_k0 = 0; tc_k0 < tc_kn; tc_k0 += %d) {\n"
                 "        const bool tc_more = tc_k0 + %d < tc_kn;\n"
                 "        if (tc_more) {\n",
                 CONV_K, CONV_K);
  conv_fetch(E, &b, cv, &ga, &gb, g, nt, arena_printf(c->arena, "tc_k0 + %d", CONV_K), 5);
  buf_puts(&b, "        }\n");
  conv_product(E, &b, cv, g, tx, ty);
  buf_puts(&b, "        __syncthreads();\n        if (tc_more) {\n");
  conv_put(&b, g, nt, 5);
  buf_puts(&b, "          __syncthreads();\n        }\n      }\n");
  conv_epilogue(E, &b, cv, g, tx, ty);
  buf_puts(&b, "    }\n  }\n  }\n");
  finish_kernel_minb(E, id, nt, 1, &root, 1, &b, nz, NULL);
  GpuStep *st = new_step(E, GS_LAUNCH);
  st->kernel = id;
  st->gk = GK_TILED;
  st->outer = nz;
  st->inner = nn;
  st->mid = nm;
  st->threads = nt;
  st->tile_m = g->tm;
  st->tile_n = g->tn;
  return st;
}

/* The implicit GEMM, its tile chosen on the host by the n extent: a narrow
 * one for few output channels (a group's), a wide one otherwise. */
static GpuStep *kernel_conv_choice(Emit *E, IRStmt *root, const Conv *cv) {
  static const ConvCfg narrow = {256, 16, 4, 8}, wide = {128, 64, 8, 8};
  GpuStep *st = new_step(E, GS_IF);
  st->cond = simplify_expr(E->c, ir_bin(E->c, OP_LE, conv_count(E, &cv->n), ir_i64(E->c, CONV_NARROW)));
  st->then = kernel_conv(E, root, cv, &narrow);
  st->els = kernel_conv(E, root, cv, &wide);
  return st;
}

static GpuStep *kernel_of(Emit *E, IRStmt *root) {
  Tiled t;
  if (find_tiled(E, root, &t))
    return is_mma(&t) ? kernel_mma(E, root, &t) : kernel_tiled(E, root, &t);
  Conv cv;
  if (find_conv(E, root, &cv))
    return kernel_conv_choice(E, root, &cv);
  KernelShape k = kernel_shape(root);
  IRStmt *rest = unwrap(k.rest);
  const IRStmt *st = pointwise_ok(E, rest, &k) ? stencil_store(E, &k, rest) : NULL;
  if (st)
    return kernel_stencil(E, root, &k, rest, st);
  if (pointwise_ok(E, rest, &k))
    return kernel_pointwise(E, root, &k, rest);
  for (int i = 0; i < k.nblocks; i++)
    IASSERT(E->c, is_host_expr(k.blocks[i]->extent));
  if (k.nblocks)
    return kernel_rows(E, root, &k);
  return kernel_single(E, &root, 1);
}

/* ---- the host plan ---- */

static bool host_check(const IRStmt *s) {
  return s->kind == S_CHECK && is_host_expr(s->cond) && s->value && is_host_expr(s->value->a) &&
         is_host_expr(s->value->b);
}

/* Whether s reads a local declared by the pending statements. */
static bool uses_pending(IRStmt *const *pending, int n, const IRStmt *s) {
  for (int i = 0; i < n; i++)
    if (pending[i]->kind == S_DECL && stmt_uses_var(s, pending[i]->var))
      return true;
  return false;
}

static GpuStep *host_steps(Emit *E, IRStmt *const *list, int n);

static GpuStep *host_steps_of(Emit *E, IRStmt *s) {
  if (!s)
    return NULL;
  if (s->kind == S_BLOCK)
    return host_steps(E, s->stmts, s->n);
  return host_steps(E, &s, 1);
}

/* The statements of a list, nested blocks spliced. */
static void flatten_list(Emit *E, IRStmt *const *list, int n, StmtList *out) {
  for (int i = 0; i < n; i++) {
    if (!list[i])
      continue;
    if (list[i]->kind == S_BLOCK)
      flatten_list(E, list[i]->stmts, list[i]->n, out);
    else
      vec_push(E->c->arena, out, list[i]);
  }
}

static GpuStep *host_steps(Emit *E, IRStmt *const *list, int n) {
  GpuStep *head = NULL, **tail = &head;
  StmtList flat = {0}, pending = {0};
  flatten_list(E, list, n, &flat);
  for (int i = 0; i <= flat.len; i++) {
    IRStmt *s = i < flat.len ? flat.data[i] : NULL;
    bool step = false;
    if (s && !uses_pending(pending.data, pending.len, s))
      step = host_check(s) || (s->kind == S_IF && is_host_expr(s->cond)) || is_gpu_loop(s);
    if (s && !step) {
      vec_push(E->c->arena, &pending, s);
      continue;
    }
    if (pending.len) {
      *tail = kernel_single(E, pending.data, pending.len);
      tail = &(*tail)->next;
      pending.len = 0;
    }
    if (!s)
      break;
    GpuStep *st;
    if (s->kind == S_CHECK) {
      st = new_step(E, GS_CHECK);
      st->check = s;
    } else if (s->kind == S_IF) {
      st = new_step(E, GS_IF);
      st->cond = s->cond;
      st->then = host_steps_of(E, s->then);
      st->els = host_steps_of(E, s->els);
    } else {
      st = kernel_of(E, s);
    }
    *tail = st;
    tail = &st->next;
  }
  return head;
}

GpuPlan *emitcuda_func(Ctx *c, IRFunc *f, Buf *out) {
  Emit E = {.c = c, .f = f};
  E.plan = arena_alloc(c->arena, sizeof *E.plan);
  E.plan->nslots = emitcuda_fail_slot(f) + 1;
  E.plan->buf_used = arena_alloc(c->arena, (size_t)f->nbufs + 1);
  E.plan->steps = host_steps_of(&E, f->body);

  Buf helpers = {0};
  for (int op = 0; op < NUM_BINOPS; op++)
    for (int t = 0; t < TC_NUM_DTYPES; t++)
      if (E.need_red[op][t])
        emit_red_helper(&E, &helpers, (BinOp)op, (tc_dtype)t);
  Buf basic = {0};
  emit_helpers(&E, &basic); /* after the reductions: their combiners use helpers */

  buf_printf(out, "/* generated by tensorc %s for NVRTC */\n", TC_VERSION);
  buf_puts(out, prelude);
  buf_printf(out, "struct tc_args { unsigned long long s[%d]; };\n", E.plan->nslots);
  if (basic.len)
    buf_putn(out, basic.s, basic.len);
  if (helpers.len)
    buf_putn(out, helpers.s, helpers.len);
  if (E.kernels.len)
    buf_putn(out, E.kernels.s, E.kernels.len);
  if (E.kernels.oom || helpers.oom || basic.oom)
    out->oom = true;
  buf_free(&helpers);
  buf_free(&basic);
  buf_free(&E.kernels);
  return E.plan;
}
