/*
 * lower.c — a checked, inferred Def to the loop-nest IR.
 *
 * Requires: sema_program and infer_def have run on the def (every Expr typed
 * and resolved; IndexVar.lo/hi, Stmt.cons, SizeSym.var, Tensor.zero_fill set).
 * Guarantees: an IRFunc with one Buffer per tensor (slot == tensor id), one
 * size variable per size symbol, and a body running the statements in
 * program order (simplified, so one flat block); loads and stores are
 * multi-dimensional (nidx == rank); every loop is serial; every IR_BIN has
 * operands of one type; nothing in the body reads memory outside its buffer.
 *
 * One statement becomes:
 *
 *   zero-fill        the whole lhs, when its first definition leaves elements
 *                    unwritten (a range not starting at 0)
 *   checks           S_CHECK per affine constraint that range inference did
 *                    not use to solve a variable: the subscript's extreme
 *                    values over the index ranges must lie in [0, size)
 *                    unless some range is empty; boundary dims of extent 0
 *   loop nest        left-hand variables outermost, in order, then the
 *                    reduction variables; `=` stores the value, a reduction
 *                    keeps an accumulator (acc<k>) in the innermost
 *                    left-hand loop, initialised with the identity or the
 *                    current element, stored after the reduction loops
 *
 * Reads: a dimension under a boundary condition rewrites its index (clamp,
 * floor-mod for wrap, reflection for mirror, or a lazy select between the
 * load, which runs only in range, and the constant); a subscript not
 * covered by a check (not affine, or under a branch of ?:) is guarded per
 * element with a lazy select whose other arm is an IR_FAIL naming the
 * access.  The extent-0
 * check of a boundary dim is up front too, unless the read may not run
 * (a ?: branch, the right of && or ||): then it is per element.
 *
 * Subscripts are computed in int64 (docs/language.md): inside them every
 * integer operation happens in int64 and integer casts do not narrow; loads,
 * comparisons and float parts are values converted to int64.  Outside
 * subscripts each operation computes in the type sema gave it, with its
 * operands converted to it (comparisons: to the promoted operand type),
 * except that float16 and bfloat16 compute in float32: their values are
 * float32 in the IR (accumulators too) and only explicit casts and stores
 * round.  This is the interpreter's evaluation, step for step.
 *
 * Names: buffers b_<name>, their extents and strides b_<name>_n<d> and
 * b_<name>_s<d>, sizes z_<name> (made by infer), loop variables
 * x<stmt>_<name>, fill loops f<stmt>_<d>, accumulators acc<k>, indirect
 * subscripts ix<k> and the conditions they run under pc<k>: user names
 * appear only behind these prefixes (a clash gets a numeric suffix).
 */
#include "tc.h"

#include <math.h>
#include <string.h>

typedef struct Lower {
  Ctx *c;
  Def *d;
  IRFunc *f;
  VEC(const char *) names; /* every name taken so far */
  /* the statement being lowered */
  Stmt *s;
  int si;
  IRVar **loop;            /* [s->nvars] by IndexVar id */
  int cond_depth;          /* > 0 where code may not run: a branch of ?:,
                              the right operand of && or || */
  IRExpr *path;            /* there: when it runs (bool), or NULL */
  bool path_is_var;        /* `path` is a declared local already */
  VEC(IRStmt *) hoisted;   /* locals the right-hand side reads, in order */
  VEC(IRStmt *) pre;       /* checks to run before the loop nest */
  VEC(int) bc_checked;     /* tensor id * TC_MAX_RANK + dim with a check */
} Lower;

/* ---- names and sites ---- */

static bool name_taken(Lower *L, const char *n) {
  for (int i = 0; i < L->names.len; i++)
    if (!strcmp(L->names.data[i], n))
      return true;
  return false;
}

/* `base`, or base_<k> for the first free k. */
static const char *unique_name(Lower *L, const char *base) {
  const char *n = base;
  for (int k = 1; name_taken(L, n); k++)
    n = arena_printf(L->c->arena, "%s_%d", base, k);
  n = arena_strdup(L->c->arena, n);
  vec_push(L->c->arena, &L->names, n);
  return n;
}

static IRVar *new_var(Lower *L, const char *base, VarKind k, tc_dtype t) {
  return ir_new_var(L->c, unique_name(L, base), k, t);
}

