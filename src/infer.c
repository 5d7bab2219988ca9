/*
 * infer.c — range inference, TC's way (docs/language.md "Range inference").
 *
 * Requires a checked Def (sema_program).  For each statement in program
 * order it
 *
 *  1. collects one Constraint per subscript of every read on the right-hand
 *     side (also reads nested inside subscripts, and the reads of `exists`
 *     clauses) and, when the written tensor's size is already known (a typed
 *     output, or a later definition), per left-hand index: 0 <= sub < size.
 *     Dimensions under a boundary condition give none.  A subscript is
 *     linearized (infer_affine) into sum(coef_v * v) + rest, with integer
 *     coefficients and `rest` an int64 IR expression over size symbols;
 *
 *  2. solves: variables with a `where` range first; then in rounds, each
 *     unsolved variable that has a nonzero coefficient in some constraint
 *     whose other variables were all solved in earlier rounds gets the
 *     intersection, over those constraints, of the largest range keeping the
 *     subscript in bounds for every value of the other variables (their worst
 *     case).  For c*v + r with r in [rmin, rmax]:
 *         c > 0:  v in [ceil(-rmin / c), floor((S - 1 - rmax) / c) + 1)
 *         c < 0:  v in [ceil((rmax - S + 1) / |c|), floor(rmin / |c|) + 1)
 *     Constraints used that way hold by construction and are marked
 *     `consumed`; the others are left to lower.c's run-time checks;
 *
 *  3. reports what cannot be solved (a variable only coupled with other
 *     unsolved ones, or never constrained), a range that is provably empty,
 *     and a left-hand range of a tensor's first definition that provably
 *     starts below 0 (it would write before the tensor's first element);
 *
 *  4. sizes the tensor at its first definition: extent d is the upper bound
 *     of left-hand index d, and `zero_fill` is set when the written range
 *     may not cover the whole tensor.
 *
 * Subscripts are evaluated in 64-bit integer arithmetic, so every bound is an
 * int64 IR expression over one VAR_SIZE variable per size symbol, "z_<name>",
 * created here and kept in SizeSym.var for lower.c.  Casts to integer types
 * inside subscripts and where bounds are treated as the identity.
 */
#include "tc.h"

#include <string.h>

/* ---- AST -> int64 IR (index-free integer expressions) ---- */

static bool index_free(const Expr *e) {
  if (!e)
    return true;
  if (e->kind == EX_INDEX || e->kind == EX_ACCESS || e->kind == EX_IDENT || e->kind == EX_CALL)
    return false;
  for (int i = 0; i < e->nargs; i++)
    if (!index_free(e->args[i]))
      return false;
  return index_free(e->a) && index_free(e->b) && index_free(e->c);
}

/* The int64 value of an index-free integer expression of constants and size
 * symbols, or NULL when it is something else (floats, calls...). */
static IRExpr *to_ir(Ctx *c, const Expr *e) {
  IRExpr *a, *b;
  switch (e->kind) {
  case EX_INT:
    return ir_i64(c, e->ival);
  case EX_SIZE:
    IASSERT(c, e->sym && e->sym->var);
    return ir_var(c, e->sym->var);
  case EX_CAST:
    return e->nargs == 1 && dtype_is_int(e->type) && dtype_is_int(e->args[0]->type)
               ? to_ir(c, e->args[0])
               : NULL;
  case EX_UNARY:
    if (e->op != OP_NEG || !(a = to_ir(c, e->a)))
      return NULL;
    return ir_un(c, OP_NEG, a);
  case EX_BINARY:
    switch (e->op) {
    case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_MOD: case OP_MIN: case OP_MAX:
      if (!(a = to_ir(c, e->a)) || !(b = to_ir(c, e->b)))
        return NULL;
      return ir_bin(c, (BinOp)e->op, a, b);
    default:
      return NULL;
    }
  default:
    return NULL;
  }
}

/* ---- affine subscripts ---- */

static bool add_ovf(int64_t a, int64_t b, int64_t *out) {
  if ((b > 0 && a > INT64_MAX - b) || (b < 0 && a < INT64_MIN - b))
    return false;
  *out = a + b;
  return true;
}

