/*
 * sched.c — the user's schedule: Halide's directives on the stages of a def.
 *
 * A schedule block names stages by the tensor their statement writes (`O`,
 * `O.update(0)` for the next statement writing O) and loops by the index
 * names of that statement and the names split/tile give (docs/language.md,
 * "Schedules").  Each stage is a list of loops, outermost first; the
 * directives rewrite the list in order:
 *
 *   split(v, o, i, f)    v becomes o (ceil(extent/f) iterations) around i
 *                        (f iterations, the last one shrunk to what is
 *                        left); v = lo + o*f + i in the body
 *   tile(x, y, xo, yo, xi, yi, fx, fy)
 *                        split x and y, then order yo, xo, yi, xi (outer first)
 *   reorder(a, b, ...)   the named loops take the places they occupy, a
 *                        innermost (Halide's order)
 *   vectorize(v[, w])    v (or the inner w iterations of it, `v_vi`) is a
 *                        vector loop; it must end up innermost
 *   unroll(v[, f])       v (or the inner f iterations of it, `v_ui`) unrolled
 *   parallel(v)          v runs on the thread pool
 *   fuse(i, o, f)        o directly around i become f (extent(o)*extent(i)
 *                        iterations; o = f / extent(i), i = f % extent(i))
 *   inline()             a pointwise temporary computed where it is read
 *   compute_root()       the stage as its own nest (TC's order), serial
 *                        unless other directives say otherwise
 *   compute_at(C, v)     the region of this temporary that one iteration of
 *                        C's loop v reads, computed at the start of that
 *                        iteration into a local buffer
 *
 * Three directives steer the autoscheduler's passes instead of rebuilding
 * the nest here (the stage keeps the autoscheduler, `directing`):
 *
 *   compute_with(H, v)   the nest joins H's outer loop v (fuse.c)
 *   store_at(H, v)       the temporary held per iteration of H's outer loop
 *                        v, in a local buffer (fold.c)
 *   gemm(i, j, k, mr, nr, kc, nc, mc)
 *                        the contraction as mr x nr register tiles over
 *                        packed panels, blocks of kc steps, panels of nc
 *                        columns, mc rows packed at once (tile.c)
 *
 * sched_func passes them on in IRFunc.want; for the stages with directives
 * of any kind, those passes then do only what the directives say.
 * Tails: a split's inner loop runs min(f, rest) iterations where its outer
 * loop encloses it; where it does not (a reorder put it outside), or where
 * it is unrolled, it runs f iterations with the body under `if` (a guard).
 *
 * Reductions: a statement `O(i) += e(i, k)` lowers to an accumulator per
 * element (left-hand loops outside, reduction loops inside).  An order that
 * puts a reduction loop outside a left-hand loop accumulates in memory
 * instead: O is initialised first (for `+=!`), then every iteration updates
 * O(i) in place, in the same order per element as the interpreter.  Not
 * possible (an error) for float16/bfloat16 (their accumulators are float32)
 * nor when the statement reads its own left-hand side.
 *
 * Legality, checked before any code exists (sched_check_def, from sema):
 * names (stage, loop, new loop names), argument kinds, positive factors,
 * parallel only on left-hand loops (reduction iterations would race),
 * vectorize only innermost and, on a reduction loop, only over an
 * accumulator of a 32/64-bit type, inline only of pointwise temporaries,
 * compute_at only of a temporary with one statement whose readers all run
 * inside the compute loop (the consumer, or stages computed inside it).
 * What needs the lowered code (the constant extent of an unrolled loop, a
 * loop folded away) is checked when the schedule is applied (sched_func):
 * every failure is a located error at the directive, never other code.
 *
 * sched_func requires the IR of lower_def (one top-level nest per statement,
 * loop variables x<stmt>_<name>, zero-fills f<stmt>_<d>) and runs before the
 * autoscheduler's passes; it guarantees that the stages with directives are
 * nests as written, their loop variables marked IRVar.user: inline.c,
 * fuse.c, fold.c and tile.c leave those nests alone (and inline nothing into
 * them); schedule.c, at such a nest's turn, only makes its vector loops
 * (sched_vectorize: the autoscheduler's hoisting and partitioning, so that a
 * pasted-back schedule gives its kernel byte for byte).  Invalidates nothing.
 * The loops it makes are named s<k>_<name>, local buffers lb<k>, region
 * bounds cr<k>, buffer fills cz<k>.
 *
 * The file ends with sched_print, the schedule in use as text for `tensorc
 * explain`: the user's directives, and what the autoscheduler did: its
 * fusions, foldings and tiles from IRFunc.did (as compute_with, store_at,
 * gemm), the rest read back from the final IR (loop kinds of the x<stmt>_
 * loops, nests that are gone, loops of other names).
 */
#include "tc.h"

#include <stdlib.h>
#include <string.h>

typedef struct Loop {
  const char *name;   /* the user's name */
  bool red;           /* derived from a reduction variable */
  ForKind kind;
  Loc kind_loc;       /* the directive that set kind */
  IRVar *var;         /* apply: */
  IRExpr *lo;         /* loop-invariant */
  IRExpr *extent;     /* may use the variables of the stage's other loops */
  IRExpr *bound;      /* a loop-invariant upper bound of extent */
} Loop;

typedef VEC(Loop *) LoopVec;

typedef struct Subst {
  IRVar *var;
  IRExpr *with;
} Subst;

typedef struct Stage {
  Stmt *s;
  int si;
  VEC(Directive *) dirs;  /* its directives in order */
  bool loopdirs;          /* some split/tile/reorder/vectorize/unroll/parallel */
  Directive *compute;     /* inline/compute_root/compute_at/compute_with, or NULL */
  Directive *store_at;    /* or NULL */
  Directive *gemm;        /* or NULL */
  int at;                 /* compute_at: the consumer stage */
  int with, fold;         /* the stages compute_with and store_at name */
  LoopVec loops;          /* outermost first */
  Loc order_loc;          /* the last directive that moved a reduction loop */
  VEC(Subst) subst;       /* apply: original loop variables in the new ones */
  IRStmt *init;           /* apply: memory form's initialisation nest, or NULL */
} Stage;

typedef struct Sch {
  Ctx *c;
  Def *d;
  IRFunc *f;              /* NULL while checking */
  Stage *st;              /* by statement index */
} Sch;

/* ---- names ---- */

static const char *stage_name(Sch *S, const Stage *st) {
  const Stmt *s = st->s;
  int k = 0;
  for (int i = 0; i < st->si; i++)
    k += S->d->stmts[i]->lhs == s->lhs;
  if (!k)
    return s->lhs->name;
  return arena_printf(S->c->arena, "%s.update(%d)", s->lhs->name, k - 1);
}

static const char *loop_names(Sch *S, const Stage *st) {
  Buf b = {0};
  for (int i = 0; i < st->loops.len; i++)
    buf_printf(&b, "%s%s", i ? ", " : "", st->loops.data[i]->name);
  const char *r = arena_strdup(S->c->arena, b.s ? b.s : "");
  buf_free(&b);
  return r;
}

static int find_loop(const Stage *st, const char *name) {
  for (int i = 0; i < st->loops.len; i++)
    if (!strcmp(st->loops.data[i]->name, name))
      return i;
  return -1;
}

/* The loop named by argument a, or an error listing the stage's loops. */
static int loop_arg(Sch *S, Stage *st, const SchedArg *a, const char *dir) {
  if (!a->name)
    error_at(S->c, a->loc, "%s: expected a loop name, got an integer", dir);
  int k = find_loop(st, a->name);
  if (k < 0) {
    if (!st->loops.len)
      error_at(S->c, a->loc, "%s: stage %s has no loops", dir, stage_name(S, st));
    error_at(S->c, a->loc, "%s: unknown loop '%s' in stage %s (its loops: %s)", dir, a->name,
             stage_name(S, st), loop_names(S, st));
  }
  return k;
}

/* A new loop name: an identifier not naming another loop of the stage
 * (`keep`, the loop being split, may be reused). */
static const char *new_name(Sch *S, Stage *st, const SchedArg *a, const char *dir, int keep) {
  if (!a->name)
    error_at(S->c, a->loc, "%s: expected a name for a new loop, got an integer", dir);
  int k = find_loop(st, a->name);
  if (k >= 0 && k != keep)
    error_at(S->c, a->loc, "%s: loop name '%s' is already used in stage %s", dir, a->name,
             stage_name(S, st));
  return a->name;
}

static int64_t factor_arg(Sch *S, const SchedArg *a, const char *dir) {
  if (a->name || a->ival <= 0)
    error_at(S->c, a->loc, "%s: the factor must be a positive integer", dir);
  if (a->ival > (1 << 24))
    error_at(S->c, a->loc, "%s: factor %lld is too large", dir, (long long)a->ival);
  return a->ival;
}

typedef struct SubstSt {
  Subst *list;
  int n;
} SubstSt;

static IRExpr *subst_expr(Ctx *c, void *st, IRExpr *e) {
  SubstSt *S = st;
  if (e->kind == IR_VAR)
    for (int i = 0; i < S->n; i++)
      if (S->list[i].var == e->var)
        return subst_expr(c, st, S->list[i].with);
  return ir_mutate_expr_children(c, e, subst_expr, st);
}

/* ---- the loop list ---- */

static Loop *new_loop(Sch *S, const char *name, bool red) {
  Loop *l = arena_alloc(S->c->arena, sizeof *l);
  l->name = name;
  l->red = red;
  return l;
}

static IRExpr *i64(Sch *S, int64_t v) { return ir_i64(S->c, v); }

