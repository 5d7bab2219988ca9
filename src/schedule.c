/*
 * schedule.c — the autoscheduler's loop kinds: which loops run on the thread
 * pool and which are vectorized.  Contractions were tiled before this pass
 * (tile.c); statements were inlined, fused and their per-iteration
 * temporaries folded before that (inline.c, fuse.c, fold.c).  What is left is decided here, per top-level loop nest:
 *
 *   parallel    a loop not nested in another loop whose variable is a
 *               "left-hand" loop (below): distinct iterations write distinct
 *               elements, so they run on the pool.  When that loop is also
 *               innermost (a 1-d statement, `O(i) = ...`), it is split into
 *               blocks of BLOCK iterations: the blocks run in parallel, each
 *               block is one vectorized loop.
 *   vectorized  an innermost left-hand loop that is not parallel, and an
 *               innermost reduction loop whose body only updates
 *               accumulators as `acc = acc OP e` (OP + * min max, on 32- and
 *               64-bit types): the emitter writes `#pragma omp simd` with a
 *               reduction clause per accumulator.  Lanes then reduce their
 *               share of the range and are combined at the end, which
 *               reorders floating-point sums and products (docs/language.md).
 *               Only loops whose accesses are affine in the loop variable:
 *               a clamped or wrapped index would make every access a gather.
 *   partitioned an innermost loop whose only non-affine accesses come from
 *               boundary conditions (clamps, constant-boundary tests) runs
 *               as three loops: the edges as written, and the interior,
 *               where every such clamp and test is idle, vectorized.
 *
 * Loads that read the same element in every iteration of a vectorized loop
 * are read once before it (into locals h<k>, when the loop runs at all).
 * There too, a float division by such a value becomes a multiplication by
 * its reciprocal r<k> (tested to be a normal number unless the divisor is a
 * constant or an integer: else the loop runs as written), and a vectorized
 * float reduction runs in four chains over the quarters of its range (four
 * accumulators, combined after the loop; the rest of n / 4 after them).
 * Neither in the loops of a user's schedule.
 *
 * A loop is left-hand when some store in its body writes at an index that is
 * the loop variable itself in some dimension: then distinct iterations write
 * distinct elements, and (the language forbids a statement from reading what
 * it writes except at the same point; fuse.c only fuses statements that
 * touch the same slice of what they share) no iteration reads what another
 * writes.  A vectorized left-hand loop contains one statement's store.
 *
 * Requires: IR before flatten; every loop serial, except in nests tile.c
 * scheduled (they contain a non-serial loop and are left alone).
 * Guarantees: the same statements, some loops marked FOR_PARALLEL (never
 * one inside another) or FOR_VECTORIZED (never containing a loop); 1-d
 * parallel loops split and boundary loops partitioned as above.
 * Invalidates nothing.
 */
#include "tc.h"
#include <math.h>

enum { BLOCK = 4096 }; /* iterations per parallel block of a 1-d loop */

static bool is_var(const IRExpr *e, const IRVar *v) { return e->kind == IR_VAR && e->var == v; }

/* Whether a store in s writes at index v in some dimension. */
static bool stores_at(const IRStmt *s, const IRVar *v) {
  if (!s)
    return false;
  if (s->kind == S_STORE)
    for (int i = 0; i < s->nidx; i++)
      if (is_var(s->idx[i], v))
        return true;
  for (int i = 0; i < s->n; i++)
    if (stores_at(s->stmts[i], v))
      return true;
  return stores_at(s->body, v) || stores_at(s->then, v) || stores_at(s->els, v);
}

static bool has_loop(const IRStmt *s) {
  if (!s)
    return false;
  if (s->kind == S_FOR)
    return true;
  for (int i = 0; i < s->n; i++)
    if (has_loop(s->stmts[i]))
      return true;
  return has_loop(s->body) || has_loop(s->then) || has_loop(s->els);
}

/* Whether s holds a loop some earlier pass marked. */
static bool has_scheduled_loop(const IRStmt *s) {
  if (!s)
    return false;
  if (s->kind == S_FOR && s->fkind != FOR_SERIAL)
    return true;
  for (int i = 0; i < s->n; i++)
    if (has_scheduled_loop(s->stmts[i]))
      return true;
  return has_scheduled_loop(s->body) || has_scheduled_loop(s->then) ||
         has_scheduled_loop(s->els);
}

