/*
 * schedule_gpu.c — the GPU schedule: which statements share a kernel, which
 * loops run on blocks and which on threads.
 *
 * Requires: the output of lower_def (multi-dim accesses, serial loops, a
 * flat top-level block: per statement its zero-fill, checks and loop nest).
 * Guarantees the GPU dialect that emit_cuda.c maps onto the hardware:
 *
 *   - the top level is a list of host steps: S_CHECKs over sizes (run on
 *     the host before anything after them is launched), S_IFs over sizes
 *     (a schedule chosen with the run's sizes), and kernels: a FOR_GPU_BLOCK
 *     or FOR_GPU_THREAD loop, or a run of other statements (one block);
 *   - FOR_GPU_BLOCK loops are the outermost loops of a kernel; their
 *     iterations are independent and spread over blocks;
 *   - FOR_GPU_THREAD loops: iterations independent and spread over the
 *     threads of a block, except that an enclosing local updated inside as
 *     `v = v OP e` (OP + * min max) is a reduction over them;
 *   - block and thread loop bounds depend on sizes only.
 *
 * The schedule, statement by statement (a "nest" is one statement's loops:
 * its left-hand loops, outermost first, around an accumulator and its
 * reduction loops, or around a store):
 *
 *   inlining    a temporary written once, at every point, by a pointwise
 *               nest with a small value is recomputed by its readers (the
 *               blur's horizontal pass), and its nest removed.
 *   pointwise   the left-hand loops are parallel: the innermost becomes the
 *               thread loop (consecutive threads, consecutive elements of
 *               the output's last dimension: coalesced), the others block
 *               loops; reduction loops run sequentially per thread.
 *   contraction acc += A * B with one reduction loop, A over m and k, B over
 *               k and n (matrix products, batched or fused with epilogues):
 *               mapped pointwise, plus a GpuHint (f->gpu) for emit_cuda.c's
 *               tiled kernel, which re-checks the pattern after flatten.
 *   conv        other contractions whose product sits in several perfectly
 *               nested reduction loops (convolutions: c, kh, kw) are mapped
 *               pointwise, plus a conv GpuHint: emit_cuda.c runs them as an
 *               implicit GEMM (output positions x output channels x window).
 *   jam         other reductions mapped pointwise compute
 *               JAM outputs a thread along the left-hand loop that the
 *               expensive per-thread operand does not read (unroll and jam:
 *               one load of it feeds JAM accumulators).
 *   element     consecutive nests over the same left-hand loops, where each
 *   fusion      tensor written in the group is accessed only at the group's
 *               own point (an epilogue: `C(m,n) +=! ...` then
 *               `C(m,n) = fmax(C(m,n) + b(n), 0)`), share one nest; a store
 *               read back at the same point is forwarded and the overwritten
 *               store removed.
 *   rows        a reduction along the output's rows (the innermost reduction
 *               variable is the last subscript of its reads more often than
 *               the innermost left-hand variable is: `s(n) +=! X(n,d)`),
 *               with the pointwise statements over the same rows around it
 *               (softmax, layer norm), runs one block per row: the row
 *               loops are block loops, each statement's remaining loop a
 *               thread loop, the reductions collective.  Inside the block,
 *               reduction results are forwarded to their readers (they stay
 *               in registers), pointwise temporaries are recomputed where
 *               read (they never reach memory), and stores to temporaries
 *               nobody reads are removed.  Chosen at run time when the row
 *               is at least 32 long; otherwise the statements run pointwise.
 *   scalars     statements outside any loop (rank-0 outputs) run in one
 *               block; their reduction loops are thread loops.
 *
 * Checks are hoisted in order to the host ahead of the kernel they guard.
 * Invalidates nothing (runs before flatten).
 */
#include "tc.h"

#include <string.h>

enum { ROW_MIN = 32 }; /* rows shorter than this run pointwise */

typedef VEC(IRStmt *) StmtList;

typedef struct Sched {
  Ctx *c;
  IRFunc *f;
} Sched;

/* One statement's loop nest. */
typedef struct Nest {
  IRStmt *root;
  IRStmt *chain[TC_MAX_RANK]; /* left-hand loops, outermost first */
  int rank;
  IRStmt *body;               /* what the innermost left-hand loop runs */
  Buffer *lhs;                /* the one buffer it stores */
  IRStmt *red;                /* the (outermost) reduction loop, or NULL */
  IRVar *acc;                 /* its accumulator */
  bool contraction;           /* acc += A * B, A and B over different left-hand loops */
  bool row_pref;              /* its reads run along the reduction */
} Nest;

/* ---- small IR queries ---- */

static IRStmt *unwrap(IRStmt *s) {
  while (s && s->kind == S_BLOCK && s->n == 1)
    s = s->stmts[0];
  return s;
}

static bool is_var(const IRExpr *e, const IRVar *v) { return e && e->kind == IR_VAR && e->var == v; }

/* Whether a store in s writes at index v in some dimension (as schedule.c). */
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

/* Every store in s writes at index v in some dimension. */
static bool all_stores_at(const IRStmt *s, const IRVar *v) {
  if (!s)
    return true;
  if (s->kind == S_STORE) {
    for (int i = 0; i < s->nidx; i++)
      if (is_var(s->idx[i], v))
        return true;
    return false;
  }
  for (int i = 0; i < s->n; i++)
    if (!all_stores_at(s->stmts[i], v))
      return false;
  return all_stores_at(s->body, v) && all_stores_at(s->then, v) && all_stores_at(s->els, v);
}

typedef struct Access {
  Buffer *buf;
  IRExpr **idx;
  int nidx;
  bool store;
} Access;
typedef VEC(Access) AccessList;

