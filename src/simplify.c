/*
 * simplify.c — the IR simplifier, also range inference's algebra.
 *
 * simplify_expr rewrites bottom up: children first, then the node.  What it
 * does, in order of importance:
 *
 *  - Constant folding with TC's exact semantics (docs/language.md): integers
 *    wrap at their width, `/` and `%` are floored, division by zero gives 0.
 *    Floats fold only where the host computes the bit-identical result the
 *    generated code would: + - * / and comparisons on float32 and float64
 *    constants of the node's own type (float32 results are computed in
 *    double and rounded once, which is exact for these operations), negation,
 *    NaN-propagating min/max, and conversions.  float16/bfloat16 arithmetic,
 *    float `%` and math builtins are never folded.
 *
 *  - Canonical linear forms for integer arithmetic.  A tree of + - unary-
 *    and multiplication by constants, all of one integer type, is collected
 *    into sum(coef * atom) + const, where atoms are the other subexpressions,
 *    and rebuilt in a fixed order: positive terms, then negative ones, each
 *    in atom order, then the constant.  So `(H - 1) - (KH - 1)` becomes
 *    `H - KH` and `(i + 1) - 1` becomes `i`.  This is exact in wrapping
 *    arithmetic (it is arithmetic modulo 2^width).  The atom order compares
 *    structure and names, never pointers, so output is deterministic.
 *
 *  - For int64 (index) arithmetic, which is assumed never to overflow:
 *    floor division and remainder of a linear form by a positive constant
 *    pull out the terms that constant divides (`(2*h + 4) / 2` is `h + 2`,
 *    `(H - KH + 2) / 2` is `(H - KH) / 2 + 1`); min/max whose operands are
 *    provably ordered, and comparisons that are provably true or false,
 *    collapse.  simplify_prove_le does the proving: it may assume that every
 *    size (VAR_SIZE, VAR_SHAPE) is >= 0; it linearizes b - a, bounds each
 *    atom, and splits on min/max atoms (min(a,b) <= a, a <= max(a,b)) and
 *    floor divisions (k * (x / k) is in [x - k + 1, x]).
 *
 *  - Identities: x + 0, x * 1, x - x and x * 0 (integers), select with a
 *    constant condition, !!x, dead branches of S_IF, S_CHECKs whose condition
 *    is true, loops whose extent is a constant <= 0 (removed) or 1 (the
 *    counter replaced by the start).
 *
 * A rewrite never drops a subexpression that contains an IR_FAIL unless that
 * subexpression could not have been evaluated (the untaken arm of a select,
 * the right operand of a short-circuited && / ||).
 */
#include "tc.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---- */

static bool is_intlike(tc_dtype t) { return dtype_info[t].is_int || dtype_info[t].is_bool; }
static bool is_int(tc_dtype t) { return dtype_info[t].is_int; }

/* v wrapped to the width of t, read as a signed number (coefficients). */
static int64_t wrap_signed(tc_dtype t, int64_t v) {
  int bits = dtype_info[t].bits;
  if (bits >= 64)
    return v;
  uint64_t mask = ((uint64_t)1 << bits) - 1, u = (uint64_t)v & mask;
  if (u >> (bits - 1))
    u |= ~mask;
  return (int64_t)u;
}

static int64_t mulw(tc_dtype t, int64_t a, int64_t b) {
  return wrap_signed(t, (int64_t)((uint64_t)a * (uint64_t)b));
}
static int64_t addw(tc_dtype t, int64_t a, int64_t b) {
  return wrap_signed(t, (int64_t)((uint64_t)a + (uint64_t)b));
}

static bool const_int(const IRExpr *e, int64_t *v) { return ir_is_const(e, v); }

static bool is_zero(const IRExpr *e) { return e->kind == IR_INT && e->ival == 0; }
static bool is_one(const IRExpr *e) { return e->kind == IR_INT && e->ival == 1 && e->type != TC_BOOL; }
static bool is_true(const IRExpr *e) { return e->kind == IR_INT && e->type == TC_BOOL && e->ival; }
static bool is_false(const IRExpr *e) { return e->kind == IR_INT && e->type == TC_BOOL && !e->ival; }

static bool int_add_overflows(int64_t a, int64_t b) {
  return (b > 0 && a > INT64_MAX - b) || (b < 0 && a < INT64_MIN - b);
}

static bool int_mul_overflows(int64_t a, int64_t b) {
  if (a == 0 || b == 0)
    return false;
  if ((a == -1 && b == INT64_MIN) || (b == -1 && a == INT64_MIN))
    return true;
  int64_t p = (int64_t)((uint64_t)a * (uint64_t)b);
  return p / b != a;
}