static int reads_of(const IRExpr *e, const IRVar *v) {
  if (!e)
    return 0;
  int n = is_var(e, v);
  for (int i = 0; i < e->nidx; i++)
    n += reads_of(e->idx[i], v);
  for (int i = 0; i < e->nargs; i++)
    n += reads_of(e->args[i], v);
  return n + reads_of(e->a, v) + reads_of(e->b, v) + reads_of(e->c, v);
}

/* Whether the body of an innermost loop is a reduction that lanes can
 * share: locals it declares, and updates `acc = acc OP e` of locals declared
 * outside, each assigned once and read only by its own update, of a type
 * and operator the emitter's reduction clauses cover.  No stores. */
static bool is_lane_reduction(const IRStmt *body) {
  const IRStmt *one[1] = {body};
  IRStmt *const *list = (IRStmt *const *)one;
  int n = 1;
  if (body->kind == S_BLOCK)
    list = body->stmts, n = body->n;
  int updates = 0;
  for (int i = 0; i < n; i++) {
    const IRStmt *s = list[i];
    if (s->kind == S_DECL)
      continue;
    if (s->kind != S_ASSIGN)
      return false;
    const IRExpr *e = s->value;
    tc_dtype t = s->var->type;
    if (t != TC_FLOAT32 && t != TC_FLOAT64 && t != TC_INT32 && t != TC_INT64 &&
        t != TC_UINT32 && t != TC_UINT64)
      return false;
    if (e->kind != IR_BIN || !is_var(e->a, s->var) ||
        (e->op != OP_ADD && e->op != OP_MUL && e->op != OP_MIN && e->op != OP_MAX))
      return false;
    for (int j = 0; j < n; j++) { /* read only by its own update */
      const IRStmt *o = list[j];
      int r = reads_of(o->value, s->var);
      if (o == s ? r != 1 : r != 0)
        return false;
      if (j != i && o->kind == S_ASSIGN && o->var == s->var)
        return false;
    }
    updates++;
  }
  return updates > 0;
}

static bool uses_var(const IRExpr *e, const IRVar *v) { return reads_of(e, v) > 0; }

/* Whether e is affine in v: v appears only under + - and multiplication by
 * something free of v (and value-preserving casts), so that consecutive
 * iterations access memory at a constant distance. */
static bool affine_in(const IRExpr *e, const IRVar *v) {
  if (!uses_var(e, v))
    return true;
  switch (e->kind) {
  case IR_VAR:
    return true;
  case IR_CAST:
    return dtype_is_int(e->type) && dtype_is_int(e->a->type) && affine_in(e->a, v);
  case IR_UN:
    return e->op == OP_NEG && affine_in(e->a, v);
  case IR_BIN:
    if (e->op == OP_ADD || e->op == OP_SUB)
      return affine_in(e->a, v) && affine_in(e->b, v);
    if (e->op == OP_MUL)
      return (!uses_var(e->a, v) && affine_in(e->b, v)) ||
             (!uses_var(e->b, v) && affine_in(e->a, v));
    return false;
  default:
    return false;
  }
}

/* Whether every access in s indexes affinely in v: a vector loop over v
 * then loads and stores (strided) runs, never gathers. */
static bool accesses_affine(const IRExpr *e, const IRVar *v);

static bool idx_affine(IRExpr *const *idx, int n, const IRVar *v) {
  for (int i = 0; i < n; i++)
    if (!affine_in(idx[i], v) || !accesses_affine(idx[i], v))
      return false;
  return true;
}

static bool accesses_affine(const IRExpr *e, const IRVar *v) {
  if (!e)
    return true;
  if (e->kind == IR_LOAD && !idx_affine(e->idx, e->nidx, v))
    return false;
  for (int i = 0; i < e->nargs; i++)
    if (!accesses_affine(e->args[i], v))
      return false;
  return accesses_affine(e->a, v) && accesses_affine(e->b, v) && accesses_affine(e->c, v);
}