static void accesses_expr(Sched *S, const IRExpr *e, AccessList *out) {
  if (!e)
    return;
  if (e->kind == IR_LOAD) {
    Access a = {e->buf, e->idx, e->nidx, false};
    vec_push(S->c->arena, out, a);
  }
  for (int i = 0; i < e->nidx; i++)
    accesses_expr(S, e->idx[i], out);
  for (int i = 0; i < e->nargs; i++)
    accesses_expr(S, e->args[i], out);
  accesses_expr(S, e->a, out);
  accesses_expr(S, e->b, out);
  accesses_expr(S, e->c, out);
}

static void accesses(Sched *S, const IRStmt *s, AccessList *out) {
  if (!s)
    return;
  if (s->kind == S_STORE) {
    Access a = {s->buf, s->idx, s->nidx, true};
    vec_push(S->c->arena, out, a);
  }
  for (int i = 0; i < s->nidx; i++)
    accesses_expr(S, s->idx[i], out);
  accesses_expr(S, s->lo, out);
  accesses_expr(S, s->extent, out);
  accesses_expr(S, s->value, out);
  accesses_expr(S, s->cond, out);
  for (int i = 0; i < s->n; i++)
    accesses(S, s->stmts[i], out);
  accesses(S, s->body, out);
  accesses(S, s->then, out);
  accesses(S, s->els, out);
}

static bool assigns_var(const IRStmt *s, const IRVar *v) {
  if (!s)
    return false;
  if ((s->kind == S_ASSIGN || s->kind == S_DECL) && s->var == v)
    return true;
  for (int i = 0; i < s->n; i++)
    if (assigns_var(s->stmts[i], v))
      return true;
  return assigns_var(s->body, v) || assigns_var(s->then, v) || assigns_var(s->els, v);
}

