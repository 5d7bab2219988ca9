/*
 * tile.c — contractions as register tiles over packed panels.
 *
 * A contraction `C(.., i, .., j) +=! W(.., i, .., r..) * V(.., j, r..)`
 * lowers to one accumulator per output element and the reduction loops
 * innermost: every product reloads both operands, and V is read along r,
 * usually across rows.  This pass rewrites the nest the way BLAS kernels are
 * written (Goto's algorithm, BLIS's loop order), with nothing specific to
 * matrices: the operands may be any expressions (a boundary condition, a
 * transposed or strided view, a convolution window), the outer dimensions
 * any number:
 *
 *   parallel for g over (outer variables) x (blocks of i tiles)
 *                     x (blocks of NCT*NR j's):
 *     alloc P[NCT*NR*KLEN], Ap[MCH*MR*KLEN]           (once per task)
 *     for kb over blocks of the reduction:
 *       pack: P[jt][r][ji] = V(j = j0+jt*NR+ji, r)    (0 beyond j's range)
 *       for each chunk of up to MCH of the task's tiles of MR i's:
 *         pack: Ap[it][r][mi] = W(i = min(i0+mi, last i), r)
 *         for it over the chunk's tiles (inside the next loop for a box):
 *           for jt over the block's tiles of NR j's:
 *             alloc acc[MR*NR]                        (registers, in the end)
 *             acc = kb == 0 && C starts at 0 ? 0 : C
 *             for r in the block (one flat loop):
 *               for mi < MR (unrolled):
 *                 w = Ap[it][r][mi]
 *                 for ji < NR (vectorized): acc[mi][ji] = fma(w, P[jt][r][ji], acc[mi][ji])
 *             C = acc                                 (elements in range only)
 *
 * j is the innermost left-hand variable (unit stride in C in the usual
 * layout); V is the factor that reads j; i is the innermost left-hand
 * variable W reads and V does not; the other left-hand variables are outer.
 * MR x NR accumulators fill the vector registers (NR is two vectors, MR 8
 * with AVX-512's 32 registers, else 6; the C compiler keeps acc in
 * registers once the mi and ji loops are unrolled and vectorized); a block
 * of KC reduction steps keeps the panel P (NCT*NR*KC elements) and the
 * chunk's Ap in the L2 cache, and the i tile's slice of Ap in L1 while the
 * j tiles run over it (a box: the other way round).  Only the first
 * reduction variable is blocked; inner ones run whole.
 *
 * Parallel tasks: each takes NCT tiles of j (so each packed W row serves
 * NCT tiles) and one value of the outer variables that W reads.  The other
 * outer variables ("points", e.g. a convolution's image and row) come in
 * blocks of up to PB per task, W packed once for the block; fewer when that
 * would leave fewer than TASKS tasks.  Only when there are still fewer are
 * the i tiles split among tasks too (in blocks of at least MCR rows), since
 * each i block packs its V panel again.  V is packed per point (once per
 * block when there are no points).
 *
 * A convolution's V reads its input at `w + kw - 1`: a panel would hold each
 * input element once per kw.  When a reduction variable shares V's last
 * subscript with j, V is packed instead as the box of the tensor that the
 * block reads (in the tensor's layout, boundaries applied), with a table of
 * where each reduction step's row starts: the tile reads P[off[r] + ...].
 * When V's subscripts are also affine in the innermost point variable (the
 * output row h of `h + kh - 1`), a task's points are a run of consecutive
 * values of it, and one box, spanning the run, serves them all: each point
 * reads it at P[off[r] + poff + ...], poff its row's offset.
 *
 * An operand read along the reduction in its last dimension (B of A*B^T
 * as V, A of A*B as W) is packed across its rows: in full tiles in N x N
 * blocks (an N-float vector) that emit_c.c turns into in-register
 * transposes, the rest one element at a time (see "transposed packing").
 *
 * Tails need no
 * separate code: P is zero-padded past the last j, a partial i tile reads
 * the last row again for its missing rows, and the loads and stores of C
 * are guarded (masked in vector code).
 *
 * Arithmetic: each element still sums its products in the source's order
 * (the reduction blocks run in order, each starting from the partial sum
 * stored in C), but a product and its addition are one fused multiply-add
 * (docs/language.md): compiled results differ from the interpreter's by
 * rounding.
 *
 * A nest is tiled when it is a reduction `+=` of float32 or float64 into
 * two or more dimensions, its right-hand side is the product of two factors
 * that split as above, neither reads a local (an indirect subscript) or
 * checks its subscripts per element, and the ranges are rectangular.
 *
 * The constants below are the autoscheduler's; a schedule's `gemm`
 * (IRFunc.want, from sched.c) gives MR, NR, KC, NCT, MCH and the variable i
 * for its stage instead (an error at the directive when the nest does not
 * match), and stages with other directives are not tiled.  What was used is
 * recorded in IRFunc.did, for `tensorc explain`.
 *
 * Requires: lowered IR (multi-dim accesses) after inline and fuse; loops
 * serial.  Guarantees: tiled nests with loops marked parallel, unrolled and
 * vectorized (schedule.c leaves nests with marked loops alone); other nests
 * unchanged.  Invalidates nothing.
 */
#include "tc.h"

#include <math.h>
#include <string.h>

enum {
  MR = 6,    /* rows of a register tile (16 vector registers) */
  MR32 = 8,  /* with 32 vector registers (AVX-512) */
  KC = 256,  /* reduction steps (all reduction variables) per block */
  NCT = 16,  /* tiles of NR per packed panel of V (a task's j block) */
  MCR = 512, /* rows of i per task at least, when tasks split i */
  TASKS = 16, /* parallel tasks wanted (the pool makes chunks of them) */
  MCH = 48,  /* tiles of MR whose packed W a task keeps at once (L2) */
};

/* The widest vector the C compiler uses with -march=native, in bytes. */
int tile_host_vector_bytes(void) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  if (__builtin_cpu_supports("avx512f"))
    return 64;
  if (__builtin_cpu_supports("avx"))
    return 32;
#endif
  return 16;
}

/* ---- recognizing a contraction ---- */

typedef struct Con {
  IRStmt *lhs[TC_MAX_RANK]; /* left-hand loops, outermost first */
  int p;
  IRStmt *red[TC_MAX_RANK * 4]; /* reduction loops, outermost first */
  int q;
  IRVar *acc;
  bool zero_init;            /* the accumulator starts at 0 (else at C) */
  Buffer *C;
  IRExpr *V, *W;             /* the factor reading j, the other */
  int jpos, ipos;            /* in lhs[] */
  tc_dtype t;
} Con;

static IRStmt *only(IRStmt *s) {
  while (s && s->kind == S_BLOCK && s->n == 1)
    s = s->stmts[0];
  return s;
}

/* Whether e (a bound) depends on a loop of k's nest. */
static bool uses_loops(const Con *k, const IRExpr *e) {
  for (int i = 0; i < k->p; i++)
    if (ir_uses_var(e, k->lhs[i]->var))
      return true;
  for (int i = 0; i < k->q; i++)
    if (ir_uses_var(e, k->red[i]->var))
      return true;
  return false;
}