static int add_site(Lower *L, FailKind k, Loc loc, Tensor *t, int dim) {
  FailSite fs = {k, loc, t, dim, false};
  vec_push(L->c->arena, &L->f->sites, fs);
  return L->f->sites.len - 1;
}

/* ---- constants ---- */

/* v rounded to nearest even with `p` significant bits and minimum normal
 * exponent `emin`; beyond `max` it overflows to infinity. */
static double round_to_format(double v, int p, int emin, double max) {
  if (isnan(v) || isinf(v) || v == 0)
    return v;
  int ex;
  frexp(v, &ex); /* |v| = m * 2^ex, m in [0.5, 1) */
  int e = ex - 1 < emin ? emin : ex - 1;
  double q = ldexp(1, e - (p - 1));
  double r = rint(v / q) * q;
  return fabs(r) > max ? copysign(INFINITY, v) : r;
}

/* The constant v of type t, converted as a cast would (floats round,
 * integers truncate and saturate, NaN gives 0). */
static IRExpr *const_of(Lower *L, tc_dtype t, double v) {
  const DTypeInfo *d = &dtype_info[t];
  if (t == TC_FLOAT16)
    return ir_float(L->c, t, round_to_format(v, 11, -14, 65504.0));
  if (t == TC_BFLOAT16)
    return ir_float(L->c, t, round_to_format(v, 8, -126, 0x1.fep127));
  if (d->is_float)
    return ir_float(L->c, t, v);
  if (d->is_bool)
    return ir_int(L->c, t, v != 0);
  if (isnan(v))
    return ir_int(L->c, t, 0);
  v = trunc(v);
  if (d->is_signed) {
    double lim = ldexp(1, d->bits - 1);
    if (v <= -lim)
      return ir_int(L->c, t, d->bits == 64 ? INT64_MIN : -(int64_t)lim);
    if (v >= lim)
      return ir_int(L->c, t, d->bits == 64 ? INT64_MAX : (int64_t)lim - 1);
    return ir_int(L->c, t, (int64_t)v);
  }
  if (v <= 0)
    return ir_int(L->c, t, 0);
  if (v >= ldexp(1, d->bits))
    return ir_int(L->c, t, -1); /* wraps to the type's maximum */
  return ir_int(L->c, t, (int64_t)(uint64_t)v);
}

/* The identity of a reduction on type t. */
static IRExpr *identity(Lower *L, RedOp op, tc_dtype t) {
  const DTypeInfo *d = &dtype_info[t];
  switch (op) {
  case RED_ADD:
    return const_of(L, t, 0);
  case RED_MUL:
    return const_of(L, t, 1);
  case RED_MIN:
    if (d->is_float)
      return ir_float(L->c, t, INFINITY);
    if (d->is_bool || !d->is_signed)
      return ir_int(L->c, t, -1); /* all ones: the maximum */
    return ir_int(L->c, t, (int64_t)(((uint64_t)1 << (d->bits - 1)) - 1));
  case RED_MAX:
    if (d->is_float)
      return ir_float(L->c, t, -INFINITY);
    if (d->is_bool || !d->is_signed)
      return ir_int(L->c, t, 0);
    return ir_int(L->c, t, (int64_t)((uint64_t)-1 << (d->bits - 1)));
  case RED_NONE:
    break;
  }
  IASSERT(L->c, !"identity of no reduction");
  return NULL;
}

/* ---- expressions ---- */

static IRExpr *lower_expr(Lower *L, Expr *e, bool ix);

static bool is_compare(int op) {
  return op == OP_LT || op == OP_LE || op == OP_GT || op == OP_GE || op == OP_EQ || op == OP_NE;
}

static IRExpr *i64(Lower *L, int64_t v) { return ir_i64(L->c, v); }

static IRExpr *bin(Lower *L, BinOp op, IRExpr *a, IRExpr *b) { return ir_bin(L->c, op, a, b); }

/* 0 <= i && i < n */
static IRExpr *in_range(Lower *L, IRExpr *i, IRExpr *n) {
  return bin(L, OP_AND, bin(L, OP_GE, i, i64(L, 0)), bin(L, OP_LT, i, n));
}

/* Some variable of the statement (only left-hand ones when `lhs_only`) has
 * an empty range, so the statement reads nothing; NULL when none can be. */
