/*
 * inline.c — pointwise temporaries computed where they are read.
 *
 * A temporary defined by one pointwise statement, `e(n,d) = exp(X(n,d) -
 * mx(n))`, is a loop nest that stores every element once; its readers load
 * them back.  Writing and reading a whole tensor through memory costs more
 * than computing each element where it is needed, so this pass replaces
 * every load `b_e[i, j]` by the stored value with the nest's loop variables
 * replaced by `i, j`, and drops the nest (softmax then makes two passes
 * over its input instead of four).  Its range checks stay where they were:
 * they guard reads over the whole temporary's domain, and the readers only
 * evaluate elements of that domain.
 *
 * A temporary T is inlined when:
 *   - its one definition is a top-level nest `for v1..vr: T[v1..vr] = value`
 *     (loops from 0, no zero-fill, nothing hoisted, no per-element check)
 *     and no other statement writes T;
 *   - value reads neither T nor anything a later statement writes (so it
 *     computes the same wherever it moves);
 *   - recomputing is cheap: value calls no math function, or one statement
 *     reads T, at indices that use all of its loops' variables (each element
 *     computed about once, as before).
 *
 * Requires: lowered IR (multi-dim accesses), every loop serial.
 * Guarantees: the same results; loads of inlined temporaries replaced, their
 * nests removed (the runtime still allocates them, untouched).
 * Invalidates nothing.
 */
#include "tc.h"

/* ---- walking the IR ---- */

static bool stmt_loads(const IRStmt *s, const Buffer *b) {
  if (!s)
    return false;
  for (int i = 0; i < s->nidx; i++)
    if (ir_loads_buf(s->idx[i], b))
      return true;
  if (ir_loads_buf(s->lo, b) || ir_loads_buf(s->extent, b) || ir_loads_buf(s->value, b) ||
      ir_loads_buf(s->cond, b))
    return true;
  for (int i = 0; i < s->n; i++)
    if (stmt_loads(s->stmts[i], b))
      return true;
  return stmt_loads(s->body, b) || stmt_loads(s->then, b) || stmt_loads(s->els, b);
}

static bool has_call_or_fail(const IRExpr *e) {
  if (!e)
    return false;
  if (e->kind == IR_CALL || e->kind == IR_FAIL)
    return true;
  for (int i = 0; i < e->nidx; i++)
    if (has_call_or_fail(e->idx[i]))
      return true;
  for (int i = 0; i < e->nargs; i++)
    if (has_call_or_fail(e->args[i]))
      return true;
  return has_call_or_fail(e->a) || has_call_or_fail(e->b) || has_call_or_fail(e->c);
}

/* The buffers an expression loads. */
typedef VEC(Buffer *) BufList;

static void loaded(Ctx *c, const IRExpr *e, BufList *out) {
  if (!e)
    return;
  if (e->kind == IR_LOAD) {
    bool seen = false;
    for (int i = 0; i < out->len; i++)
      seen |= out->data[i] == e->buf;
    if (!seen)
      vec_push(c->arena, out, e->buf);
  }
  for (int i = 0; i < e->nidx; i++)
    loaded(c, e->idx[i], out);
  for (int i = 0; i < e->nargs; i++)
    loaded(c, e->args[i], out);
  loaded(c, e->a, out);
  loaded(c, e->b, out);
  loaded(c, e->c, out);
}

/* ---- the definition ---- */

typedef struct Def1 {
  Buffer *buf;
  IRVar *vars[TC_MAX_RANK]; /* the nest's loop variables, outermost first */
  int nvars;
  IRExpr *value;
} Def1;

/* Whether e's variables are sizes, extents, strides or d's loop variables
 * (a value reading a local is part of a bigger statement: not pointwise). */
static bool closed_over(const IRExpr *e, const Def1 *d) {
  if (!e)
    return true;
  if (e->kind == IR_VAR && (e->var->kind == VAR_LOOP || e->var->kind == VAR_LOCAL)) {
    for (int i = 0; i < d->nvars; i++)
      if (e->var == d->vars[i])
        return true;
    return false;
  }
  for (int i = 0; i < e->nidx; i++)
    if (!closed_over(e->idx[i], d))
      return false;
  for (int i = 0; i < e->nargs; i++)
    if (!closed_over(e->args[i], d))
      return false;
  return closed_over(e->a, d) && closed_over(e->b, d) && closed_over(e->c, d);
}

/* Whether s is `for v1..vr: T[v1..vr] = value` (r may be 0) of a temporary. */
static bool pointwise_def(const IRStmt *s, Def1 *d) {
  d->nvars = 0;
  while (s->kind == S_FOR) {
    int64_t lo;
    if (d->nvars == TC_MAX_RANK || !ir_is_const(s->lo, &lo) || lo != 0)
      return false;
    d->vars[d->nvars++] = s->var;
    s = s->body;
    if (s->kind == S_BLOCK && s->n == 1)
      s = s->stmts[0];
  }
  if (s->kind != S_STORE || !s->buf->tensor || s->buf->tensor->role != T_TEMP ||
      s->buf->tensor->zero_fill || s->nidx != d->nvars)
    return false;
  for (int i = 0; i < s->nidx; i++)
    if (s->idx[i]->kind != IR_VAR || s->idx[i]->var != d->vars[i])
      return false;
  d->buf = s->buf;
  d->value = s->value;
  return !ir_loads_buf(s->value, s->buf) && !ir_has_fail(s->value) && closed_over(s->value, d);
}

