/*
 * fold.c — temporaries that live in one iteration become local buffers.
 *
 * After fusion, softmax is one loop over the rows n whose body computes
 * e(n, d) for the row, sums it, and divides it: every access to the
 * temporary e is at index n in dimension 0.  So iteration n only ever needs
 * row n of e: the whole tensor can be one row, reused from row to row
 * (Halide's storage folding).  This pass gives such a temporary a local
 * buffer of its other dimensions, allocated around the loop's body (the C
 * back end allocates it once per parallel task): the row stays in the L1
 * cache, and the tensor's memory is never touched.
 *
 * A temporary T folds into a top-level loop `for v: body` when every load
 * and store of T in the function is inside body and indexes dimension d
 * with exactly v, for one d.  Its local buffer has the extents of T's other
 * dimensions (T's own run-time extents), row-major.
 *
 * A schedule (IRFunc.want, from sched.c) decides for the tensors of the
 * stages it names: `T.store_at(H, v)` folds T into the loop nest holding
 * stage H (an error at the directive when it cannot), and a temporary none
 * of whose stages has it is not folded.  Each folding is recorded in
 * IRFunc.did (at T's first stage: the stage whose loop holds it).
 *
 * Requires: lowered IR (multi-dim accesses), after fuse, before tile.
 * Guarantees: the same results; folded temporaries accessed only through
 * local buffers (flat, one index) inside an S_ALLOC that is the loop's
 * body.  Invalidates nothing.
 */
#include "tc.h"

/* ---- finding the accesses ---- */

typedef struct Fold {
  Ctx *c;
  IRFunc *f;
  Buffer *buf;   /* the temporary */
  IRVar *v;      /* the loop's variable */
  int dim;       /* the dimension indexed by v; -1 before the first access */
  bool ok;
  int n;         /* accesses seen */
  Buffer *local; /* the replacement */
} Fold;

static void see(Fold *F, IRExpr *const *idx, int nidx) {
  F->n++;
  int found = -1;
  for (int d = 0; d < nidx && found < 0; d++)
    if ((F->dim < 0 || d == F->dim) && idx[d]->kind == IR_VAR && idx[d]->var == F->v)
      found = d;
  if (found < 0)
    F->ok = false;
  else
    F->dim = found;
}

static void scan_expr(Fold *F, const IRExpr *e) {
  if (!e)
    return;
  if (e->kind == IR_LOAD && e->buf == F->buf)
    see(F, e->idx, e->nidx);
  for (int i = 0; i < e->nidx; i++)
    scan_expr(F, e->idx[i]);
  for (int i = 0; i < e->nargs; i++)
    scan_expr(F, e->args[i]);
  scan_expr(F, e->a);
  scan_expr(F, e->b);
  scan_expr(F, e->c);
}

static void scan_stmt(Fold *F, const IRStmt *s) {
  if (!s)
    return;
  if (s->kind == S_STORE && s->buf == F->buf)
    see(F, s->idx, s->nidx);
  for (int i = 0; i < s->nidx; i++)
    scan_expr(F, s->idx[i]);
  scan_expr(F, s->lo);
  scan_expr(F, s->extent);
  scan_expr(F, s->value);
  scan_expr(F, s->cond);
  for (int i = 0; i < s->n; i++)
    scan_stmt(F, s->stmts[i]);
  scan_stmt(F, s->body);
  scan_stmt(F, s->then);
  scan_stmt(F, s->els);
}

/* ---- rewriting ---- */

/* The flat index of idx in the local buffer: row-major over T's
 * dimensions other than F->dim. */
static IRExpr *flat(Fold *F, IRExpr *const *idx, int nidx) {
  Ctx *c = F->c;
  IRExpr *off = ir_i64(c, 0);
  for (int d = 0; d < nidx; d++) {
    if (d == F->dim)
      continue;
    off = ir_add(c, ir_mul(c, off, ir_var(c, F->buf->shape[d])), idx[d]);
  }
  return simplify_expr(c, off);
}

static IRExpr *fold_expr(Ctx *c, void *st, IRExpr *e) {
  Fold *F = st;
  e = ir_mutate_expr_children(c, e, fold_expr, st);
  if (e->kind != IR_LOAD || e->buf != F->buf)
    return e;
  IRExpr *i = flat(F, e->idx, e->nidx);
  return ir_load(c, F->local, &i, 1);
}

static IRStmt *fold_stmt(Ctx *c, void *st, IRStmt *s) {
  Fold *F = st;
  s = ir_mutate_stmt_children(c, s, fold_stmt, fold_expr, st);
  if (s->kind != S_STORE || s->buf != F->buf)
    return s;
  IRExpr *i = flat(F, s->idx, s->nidx);
  IRStmt *n = ir_store(c, F->local, &i, 1, s->value);
  n->loc = s->loc;
  return n;
}