static IRExpr *any_empty(Lower *L, bool lhs_only) {
  IRExpr *r = NULL;
  for (int i = 0; i < L->s->nvars; i++) {
    IndexVar *v = L->s->vars[i];
    if (lhs_only && v->reduction)
      continue;
    IRExpr *e = simplify_expr(L->c, bin(L, OP_LE, ir_cast(L->c, TC_INT64, v->hi),
                                        ir_cast(L->c, TC_INT64, v->lo)));
    int64_t k;
    if (ir_is_const(e, &k) && !k)
      continue;
    r = r ? bin(L, OP_OR, r, e) : e;
  }
  return r;
}

static Constraint *find_constraint(Lower *L, Expr *sub) {
  for (int i = 0; i < L->s->ncons; i++)
    if (L->s->cons[i].sub == sub)
      return &L->s->cons[i];
  return NULL;
}

/* A boundary dim needs extent > 0: checked before the statement, or per
 * element under a branch of ?: (which may never run). */
static IRExpr *guard_nonempty(Lower *L, Expr *e, int dim, IRExpr *n, IRExpr *x) {
  Tensor *t = e->tensor;
  if (L->cond_depth > 0) {
    int site = add_site(L, FAIL_BC_EMPTY, e->loc, t, dim);
    return ir_select(L->c, bin(L, OP_GT, n, i64(L, 0)), x,
                     ir_fail(L->c, x->type, site, n, i64(L, 0)));
  }
  int key = t->id * TC_MAX_RANK + dim;
  for (int i = 0; i < L->bc_checked.len; i++)
    if (L->bc_checked.data[i] == key)
      return x;
  vec_push(L->c->arena, &L->bc_checked, key);
  int site = add_site(L, FAIL_BC_EMPTY, e->loc, t, dim);
  IRExpr *cond = bin(L, OP_GT, n, i64(L, 0));
  IRExpr *empty = any_empty(L, false);
  if (empty)
    cond = bin(L, OP_OR, empty, cond);
  vec_push(L->c->arena, &L->pre, ir_check(L->c, cond, ir_fail(L->c, TC_INT64, site, n, i64(L, 0))));
  return x;
}

static IRVar *new_local(Lower *L, const char *prefix, tc_dtype t) {
  const char *name = arena_printf(L->c->arena, "%s%d", prefix, L->f->nvars++);
  return new_var(L, name, VAR_LOCAL, t);
}

/* An indirect subscript (one that reads memory) is computed once, into a
 * local declared before the statement's store: the guard, the load and the
 * failure report all use it, so nested indirect reads stay linear in size.
 * Where the read may not run, the local is computed only when it would:
 * select(path, i, 0). */
static IRExpr *hoist_index(Lower *L, IRExpr *i) {
  Ctx *c = L->c;
  if (!ir_loads_buf(i, NULL))
    return i;
  if (L->path && !L->path_is_var) {
    IRVar *p = new_local(L, "pc", TC_BOOL);
    vec_push(c->arena, &L->hoisted, ir_decl(c, p, L->path));
    L->path = ir_var(c, p);
    L->path_is_var = true;
  }
  IRVar *v = new_local(L, "ix", TC_INT64);
  IRExpr *val = L->path ? ir_select(c, L->path, i, i64(L, 0)) : i;
  vec_push(c->arena, &L->hoisted, ir_decl(c, v, val));
  return ir_var(c, v);
}

/* Enters code that runs only when `cond` holds; returns what to restore. */
typedef struct Path {
  IRExpr *path;
  bool is_var;
} Path;

static Path enter_lazy(Lower *L, IRExpr *cond) {
  Path saved = {L->path, L->path_is_var};
  L->cond_depth++;
  L->path = L->path ? bin(L, OP_AND, L->path, cond) : cond;
  L->path_is_var = false;
  return saved;
}

static void leave_lazy(Lower *L, Path saved) {
  L->cond_depth--;
  L->path = saved.path;
  L->path_is_var = saved.is_var;
}