static bool mul_ovf(int64_t a, int64_t b, int64_t *out) {
  if (a != 0 && b != 0) {
    if ((a == -1 && b == INT64_MIN) || (b == -1 && a == INT64_MIN))
      return false;
    int64_t p = (int64_t)((uint64_t)a * (uint64_t)b);
    if (p / b != a)
      return false;
  }
  *out = a * b;
  return true;
}

/* Adds scale * e to (coef, rest). */
static bool linearize(Ctx *c, Stmt *s, const Expr *e, int64_t scale, int64_t *coef, IRExpr **rest) {
  if (index_free(e)) {
    IRExpr *x = to_ir(c, e);
    if (!x)
      return false;
    *rest = ir_add(c, *rest, ir_mul(c, ir_i64(c, scale), x));
    return true;
  }
  int64_t k;
  switch (e->kind) {
  case EX_INDEX:
    if (e->var->id < 0 || e->var->id >= s->nvars)
      return false;
    return add_ovf(coef[e->var->id], scale, &coef[e->var->id]);
  case EX_CAST:
    return e->nargs == 1 && dtype_is_int(e->type) && linearize(c, s, e->args[0], scale, coef, rest);
  case EX_UNARY:
    return e->op == OP_NEG && mul_ovf(scale, -1, &k) && linearize(c, s, e->a, k, coef, rest);
  case EX_BINARY:
    switch (e->op) {
    case OP_ADD:
      return linearize(c, s, e->a, scale, coef, rest) && linearize(c, s, e->b, scale, coef, rest);
    case OP_SUB:
      return linearize(c, s, e->a, scale, coef, rest) && mul_ovf(scale, -1, &k) &&
             linearize(c, s, e->b, k, coef, rest);
    case OP_MUL: {
      /* one side must be a constant: `2*h`, `h*(1+1)` */
      const Expr *cst = index_free(e->a) ? e->a : index_free(e->b) ? e->b : NULL;
      if (!cst)
        return false;
      IRExpr *x = to_ir(c, cst);
      int64_t v;
      if (!x || !ir_is_const(simplify_expr(c, x), &v) || !mul_ovf(scale, v, &k))
        return false;
      return linearize(c, s, cst == e->a ? e->b : e->a, k, coef, rest);
    }
    default:
      return false;
    }
  default:
    return false;
  }
}

bool infer_affine(Ctx *c, Stmt *s, Expr *sub, int64_t *coef, IRExpr **rest) {
  for (int i = 0; i < s->nvars; i++)
    coef[i] = 0;
  *rest = ir_i64(c, 0);
  bool ok = linearize(c, s, sub, 1, coef, rest);
  for (int i = 0; ok && i < s->nvars; i++)
    if (coef[i] == INT64_MIN) /* keeps -coef representable */
      ok = false;
  if (!ok) {
    for (int i = 0; i < s->nvars; i++)
      coef[i] = 0;
    *rest = NULL;
    return false;
  }
  *rest = simplify_expr(c, *rest);
  return true;
}

/* ---- source text of expressions, for messages ---- */

static int src_prec(const Expr *e) {
  if (e->kind == EX_SELECT)
    return 0;
  if (e->kind == EX_UNARY)
    return 7;
  if (e->kind != EX_BINARY)
    return 8;
  switch (e->op) {
  case OP_OR: return 1;
  case OP_AND: return 2;
  case OP_LT: case OP_LE: case OP_GT: case OP_GE: case OP_EQ: case OP_NE: return 3;
  case OP_ADD: case OP_SUB: return 5;
  case OP_MUL: case OP_DIV: case OP_MOD: return 6;
  default: return 8;
  }
}

static void print_src(Buf *b, const Expr *e);

static void print_src_prec(Buf *b, const Expr *e, int need) {
  if (src_prec(e) < need) {
    buf_puts(b, "(");
    print_src(b, e);
    buf_puts(b, ")");
  } else {
    print_src(b, e);
  }
}