static bool body_affine(const IRStmt *s, const IRVar *v) {
  if (!s)
    return true;
  if (s->kind == S_STORE && !idx_affine(s->idx, s->nidx, v))
    return false;
  if (!accesses_affine(s->value, v) || !accesses_affine(s->cond, v))
    return false;
  for (int i = 0; i < s->n; i++)
    if (!body_affine(s->stmts[i], v))
      return false;
  return body_affine(s->body, v) && body_affine(s->then, v) && body_affine(s->els, v);
}

typedef struct Sched {
  Ctx *c;
  IRFunc *f;
  int depth; /* loops around the statement being visited */
} Sched;

/* ---- loads that do not change in a vector loop ---- */

typedef struct Hoist {
  Sched *S;
  const IRStmt *loop;
  VEC(IRVar *) inner;  /* the loop's variable and what its body declares or assigns */
  VEC(IRStmt *) decls; /* the hoisted loads, as locals */
} Hoist;

static void declared_vars(Hoist *H, const IRStmt *s) {
  if (!s)
    return;
  if (s->kind == S_FOR || s->kind == S_DECL || s->kind == S_ASSIGN)
    vec_push(H->S->c->arena, &H->inner, s->var);
  for (int i = 0; i < s->n; i++)
    declared_vars(H, s->stmts[i]);
  declared_vars(H, s->body);
  declared_vars(H, s->then);
  declared_vars(H, s->els);
}

/* Whether e has the same value in every iteration: no variable of the
 * loop's, no load, nothing lazy or failing. */
static bool invariant(const Hoist *H, const IRExpr *e) {
  if (!e)
    return true;
  if (e->kind == IR_VAR)
    for (int i = 0; i < H->inner.len; i++)
      if (H->inner.data[i] == e->var)
        return false;
  if (e->kind == IR_LOAD || e->kind == IR_FAIL || e->kind == IR_SELECT)
    return false;
  for (int i = 0; i < e->nargs; i++)
    if (!invariant(H, e->args[i]))
      return false;
  return invariant(H, e->a) && invariant(H, e->b) && invariant(H, e->c);
}

static IRExpr *hoist_expr(Ctx *c, void *st, IRExpr *e) {
  Hoist *H = st;
  if (e->kind == IR_SELECT || (e->kind == IR_BIN && (e->op == OP_AND || e->op == OP_OR)))
    return e; /* lazily evaluated parts may not run: leave them */
  if (e->kind == IR_LOAD && !ir_stmt_stores(H->loop->body, e->buf)) {
    bool inv = true;
    for (int i = 0; i < e->nidx; i++)
      inv &= invariant(H, e->idx[i]);
    if (inv) {
      IRVar *v = ir_new_var(c, arena_printf(c->arena, "h%d", H->S->f->nvars++), VAR_LOCAL,
                            e->type);
      vec_push(c->arena, &H->decls, ir_decl(c, v, e));
      return ir_var(c, v);
    }
  }
  return ir_mutate_expr_children(c, e, hoist_expr, st);
}

static IRStmt *hoist_stmt(Ctx *c, void *st, IRStmt *s) {
  return ir_mutate_stmt_children(c, s, hoist_stmt, hoist_expr, st);
}

/* e with every read of v replaced. */
typedef struct Subst1 {
  const IRVar *v;
  IRExpr *with;
} Subst1;

static IRExpr *subst1(Ctx *c, void *st, IRExpr *e) {
  Subst1 *S = st;
  if (e->kind == IR_VAR && e->var == S->v)
    return S->with;
  return ir_mutate_expr_children(c, e, subst1, st);
}

/* ---- divisions by a value that does not change in a vector loop ---- */

/* `x / d` with d the same in every iteration becomes `x * r`, r = 1 / d
 * computed once before the loop: a multiply instead of a divide per element
 * (vector division is 10-20 times slower), at most one more rounding
 * (docs/language.md).  Only where r is a normal number, so that the product
 * stays within about an ulp of the quotient: a divisor that is not a
 * constant is tested before the loop, and the loop runs as written when the
 * test fails (|d| outside [2^-126, 2^126] for float32; zero, infinity and
 * NaN included, though those would agree too). */