/* Folds temporary b into the top-level loop items[k] when it may. */
static bool try_fold(Ctx *c, IRFunc *f, IRStmt **items, int n, int k, Buffer *b) {
  IRStmt *loop = items[k];
  Fold F = {c, f, b, loop->var, -1, true, 0, NULL};
  for (int i = 0; i < n; i++) {
    if (i == k)
      continue;
    Fold other = F;
    scan_stmt(&other, items[i]);
    if (other.n)
      return false; /* used outside the loop */
  }
  scan_stmt(&F, loop->body);
  if (!F.ok || !F.n || F.dim < 0)
    return false;
  Buffer *lb = arena_alloc(c->arena, sizeof *lb);
  lb->name = arena_printf(c->arena, "lb%d", f->nvars++);
  lb->slot = -1;
  lb->dtype = b->dtype;
  lb->rank = 1;
  lb->local = true;
  F.local = lb;
  IRExpr *extent = ir_i64(c, 1);
  for (int d = 0; d < b->rank; d++)
    if (d != F.dim)
      extent = ir_mul(c, extent, ir_var(c, b->shape[d]));
  FailSite fs = {FAIL_NOMEM, b->tensor ? b->tensor->loc : (Loc){0, 0}, b->tensor, 0, false};
  vec_push(c->arena, &f->sites, fs);
  IRStmt *body = ir_alloc(c, lb, simplify_expr(c, extent), f->sites.len - 1,
                          fold_stmt(c, &F, loop->body));
  body->loc = loop->loc;
  IRStmt *r = ir_for(c, loop->var, loop->lo, loop->extent, loop->fkind, body);
  r->loc = loop->loc;
  items[k] = r;
  return true;
}

/* What the schedule says of tensor t: *at is the stage at whose loop a
 * store_at holds it (-1: none), and the result whether the autoscheduler
 * may fold it (no stage writing it has directives). */
static bool may_choose(const IRFunc *f, const Tensor *t, int *at, Loc *loc, int *first) {
  *at = *first = -1;
  bool free_ = true;
  for (int si = 0; f->def && si < f->def->nstmts; si++) {
    if (f->def->stmts[si]->lhs != t)
      continue;
    if (*first < 0)
      *first = si;
    if (!f->want)
      continue;
    free_ &= !f->want[si].directed;
    if (f->want[si].fold >= 0) {
      *at = f->want[si].fold;
      *loc = f->want[si].fold_loc;
    }
  }
  return free_;
}

static int stage_of(const IRFunc *f, const IRStmt *s) {
  int si = s->kind == S_FOR ? sched_stage_of_loop(s->var) : -1;
  return si >= 0 && f->def && si < f->def->nstmts ? si : -1;
}

void fold_func(Ctx *c, IRFunc *f) {
  if (!f->body || f->body->kind != S_BLOCK)
    return;
  int n = f->body->n;
  IRStmt **items = arena_alloc(c->arena, sizeof(IRStmt *) * (size_t)(n + 1));
  for (int i = 0; i < n; i++)
    items[i] = f->body->stmts[i];
  bool *done = arena_alloc(c->arena, sizeof(bool) * (size_t)(f->nbufs + 1));
  bool changed = false;
  for (int k = 0; k < n; k++) {
    if (items[k]->kind != S_FOR || items[k]->var->user) /* the user's (sched.c) */
      continue;
    int ks = stage_of(f, items[k]);
    for (int t = 0; t < f->nbufs; t++) {
      Buffer *b = f->bufs[t];
      if (done[t] || !b->tensor || b->tensor->role != T_TEMP || b->rank < 1)
        continue;
      int at, first;
      Loc loc = {0, 0};
      bool free_ = may_choose(f, b->tensor, &at, &loc, &first);
      int head = at >= 0 && f->did && f->did[at].with >= 0 ? f->did[at].with : at;
      if ((at >= 0 && ks != head) || (at < 0 && !free_))
        continue;
      done[t] = try_fold(c, f, items, n, k, b);
      if (done[t] && first >= 0 && ks >= 0)
        sched_did(c, f)[first].fold = ks;
      changed |= done[t];
    }
  }
  for (int t = 0; t < f->nbufs; t++) {
    int at = -1, first;
    Loc loc = {0, 0};
    if (!done[t] && f->bufs[t]->tensor)
      may_choose(f, f->bufs[t]->tensor, &at, &loc, &first);
    if (at >= 0)
      error_at(c, loc, "store_at: %s cannot be held per iteration of that loop: some access to "
               "it is outside the loop, or not at the loop's index in one dimension",
               f->bufs[t]->tensor->name);
  }
  if (!changed)
    return;
  IRStmt *b = ir_block(c, items, n);
  b->loc = f->body->loc;
  f->body = b;
}