static void print_src_args(Buf *b, const char *name, Expr *const *args, int n) {
  buf_printf(b, "%s(", name);
  for (int i = 0; i < n; i++) {
    if (i)
      buf_puts(b, ", ");
    print_src(b, args[i]);
  }
  buf_puts(b, ")");
}

/* TC-like text with the parentheses precedence needs. */
static void print_src(Buf *b, const Expr *e) {
  switch (e->kind) {
  case EX_INT:
    buf_printf(b, "%lld", (long long)e->ival);
    return;
  case EX_FLOAT:
    buf_printf(b, "%g", e->fval);
    return;
  case EX_IDENT:
    buf_puts(b, e->name);
    return;
  case EX_INDEX:
    buf_puts(b, e->var->name);
    return;
  case EX_SIZE:
    buf_puts(b, e->sym->name);
    return;
  case EX_CALL:
    print_src_args(b, e->name, e->args, e->nargs);
    return;
  case EX_ACCESS:
    if (e->nargs == 0)
      buf_puts(b, e->tensor->name);
    else
      print_src_args(b, e->tensor->name, e->args, e->nargs);
    return;
  case EX_BUILTIN:
    print_src_args(b, builtin_info[e->builtin].name, e->args, e->nargs);
    return;
  case EX_CAST:
    print_src_args(b, dtype_info[e->type].name, e->args, e->nargs);
    return;
  case EX_UNARY:
    buf_puts(b, unop_names[e->op]);
    print_src_prec(b, e->a, e->a->kind == EX_UNARY ? 8 : 7);
    return;
  case EX_BINARY:
    if (e->op == OP_MIN || e->op == OP_MAX) {
      Expr *args[2] = {e->a, e->b};
      print_src_args(b, binop_names[e->op], args, 2);
      return;
    }
    print_src_prec(b, e->a, src_prec(e));
    buf_printf(b, " %s ", binop_names[e->op]);
    print_src_prec(b, e->b, src_prec(e) + 1);
    return;
  case EX_SELECT:
    print_src_prec(b, e->a, 1);
    buf_puts(b, " ? ");
    print_src_prec(b, e->b, 1);
    buf_puts(b, " : ");
    print_src(b, e->c);
    return;
  }
}

static const char *src_text(Ctx *c, const Expr *e) {
  Buf b = {0};
  print_src(&b, e);
  char *s = arena_strdup(c->arena, b.s ? b.s : "");
  buf_free(&b);
  return s;
}

static const char *ir_text(Ctx *c, const IRExpr *e) {
  Buf b = {0};
  ir_print_user(&b, e);
  char *s = arena_strdup(c->arena, b.s ? b.s : "");
  buf_free(&b);
  return s;
}

/* ---- collecting constraints ---- */

typedef struct Infer {
  Ctx *c;
  Def *d;
  Stmt *s;
  VEC(Constraint) cons;
  VEC(const Expr *) access; /* the read each constraint came from (NULL: write) */
} Infer;

static void add_constraint(Infer *I, Tensor *t, int dim, Expr *sub, const Expr *access, Loc loc,
                           bool write, bool conditional, bool is_exists) {
  Ctx *c = I->c;
  Stmt *s = I->s;
  Constraint k = {0};
  k.loc = loc;
  k.tensor = t;
  k.dim = dim;
  k.sub = sub;
  k.coef = arena_alloc(c->arena, sizeof(int64_t) * (size_t)(s->nvars ? s->nvars : 1));
  k.affine = infer_affine(c, s, sub, k.coef, &k.rest);
  k.size = t->size[dim];
  k.write = write;
  k.conditional = conditional;
  k.is_exists = is_exists;
  vec_push(c->arena, &I->cons, k);
  vec_push(c->arena, &I->access, access);
}

/* Every read in e; `conditional` under a branch of ?: (or the right operand
 * of && / ||, which is evaluated only sometimes). */