typedef struct Recip {
  Hoist *H;
  VEC(IRExpr *) divisors; /* distinct invariant divisors */
  VEC(IRVar *) inverses;  /* 1 / divisors[k] */
} Recip;

static double normal_bound(tc_dtype t) { return t == TC_FLOAT64 ? 0x1p-1022 : 0x1p-126; }

/* Whether the constant d has a normal reciprocal. */
static bool const_invertible(const IRExpr *d) {
  double m = normal_bound(d->type), a = fabs(d->fval);
  return a >= m && a <= 1 / m;
}

static IRExpr *recip_expr(Ctx *c, void *st, IRExpr *e) {
  Recip *R = st;
  e = ir_mutate_expr_children(c, e, recip_expr, st);
  if (e->kind != IR_BIN || e->op != OP_DIV || (e->type != TC_FLOAT32 && e->type != TC_FLOAT64) ||
      !invariant(R->H, e->b) || invariant(R->H, e->a) || ir_has_fail(e->b) ||
      (e->b->kind == IR_FLOAT && !const_invertible(e->b)))
    return e;
  int k = 0;
  while (k < R->divisors.len && !ir_equal(R->divisors.data[k], e->b))
    k++;
  if (k == R->divisors.len) {
    IRFunc *f = R->H->S->f;
    vec_push(c->arena, &R->divisors, e->b);
    vec_push(c->arena, &R->inverses,
             ir_new_var(c, arena_printf(c->arena, "r%d", f->nvars++), VAR_LOCAL, e->type));
  }
  return ir_bin(c, OP_MUL, e->a, ir_var(c, R->inverses.data[k]));
}

static IRStmt *recip_stmt(Ctx *c, void *st, IRStmt *s) {
  return ir_mutate_stmt_children(c, s, recip_stmt, recip_expr, st);
}

/* Whether d needs no test: a constant (recip_expr took only those with a
 * normal reciprocal), or an integer made float, which is 0 (x * inf is x / 0,
 * infinity or NaN alike) or at least 1 and below 2^64. */
static bool surely_invertible(const IRExpr *d) {
  return d->kind == IR_FLOAT || (d->kind == IR_CAST && !dtype_is_float(d->a->type));
}

/* Whether d, not a constant, has a normal reciprocal (the test run before
 * the loop): m <= |d| <= 1/m. */
static IRExpr *invertible(Ctx *c, IRExpr *d) {
  double m = normal_bound(d->type);
  IRExpr *lo = ir_float(c, d->type, m), *hi = ir_float(c, d->type, 1 / m);
  IRExpr *nlo = ir_float(c, d->type, -m), *nhi = ir_float(c, d->type, -1 / m);
  IRExpr *pos = ir_bin(c, OP_AND, ir_bin(c, OP_GE, d, lo), ir_bin(c, OP_LE, d, hi));
  IRExpr *neg = ir_bin(c, OP_AND, ir_bin(c, OP_LE, d, nlo), ir_bin(c, OP_GE, d, nhi));
  return ir_bin(c, OP_OR, pos, neg);
}

/* ---- reductions in several chains ---- */

/* A vectorized reduction `acc = acc OP f(v)` keeps one vector of partial
 * results, and each update waits for the previous one (4 cycles for a
 * vector add): the loop runs at a quarter of the load rate.  Split in SPLIT
 * contiguous parts of q = n / SPLIT iterations, reduced side by side into
 * their own accumulators and combined at the end (a reordered float sum,
 * as vector lanes already reorder it), it keeps SPLIT chains in flight; the
 * n - SPLIT*q iterations left run after them into the first accumulator. */
enum { SPLIT = 4 };

/* The updates of a loop body that only reduces floats, `acc = acc OP e`
 * with OP + * min max and e free of acc (no declarations, no stores): their
 * number, or 0. */