/* Loop k becomes outer `o` around inner `i` of f iterations. */
static void split(Sch *S, Stage *st, int k, const char *o, const char *i, int64_t f, Loc loc) {
  Ctx *c = S->c;
  Loop *v = st->loops.data[k];
  if (v->kind != FOR_SERIAL)
    error_at(c, loc, "split: loop '%s' is already %s; split it before", v->name,
             for_kind_names[v->kind]);
  Loop *lo = new_loop(S, o, v->red), *li = new_loop(S, i, v->red);
  if (S->f) {
    IRFunc *fn = S->f;
    lo->var = ir_new_var(c, arena_printf(c->arena, "s%d_%s", fn->nvars++, o), VAR_LOOP, TC_INT64);
    li->var = ir_new_var(c, arena_printf(c->arena, "s%d_%s", fn->nvars++, i), VAR_LOOP, TC_INT64);
    IRExpr *F = i64(S, f), *start = ir_mul(c, ir_var(c, lo->var), F);
    lo->lo = li->lo = i64(S, 0);
    lo->extent = ir_floordiv(c, ir_add(c, v->extent, i64(S, f - 1)), F);
    lo->bound = ir_floordiv(c, ir_add(c, v->bound, i64(S, f - 1)), F);
    li->extent = ir_min(c, F, ir_sub(c, v->extent, start));
    li->bound = F;
    Subst sb = {v->var, ir_add(c, ir_add(c, v->lo, start), ir_var(c, li->var))};
    vec_push(c->arena, &st->subst, sb);
  }
  vec_push(c->arena, &st->loops, NULL);
  memmove(&st->loops.data[k + 2], &st->loops.data[k + 1],
          sizeof(Loop *) * (size_t)(st->loops.len - k - 2));
  st->loops.data[k] = lo;
  st->loops.data[k + 1] = li;
}

/* The named loops take the positions they occupy, names[0] innermost. */
static void reorder(Stage *st, const int *ks, int n, Loc loc) {
  int pos[64];
  for (int i = 0; i < n; i++)
    pos[i] = ks[i];
  for (int i = 1; i < n; i++) /* ascending positions */
    for (int j = i; j > 0 && pos[j - 1] > pos[j]; j--) {
      int t = pos[j];
      pos[j] = pos[j - 1];
      pos[j - 1] = t;
    }
  Loop *l[64];
  for (int i = 0; i < n; i++)
    l[i] = st->loops.data[ks[i]];
  for (int j = 0; j < n; j++)
    st->loops.data[pos[j]] = l[n - 1 - j];
  bool seen_red = false;
  for (int i = 0; i < st->loops.len; i++) {
    seen_red |= st->loops.data[i]->red;
    if (seen_red && !st->loops.data[i]->red)
      st->order_loc = loc;
  }
}

static void mark(Sch *S, Stage *st, int k, ForKind kind, Loc loc, const char *dir) {
  Loop *l = st->loops.data[k];
  if (l->kind != FOR_SERIAL && l->kind != kind)
    error_at(S->c, loc, "%s: loop '%s' is already %s", dir, l->name, for_kind_names[l->kind]);
  if (kind == FOR_PARALLEL && l->red)
    error_at(S->c, loc, "parallel: '%s' is a reduction loop of stage %s: its iterations would "
             "race to update the same elements", l->name, stage_name(S, st));
  l->kind = kind;
  l->kind_loc = loc;
}

/* fuse(inner, outer, fused): outer directly around inner become one loop
 * over both; outer = f / extent(inner), inner = f % extent(inner). */
static void fuse(Sch *S, Stage *st, const Directive *d) {
  Ctx *c = S->c;
  int ki = loop_arg(S, st, &d->args[0], "fuse"), ko = loop_arg(S, st, &d->args[1], "fuse");
  Loop *in = st->loops.data[ki], *out = st->loops.data[ko];
  if (ko != ki - 1)
    error_at(c, d->args[1].loc, "fuse: '%s' is not the loop directly around '%s'", out->name,
             in->name);
  if (in->red != out->red)
    error_at(c, d->loc, "fuse: '%s' and '%s' are a left-hand and a reduction loop", out->name,
             in->name);
  if (in->kind != FOR_SERIAL || out->kind != FOR_SERIAL)
    error_at(c, d->loc, "fuse: '%s' is already %s; fuse it before", in->kind ? in->name : out->name,
             for_kind_names[in->kind ? in->kind : out->kind]);
  const char *name = new_name(S, st, &d->args[2], "fuse", ki);
  if (find_loop(st, name) == ko)
    name = new_name(S, st, &d->args[2], "fuse", ko);
  Loop *f = new_loop(S, name, in->red);
  if (S->f) {
    SubstSt ss = {st->subst.data, st->subst.len};
    IRExpr *ie = subst_expr(c, &ss, in->extent), *oe = subst_expr(c, &ss, out->extent);
    if (ir_uses_var(ie, out->var) || ir_uses_var(in->lo, out->var))
      error_at(c, d->loc, "fuse: the extent of '%s' changes with '%s' (a split's last "
               "iteration); split the other way or fuse first", in->name, out->name);
    f->var = ir_new_var(c, arena_printf(c->arena, "s%d_%s", S->f->nvars++, name), VAR_LOOP,
                        TC_INT64);
    f->lo = i64(S, 0);
    f->extent = ir_mul(c, oe, ie);
    f->bound = ir_mul(c, out->bound, in->bound);
    IRExpr *fv = ir_var(c, f->var);
    Subst so = {out->var, ir_add(c, out->lo, ir_floordiv(c, fv, ie))};
    Subst si = {in->var, ir_add(c, in->lo, ir_bin(c, OP_MOD, fv, ie))};
    vec_push(c->arena, &st->subst, so);
    vec_push(c->arena, &st->subst, si);
  }
  st->loops.data[ko] = f;
  memmove(&st->loops.data[ki], &st->loops.data[ki + 1],
          sizeof(Loop *) * (size_t)(st->loops.len - ki - 1));
  st->loops.len--;
}

static void arity(Sch *S, const Directive *d, int lo, int hi) {
  const char *n = sched_dir_names[d->kind];
  if (d->nargs < lo || d->nargs > hi) {
    if (lo == hi)
      error_at(S->c, d->loc, "%s takes %d argument%s, got %d", n, lo, lo == 1 ? "" : "s",
               d->nargs);
    error_at(S->c, d->loc, "%s takes %d to %d arguments, got %d", n, lo, hi, d->nargs);
  }
}

/* `v` of vectorize(v, w) / unroll(v, f): split off the inner loop first. */
static int split_inner(Sch *S, Stage *st, const Directive *d, const char *suffix) {
  const char *dir = sched_dir_names[d->kind];
  int k = loop_arg(S, st, &d->args[0], dir);
  if (d->nargs < 2)
    return k;
  int64_t f = factor_arg(S, &d->args[1], dir);
  const char *in = arena_printf(S->c->arena, "%s_%s", st->loops.data[k]->name, suffix);
  if (find_loop(st, in) >= 0)
    error_at(S->c, d->loc, "%s: its inner loop would be named '%s', which is taken", dir, in);
  split(S, st, k, st->loops.data[k]->name, in, f, d->loc);
  return k + 1;
}

static void directive(Sch *S, Stage *st, Directive *d) {
  Ctx *c = S->c;
  const char *dir = sched_dir_names[d->kind];
  switch (d->kind) {
  case SD_SPLIT: {
    arity(S, d, 4, 4);
    int k = loop_arg(S, st, &d->args[0], dir);
    const char *o = new_name(S, st, &d->args[1], dir, k);
    const char *i = new_name(S, st, &d->args[2], dir, k);
    if (!strcmp(o, i))
      error_at(c, d->args[2].loc, "split: the outer and inner loops need two names");
    split(S, st, k, o, i, factor_arg(S, &d->args[3], dir), d->loc);
    return;
  }
  case SD_TILE: {
    arity(S, d, 8, 8);
    int kx = loop_arg(S, st, &d->args[0], dir), ky = loop_arg(S, st, &d->args[1], dir);
    if (kx == ky)
      error_at(c, d->args[1].loc, "tile: needs two different loops");
    const char *n[4];
    for (int j = 0; j < 4; j++) {
      n[j] = new_name(S, st, &d->args[2 + j], dir, j % 2 ? ky : kx);
      for (int i = 0; i < j; i++)
        if (!strcmp(n[i], n[j]))
          error_at(c, d->args[2 + j].loc, "tile: loop name '%s' is given twice", n[j]);
      if ((j % 2 == 0 && !strcmp(n[j], st->loops.data[ky]->name)) ||
          (j % 2 == 1 && !strcmp(n[j], st->loops.data[kx]->name)))
        error_at(c, d->args[2 + j].loc, "tile: loop name '%s' is already used in stage %s", n[j],
                 stage_name(S, st));
    }
    int64_t fx = factor_arg(S, &d->args[6], dir), fy = factor_arg(S, &d->args[7], dir);
    split(S, st, kx, n[0], n[2], fx, d->loc);
    ky = ky > kx ? ky + 1 : ky;
    split(S, st, ky, n[1], n[3], fy, d->loc);
    int ks[4] = {find_loop(st, n[2]), find_loop(st, n[3]), find_loop(st, n[0]),
                 find_loop(st, n[1])};
    reorder(st, ks, 4, d->loc);
    return;
  }
  case SD_REORDER: {
    if (d->nargs < 2 || d->nargs > 64)
      error_at(c, d->loc, "reorder takes 2 to 64 loop names, got %d", d->nargs);
    int ks[64];
    for (int j = 0; j < d->nargs; j++) {
      ks[j] = loop_arg(S, st, &d->args[j], dir);
      for (int i = 0; i < j; i++)
        if (ks[i] == ks[j])
          error_at(c, d->args[j].loc, "reorder: loop '%s' is named twice", d->args[j].name);
    }
    reorder(st, ks, d->nargs, d->loc);
    return;
  }
  case SD_VECTORIZE:
    arity(S, d, 1, 2);
    mark(S, st, split_inner(S, st, d, "vi"), FOR_VECTORIZED, d->loc, dir);
    return;
  case SD_UNROLL:
    arity(S, d, 1, 2);
    mark(S, st, split_inner(S, st, d, "ui"), FOR_UNROLLED, d->loc, dir);
    return;
  case SD_PARALLEL:
    arity(S, d, 1, 1);
    mark(S, st, loop_arg(S, st, &d->args[0], dir), FOR_PARALLEL, d->loc, dir);
    return;
  case SD_FUSE:
    arity(S, d, 3, 3);
    fuse(S, st, d);
    return;
  case SD_INLINE:
  case SD_COMPUTE_ROOT:
  case SD_COMPUTE_AT:
  case SD_COMPUTE_WITH:
  case SD_STORE_AT:
  case SD_GEMM:
  case NUM_SCHED_DIRS:
    break;
  }
}

/* The stage's loops from its statement's variables (with the lowered loops
 * when applying), then its directives replayed. */