static void collect(Infer *I, Expr *e, bool conditional, bool is_exists) {
  if (!e)
    return;
  switch (e->kind) {
  case EX_ACCESS: {
    Tensor *t = e->tensor;
    if (!t->size)
      error_at(I->c, e->loc, "'%s' is read before its size is known", t->name);
    for (int d = 0; d < e->nargs; d++) {
      if (!(t->role == T_INPUT && t->bc != BC_NONE && t->bc_dim[d]))
        add_constraint(I, t, d, e->args[d], e, e->loc, false, conditional, is_exists);
      collect(I, e->args[d], conditional, is_exists);
    }
    return;
  }
  case EX_SELECT:
    collect(I, e->a, conditional, is_exists);
    collect(I, e->b, true, is_exists);
    collect(I, e->c, true, is_exists);
    return;
  case EX_BINARY:
    collect(I, e->a, conditional, is_exists);
    collect(I, e->b, conditional || e->op == OP_AND || e->op == OP_OR, is_exists);
    return;
  default:
    collect(I, e->a, conditional, is_exists);
    collect(I, e->b, conditional, is_exists);
    collect(I, e->c, conditional, is_exists);
    for (int i = 0; i < e->nargs; i++)
      collect(I, e->args[i], conditional, is_exists);
    return;
  }
}

static Expr *lhs_index(Ctx *c, Stmt *s, int d);

static void collect_writes(Infer *I) {
  Stmt *s = I->s;
  Tensor *t = s->lhs;
  if (!t->size)
    return; /* this statement sizes it */
  for (int d = 0; d < s->nidx && d < t->rank; d++) {
    Expr *x = lhs_index(I->c, s, d);
    add_constraint(I, t, d, x, NULL, x->loc, true, false, false);
  }
}

/* ---- solving ---- */

static Where *where_of(Stmt *s, IndexVar *v) {
  for (int i = 0; i < s->nwheres; i++)
    if (s->wheres[i].kind == W_RANGE && !strcmp(s->wheres[i].name, v->name))
      return &s->wheres[i];
  return NULL;
}

/* The range of v allowed by constraint k, the other variables taking their
 * worst case over their (solved) ranges. */
static void bound_from(Ctx *c, Stmt *s, const Constraint *k, int v, IRExpr **lo, IRExpr **hi) {
  IRExpr *rmin = k->rest, *rmax = k->rest;
  for (int j = 0; j < s->nvars; j++) {
    int64_t cj = k->coef[j];
    if (j == v || cj == 0)
      continue;
    IRExpr *cc = ir_i64(c, cj), *l = s->vars[j]->lo, *h1 = ir_sub(c, s->vars[j]->hi, ir_i64(c, 1));
    rmin = ir_add(c, rmin, ir_mul(c, cc, cj > 0 ? l : h1));
    rmax = ir_add(c, rmax, ir_mul(c, cc, cj > 0 ? h1 : l));
  }
  int64_t cv = k->coef[v];
  IRExpr *S = k->size, *one = ir_i64(c, 1);
  if (cv > 0) {
    IRExpr *a = ir_i64(c, cv);
    *lo = ir_floordiv(c, ir_add(c, ir_sub(c, ir_i64(c, 0), rmin), ir_i64(c, cv - 1)), a);
    *hi = ir_add(c, ir_floordiv(c, ir_sub(c, ir_sub(c, S, one), rmax), a), one);
  } else {
    int64_t av = -cv; /* cv > INT64_MIN: infer_affine rejects it */
    IRExpr *a = ir_i64(c, av);
    *lo = ir_floordiv(c, ir_add(c, ir_sub(c, rmax, S), a), a);
    *hi = ir_add(c, ir_floordiv(c, rmin, a), one);
  }
  *lo = simplify_expr(c, *lo);
  *hi = simplify_expr(c, *hi);
}

/* The size symbol (or number) to suggest in a where clause. */
static const char *size_hint(Ctx *c, IRExpr *size) {
  int64_t v;
  if (size && size->kind == IR_VAR && size->var->sym)
    return size->var->sym->name;
  if (size && ir_is_const(size, &v))
    return arena_printf(c->arena, "%lld", (long long)v);
  return "N";
}