/* A read T(e0, e1, ...). */
static IRExpr *lower_access(Lower *L, Expr *e) {
  Ctx *c = L->c;
  Tensor *t = e->tensor;
  Buffer *b = L->f->bufs[t->id];
  IASSERT(c, e->nargs == t->rank && b->rank == t->rank);
  IRExpr *idx[TC_MAX_RANK], *sub[TC_MAX_RANK];
  bool guard[TC_MAX_RANK] = {0}, nonempty[TC_MAX_RANK] = {0};
  IRExpr *inside = NULL; /* constant boundary: every bc index in range */
  for (int d = 0; d < t->rank; d++) {
    IRExpr *i = hoist_index(L, ir_cast(c, TC_INT64, lower_expr(L, e->args[d], true)));
    IRExpr *n = ir_var(c, b->shape[d]);
    IRExpr *clamped = ir_min(c, ir_max(c, i, i64(L, 0)), ir_sub(c, n, i64(L, 1)));
    sub[d] = i;
    idx[d] = i;
    if (t->bc != BC_NONE && t->bc_dim[d]) {
      switch (t->bc) {
      case BC_CLAMP:
        idx[d] = clamped;
        break;
      case BC_WRAP:
        idx[d] = bin(L, OP_MOD, i, n);
        break;
      case BC_MIRROR: {
        IRExpr *n2 = ir_mul(c, i64(L, 2), n);
        IRExpr *m = bin(L, OP_MOD, i, n2);
        idx[d] = ir_select(c, bin(L, OP_LT, m, n), m, ir_sub(c, ir_sub(c, n2, i64(L, 1)), m));
        break;
      }
      case BC_CONSTANT: {
        /* the load runs only inside (a lazy select): the subscript as it
         * is, affine where it was, so vector code loads it masked */
        IRExpr *ok = in_range(L, i, n);
        inside = inside ? bin(L, OP_AND, inside, ok) : ok;
        break;
      }
      case BC_NONE:
        break;
      }
      nonempty[d] = t->bc != BC_CONSTANT;
      continue;
    }
    Constraint *k = find_constraint(L, e->args[d]);
    guard[d] = !k || !k->affine || (k->conditional && !k->consumed);
  }
  IRExpr *x = ir_load(c, b, idx, t->rank);
  if (inside)
    x = ir_select(c, inside, x, const_of(L, t->dtype, t->bc_value));
  for (int d = 0; d < t->rank; d++)
    if (nonempty[d])
      x = guard_nonempty(L, e, d, ir_var(c, b->shape[d]), x);
  for (int d = t->rank - 1; d >= 0; d--) {
    IRExpr *n = ir_var(c, b->shape[d]);
    if (guard[d]) {
      int site = add_site(L, FAIL_INDEX, e->loc, t, d);
      x = ir_select(c, in_range(L, sub[d], n), x, ir_fail(c, t->dtype, site, sub[d], n));
    }
  }
  return x;
}

/* The type an expression of type t computes in: float16 and bfloat16 are
 * storage types whose arithmetic is float32 (docs/language.md), so their
 * values are float32 in the IR; only explicit casts and stores round. */
static tc_dtype compute_type(tc_dtype t) {
  return t == TC_FLOAT16 || t == TC_BFLOAT16 ? TC_FLOAT32 : t;
}

static IRExpr *lower_binary(Lower *L, Expr *e, tc_dtype ty, bool ix) {
  IRExpr *a = lower_expr(L, e->a, ix);
  if (e->op == OP_AND || e->op == OP_OR) {
    /* the right operand runs only when the left does not decide */
    a = ir_cast(L->c, TC_BOOL, a);
    Path saved = enter_lazy(L, e->op == OP_AND ? a : ir_un(L->c, OP_NOT, a));
    IRExpr *b = ir_cast(L->c, TC_BOOL, lower_expr(L, e->b, ix));
    leave_lazy(L, saved);
    return bin(L, (BinOp)e->op, a, b);
  }
  IRExpr *b = lower_expr(L, e->b, ix);
  tc_dtype t = is_compare(e->op) ? compute_type(dtype_promote(e->a->type, e->b->type)) : ty;
  return bin(L, (BinOp)e->op, ir_cast(L->c, t, a), ir_cast(L->c, t, b));
}

/* A cast inside a subscript: integers stay exact int64 (the cast does not
 * narrow), other values convert to int64 directly. */
static IRExpr *lower_index_cast(Lower *L, Expr *a) {
  if (dtype_is_int(a->type))
    return lower_expr(L, a, true);
  return ir_cast(L->c, TC_INT64, lower_expr(L, a, false));
}