static void replay(Sch *S, Stage *st, IRStmt **orig) {
  Stmt *s = st->s;
  st->loops.len = 0;
  st->subst.len = 0;
  st->order_loc = (Loc){0, 0};
  for (int i = 0; i < s->nvars; i++) {
    Loop *l = new_loop(S, s->vars[i]->name, s->vars[i]->reduction);
    if (orig) {
      l->var = orig[i]->var;
      l->lo = orig[i]->lo;
      l->extent = l->bound = orig[i]->extent;
    }
    vec_push(S->c->arena, &st->loops, l);
  }
  for (int i = 0; i < st->dirs.len; i++)
    directive(S, st, st->dirs.data[i]);
}

/* ---- checking ---- */

static bool stmt_reads(const Stmt *s, const Tensor *t) {
  if (expr_reads_tensor(s->rhs, t))
    return true;
  for (int i = 0; i < s->nexists; i++)
    if (expr_reads_tensor(s->exists[i], t))
      return true;
  for (int i = 0; i < s->nwheres; i++)
    if (expr_reads_tensor(s->wheres[i].e, t))
      return true;
  return false;
}

static int writers(Sch *S, const Tensor *t) {
  int n = 0;
  for (int i = 0; i < S->d->nstmts; i++)
    n += S->d->stmts[i]->lhs == t;
  return n;
}

/* Whether the final order keeps left-hand loops outside reduction loops
 * (else the stage accumulates in memory). */
static bool accumulator_form(const Stage *st) {
  bool seen_red = false;
  for (int i = 0; i < st->loops.len; i++) {
    if (seen_red && !st->loops.data[i]->red)
      return false;
    seen_red |= st->loops.data[i]->red;
  }
  return true;
}

static bool lane_type(tc_dtype t) {
  return t == TC_FLOAT32 || t == TC_FLOAT64 || t == TC_INT32 || t == TC_INT64 ||
         t == TC_UINT32 || t == TC_UINT64;
}

static void check_loops(Sch *S, Stage *st) {
  Ctx *c = S->c;
  Stmt *s = st->s;
  bool acc = accumulator_form(st);
  if (!acc) {
    if (s->lhs->dtype == TC_FLOAT16 || s->lhs->dtype == TC_BFLOAT16)
      error_at(c, st->order_loc, "this order puts a reduction loop of %s outside a left-hand "
               "loop: %s would accumulate in memory, but %s sums in float32", stage_name(S, st),
               s->lhs->name, dtype_info[s->lhs->dtype].name);
    if (stmt_reads(s, s->lhs))
      error_at(c, st->order_loc, "this order puts a reduction loop of %s outside a left-hand "
               "loop, but the statement reads %s, which would then hold partial results",
               stage_name(S, st), s->lhs->name);
  }
  int n = st->loops.len;
  for (int i = 0; i < n; i++) {
    Loop *l = st->loops.data[i];
    if (l->kind != FOR_VECTORIZED)
      continue;
    if (i != n - 1)
      error_at(c, l->kind_loc, "vectorize: '%s' is not the innermost loop of stage %s ('%s' is "
               "inside it); reorder first", l->name, stage_name(S, st),
               st->loops.data[n - 1]->name);
    if (l->red && !acc)
      error_at(c, l->kind_loc, "vectorize: '%s' is a reduction loop outside a left-hand loop: "
               "its iterations update the same elements", l->name);
    if (l->red && !lane_type(s->lhs->dtype))
      error_at(c, l->kind_loc, "vectorize: reduction loop '%s' accumulates %s; vector "
               "reductions need a 32- or 64-bit type", l->name, dtype_info[s->lhs->dtype].name);
  }
}

static int stage_of(Sch *S, const char *tensor, const SchedArg *a) {
  for (int i = 0; i < S->d->nstmts; i++)
    if (!strcmp(S->d->stmts[i]->lhs->name, tensor))
      return i;
  for (int i = 0; i < S->d->ninputs; i++)
    if (!strcmp(S->d->tensors[i]->name, tensor))
      error_at(S->c, a->loc, "'%s' is an input: it has no stage", tensor);
  error_at(S->c, a->loc, "no statement writes '%s' in def %s", tensor, S->d->name);
}

/* Whether stage r runs inside loop k (a position in its loop list) of
 * stage cons: it is cons, or computed at such a loop (directly or through
 * other compute_at stages). */
static bool inside(Sch *S, int r, int cons, int k) {
  if (r == cons)
    return true;
  Directive *d = S->st[r].compute;
  if (!d || d->kind != SD_COMPUTE_AT || d->nargs != 2 || !d->args[0].name || !d->args[1].name)
    return false;
  for (int i = r + 1; i < S->d->nstmts; i++) { /* the stage it is computed in */
    Stage *t = &S->st[i];
    if (strcmp(t->s->lhs->name, d->args[0].name) || !stmt_reads(t->s, S->st[r].s->lhs))
      continue;
    if (i == cons) {
      int w = find_loop(t, d->args[1].name);
      return w >= k;
    }
    return inside(S, i, cons, k);
  }
  return false;
}

/* ---- directives for the autoscheduler's passes: compute_with, store_at, gemm ---- */

/* Whether the stage's nest stays the autoscheduler's, steered by fuse.c,
 * fold.c and tile.c (IRFunc.want) rather than rebuilt here. */
static bool directing(const Stage *st) {
  return st->gemm || st->store_at || (st->compute && st->compute->kind == SD_COMPUTE_WITH);
}

/* The stage that argument a names: the last stage writing that tensor
 * before stage si (or at si, with `self`). */
static int stage_named(Sch *S, const SchedArg *a, int si, bool self, const char *dir) {
  if (!a->name)
    error_at(S->c, a->loc, "%s: expected the name of a stage, got an integer", dir);
  int r = -1;
  for (int i = 0; i < (self ? si + 1 : si); i++)
    if (!strcmp(S->d->stmts[i]->lhs->name, a->name))
      r = i;
  if (r < 0) {
    stage_of(S, a->name, a);
    error_at(S->c, a->loc, "%s: no stage before %s writes %s", dir, stage_name(S, &S->st[si]),
             a->name);
  }
  return r;
}

/* Argument a: the outer loop of stage h, whose nest the autoscheduler's. */
static void outer_loop_arg(Sch *S, int h, const SchedArg *a, const char *dir) {
  Stage *hs = &S->st[h];
  const Stmt *s = hs->s;
  if (!a->name)
    error_at(S->c, a->loc, "%s: expected a loop name, got an integer", dir);
  if (!s->lhs->rank)
    error_at(S->c, a->loc, "%s: %s has no left-hand loop", dir, stage_name(S, hs));
  if (strcmp(a->name, s->vars[0]->name))
    error_at(S->c, a->loc, "%s: '%s' is not the outer loop of %s (that is '%s')", dir, a->name,
             stage_name(S, hs), s->vars[0]->name);
  if (hs->loopdirs || hs->gemm || (hs->compute && !directing(hs)))
    error_at(S->c, a->loc, "%s: %s is scheduled by its own directives: its nest is not the "
             "autoscheduler's", dir, stage_name(S, hs));
}

static void only_directing(Sch *S, Stage *st, const Directive *d, bool with_ok) {
  const char *dir = sched_dir_names[d->kind];
  if (st->loopdirs)
    error_at(S->c, d->loc, "%s: stage %s also has loop directives; with %s its loops are %s",
             dir, stage_name(S, st), dir, d->kind == SD_GEMM ? "tile.c's" : "the autoscheduler's");
  if (st->compute && st->compute != d && !(with_ok && st->compute->kind == SD_COMPUTE_WITH))
    error_at(S->c, d->loc, "%s: stage %s also has %s()", dir, stage_name(S, st),
             sched_dir_names[st->compute->kind]);
}

/* compute_with(H, v): the stage's nest joins H's outer loop v (fuse.c). */
static void check_with(Sch *S, Stage *st) {
  Directive *d = st->compute;
  arity(S, d, 2, 2);
  only_directing(S, st, d, false);
  if (st->gemm)
    error_at(S->c, d->loc, "compute_with: stage %s also has gemm()", stage_name(S, st));
  if (!st->s->lhs->rank)
    error_at(S->c, d->loc, "compute_with: stage %s has no left-hand loop", stage_name(S, st));
  st->with = stage_named(S, &d->args[0], st->si, false, "compute_with");
  outer_loop_arg(S, st->with, &d->args[1], "compute_with");
}

/* store_at(H, v): the tensor is held per iteration of H's outer loop v
 * (fold.c). */
static void check_store_at(Sch *S, Stage *st) {
  Directive *d = st->store_at;
  Tensor *t = st->s->lhs;
  arity(S, d, 2, 2);
  if (t->role != T_TEMP)
    error_at(S->c, d->loc, "store_at: %s is an output: it is stored whole", t->name);
  if (!t->rank)
    error_at(S->c, d->loc, "store_at: %s has no dimensions", t->name);
  only_directing(S, st, d, true);
  if (st->gemm)
    error_at(S->c, d->loc, "store_at: stage %s also has gemm()", stage_name(S, st));
  for (int i = 0; i < S->d->nstmts; i++)
    if (i != st->si && S->st[i].store_at && S->d->stmts[i]->lhs == t)
      error_at(S->c, d->loc, "store_at: %s already has one (stage %s)", t->name,
               stage_name(S, &S->st[i]));
  st->fold = stage_named(S, &d->args[0], st->si, true, "store_at");
  outer_loop_arg(S, st->fold, &d->args[1], "store_at");
}

static int64_t ranged_arg(Sch *S, const SchedArg *a, const char *what, int64_t hi) {
  if (a->name || a->ival <= 0 || a->ival > hi)
    error_at(S->c, a->loc, "gemm: %s must be an integer from 1 to %lld", what, (long long)hi);
  return a->ival;
}