static bool uses_var(const Expr *e, const IndexVar *v) {
  if (!e)
    return false;
  if (e->kind == EX_INDEX && e->var == v)
    return true;
  for (int i = 0; i < e->nargs; i++)
    if (uses_var(e->args[i], v))
      return true;
  return uses_var(e->a, v) || uses_var(e->b, v) || uses_var(e->c, v);
}

TC_NORETURN static void unsolved_error(Infer *I, IndexVar *v, int vi, const int *round) {
  Ctx *c = I->c;
  Stmt *s = I->s;
  for (int i = 0; i < I->cons.len; i++) {
    Constraint *k = &I->cons.data[i];
    if (!k->affine || k->coef[vi] == 0)
      continue;
    for (int j = 0; j < s->nvars; j++)
      if (j != vi && k->coef[j] != 0 && round[j] < 0) {
        const Expr *acc = I->access.data[i];
        const char *where = acc ? src_text(c, acc)
                                : arena_printf(c->arena, "the left-hand side of '%s'", s->lhs->name);
        error_at(c, k->loc,
                 "cannot infer the range of '%s': it only appears together with '%s' in %s; "
                 "add a where clause, e.g. 'where %s in 0:%s'",
                 v->name, s->vars[j]->name, where, v->name, size_hint(c, k->size));
      }
  }
  const char *hint = "N";
  for (int i = I->cons.len - 1; i >= 0; i--)
    if (uses_var(I->cons.data[i].sub, v))
      hint = size_hint(c, I->cons.data[i].size);
  error_at(c, v->loc,
           "cannot infer the range of index '%s': no read constrains it; add a where clause, "
           "e.g. 'where %s in 0:%s'",
           v->name, v->name, hint);
}

static void solve(Infer *I) {
  Ctx *c = I->c;
  Stmt *s = I->s;
  int n = s->nvars;
  int *round = arena_alloc(c->arena, sizeof(int) * (size_t)(n ? n : 1));
  for (int v = 0; v < n; v++) {
    IndexVar *x = s->vars[v];
    round[v] = -1;
    x->lo = x->hi = NULL;
    if (!x->has_where)
      continue;
    Where *w = where_of(s, x);
    IASSERT(c, w);
    x->lo = to_ir(c, w->lo);
    x->hi = to_ir(c, w->hi);
    if (!x->lo || !x->hi)
      error_at(c, w->loc, "the bounds of a where range must be integer expressions of constants "
                          "and size symbols");
    x->lo = simplify_expr(c, x->lo);
    x->hi = simplify_expr(c, x->hi);
    round[v] = 0;
  }
  for (int r = 1;; r++) {
    bool progress = false;
    for (int v = 0; v < n; v++) {
      if (round[v] >= 0)
        continue;
      IRExpr *lo = NULL, *hi = NULL;
      for (int i = 0; i < I->cons.len; i++) {
        Constraint *k = &I->cons.data[i];
        if (!k->affine || k->coef[v] == 0)
          continue;
        bool ready = true;
        for (int j = 0; j < n && ready; j++)
          if (j != v && k->coef[j] != 0 && (round[j] < 0 || round[j] >= r))
            ready = false;
        if (!ready)
          continue;
        IRExpr *l, *h;
        bound_from(c, s, k, v, &l, &h);
        lo = lo ? simplify_expr(c, ir_max(c, lo, l)) : l;
        hi = hi ? simplify_expr(c, ir_min(c, hi, h)) : h;
        k->consumed = true;
      }
      if (lo) {
        s->vars[v]->lo = lo;
        s->vars[v]->hi = hi;
        round[v] = r;
        progress = true;
      }
    }
    if (!progress)
      break;
  }
  for (int v = 0; v < n; v++)
    if (round[v] < 0)
      unsolved_error(I, s->vars[v], v, round);
}

/* ": no value keeps every access in bounds: A(i), A((i + 3))" — the accesses
 * that determined the range of var v, for the empty-range message. */