static bool match(IRStmt *s, Con *k) {
  memset(k, 0, sizeof *k);
  s = only(s);
  while (s && s->kind == S_FOR && k->p < TC_MAX_RANK) {
    k->lhs[k->p++] = s;
    s = only(s->body);
  }
  if (k->p < 2 || !s || s->kind != S_BLOCK || s->n != 3)
    return false;
  IRStmt *decl = s->stmts[0], *red = only(s->stmts[1]), *st = s->stmts[2];
  if (decl->kind != S_DECL || st->kind != S_STORE || red->kind != S_FOR)
    return false;
  k->acc = decl->var;
  k->t = k->acc->type;
  k->C = st->buf;
  if ((k->t != TC_FLOAT32 && k->t != TC_FLOAT64) || k->C->dtype != k->t || k->C->local ||
      st->nidx != k->p || st->value->kind != IR_VAR || st->value->var != k->acc)
    return false;
  for (int d = 0; d < k->p; d++)
    if (st->idx[d]->kind != IR_VAR || st->idx[d]->var != k->lhs[d]->var)
      return false;
  const IRExpr *init = decl->value;
  if (init->kind == IR_FLOAT && init->fval == 0 && !signbit(init->fval)) {
    k->zero_init = true;
  } else {
    if (init->kind != IR_LOAD || init->buf != k->C || init->nidx != k->p)
      return false;
    for (int d = 0; d < k->p; d++)
      if (init->idx[d]->kind != IR_VAR || init->idx[d]->var != k->lhs[d]->var)
        return false;
  }
  while (red && red->kind == S_FOR && k->q < (int)(sizeof k->red / sizeof k->red[0])) {
    k->red[k->q++] = red;
    red = only(red->body);
  }
  if (!red || red->kind != S_ASSIGN || red->var != k->acc)
    return false;
  const IRExpr *v = red->value;
  if (v->kind != IR_BIN || v->op != OP_ADD || v->a->kind != IR_VAR || v->a->var != k->acc)
    return false;
  const IRExpr *prod = v->b;
  if (prod->kind != IR_BIN || prod->op != OP_MUL || prod->type != k->t)
    return false;
  for (int i = 0; i < k->p; i++)
    if (uses_loops(k, k->lhs[i]->lo) || uses_loops(k, k->lhs[i]->extent))
      return false;
  for (int i = 0; i < k->q; i++)
    if (uses_loops(k, k->red[i]->lo) || uses_loops(k, k->red[i]->extent))
      return false;
  IRVar *j = k->lhs[k->p - 1]->var;
  k->jpos = k->p - 1;
  bool aj = ir_uses_var(prod->a, j), bj = ir_uses_var(prod->b, j);
  if (aj == bj)
    return false;
  k->V = aj ? prod->a : prod->b;
  k->W = aj ? prod->b : prod->a;
  if (ir_has_fail(k->V) || ir_has_fail(k->W) || ir_uses_local(k->V) || ir_uses_local(k->W) ||
      ir_uses_var(k->V, k->acc) || ir_uses_var(k->W, k->acc))
    return false;
  k->ipos = -1;
  for (int d = k->p - 2; d >= 0 && k->ipos < 0; d--)
    if (ir_uses_var(k->W, k->lhs[d]->var) && !ir_uses_var(k->V, k->lhs[d]->var))
      k->ipos = d;
  return k->ipos >= 0;
}

/* ---- building the tiled nest ---- */

typedef struct Tile {
  Ctx *c;
  IRFunc *f;
  Con *k;
  int mr;             /* MR: rows of a register tile */
  int nr;             /* NR: elements per tile row (two vectors) */
  Loc loc;
  int kc, nct, mch;   /* KC, NCT, MCH or a schedule's (TileParams) */
  int vbytes;         /* the widest vector, in bytes */
} Tile;

static IRVar *fresh(Tile *T, const char *prefix, VarKind kind) {
  return ir_new_var(T->c, arena_printf(T->c->arena, "%s%d", prefix, T->f->nvars++), kind,
                    TC_INT64);
}

static IRExpr *i64(Tile *T, int64_t v) { return ir_i64(T->c, v); }
static IRExpr *var(Tile *T, IRVar *v) { return ir_var(T->c, v); }
static IRExpr *add(Tile *T, IRExpr *a, IRExpr *b) { return ir_add(T->c, a, b); }
static IRExpr *sub(Tile *T, IRExpr *a, IRExpr *b) { return ir_sub(T->c, a, b); }
static IRExpr *mul(Tile *T, IRExpr *a, IRExpr *b) { return ir_mul(T->c, a, b); }
static IRExpr *div_(Tile *T, IRExpr *a, IRExpr *b) { return ir_floordiv(T->c, a, b); }
static IRExpr *min_(Tile *T, IRExpr *a, IRExpr *b) { return ir_min(T->c, a, b); }
static IRExpr *max_(Tile *T, IRExpr *a, IRExpr *b) { return ir_max(T->c, a, b); }
static IRExpr *lt(Tile *T, IRExpr *a, IRExpr *b) { return ir_bin(T->c, OP_LT, a, b); }
static IRExpr *and_(Tile *T, IRExpr *a, IRExpr *b) { return ir_bin(T->c, OP_AND, a, b); }

/* ceil(a / b) for b > 0, of a clamped at 0 */
static IRExpr *ceil_div(Tile *T, IRExpr *a, int64_t b) {
  return div_(T, add(T, max_(T, a, i64(T, 0)), i64(T, b - 1)), i64(T, b));
}

static IRStmt *loop(Tile *T, IRVar *v, IRExpr *lo, IRExpr *extent, ForKind k, IRStmt *body) {
  IRStmt *s = ir_for(T->c, v, simplify_expr(T->c, lo), simplify_expr(T->c, extent), k, body);
  s->loc = T->loc;
  return s;
}

static IRStmt *block(Tile *T, IRStmt **s, int n) { return ir_block(T->c, s, n); }

static IRStmt *decl(Tile *T, IRVar *v, IRExpr *e) {
  return ir_decl(T->c, v, simplify_expr(T->c, e));
}

/* Substitution of variables by expressions. */
typedef struct Subst {
  IRVar *from[TC_MAX_RANK * 5];
  IRExpr *to[TC_MAX_RANK * 5];
  int n;
} Subst;

static void bind(Subst *S, IRVar *v, IRExpr *e) {
  S->from[S->n] = v;
  S->to[S->n++] = e;
}

static IRExpr *subst_expr(Ctx *c, void *st, IRExpr *e) {
  Subst *S = st;
  if (e->kind == IR_VAR)
    for (int i = 0; i < S->n; i++)
      if (S->from[i] == e->var)
        return S->to[i];
  return ir_mutate_expr_children(c, e, subst_expr, st);
}

static IRExpr *subst(Tile *T, Subst *S, IRExpr *e) { return subst_expr(T->c, S, e); }

static Buffer *local_buffer(Tile *T, tc_dtype t) {
  Buffer *b = arena_alloc(T->c->arena, sizeof *b);
  b->name = arena_printf(T->c->arena, "lb%d", T->f->nvars++);
  b->slot = -1;
  b->dtype = t;
  b->rank = 1;
  b->local = true;
  return b;
}

static IRStmt *alloc(Tile *T, Buffer *b, IRExpr *extent, IRStmt *body) {
  FailSite fs = {FAIL_NOMEM, T->loc, NULL, 0, false};
  vec_push(T->c->arena, &T->f->sites, fs);
  IRStmt *s = ir_alloc(T->c, b, simplify_expr(T->c, extent), T->f->sites.len - 1, body);
  s->loc = T->loc;
  return s;
}

static IRExpr *lload(Tile *T, Buffer *b, IRExpr *idx) {
  idx = simplify_expr(T->c, idx);
  return ir_load(T->c, b, &idx, 1);
}

static IRStmt *lstore(Tile *T, Buffer *b, IRExpr *idx, IRExpr *v) {
  idx = simplify_expr(T->c, idx);
  return ir_store(T->c, b, &idx, 1, v);
}

typedef VEC(IRStmt *) StmtList;

static IRVar *local(Tile *T) {
  return ir_new_var(T->c, arena_printf(T->c->arena, "q%d", T->f->nvars++), VAR_LOCAL, TC_INT64);
}

/* e in a local declared in `out`; its use. */
static IRExpr *named(Tile *T, StmtList *out, IRExpr *e) {
  e = simplify_expr(T->c, e);
  int64_t k;
  if (ir_is_const(e, &k) || e->kind == IR_VAR)
    return e;
  IRVar *v = local(T);
  vec_push(T->c->arena, out, ir_decl(T->c, v, e));
  return ir_var(T->c, v);
}

/* The flat position of reduction point (r1..rq) in a block starting at r1
 * = r1_0: ((r1 - r1_0) * e2 + (r2 - lo2)) * e3 + ... */