/* gemm(i, j, k, mr, nr, kc, nc, mc): tile.c's register tiles and blocks. */
static void check_gemm(Sch *S, Stage *st) {
  Ctx *c = S->c;
  Directive *d = st->gemm;
  Stmt *s = st->s;
  int rank = s->lhs->rank;
  arity(S, d, 8, 8);
  only_directing(S, st, d, false);
  if (s->op != RED_ADD || (s->lhs->dtype != TC_FLOAT32 && s->lhs->dtype != TC_FLOAT64) ||
      rank < 2 || s->nvars == rank)
    error_at(c, d->loc, "gemm: stage %s is not a contraction: that is a `+=` reduction of float "
             "or double into two or more dimensions", stage_name(S, st));
  for (int a = 0; a < 3; a++)
    if (!d->args[a].name)
      error_at(c, d->args[a].loc, "gemm: expected a loop name, got an integer");
  const char *j = s->vars[rank - 1]->name, *k = s->vars[rank]->name;
  if (strcmp(d->args[1].name, j))
    error_at(c, d->args[1].loc, "gemm: the columns of a tile (vector lanes) run along the "
             "innermost left-hand loop, '%s'", j);
  if (strcmp(d->args[2].name, k))
    error_at(c, d->args[2].loc, "gemm: the blocked reduction loop is the first one, '%s'", k);
  int i = -1;
  for (int v = 0; v < rank - 1; v++)
    if (!strcmp(d->args[0].name, s->vars[v]->name))
      i = v;
  if (i < 0)
    error_at(c, d->args[0].loc, "gemm: the rows of a tile run along a left-hand loop other "
             "than '%s'; '%s' is not one", j, d->args[0].name);
  int64_t mr = ranged_arg(S, &d->args[3], "mr (rows of a register tile)", 32);
  int64_t nr = ranged_arg(S, &d->args[4], "nr (columns of a register tile)", 256);
  int64_t kc = ranged_arg(S, &d->args[5], "kc (reduction steps per block)", 1 << 16);
  int64_t nc = ranged_arg(S, &d->args[6], "nc (columns of a packed panel)", nr * 4096);
  int64_t mc = ranged_arg(S, &d->args[7], "mc (rows packed at once)", mr * 4096);
  if (nc % nr)
    error_at(c, d->args[6].loc, "gemm: nc (%lld) must be a multiple of nr (%lld)", (long long)nc,
             (long long)nr);
  if (mc % mr)
    error_at(c, d->args[7].loc, "gemm: mc (%lld) must be a multiple of mr (%lld)", (long long)mc,
             (long long)mr);
  for (int a = 6; a <= 7; a++)
    if ((a == 6 ? nc : mc) * kc > (1 << 26))
      error_at(c, d->args[a].loc, "gemm: a packed panel of %lld x %lld (%s x kc) elements is too "
               "large; at most %d", (long long)(a == 6 ? nc : mc), (long long)kc,
               a == 6 ? "nc" : "mc", 1 << 26);
}

static void check_compute(Sch *S, Stage *st) {
  Ctx *c = S->c;
  Directive *d = st->compute;
  Stmt *s = st->s;
  Tensor *t = s->lhs;
  const char *dir = sched_dir_names[d->kind];
  if (d->kind == SD_COMPUTE_WITH) {
    check_with(S, st);
    return;
  }
  if (d->kind == SD_COMPUTE_ROOT) {
    arity(S, d, 0, 0);
    return;
  }
  if (d->kind == SD_INLINE)
    arity(S, d, 0, 0);
  else
    arity(S, d, 2, 2);
  if (t->role != T_TEMP)
    error_at(c, d->loc, "%s: %s is an output: it is stored whole (compute_root)", dir, t->name);
  if (writers(S, t) != 1)
    error_at(c, d->loc, "%s: %s is written by %d statements; it needs exactly one", dir, t->name,
             writers(S, t));
  if (!t->rank)
    error_at(c, d->loc, "%s: %s has no dimensions", dir, t->name);
  if (d->kind == SD_INLINE) {
    if (st->loopdirs)
      error_at(c, d->loc, "inline: stage %s also has loop directives, which would not apply",
               t->name);
    if (s->op != RED_NONE)
      error_at(c, d->loc, "inline: %s is a reduction; only pointwise `=` statements inline",
               t->name);
    return;
  }
  const SchedArg *a = &d->args[0];
  if (!a->name)
    error_at(c, a->loc, "compute_at: expected the name of the consumer, got an integer");
  stage_of(S, a->name, a);
  int cons = -1;
  for (int i = 0; i < S->d->nstmts && cons < 0; i++)
    if (stmt_reads(S->d->stmts[i], t) && !strcmp(S->d->stmts[i]->lhs->name, a->name))
      cons = i;
  if (cons < 0)
    error_at(c, a->loc, "compute_at: %s does not read %s", a->name, t->name);
  Stage *cs = &S->st[cons];
  if (cs->compute && cs->compute->kind == SD_INLINE)
    error_at(c, a->loc, "compute_at: %s is inlined", a->name);
  if (directing(cs))
    error_at(c, a->loc, "compute_at: the loops of %s are the autoscheduler's (it has %s)",
             stage_name(S, cs), cs->gemm ? "gemm" : cs->store_at ? "store_at" : "compute_with");
  int k = loop_arg(S, cs, &d->args[1], dir);
  if (cs->loops.data[k]->kind == FOR_VECTORIZED)
    error_at(c, d->args[1].loc, "compute_at: loop '%s' of %s is vectorized", d->args[1].name,
             stage_name(S, cs));
  st->at = cons;
  for (int i = 0; i < S->d->nstmts; i++)
    if (i != st->si && stmt_reads(S->d->stmts[i], t) && !inside(S, i, cons, k))
      error_at(c, d->args[1].loc, "compute_at: %s is also read by stage %s, which loop '%s' of "
               "%s does not enclose", t->name, stage_name(S, &S->st[i]), d->args[1].name,
               stage_name(S, cs));
}

static void collect(Sch *S) {
  Ctx *c = S->c;
  Def *d = S->d;
  S->st = arena_alloc(c->arena, sizeof(Stage) * (size_t)(d->nstmts + 1));
  for (int i = 0; i < d->nstmts; i++) {
    S->st[i].s = d->stmts[i];
    S->st[i].si = i;
  }
  Schedule *sc = d->sched;
  for (int i = 0; i < sc->ndirs; i++) {
    Directive *x = &sc->dirs[i];
    int si = -1, k = 0;
    for (int j = 0; j < d->nstmts && si < 0; j++)
      if (!strcmp(d->stmts[j]->lhs->name, x->stage) && k++ == x->update)
        si = j;
    if (si < 0) {
      if (k == 1)
        error_at(c, x->stage_loc, "one statement writes %s: it has no update stages", x->stage);
      if (k)
        error_at(c, x->stage_loc, "%s has %d update stage%s, update(0) to update(%d)", x->stage,
                 k - 1, k == 2 ? "" : "s", k - 2);
      SchedArg a = {x->stage_loc, x->stage, 0};
      stage_of(S, x->stage, &a);
    }
    x->si = si;
    x->stmt = d->stmts[si];
    Stage *st = &S->st[si];
    if (x->kind == SD_INLINE || x->kind == SD_COMPUTE_ROOT || x->kind == SD_COMPUTE_AT ||
        x->kind == SD_COMPUTE_WITH) {
      if (st->compute)
        error_at(c, x->loc, "stage %s already has %s() (at %d:%d)", stage_name(S, st),
                 sched_dir_names[st->compute->kind], st->compute->loc.line,
                 st->compute->loc.col);
      st->compute = x;
    } else if (x->kind == SD_STORE_AT || x->kind == SD_GEMM) {
      Directive **slot = x->kind == SD_STORE_AT ? &st->store_at : &st->gemm;
      if (*slot)
        error_at(c, x->loc, "stage %s already has %s() (at %d:%d)", stage_name(S, st),
                 sched_dir_names[x->kind], (*slot)->loc.line, (*slot)->loc.col);
      *slot = x;
    } else {
      st->loopdirs = true;
    }
    vec_push(c->arena, &st->dirs, x);
  }
}

static void check_all(Sch *S) {
  collect(S);
  for (int i = 0; i < S->d->nstmts; i++) {
    replay(S, &S->st[i], NULL);
    check_loops(S, &S->st[i]);
  }
  for (int i = 0; i < S->d->nstmts; i++)
    if (S->st[i].compute)
      check_compute(S, &S->st[i]);
  for (int i = 0; i < S->d->nstmts; i++) {
    if (S->st[i].store_at)
      check_store_at(S, &S->st[i]);
    if (S->st[i].gemm)
      check_gemm(S, &S->st[i]);
  }
}

void sched_check_def(Ctx *c, Def *d) {
  if (!d->sched)
    return;
  Sch S = {c, d, NULL, NULL};
  check_all(&S);
}

/* ---- IR helpers ---- */


static IRStmt *subst_stmt(Ctx *c, void *st, IRStmt *s) {
  return ir_mutate_stmt_children(c, s, subst_stmt, subst_expr, st);
}

static const char *var_name(Sch *S, int si, const IndexVar *v) {
  return arena_printf(S->c->arena, "x%d_%s", si, v->name);
}

static bool is_loop_named(const IRStmt *s, const char *name) {
  return s && s->kind == S_FOR && !strcmp(s->var->name, name);
}

/* The loop with variable v anywhere in s (NULL if none). */
static IRStmt *loop_of(IRStmt *s, const IRVar *v) {
  if (!s)
    return NULL;
  if (s->kind == S_FOR && s->var == v)
    return s;
  for (int i = 0; i < s->n; i++) {
    IRStmt *r = loop_of(s->stmts[i], v);
    if (r)
      return r;
  }
  IRStmt *r = loop_of(s->body, v);
  if (!r)
    r = loop_of(s->then, v);
  if (!r)
    r = loop_of(s->els, v);
  return r;
}

typedef struct Replace {
  const IRVar *v;
  IRStmt *body; /* the loop's new body */
} Replace;

static IRStmt *replace_body(Ctx *c, void *st, IRStmt *s) {
  Replace *R = st;
  if (s->kind == S_FOR && s->var == R->v) {
    IRStmt *r = ir_for(c, s->var, s->lo, s->extent, s->fkind, R->body);
    r->loc = s->loc;
    return r;
  }
  return ir_mutate_stmt_children(c, s, replace_body, NULL, st);
}

/* ---- the lowered nest of a stage ---- */

typedef struct Nest {
  int item;          /* its root in the top-level block */
  IRStmt **loop;     /* [nvars] by variable id */
  IRStmt *mid;       /* a reduction with left-hand loops: the innermost
                        left-hand loop's body {acc = init; red loops; store} */
  int mid_red;       /* the index of the reduction loops in mid */
  IRStmt *core;      /* the innermost body */
} Nest;

static TC_NORETURN void lost(Sch *S, Stage *st, const char *why) {
  Loc at = st->dirs.len ? st->dirs.data[0]->loc : st->s->loc;
  error_at(S->c, at, "cannot apply the schedule of stage %s: %s", stage_name(S, st), why);
}

