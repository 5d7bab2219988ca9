/*
 * flatten.c — multi-dimensional accesses to flat offsets.
 *
 * Requires: every IR_LOAD and S_STORE has nidx == its buffer's rank, with
 * int64 indices.
 * Guarantees: every IR_LOAD and S_STORE has nidx == 1: the element offset
 * sum(idx_d * stride_d) in int64, over the buffer's stride variables
 * (b_<name>_s<d>), or 0 for rank 0.  Strides are run-time arguments, so one
 * kernel serves any layout (non-contiguous views, broadcast stride 0).
 * Local buffers (S_ALLOC) are flat from the start: their accesses stay.
 * Invalidates: passes that look at per-dimension indices (run them before).
 */
#include "tc.h"

static IRExpr *offset(Ctx *c, Buffer *b, IRExpr **idx, int nidx) {
  IASSERT(c, nidx == b->rank);
  IRExpr *off = ir_i64(c, 0);
  for (int d = 0; d < nidx; d++) {
    IASSERT(c, idx[d]->type == TC_INT64);
    off = ir_add(c, off, ir_mul(c, idx[d], ir_var(c, b->stride[d])));
  }
  return off;
}

static IRExpr *flat_expr(Ctx *c, void *st, IRExpr *e) {
  e = ir_mutate_expr_children(c, e, flat_expr, st);
  if (e->kind != IR_LOAD || e->buf->local)
    return e;
  IRExpr *off = offset(c, e->buf, e->idx, e->nidx);
  return ir_load(c, e->buf, &off, 1);
}

static IRStmt *flat_stmt(Ctx *c, void *st, IRStmt *s) {
  s = ir_mutate_stmt_children(c, s, flat_stmt, flat_expr, st);
  if (s->kind != S_STORE || s->buf->local)
    return s;
  IRExpr *off = offset(c, s->buf, s->idx, s->nidx);
  IRStmt *n = ir_store(c, s->buf, &off, 1, s->value);
  n->loc = s->loc;
  return n;
}

void flatten_func(Ctx *c, IRFunc *f) {
  if (f->body)
    f->body = flat_stmt(c, NULL, f->body);
}