static int64_t floordiv(int64_t a, int64_t b) { /* b > 0 */
  int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

static int64_t floormod(int64_t a, int64_t b) { /* b > 0 */
  int64_t r = a % b;
  return r < 0 ? r + b : r;
}

/* ---- a deterministic total order on expressions ---- */

static int cmp_i64(int64_t a, int64_t b) { return a < b ? -1 : a > b; }

static int cmp_str(const char *a, const char *b) {
  return strcmp(a ? a : "", b ? b : "");
}

static int cmp_var(const IRVar *a, const IRVar *b) {
  int r;
  if (a == b)
    return 0;
  if ((r = cmp_i64(a->kind, b->kind)) || (r = cmp_str(a->name, b->name)))
    return r;
  if ((r = cmp_i64(a->sym ? a->sym->id : -1, b->sym ? b->sym->id : -1)))
    return r;
  if ((r = cmp_str(a->buf ? a->buf->name : NULL, b->buf ? b->buf->name : NULL)))
    return r;
  return cmp_i64(a->dim, b->dim);
}

static int cmp_expr(const IRExpr *a, const IRExpr *b);

static int cmp_list(IRExpr *const *a, int na, IRExpr *const *b, int nb) {
  int r;
  if ((r = cmp_i64(na, nb)))
    return r;
  for (int i = 0; i < na; i++)
    if ((r = cmp_expr(a[i], b[i])))
      return r;
  return 0;
}

/* Variables first (loop counters, locals, sizes, shapes, strides), then
 * other atoms by kind and structure. */
static int cmp_expr(const IRExpr *a, const IRExpr *b) {
  int r;
  if (a == b)
    return 0;
  if (!a || !b)
    return a ? 1 : -1;
  if ((r = cmp_i64(a->kind, b->kind)) || (r = cmp_i64(a->type, b->type)))
    return r;
  switch (a->kind) {
  case IR_INT:
    return cmp_i64(a->ival, b->ival);
  case IR_FLOAT:
    return memcmp(&a->fval, &b->fval, sizeof a->fval);
  case IR_VAR:
    return cmp_var(a->var, b->var);
  case IR_LOAD:
    if ((r = cmp_str(a->buf->name, b->buf->name)) || (r = cmp_i64(a->buf->slot, b->buf->slot)))
      return r;
    return cmp_list(a->idx, a->nidx, b->idx, b->nidx);
  case IR_CALL:
    if ((r = cmp_i64(a->builtin, b->builtin)))
      return r;
    return cmp_list(a->args, a->nargs, b->args, b->nargs);
  case IR_FAIL:
    if ((r = cmp_i64(a->site, b->site)))
      return r;
    break;
  case IR_BIN:
    if ((r = cmp_i64(a->op, b->op)))
      return r;
    /* products by their last factor first: `i * s0 + j * s1` (strides) */
    if (a->op == OP_MUL && ((r = cmp_expr(a->b, b->b)) || (r = cmp_expr(a->a, b->a))))
      return r;
    break;
  default:
    if ((r = cmp_i64(a->op, b->op)))
      return r;
    break;
  }
  if ((r = cmp_expr(a->a, b->a)) || (r = cmp_expr(a->b, b->b)))
    return r;
  return cmp_expr(a->c, b->c);
}

/* ---- linear forms ---- */

typedef struct Term {
  IRExpr *atom;
  int64_t coef;
} Term;

typedef struct Lin {
  tc_dtype type; /* every node collected has this type */
  int64_t k;     /* constant part */
  Term *t;
  int n, cap;
} Lin;

static void lin_add_atom(Ctx *c, Lin *l, IRExpr *atom, int64_t coef) {
  for (int i = 0; i < l->n; i++)
    if (ir_equal(l->t[i].atom, atom)) {
      l->t[i].coef = addw(l->type, l->t[i].coef, coef);
      return;
    }
  if (l->n == l->cap) {
    int ncap = l->cap ? 2 * l->cap : 8;
    Term *t = arena_alloc(c->arena, sizeof(Term) * (size_t)ncap);
    if (l->n)
      memcpy(t, l->t, sizeof(Term) * (size_t)l->n);
    l->t = t;
    l->cap = ncap;
  }
  l->t[l->n].atom = atom;
  l->t[l->n++].coef = coef;
}

/* Adds scale * e to l. */
static void lin_collect(Ctx *c, Lin *l, IRExpr *e, int64_t scale) {
  int64_t v;
  if (scale == 0 && !ir_has_fail(e))
    return;
  if (e->kind == IR_INT && is_int(e->type) && (e->type != TC_UINT64 || e->ival >= 0)) {
    /* any integer constant: its value, converted to the form's type */
    l->k = addw(l->type, l->k, mulw(l->type, scale, wrap_signed(l->type, e->ival)));
    return;
  }
  if (e->type != l->type) {
    lin_add_atom(c, l, e, scale);
    return;
  }
  if (e->kind == IR_UN && e->op == OP_NEG) {
    lin_collect(c, l, e->a, wrap_signed(l->type, (int64_t)(0 - (uint64_t)scale)));
    return;
  }
  if (e->kind == IR_BIN && e->a->type == l->type && e->b->type == l->type) {
    switch (e->op) {
    case OP_ADD:
      lin_collect(c, l, e->a, scale);
      lin_collect(c, l, e->b, scale);
      return;
    case OP_SUB:
      lin_collect(c, l, e->a, scale);
      lin_collect(c, l, e->b, wrap_signed(l->type, (int64_t)(0 - (uint64_t)scale)));
      return;
    case OP_MUL:
      if (const_int(e->a, &v)) {
        lin_collect(c, l, e->b, mulw(l->type, scale, wrap_signed(l->type, v)));
        return;
      }
      if (const_int(e->b, &v)) {
        lin_collect(c, l, e->a, mulw(l->type, scale, wrap_signed(l->type, v)));
        return;
      }
      break;
    default:
      break;
    }
  }
  lin_add_atom(c, l, e, scale);
}

static int cmp_term(const void *x, const void *y) {
  return cmp_expr(((const Term *)x)->atom, ((const Term *)y)->atom);
}

/* Drops zero terms (unless they hold a failure) and sorts the rest. */
static void lin_normalize(Lin *l) {
  int n = 0;
  for (int i = 0; i < l->n; i++)
    if (l->t[i].coef != 0 || ir_has_fail(l->t[i].atom))
      l->t[n++] = l->t[i];
  l->n = n;
  if (n > 1)
    qsort(l->t, (size_t)n, sizeof(Term), cmp_term);
}

static Lin lin_of(Ctx *c, IRExpr *e, tc_dtype t) {
  Lin l = {.type = t};
  lin_collect(c, &l, e, 1);
  lin_normalize(&l);
  return l;
}

/* coef * atom, |coef| > 0, as `atom` or `k * atom`. */
static IRExpr *term_expr(Ctx *c, tc_dtype t, IRExpr *atom, int64_t coef) {
  if (coef == 1)
    return atom;
  return ir_bin(c, OP_MUL, ir_int(c, t, coef), atom);
}

static IRExpr *lin_build(Ctx *c, const Lin *l) {
  tc_dtype t = l->type;
  IRExpr *acc = NULL;
  bool has_pos = false;
  /* positive terms (a zero-coefficient term keeps a failure) */
  for (int i = 0; i < l->n; i++) {
    int64_t k = l->t[i].coef;
    if (k < 0)
      continue;
    IRExpr *x = term_expr(c, t, l->t[i].atom, k);
    acc = acc ? ir_bin(c, OP_ADD, acc, x) : x;
    has_pos = true;
  }
  if (!has_pos && l->k != 0) /* `3 - x` */
    acc = ir_int(c, t, l->k);
  for (int i = 0; i < l->n; i++) {
    int64_t k = l->t[i].coef;
    if (k >= 0)
      continue;
    IRExpr *x = term_expr(c, t, l->t[i].atom, k == INT64_MIN ? k : -k);
    if (k == INT64_MIN)
      acc = acc ? ir_bin(c, OP_ADD, acc, x) : x;
    else
      acc = acc ? ir_bin(c, OP_SUB, acc, x) : ir_un(c, OP_NEG, x);
  }
  if (!acc)
    return ir_int(c, t, 0);
  if (has_pos && l->k != 0) {
    if (l->k > 0 || l->k == INT64_MIN)
      acc = ir_bin(c, OP_ADD, acc, ir_int(c, t, l->k));
    else
      acc = ir_bin(c, OP_SUB, acc, ir_int(c, t, -l->k));
  }
  return acc;
}

static bool lin_is_const(const Lin *l) { return l->n == 0; }

/* ---- proving a <= b ---- */

/* Does every value of type `from` convert to type `to` unchanged? */
static bool preserves_value(tc_dtype from, tc_dtype to) {
  const DTypeInfo *f = &dtype_info[from], *t = &dtype_info[to];
  if (f->is_bool)
    return is_intlike(to);
  if (!f->is_int || !t->is_int)
    return false;
  if (f->is_signed)
    return t->is_signed && t->bits >= f->bits;
  return t->is_signed ? t->bits > f->bits : t->bits >= f->bits;
}

/* Constant bounds of a value: has_lo/lo, has_hi/hi. */
typedef struct Bounds {
  bool has_lo, has_hi;
  int64_t lo, hi;
} Bounds;

static Bounds lin_bounds(Ctx *c, const Lin *l, int depth);

static Bounds type_bounds(tc_dtype t) {
  const DTypeInfo *d = &dtype_info[t];
  Bounds b = {0};
  if (d->is_bool) {
    b = (Bounds){true, true, 0, 1};
  } else if (d->is_int && d->bits < 64) {
    if (d->is_signed)
      b = (Bounds){true, true, -((int64_t)1 << (d->bits - 1)), ((int64_t)1 << (d->bits - 1)) - 1};
    else
      b = (Bounds){true, true, 0, (int64_t)(((uint64_t)1 << d->bits) - 1)};
  }
  return b;
}

/* Constant bounds of an atom of an int64 form, where known. */
static Bounds atom_bounds(Ctx *c, IRExpr *e, int depth) {
  int64_t k;
  Bounds b = {0};
  if (e->kind == IR_VAR && (e->var->kind == VAR_SIZE || e->var->kind == VAR_SHAPE)) {
    b.has_lo = true; /* sizes are never negative */
    return b;
  }
  if (e->kind == IR_BIN && e->type == TC_INT64 && e->a->type == TC_INT64 && e->b->type == TC_INT64 &&
      depth < 8) {
    if (e->op == OP_MOD && const_int(e->b, &k) && k > 0)
      return (Bounds){true, true, 0, k - 1};
    if (e->op == OP_DIV && const_int(e->b, &k) && k > 0) {
      Lin l = lin_of(c, e->a, TC_INT64);
      b = lin_bounds(c, &l, depth + 1);
      b.lo = floordiv(b.lo, k), b.hi = floordiv(b.hi, k);
      return b;
    }
    if (e->op == OP_MIN || e->op == OP_MAX) {
      Lin la = lin_of(c, e->a, TC_INT64), lb = lin_of(c, e->b, TC_INT64);
      Bounds x = lin_bounds(c, &la, depth + 1), y = lin_bounds(c, &lb, depth + 1);
      if (e->op == OP_MIN) {
        b.has_lo = x.has_lo && y.has_lo, b.lo = x.lo < y.lo ? x.lo : y.lo;
        b.has_hi = x.has_hi || y.has_hi;
        b.hi = !x.has_hi ? y.hi : !y.has_hi ? x.hi : x.hi < y.hi ? x.hi : y.hi;
      } else {
        b.has_hi = x.has_hi && y.has_hi, b.hi = x.hi > y.hi ? x.hi : y.hi;
        b.has_lo = x.has_lo || y.has_lo;
        b.lo = !x.has_lo ? y.lo : !y.has_lo ? x.lo : x.lo > y.lo ? x.lo : y.lo;
      }
      return b;
    }
  }
  /* the value range of the type (of the source of a value-preserving cast) */
  tc_dtype t = e->type;
  if (e->kind == IR_CAST && preserves_value(e->a->type, e->type))
    t = e->a->type;
  return type_bounds(t);
}

/* Bounds of l from the bounds of its atoms. */
static Bounds lin_bounds(Ctx *c, const Lin *l, int depth) {
  Bounds r = {true, true, l->k, l->k};
  for (int i = 0; i < l->n && (r.has_lo || r.has_hi); i++) {
    int64_t k = l->t[i].coef;
    if (k == 0)
      continue;
    Bounds a = atom_bounds(c, l->t[i].atom, depth);
    bool hl = k > 0 ? a.has_lo : a.has_hi, hh = k > 0 ? a.has_hi : a.has_lo;
    int64_t vl = k > 0 ? a.lo : a.hi, vh = k > 0 ? a.hi : a.lo;
    if (!hl || int_mul_overflows(k, vl) || int_add_overflows(r.lo, k * vl))
      r.has_lo = false;
    else
      r.lo += k * vl;
    if (!hh || int_mul_overflows(k, vh) || int_add_overflows(r.hi, k * vh))
      r.has_hi = false;
    else
      r.hi += k * vh;
  }
  return r;
}

/* l with term i replaced by coef * x. */
static Lin lin_replace(Ctx *c, const Lin *l, int i, IRExpr *x) {
  Lin r = {.type = l->type, .k = l->k};
  for (int j = 0; j < l->n; j++)
    if (j != i)
      lin_add_atom(c, &r, l->t[j].atom, l->t[j].coef);
  lin_collect(c, &r, x, l->t[i].coef);
  lin_normalize(&r);
  return r;
}

static bool prove_nonneg(Ctx *c, const Lin *l, int depth) {
  int64_t k;
  Bounds b = lin_bounds(c, l, 0);
  if (b.has_lo && b.lo >= 0)
    return true;
  if (depth >= 8)
    return false;
  for (int i = 0; i < l->n; i++) {
    IRExpr *a = l->t[i].atom;
    int64_t coef = l->t[i].coef;
    if (a->kind != IR_BIN || a->type != l->type || coef == 0)
      continue;
    if (a->op == OP_MIN || a->op == OP_MAX) {
      Lin l1 = lin_replace(c, l, i, a->a), l2 = lin_replace(c, l, i, a->b);
      bool either = (a->op == OP_MIN) == (coef < 0);
      if (either)
        return prove_nonneg(c, &l1, depth + 1) || prove_nonneg(c, &l2, depth + 1);
      return prove_nonneg(c, &l1, depth + 1) && prove_nonneg(c, &l2, depth + 1);
    }
    if (a->op == OP_DIV && const_int(a->b, &k) && k > 0 && l->type == TC_INT64) {
      /* k*q in [x - (k-1), x]: prove k*l >= 0 with k*q replaced by its bound */
      Lin r = {.type = l->type};
      if (int_mul_overflows(l->k, k))
        return false;
      r.k = l->k * k;
      for (int j = 0; j < l->n; j++) {
        if (j == i)
          continue;
        if (int_mul_overflows(l->t[j].coef, k))
          return false;
        lin_add_atom(c, &r, l->t[j].atom, l->t[j].coef * k);
      }
      lin_collect(c, &r, a->a, coef);
      if (coef > 0) {
        if (int_mul_overflows(coef, k - 1) || int_add_overflows(r.k, -coef * (k - 1)))
          return false;
        r.k -= coef * (k - 1);
      }
      lin_normalize(&r);
      return prove_nonneg(c, &r, depth + 1);
    }
  }
  return false;
}

/* b - a + k as an int64 linear form */
static Lin lin_diff(Ctx *c, IRExpr *a, IRExpr *b, int64_t k) {
  Lin l = {.type = TC_INT64, .k = k};
  lin_collect(c, &l, b, 1);
  lin_collect(c, &l, a, -1);
  lin_normalize(&l);
  return l;
}

static bool prove_le_k(Ctx *c, IRExpr *a, IRExpr *b, int64_t k) { /* a <= b + k */
  if (!is_intlike(a->type) || !is_intlike(b->type))
    return false;
  Lin l = lin_diff(c, a, b, k);
  return prove_nonneg(c, &l, 0);
}

bool simplify_prove_le(Ctx *c, IRExpr *a, IRExpr *b) {
  a = simplify_expr(c, a);
  b = simplify_expr(c, b);
  return prove_le_k(c, a, b, 0);
}

/* ---- folding ---- */

static bool host_float_exact(void) {
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
  return true;
#else
  return false;
#endif
}

static bool is_plain_float(tc_dtype t) { return t == TC_FLOAT32 || t == TC_FLOAT64; }

static IRExpr *fold_float_bin(Ctx *c, IRExpr *e) {
  IRExpr *a = e->a, *b = e->b;
  if (a->kind != IR_FLOAT || b->kind != IR_FLOAT || a->type != b->type || !is_plain_float(a->type) ||
      !host_float_exact())
    return NULL;
  double x = a->fval, y = b->fval, r;
  switch (e->op) {
  case OP_ADD: r = x + y; break;
  case OP_SUB: r = x - y; break;
  case OP_MUL: r = x * y; break;
  case OP_DIV: r = x / y; break;
  case OP_MIN:
  case OP_MAX:
    if (isnan(x) || isnan(y))
      return ir_float(c, e->type, NAN);
    if (x == y && signbit(x) != signbit(y))
      return NULL; /* -0 vs +0: leave it to the target */
    r = (e->op == OP_MIN) == (x < y) ? x : y;
    break;
  case OP_LT: return ir_int(c, TC_BOOL, x < y);
  case OP_LE: return ir_int(c, TC_BOOL, x <= y);
  case OP_GT: return ir_int(c, TC_BOOL, x > y);
  case OP_GE: return ir_int(c, TC_BOOL, x >= y);
  case OP_EQ: return ir_int(c, TC_BOOL, x == y);
  case OP_NE: return ir_int(c, TC_BOOL, x != y);
  default: return NULL; /* % and anything else: the target's */
  }
  /* float32: the double result of + - * / on float32 values rounds to the
   * correctly rounded float32 result (53 >= 2*24 + 2) */
  return ir_float(c, e->type, r);
}

/* TC's float -> integer conversion: truncate, saturate, NaN gives 0. */
static int64_t float_to_int(tc_dtype t, double v) {
  if (isnan(v))
    return 0;
  v = trunc(v);
  const DTypeInfo *d = &dtype_info[t];
  if (!d->is_signed) {
    if (v <= 0)
      return 0;
    if (d->bits == 64)
      return v >= 18446744073709551616.0 ? -1 : (int64_t)(uint64_t)v;
    double mx = (double)(((uint64_t)1 << d->bits) - 1);
    return v >= mx ? (int64_t)mx : (int64_t)v;
  }
  if (d->bits == 64) {
    if (v >= 9223372036854775808.0)
      return INT64_MAX;
    if (v <= -9223372036854775808.0)
      return INT64_MIN;
    return (int64_t)v;
  }
  double mx = (double)(((int64_t)1 << (d->bits - 1)) - 1), mn = -mx - 1;
  return v >= mx ? (int64_t)mx : v <= mn ? (int64_t)mn : (int64_t)v;
}

static IRExpr *fold_cast(Ctx *c, IRExpr *e) {
  IRExpr *a = e->a;
  tc_dtype t = e->type;
  if (a->kind == IR_INT) {
    if (is_intlike(t))
      return ir_int(c, t, a->ival);
    if (!is_plain_float(t))
      return NULL;
    double v = a->type == TC_UINT64 ? (double)(uint64_t)a->ival : (double)a->ival;
    if (t == TC_FLOAT32) /* one rounding, from the integer */
      v = a->type == TC_UINT64 ? (double)(float)(uint64_t)a->ival : (double)(float)a->ival;
    return ir_float(c, t, v);
  }
  if (a->kind == IR_FLOAT && is_plain_float(a->type)) {
    if (t == TC_BOOL)
      return ir_int(c, t, a->fval != 0);
    if (is_int(t))
      return ir_int(c, t, float_to_int(t, a->fval));
    if (is_plain_float(t))
      return ir_float(c, t, a->fval);
  }
  /* int -> wider int of the same signedness, then back: the inner value */
  if (a->kind == IR_CAST && a->a->type == t && is_int(t) && is_int(a->type) &&
      dtype_info[a->type].bits >= dtype_info[t].bits &&
      (dtype_info[a->type].bits > dtype_info[t].bits ||
       dtype_info[a->type].is_signed == dtype_info[t].is_signed))
    return a->a;
  return NULL;
}

/* ---- the rewrite rules ---- */

static IRExpr *simp(Ctx *c, void *st, IRExpr *e);

/* x converted to t when needed (a rewrite may drop the operand that made the
 * node wider). */
static IRExpr *as(Ctx *c, tc_dtype t, IRExpr *x) { return ir_cast(c, t, x); }

/* Rebuilds an integer + - * tree in canonical form.  Trees holding a
 * failure are left in their order (which failure is reported first). */
static IRExpr *fold_linear(Ctx *c, IRExpr *e) {
  if (ir_has_fail(e))
    return e;
  Lin l = lin_of(c, e, e->type);
  IRExpr *r = lin_build(c, &l);
  return ir_equal(r, e) ? e : r;
}

/* (sum + k) / d and % d for int64, d > 0: pull out what d divides. */
static IRExpr *fold_divmod_linear(Ctx *c, IRExpr *e, int64_t d) {
  Lin l = lin_of(c, e->a, TC_INT64);
  Lin q = {.type = TC_INT64}, r = {.type = TC_INT64};
  for (int i = 0; i < l.n; i++) {
    if (l.t[i].coef % d == 0 && !ir_has_fail(l.t[i].atom))
      lin_add_atom(c, &q, l.t[i].atom, l.t[i].coef / d);
    else
      lin_add_atom(c, &r, l.t[i].atom, l.t[i].coef);
  }
  q.k = floordiv(l.k, d);
  r.k = floormod(l.k, d);
  if (q.n == 0 && q.k == 0)
    return NULL; /* nothing to pull out */
  lin_normalize(&r);
  IRExpr *rest = lin_build(c, &r), *dd = ir_i64(c, d);
  if (e->op == OP_MOD)
    return r.n == 0 ? ir_i64(c, r.k) : ir_bin(c, OP_MOD, rest, dd);
  IRExpr *quot = r.n == 0 ? NULL : ir_bin(c, OP_DIV, rest, dd);
  if (quot)
    lin_add_atom(c, &q, quot, 1);
  lin_normalize(&q);
  return lin_build(c, &q);
}

static IRExpr *simp_int_div(Ctx *c, IRExpr *e) {
  int64_t k;
  IRExpr *a = e->a;
  if (!const_int(e->b, &k))
    return e->a->kind == IR_INT && e->a->ival == 0 && !ir_has_fail(e->b) ? as(c, e->type, e->a) : e;
  if (k == 0)
    return ir_has_fail(a) ? e : ir_int(c, e->type, 0);
  if (k == 1)
    return e->op == OP_DIV ? as(c, e->type, a) : (ir_has_fail(a) ? e : ir_int(c, e->type, 0));
  if (e->type != TC_INT64 || k < 0 || a->type != TC_INT64)
    return e;
  /* (x / a) / b == x / (a * b) for positive a, b */
  int64_t k2;
  if (e->op == OP_DIV && a->kind == IR_BIN && a->op == OP_DIV && const_int(a->b, &k2) && k2 > 0 &&
      !int_mul_overflows(k, k2))
    return simp(c, NULL, ir_bin(c, OP_DIV, a->a, ir_i64(c, k * k2)));
  IRExpr *r = fold_divmod_linear(c, e, k);
  return r ? r : e;
}

static IRExpr *simp_minmax(Ctx *c, IRExpr *e) {
  IRExpr *a = e->a, *b = e->b;
  if (ir_equal(a, b))
    return as(c, e->type, a);
  if (e->type != TC_INT64 || a->type != TC_INT64 || b->type != TC_INT64)
    return e;
  bool min = e->op == OP_MIN;
  if (!ir_has_fail(b) && prove_le_k(c, min ? a : b, min ? b : a, 0))
    return a;
  if (!ir_has_fail(a) && prove_le_k(c, min ? b : a, min ? a : b, 0))
    return b;
  return e;
}

/* Comparisons of int64 operands decided by proof. */
static IRExpr *simp_compare(Ctx *c, IRExpr *e) {
  IRExpr *a = e->a, *b = e->b;
  if (ir_has_fail(e))
    return e;
  if (ir_equal(a, b) && is_intlike(a->type))
    return ir_int(c, TC_BOOL, e->op == OP_LE || e->op == OP_GE || e->op == OP_EQ);
  if (a->type != TC_INT64 || b->type != TC_INT64)
    return e;
  int op = e->op;
  if (op == OP_GT || op == OP_GE) { /* a > b is b < a */
    IRExpr *t = a;
    a = b, b = t;
    op = op == OP_GT ? OP_LT : OP_LE;
  }
  switch (op) {
  case OP_LT: /* a <= b - 1 */
    if (prove_le_k(c, a, b, -1))
      return ir_int(c, TC_BOOL, 1);
    if (prove_le_k(c, b, a, 0))
      return ir_int(c, TC_BOOL, 0);
    break;
  case OP_LE:
    if (prove_le_k(c, a, b, 0))
      return ir_int(c, TC_BOOL, 1);
    if (prove_le_k(c, b, a, -1))
      return ir_int(c, TC_BOOL, 0);
    break;
  case OP_EQ:
  case OP_NE: {
    Lin d = lin_diff(c, a, b, 0);
    bool eq = lin_is_const(&d) && d.k == 0;
    bool ne = (lin_is_const(&d) && d.k != 0) || prove_le_k(c, a, b, -1) || prove_le_k(c, b, a, -1);
    if (eq || ne)
      return ir_int(c, TC_BOOL, (op == OP_EQ) == eq);
    break;
  }
  default:
    break;
  }
  return e;
}

static IRExpr *simp_logic(Ctx *c, IRExpr *e) {
  IRExpr *a = e->a, *b = e->b;
  if (e->op == OP_AND) {
    if (is_true(a))
      return as(c, TC_BOOL, b);
    if (is_false(a))
      return a;
    if (is_true(b))
      return as(c, TC_BOOL, a);
    if (is_false(b) && !ir_has_fail(a))
      return b;
  } else {
    if (is_false(a))
      return as(c, TC_BOOL, b);
    if (is_true(a))
      return a;
    if (is_false(b))
      return as(c, TC_BOOL, a);
    if (is_true(b) && !ir_has_fail(a))
      return b;
  }
  return e;
}

static bool is_symbolic(const IRExpr *e) {
  return e->kind == IR_VAR &&
         (e->var->kind == VAR_SIZE || e->var->kind == VAR_SHAPE || e->var->kind == VAR_STRIDE);
}

static IRExpr *simp_bin(Ctx *c, IRExpr *e) {
  IRExpr *a = e->a, *b = e->b;
  int64_t v;
  bool ints = is_intlike(a->type) && is_intlike(b->type);
  if (ints && a->kind == IR_INT && b->kind == IR_INT && ir_eval_int(e, NULL, &v))
    return ir_int(c, e->type, v);
  if (dtype_is_float(e->type) || (dtype_is_float(a->type) && dtype_is_float(b->type))) {
    IRExpr *r = fold_float_bin(c, e);
    if (r)
      return r;
  }
  if (e->op == OP_AND || e->op == OP_OR)
    return simp_logic(c, e);
  if (!ints) {
    /* exact float identities: x * 1, x / 1, x - (+0) */
    if (dtype_is_float(e->type) && b->kind == IR_FLOAT && a->type == e->type &&
        (((e->op == OP_MUL || e->op == OP_DIV) && b->fval == 1.0) ||
         (e->op == OP_SUB && b->fval == 0.0 && !signbit(b->fval))))
      return a;
    if (dtype_is_float(e->type) && a->kind == IR_FLOAT && b->type == e->type && e->op == OP_MUL &&
        a->fval == 1.0)
      return b;
    return e;
  }
  if (!is_int(e->type))
    return e->kind == IR_BIN && (e->op >= OP_LT && e->op <= OP_NE) ? simp_compare(c, e) : e;
  /* commutative operators: operands in atom order (a size, shape or stride
   * factor last: `(2 * h + kh) * s2`) */
  if ((e->op == OP_MUL || e->op == OP_MIN || e->op == OP_MAX) && a->kind != IR_INT &&
      b->kind != IR_INT && a->type == b->type && !ir_has_fail(a) && !ir_has_fail(b) &&
      (e->op == OP_MUL && is_symbolic(a) != is_symbolic(b) ? is_symbolic(a) : cmp_expr(a, b) > 0)) {
    e = ir_bin(c, e->op, b, a);
    a = e->a, b = e->b;
  }
  switch (e->op) {
  case OP_ADD:
  case OP_SUB:
  case OP_MUL:
    if (e->op == OP_MUL && ((is_zero(a) && !ir_has_fail(b)) || (is_zero(b) && !ir_has_fail(a))))
      return ir_int(c, e->type, 0);
    if (e->op == OP_MUL && is_one(a))
      return as(c, e->type, b);
    if (e->op == OP_MUL && is_one(b))
      return as(c, e->type, a);
    if (e->op != OP_MUL && is_zero(b))
      return as(c, e->type, a);
    if (e->op == OP_ADD && is_zero(a))
      return as(c, e->type, b);
    return fold_linear(c, e);
  case OP_DIV:
  case OP_MOD:
    return simp_int_div(c, e);
  case OP_MIN:
  case OP_MAX:
    return simp_minmax(c, e);
  default:
    return simp_compare(c, e);
  }
}

static IRExpr *simp_un(Ctx *c, IRExpr *e) {
  IRExpr *a = e->a;
  if (a->kind == IR_INT) {
    int64_t v;
    if (ir_eval_int(e, NULL, &v))
      return ir_int(c, e->type, v);
  }
  if (a->kind == IR_FLOAT && e->op == OP_NEG && is_plain_float(a->type))
    return ir_float(c, e->type, -a->fval);
  if (a->kind == IR_UN && a->op == e->op && a->a->type == e->type)
    return a->a; /* --x, !!x */
  if (e->op == OP_NEG && is_int(e->type) && a->type == e->type)
    return fold_linear(c, e);
  return e;
}

static IRExpr *simp_select(Ctx *c, IRExpr *e) {
  if (is_true(e->a))
    return as(c, e->type, e->b);
  if (is_false(e->a))
    return as(c, e->type, e->c);
  if (ir_equal(e->b, e->c) && !ir_has_fail(e->a))
    return as(c, e->type, e->b);
  return e;
}

static IRExpr *simp(Ctx *c, void *st, IRExpr *e) {
  (void)st;
  e = ir_mutate_expr_children(c, e, simp, NULL);
  switch (e->kind) {
  case IR_BIN:
    return simp_bin(c, e);
  case IR_UN:
    return simp_un(c, e);
  case IR_SELECT:
    return simp_select(c, e);
  case IR_CAST: {
    IRExpr *r = fold_cast(c, e);
    return r ? r : e;
  }
  default:
    return e;
  }
}

IRExpr *simplify_expr(Ctx *c, IRExpr *e) { return e ? simp(c, NULL, e) : e; }

/* ---- statements ---- */

static IRStmt *empty(Ctx *c) { return ir_block(c, NULL, 0); }
static bool is_empty(const IRStmt *s) { return !s || (s->kind == S_BLOCK && s->n == 0); }

typedef struct Subst {
  IRVar *var;
  IRExpr *with;
} Subst;

static IRExpr *subst_expr(Ctx *c, void *st, IRExpr *e) {
  Subst *s = st;
  if (e->kind == IR_VAR && e->var == s->var)
    return s->with;
  return ir_mutate_expr_children(c, e, subst_expr, st);
}

static IRStmt *subst_stmt(Ctx *c, void *st, IRStmt *s) {
  return ir_mutate_stmt_children(c, s, subst_stmt, subst_expr, st);
}

static IRStmt *simp_stmt(Ctx *c, void *st, IRStmt *s);

static IRStmt *simp_block(Ctx *c, IRStmt *s) {
  IRStmt *n = ir_mutate_stmt_children(c, s, simp_stmt, NULL, NULL);
  bool flat = true;
  for (int i = 0; i < n->n; i++)
    if (n->stmts[i]->kind == S_BLOCK)
      flat = false;
  if (flat)
    return n;
  VEC(IRStmt *) out = {0};
  for (int i = 0; i < n->n; i++) {
    IRStmt *x = n->stmts[i];
    if (x->kind == S_BLOCK) {
      for (int j = 0; j < x->n; j++)
        vec_push(c->arena, &out, x->stmts[j]);
    } else {
      vec_push(c->arena, &out, x);
    }
  }
  IRStmt *r = ir_block(c, out.data, out.len);
  r->loc = s->loc;
  return r;
}

static IRStmt *simp_for(Ctx *c, IRStmt *s) {
  IRExpr *lo = simplify_expr(c, s->lo), *extent = simplify_expr(c, s->extent);
  int64_t k;
  if (const_int(extent, &k) && k <= 0 && !ir_has_fail(lo))
    return empty(c);
  if (const_int(extent, &k) && k == 1) {
    Subst sub = {s->var, lo};
    return simp_stmt(c, NULL, subst_stmt(c, &sub, s->body));
  }
  IRStmt *body = simp_stmt(c, NULL, s->body);
  if (is_empty(body) && !ir_has_fail(lo) && !ir_has_fail(extent))
    return empty(c);
  if (lo == s->lo && extent == s->extent && body == s->body)
    return s;
  IRStmt *r = ir_for(c, s->var, lo, extent, s->fkind, body);
  r->loc = s->loc;
  return r;
}

static IRStmt *simp_stmt(Ctx *c, void *st, IRStmt *s) {
  (void)st;
  switch (s->kind) {
  case S_FOR:
    return simp_for(c, s);
  case S_BLOCK:
    return simp_block(c, s);
  case S_IF: {
    IRStmt *n = ir_mutate_stmt_children(c, s, simp_stmt, simp, NULL);
    if (is_true(n->cond))
      return n->then ? n->then : empty(c);
    if (is_false(n->cond))
      return n->els ? n->els : empty(c);
    if (is_empty(n->then) && is_empty(n->els) && !ir_has_fail(n->cond))
      return empty(c);
    return n;
  }
  case S_CHECK: {
    IRStmt *n = ir_mutate_stmt_children(c, s, simp_stmt, simp, NULL);
    return is_true(n->cond) ? empty(c) : n;
  }
  default:
    return ir_mutate_stmt_children(c, s, simp_stmt, simp, NULL);
  }
}

IRStmt *simplify_stmt(Ctx *c, IRStmt *s) { return s ? simp_stmt(c, NULL, s) : s; }