static IRExpr *rflat(Tile *T, IRVar **r, IRExpr *r1_0) {
  Con *k = T->k;
  IRExpr *e = sub(T, var(T, r[0]), r1_0);
  for (int i = 1; i < k->q; i++)
    e = add(T, mul(T, e, k->red[i]->extent), sub(T, var(T, r[i]), k->red[i]->lo));
  return e;
}

/* Whether V's accesses index j in their last dimension (j is then the
 * packing loop to vectorize), else a reduction variable (the inner one). */
static bool v_reads_along_j(const IRExpr *e, const IRVar *j) {
  if (!e)
    return false;
  if (e->kind == IR_LOAD && e->nidx > 0 && ir_uses_var(e->idx[e->nidx - 1], j))
    return true;
  for (int i = 0; i < e->nidx; i++)
    if (v_reads_along_j(e->idx[i], j))
      return true;
  for (int i = 0; i < e->nargs; i++)
    if (v_reads_along_j(e->args[i], j))
      return true;
  return v_reads_along_j(e->a, j) || v_reads_along_j(e->b, j) || v_reads_along_j(e->c, j);
}

/* ---- transposed packing ----
 * A factor that reads the reduction variable in its last dimension (B of
 * A*B^T for V, A of A*B for W) is packed across its rows: element (x, r)
 * goes to panel position r*width + x.  Copied one element at a time that is
 * a strided store per element; where the tile is full (no zero padding, no
 * repeated row) it is copied instead in N x N blocks, which emit_c.c turns
 * into in-register transposes (N vector loads, shuffles, N vector stores)
 * when the factor's last stride is 1 at run time. */

/* N for blocks of a row of `width` (NR or MR): a power of two dividing it,
 * N elements filling a 32- or 64-byte vector the machine has, the widest;
 * 0 if none. */
static int tblock(Tile *T, int width) {
  int size = dtype_info[T->k->t].size;
  for (int bytes = T->vbytes >= 64 ? 64 : 32; bytes >= 32 && bytes <= T->vbytes; bytes /= 2) {
    int n = bytes / size;
    if (n >= 4 && width % n == 0)
      return n;
  }
  return 0;
}

/* Whether factor e is a load of a tensor of the contraction's type whose
 * last subscript reads the (only) reduction variable and not `x`. */
static bool reads_across(Tile *T, const IRExpr *e, const IRVar *x) {
  Con *k = T->k;
  return k->q == 1 && e->kind == IR_LOAD && !e->buf->local && e->type == k->t &&
         e->buf->dtype == k->t && e->nidx > 0 && ir_uses_var(e->idx[e->nidx - 1], k->red[0]->var) &&
         !ir_uses_var(e->idx[e->nidx - 1], x);
}

/* The N x N blocks of a full tile: for rb < len/N, xb < width/N, a < N, b < N:
 *   dst[base + (rb*N + b)*width + xb*N + a] = e(x = x0 + xb*N + a, r = r1_0 + rb*N + b)
 * The caller copies the steps from r1_0 + (len/N)*N on one at a time. */
static IRStmt *pack_blocks(Tile *T, Buffer *dst, IRExpr *base, Subst *outer, IRVar *xv,
                           IRExpr *x0, int width, int n, const IRExpr *e, IRExpr *r1_0,
                           IRExpr *len) {
  Con *k = T->k;
  IRVar *rb = fresh(T, "t", VAR_LOOP), *xb = fresh(T, "t", VAR_LOOP);
  IRVar *a = fresh(T, "t", VAR_LOOP), *b = fresh(T, "t", VAR_LOOP);
  Subst S = *outer;
  IRExpr *rr = add(T, mul(T, var(T, rb), i64(T, n)), var(T, b));
  bind(&S, xv, add(T, add(T, x0, mul(T, var(T, xb), i64(T, n))), var(T, a)));
  bind(&S, k->red[0]->var, add(T, r1_0, rr));
  IRExpr *at = add(T, add(T, base, mul(T, rr, i64(T, width))),
                   add(T, mul(T, var(T, xb), i64(T, n)), var(T, a)));
  IRStmt *blk = loop(T, a, i64(T, 0), i64(T, n), FOR_UNROLLED,
                     loop(T, b, i64(T, 0), i64(T, n), FOR_UNROLLED,
                          lstore(T, dst, at, subst(T, &S, (IRExpr *)e))));
  return loop(T, rb, i64(T, 0), div_(T, max_(T, len, i64(T, 0)), i64(T, n)), FOR_SERIAL,
              loop(T, xb, i64(T, 0), i64(T, width / n), FOR_SERIAL, blk));
}

/* Where the one-at-a-time copy of a tile starts in the reduction: after the
 * whole blocks of a full tile, else at r1_0. */
static IRExpr *rest_from(Tile *T, IRExpr *full, IRExpr *r1_0, IRExpr *len, int n) {
  IRExpr *whole = mul(T, div_(T, max_(T, len, i64(T, 0)), i64(T, n)), i64(T, n));
  return add(T, r1_0, ir_select(T->c, full, whole, i64(T, 0)));
}

/* The packing of a block: P[(jt*KLEN + rflat)*NR + ji] = V, 0 past j's end. */
static IRStmt *pack(Tile *T, Buffer *P, Subst *outer, IRExpr *j0, IRExpr *ntj, IRExpr *klen,
                    IRExpr *r1_0, IRExpr *kb_len) {
  Con *k = T->k;
  IRVar *jt = fresh(T, "t", VAR_LOOP), *ji = fresh(T, "t", VAR_LOOP);
  IRVar *r[TC_MAX_RANK * 4];
  Subst S = *outer;
  for (int i = 0; i < k->q; i++) {
    r[i] = fresh(T, "t", VAR_LOOP);
    bind(&S, k->red[i]->var, var(T, r[i]));
  }
  IRExpr *j = add(T, add(T, j0, mul(T, var(T, jt), i64(T, T->nr))), var(T, ji));
  IRExpr *jend = add(T, k->lhs[k->jpos]->lo, k->lhs[k->jpos]->extent);
  bind(&S, k->lhs[k->jpos]->var, j);
  IRExpr *value = ir_select(T->c, lt(T, j, jend), subst(T, &S, k->V), ir_float(T->c, k->t, 0));
  IRExpr *at = add(T, mul(T, add(T, mul(T, var(T, jt), klen), rflat(T, r, r1_0)), i64(T, T->nr)),
                   var(T, ji));
  IRStmt *body = lstore(T, P, at, value);
  bool along_j = v_reads_along_j(k->V, k->lhs[k->jpos]->var);
  if (along_j) { /* V's rows read in order: r outside, the j tiles inside */
    body = schedule_vector_loop(T->c, T->f, loop(T, ji, i64(T, 0), i64(T, T->nr), FOR_SERIAL, body));
    body = loop(T, jt, i64(T, 0), ntj, FOR_SERIAL, body);
  } else { /* along r, inside */
    for (int i = k->q - 1; i >= 0; i--) {
      IRExpr *lo = i ? k->red[i]->lo : r1_0, *ext = i ? k->red[i]->extent : kb_len;
      body = loop(T, r[i], lo, ext, FOR_SERIAL, body);
    }
    body = loop(T, ji, i64(T, 0), i64(T, T->nr), FOR_SERIAL, body);
    int n = tblock(T, T->nr);
    IRVar *jv = k->lhs[k->jpos]->var;
    if (n && reads_across(T, k->V, jv)) { /* full tiles in blocks, then the rest */
      IRExpr *jt0 = add(T, j0, mul(T, var(T, jt), i64(T, T->nr)));
      IRExpr *full = simplify_expr(T->c, lt(T, add(T, jt0, i64(T, T->nr - 1)), jend));
      IRStmt *fast = pack_blocks(T, P, mul(T, mul(T, var(T, jt), klen), i64(T, T->nr)), outer, jv,
                                 jt0, T->nr, n, k->V, r1_0, kb_len);
      IRExpr *from = rest_from(T, full, r1_0, kb_len, n);
      body->body->lo = simplify_expr(T->c, from); /* the loop over r */
      body->body->extent = simplify_expr(T->c, sub(T, add(T, r1_0, kb_len), from));
      IRStmt *both[2] = {ir_if(T->c, full, fast, NULL), body};
      body = block(T, both, 2);
    }
    return loop(T, jt, i64(T, 0), ntj, FOR_SERIAL, body);
  }
  for (int i = k->q - 1; i >= 0; i--) {
    IRExpr *lo = i ? k->red[i]->lo : r1_0, *ext = i ? k->red[i]->extent : kb_len;
    body = loop(T, r[i], lo, ext, FOR_SERIAL, body);
  }
  return body;
}