static int float_updates(Ctx *c, IRStmt *body, IRStmt ***list) {
  IRStmt **l = body->stmts;
  int n = body->n;
  if (body->kind != S_BLOCK) {
    l = arena_alloc(c->arena, sizeof *l);
    l[0] = body;
    n = 1;
  }
  for (int i = 0; i < n; i++) {
    IRStmt *s = l[i];
    if (s->kind != S_ASSIGN || (s->var->type != TC_FLOAT32 && s->var->type != TC_FLOAT64))
      return 0;
    IRExpr *e = s->value;
    if (e->kind != IR_BIN || e->type != s->var->type || !is_var(e->a, s->var) ||
        uses_var(e->b, s->var) ||
        (e->op != OP_ADD && e->op != OP_MUL && e->op != OP_MIN && e->op != OP_MAX))
      return 0;
    for (int k = 0; k < n; k++) /* nor reads another's accumulator */
      if ((k < i && l[k]->var == s->var) || (k != i && uses_var(e->b, l[k]->var)))
        return 0;
  }
  *list = l;
  return n;
}

static IRExpr *red_identity(Ctx *c, int op, tc_dtype t) {
  switch (op) {
  case OP_ADD: return ir_float(c, t, 0.0);
  case OP_MUL: return ir_float(c, t, 1.0);
  case OP_MIN: return ir_float(c, t, INFINITY);
  default: return ir_float(c, t, -INFINITY);
  }
}

/* The reduction loop in SPLIT chains (above), or the loop unchanged. */
static IRStmt *split_reduction(Sched *S, IRStmt *loop) {
  Ctx *c = S->c;
  IRStmt **ups;
  int n = float_updates(c, loop->body, &ups);
  if (!n)
    return loop;
  VEC(IRStmt *) out = {0};
  VEC(IRStmt *) body = {0};
  IRVar *q = ir_new_var(c, arena_printf(c->arena, "q%d", S->f->nvars++), VAR_LOCAL, TC_INT64);
  IRVar *j = ir_new_var(c, arena_printf(c->arena, "%s_j", loop->var->name), VAR_LOOP, TC_INT64);
  vec_push(c->arena, &out, ir_decl(c, q, ir_floordiv(c, loop->extent, ir_i64(c, SPLIT))));
  IRVar **acc = arena_alloc(c->arena, sizeof *acc * (size_t)n * SPLIT);
  for (int k = 0; k < SPLIT; k++) {
    Subst1 at = {loop->var, ir_add(c, loop->lo, ir_add(c, ir_mul(c, ir_i64(c, k), ir_var(c, q)),
                                                          ir_var(c, j)))};
    for (int i = 0; i < n; i++) {
      IRVar *a = ups[i]->var;
      if (k) {
        a = ir_new_var(c, arena_printf(c->arena, "%s_%d", a->name, k), VAR_LOCAL, a->type);
        vec_push(c->arena, &out, ir_decl(c, a, red_identity(c, ups[i]->value->op, a->type)));
      }
      acc[k * n + i] = a;
      IRExpr *e = simplify_expr(c, subst1(c, &at, ups[i]->value->b));
      vec_push(c->arena, &body, ir_assign(c, a, ir_bin(c, ups[i]->value->op, ir_var(c, a), e)));
    }
  }
  IRStmt *chains = ir_for(c, j, ir_i64(c, 0), ir_var(c, q), FOR_VECTORIZED,
                          ir_block(c, body.data, body.len));
  chains->loc = loop->loc;
  vec_push(c->arena, &out, chains);
  IRExpr *done = ir_mul(c, ir_i64(c, SPLIT), ir_var(c, q));
  IRStmt *rest = ir_for(c, loop->var, simplify_expr(c, ir_add(c, loop->lo, done)),
                        simplify_expr(c, ir_sub(c, loop->extent, done)), FOR_SERIAL, loop->body);
  rest->loc = loop->loc;
  vec_push(c->arena, &out, rest);
  for (int i = 0; i < n; i++) {
    IRVar *a = ups[i]->var;
    int op = ups[i]->value->op;
    IRExpr *hi = ir_bin(c, op, ir_var(c, acc[2 * n + i]), ir_var(c, acc[3 * n + i]));
    IRExpr *lo = ir_bin(c, op, ir_var(c, a), ir_var(c, acc[n + i]));
    vec_push(c->arena, &out, ir_assign(c, a, ir_bin(c, op, lo, hi)));
  }
  return ir_block(c, out.data, out.len);
}