/* `ix`: inside a subscript, where integer nodes compute in int64 and other
 * nodes (comparisons, floats) are values converted to int64 by their
 * integer parent. */
static IRExpr *lower_expr(Lower *L, Expr *e, bool ix) {
  Ctx *c = L->c;
  ix = ix && dtype_is_int(e->type);
  tc_dtype ty = ix ? TC_INT64 : compute_type(e->type);
  switch (e->kind) {
  case EX_INT:
    return dtype_is_float(ty) ? const_of(L, ty, (double)e->ival) : ir_int(c, ty, e->ival);
  case EX_FLOAT:
    return const_of(L, ty, e->fval);
  case EX_INDEX:
    return ir_cast(c, ty, ir_var(c, L->loop[e->var->id]));
  case EX_SIZE:
    IASSERT(c, e->sym && e->sym->var);
    return ir_cast(c, ty, ir_var(c, e->sym->var));
  case EX_ACCESS:
    return ir_cast(c, ty, lower_access(L, e));
  case EX_BUILTIN: {
    IRExpr **args = arena_alloc(c->arena, sizeof(IRExpr *) * (size_t)(e->nargs + 1));
    for (int i = 0; i < e->nargs; i++)
      args[i] = ir_cast(c, e->type, lower_expr(L, e->args[i], false));
    return ir_cast(c, ty, ir_call(c, e->type, e->builtin, args, e->nargs));
  }
  case EX_CAST:
    IASSERT(c, e->nargs == 1);
    if (ix)
      return lower_index_cast(L, e->args[0]);
    return ir_cast(c, ty, ir_cast(c, e->type, lower_expr(L, e->args[0], false)));
  case EX_UNARY:
    if (e->op == OP_NOT)
      return ir_un(c, OP_NOT, ir_cast(c, TC_BOOL, lower_expr(L, e->a, ix)));
    return ir_un(c, OP_NEG, ir_cast(c, ty, lower_expr(L, e->a, ix)));
  case EX_BINARY:
    return lower_binary(L, e, ty, ix);
  case EX_SELECT: {
    IRExpr *cond = ir_cast(c, TC_BOOL, lower_expr(L, e->a, false));
    Path saved = enter_lazy(L, cond);
    IRExpr *a = ir_cast(c, ty, lower_expr(L, e->b, ix));
    leave_lazy(L, saved);
    saved = enter_lazy(L, ir_un(c, OP_NOT, cond));
    IRExpr *b = ir_cast(c, ty, lower_expr(L, e->c, ix));
    leave_lazy(L, saved);
    return ir_select(c, cond, a, b);
  }
  case EX_IDENT:
  case EX_CALL:
    break;
  }
  IASSERT(c, !"unresolved expression reached lowering");
  return NULL;
}

/* ---- statements ---- */

static IRExpr *zero(Lower *L, tc_dtype t) { return const_of(L, t, 0); }

/* Stores 0 to every element of b. */
static IRStmt *zero_fill(Lower *L, Buffer *b) {
  Ctx *c = L->c;
  IRVar *v[TC_MAX_RANK];
  IRExpr *idx[TC_MAX_RANK];
  for (int d = 0; d < b->rank; d++) {
    v[d] = new_var(L, arena_printf(c->arena, "f%d_%d", L->si, d), VAR_LOOP, TC_INT64);
    idx[d] = ir_var(c, v[d]);
  }
  IRStmt *s = ir_store(c, b, idx, b->rank, zero(L, b->dtype));
  for (int d = b->rank - 1; d >= 0; d--)
    s = ir_for(c, v[d], i64(L, 0), ir_var(c, b->shape[d]), FOR_SERIAL, s);
  return s;
}