/* ---- box packing ---- */

/* When V reads a tensor X at subscripts where j and a reduction variable
 * share the last dimension (a convolution's `w + kw - 1`), the panel would
 * hold each element of X once per value of that variable.  Instead the task
 * packs the region (box) of X the block reads, once, in X's dimension order
 * (boundary conditions applied, positions outside X zero), and an offset
 * table gives where each reduction step's row starts: V(j0+jt*NR+ji, r) =
 * P[off[rflat(r)] + jt*NR + ji]. */
typedef struct Box {
  Buffer *X;
  int rank;
  IRExpr *sub[TC_MAX_RANK];                  /* V's subscripts */
  int64_t coef[TC_MAX_RANK][TC_MAX_RANK * 4]; /* of each reduction variable */
  IRExpr *inside, *outside; /* V at position pos[] inside X, outside it */
  IRVar *hvar;    /* a point variable the box spans (rows), or NULL */
  int64_t hcoef[TC_MAX_RANK];                /* its coefficients */
  IRVar *pos[TC_MAX_RANK];
} Box;

static bool affine(const IRExpr *e, const IRVar *v) {
  if (!ir_uses_var(e, v) || e->kind == IR_VAR)
    return true;
  if (e->kind == IR_CAST)
    return dtype_is_int(e->type) && dtype_is_int(e->a->type) && affine(e->a, v);
  if (e->kind == IR_UN)
    return e->op == OP_NEG && affine(e->a, v);
  if (e->kind != IR_BIN)
    return false;
  if (e->op == OP_ADD || e->op == OP_SUB)
    return affine(e->a, v) && affine(e->b, v);
  if (e->op == OP_MUL)
    return (!ir_uses_var(e->a, v) && affine(e->b, v)) || (!ir_uses_var(e->b, v) && affine(e->a, v));
  return false;
}

/* The constant coefficient of v in the int64 expression e, when e is
 * affine in v with one. */
static bool coefficient(Tile *T, IRExpr *e, IRVar *v, int64_t *coef) {
  if (e->type != TC_INT64 || !affine(e, v))
    return false;
  Subst s0 = {0}, s1 = {0};
  bind(&s0, v, i64(T, 0));
  bind(&s1, v, i64(T, 1));
  return ir_is_const(simplify_expr(T->c, sub(T, subst(T, &s1, e), subst(T, &s0, e))), coef);
}

/* Whether e is `s >= 0` or `s < n` with s a subscript of load x. */
static bool is_range_test(const IRExpr *e, const IRExpr *x) {
  int64_t k;
  if (e->kind != IR_BIN || (e->op != OP_GE && e->op != OP_LT))
    return false;
  if (e->op == OP_GE && !(ir_is_const(e->b, &k) && k == 0))
    return false;
  for (int d = 0; d < x->nidx; d++)
    if (ir_equal(e->a, x->idx[d]))
      return true;
  return false;
}

static bool range_tests(const IRExpr *e, const IRExpr *x) {
  if (e->kind == IR_BIN && e->op == OP_AND)
    return range_tests(e->a, x) && range_tests(e->b, x);
  return is_range_test(e, x);
}

/* v's casts around `core`: V's value when its load (or select) is core. */
static IRExpr *rewrap(Ctx *c, const IRExpr *v, IRExpr *core) {
  return v->kind == IR_CAST ? ir_cast(c, v->type, rewrap(c, v->a, core)) : core;
}

/* V's value at tensor position pos, in two parts: `inside` (the load at
 * pos) and `outside` (the select's constant, or 0), casts kept.  The box
 * holds inside where pos is inside X, else outside. */
static void box_value(Tile *T, Box *B, const IRExpr *v) {
  Ctx *c = T->c;
  const IRExpr *core = v;
  while (core->kind == IR_CAST)
    core = core->a;
  const IRExpr *x = core->kind == IR_SELECT ? core->b : core;
  IRExpr *other = core->kind == IR_SELECT ? core->c
                  : dtype_is_float(x->type) ? ir_float(c, x->type, 0)
                                             : ir_int(c, x->type, 0);
  IRExpr *idx[TC_MAX_RANK];
  for (int d = 0; d < B->rank; d++)
    idx[d] = ir_var(c, B->pos[d]);
  B->inside = rewrap(c, v, ir_load(c, B->X, idx, B->rank));
  B->outside = rewrap(c, v, other);
}

/* Whether V packs as a box: see above. */
static bool box_of(Tile *T, Box *B) {
  Con *k = T->k;
  memset(B, 0, sizeof *B);
  const IRExpr *v = k->V;
  while (v->kind == IR_CAST)
    v = v->a;
  const IRExpr *x = v;
  if (v->kind == IR_SELECT) {
    x = v->b;
    if ((v->c->kind != IR_FLOAT && v->c->kind != IR_INT) || x->kind != IR_LOAD ||
        !range_tests(v->a, x))
      return false;
  }
  if (x->kind != IR_LOAD || x->buf->local || x->nidx < 1)
    return false;
  B->X = x->buf;
  B->rank = x->nidx;
  IRVar *j = k->lhs[k->jpos]->var;
  bool shared = false; /* a reduction variable with j in the last dimension */
  for (int d = 0; d < B->rank; d++) {
    B->sub[d] = x->idx[d];
    int64_t cj;
    if (!coefficient(T, B->sub[d], j, &cj) || cj != (d == B->rank - 1))
      return false;
    for (int q = 0; q < k->q; q++) {
      if (!coefficient(T, B->sub[d], k->red[q]->var, &B->coef[d][q]))
        return false;
      shared |= d == B->rank - 1 && B->coef[d][q] != 0;
    }
    for (int i = 0; i < k->p; i++) /* i, and outer variables are fixed per task */
      if (i == k->ipos && ir_uses_var(B->sub[d], k->lhs[i]->var))
        return false;
    B->pos[d] = fresh(T, "p", VAR_LOOP);
  }
  if (!shared)
    return false;
  box_value(T, B, k->V);
  return true;
}

/* Whether the box may span the point variable h (a convolution's output
 * row), so that one box serves a run of consecutive points: V's subscripts
 * affine in h with constant coefficients, none in the last dimension. */
static bool box_rows(Tile *T, Box *B, IRVar *h) {
  for (int d = 0; d < B->rank; d++)
    if (!coefficient(T, B->sub[d], h, &B->hcoef[d]))
      return false;
  if (B->hcoef[B->rank - 1] != 0)
    return false;
  B->hvar = h;
  return true;
}

/* The extent of box dimension d when r1 runs over `len1` steps and j over
 * `jspan`: 1 + sum |coef| * (extent - 1), j's span in the last. */
static IRExpr *box_extent(Tile *T, Box *B, int d, IRExpr *len1, IRExpr *jspan, IRExpr *hlen) {
  Con *k = T->k;
  IRExpr *e = i64(T, 1);
  if (B->hvar && B->hcoef[d]) {
    int64_t a = B->hcoef[d] < 0 ? -B->hcoef[d] : B->hcoef[d];
    e = add(T, e, mul(T, i64(T, a), sub(T, max_(T, hlen, i64(T, 1)), i64(T, 1))));
  }
  for (int q = 0; q < k->q; q++) {
    int64_t a = B->coef[d][q] < 0 ? -B->coef[d][q] : B->coef[d][q];
    IRExpr *ext = q ? max_(T, k->red[q]->extent, i64(T, 1)) : max_(T, len1, i64(T, 1));
    e = add(T, e, mul(T, i64(T, a), sub(T, ext, i64(T, 1))));
  }
  if (d == B->rank - 1)
    e = add(T, e, sub(T, jspan, i64(T, 1)));
  return e;
}