/* A vector loop with the loads that are the same in every iteration read
 * once before it, into locals (the C compiler, unsure that the loop's
 * stores leave them alone, would otherwise not vectorize some loops).  The
 * loads run only when the loop runs at least once. */
static IRStmt *hoist_loads(Sched *S, IRStmt *loop) {
  Ctx *c = S->c;
  Hoist H = {S, loop, {0}, {0}};
  vec_push(c->arena, &H.inner, loop->var);
  declared_vars(&H, loop->body);
  IRStmt *body = hoist_stmt(c, &H, loop->body);
  Recip R = {&H, {0}, {0}};
  bool user = loop->var->user; /* a user's schedule (sched.c): only the hoisting */
  IRStmt *rbody = user ? body : recip_stmt(c, &R, body);
  IRStmt *l = ir_for(c, loop->var, loop->lo, loop->extent, loop->fkind, body);
  l->loc = loop->loc;
  IRStmt *run = user ? l : split_reduction(S, l);
  if (R.divisors.len) {
    IRExpr *ok = NULL;
    for (int k = 0; k < R.divisors.len; k++) {
      IRExpr *d = R.divisors.data[k];
      vec_push(c->arena, &H.decls,
               ir_decl(c, R.inverses.data[k], ir_bin(c, OP_DIV, ir_float(c, d->type, 1.0), d)));
      if (!surely_invertible(d))
        ok = ok ? ir_bin(c, OP_AND, ok, invertible(c, d)) : invertible(c, d);
    }
    IRStmt *fast = ir_for(c, loop->var, loop->lo, loop->extent, loop->fkind, rbody);
    fast->loc = loop->loc;
    fast = split_reduction(S, fast);
    run = ok ? ir_if(c, ok, fast, run) : fast;
  }
  if (!H.decls.len)
    return run;
  vec_push(c->arena, &H.decls, run);
  IRExpr *runs = ir_bin(c, OP_GT, loop->extent, ir_i64(c, 0));
  return ir_if(c, runs, ir_block(c, H.decls.data, H.decls.len), NULL);
}

/* ---- partitioning: the interior of boundary conditions ---- */

/* The boundary conditions of lower.c read `min(max(e, 0), n - 1)` (clamp)
 * and `e >= 0 && e < n` (constant boundaries, guards), with e = v + c for
 * the loop variable v.  Inside v in [max(-c), min(n - c)) every such clamp
 * is e and every such test is true: that interior is one vector loop over
 * plain loads; the few iterations before and after it run as written. */
typedef struct Part {
  Ctx *c;
  Hoist *H;                   /* for `invariant`: the loop's own variables */
  const IRVar *v;
  VEC(IRExpr *) lower, upper; /* interior: v >= lower[k], v < upper[k] */
  VEC(const IRExpr *) facts;  /* tests true and clamps idle there */
} Part;

/* c with e == v + c, or NULL. */
static IRExpr *offset_of(Part *P, IRExpr *e) {
  if (e->type != TC_INT64 || !uses_var(e, P->v) || !affine_in(e, P->v))
    return NULL;
  Subst1 s0 = {P->v, ir_i64(P->c, 0)}, s1 = {P->v, ir_i64(P->c, 1)};
  IRExpr *at0 = simplify_expr(P->c, subst1(P->c, &s0, e));
  IRExpr *at1 = simplify_expr(P->c, subst1(P->c, &s1, e));
  int64_t d;
  if (!ir_is_const(simplify_expr(P->c, ir_sub(P->c, at1, at0)), &d) || d != 1 ||
      !invariant(P->H, at0))
    return NULL;
  return at0;
}

/* The x of max(x, 0) (either order), or NULL. */
static IRExpr *max0_of(IRExpr *e) {
  int64_t k;
  if (e->kind != IR_BIN || e->op != OP_MAX)
    return NULL;
  if (ir_is_const(e->b, &k) && k == 0)
    return e->a;
  if (ir_is_const(e->a, &k) && k == 0)
    return e->b;
  return NULL;
}

/* Whether e is a clamp min(max(v + c, 0), m) (operands in either order)
 * with m invariant; sets *c0. */