static const char *culprits(Infer *I, int v) {
  Buf b = {0};
  int n = 0;
  for (int k = 0; k < I->cons.len && n < 4; k++) {
    const Constraint *cn = &I->cons.data[k];
    const Expr *a = I->access.data[k];
    if (!cn->consumed || !cn->coef || !cn->coef[v] || !a)
      continue;
    bool seen = false;
    for (int j = 0; j < k && !seen; j++)
      seen = I->access.data[j] == a && I->cons.data[j].consumed && I->cons.data[j].coef &&
             I->cons.data[j].coef[v];
    if (seen)
      continue;
    buf_puts(&b, n++ ? ", " : ": no value keeps every access in bounds: ");
    ast_print_expr(&b, a);
  }
  const char *r = arena_strdup(I->c->arena, b.s ? b.s : "");
  buf_free(&b);
  return r;
}

/* Empty ranges, and left-hand ranges starting below the tensor. */
static void check_ranges(Infer *I) {
  Ctx *c = I->c;
  Stmt *s = I->s;
  for (int v = 0; v < s->nvars; v++) {
    IndexVar *x = s->vars[v];
    Where *w = x->has_where ? where_of(s, x) : NULL;
    Loc loc = w ? w->loc : x->loc;
    int64_t len;
    if (ir_is_const(simplify_expr(c, ir_sub(c, x->hi, x->lo)), &len) && len <= 0)
      error_at(c, loc, "the range of '%s' is empty: [%s, %s)%s", x->name, ir_text(c, x->lo),
               ir_text(c, x->hi), w ? "" : culprits(I, v));
    if (v < s->nidx && s->first_def && !s->lhs->typed &&
        simplify_prove_le(c, x->lo, ir_i64(c, -1)))
      error_at(c, loc,
               "the range of left-hand index '%s' is [%s, %s), which starts below 0: '%s' "
               "cannot be written there; restrict it with a where clause starting at 0 or above",
               x->name, ir_text(c, x->lo), ir_text(c, x->hi), s->lhs->name);
  }
}

static bool provably_equal(Ctx *c, IRExpr *a, IRExpr *b) {
  return simplify_prove_le(c, a, b) && simplify_prove_le(c, b, a);
}

static Expr *lhs_index(Ctx *c, Stmt *s, int d) {
  Expr *x = arena_alloc(c->arena, sizeof *x);
  x->kind = EX_INDEX;
  x->loc = s->idx_locs ? s->idx_locs[d] : s->lhs_loc;
  x->type = TC_INT32;
  x->var = s->vars[d];
  return x;
}

/* Sizes the written tensor at its first definition.  A left-hand range that
 * may start below 0 (`O(i) = A(2*i + N/2)`) gets a write constraint that
 * nothing consumed, so that it is checked before the statement runs. */
static void size_lhs(Infer *I) {
  Ctx *c = I->c;
  Stmt *s = I->s;
  Tensor *t = s->lhs;
  if (!s->first_def)
    return;
  bool partial = false;
  if (!t->size) {
    t->size = arena_alloc(c->arena, sizeof(IRExpr *) * (size_t)(t->rank > 0 ? t->rank : 1));
    for (int d = 0; d < t->rank; d++) {
      IndexVar *x = s->vars[d];
      t->size[d] = x->hi;
      if (!provably_equal(c, x->lo, ir_i64(c, 0)))
        partial = true;
      if (!simplify_prove_le(c, ir_i64(c, 0), x->lo)) {
        Expr *sub = lhs_index(c, s, d);
        add_constraint(I, t, d, sub, NULL, sub->loc, true, false, false);
      }
    }
  } else {
    for (int d = 0; d < t->rank; d++)
      if (!provably_equal(c, s->vars[d]->lo, ir_i64(c, 0)) ||
          !provably_equal(c, s->vars[d]->hi, t->size[d]))
        partial = true;
  }
  t->zero_fill = partial;
}