static void find_nest(Sch *S, Stage *st, Nest *n) {
  Stmt *s = st->s;
  IRStmt *top = S->f->body;
  n->loop = arena_alloc(S->c->arena, sizeof(IRStmt *) * (size_t)(s->nvars + 1));
  int nl = s->lhs->rank;
  const char *first = var_name(S, st->si, s->vars[0]);
  n->item = -1;
  for (int i = 0; i < top->n && n->item < 0; i++)
    if (is_loop_named(top->stmts[i], first))
      n->item = i;
  if (n->item < 0)
    lost(S, st, arena_printf(S->c->arena, "its loop '%s' runs once and was folded away",
                             s->vars[0]->name));
  IRStmt *cur = top->stmts[n->item];
  for (int i = 0; i < s->nvars; i++) {
    if (i == nl && nl > 0) {
      IRStmt *mid = cur;
      if (mid->kind != S_BLOCK)
        lost(S, st, "its accumulator is not where expected");
      n->mid = mid;
      n->mid_red = -1;
      const char *want = var_name(S, st->si, s->vars[i]);
      for (int j = 0; j < mid->n; j++)
        if (is_loop_named(mid->stmts[j], want))
          n->mid_red = j;
      if (n->mid_red < 0)
        lost(S, st, arena_printf(S->c->arena, "its loop '%s' runs once and was folded away",
                                 s->vars[i]->name));
      cur = mid->stmts[n->mid_red];
    }
    if (!is_loop_named(cur, var_name(S, st->si, s->vars[i])))
      lost(S, st, arena_printf(S->c->arena, "its loop '%s' runs once and was folded away",
                               s->vars[i]->name));
    n->loop[i] = cur;
    cur = cur->body;
  }
  n->core = cur;
}

/* ---- rebuilding a nest ---- */

/* Loops `ls` around `body`, outermost first; `outer` loops of the stage
 * enclose them.  A loop whose extent uses a stage variable not enclosing
 * it, or an unrolled one, runs its bound with the body guarded. */
static IRStmt *build_loops(Sch *S, Stage *st, Loop **ls, int n, int outer_n, Loop **outer,
                           IRStmt *body) {
  Ctx *c = S->c;
  IRExpr *guard = NULL;
  IRExpr **ext = arena_alloc(c->arena, sizeof(IRExpr *) * (size_t)(n + 1));
  IRExpr **lo = arena_alloc(c->arena, sizeof(IRExpr *) * (size_t)(n + 1));
  SubstSt ss = {st->subst.data, st->subst.len}; /* extents over loops split later */
  for (int i = 0; i < n; i++) {
    Loop *l = ls[i];
    IRExpr *extent = subst_expr(c, &ss, l->extent);
    lo[i] = subst_expr(c, &ss, l->lo);
    bool ok = true;
    for (int j = 0; j < st->loops.len && ok; j++) {
      Loop *o = st->loops.data[j];
      bool encl = false;
      for (int k = 0; k < i; k++)
        encl |= ls[k] == o;
      for (int k = 0; k < outer_n; k++)
        encl |= outer[k] == o;
      if (!encl && (ir_uses_var(extent, o->var) || ir_uses_var(lo[i], o->var)))
        ok = false;
    }
    int64_t b;
    IRExpr *bound = simplify_expr(c, l->bound);
    if (l->kind == FOR_UNROLLED) {
      if (!ir_is_const(bound, &b))
        error_at(c, l->kind_loc, "unroll: the extent of '%s' is not a constant; give a factor",
                 l->name);
      if (b > 64)
        error_at(c, l->kind_loc, "unroll: '%s' has %lld iterations; at most 64 unroll", l->name,
                 (long long)b);
      ok = false;
    }
    if (ok) {
      ext[i] = extent;
    } else {
      ext[i] = bound;
      IRExpr *g = ir_bin(c, OP_LT, ir_var(c, l->var), ir_add(c, lo[i], extent));
      guard = guard ? ir_bin(c, OP_AND, guard, g) : g;
    }
  }
  if (guard)
    body = ir_if(c, guard, body, NULL);
  for (int i = n - 1; i >= 0; i--) {
    Loop *l = ls[i];
    IRStmt *f = ir_for(c, l->var, simplify_expr(c, lo[i]), simplify_expr(c, ext[i]), l->kind,
                       body);
    f->loc = st->s->loc;
    body = f;
  }
  return body;
}

static IRStmt *subst_all(Sch *S, Stage *st, IRStmt *s) {
  SubstSt ss = {st->subst.data, st->subst.len};
  return subst_stmt(S->c, &ss, s);
}

/* The stage's nest in its scheduled form. */
static IRStmt *rebuild(Sch *S, Stage *st, Nest *n) {
  Ctx *c = S->c;
  Stmt *s = st->s;
  int nl = s->lhs->rank, nloops = st->loops.len;
  Loop **lhs = arena_alloc(c->arena, sizeof(Loop *) * (size_t)(nloops + 1));
  Loop **red = arena_alloc(c->arena, sizeof(Loop *) * (size_t)(nloops + 1));
  int nlhs = 0, nred = 0;
  for (int i = 0; i < nloops; i++) {
    Loop *l = st->loops.data[i];
    if (l->red)
      red[nred++] = l;
    else
      lhs[nlhs++] = l;
  }
  if (s->op == RED_NONE || !nred) /* no reduction loops: `s(i) += e(i)` */
    return build_loops(S, st, st->loops.data, nloops, 0, NULL, subst_all(S, st, n->core));
  if (nl == 0)
    return build_loops(S, st, red, nred, 0, NULL, subst_all(S, st, n->core));
  if (accumulator_form(st)) {
    IRStmt **items = arena_alloc(c->arena, sizeof(IRStmt *) * (size_t)(n->mid->n + 1));
    for (int i = 0; i < n->mid->n; i++)
      items[i] = i == n->mid_red ? build_loops(S, st, red, nred, nlhs, lhs,
                                               subst_all(S, st, n->core))
                                 : subst_all(S, st, n->mid->stmts[i]);
    return build_loops(S, st, lhs, nlhs, 0, NULL, ir_block(c, items, n->mid->n));
  }
  /* memory form: O(idx) = O(idx) op e in the innermost body */
  IRStmt *store = n->mid->stmts[n->mid->n - 1];
  IRStmt *decl = n->mid->stmts[0];
  IASSERT(c, store->kind == S_STORE && decl->kind == S_DECL && n->mid_red == 1 &&
                 n->mid->n == 3);
  IRStmt *core = n->core, *upd = core->kind == S_BLOCK ? core->stmts[core->n - 1] : core;
  IASSERT(c, upd->kind == S_ASSIGN && upd->var == decl->var && upd->value->kind == IR_BIN);
  const IRExpr *u = upd->value;
  bool left = u->a->kind == IR_VAR && u->a->var == decl->var;
  IASSERT(c, left || (u->b->kind == IR_VAR && u->b->var == decl->var));
  Buffer *b = store->buf;
  IRExpr *cur = ir_cast(c, decl->var->type, ir_load(c, b, store->idx, store->nidx));
  IRExpr *val = ir_bin(c, (BinOp)u->op, cur, left ? u->b : u->a);
  IRStmt *put = ir_store(c, b, store->idx, store->nidx, ir_cast(c, b->dtype, val));
  if (core->kind == S_BLOCK) {
    IRStmt **items = arena_alloc(c->arena, sizeof(IRStmt *) * (size_t)(core->n + 1));
    memcpy(items, core->stmts, sizeof(IRStmt *) * (size_t)core->n);
    items[core->n - 1] = put;
    put = ir_block(c, items, core->n);
  }
  IRStmt *nest = build_loops(S, st, st->loops.data, nloops, 0, NULL, subst_all(S, st, put));
  if (!s->init)
    return nest;
  IRStmt *set = ir_store(c, b, store->idx, store->nidx, ir_cast(c, b->dtype, decl->value));
  IRStmt *parts[2] = {build_loops(S, st, lhs, nlhs, 0, NULL, subst_all(S, st, set)), nest};
  return ir_block(c, parts, 2);
}

/* ---- inline ---- */

typedef struct Inl {
  Buffer *b;
  IRVar **vars;
  int rank;
  IRExpr *value;
} Inl;

static IRExpr *inline_expr(Ctx *c, void *st, IRExpr *e) {
  Inl *I = st;
  e = ir_mutate_expr_children(c, e, inline_expr, st);
  if (e->kind != IR_LOAD || e->buf != I->b)
    return e;
  Subst sb[TC_MAX_RANK];
  for (int d = 0; d < I->rank; d++)
    sb[d] = (Subst){I->vars[d], e->idx[d]};
  SubstSt ss = {sb, I->rank};
  return subst_expr(c, &ss, I->value);
}

static IRStmt *inline_stmt(Ctx *c, void *st, IRStmt *s) {
  return ir_mutate_stmt_children(c, s, inline_stmt, inline_expr, st);
}

static bool loads_from_written(const IRExpr *e, const IRStmt *s) {
  if (!e)
    return false;
  if (e->kind == IR_LOAD && ir_stmt_stores(s, e->buf))
    return true;
  for (int i = 0; i < e->nidx; i++)
    if (loads_from_written(e->idx[i], s))
      return true;
  for (int i = 0; i < e->nargs; i++)
    if (loads_from_written(e->args[i], s))
      return true;
  return loads_from_written(e->a, s) || loads_from_written(e->b, s) ||
         loads_from_written(e->c, s);
}

static void do_inline(Sch *S, Stage *st) {
  Ctx *c = S->c;
  Nest n = {0};
  find_nest(S, st, &n);
  if (st->s->lhs->zero_fill)
    error_at(c, st->compute->loc, "inline: %s's definition leaves elements unwritten",
             st->s->lhs->name);
  if (n.core->kind != S_STORE)
    error_at(c, st->compute->loc, "inline: %s's definition reads through computed subscripts; "
             "it cannot move into its readers", st->s->lhs->name);
  IRStmt *top = S->f->body;
  for (int i = n.item + 1; i < top->n; i++)
    if (loads_from_written(n.core->value, top->stmts[i]))
      error_at(c, st->compute->loc, "inline: %s reads a tensor that a later statement writes",
               st->s->lhs->name);
  Inl I = {n.core->buf, arena_alloc(c->arena, sizeof(IRVar *) * TC_MAX_RANK), st->s->lhs->rank,
           n.core->value};
  for (int d = 0; d < I.rank; d++) {
    IRExpr *x = n.core->idx[d];
    IASSERT(c, x->kind == IR_VAR);
    I.vars[d] = x->var;
  }
  for (int i = n.item + 1; i < top->n; i++)
    top->stmts[i] = inline_stmt(c, &I, top->stmts[i]);
  top->stmts[n.item] = ir_block(c, NULL, 0);
}