/* The box's first position in dimension d: the subscript at j = j0 and
 * each reduction variable at the end of its range that minimizes it. */
static IRExpr *box_lo(Tile *T, Box *B, Subst *outer, int d, IRExpr *j0, IRExpr *r1_0,
                      IRExpr *kb_len, IRExpr *h0, IRExpr *hlast) {
  Con *k = T->k;
  Subst S = *outer;
  bind(&S, k->lhs[k->jpos]->var, j0);
  if (B->hvar)
    bind(&S, B->hvar, B->hcoef[d] >= 0 ? h0 : hlast);
  for (int q = 0; q < k->q; q++) {
    IRExpr *lo = q ? k->red[q]->lo : r1_0;
    IRExpr *ext = q ? k->red[q]->extent : kb_len;
    bind(&S, k->red[q]->var, B->coef[d][q] >= 0 ? lo : add(T, lo, sub(T, ext, i64(T, 1))));
  }
  return simplify_expr(T->c, subst(T, &S, B->sub[d]));
}

/* Packs the box and its offset table for a block: the box's extents,
 * strides and offsets, which do not depend on the points, into `blk` (once
 * per block), its origin and the fill into `out` (per point, or per run of
 * points when the box spans h: h0..hlast, hlen of them). */
static void pack_box(Tile *T, Box *B, StmtList *blk, StmtList *out, Buffer *P, Buffer *off,
                     Subst *outer, IRExpr *j0, IRExpr *ntj, IRExpr *r1_0, IRExpr *kb_len,
                     IRExpr *h0, IRExpr *hlast, IRExpr *hlen, IRVar **st_out) {
  Con *k = T->k;
  Ctx *c = T->c;
  IRVar *lo[TC_MAX_RANK], *ex[TC_MAX_RANK], *st[TC_MAX_RANK];
  IRExpr *jspan = mul(T, ntj, i64(T, T->nr));
  for (int d = 0; d < B->rank; d++) {
    lo[d] = local(T);
    ex[d] = local(T);
    vec_push(c->arena, out, decl(T, lo[d], box_lo(T, B, outer, d, j0, r1_0, kb_len, h0, hlast)));
    vec_push(c->arena, blk, decl(T, ex[d], box_extent(T, B, d, kb_len, jspan, hlen)));
  }
  for (int d = B->rank - 1; d >= 0; d--) {
    st[d] = local(T);
    IRExpr *v = d == B->rank - 1 ? i64(T, 1) : mul(T, var(T, st[d + 1]), var(T, ex[d + 1]));
    vec_push(c->arena, blk, decl(T, st[d], v));
    st_out[d] = st[d];
  }
  /* the box: P[sum b_d * st_d] = V at position lo + b.  Along the last
   * dimension X's range is [a, e) of the box's [0, ex): the rows inside X in
   * the other dimensions copy it, the rest is the outside value */
  IRVar *b[TC_MAX_RANK];
  Subst S = *outer;
  IRExpr *at = i64(T, 0), *in_rest = NULL;
  int last = B->rank - 1;
  for (int d = 0; d < B->rank; d++) {
    b[d] = fresh(T, "t", VAR_LOOP);
    IRExpr *p = add(T, var(T, lo[d]), var(T, b[d]));
    bind(&S, B->pos[d], p);
    at = add(T, at, mul(T, var(T, b[d]), var(T, st[d])));
    if (d < last) {
      IRExpr *t = and_(T, ir_bin(c, OP_GE, p, i64(T, 0)), lt(T, p, ir_var(c, B->X->shape[d])));
      in_rest = in_rest ? and_(T, in_rest, t) : t;
    }
  }
  IRVar *ea = local(T), *ee = local(T);
  IRExpr *exl = var(T, ex[last]);
  vec_push(c->arena, out,
           decl(T, ea, min_(T, max_(T, sub(T, i64(T, 0), var(T, lo[last])), i64(T, 0)), exl)));
  vec_push(c->arena, out,
           decl(T, ee, max_(T, min_(T, sub(T, ir_var(c, B->X->shape[last]), var(T, lo[last])), exl),
                            var(T, ea))));
  IRStmt *put_in = lstore(T, P, at, subst(T, &S, B->inside));
  IRStmt *put_out = lstore(T, P, at, subst(T, &S, B->outside));
  IRVar *bl = b[last];
  IRStmt *row[3] = {
      loop(T, bl, i64(T, 0), var(T, ea), FOR_SERIAL, put_out),
      schedule_vector_loop(c, T->f, loop(T, bl, var(T, ea), sub(T, var(T, ee), var(T, ea)),
                                         FOR_SERIAL, put_in)),
      loop(T, bl, var(T, ee), sub(T, exl, var(T, ee)), FOR_SERIAL, put_out)};
  IRStmt *fill = block(T, row, 3);
  if (in_rest)
    fill = ir_if(c, simplify_expr(c, in_rest), fill,
                 schedule_vector_loop(c, T->f, loop(T, bl, i64(T, 0), exl, FOR_SERIAL, put_out)));
  for (int d = last - 1; d >= 0; d--)
    fill = loop(T, b[d], i64(T, 0), var(T, ex[d]), FOR_SERIAL, fill);
  vec_push(c->arena, out, fill);
  /* the offsets: off[rflat(r)] = sum (sub_d(j0, r) - lo_d) * st_d, where
   * sub_d - lo_d = sum_q coef_dq * (r_q - the end of r_q's range that
   * box_lo chose): the same for every point */
  IRVar *r[TC_MAX_RANK * 4];
  for (int q = 0; q < k->q; q++)
    r[q] = fresh(T, "t", VAR_LOOP);
  IRExpr *o = i64(T, 0);
  for (int d = 0; d < B->rank; d++) {
    IRExpr *rel = i64(T, 0);
    for (int q = 0; q < k->q; q++) {
      if (!B->coef[d][q])
        continue;
      IRExpr *l = q ? k->red[q]->lo : r1_0, *e = q ? k->red[q]->extent : kb_len;
      IRExpr *end = B->coef[d][q] > 0 ? l : add(T, l, sub(T, e, i64(T, 1)));
      rel = add(T, rel, mul(T, i64(T, B->coef[d][q]), sub(T, var(T, r[q]), end)));
    }
    o = add(T, o, mul(T, rel, var(T, st[d])));
  }
  IRStmt *offs = lstore(T, off, rflat(T, r, r1_0), o);
  for (int q = k->q - 1; q >= 0; q--) {
    IRExpr *l = q ? k->red[q]->lo : r1_0, *e = q ? k->red[q]->extent : kb_len;
    offs = loop(T, r[q], l, e, FOR_SERIAL, offs);
  }
  vec_push(c->arena, blk, offs);
}

/* The packing of W for the i tile at i0: Ap[rflat*MR + mi] = W(i =
 * min(i0+mi, last i), r) (a partial tile repeats the last row). */
