/*
 * fuse.c — consecutive statements over the same outer loop become one loop.
 *
 * After inlining, softmax is three nests over the rows n: the row maximum,
 * the row sum, the output row.  Each iteration n of each nest touches only
 * row n of what the nests share (mx[n], s[n], O[n, d]), so the three can
 * run in one loop over n, one row at a time: the row is read from memory
 * once and stays in the cache for the other two passes, and the one loop is
 * one parallel job instead of three.
 *
 * Two adjacent top-level nests `for v in R: B1` and `for w in R: B2` (the
 * same range, each loop writing at its own variable, as left-hand loops do)
 * fuse into `for v in R: { B1; B2[w := v] }` when every buffer that one of
 * them writes and the other accesses is accessed, in both, only at index v
 * (resp. w) in one fixed dimension: iteration v then reads and writes only
 * slice v of what they share, so running B2's iteration v right after B1's
 * computes what running all of B1 first did.  Up-front checks between the
 * two nests move before the fused loop (they read sizes only).  Nests with
 * a reduction into two or more dimensions (contractions: tile.c's) are left
 * alone, and so are nests something already scheduled.
 *
 * A schedule (IRFunc.want, from sched.c) decides for the stages it names:
 * `S.compute_with(H, v)` fuses S's nest into the one holding H's (an error
 * at the directive when it is not right before or the fusion is not as
 * above), and a stage with other directives fuses into nothing.  Each
 * fusion is recorded in IRFunc.did (the stage whose loop the nest joined).
 *
 * Requires: lowered IR (multi-dim accesses), before schedule.
 * Guarantees: the same results, fewer top-level nests.  Invalidates nothing.
 */
#include "tc.h"

#include <string.h>

/* ---- accesses ---- */

typedef struct Access {
  Buffer *buf;
  IRExpr *const *idx;
  int nidx;
  bool write;
} Access;

typedef VEC(Access) AccessList;

static void expr_accesses(Ctx *c, const IRExpr *e, AccessList *out) {
  if (!e)
    return;
  if (e->kind == IR_LOAD) {
    Access a = {e->buf, e->idx, e->nidx, false};
    vec_push(c->arena, out, a);
  }
  for (int i = 0; i < e->nidx; i++)
    expr_accesses(c, e->idx[i], out);
  for (int i = 0; i < e->nargs; i++)
    expr_accesses(c, e->args[i], out);
  expr_accesses(c, e->a, out);
  expr_accesses(c, e->b, out);
  expr_accesses(c, e->c, out);
}

static void stmt_accesses(Ctx *c, const IRStmt *s, AccessList *out) {
  if (!s)
    return;
  if (s->kind == S_STORE) {
    Access a = {s->buf, s->idx, s->nidx, true};
    vec_push(c->arena, out, a);
  }
  for (int i = 0; i < s->nidx; i++)
    expr_accesses(c, s->idx[i], out);
  expr_accesses(c, s->lo, out);
  expr_accesses(c, s->extent, out);
  expr_accesses(c, s->value, out);
  expr_accesses(c, s->cond, out);
  for (int i = 0; i < s->n; i++)
    stmt_accesses(c, s->stmts[i], out);
  stmt_accesses(c, s->body, out);
  stmt_accesses(c, s->then, out);
  stmt_accesses(c, s->els, out);
}

static bool writes(const AccessList *l, const Buffer *b) {
  for (int i = 0; i < l->len; i++)
    if (l->data[i].buf == b && l->data[i].write)
      return true;
  return false;
}

static bool touches(const AccessList *l, const Buffer *b) {
  for (int i = 0; i < l->len; i++)
    if (l->data[i].buf == b)
      return true;
  return false;
}

/* The dimension in which every access of l to b indexes exactly v; -1 when
 * there is none.  `dim` is the one required so far (-1: any). */
static int slice_dim(const AccessList *l, const Buffer *b, const IRVar *v, int dim) {
  for (int i = 0; i < l->len; i++) {
    const Access *a = &l->data[i];
    if (a->buf != b)
      continue;
    int found = -1;
    for (int d = 0; d < a->nidx && found < 0; d++)
      if ((dim < 0 || d == dim) && a->idx[d]->kind == IR_VAR && a->idx[d]->var == v)
        found = d;
    if (found < 0)
      return -1;
    dim = found;
  }
  return dim;
}

/* ---- what may fuse ---- */

static bool is_var(const IRExpr *e, const IRVar *v) { return e->kind == IR_VAR && e->var == v; }

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

/* The number of loops around an accumulator (an S_DECL followed by the
 * loop that reduces into it) in s, at most: a reduction nest
 * `for l1..lk: { acc = ..; for r..: ..; store }` counts k. */
static int reduction_rank(const IRStmt *s, int depth) {
  if (!s)
    return 0;
  if (s->kind == S_FOR)
    return reduction_rank(s->body, depth + 1);
  int best = 0;
  for (int i = 0; i < s->n; i++) {
    bool acc = s->stmts[i]->kind == S_DECL && i + 1 < s->n && s->stmts[i + 1]->kind == S_FOR;
    int r = acc ? depth : reduction_rank(s->stmts[i], depth);
    best = r > best ? r : best;
  }
  return best;
}

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