/* ---- compute_at: regions by interval arithmetic ---- */

typedef struct Env {
  VEC(IRStmt *) loops; /* loops inside the compute loop, enclosing the access */
  VEC(IRStmt *) decls; /* int64 locals declared there (region bounds of others) */
} Env;

typedef struct Ival {
  IRExpr *lo, *hi;     /* inclusive; NULL: unknown */
} Ival;

static Ival ival(Sch *S, Env *E, const IRExpr *e, int depth);

static Ival ival_var(Sch *S, Env *E, const IRExpr *e, int depth) {
  Ctx *c = S->c;
  IRVar *v = e->var;
  if (v->kind == VAR_LOCAL) {
    for (int i = E->decls.len - 1; i >= 0; i--)
      if (E->decls.data[i]->var == v)
        return ival(S, E, E->decls.data[i]->value, depth + 1);
    return (Ival){NULL, NULL};
  }
  for (int i = E->loops.len - 1; i >= 0; i--) {
    IRStmt *l = E->loops.data[i];
    if (l->var != v)
      continue;
    Ival lo = ival(S, E, l->lo, depth + 1);
    Ival hi = ival(S, E, ir_sub(c, ir_add(c, l->lo, l->extent), i64(S, 1)), depth + 1);
    return (Ival){lo.lo, hi.hi};
  }
  return (Ival){(IRExpr *)e, (IRExpr *)e};
}

static Ival ival(Sch *S, Env *E, const IRExpr *e, int depth) {
  Ctx *c = S->c;
  Ival no = {NULL, NULL};
  if (depth > 64 || e->type != TC_INT64)
    return no;
  Ival a, b;
  int64_t k;
  switch (e->kind) {
  case IR_INT:
    return (Ival){(IRExpr *)e, (IRExpr *)e};
  case IR_VAR:
    return ival_var(S, E, e, depth);
  case IR_SELECT:
    a = ival(S, E, e->b, depth + 1);
    b = ival(S, E, e->c, depth + 1);
    if (!a.lo || !b.lo)
      return no;
    return (Ival){ir_min(c, a.lo, b.lo), ir_max(c, a.hi, b.hi)};
  case IR_BIN:
    a = ival(S, E, e->a, depth + 1);
    b = ival(S, E, e->b, depth + 1);
    if (!a.lo || !b.lo)
      return no;
    switch (e->op) {
    case OP_ADD:
      return (Ival){ir_add(c, a.lo, b.lo), ir_add(c, a.hi, b.hi)};
    case OP_SUB:
      return (Ival){ir_sub(c, a.lo, b.hi), ir_sub(c, a.hi, b.lo)};
    case OP_MIN:
      return (Ival){ir_min(c, a.lo, b.lo), ir_min(c, a.hi, b.hi)};
    case OP_MAX:
      return (Ival){ir_max(c, a.lo, b.lo), ir_max(c, a.hi, b.hi)};
    case OP_MUL:
      if (ir_is_const(e->b, &k) || ir_is_const(e->a, &k)) {
        Ival x = ir_is_const(e->b, &k) ? a : b;
        if (k >= 0)
          return (Ival){ir_mul(c, x.lo, i64(S, k)), ir_mul(c, x.hi, i64(S, k))};
        return (Ival){ir_mul(c, x.hi, i64(S, k)), ir_mul(c, x.lo, i64(S, k))};
      }
      return no;
    case OP_DIV:
      if (ir_is_const(e->b, &k) && k > 0)
        return (Ival){ir_floordiv(c, a.lo, e->b), ir_floordiv(c, a.hi, e->b)};
      return no;
    default:
      return no;
    }
  default:
    return no;
  }
}

typedef struct Region {
  Sch *S;
  Buffer *b;
  Env env;
  IRExpr *lo[TC_MAX_RANK], *hi[TC_MAX_RANK];
  bool whole[TC_MAX_RANK];
} Region;

static void region_expr(Region *R, const IRExpr *e) {
  if (!e)
    return;
  if (e->kind == IR_LOAD && e->buf == R->b) {
    Ctx *c = R->S->c;
    for (int d = 0; d < e->nidx; d++) {
      Ival v = ival(R->S, &R->env, e->idx[d], 0);
      if (!v.lo) {
        R->whole[d] = true;
        continue;
      }
      R->lo[d] = R->lo[d] ? ir_min(c, R->lo[d], v.lo) : v.lo;
      R->hi[d] = R->hi[d] ? ir_max(c, R->hi[d], v.hi) : v.hi;
    }
  }
  for (int i = 0; i < e->nidx; i++)
    region_expr(R, e->idx[i]);
  for (int i = 0; i < e->nargs; i++)
    region_expr(R, e->args[i]);
  region_expr(R, e->a);
  region_expr(R, e->b);
  region_expr(R, e->c);
}

static void region_stmt(Region *R, IRStmt *s) {
  if (!s)
    return;
  for (int i = 0; i < s->nidx; i++)
    region_expr(R, s->idx[i]);
  region_expr(R, s->value);
  region_expr(R, s->cond);
  region_expr(R, s->lo);
  region_expr(R, s->extent);
  if (s->kind == S_DECL && s->var->type == TC_INT64)
    vec_push(R->S->c->arena, &R->env.decls, s);
  for (int i = 0; i < s->n; i++)
    region_stmt(R, s->stmts[i]);
  if (s->kind == S_FOR)
    vec_push(R->S->c->arena, &R->env.loops, s);
  region_stmt(R, s->body);
  if (s->kind == S_FOR)
    R->env.loops.len--;
  region_stmt(R, s->then);
  region_stmt(R, s->els);
}

typedef struct Remap {
  Buffer *from, *to;
  IRExpr **lo, **stride;
  int rank;
} Remap;

static IRExpr *flat_index(Ctx *c, Remap *M, IRExpr *const *idx) {
  IRExpr *r = ir_i64(c, 0);
  for (int d = 0; d < M->rank; d++)
    r = ir_add(c, r, ir_mul(c, ir_sub(c, idx[d], M->lo[d]), M->stride[d]));
  return r;
}

static IRExpr *remap_expr(Ctx *c, void *st, IRExpr *e) {
  Remap *M = st;
  e = ir_mutate_expr_children(c, e, remap_expr, st);
  if (e->kind != IR_LOAD || e->buf != M->from)
    return e;
  IRExpr *i = flat_index(c, M, e->idx);
  return ir_load(c, M->to, &i, 1);
}

static IRStmt *remap_stmt(Ctx *c, void *st, IRStmt *s) {
  Remap *M = st;
  s = ir_mutate_stmt_children(c, s, remap_stmt, remap_expr, st);
  if (s->kind != S_STORE || s->buf != M->from)
    return s;
  IRExpr *i = flat_index(c, M, s->idx);
  IRStmt *r = ir_store(c, M->to, &i, 1, s->value);
  r->loc = s->loc;
  return r;
}

typedef VEC(IRStmt *) StmtVec;

static IRVar *local_int(Sch *S, StmtVec *decls, IRExpr *value) {
  Ctx *c = S->c;
  IRVar *v = ir_new_var(c, arena_printf(c->arena, "cr%d", S->f->nvars++), VAR_LOCAL, TC_INT64);
  IRStmt *dcl = ir_decl(c, v, simplify_expr(c, value));
  vec_push(c->arena, decls, dcl);
  return v;
}

/* Computes stage st (a temporary) inside loop `at` of its consumer. */
static void compute_at(Sch *S, Stage *st, Nest *n) {
  Ctx *c = S->c;
  Stage *cs = &S->st[st->at];
  Directive *d = st->compute;
  if (cs->loops.len && !cs->loops.data[0]->var) { /* a consumer without directives */
    Nest cn = {0};
    find_nest(S, cs, &cn);
    replay(S, cs, cn.loop);
  }
  Loop *at = cs->loops.data[find_loop(cs, d->args[1].name)];
  IRStmt *loop = loop_of(S->f->body, at->var);
  if (!loop)
    error_at(c, d->args[1].loc, "compute_at: loop '%s' of %s is not there", at->name,
             stage_name(S, cs));
  Tensor *t = st->s->lhs;
  Buffer *b = S->f->bufs[t->id];
  Region R = {S, b, {{0}, {0}}, {0}, {0}, {0}};
  region_stmt(&R, loop->body);
  StmtVec decls = {0};
  Remap M = {b, NULL, arena_alloc(c->arena, sizeof(IRExpr *) * TC_MAX_RANK),
             arena_alloc(c->arena, sizeof(IRExpr *) * TC_MAX_RANK), t->rank};
  IRExpr *len[TC_MAX_RANK];
  for (int k = 0; k < t->rank; k++) {
    IRExpr *last = ir_sub(c, ir_var(c, b->shape[k]), i64(S, 1));
    IRExpr *lo = R.whole[k] || !R.lo[k] ? i64(S, 0) : ir_max(c, R.lo[k], i64(S, 0));
    IRExpr *hi = R.whole[k] || !R.hi[k] ? last : ir_min(c, R.hi[k], last);
    M.lo[k] = ir_var(c, local_int(S, &decls, lo));
    IRExpr *l = ir_max(c, ir_add(c, ir_sub(c, hi, M.lo[k]), i64(S, 1)), i64(S, 0));
    len[k] = ir_var(c, local_int(S, &decls, l));
  }
  IRExpr *total = i64(S, 1);
  for (int k = t->rank - 1; k >= 0; k--) {
    M.stride[k] = total;
    total = ir_mul(c, total, len[k]);
  }
  /* restrict the producer's left-hand loops to the region, then schedule */
  IRStmt **orig = arena_alloc(c->arena, sizeof(IRStmt *) * (size_t)(st->s->nvars + 1));
  for (int i = 0; i < st->s->nvars; i++) {
    IRStmt *l = n->loop[i];
    if (i < t->rank) {
      IRExpr *lo = ir_max(c, l->lo, M.lo[i]);
      IRExpr *end = ir_min(c, ir_add(c, l->lo, l->extent), ir_add(c, M.lo[i], len[i]));
      l = ir_for(c, l->var, simplify_expr(c, lo), simplify_expr(c, ir_sub(c, end, lo)),
                 l->fkind, l->body);
    }
    orig[i] = l;
  }
  replay(S, st, orig);
  IRStmt *nest = rebuild(S, st, n);
  Buffer *lb = arena_alloc(c->arena, sizeof *lb);
  lb->name = arena_printf(c->arena, "lb%d", S->f->nvars++);
  lb->slot = -1;
  lb->dtype = b->dtype;
  lb->rank = 1;
  lb->local = true;
  M.to = lb;
  FailSite fs = {FAIL_NOMEM, t->loc, t, 0, false};
  vec_push(c->arena, &S->f->sites, fs);
  IRStmt *parts[3] = {NULL, remap_stmt(c, &M, nest), remap_stmt(c, &M, loop->body)};
  total = simplify_expr(c, total);
  if (t->zero_fill) { /* what the statement leaves unwritten reads 0 */
    IRVar *z = ir_new_var(c, arena_printf(c->arena, "cz%d", S->f->nvars++), VAR_LOOP, TC_INT64);
    z->user = true;
    IRExpr *zi = ir_var(c, z);
    IRExpr *zero = dtype_is_float(b->dtype) ? ir_float(c, b->dtype, 0) : ir_int(c, b->dtype, 0);
    parts[0] = ir_for(c, z, i64(S, 0), total, FOR_SERIAL, ir_store(c, lb, &zi, 1, zero));
  }
  IRStmt *alloc = ir_alloc(c, lb, total, S->f->sites.len - 1,
                           ir_block(c, parts[0] ? parts : parts + 1, parts[0] ? 3 : 2));
  alloc->loc = st->s->loc;
  vec_push(c->arena, &decls, alloc);
  Replace rp = {at->var, ir_block(c, decls.data, decls.len)};
  S->f->body->stmts[n->item] = ir_block(c, NULL, 0);
  /* T's own zero-fill (lower.c's f<stmt>_0 nest) has no reader left */
  const char *fill = arena_printf(c->arena, "f%d_0", st->si);
  for (int i = 0; i < S->f->body->n; i++)
    if (is_loop_named(S->f->body->stmts[i], fill) && ir_stmt_stores(S->f->body->stmts[i], b))
      S->f->body->stmts[i] = ir_block(c, NULL, 0);
  S->f->body = replace_body(c, &rp, S->f->body);
}