/* ---- the readers ---- */

typedef struct Inl {
  Ctx *c;
  Def1 *d;
  VEC(IRVar *) loops; /* loops around the expression being rewritten */
  bool costly;        /* value calls a math function */
  bool ok;            /* every load so far is cheap enough to inline */
} Inl;

/* A costly value is inlined only where each element is read about once:
 * by one statement, whose loads' indices use every loop variable around
 * them (fold.c keeps a value read by several statements of one loop in a
 * local buffer instead). */
static void check_load(Inl *I, const IRExpr *e) {
  if (!I->costly)
    return;
  for (int i = 0; i < I->loops.len; i++) {
    bool used = false;
    for (int k = 0; k < e->nidx; k++)
      used |= ir_uses_var(e->idx[k], I->loops.data[i]);
    if (!used)
      I->ok = false;
  }
}

static void scan_expr(Inl *I, const IRExpr *e) {
  if (!e)
    return;
  if (e->kind == IR_LOAD && e->buf == I->d->buf)
    check_load(I, e);
  for (int i = 0; i < e->nidx; i++)
    scan_expr(I, e->idx[i]);
  for (int i = 0; i < e->nargs; i++)
    scan_expr(I, e->args[i]);
  scan_expr(I, e->a);
  scan_expr(I, e->b);
  scan_expr(I, e->c);
}

static void scan_stmt(Inl *I, const IRStmt *s) {
  if (!s)
    return;
  int mark = I->loops.len;
  if (s->kind == S_FOR) {
    scan_expr(I, s->lo);
    scan_expr(I, s->extent);
    vec_push(I->c->arena, &I->loops, s->var);
  }
  for (int i = 0; i < s->nidx; i++)
    scan_expr(I, s->idx[i]);
  scan_expr(I, s->value);
  scan_expr(I, s->cond);
  for (int i = 0; i < s->n; i++)
    scan_stmt(I, s->stmts[i]);
  scan_stmt(I, s->body);
  scan_stmt(I, s->then);
  scan_stmt(I, s->els);
  I->loops.len = mark;
}

/* ---- rewriting ---- */

typedef struct Subst {
  IRVar **vars;
  IRExpr **with;
  int n;
} Subst;

static IRExpr *subst(Ctx *c, void *st, IRExpr *e) {
  Subst *S = st;
  if (e->kind == IR_VAR)
    for (int i = 0; i < S->n; i++)
      if (e->var == S->vars[i])
        return S->with[i];
  return ir_mutate_expr_children(c, e, subst, st);
}

static IRExpr *inline_expr(Ctx *c, void *st, IRExpr *e) {
  Inl *I = st;
  e = ir_mutate_expr_children(c, e, inline_expr, st);
  if (e->kind != IR_LOAD || e->buf != I->d->buf)
    return e;
  Subst S = {I->d->vars, e->idx, I->d->nvars};
  return subst(c, &S, I->d->value);
}

static IRStmt *inline_stmt(Ctx *c, void *st, IRStmt *s) {
  return ir_mutate_stmt_children(c, s, inline_stmt, inline_expr, st);
}

/* Inlines the definition at items[k] into items[k+1..n) when allowed. */
static bool try_inline(Ctx *c, IRStmt **items, int n, int k) {
  Def1 d;
  if ((items[k]->kind == S_FOR && items[k]->var->user) || !pointwise_def(items[k], &d))
    return false;
  BufList reads = {0};
  loaded(c, d.value, &reads);
  Inl I = {c, &d, {0}, has_call_or_fail(d.value), true};
  int readers = 0;
  for (int i = 0; i < n; i++) {
    if (i == k)
      continue;
    if (ir_stmt_stores(items[i], d.buf))
      return false;
    for (int j = 0; i > k && j < reads.len; j++)
      if (ir_stmt_stores(items[i], reads.data[j]))
        return false;
    if (i > k && stmt_loads(items[i], d.buf)) {
      if (items[i]->kind == S_FOR && items[i]->var->user)
        return false; /* a nest the user scheduled (sched.c) stays as written */
      readers++;
      scan_stmt(&I, items[i]);
    }
  }
  if (!I.ok || (I.costly && readers > 1))
    return false;
  for (int i = k + 1; i < n; i++)
    items[i] = inline_stmt(c, &I, items[i]);
  items[k] = ir_block(c, NULL, 0);
  return true;
}

void inline_func(Ctx *c, IRFunc *f) {
  if (!f->body || f->body->kind != S_BLOCK)
    return;
  int n = f->body->n;
  IRStmt **items = arena_alloc(c->arena, sizeof(IRStmt *) * (size_t)(n + 1));
  for (int i = 0; i < n; i++)
    items[i] = f->body->stmts[i];
  bool changed = false;
  for (int k = 0; k < n; k++)
    if (!(items[k]->kind == S_FOR && sched_directed(f, items[k]->var))) /* compute_with... */
      changed |= try_inline(c, items, n, k);
  if (!changed)
    return;
  IRStmt *b = ir_block(c, items, n);
  b->loc = f->body->loc;
  f->body = simplify_stmt(c, b);
}