static bool clamped(Part *P, IRExpr *e, IRExpr **c0, int64_t *unused) {
  (void)unused;
  if (e->kind != IR_BIN || e->op != OP_MIN)
    return false;
  IRExpr *x = max0_of(e->a), *m = e->b;
  if (!x) {
    x = max0_of(e->b);
    m = e->a;
  }
  return x && invariant(P->H, m) && (*c0 = offset_of(P, x)) != NULL;
}

/* The clamped value x of a clamp (see clamped). */
static IRExpr *clamp_value(IRExpr *e) {
  IRExpr *x = max0_of(e->a);
  return x ? x : max0_of(e->b);
}

static void part_expr(Part *P, IRExpr *e) {
  if (!e)
    return;
  int64_t k;
  IRExpr *c0;
  if (e->kind == IR_BIN && e->op == OP_GE && ir_is_const(e->b, &k) && k == 0 &&
      (c0 = offset_of(P, e->a))) {
    vec_push(P->c->arena, &P->lower, ir_sub(P->c, ir_i64(P->c, 0), c0));
    vec_push(P->c->arena, &P->facts, e);
  } else if (e->kind == IR_BIN && e->op == OP_LT && invariant(P->H, e->b) &&
             (c0 = offset_of(P, e->a))) {
    vec_push(P->c->arena, &P->upper, ir_sub(P->c, e->b, c0));
    vec_push(P->c->arena, &P->facts, e);
  } else if (clamped(P, e, &c0, &k)) {
    IRExpr *m = e->a->kind == IR_BIN && e->a->op == OP_MAX ? e->b : e->a;
    vec_push(P->c->arena, &P->lower, ir_sub(P->c, ir_i64(P->c, 0), c0));
    vec_push(P->c->arena, &P->upper, ir_add(P->c, ir_sub(P->c, m, c0), ir_i64(P->c, 1)));
    vec_push(P->c->arena, &P->facts, e);
  }
  for (int i = 0; i < e->nidx; i++)
    part_expr(P, e->idx[i]);
  for (int i = 0; i < e->nargs; i++)
    part_expr(P, e->args[i]);
  part_expr(P, e->a);
  part_expr(P, e->b);
  part_expr(P, e->c);
}

static void part_stmt(Part *P, IRStmt *s) {
  if (!s)
    return;
  for (int i = 0; i < s->nidx; i++)
    part_expr(P, s->idx[i]);
  part_expr(P, s->value);
  part_expr(P, s->cond);
  for (int i = 0; i < s->n; i++)
    part_stmt(P, s->stmts[i]);
  part_stmt(P, s->body);
  part_stmt(P, s->then);
  part_stmt(P, s->els);
}

static IRExpr *interior_expr(Ctx *c, void *st, IRExpr *e) {
  Part *P = st;
  e = ir_mutate_expr_children(c, e, interior_expr, st);
  for (int i = 0; i < P->facts.len; i++)
    if (ir_equal(e, P->facts.data[i]))
      return e->op == OP_MIN ? clamp_value(e) : ir_int(c, TC_BOOL, 1);
  return e;
}

static IRStmt *interior_stmt(Ctx *c, void *st, IRStmt *s) {
  return ir_mutate_stmt_children(c, s, interior_stmt, interior_expr, st);
}

static IRStmt *loop_like(Ctx *c, const IRStmt *l, IRExpr *lo, IRExpr *end, ForKind k,
                         IRStmt *body) {
  IRStmt *r = ir_for(c, l->var, simplify_expr(c, lo), simplify_expr(c, ir_sub(c, end, lo)), k,
                     body);
  r->loc = l->loc;
  return r;
}

/* The loop as [lo, a) serial, [a, b) vectorized without boundary tests,
 * [b, end) serial; NULL when its body has no such tests, or other
 * non-affine accesses. */
