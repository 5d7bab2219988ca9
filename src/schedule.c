/*
 * schedule.c — the default schedule: which loops run in parallel and which
 * are left to the C compiler's vectorizer.
 *
 * Requires: lowered IR before flatten (stores index with the loop variables
 * themselves), all loops serial.
 * Guarantees: the same loops, some marked FOR_PARALLEL or FOR_VECTORIZED:
 *   - a loop not nested in another loop whose variable is a "left-hand"
 *     loop (below) becomes parallel;
 *   - a left-hand loop containing no other loop, and not parallel, becomes
 *     vectorized (the C emitter writes `#pragma GCC ivdep`).
 * A loop is left-hand when some store in its body writes at an index that is
 * the loop variable itself in some dimension: then distinct iterations write
 * distinct elements, and (the language forbids a statement from reading what
 * it writes except at the same point) no iteration reads what another
 * writes.  Reduction loops only assign the accumulator, so they stay serial;
 * so do loops inside another loop (one level of parallelism).
 * Invalidates nothing; the real scheduler is a later issue's.
 */
#include "tc.h"

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

typedef struct Sched {
  int depth; /* loops around the statement being visited */
} Sched;

static IRStmt *visit(Ctx *c, void *st, IRStmt *s) {
  Sched *S = st;
  if (s->kind != S_FOR)
    return ir_mutate_stmt_children(c, s, visit, NULL, st);
  S->depth++;
  IRStmt *n = ir_mutate_stmt_children(c, s, visit, NULL, st);
  S->depth--;
  ForKind k = n->fkind;
  if (k == FOR_SERIAL && stores_at(n->body, n->var)) {
    if (S->depth == 0)
      k = FOR_PARALLEL;
    else if (!has_loop(n->body))
      k = FOR_VECTORIZED;
  }
  if (k == n->fkind)
    return n;
  IRStmt *r = ir_for(c, n->var, n->lo, n->extent, k, n->body);
  r->loc = n->loc;
  return r;
}

void schedule_default(Ctx *c, IRFunc *f) {
  Sched S = {0};
  if (f->body)
    f->body = visit(c, &S, f->body);
}