static IRStmt *pack_w(Tile *T, Buffer *Ap, IRExpr *aoff, Subst *outer, IRExpr *i0,
                      IRExpr *r1_0, IRExpr *kb_len) {
  Con *k = T->k;
  IRVar *mi = fresh(T, "t", VAR_LOOP);
  IRVar *r[TC_MAX_RANK * 4];
  Subst S = *outer;
  for (int q = 0; q < k->q; q++) {
    r[q] = fresh(T, "t", VAR_LOOP);
    bind(&S, k->red[q]->var, var(T, r[q]));
  }
  IRExpr *iend = add(T, k->lhs[k->ipos]->lo, k->lhs[k->ipos]->extent);
  bind(&S, k->lhs[k->ipos]->var, min_(T, add(T, i0, var(T, mi)), sub(T, iend, i64(T, 1))));
  IRExpr *at = add(T, add(T, aoff, mul(T, rflat(T, r, r1_0), i64(T, T->mr))), var(T, mi));
  /* the MR rows side by side: Ap is written in order */
  IRStmt *body = loop(T, mi, i64(T, 0), i64(T, T->mr), FOR_UNROLLED,
                      lstore(T, Ap, at, subst(T, &S, k->W)));
  for (int q = k->q - 1; q >= 0; q--) {
    IRExpr *lo = q ? k->red[q]->lo : r1_0, *ext = q ? k->red[q]->extent : kb_len;
    body = loop(T, r[q], lo, ext, FOR_SERIAL, body);
  }
  IRVar *iv = k->lhs[k->ipos]->var;
  int n = tblock(T, T->mr);
  if (n && reads_across(T, k->W, iv)) { /* a full tile in blocks */
    IRExpr *full = simplify_expr(T->c, lt(T, add(T, i0, i64(T, T->mr - 1)), iend));
    IRStmt *fast = pack_blocks(T, Ap, aoff, outer, iv, i0, T->mr, n, k->W, r1_0, kb_len);
    IRExpr *from = rest_from(T, full, r1_0, kb_len, n);
    body->lo = simplify_expr(T->c, from); /* the loop over r */
    body->extent = simplify_expr(T->c, sub(T, add(T, r1_0, kb_len), from));
    IRStmt *both[2] = {ir_if(T->c, full, fast, NULL), body};
    body = block(T, both, 2);
  }
  return body;
}

/* One MR x NR tile at (i0, jj0): accumulate the block's `len` (flat)
 * reduction steps from the packed panels, store to C. */
static IRStmt *tile_kernel(Tile *T, Buffer *P, Buffer *Ap, IRExpr *aoff, Subst *outer,
                           IRExpr *i0, IRExpr *jj0, IRVar *jt, IRExpr *klen, IRExpr *len,
                           IRVar *kb, Buffer *off, IRExpr *poff) {
  Con *k = T->k;
  Ctx *c = T->c;
  Buffer *A = local_buffer(T, k->t);
  IRVar *i = k->lhs[k->ipos]->var, *j = k->lhs[k->jpos]->var;
  IRExpr *iend = add(T, k->lhs[k->ipos]->lo, k->lhs[k->ipos]->extent);
  IRExpr *jend = add(T, k->lhs[k->jpos]->lo, k->lhs[k->jpos]->extent);
  int nr = T->nr;

  /* C's element (mi, ji), and whether it exists */
  IRVar *mi = fresh(T, "t", VAR_LOOP), *ji = fresh(T, "t", VAR_LOOP);
  Subst SC = *outer;
  IRExpr *ii = add(T, i0, var(T, mi)), *jj = add(T, jj0, var(T, ji));
  bind(&SC, i, ii);
  bind(&SC, j, jj);
  IRExpr *cidx[TC_MAX_RANK];
  for (int d = 0; d < k->p; d++)
    cidx[d] = simplify_expr(c, subst(T, &SC, ir_var(c, k->lhs[d]->var)));
  IRExpr *inside = and_(T, lt(T, ii, iend), lt(T, jj, jend));
  if (k->zero_init) /* the first block starts from 0 */
    inside = and_(T, ir_bin(c, OP_NE, var(T, kb), i64(T, 0)), inside);
  IRExpr *aidx = add(T, mul(T, var(T, mi), i64(T, nr)), var(T, ji));
  IRExpr *cval = ir_select(c, inside, ir_load(c, k->C, cidx, k->p), ir_float(c, k->t, 0));
  IRStmt *init = loop(T, mi, i64(T, 0), i64(T, T->mr), FOR_UNROLLED,
                      loop(T, ji, i64(T, 0), i64(T, nr), FOR_VECTORIZED, lstore(T, A, aidx, cval)));

  /* the reduction: acc[mi][ji] = fma(Ap[rr][mi], P[jt][rr][ji], acc[mi][ji]) */
  IRVar *rr = fresh(T, "t", VAR_LOOP), *mk = fresh(T, "t", VAR_LOOP), *jk = fresh(T, "t", VAR_LOOP);
  IRVar *w = ir_new_var(c, arena_printf(c->arena, "w%d", T->f->nvars++), VAR_LOCAL, k->t);
  IRExpr *pidx = off /* a box: row rr starts at off[rr] */
                     ? add(T, add(T, add(T, lload(T, off, var(T, rr)), poff),
                                     mul(T, var(T, jt), i64(T, nr))),
                           var(T, jk))
                     : add(T, mul(T, add(T, mul(T, var(T, jt), klen), var(T, rr)), i64(T, nr)),
                           var(T, jk));
  IRExpr *a3 = add(T, mul(T, var(T, mk), i64(T, nr)), var(T, jk));
  IRExpr *args[3] = {ir_var(c, w), lload(T, P, pidx), lload(T, A, a3)};
  IRStmt *upd = lstore(T, A, a3, ir_call(c, k->t, BI_fma, args, 3));
  IRExpr *wval = lload(T, Ap, add(T, add(T, aoff, mul(T, var(T, rr), i64(T, T->mr))), var(T, mk)));
  IRStmt *row[2] = {ir_decl(c, w, wval), loop(T, jk, i64(T, 0), i64(T, nr), FOR_VECTORIZED, upd)};
  IRStmt *red = loop(T, rr, i64(T, 0), len, FOR_SERIAL,
                     loop(T, mk, i64(T, 0), i64(T, T->mr), FOR_UNROLLED, block(T, row, 2)));

  /* C = acc, where C exists */
  IRVar *ms = fresh(T, "t", VAR_LOOP), *js = fresh(T, "t", VAR_LOOP);
  Subst SS = *outer;
  IRExpr *is = add(T, i0, var(T, ms)), *jss = add(T, jj0, var(T, js));
  bind(&SS, i, is);
  bind(&SS, j, jss);
  IRExpr *sidx[TC_MAX_RANK];
  for (int d = 0; d < k->p; d++)
    sidx[d] = simplify_expr(c, subst(T, &SS, ir_var(c, k->lhs[d]->var)));
  IRExpr *a4 = add(T, mul(T, var(T, ms), i64(T, nr)), var(T, js));
  IRStmt *put = ir_if(c, and_(T, lt(T, is, iend), lt(T, jss, jend)),
                      ir_store(c, k->C, sidx, k->p, lload(T, A, a4)), NULL);
  IRStmt *store = loop(T, ms, i64(T, 0), i64(T, T->mr), FOR_UNROLLED,
                       loop(T, js, i64(T, 0), i64(T, nr), FOR_VECTORIZED, put));
  IRStmt *parts[3] = {init, red, store};
  return alloc(T, A, i64(T, T->mr * nr), block(T, parts, 3));
}


/* Declares locals for the variables lhs[d] (d in `dims`, innermost last)
 * from a flat index `flat` of their ranges (the innermost fastest), and
 * binds them in S. */
static void decode(Tile *T, StmtList *out, Subst *S, const int *dims, int n, IRExpr *flat) {
  Con *k = T->k;
  IRExpr *div = i64(T, 1);
  for (int x = n - 1; x >= 0; x--) {
    IRStmt *l = k->lhs[dims[x]];
    IRVar *o = local(T);
    IRExpr *ext = max_(T, l->extent, i64(T, 1));
    IRExpr *v = add(T, l->lo, ir_bin(T->c, OP_MOD, div_(T, flat, div), ext));
    vec_push(T->c->arena, out, decl(T, o, v));
    div = mul(T, div, ext);
    bind(S, l->var, var(T, o));
  }
}

/* The whole tiled nest.  The outer variables split into those W reads
 * (each task has one value of them) and the others, the "points": a task
 * takes a block of up to PB points and packs W once for all of them. */
enum { PB = 16 };