static IRStmt *partition(Sched *S, IRStmt *loop) {
  Ctx *c = S->c;
  Hoist H = {S, loop, {0}, {0}};
  vec_push(c->arena, &H.inner, loop->var);
  declared_vars(&H, loop->body);
  Part P = {c, &H, loop->var, {0}, {0}, {0}};
  part_stmt(&P, loop->body);
  if (!P.facts.len)
    return NULL;
  IRStmt *inside = simplify_stmt(c, interior_stmt(c, &P, loop->body));
  if (!body_affine(inside, loop->var))
    return NULL;
  IRExpr *lo = loop->lo, *end = ir_add(c, loop->lo, loop->extent);
  IRExpr *a = lo, *b = end;
  for (int i = 0; i < P.lower.len; i++)
    a = ir_max(c, a, P.lower.data[i]);
  for (int i = 0; i < P.upper.len; i++)
    b = ir_min(c, b, P.upper.data[i]);
  a = simplify_expr(c, ir_min(c, a, end));
  b = simplify_expr(c, ir_max(c, b, a));
  IRStmt *mid = loop_like(c, loop, a, b, FOR_VECTORIZED, inside);
  IRStmt *parts[3] = {loop_like(c, loop, lo, a, FOR_SERIAL, loop->body), hoist_loads(S, mid),
                      loop_like(c, loop, b, end, FOR_SERIAL, loop->body)};
  return ir_block(c, parts, 3);
}

/* An innermost loop to vectorize: as it is when its accesses are affine,
 * else its interior (partition), else unchanged (serial). */
static IRStmt *vector_loop(Sched *S, IRStmt *n) {
  if (body_affine(n->body, n->var)) {
    IRStmt *r = ir_for(S->c, n->var, n->lo, n->extent, FOR_VECTORIZED, n->body);
    r->loc = n->loc;
    return hoist_loads(S, r);
  }
  IRStmt *p = partition(S, n);
  return p ? p : n;
}

IRStmt *schedule_vector_loop(Ctx *c, IRFunc *f, IRStmt *loop) {
  Sched S = {c, f, 0};
  return vector_loop(&S, loop);
}

/* `for v in [lo, lo+n) parallel` whose body has no loop: blocks of BLOCK
 * iterations in parallel, each block a vector loop over v. */
static IRStmt *split_blocks(Sched *S, IRStmt *s) {
  Ctx *c = S->c;
  IRVar *o = ir_new_var(c, arena_printf(c->arena, "o%d", S->f->nvars++), VAR_LOOP, TC_INT64);
  IRExpr *blk = ir_i64(c, BLOCK);
  IRExpr *nblocks = ir_floordiv(c, ir_add(c, s->extent, ir_i64(c, BLOCK - 1)), blk);
  IRExpr *start = ir_mul(c, ir_var(c, o), blk);
  IRExpr *len = ir_min(c, blk, ir_sub(c, s->extent, start));
  IRStmt *inner = ir_for(c, s->var, ir_add(c, s->lo, start), len, FOR_SERIAL, s->body);
  inner->loc = s->loc;
  IRStmt *outer = ir_for(c, o, ir_i64(c, 0), nblocks, FOR_PARALLEL, vector_loop(S, inner));
  outer->loc = s->loc;
  return outer;
}

static IRStmt *visit(Ctx *c, void *st, IRStmt *s) {
  Sched *S = st;
  if (S->depth == 0 && s->kind == S_FOR && s->var->user)
    return sched_vectorize(c, S->f, s); /* the user's (sched.c) */
  if (S->depth == 0 && s->kind != S_BLOCK && has_scheduled_loop(s))
    return s; /* tile.c's */
  if (s->kind != S_FOR)
    return ir_mutate_stmt_children(c, s, visit, NULL, st);
  S->depth++;
  IRStmt *n = ir_mutate_stmt_children(c, s, visit, NULL, st);
  S->depth--;
  bool inner = !has_loop(n->body), lhs = stores_at(n->body, n->var);
  if (lhs && S->depth == 0) {
    if (inner)
      return split_blocks(S, n);
    IRStmt *r = ir_for(c, n->var, n->lo, n->extent, FOR_PARALLEL, n->body);
    r->loc = n->loc;
    return r;
  }
  if (inner && (lhs || is_lane_reduction(n->body)))
    return vector_loop(S, n);
  return n;
}

void schedule_default(Ctx *c, IRFunc *f) {
  Sched S = {c, f, 0};
  if (f->body)
    f->body = visit(c, &S, f->body);
}