/* ---- applying ---- */

static void mark_user(IRStmt *s) {
  if (!s)
    return;
  if (s->kind == S_FOR)
    s->var->user = true;
  for (int i = 0; i < s->n; i++)
    mark_user(s->stmts[i]);
  mark_user(s->body);
  mark_user(s->then);
  mark_user(s->els);
}

static bool has_user_loop(const IRStmt *s) {
  if (!s)
    return false;
  if (s->kind == S_FOR && s->var->user)
    return true;
  for (int i = 0; i < s->n; i++)
    if (has_user_loop(s->stmts[i]))
      return true;
  return has_user_loop(s->body) || has_user_loop(s->then) || has_user_loop(s->els);
}

static void apply_stage(Sch *S, Stage *st) {
  if (!st->dirs.len || (st->compute && st->compute->kind == SD_INLINE) || directing(st))
    return;
  if (!st->s->nvars)
    return; /* compute_root of a scalar: nothing to change */
  Nest n = {0};
  find_nest(S, st, &n);
  if (st->compute && st->compute->kind == SD_COMPUTE_AT) {
    compute_at(S, st, &n);
    return;
  }
  replay(S, st, n.loop);
  IRStmt *r = rebuild(S, st, &n);
  mark_user(r);
  S->f->body->stmts[n.item] = r; /* a 0-d reduction: its loops, between acc and store */
}

/* The loop named `name` anywhere in s, or NULL. */
static IRStmt *loop_named(IRStmt *s, const char *name) {
  if (!s || is_loop_named(s, name))
    return s;
  for (int i = 0; i < s->n; i++) {
    IRStmt *r = loop_named(s->stmts[i], name);
    if (r)
      return r;
  }
  IRStmt *r = loop_named(s->body, name);
  if (!r)
    r = loop_named(s->then, name);
  return r ? r : loop_named(s->els, name);
}

/* What the schedule asks of fuse.c, fold.c and tile.c (IRFunc.want). */
static void want(Sch *S) {
  Ctx *c = S->c;
  int n = S->d->nstmts;
  StageHint *w = S->f->want = arena_alloc(c->arena, sizeof(StageHint) * (size_t)(n + 1));
  for (int i = 0; i < n; i++) {
    Stage *st = &S->st[i];
    w[i].directed = st->dirs.len > 0;
    w[i].with = w[i].fold = -1;
    if (st->compute && st->compute->kind == SD_COMPUTE_WITH) {
      w[st->with].named = true;
      w[i].with = st->with;
      w[i].with_loc = st->compute->loc;
    }
    if (st->store_at) {
      w[st->fold].named = true;
      w[i].fold = st->fold;
      w[i].fold_loc = st->store_at->loc;
    }
    if (!st->gemm)
      continue;
    const SchedArg *a = st->gemm->args;
    TileParams p = {(int)a[3].ival, (int)a[4].ival, (int)a[5].ival, (int)(a[6].ival / a[4].ival),
                    (int)(a[7].ival / a[3].ival), NULL};
    IRStmt *rows = loop_named(S->f->body, arena_printf(c->arena, "x%d_%s", i, a[0].name));
    p.i = rows ? rows->var : NULL; /* a loop of extent one is gone: tile.c's choice */
    w[i].tile = p;
    w[i].tile_loc = st->gemm->loc;
  }
}

void sched_func(Ctx *c, IRFunc *f) {
  Def *d = f->def;
  if (!d->sched || !f->body)
    return;
  Sch S = {c, d, NULL, NULL};
  check_all(&S);
  S.f = f;
  if (f->body->kind != S_BLOCK)
    f->body = ir_block(c, &f->body, 1);
  for (int i = 0; i < d->nstmts; i++)
    if (S.st[i].compute && S.st[i].compute->kind == SD_INLINE)
      do_inline(&S, &S.st[i]);
  /* consumers before the stages computed in them: the others in order,
   * then the compute_at stages from the last */
  for (int i = 0; i < d->nstmts; i++)
    if (!S.st[i].compute || S.st[i].compute->kind != SD_COMPUTE_AT)
      apply_stage(&S, &S.st[i]);
  for (int i = d->nstmts - 1; i >= 0; i--)
    if (S.st[i].compute && S.st[i].compute->kind == SD_COMPUTE_AT)
      apply_stage(&S, &S.st[i]);
  for (int i = 0; i < d->nstmts; i++) /* compute_at moved nests: mark what is there */
    if (S.st[i].dirs.len)
      for (int j = 0; j < S.st[i].loops.len; j++)
        if (S.st[i].loops.data[j]->var)
          S.st[i].loops.data[j]->var->user = true;
  for (int i = 0; i < f->body->n; i++) /* and the nests they are in */
    if (has_user_loop(f->body->stmts[i]))
      mark_user(f->body->stmts[i]);
  want(&S);
  f->body = simplify_stmt(c, f->body);
}

/* The stage whose loop variable v is, as sched_stage_of_loop. */
static int stmt_of_var(const IRVar *v);

int sched_stage_of_loop(const IRVar *v) { return stmt_of_var(v); }

StageHint *sched_did(Ctx *c, IRFunc *f) {
  if (!f->did) {
    int n = f->def ? f->def->nstmts : 0;
    f->did = arena_alloc(c->arena, sizeof(StageHint) * (size_t)(n + 1));
    for (int i = 0; i <= n; i++)
      f->did[i].with = f->did[i].fold = -1;
  }
  return f->did;
}

bool sched_directed(const IRFunc *f, const IRVar *v) {
  int si = f->want ? stmt_of_var(v) : -1;
  return si >= 0 && si < f->def->nstmts && (f->want[si].directed || f->want[si].named);
}

/* ---- vector loops, at the autoscheduler's turn ---- */

static IRStmt *vectorize_stmt(Ctx *c, void *st, IRStmt *s) {
  IRFunc *f = st;
  if (s->kind == S_FOR && s->fkind == FOR_VECTORIZED && s->var->user)
    return schedule_vector_loop(c, f, s); /* unchanged when not affine: gathers */
  return ir_mutate_stmt_children(c, s, vectorize_stmt, NULL, st);
}

IRStmt *sched_vectorize(Ctx *c, IRFunc *f, IRStmt *nest) {
  return vectorize_stmt(c, f, nest);
}

/* ---- printing the schedule in use ---- */

static void print_directive(Buf *b, const Directive *d) {
  buf_printf(b, ".%s(", sched_dir_names[d->kind]);
  for (int i = 0; i < d->nargs; i++) {
    if (i)
      buf_puts(b, ", ");
    if (d->args[i].name)
      buf_puts(b, d->args[i].name);
    else
      buf_printf(b, "%lld", (long long)d->args[i].ival);
  }
  buf_puts(b, ")");
}

typedef struct Found {
  const Def *d;
  const FailSite *sites;  /* the function's */
  const char *prefix;     /* x<stmt>_ */
  const Stmt *s;
  bool seen[64];          /* by variable id: its loop is there */
  ForKind kind[64];       /* parallel or vectorized wins over serial */
  const IRVar *host;      /* the innermost foreign loop around one of its loops */
  bool stored;            /* some store writes the tensor's buffer */
  bool odd;               /* a loop of the autoscheduler's inside its loops */
  bool folded;            /* a local buffer holds it (fold.c) */
  bool recip;             /* schedule.c's reciprocal of a divisor (r<k>) in its loops */
  const IRVar *store_host; /* the outermost loop around a store to it */
} Found;

static int var_of(const Found *F, const IRVar *v) {
  size_t n = strlen(F->prefix);
  if (strncmp(v->name, F->prefix, n))
    return -1;
  for (int i = 0; i < F->s->nvars && i < 64; i++)
    if (!strcmp(v->name + n, F->s->vars[i]->name))
      return i;
  return -1;
}

static int stmt_of_var(const IRVar *v);