static IRStmt *build(Tile *T) {
  Con *k = T->k;
  Ctx *c = T->c;
  int nr = T->nr;
  IRStmt *li = k->lhs[k->ipos], *lj = k->lhs[k->jpos];

  /* sizes, all run-time int64 expressions */
  IRExpr *ntiles_j = ceil_div(T, lj->extent, nr);
  IRExpr *njc = ceil_div(T, ntiles_j, T->nct);
  IRExpr *rin = i64(T, 1);
  for (int q = 1; q < k->q; q++)
    rin = mul(T, rin, max_(T, k->red[q]->extent, i64(T, 0)));
  IRExpr *kcb = max_(T, i64(T, 1), div_(T, i64(T, T->kc), rin)); /* r1 steps per block */
  IRExpr *klen = mul(T, kcb, rin);                            /* reduction steps per block */
  IRExpr *r1ext = max_(T, k->red[0]->extent, i64(T, 0));
  IRExpr *nkb = max_(T, i64(T, 1), div_(T, add(T, r1ext, sub(T, kcb, i64(T, 1))), kcb));
  IRExpr *nti = ceil_div(T, li->extent, T->mr);

  /* outer variables: W's (`wd`) and the points (`pd`) */
  int wd[TC_MAX_RANK], pd[TC_MAX_RANK], nw = 0, np = 0;
  IRExpr *nwv = i64(T, 1), *npts = i64(T, 1);
  for (int d = 0; d < k->p; d++) {
    if (d == k->ipos || d == k->jpos)
      continue;
    IRExpr *ext = max_(T, k->lhs[d]->extent, i64(T, 0));
    if (ir_uses_var(k->W, k->lhs[d]->var)) {
      wd[nw++] = d;
      nwv = mul(T, nwv, ext);
    } else {
      pd[np++] = d;
      npts = mul(T, npts, ext);
    }
  }
  /* a box that spans the innermost point variable serves a run of points
   * along it: point blocks are then runs along it */
  Box B;
  bool boxed = box_of(T, &B);
  bool runs = boxed && np > 0 && box_rows(T, &B, k->lhs[pd[np - 1]]->var);
  IRStmt *lh = np > 0 ? k->lhs[pd[np - 1]] : NULL;
  IRExpr *exth = lh ? max_(T, lh->extent, i64(T, 0)) : NULL;
  /* points per task: PB, fewer when that leaves under TASKS tasks; then
   * the i tiles split into blocks of at least MCR rows while there are fewer
   * (each block packs V again: only as many as needed) */
  IRExpr *base = mul(T, njc, nwv);
  IRExpr *pb = max_(T, i64(T, 1), min_(T, i64(T, PB), div_(T, mul(T, npts, base), i64(T, TASKS))));
  IRExpr *nhb = runs ? div_(T, add(T, exth, sub(T, pb, i64(T, 1))), pb) : NULL;
  if (runs) /* runs of equal length */
    pb = max_(T, i64(T, 1), div_(T, add(T, exth, sub(T, nhb, i64(T, 1))), max_(T, nhb, i64(T, 1))));
  IRExpr *npb = runs ? mul(T, div_(T, npts, max_(T, exth, i64(T, 1))), nhb)
                     : div_(T, add(T, npts, sub(T, pb, i64(T, 1))), pb);
  IRExpr *want = div_(T, add(T, i64(T, TASKS - 1), mul(T, base, max_(T, npb, i64(T, 1)))),
                      mul(T, base, max_(T, npb, i64(T, 1))));
  IRExpr *nic = max_(T, i64(T, 1), min_(T, ceil_div(T, nti, MCR / T->mr), want));
  IRExpr *tpt = div_(T, add(T, max_(T, nti, i64(T, 0)), sub(T, nic, i64(T, 1))), nic); /* i tiles per task */

  /* the parallel loop over (W's variables, point blocks, i blocks, j blocks) */
  IRVar *g = fresh(T, "g", VAR_LOOP);
  IRExpr *ntask = mul(T, mul(T, mul(T, njc, nic), npb), nwv);
  IRExpr *apsize = mul(T, i64(T, T->mr), klen), *psize = mul(T, i64(T, T->nct * nr), klen);
  apsize = mul(T, apsize, max_(T, min_(T, tpt, i64(T, T->mch)), i64(T, 1)));
  if (boxed) { /* the largest box: a full block, a full j block, PB points */
    psize = i64(T, 1);
    for (int d = 0; d < B.rank; d++)
      psize = mul(T, psize, box_extent(T, &B, d, kcb, i64(T, T->nct * nr), i64(T, PB)));
  }
  IRExpr *offsize = klen;
  /* inside a task the sizes are locals: computed once, not in the loops */
  StmtList top = {0};
  ntiles_j = named(T, &top, ntiles_j);
  njc = named(T, &top, njc);
  rin = named(T, &top, rin);
  kcb = named(T, &top, kcb);
  klen = named(T, &top, klen);
  r1ext = named(T, &top, r1ext);
  nkb = named(T, &top, nkb);
  nti = named(T, &top, nti);
  npts = named(T, &top, npts);
  pb = named(T, &top, pb);
  npb = named(T, &top, npb);
  if (runs)
    nhb = named(T, &top, nhb);
  nic = named(T, &top, nic);
  tpt = named(T, &top, tpt);
  Subst outer = {0};
  IRVar *jc = local(T), *ic = local(T), *pbi = local(T);
  IRExpr *nic1 = max_(T, nic, i64(T, 1)), *npb1 = max_(T, npb, i64(T, 1));
  vec_push(c->arena, &top, decl(T, jc, ir_bin(c, OP_MOD, var(T, g), njc)));
  vec_push(c->arena, &top, decl(T, ic, ir_bin(c, OP_MOD, div_(T, var(T, g), njc), nic1)));
  vec_push(c->arena, &top,
           decl(T, pbi, ir_bin(c, OP_MOD, div_(T, var(T, g), mul(T, njc, nic1)), npb1)));
  decode(T, &top, &outer, wd, nw, div_(T, var(T, g), mul(T, mul(T, njc, nic1), npb1)));
  IRExpr *h0 = NULL, *hn = NULL, *hlast = NULL;
  if (runs) { /* the block: the other point variables, a run of h */
    IRExpr *nhb1 = max_(T, nhb, i64(T, 1));
    decode(T, &top, &outer, pd, np - 1, div_(T, var(T, pbi), nhb1));
    IRExpr *hb = mul(T, ir_bin(c, OP_MOD, var(T, pbi), nhb1), pb);
    h0 = named(T, &top, add(T, lh->lo, hb));
    hn = named(T, &top, min_(T, pb, sub(T, exth, hb)));
    hlast = named(T, &top, sub(T, add(T, h0, hn), i64(T, 1)));
  }
  IRVar *j0 = local(T), *ntj = local(T);
  vec_push(c->arena, &top, decl(T, j0, add(T, lj->lo, mul(T, var(T, jc), i64(T, T->nct * nr)))));
  vec_push(c->arena, &top,
           decl(T, ntj, min_(T, i64(T, T->nct),
                             sub(T, ntiles_j, mul(T, var(T, jc), i64(T, T->nct))))));

  /* per reduction block: pack W (all i tiles when there are points), then
   * per point pack V and run the tiles */
  Buffer *P = local_buffer(T, k->t), *Ap = local_buffer(T, k->t);
  IRVar *kb = fresh(T, "t", VAR_LOOP);
  IRVar *r10 = local(T), *kbl = local(T);
  IRExpr *r1_0 = var(T, r10), *kb_len = var(T, kbl);
  IRVar *it = fresh(T, "t", VAR_LOOP), *jt = fresh(T, "t", VAR_LOOP);
  IRExpr *i0 = add(T, li->lo, mul(T, var(T, it), i64(T, T->mr)));
  IRExpr *jj0 = add(T, var(T, j0), mul(T, var(T, jt), i64(T, nr)));
  IRExpr *len = mul(T, kb_len, rin); /* flat reduction steps of this block */
  /* the task's i tiles, in chunks of up to MCH whose packed W stays in L2 */
  IRExpr *it0 = named(T, &top, mul(T, var(T, ic), tpt));
  IRExpr *nit = named(T, &top, min_(T, tpt, sub(T, nti, it0)));
  IRExpr *nch = named(T, &top, ceil_div(T, nit, T->mch));
  IRVar *ch = fresh(T, "t", VAR_LOOP), *ci0v = local(T), *cnv = local(T);
  IRExpr *ci0 = var(T, ci0v), *cn = var(T, cnv);
  IRExpr *aoff = mul(T, sub(T, var(T, it), ci0), mul(T, i64(T, T->mr), klen));
  IRVar *pt = fresh(T, "t", VAR_LOOP);
  Subst inner = outer;
  StmtList per_pt = {0}, blk = {0}, chunk = {0};
  if (runs)
    bind(&inner, lh->var, var(T, pt));
  else
    decode(T, &per_pt, &inner, pd, np, var(T, pt));
  Buffer *off = boxed ? local_buffer(T, TC_INT64) : NULL;
  /* V is packed per point, per run of points, or once per block when there
   * are no points */
  StmtList *vdst = runs ? &chunk : np > 0 ? &per_pt : &blk;
  vec_push(c->arena, &blk, decl(T, r10, add(T, k->red[0]->lo, mul(T, var(T, kb), kcb))));
  vec_push(c->arena, &blk, decl(T, kbl, min_(T, kcb, sub(T, r1ext, mul(T, var(T, kb), kcb)))));
  vec_push(c->arena, &chunk, decl(T, ci0v, add(T, it0, mul(T, var(T, ch), i64(T, T->mch)))));
  vec_push(c->arena, &chunk,
           decl(T, cnv, min_(T, i64(T, T->mch), sub(T, nit, mul(T, var(T, ch), i64(T, T->mch))))));
  /* W for the chunk's i tiles, before the points */
  vec_push(c->arena, &chunk,
           loop(T, it, ci0, cn, FOR_SERIAL, pack_w(T, Ap, aoff, &outer, i0, r1_0, kb_len)));
  IRExpr *poff = i64(T, 0); /* where the point's rows start in the box */
  if (boxed) {
    IRVar *st[TC_MAX_RANK];
    pack_box(T, &B, &blk, vdst, P, off, runs ? &outer : &inner, var(T, j0), var(T, ntj), r1_0,
             kb_len, h0, hlast, hn, st);
    for (int d = 0; runs && d < B.rank; d++)
      if (B.hcoef[d])
        poff = add(T, poff, mul(T, mul(T, i64(T, B.hcoef[d]),
                                       sub(T, var(T, pt), B.hcoef[d] > 0 ? h0 : hlast)),
                                var(T, st[d])));
    poff = named(T, &per_pt, poff);
  } else {
    vec_push(c->arena, vdst, pack(T, P, &inner, var(T, j0), var(T, ntj), klen, r1_0, kb_len));
  }
  /* i tiles outside, j tiles inside: the i tile's W rows stay in L1 while
   * the panels of P stream from L2 (measured faster than the other order
   * for matrix products); a box, small and read at shifted offsets, is read
   * once per j tile with the i tiles inside */
  IRStmt *kernel = tile_kernel(T, P, Ap, aoff, &inner, i0, jj0, jt, klen, len, kb, off, poff);
  IRStmt *tiles = boxed ? loop(T, jt, i64(T, 0), var(T, ntj), FOR_SERIAL,
                               loop(T, it, ci0, cn, FOR_SERIAL, kernel))
                        : loop(T, it, ci0, cn, FOR_SERIAL,
                               loop(T, jt, i64(T, 0), var(T, ntj), FOR_SERIAL, kernel));
  vec_push(c->arena, &per_pt, tiles);
  IRExpr *p0 = runs ? h0 : mul(T, var(T, pbi), pb);
  IRExpr *pn = runs ? hn : min_(T, pb, sub(T, npts, p0));
  vec_push(c->arena, &chunk, loop(T, pt, p0, pn, FOR_SERIAL, block(T, per_pt.data, per_pt.len)));
  vec_push(c->arena, &blk, loop(T, ch, i64(T, 0), nch, FOR_SERIAL, block(T, chunk.data, chunk.len)));
  vec_push(c->arena, &top, loop(T, kb, i64(T, 0), nkb, FOR_SERIAL, block(T, blk.data, blk.len)));
  IRStmt *body = alloc(T, Ap, apsize, block(T, top.data, top.len));
  if (boxed)
    body = alloc(T, off, offsize, body);
  body = alloc(T, P, psize, body);
  return loop(T, g, i64(T, 0), ntask, FOR_PARALLEL, body);
}