/* Whether s may take part in a fusion: a left-hand loop, not a contraction
 * (a reduction inside two or more loops), not scheduled. */
static bool fusable(const IRStmt *s) {
  return s->kind == S_FOR && !s->var->user && stores_at(s->body, s->var) &&
         reduction_rank(s, 0) < 2 && !has_scheduled_loop(s);
}

/* Whether `for v: a` then `for w: b` may run as one loop. */
static bool may_fuse(Ctx *c, const IRStmt *a, const IRStmt *b) {
  if (!fusable(a) || !fusable(b) || !ir_equal(a->lo, b->lo) || !ir_equal(a->extent, b->extent))
    return false;
  AccessList la = {0}, lb = {0};
  stmt_accesses(c, a->body, &la);
  stmt_accesses(c, b->body, &lb);
  for (int i = 0; i < la.len + lb.len; i++) {
    Buffer *x = i < la.len ? la.data[i].buf : lb.data[i - la.len].buf;
    if (!touches(&la, x) || !touches(&lb, x) || (!writes(&la, x) && !writes(&lb, x)))
      continue;
    int d = slice_dim(&la, x, a->var, -1);
    if (d < 0 || slice_dim(&lb, x, b->var, d) != d)
      return false;
  }
  return true;
}

typedef struct Rename {
  IRVar *from, *to;
} Rename;

static IRExpr *rename_expr(Ctx *c, void *st, IRExpr *e) {
  Rename *r = st;
  if (e->kind == IR_VAR && e->var == r->from)
    return ir_var(c, r->to);
  return ir_mutate_expr_children(c, e, rename_expr, st);
}

static IRStmt *rename_stmt(Ctx *c, void *st, IRStmt *s) {
  return ir_mutate_stmt_children(c, s, rename_stmt, rename_expr, st);
}

static IRStmt *fuse_two(Ctx *c, IRStmt *a, IRStmt *b) {
  Rename r = {b->var, a->var};
  IRStmt *parts[2] = {a->body, rename_stmt(c, &r, b->body)};
  IRStmt *s = ir_for(c, a->var, a->lo, a->extent, FOR_SERIAL, ir_block(c, parts, 2));
  s->loc = a->loc;
  return s;
}

/* The stage whose nest s is (its loop x<k>_...), or -1. */
static int stage_of(const IRFunc *f, const IRStmt *s) {
  int si = s->kind == S_FOR ? sched_stage_of_loop(s->var) : -1;
  return si >= 0 && f->def && si < f->def->nstmts ? si : -1;
}

/* The schedule's compute_with for stage si: its nest joins out[last], the
 * nest of stage `head`, which must hold the stage it names. */
static void fuse_wanted(Ctx *c, IRFunc *f, IRStmt *prev, int head, IRStmt *s, int si) {
  const StageHint *w = &f->want[si];
  int h = w->with, hh = f->did && f->did[h].with >= 0 ? f->did[h].with : h;
  const char *name = f->def->stmts[h]->lhs->name;
  if (!prev || hh != head)
    error_at(c, w->with_loc, "compute_with: the loop nest of %s does not come right before this "
             "stage's (it is tiled, inlined or scheduled, or other nests are between them)", name);
  if (!may_fuse(c, prev, s))
    error_at(c, w->with_loc, "compute_with: this stage's loop nest cannot join that of %s: "
             "their outer loops differ in range, one is a contraction, or they share a tensor "
             "other than slice by slice of that loop", name);
}

void fuse_func(Ctx *c, IRFunc *f) {
  if (!f->body || f->body->kind != S_BLOCK)
    return;
  VEC(IRStmt *) out = {0};
  int last = -1; /* index in out of the nest the next one may fuse into */
  int head = -1; /* the stage whose loop out.data[last] is, or -1 */
  for (int i = 0; i < f->body->n; i++) {
    IRStmt *s = f->body->stmts[i];
    if (s->kind == S_CHECK) {
      /* up-front checks read sizes only: they may run before the nest */
      vec_push(c->arena, &out, s);
      if (last >= 0) {
        IRStmt *t = out.data[out.len - 1];
        memmove(&out.data[last + 1], &out.data[last], sizeof(IRStmt *) * (size_t)(out.len - 1 - last));
        out.data[last] = t;
        last++;
      }
      continue;
    }
    int si = stage_of(f, s);
    const StageHint *w = f->want && si >= 0 ? &f->want[si] : NULL;
    bool fuse = false;
    if (w && w->with >= 0) { /* the schedule's compute_with */
      fuse_wanted(c, f, last >= 0 ? out.data[last] : NULL, head, s, si);
      fuse = true;
    } else if (!(w && w->directed)) { /* the autoscheduler's */
      fuse = last >= 0 && may_fuse(c, out.data[last], s);
    }
    if (fuse) {
      out.data[last] = fuse_two(c, out.data[last], s);
      if (si >= 0 && head >= 0)
        sched_did(c, f)[si].with = head;
      continue;
    }
    vec_push(c->arena, &out, s);
    last = fusable(s) ? out.len - 1 : -1;
    head = last >= 0 ? si : -1;
  }
  IRStmt *b = ir_block(c, out.data, out.len);
  b->loc = f->body->loc;
  f->body = b;
}