/* The up-front check of one affine constraint, or NULL when none is needed. */
static IRStmt *range_check(Lower *L, Constraint *k) {
  Ctx *c = L->c;
  Stmt *s = L->s;
  if (!k->affine || k->consumed || k->conditional || k->is_exists)
    return NULL;
  if (!k->write && k->tensor->bc != BC_NONE && k->tensor->bc_dim[k->dim])
    return NULL;
  IRExpr *lo = k->rest ? ir_cast(c, TC_INT64, k->rest) : i64(L, 0), *hi = lo;
  for (int i = 0; i < s->nvars; i++) {
    int64_t a = k->coef[i];
    if (!a)
      continue;
    IndexVar *v = s->vars[i];
    IRExpr *first = ir_cast(c, TC_INT64, v->lo);
    IRExpr *last = ir_sub(c, ir_cast(c, TC_INT64, v->hi), i64(L, 1));
    lo = ir_add(c, lo, ir_mul(c, i64(L, a), a > 0 ? first : last));
    hi = ir_add(c, hi, ir_mul(c, i64(L, a), a > 0 ? last : first));
  }
  lo = simplify_expr(c, lo);
  hi = simplify_expr(c, hi);
  IRExpr *size = ir_cast(c, TC_INT64, k->size);
  IRExpr *cond = bin(L, OP_AND, bin(L, OP_GE, lo, i64(L, 0)), bin(L, OP_LT, hi, size));
  IRExpr *empty = any_empty(L, k->write);
  if (empty)
    cond = bin(L, OP_OR, empty, cond);
  cond = simplify_expr(c, cond);
  int64_t ok;
  if (ir_is_const(cond, &ok) && ok)
    return NULL;
  for (int i = 0; i < L->pre.len; i++)
    if (L->pre.data[i]->kind == S_CHECK && ir_equal(L->pre.data[i]->cond, cond))
      return NULL;
  int site = add_site(L, FAIL_RANGE, k->loc, k->tensor, k->dim);
  L->f->sites.data[site].write = k->write;
  IRExpr *value = ir_select(c, bin(L, OP_LT, lo, i64(L, 0)), lo, hi);
  return ir_check(c, cond, ir_fail(c, TC_INT64, site, value, size));
}

static IRStmt *loop_over(Lower *L, IndexVar *v, IRStmt *body) {
  Ctx *c = L->c;
  IRExpr *lo = ir_cast(c, TC_INT64, v->lo), *hi = ir_cast(c, TC_INT64, v->hi);
  IRExpr *extent = simplify_expr(c, ir_sub(c, hi, lo));
  return ir_for(c, L->loop[v->id], simplify_expr(c, lo), extent, FOR_SERIAL, body);
}

static BinOp red_binop(RedOp op) {
  switch (op) {
  case RED_MUL: return OP_MUL;
  case RED_MIN: return OP_MIN;
  case RED_MAX: return OP_MAX;
  default: return OP_ADD;
  }
}

/* s preceded by the locals the right-hand side reads. */
static IRStmt *with_hoisted(Lower *L, IRStmt *s) {
  if (!L->hoisted.len)
    return s;
  vec_push(L->c->arena, &L->hoisted, s);
  return ir_block(L->c, L->hoisted.data, L->hoisted.len);
}

/* The loop nest of statement s: stores for `=`, an accumulator otherwise. */
static IRStmt *lower_nest(Lower *L) {
  Ctx *c = L->c;
  Stmt *s = L->s;
  Tensor *t = s->lhs;
  Buffer *b = L->f->bufs[t->id];
  int nl = 0;
  while (nl < s->nvars && !s->vars[nl]->reduction)
    nl++;
  IASSERT(c, nl == t->rank);
  for (int i = nl; i < s->nvars; i++)
    IASSERT(c, s->vars[i]->reduction);
  IRExpr *idx[TC_MAX_RANK];
  for (int i = 0; i < nl; i++)
    idx[i] = ir_var(c, L->loop[s->vars[i]->id]);
  tc_dtype at = compute_type(t->dtype); /* the accumulator's type */
  L->hoisted.len = 0;
  IRExpr *rhs = lower_expr(L, s->rhs, false);
  IRStmt *body;
  if (s->op == RED_NONE) {
    IASSERT(c, nl == s->nvars);
    body = with_hoisted(L, ir_store(c, b, idx, nl, ir_cast(c, t->dtype, ir_cast(c, at, rhs))));
  } else {
    IRVar *acc = new_local(L, "acc", at);
    IRExpr *init = s->init ? identity(L, s->op, at) : ir_cast(c, at, ir_load(c, b, idx, nl));
    IRStmt *red = ir_assign(c, acc, bin(L, red_binop(s->op), ir_var(c, acc), ir_cast(c, at, rhs)));
    red = with_hoisted(L, red);
    for (int i = s->nvars - 1; i >= nl; i--)
      red = loop_over(L, s->vars[i], red);
    IRExpr *val = ir_cast(c, t->dtype, ir_var(c, acc));
    IRStmt *parts[3] = {ir_decl(c, acc, init), red, ir_store(c, b, idx, nl, val)};
    body = ir_block(c, parts, 3);
  }
  for (int i = nl - 1; i >= 0; i--)
    body = loop_over(L, s->vars[i], body);
  return body;
}