/* The schedule's `gemm` for nest s, or NULL. */
static const StageHint *wanted(const IRFunc *f, const IRStmt *s) {
  int si = f->want && s->kind == S_FOR ? sched_stage_of_loop(s->var) : -1;
  if (si < 0 || si >= f->def->nstmts || !f->want[si].tile.mr)
    return NULL;
  return &f->want[si];
}

/* The rows of the tiles along p->i instead of tile.c's choice: any
 * left-hand variable but j that W reads and V does not. */
static void rows_along(Ctx *c, Con *k, const StageHint *h) {
  if (!h->tile.i)
    return;
  for (int d = 0; d < k->p; d++)
    if (k->lhs[d]->var == h->tile.i) {
      if (d == k->jpos || !ir_uses_var(k->W, h->tile.i) || ir_uses_var(k->V, h->tile.i))
        break;
      k->ipos = d;
      return;
    }
  error_at(c, h->tile_loc, "gemm: '%s' cannot be the rows of the tiles: that needs a left-hand "
           "loop other than the innermost one that the factor not reading the innermost one "
           "reads and the other factor does not", strchr(h->tile.i->name, '_') + 1);
}

void tile_func(Ctx *c, IRFunc *f, int vector_bytes) {
  if (!f->body || f->body->kind != S_BLOCK)
    return;
  bool changed = false;
  IRStmt **items = arena_alloc(c->arena, sizeof(IRStmt *) * (size_t)(f->body->n + 1));
  for (int i = 0; i < f->body->n; i++) {
    IRStmt *s = items[i] = f->body->stmts[i];
    if (s->kind != S_FOR || s->var->user)
      continue;
    const StageHint *h = wanted(f, s);
    int si = sched_stage_of_loop(s->var);
    if (!h && f->want && si >= 0 && si < f->def->nstmts && f->want[si].directed)
      continue; /* a stage with directives is tiled only by `gemm` */
    Con k;
    if (!match(s, &k)) {
      if (h)
        error_at(c, h->tile_loc, "gemm: this stage is not a contraction that tile.c tiles: a "
                 "`+=` into two or more dimensions of float32 or float64 products of two "
                 "factors, one reading the innermost left-hand index and one not, over "
                 "rectangular ranges");
      continue;
    }
    int lanes = vector_bytes / dtype_info[k.t].size;
    /* 2*MR accumulators, two vectors of V and a broadcast in registers */
    Tile T = {c, f, &k, vector_bytes >= 64 ? MR32 : MR, 2 * (lanes > 1 ? lanes : 1), s->loc,
              KC, NCT, MCH, vector_bytes};
    if (h) {
      rows_along(c, &k, h);
      T.mr = h->tile.mr;
      T.nr = h->tile.nr;
      T.kc = h->tile.kc;
      T.nct = h->tile.nct;
      T.mch = h->tile.mch;
    }
    if (si >= 0 && si < f->def->nstmts) {
      TileParams used = {T.mr, T.nr, T.kc, T.nct, T.mch, k.lhs[k.ipos]->var};
      sched_did(c, f)[si].tile = used;
    }
    items[i] = build(&T);
    changed = true;
  }
  for (int si = 0; f->want && si < f->def->nstmts; si++)
    if (f->want[si].tile.mr && !(f->did && f->did[si].tile.mr))
      error_at(c, f->want[si].tile_loc, "gemm: this stage's loop nest is not there to tile (a "
               "loop of extent one was folded away)");
  if (!changed)
    return;
  IRStmt *b = ir_block(c, items, f->body->n);
  b->loc = f->body->loc;
  f->body = b;
}