/* Every use of v in s is an update v = v OP e with one OP. */
static bool reduction_of(const IRStmt *s, const IRVar *v, int *op) {
  if (!s)
    return true;
  if (s->kind == S_ASSIGN && s->var == v) {
    const IRExpr *x = s->value;
    if (x->kind != IR_BIN ||
        !(x->op == OP_ADD || x->op == OP_MUL || x->op == OP_MIN || x->op == OP_MAX))
      return false;
    if (!is_var(x->a, v) || ir_uses_var(x->b, v) || (*op >= 0 && *op != x->op))
      return false;
    *op = x->op;
    return true;
  }
  if (s->kind == S_DECL && s->var == v)
    return false;
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

/* The statements of s as a list (a block's, or s alone). */
static IRStmt *const *list_of(IRStmt **one, IRStmt *s, int *n) {
  if (s && s->kind == S_BLOCK) {
    *n = s->n;
    return s->stmts;
  }
  *one = s;
  *n = s ? 1 : 0;
  return one;
}

/* ---- substitution ---- */

typedef struct Subst {
  const IRVar **from;
  IRExpr **to;
  int n;
} Subst;

static IRExpr *subst_expr(Ctx *c, void *st, IRExpr *e) {
  Subst *s = st;
  if (e->kind == IR_VAR)
    for (int i = 0; i < s->n; i++)
      if (e->var == s->from[i])
        return s->to[i];
  return ir_mutate_expr_children(c, e, subst_expr, st);
}

static IRStmt *subst_stmt(Ctx *c, void *st, IRStmt *s) {
  return ir_mutate_stmt_children(c, s, subst_stmt, subst_expr, st);
}

/* Replaces loads of one buffer at a given index (or any index, with a
 * builder) by an expression. */
typedef struct LoadRepl {
  Buffer *buf;
  IRExpr **idx;      /* match these indices exactly (NULL: any) */
  IRExpr *with;      /* the replacement when idx matches */
  const IRVar *var;  /* with idx NULL: `with` is over `var`, bound to the load's last index */
  int count;
} LoadRepl;

static bool same_idx(IRExpr *const *a, IRExpr *const *b, int n) {
  for (int i = 0; i < n; i++)
    if (!ir_equal(a[i], b[i]))
      return false;
  return true;
}

static IRExpr *repl_expr(Ctx *c, void *st, IRExpr *e) {
  LoadRepl *r = st;
  e = ir_mutate_expr_children(c, e, repl_expr, st);
  if (e->kind != IR_LOAD || e->buf != r->buf)
    return e;
  if (r->idx) {
    if (!same_idx(e->idx, r->idx, e->nidx))
      return e;
    r->count++;
    return r->with;
  }
  const IRVar *from[1] = {r->var};
  IRExpr *to[1] = {e->idx[e->nidx - 1]};
  Subst s = {from, to, 1};
  r->count++;
  return subst_expr(c, &s, r->with);
}

static IRStmt *repl_stmt(Ctx *c, void *st, IRStmt *s) {
  return ir_mutate_stmt_children(c, s, repl_stmt, repl_expr, st);
}

/* Replaces every load of `buf` by `with` over `vars`, bound to the load's
 * indices. */
typedef struct InlineRepl {
  Buffer *buf;
  IRExpr *with;
  const IRVar **vars;
  int n;
} InlineRepl;

static IRExpr *repl_all_expr(Ctx *c, void *st, IRExpr *e) {
  InlineRepl *r = st;
  e = ir_mutate_expr_children(c, e, repl_all_expr, st);
  if (e->kind != IR_LOAD || e->buf != r->buf || e->nidx != r->n)
    return e;
  Subst s = {r->vars, e->idx, r->n};
  return subst_expr(c, &s, r->with);
}

static IRStmt *repl_all_stmt(Ctx *c, void *st, IRStmt *s) {
  return ir_mutate_stmt_children(c, s, repl_all_stmt, repl_all_expr, st);
}

static IRStmt *with_kind(Ctx *c, IRStmt *s, ForKind k, IRStmt *body) {
  IRStmt *r = ir_for(c, s->var, s->lo, s->extent, k, body);
  r->loc = s->loc;
  return r;
}

/* ---- nests ---- */

static void find_stores(const IRStmt *s, Buffer **buf, int *n) {
  if (!s)
    return;
  if (s->kind == S_STORE) {
    if (*n == 0 || *buf == s->buf)
      *buf = s->buf;
    else
      *buf = NULL;
    (*n)++;
  }
  for (int i = 0; i < s->n; i++)
    find_stores(s->stmts[i], buf, n);
  find_stores(s->body, buf, n);
  find_stores(s->then, buf, n);
  find_stores(s->els, buf, n);
}

/* Counts loads in e whose last index is exactly v. */
static int last_index_loads(const IRExpr *e, const IRVar *v) {
  if (!e)
    return 0;
  int n = e->kind == IR_LOAD && e->nidx > 0 && is_var(e->idx[e->nidx - 1], v);
  for (int i = 0; i < e->nidx; i++)
    n += last_index_loads(e->idx[i], v);
  for (int i = 0; i < e->nargs; i++)
    n += last_index_loads(e->args[i], v);
  return n + last_index_loads(e->a, v) + last_index_loads(e->b, v) + last_index_loads(e->c, v);
}

static int last_index_loads_stmt(const IRStmt *s, const IRVar *v) {
  if (!s)
    return 0;
  int n = last_index_loads(s->value, v) + last_index_loads(s->cond, v);
  for (int i = 0; i < s->n; i++)
    n += last_index_loads_stmt(s->stmts[i], v);
  return n + last_index_loads_stmt(s->body, v) + last_index_loads_stmt(s->then, v) +
         last_index_loads_stmt(s->els, v);
}

static const IRExpr *strip_casts(const IRExpr *e) {
  while (e && e->kind == IR_CAST)
    e = e->a;
  return e;
}

/* acc = acc + A * B where some left-hand variable is read by A only and
 * another by B only: a matrix-product-like contraction. */
static bool is_contraction(const Nest *n, int op, const IRExpr *upd) {
  if (op != OP_ADD || !upd)
    return false;
  const IRExpr *p = strip_casts(upd->b);
  if (!p || p->kind != IR_BIN || p->op != OP_MUL || !ir_loads_buf(p->a, NULL) || !ir_loads_buf(p->b, NULL))
    return false;
  bool only_a = false, only_b = false;
  for (int i = 0; i < n->rank; i++) {
    const IRVar *v = n->chain[i]->var;
    bool a = ir_uses_var(p->a, v), b = ir_uses_var(p->b, v);
    only_a |= a && !b;
    only_b |= b && !a;
  }
  return only_a && only_b;
}

static const IRStmt *find_update(const IRStmt *s, const IRVar *acc) {
  if (!s)
    return NULL;
  if (s->kind == S_ASSIGN && s->var == acc)
    return s;
  for (int i = 0; i < s->n; i++) {
    const IRStmt *u = find_update(s->stmts[i], acc);
    if (u)
      return u;
  }
  const IRStmt *u = find_update(s->body, acc);
  return u ? u : find_update(s->then, acc);
}

/* Reads a top-level statement as a nest; false when it is none. */
static bool analyze_nest(IRStmt *root, Nest *n) {
  memset(n, 0, sizeof *n);
  n->root = root;
  IRStmt *s = unwrap(root);
  while (s && s->kind == S_FOR && n->rank < TC_MAX_RANK && stores_at(s->body, s->var) &&
         all_stores_at(s->body, s->var)) {
    n->chain[n->rank++] = s;
    n->body = s->body;
    s = unwrap(s->body);
  }
  if (n->rank == 0)
    return false;
  int nst = 0;
  find_stores(n->body, &n->lhs, &nst);
  if (!n->lhs)
    return false;
  /* an accumulator declared in the body and reduced by the loop after it */
  IRStmt *one;
  int len;
  IRStmt *const *l = list_of(&one, n->body, &len);
  for (int i = 0; i + 1 < len; i++) {
    if (l[i]->kind != S_DECL || l[i + 1]->kind != S_FOR)
      continue;
    int op = -1;
    if (!reduction_of(l[i + 1]->body, l[i]->var, &op) || op < 0)
      continue;
    n->red = l[i + 1];
    n->acc = l[i]->var;
    const IRStmt *upd = find_update(n->red->body, n->acc);
    n->contraction = is_contraction(n, op, upd ? upd->value : NULL);
    const IRStmt *inner = n->red;
    while (unwrap(inner->body) && unwrap(inner->body)->kind == S_FOR)
      inner = unwrap(inner->body);
    int rows = last_index_loads_stmt(n->red->body, inner->var);
    int cols = last_index_loads_stmt(n->red->body, n->chain[n->rank - 1]->var);
    n->row_pref = !n->contraction && rows > cols;
    break;
  }
  return true;
}

/* ---- contractions: hints for the tiled kernel ---- */

static const IRExpr *load_of(const IRExpr *e) {
  e = strip_casts(e);
  return e && e->kind == IR_LOAD ? e : NULL;
}

/* n's contraction as a hint: one reduction loop k running only
 * acc = acc + A * B, A a load over m and k, B over k and n. */
static void hint_contraction(Sched *S, const Nest *n) {
  if (!n->contraction || n->rank < 2 || !n->red)
    return;
  IRStmt *u = unwrap(n->red->body);
  if (!u || u->kind != S_ASSIGN || u->var != n->acc || !dtype_is_float(n->acc->type))
    return;
  const IRExpr *p = strip_casts(u->value->b);
  const IRExpr *a = load_of(p->a), *b = load_of(p->b);
  const IRVar *k = n->red->var, *nv = n->chain[n->rank - 1]->var, *mv = NULL;
  if (!a || !b)
    return;
  if (ir_uses_var(a, nv) && !ir_uses_var(b, nv)) { /* B is the factor over n */
    const IRExpr *t = a;
    a = b;
    b = t;
  }
  if (ir_uses_var(a, nv) || !ir_uses_var(b, nv) || !ir_uses_var(a, k) ||
      !ir_uses_var(b, k))
    return;
  for (int i = n->rank - 2; i >= 0 && !mv; i--) {
    const IRVar *v = n->chain[i]->var;
    if (ir_uses_var(a, v) && !ir_uses_var(b, v))
      mv = v;
  }
  if (!mv)
    return;
  GpuHint *h = arena_alloc(S->c->arena, sizeof *h);
  *h = (GpuHint){S->f->gpu, n->chain[0]->var, mv, nv, k, n->acc,
                 is_var(a->idx[a->nidx - 1], k), is_var(b->idx[b->nidx - 1], k), false};
  S->f->gpu = h;
}

/* ---- pointwise ---- */

/* The innermost left-hand loop on threads, the others on blocks. */
static IRStmt *map_pointwise(Sched *S, const Nest *n, IRStmt *body) {
  IRStmt *s = body;
  for (int i = n->rank - 1; i >= 0; i--)
    s = with_kind(S->c, n->chain[i], i == n->rank - 1 ? FOR_GPU_THREAD : FOR_GPU_BLOCK, s);
  return s;
}

/* ---- register blocking ---- */

enum { JAM = 8 }; /* outputs a thread computes along the blocked loop */

typedef struct Jam {
  const IRVar *acc, *v;
  IRVar *accs[JAM];
  IRExpr *at[JAM];   /* v's value for copy r */
  IRExpr *ok[JAM];   /* copy r is in range */
  const IRExpr *fac; /* the factor over v (guarded per copy) */
} Jam;

static IRExpr *with_var(Ctx *c, IRExpr *e, const IRVar *v, IRExpr *to) {
  const IRVar *from[1] = {v};
  IRExpr *t[1] = {to};
  Subst s = {from, t, 1};
  return subst_expr(c, &s, e);
}

static IRStmt *with_var_stmt(Ctx *c, IRStmt *st, const IRVar *v, IRExpr *to) {
  const IRVar *from[1] = {v};
  IRExpr *t[1] = {to};
  Subst s = {from, t, 1};
  return subst_stmt(c, &s, st);
}

static IRExpr *repl_factor(Ctx *c, void *st, IRExpr *e) {
  const IRExpr **f = st; /* {factor, replacement} */
  if (e == f[0])
    return (IRExpr *)f[1];
  return ir_mutate_expr_children(c, e, repl_factor, st);
}

/* The update acc = acc + rhs, as JAM updates of the copies. */
static IRStmt *jam_update(Ctx *c, void *st, IRStmt *s) {
  Jam *J = st;
  if (s->kind != S_ASSIGN || s->var != J->acc)
    return ir_mutate_stmt_children(c, s, jam_update, NULL, st);
  IRStmt *ups[JAM];
  for (int r = 0; r < JAM; r++) {
    IRExpr *f = with_var(c, (IRExpr *)J->fac, J->v, J->at[r]);
    f = ir_select(c, J->ok[r], f, ir_cast(c, f->type, ir_int(c, TC_INT32, 0)));
    const IRExpr *pair[2] = {J->fac, f};
    IRExpr *rhs = repl_factor(c, pair, s->value->b);
    ups[r] = ir_assign(c, J->accs[r], ir_bin(c, (BinOp)s->value->op, ir_var(c, J->accs[r]), rhs));
  }
  return ir_block(c, ups, JAM);
}

/* The left-hand loop to block: not the thread loop, read by the factor
 * that does not read the thread loop's variable (the other factor, the
 * expensive per-thread load, is then loaded once for JAM outputs). */
static int jam_loop(const Nest *n, const IRExpr **fac) {
  const IRStmt *u = unwrap(n->red->body);
  while (u && u->kind == S_FOR)
    u = unwrap(u->body);
  if (!u || u->kind != S_ASSIGN || u->var != n->acc || u->value->op != OP_ADD)
    return -1;
  const IRExpr *p = strip_casts(u->value->b);
  if (!p || p->kind != IR_BIN || p->op != OP_MUL)
    return -1;
  const IRVar *t = n->chain[n->rank - 1]->var;
  for (int i = n->rank - 2; i >= 0; i--) {
    const IRVar *v = n->chain[i]->var;
    for (int side = 0; side < 2; side++) {
      const IRExpr *x = side ? p->b : p->a, *y = side ? p->a : p->b;
      if (ir_uses_var(x, v) && !ir_uses_var(y, v) && !ir_uses_var(x, t) &&
          ir_uses_var(y, t)) {
        *fac = x;
        return i;
      }
    }
  }
  return -1;
}

/* A reduction nest run pointwise, with JAM outputs per thread along one
 * left-hand loop (unroll and jam), or NULL when it does not apply. */
static IRStmt *map_jammed(Sched *S, const Nest *n, IRStmt *body) {
  Ctx *c = S->c;
  const IRExpr *fac = NULL;
  int vi = n->red && n->rank >= 2 ? jam_loop(n, &fac) : -1;
  if (vi < 0 || ir_uses_local(fac))
    return NULL;
  IRStmt *one;
  int len;
  IRStmt *const *l = list_of(&one, body, &len);
  if (len < 3 || l[0]->kind != S_DECL || l[0]->var != n->acc || l[1] != n->red ||
      ir_uses_local(l[0]->value) || ir_loads_buf(l[0]->value, NULL))
    return NULL;
  const IRStmt *L = n->chain[vi];
  Jam J = {n->acc, L->var, {0}, {0}, {0}, fac};
  IRVar *vo = ir_new_var(c, arena_printf(c->arena, "%s_o", L->var->name), VAR_LOOP, TC_INT64);
  IRExpr *end = ir_add(c, L->lo, L->extent);
  StmtList out = {0};
  for (int r = 0; r < JAM; r++) {
    J.accs[r] = ir_new_var(c, arena_printf(c->arena, "%s_%d", n->acc->name, r), VAR_LOCAL,
                           n->acc->type);
    J.at[r] = ir_add(c, L->lo, ir_add(c, ir_mul(c, ir_var(c, vo), ir_i64(c, JAM)), ir_i64(c, r)));
    J.ok[r] = ir_bin(c, OP_LT, J.at[r], end);
    vec_push(c->arena, &out, ir_decl(c, J.accs[r], l[0]->value));
  }
  vec_push(c->arena, &out, jam_update(c, &J, l[1]));
  for (int r = 0; r < JAM; r++) {
    IRStmt *rest = ir_block(c, (IRStmt **)l + 2, len - 2);
    const IRVar *from[2] = {L->var, n->acc};
    IRExpr *to[2] = {J.at[r], ir_var(c, J.accs[r])};
    Subst sub = {from, to, 2};
    vec_push(c->arena, &out, ir_if(c, J.ok[r], subst_stmt(c, &sub, rest), NULL));
  }
  IRStmt *s = ir_block(c, out.data, out.len);
  for (int i = n->rank - 1; i >= 0; i--) {
    ForKind k = i == n->rank - 1 ? FOR_GPU_THREAD : FOR_GPU_BLOCK;
    if (i == vi) {
      IRExpr *ext = ir_floordiv(c, ir_add(c, L->extent, ir_i64(c, JAM - 1)), ir_i64(c, JAM));
      s = ir_for(c, vo, ir_i64(c, 0), ext, k, s);
    } else {
      s = with_kind(c, n->chain[i], k, s);
    }
  }
  (void)with_var_stmt;
  return s;
}

/* ---- implicit GEMM: convolutions ---- */

/* n as an implicit GEMM, hinted for emit_cuda.c's conv kernel (which
 * re-checks the pattern after flatten and finds the loop sets): perfectly
 * nested reduction loops around acc = acc + A * B, some left-hand variable
 * read by A only and another by B only (n->contraction), the accumulator's
 * declaration and the loop first in the body.  A convolution's input reads
 * h + kh: the output position and the window are both GEMM dimensions. */
static void hint_conv(Sched *S, const Nest *n, IRStmt *body) {
  if (!n->contraction || n->rank < 2 || !n->red || !dtype_is_float(n->acc->type))
    return;
  const IRStmt *u = unwrap(n->red->body);
  while (u && u->kind == S_FOR)
    u = unwrap(u->body);
  if (!u || u->kind != S_ASSIGN || u->var != n->acc || u->value->op != OP_ADD ||
      !is_var(u->value->a, n->acc))
    return;
  const IRExpr *p = strip_casts(u->value->b);
  if (!p || p->kind != IR_BIN || p->op != OP_MUL || ir_uses_local(p))
    return;
  IRStmt *one;
  int len;
  IRStmt *const *l = list_of(&one, body, &len);
  if (len < 3 || l[0]->kind != S_DECL || l[0]->var != n->acc || l[1] != n->red)
    return;
  GpuHint *h = arena_alloc(S->c->arena, sizeof *h);
  *h = (GpuHint){S->f->gpu, n->chain[0]->var, NULL, NULL, n->red->var, n->acc, false, false, true};
  S->f->gpu = h;
}

/* ---- fusion: which nests may share loops ---- */

/* Loops i of two nests have the same bounds. */
static bool same_loop(const IRStmt *a, const IRStmt *b) {
  return ir_equal(a->lo, b->lo) && ir_equal(a->extent, b->extent);
}

/* Every access in the group to a buffer the group writes indexes its first
 * `level` dimensions with the nest's own first `level` loop variables. */
static bool fusable(Sched *S, Nest *const *g, int n, int level) {
  AccessList *acc = arena_alloc(S->c->arena, sizeof(AccessList) * (size_t)n);
  for (int k = 0; k < n; k++)
    accesses(S, g[k]->root, &acc[k]);
  for (int k = 0; k < n; k++) {
    for (int i = 0; i < acc[k].len; i++) {
      Buffer *w = acc[k].data[i].buf;
      bool written = false;
      for (int j = 0; j < n && !written; j++)
        written = g[j]->lhs == w;
      if (!written)
        continue;
      const Access *a = &acc[k].data[i];
      if (a->nidx < level || w->rank < level)
        return false;
      for (int d = 0; d < level; d++)
        if (!is_var(a->idx[d], g[k]->chain[d]->var))
          return false;
    }
  }
  return true;
}

/* n's body with its first `level` loop variables renamed to g0's. */
static IRStmt *renamed_body(Sched *S, const Nest *g0, const Nest *n, int level, IRStmt *s) {
  const IRVar **from = arena_alloc(S->c->arena, sizeof(IRVar *) * (size_t)(level + 1));
  IRExpr **to = arena_alloc(S->c->arena, sizeof(IRExpr *) * (size_t)(level + 1));
  for (int d = 0; d < level; d++) {
    from[d] = n->chain[d]->var;
    to[d] = ir_var(S->c, g0->chain[d]->var);
  }
  Subst sub = {from, to, level};
  return subst_stmt(S->c, &sub, s);
}

/* ---- forwarding and dead stores (within one statement list) ---- */

static bool loads_buf(const IRStmt *s, const Buffer *b) {
  if (!s)
    return false;
  for (int i = 0; i < s->nidx; i++)
    if (ir_loads_buf(s->idx[i], b))
      return true;
  if (ir_loads_buf(s->lo, b) || ir_loads_buf(s->extent, b) || ir_loads_buf(s->value, b) ||
      ir_loads_buf(s->cond, b))
    return true;
  for (int i = 0; i < s->n; i++)
    if (loads_buf(s->stmts[i], b))
      return true;
  return loads_buf(s->body, b) || loads_buf(s->then, b) || loads_buf(s->els, b);
}

/* A stored value that may replace later loads: no failure reports. */
static bool forwardable(const IRExpr *e) {
  if (!e)
    return true;
  if (e->kind == IR_FAIL)
    return false;
  for (int i = 0; i < e->nidx; i++)
    if (!forwardable(e->idx[i]))
      return false;
  for (int i = 0; i < e->nargs; i++)
    if (!forwardable(e->args[i]))
      return false;
  return forwardable(e->a) && forwardable(e->b) && forwardable(e->c);
}

typedef VEC(const IRVar *) CVarList;

static void locals_of(Sched *S, const IRExpr *e, CVarList *out) {
  if (!e)
    return;
  if (e->kind == IR_VAR && (e->var->kind == VAR_LOCAL || e->var->kind == VAR_LOOP))
    vec_push(S->c->arena, out, e->var);
  locals_of(S, e->a, out);
  locals_of(S, e->b, out);
  locals_of(S, e->c, out);
  for (int i = 0; i < e->nargs; i++)
    locals_of(S, e->args[i], out);
}

/* Forwards each store T[idx] = v of the list into later loads of T[idx],
 * while nothing changes what v reads (the locals, loop variables and
 * buffers in it) or T. */
static void forward_stores(Sched *S, IRStmt **l, int n) {
  for (int i = 0; i < n; i++) {
    IRStmt *st = l[i];
    if (st->kind != S_STORE || !forwardable(st->value) || ir_loads_buf(st->value, st->buf))
      continue;
    CVarList vars = {0};
    AccessList reads = {0};
    locals_of(S, st->value, &vars);
    for (int k = 0; k < st->nidx; k++)
      locals_of(S, st->idx[k], &vars);
    accesses_expr(S, st->value, &reads);
    for (int j = i + 1; j < n; j++) {
      LoadRepl r = {st->buf, st->idx, st->value, NULL, 0};
      l[j] = repl_stmt(S->c, &r, l[j]);
      bool stop = ir_stmt_stores(l[j], st->buf);
      for (int k = 0; k < vars.len && !stop; k++)
        stop = assigns_var(l[j], vars.data[k]);
      for (int k = 0; k < reads.len && !stop; k++)
        stop = ir_stmt_stores(l[j], reads.data[k].buf);
      if (stop)
        break;
    }
  }
}

/* Removes a store overwritten later in the list at the same index with no
 * read of its buffer in between.  Returns the new length. */
static int drop_overwritten(IRStmt **l, int n) {
  int out = 0;
  for (int i = 0; i < n; i++) {
    IRStmt *st = l[i];
    bool dead = false;
    if (st->kind == S_STORE) {
      for (int j = i + 1; j < n; j++) {
        if (l[j]->kind == S_STORE && l[j]->buf == st->buf &&
            same_idx(l[j]->idx, st->idx, st->nidx) && !ir_loads_buf(l[j]->value, st->buf)) {
          dead = true;
          break;
        }
        if (loads_buf(l[j], st->buf) || ir_stmt_stores(l[j], st->buf))
          break;
      }
    }
    if (!dead)
      l[out++] = st;
  }
  return out;
}

/* ---- element fusion ---- */

/* One nest running the bodies of g[0..n) at each point of g[0]'s loops. */
static IRStmt *fuse_elements(Sched *S, Nest *const *g, int n) {
  StmtList body = {0};
  for (int k = 0; k < n; k++) {
    IRStmt *b = k ? renamed_body(S, g[0], g[k], g[0]->rank, g[k]->body) : g[k]->body;
    IRStmt *one;
    int len;
    IRStmt *const *l = list_of(&one, b, &len);
    for (int i = 0; i < len; i++)
      vec_push(S->c->arena, &body, l[i]);
  }
  forward_stores(S, body.data, body.len);
  body.len = drop_overwritten(body.data, body.len);
  return ir_block(S->c, body.data, body.len);
}

/* ---- rows ---- */

/* Whether nest n can join a row group at `level`. */
static bool row_member(const Nest *n, int level) {
  if (n->rank == level)
    return true; /* a row reduction or a row scalar */
  return n->rank == level + 1 && !n->red && !n->contraction;
}

/* Temporaries written once, by a pointwise thread loop `for d { T[r, d] = v }`
 * with v free of loads of memory the rest of the group writes: recomputed
 * where read. */
static bool single_def(Sched *S, const Buffer *b) {
  AccessList acc = {0};
  accesses(S, S->f->body, &acc);
  int stores = 0;
  for (int i = 0; i < acc.len; i++)
    stores += acc.data[i].buf == b && acc.data[i].store;
  return stores == 1;
}

static void inline_temps(Sched *S, IRStmt **l, int n, const IRVar *row) {
  for (int i = 0; i < n; i++) {
    IRStmt *t = l[i];
    if (t->kind != S_FOR || t->fkind != FOR_GPU_THREAD)
      continue;
    IRStmt *st = unwrap(t->body);
    int64_t lo;
    if (!st || st->kind != S_STORE || st->nidx != 2 || !is_var(st->idx[0], row) ||
        !is_var(st->idx[1], t->var) || !ir_is_const(t->lo, &lo) || lo != 0)
      continue;
    Buffer *b = st->buf;
    if (!b->tensor || b->tensor->role != T_TEMP || b->tensor->zero_fill || !single_def(S, b))
      continue;
    /* the value may read locals: only those no later statement assigns */
    CVarList vars = {0};
    locals_of(S, st->value, &vars);
    bool ok = true;
    for (int k = 0; k < vars.len && ok; k++)
      ok = vars.data[k] == t->var || vars.data[k] == row ||
           vars.data[k]->kind == VAR_LOCAL;
    AccessList reads = {0};
    accesses_expr(S, st->value, &reads);
    for (int j = i + 1; j < n && ok; j++) {
      for (int k = 0; k < vars.len && ok; k++)
        ok = !assigns_var(l[j], vars.data[k]);
      for (int k = 0; k < reads.len && ok; k++)
        ok = !ir_stmt_stores(l[j], reads.data[k].buf);
    }
    if (!ok)
      continue;
    for (int j = i + 1; j < n; j++) {
      LoadRepl r = {b, NULL, st->value, t->var, 0};
      l[j] = repl_stmt(S->c, &r, l[j]);
    }
  }
}

/* The row kernel of group g (all rows of `level` loops): the row loops on
 * blocks, each statement's rest on threads. */
static IRStmt *map_rows(Sched *S, Nest *const *g, int n, int level) {
  Ctx *c = S->c;
  StmtList body = {0};
  for (int k = 0; k < n; k++) {
    const Nest *m = g[k];
    IRStmt *b;
    if (m->rank == level) {
      b = m->body;
      if (m->red) { /* the reduction loop on threads */
        IRStmt *one;
        int len;
        IRStmt *const *l = list_of(&one, b, &len);
        IRStmt **nl = arena_alloc(c->arena, sizeof(IRStmt *) * (size_t)(len + 1));
        for (int i = 0; i < len; i++)
          nl[i] = l[i] == m->red ? with_kind(c, m->red, FOR_GPU_THREAD, m->red->body) : l[i];
        b = ir_block(c, nl, len);
      }
    } else {
      b = with_kind(c, m->chain[level], FOR_GPU_THREAD, m->body);
    }
    b = k ? renamed_body(S, g[0], m, level, b) : b;
    IRStmt *one;
    int len;
    IRStmt *const *l = list_of(&one, b, &len);
    for (int i = 0; i < len; i++)
      vec_push(c->arena, &body, l[i]);
  }
  const IRVar *row = g[0]->chain[level - 1]->var;
  forward_stores(S, body.data, body.len);
  if (level == 1)
    inline_temps(S, body.data, body.len, row);
  forward_stores(S, body.data, body.len);
  body.len = drop_overwritten(body.data, body.len);
  IRStmt *s = ir_block(c, body.data, body.len);
  for (int d = level - 1; d >= 0; d--)
    s = with_kind(c, g[0]->chain[d], FOR_GPU_BLOCK, s);
  return s;
}

/* The extent along a row group's rows: the first statement's next loop. */
static IRExpr *row_extent(Nest *const *g, int n, int level) {
  for (int k = 0; k < n; k++) {
    if (g[k]->rank > level)
      return g[k]->chain[level]->extent;
    if (g[k]->red)
      return g[k]->red->extent;
  }
  return NULL;
}

/* ---- the top level ---- */

typedef struct Unit {
  IRStmt *s;
  bool is_nest;
  Nest nest;
} Unit;

/* The size of an expression, calls counted heavier. */
static int expr_cost(const IRExpr *e) {
  if (!e)
    return 0;
  int n = e->kind == IR_CALL ? 8 : 1;
  for (int i = 0; i < e->nidx; i++)
    n += expr_cost(e->idx[i]);
  for (int i = 0; i < e->nargs; i++)
    n += expr_cost(e->args[i]);
  return n + expr_cost(e->a) + expr_cost(e->b) + expr_cost(e->c);
}

/* Pointwise temporaries recomputed where they are read: a temporary
 * written once, at every point of its extent (loops from 0, no zero fill),
 * by a nest storing a small value that reads nothing written later, has
 * each load T(i, j..) replaced by that value at (i, j..); its nest goes
 * when nothing reads it any more.  (The blur's horizontal pass.) */
static void inline_temps_global(Sched *S, Unit *u, int len) {
  for (int i = 0; i < len; i++) {
    if (!u[i].is_nest || u[i].nest.red)
      continue;
    Nest *n = &u[i].nest;
    IRStmt *st = unwrap(n->body);
    Buffer *b = n->lhs;
    if (!st || st->kind != S_STORE || !b->tensor || b->tensor->role != T_TEMP ||
        b->tensor->zero_fill || st->nidx != n->rank || !single_def(S, b) ||
        expr_cost(st->value) > 160)
      continue;
    bool ok = true;
    for (int d = 0; d < n->rank && ok; d++) {
      int64_t lo;
      ok = is_var(st->idx[d], n->chain[d]->var) && ir_is_const(n->chain[d]->lo, &lo) && lo == 0;
    }
    CVarList vars = {0};
    locals_of(S, st->value, &vars);
    for (int k = 0; k < vars.len && ok; k++)
      ok = vars.data[k]->kind == VAR_LOOP;
    AccessList reads = {0};
    accesses_expr(S, st->value, &reads);
    for (int j = i + 1; j < len && ok; j++)
      for (int k = 0; k < reads.len && ok; k++)
        ok = !ir_stmt_stores(u[j].s, reads.data[k].buf);
    if (!ok)
      continue;
    const IRVar **from = arena_alloc(S->c->arena, sizeof(IRVar *) * (size_t)(n->rank + 1));
    for (int d = 0; d < n->rank; d++)
      from[d] = n->chain[d]->var;
    bool read_later = false;
    for (int j = i + 1; j < len; j++) {
      if (!loads_buf(u[j].s, b))
        continue;
      InlineRepl r = {b, st->value, from, n->rank};
      u[j].s = repl_all_stmt(S->c, &r, u[j].s);
      u[j].is_nest = u[j].s->kind == S_FOR && analyze_nest(u[j].s, &u[j].nest);
      read_later |= loads_buf(u[j].s, b);
    }
    if (!read_later) { /* nothing reads the temporary: its nest goes */
      u[i].s = ir_block(S->c, NULL, 0);
      u[i].is_nest = false;
    }
  }
}

static IRStmt *strip_stores(Ctx *c, void *st, IRStmt *s) {
  Buffer *b = st;
  if (s->kind == S_STORE && s->buf == b)
    return ir_block(c, NULL, 0);
  return ir_mutate_stmt_children(c, s, strip_stores, NULL, st);
}

/* s without its stores to temporaries that neither s nor `later` reads. */
static IRStmt *strip_dead_temps(Sched *S, IRStmt *s, const Unit *later, int nlater) {
  for (int i = 0; i < S->f->nbufs; i++) {
    Buffer *b = S->f->bufs[i];
    if (!b->tensor || b->tensor->role != T_TEMP || !ir_stmt_stores(s, b) || loads_buf(s, b))
      continue;
    bool read = false;
    for (int k = 0; k < nlater && !read; k++)
      read = loads_buf(later[k].s, b);
    if (!read)
      s = strip_stores(S->c, b, s);
  }
  return s;
}

/* Scalar statements: reduction loops on threads (one block runs them). */
static void map_scalars(Sched *S, IRStmt *const *l, int n, StmtList *out) {
  for (int i = 0; i < n; i++) {
    IRStmt *s = l[i];
    if (s->kind == S_FOR && s->fkind == FOR_SERIAL) {
      bool red = false;
      for (int j = 0; j < i && !red; j++) {
        int op = -1;
        red = l[j]->kind == S_DECL && reduction_of(s->body, l[j]->var, &op) && op >= 0;
      }
      if (red)
        s = with_kind(S->c, s, FOR_GPU_THREAD, s->body);
    }
    vec_push(S->c->arena, out, s);
  }
}

typedef enum { G_ELEM, G_ROWS } GroupMode;

/* Whether m (after g[0..ng)) joins the group; may switch it to rows. */
static bool joins(Sched *S, Nest **g, int ng, Nest *m, GroupMode *mode, int *level) {
  const Nest *n0 = g[0];
  int lv = *level;
  GroupMode md = *mode;
  if (md == G_ELEM && m->red && m->row_pref && m->rank == lv - 1)
    md = G_ROWS, lv = lv - 1; /* pointwise rows, then their reduction */
  if (md == G_ELEM && (m->rank != lv || (m->red && m->row_pref)))
    return false;
  if (lv < 1 || m->rank < lv)
    return false;
  for (int d = 0; d < lv; d++)
    if (!same_loop(m->chain[d], n0->chain[d]))
      return false;
  g[ng] = m;
  for (int k = 0; md == G_ROWS && k <= ng; k++)
    if (!row_member(g[k], lv))
      return false;
  if (!fusable(S, g, ng + 1, lv))
    return false;
  *mode = md;
  *level = lv;
  return true;
}

void schedule_gpu(Ctx *c, IRFunc *f) {
  Sched S = {c, f};
  IRStmt *one;
  int len;
  IRStmt *const *top = list_of(&one, f->body, &len);
  Unit *u = arena_alloc(c->arena, sizeof(Unit) * (size_t)(len + 1));
  for (int i = 0; i < len; i++) {
    u[i].s = top[i];
    u[i].is_nest = top[i]->kind == S_FOR && analyze_nest(top[i], &u[i].nest);
  }
  inline_temps_global(&S, u, len);
  StmtList out = {0}, scalars = {0};
  for (int i = 0; i < len;) {
    if (u[i].s->kind == S_BLOCK && u[i].s->n == 0) { /* an inlined nest */
      i++;
      continue;
    }
    if (!u[i].is_nest) {
      vec_push(c->arena, u[i].s->kind == S_CHECK && !scalars.len ? &out : &scalars, u[i].s);
      i++;
      continue;
    }
    if (scalars.len) {
      map_scalars(&S, scalars.data, scalars.len, &out);
      scalars.len = 0;
    }
    /* the group starting here; checks between its nests are hoisted */
    enum { MAXG = 64 };
    Nest *g[MAXG];
    int ng = 1, end = i + 1;
    g[0] = &u[i].nest;
    GroupMode mode = g[0]->red && g[0]->row_pref ? G_ROWS : G_ELEM;
    int level = g[0]->rank;
    if (mode == G_ROWS || g[0]->rank >= 1) {
      for (int j = i + 1; j < len && ng < MAXG; j++) {
        if (u[j].s->kind == S_CHECK || (u[j].s->kind == S_BLOCK && u[j].s->n == 0))
          continue;
        if (!u[j].is_nest || !joins(&S, g, ng, &u[j].nest, &mode, &level))
          break;
        ng++;
        end = j + 1;
      }
    }
    for (int j = i + 1; j < end; j++)
      if (u[j].s->kind == S_CHECK)
        vec_push(c->arena, &out, u[j].s);
    IRStmt *k;
    if (mode == G_ROWS) {
      IRStmt *r = strip_dead_temps(&S, map_rows(&S, g, ng, level), u + end, len - end);
      StmtList alt = {0};
      for (int m = 0; m < ng; m++)
        vec_push(c->arena, &alt, map_pointwise(&S, g[m], g[m]->body));
      IRExpr *cond = ir_bin(c, OP_GE, row_extent(g, ng, level), ir_i64(c, ROW_MIN));
      k = ir_if(c, cond, r, ir_block(c, alt.data, alt.len));
    } else {
      IRStmt *body = ng > 1 ? fuse_elements(&S, g, ng) : g[0]->body;
      GpuHint *before = f->gpu;
      hint_contraction(&S, g[0]);
      if (f->gpu == before)
        hint_conv(&S, g[0], body); /* not tiled: an implicit GEMM? */
      k = f->gpu == before ? map_jammed(&S, g[0], body) : NULL; /* neither: jammed? */
      if (!k)
        k = map_pointwise(&S, g[0], body);
      if (ng > 1)
        k = strip_dead_temps(&S, k, u + end, len - end);
    }
    vec_push(c->arena, &out, k);
    i = end;
  }
  if (scalars.len)
    map_scalars(&S, scalars.data, scalars.len, &out);
  f->body = ir_block(c, out.data, out.len);
}
