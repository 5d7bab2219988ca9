/*
 * specialize.c — unit-stride versions of vectorized loops.
 *
 * Kernels take strides at run time, so one compiled kernel serves every
 * layout; but a vector loop over `b_X[x * b_X_s1]` with an unknown stride
 * becomes gathers and scatters.  This pass gives each vectorized loop two
 * versions, chosen where the loop starts (the C compiler hoists the test
 * out of the loops around it, the strides being kernel arguments):
 *
 *   if (b_X_s1 == 1 && b_O_s1 == 1) { the loop with those strides = 1 }
 *   else                            { the loop, serial }
 *
 * Only the innermost loop is copied (with the unrolled loops right around
 * it), so big nests (tile.c's) do not double in size and compile time.
 * The strides tested are those that multiply an index depending on a
 * vectorized loop's variable in the last dimension of a buffer (row-major
 * layouts, the common case, take the fast version; others run the generic
 * loops, which the C compiler may still vectorize on its own).  Each version
 * computes the same values: the condition only selects code.
 *
 * The CPU pipeline uses a cheaper form, specialize_unit_func: the generic
 * copies cost the C compiler a third of its time on a kernel (30-180 ms of
 * cc1), for layouts that are rare.  Its kernel keeps only the unit-stride
 * versions, and starts with one check that every stride they assume is 1;
 * another layout fails that check before anything is written (a
 * FAIL_LAYOUT site), and the run time then builds and runs the kernel of
 * specialize_func, with both versions (runtime.c, "variants").
 *
 * Requires: flattened IR (one index per access, the sum of index * stride
 * terms flatten.c builds), before simplification.
 * Guarantees: each vectorized loop whose accesses use a stride variable as
 * above (the fast copy vectorized, the other serial); the rest unchanged.
 * specialize_unit_func: each such loop replaced by its fast copy, and when
 * there is one, the body preceded by S_CHECK(all those strides == 1) with a
 * FAIL_LAYOUT site.
 * Invalidates nothing (run simplify after it: `x * 1` remains).
 */
#include "tc.h"

typedef struct Spec {
  Ctx *c;
  VEC(IRVar *) strides; /* the strides of the statement being specialized */
} Spec;

static void add_stride(Spec *S, IRVar *s) {
  for (int i = 0; i < S->strides.len; i++)
    if (S->strides.data[i] == s)
      return;
  vec_push(S->c->arena, &S->strides, s);
}

/* Records the last-dimension stride of b that e multiplies by something
 * depending on v (e is an access's flat index, or part of it). */
static void index_strides(Spec *S, Buffer *b, const IRExpr *e, const IRVar *v) {
  if (!e || b->rank == 0 || b->local)
    return;
  IRVar *last = b->stride[b->rank - 1];
  if (e->kind == IR_BIN && e->op == OP_MUL) {
    const IRExpr *k = e->b->kind == IR_VAR && e->b->var == last   ? e->a
                      : e->a->kind == IR_VAR && e->a->var == last ? e->b
                                                                   : NULL;
    if (k && ir_uses_var(k, v))
      add_stride(S, last);
  }
  if (e->kind == IR_BIN && (e->op == OP_ADD || e->op == OP_SUB)) {
    index_strides(S, b, e->a, v);
    index_strides(S, b, e->b, v);
  }
}

static void expr_strides(Spec *S, const IRExpr *e, const IRVar *v) {
  if (!e)
    return;
  if (e->kind == IR_LOAD && e->nidx == 1)
    index_strides(S, e->buf, e->idx[0], v);
  for (int i = 0; i < e->nidx; i++)
    expr_strides(S, e->idx[i], v);
  for (int i = 0; i < e->nargs; i++)
    expr_strides(S, e->args[i], v);
  expr_strides(S, e->a, v);
  expr_strides(S, e->b, v);
  expr_strides(S, e->c, v);
}

static void body_strides(Spec *S, const IRStmt *s, const IRVar *v) {
  if (!s)
    return;
  if (s->kind == S_STORE && s->nidx == 1)
    index_strides(S, s->buf, s->idx[0], v);
  for (int i = 0; i < s->nidx; i++)
    expr_strides(S, s->idx[i], v);
  expr_strides(S, s->lo, v);
  expr_strides(S, s->extent, v);
  expr_strides(S, s->value, v);
  expr_strides(S, s->cond, v);
  for (int i = 0; i < s->n; i++)
    body_strides(S, s->stmts[i], v);
  body_strides(S, s->body, v);
  body_strides(S, s->then, v);
  body_strides(S, s->els, v);
}

/* ---- the two versions ---- */

static IRExpr *unit_expr(Ctx *c, void *st, IRExpr *e) {
  Spec *S = st;
  if (e->kind == IR_VAR && e->var->kind == VAR_STRIDE)
    for (int i = 0; i < S->strides.len; i++)
      if (S->strides.data[i] == e->var)
        return ir_i64(c, 1);
  return ir_mutate_expr_children(c, e, unit_expr, st);
}