/* Whether v is the loop of a statement's index variable (x<k>_<name>). */
static bool is_stage_loop(const Def *d, const IRVar *v) {
  int k = stmt_of_var(v);
  if (k < 0 || k >= d->nstmts)
    return false;
  const char *rest = strchr(v->name, '_') + 1;
  for (int i = 0; i < d->stmts[k]->nvars; i++)
    if (!strcmp(rest, d->stmts[k]->vars[i]->name))
      return true;
  return false;
}

static void scan(Found *F, const IRStmt *s, const Buffer *buf, const IRVar *foreign, bool in,
                 const IRVar *outer) {
  if (!s)
    return;
  if (s->kind == S_STORE && s->buf == buf) {
    F->stored = true;
    if (!F->store_host)
      F->store_host = outer;
  }
  if (s->kind == S_ALLOC && F->sites && F->sites[s->site].tensor == buf->tensor)
    F->folded = true;
  if (s->kind == S_FOR && !outer)
    outer = s->var;
  if (in && s->kind == S_DECL && s->var->name[0] == 'r' && s->var->name[1] >= '0' &&
      s->var->name[1] <= '9')
    F->recip = true;
  if (s->kind == S_FOR) {
    int k = var_of(F, s->var);
    if (k >= 0) {
      F->seen[k] = true;
      if (s->fkind != FOR_SERIAL)
        F->kind[k] = s->fkind;
      if (foreign && !F->host)
        F->host = foreign;
      in = true;
    } else {
      foreign = s->var;
      F->odd |= (in && !is_stage_loop(F->d, s->var)) ||
                !strncmp(s->var->name, F->prefix, strlen(F->prefix));
    }
  }
  for (int i = 0; i < s->n; i++)
    scan(F, s->stmts[i], buf, foreign, in, outer);
  scan(F, s->body, buf, foreign, in, outer);
  scan(F, s->then, buf, foreign, in, outer);
  scan(F, s->els, buf, foreign, in, outer);
}

/* The statement whose loop variable v is (x<k>_...), or -1. */
static int stmt_of_var(const IRVar *v) {
  const char *p = v->name;
  if (*p++ != 'x' || *p < '0' || *p > '9')
    return -1;
  int k = 0;
  while (*p >= '0' && *p <= '9' && k < 1000000)
    k = k * 10 + (*p++ - '0');
  return *p == '_' ? k : -1;
}

static void stage_label(char *out, size_t n, const Def *d, int si) {
  const Stmt *s = d->stmts[si];
  int k = 0;
  for (int i = 0; i < si; i++)
    k += d->stmts[i]->lhs == s->lhs;
  if (k)
    snprintf(out, n, "%.100s.update(%d)", s->lhs->name, k - 1);
  else
    snprintf(out, n, "%.100s", s->lhs->name);
}

/* The group of stages whose nests fuse.c made one: its first stage. */
static int group_of(const IRFunc *f, int si) {
  return f->did && f->did[si].with >= 0 ? f->did[si].with : si;
}

/* How stage `from` names a stage of group h in compute_with (before it) or
 * store_at (at or before it): the last stage writing h's tensor, which must
 * be in the group; -1 if it is not. */
static int name_in_group(const IRFunc *f, int h, int from, bool self) {
  const Def *d = f->def;
  int r = -1;
  for (int i = 0; i < (self ? from + 1 : from); i++)
    if (d->stmts[i]->lhs == d->stmts[h]->lhs)
      r = i;
  return r >= 0 && group_of(f, r) == h && d->stmts[r]->lhs->rank ? r : -1;
}

/* What fuse.c, fold.c and tile.c did with stage si, as compute_with,
 * store_at and gemm (IRFunc.did); false when they did nothing with it or
 * the directives cannot name it. */
static bool print_did(Buf *b, const IRFunc *f, int si) {
  const Def *d = f->def;
  const Stmt *s = d->stmts[si];
  const StageHint *h = f->did ? &f->did[si] : NULL;
  char stage[160];
  stage_label(stage, sizeof stage, d, si);
  if (h && h->tile.mr) {
    const TileParams *p = &h->tile;
    int rank = s->lhs->rank;
    buf_printf(b, "  %s.gemm(%s, %s, %s, %d, %d, %d, %d, %d)\n", stage,
               strchr(p->i->name, '_') + 1, s->vars[rank - 1]->name, s->vars[rank]->name, p->mr,
               p->nr, p->kc, p->nct * p->nr, p->mch * p->mr);
    return true;
  }
  int with = h && h->with >= 0 ? name_in_group(f, h->with, si, false) : -1;
  int fold = h && h->fold >= 0 ? name_in_group(f, group_of(f, h->fold), si, true) : -1;
  if ((h && h->with >= 0 && with < 0) || (h && h->fold >= 0 && fold < 0) ||
      (with < 0 && fold < 0))
    return false;
  buf_printf(b, "  %s", stage);
  if (with >= 0)
    buf_printf(b, ".compute_with(%s, %s)", d->stmts[with]->lhs->name,
               d->stmts[with]->vars[0]->name);
  if (fold >= 0)
    buf_printf(b, ".store_at(%s, %s)", d->stmts[fold]->lhs->name, d->stmts[fold]->vars[0]->name);
  buf_puts(b, "\n");
  return true;
}

/* What the autoscheduler made of statement si, as directives or a comment. */
static void print_auto(Buf *b, const IRFunc *f, const Found *all, int si) {
  const Def *d = f->def;
  const Stmt *s = d->stmts[si];
  const Found *F = &all[si];
  char stage[160], host[160];
  stage_label(stage, sizeof stage, d, si);
  int seen = 0;
  for (int i = 0; i < s->nvars && i < 64; i++)
    seen += F->seen[i];
  if (!s->nvars) {
    buf_printf(b, "  # %s: no loops\n", stage);
    return;
  }
  if (print_did(b, f, si))
    return;
  if (F->folded) {
    buf_printf(b, "  # %s: fused into its reader's loop and held in a local buffer (fold.c)\n",
               stage);
    return;
  }
  if (!seen && !F->stored && s->lhs->role == T_TEMP) {
    buf_printf(b, "  %s.inline()\n", stage);
    return;
  }
  int sh = F->store_host ? stmt_of_var(F->store_host) : -1;
  if (!seen && sh >= 0 && sh < d->nstmts && sh != si) {
    stage_label(host, sizeof host, d, sh);
    buf_printf(b, "  # %s: fused into the loop nest of %s by the autoscheduler\n", stage, host);
    return;
  }
  if (!seen) {
    buf_printf(b, "  # %s: register-tiled over packed panels (tile.c) or folded; no directive "
               "names that\n", stage);
    return;
  }
  int hs = F->host ? stmt_of_var(F->host) : -1;
  if (F->host && hs < 0 && s->nvars == 1 && F->host->name[0] == 'o' &&
      F->kind[0] == FOR_VECTORIZED) { /* schedule.c's blocks of a 1-d loop */
    const char *v = s->vars[0]->name;
    buf_printf(b, "  %s.split(%s, %s_o, %s_i, 4096).parallel(%s_o).vectorize(%s_i)\n", stage, v,
               v, v, v, v);
    return;
  }
  if (F->host && hs >= 0 && hs < d->nstmts) {
    stage_label(host, sizeof host, d, hs);
    buf_printf(b, "  # %s: fused into the loop nest of %s by the autoscheduler\n", stage, host);
    return;
  }
  for (int j = si + 1; f->did && j < d->nstmts; j++)
    if (f->did[j].with == si) {
      buf_printf(b, "  # %s: its nest also runs the stages computed with it; its loops are the "
                 "autoscheduler's\n", stage);
      return;
    }
  for (int j = 0; j < d->nstmts; j++)
    if (j != si && ((all[j].host && stmt_of_var(all[j].host) == si) ||
                    (all[j].store_host && stmt_of_var(all[j].store_host) == si))) {
      stage_label(host, sizeof host, d, j);
      buf_printf(b, "  # %s: its loop nest also computes %s (fused by the autoscheduler)\n",
                 stage, host);
      return;
    }
  if (F->host || F->odd || seen < s->nvars) {
    buf_printf(b, "  # %s: scheduled by the autoscheduler in a way no directive names\n", stage);
    return;
  }
  buf_printf(b, "  %s", stage);
  bool any = false;
  for (int i = 0; i < s->nvars && i < 64; i++)
    if (F->kind[i] == FOR_PARALLEL || F->kind[i] == FOR_VECTORIZED) {
      buf_printf(b, ".%s(%s)", F->kind[i] == FOR_PARALLEL ? "parallel" : "vectorize",
                 s->vars[i]->name);
      any = true;
    }
  if (!any)
    buf_puts(b, ".compute_root()");
  buf_puts(b, "\n");
  if (F->recip)
    buf_printf(b, "  # %s: the autoscheduler also divides by multiplying with a reciprocal; "
               "the directives above do not\n", stage);
}

void sched_print(Buf *b, const IRFunc *f) {
  const Def *d = f->def;
  Found *all = calloc((size_t)d->nstmts + 1, sizeof *all);
  char (*prefix)[32] = calloc((size_t)d->nstmts + 1, sizeof *prefix);
  if (!all || !prefix) {
    free(all);
    free(prefix);
    b->oom = true;
    return;
  }
  for (int si = 0; si < d->nstmts; si++) {
    snprintf(prefix[si], sizeof prefix[si], "x%d_", si);
    all[si].prefix = prefix[si];
    all[si].d = d;
    all[si].s = d->stmts[si];
    all[si].sites = f->sites.data;
    scan(&all[si], f->body, f->bufs[d->stmts[si]->lhs->id], NULL, false, NULL);
  }
  buf_printf(b, "schedule %s {\n", d->name);
  for (int si = 0; si < d->nstmts; si++) {
    bool user = false;
    for (int i = 0; d->sched && i < d->sched->ndirs; i++)
      user |= d->sched->dirs[i].si == si;
    if (!user) {
      print_auto(b, f, all, si);
      continue;
    }
    char stage[160];
    stage_label(stage, sizeof stage, d, si);
    buf_printf(b, "  %s", stage);
    for (int i = 0; i < d->sched->ndirs; i++)
      if (d->sched->dirs[i].si == si)
        print_directive(b, &d->sched->dirs[i]);
    buf_puts(b, "\n");
  }
  buf_puts(b, "}\n");
  free(all);
  free(prefix);
}