static IRStmt *lower_stmt(Lower *L, Stmt *s, int si) {
  Ctx *c = L->c;
  L->s = s;
  L->si = si;
  L->pre.len = 0;
  L->bc_checked.len = 0;
  L->cond_depth = 0;
  L->path = NULL;
  L->path_is_var = false;
  L->loop = arena_alloc(c->arena, sizeof(IRVar *) * (size_t)(s->nvars + 1));
  for (int i = 0; i < s->nvars; i++) {
    IndexVar *v = s->vars[i];
    IASSERT(c, v->id == i && v->lo && v->hi);
    L->loop[i] = new_var(L, arena_printf(c->arena, "x%d_%s", si, v->name), VAR_LOOP, TC_INT64);
  }
  VEC(IRStmt *) out = {0};
  if (s->first_def && s->lhs->zero_fill)
    vec_push(c->arena, &out, zero_fill(L, L->f->bufs[s->lhs->id]));
  for (int i = 0; i < s->ncons; i++) {
    IRStmt *chk = range_check(L, &s->cons[i]);
    if (chk)
      vec_push(c->arena, &L->pre, chk);
  }
  IRStmt *nest = lower_nest(L);
  for (int i = 0; i < L->pre.len; i++)
    vec_push(c->arena, &out, L->pre.data[i]);
  vec_push(c->arena, &out, nest);
  IRStmt *blk = ir_block(c, out.data, out.len);
  blk->loc = s->loc;
  return blk;
}

static void make_buffers(Lower *L) {
  Ctx *c = L->c;
  Def *d = L->d;
  IRFunc *f = L->f;
  f->nbufs = d->ntensors;
  f->bufs = arena_alloc(c->arena, sizeof(Buffer *) * (size_t)(d->ntensors + 1));
  int off = 0;
  for (int i = 0; i < d->ntensors; i++) {
    Tensor *t = d->tensors[i];
    IASSERT(c, t->id == i && t->rank <= TC_MAX_RANK);
    Buffer *b = arena_alloc(c->arena, sizeof *b);
    b->name = unique_name(L, arena_printf(c->arena, "b_%s", t->name));
    b->tensor = t;
    b->slot = t->id;
    b->dtype = t->dtype;
    b->rank = t->rank;
    b->dim_offset = off;
    for (int k = 0; k < t->rank; k++) {
      b->shape[k] = new_var(L, arena_printf(c->arena, "%s_n%d", b->name, k), VAR_SHAPE, TC_INT64);
      b->stride[k] = new_var(L, arena_printf(c->arena, "%s_s%d", b->name, k), VAR_STRIDE, TC_INT64);
      b->shape[k]->buf = b->stride[k]->buf = b;
      b->shape[k]->dim = b->stride[k]->dim = k;
    }
    off += t->rank;
    f->bufs[i] = b;
  }
  f->ndims = off;
}

IRFunc *lower_def(Ctx *c, Def *d) {
  Lower L = {.c = c, .d = d};
  IRFunc *f = L.f = arena_alloc(c->arena, sizeof *f);
  f->def = d;
  f->nsizes = d->nsyms;
  f->sizes = arena_alloc(c->arena, sizeof(IRVar *) * (size_t)(d->nsyms + 1));
  for (int i = 0; i < d->nsyms; i++) {
    IRVar *v = d->syms[i]->var;
    IASSERT(c, v && v->kind == VAR_SIZE && d->syms[i]->id == i);
    f->sizes[i] = v;
    vec_push(c->arena, &L.names, v->name);
  }
  make_buffers(&L);
  IRStmt **stmts = arena_alloc(c->arena, sizeof(IRStmt *) * (size_t)(d->nstmts + 1));
  for (int i = 0; i < d->nstmts; i++)
    stmts[i] = lower_stmt(&L, d->stmts[i], i);
  f->body = simplify_stmt(c, ir_block(c, stmts, d->nstmts));
  return f;
}