static IRStmt *unit_stmt(Ctx *c, void *st, IRStmt *s) {
  return ir_mutate_stmt_children(c, s, unit_stmt, unit_expr, st);
}

typedef VEC(IRStmt *) IfList;

static bool is_version(const IfList *l, const IRStmt *s) {
  for (int i = 0; i < l->len; i++)
    if (l->data[i] == s)
      return true;
  return false;
}

/* The loop around the versions `if (cond) A else B` (its body, alone):
 * `if (cond) loop(A) else loop'(B)`, loop' serial.  Strides are the
 * kernel's, so the test may move out of any loop. */
static IRStmt *lift(Ctx *c, IfList *l, IRStmt *loop, IRStmt *v) {
  IRStmt *a = ir_for(c, loop->var, loop->lo, loop->extent, loop->fkind, v->then);
  IRStmt *b = ir_for(c, loop->var, loop->lo, loop->extent, FOR_SERIAL, v->els);
  a->loc = b->loc = loop->loc;
  IRStmt *r = ir_if(c, v->cond, a, b);
  r->loc = loop->loc;
  vec_push(c->arena, l, r);
  return r;
}

/* A vectorized loop whose accesses use strides: `if (strides == 1) loop
 * with them 1, else the loop serial`; the test moves out of the unrolled
 * loops around it (register tiles), so each version unrolls on its own.
 * Others are left as they are. */
static IRStmt *version(Ctx *c, void *st, IRStmt *s) {
  IfList *l = st;
  if (s->kind != S_FOR || s->fkind != FOR_VECTORIZED) {
    IRStmt *n = ir_mutate_stmt_children(c, s, version, NULL, st);
    IRStmt *body = n->kind == S_FOR ? n->body : NULL;
    while (body && body->kind == S_BLOCK && body->n == 1)
      body = body->stmts[0];
    if (n->kind == S_FOR && n->fkind == FOR_UNROLLED && body && is_version(l, body))
      return lift(c, l, n, body);
    return n;
  }
  Spec S = {c, {0}};
  body_strides(&S, s->body, s->var);
  if (!S.strides.len)
    return s;
  IRExpr *cond = NULL;
  for (int i = 0; i < S.strides.len; i++) {
    IRExpr *t = ir_bin(c, OP_EQ, ir_var(c, S.strides.data[i]), ir_i64(c, 1));
    cond = cond ? ir_bin(c, OP_AND, cond, t) : t;
  }
  IRStmt *slow = ir_for(c, s->var, s->lo, s->extent, FOR_SERIAL, s->body);
  slow->loc = s->loc;
  IRStmt *r = ir_if(c, cond, unit_stmt(c, &S, s), slow);
  r->loc = s->loc;
  vec_push(c->arena, l, r);
  return r;
}

void specialize_func(Ctx *c, IRFunc *f) {
  IfList l = {0};
  if (f->body)
    f->body = version(c, &l, f->body);
}

/* ---- unit strides only, behind a check at the kernel's start ---- */

typedef struct Unit {
  VEC(IRVar *) strides; /* every stride any fast copy assumes is 1 */
} Unit;

static IRStmt *unit_version(Ctx *c, void *st, IRStmt *s) {
  Unit *U = st;
  if (s->kind != S_FOR || s->fkind != FOR_VECTORIZED)
    return ir_mutate_stmt_children(c, s, unit_version, NULL, st);
  Spec S = {c, {0}};
  body_strides(&S, s->body, s->var);
  for (int i = 0; i < S.strides.len; i++) {
    bool seen = false;
    for (int j = 0; j < U->strides.len; j++)
      seen |= U->strides.data[j] == S.strides.data[i];
    if (!seen)
      vec_push(c->arena, &U->strides, S.strides.data[i]);
  }
  return S.strides.len ? unit_stmt(c, &S, s) : s;
}

void specialize_unit_func(Ctx *c, IRFunc *f) {
  Unit U = {{0}};
  if (!f->body)
    return;
  IRStmt *body = unit_version(c, &U, f->body);
  if (!U.strides.len)
    return;
  IRExpr *cond = NULL;
  for (int i = 0; i < U.strides.len; i++) {
    IRExpr *t = ir_bin(c, OP_EQ, ir_var(c, U.strides.data[i]), ir_i64(c, 1));
    cond = cond ? ir_bin(c, OP_AND, cond, t) : t;
  }
  FailSite fs = {FAIL_LAYOUT, f->def ? f->def->loc : (Loc){0, 0}, NULL, 0, false};
  vec_push(c->arena, &f->sites, fs);
  IRExpr *fail = ir_fail(c, TC_INT64, f->sites.len - 1, ir_i64(c, 0), ir_i64(c, 0));
  IRStmt *parts[2] = {ir_check(c, cond, fail), body};
  f->body = ir_block(c, parts, 2);
  f->body->loc = body->loc;
}