static void infer_stmt(Ctx *c, Def *d, Stmt *s) {
  Infer I = {0};
  I.c = c;
  I.d = d;
  I.s = s;
  IASSERT(c, s->lhs && s->nidx == (s->lhs->rank > 0 ? s->lhs->rank : 0));
  collect_writes(&I);
  collect(&I, s->rhs, false, false);
  for (int i = 0; i < s->nexists; i++)
    collect(&I, s->exists[i], true, true);
  solve(&I);
  check_ranges(&I);
  size_lhs(&I);
  s->cons = I.cons.data;
  s->ncons = I.cons.len;
}

/* Size variables, and the sizes of declared tensors. */
static void declare_sizes(Ctx *c, Def *d) {
  for (int i = 0; i < d->nsyms; i++) {
    SizeSym *y = d->syms[i];
    y->var = ir_new_var(c, arena_printf(c->arena, "z_%s", y->name), VAR_SIZE, TC_INT64);
    y->var->sym = y;
  }
  for (int i = 0; i < d->ntensors; i++) {
    Tensor *t = d->tensors[i];
    t->size = NULL;
    t->zero_fill = false;
    if (t->role == T_TEMP || (t->role == T_OUTPUT && !t->typed))
      continue;
    t->size = arena_alloc(c->arena, sizeof(IRExpr *) * (size_t)(t->rank > 0 ? t->rank : 1));
    for (int j = 0; j < t->rank; j++) {
      Dim *dm = &t->dims[j];
      IASSERT(c, !dm->name || dm->sym);
      t->size[j] = dm->sym ? ir_var(c, dm->sym->var) : ir_i64(c, dm->value);
    }
    /* an output no statement writes is all zeros */
    t->zero_fill = t->role == T_OUTPUT && !t->def;
  }
}

void infer_def(Ctx *c, Def *d) {
  declare_sizes(c, d);
  for (int i = 0; i < d->nstmts; i++)
    infer_stmt(c, d, d->stmts[i]);
}

/* ---- explain ---- */

static const char *const red_text[] = {"=", "+=", "*=", "min=", "max="};

void infer_print_def(Buf *b, Def *d) {
  buf_printf(b, "def %s\n", d->name);
  for (int i = 0; i < d->nstmts; i++) {
    Stmt *s = d->stmts[i];
    buf_printf(b, "  %s", s->lhs_name);
    if (s->nidx) {
      buf_puts(b, "(");
      for (int j = 0; j < s->nidx; j++)
        buf_printf(b, "%s%s", j ? ", " : "", s->idx_names[j]);
      buf_puts(b, ")");
    }
    buf_printf(b, " %s%s ... (line %d)\n", red_text[s->op], s->bang ? "!" : "", s->loc.line);
    for (int v = 0; v < s->nvars; v++) {
      IndexVar *x = s->vars[v];
      buf_printf(b, "    %s in [", x->name);
      ir_print_expr(b, x->lo);
      buf_puts(b, ", ");
      ir_print_expr(b, x->hi);
      buf_printf(b, ")%s\n", x->has_where ? " (where)" : "");
    }
    for (int k = 0; k < s->ncons; k++) {
      Constraint *cn = &s->cons[k];
      if (cn->consumed)
        continue;
      buf_printf(b, "    check %s dim %d at %d:%d: 0 <= ", cn->tensor->name, cn->dim, cn->loc.line,
                 cn->loc.col);
      print_src(b, cn->sub);
      buf_puts(b, " < ");
      ir_print_expr(b, cn->size);
      buf_puts(b, cn->is_exists ? " (exists: not evaluated)\n"
                  : cn->conditional || !cn->affine ? " (per element)\n"
                                                   : " (before the statement)\n");
    }
  }
  for (int i = d->ninputs; i < d->ntensors; i++) {
    Tensor *t = d->tensors[i];
    buf_printf(b, "  %s %s %s[", t->role == T_OUTPUT ? "output" : "temp", t->name,
               dtype_info[t->dtype].name);
    for (int j = 0; t->size && j < t->rank; j++) {
      if (j)
        buf_puts(b, ", ");
      ir_print_expr(b, t->size[j]);
    }
    buf_printf(b, "]%s\n", t->zero_fill ? " zero-filled" : "");
  }
}
