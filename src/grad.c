/*
 * grad.c — reverse-mode automatic differentiation of a def, as TC source.
 *
 * The backward of a def is itself a TC def, derived from the checked and
 * inferred forward (sema + infer) and printed as source text, which the
 * caller compiles like any other program (docs/gradients.md).  Its inputs
 * are the forward's inputs and one gradient per output (`d_O`); its outputs
 * one gradient per selected input (`d_I`).
 *
 *  1. Versions.  Each statement defines a new version of its tensor (SSA):
 *     `O(i) +=! ...` then `O(i) = tanh(O(i))` are two values, and the second
 *     statement reads the first.  In the backward every version that is used
 *     is a tensor of its own (the last one keeps the tensor's name), so the
 *     backward can read any intermediate value.  A redefinition that does not
 *     overwrite its whole tensor starts from a copy of the previous version.
 *
 *  2. Activity.  A version is varied when it depends differentiably on a
 *     selected input (not only through subscripts, conditions, comparisons,
 *     integer casts or rounding), useful when a float output depends on it;
 *     only versions that are both get an adjoint `d_<version>`.  Integer and
 *     bool tensors never do.
 *
 *  3. Reverse pass, statements last to first.  The adjoint of the written
 *     version is the seed; the chain rule runs down the right-hand side
 *     (derive) to every active read, giving one contribution per read.
 *     `=`/`+=`/`*=`/`max=`/`min=` differ only in the seed and in what flows
 *     to the previous version (passthrough): `*=` through zero-aware
 *     products, `max=`/`min=` to the first winning position in lexicographic
 *     order of the reduction indices, computed into an int64 temporary.
 *     A contribution that is a plain copy of a finished adjoint shares its
 *     tensor instead.
 *
 *  4. Gathers.  A contribution `d_X(s(x,r)) += a(x,r)` is a scatter; TC
 *     statements write plain indices, so it becomes a gather over a fresh
 *     index y_k per subscript that is not a plain index: an affine subscript
 *     is solved for one of its indices (`y = h + kh` gives `h = y - kh`,
 *     guarded by h's range and, for a coefficient c != ±1, by divisibility);
 *     any other subscript becomes a mask `y == s(x,r)` summed over every
 *     index (correct, O(|X| * domain)).  A dimension under a clamp, mirror or
 *     wrap boundary condition adds the reads that fall outside the tensor,
 *     below and above, each summed over the band of out-of-range positions
 *     and routed to the position the condition reads (clamp: the edge).
 *     Every index of every backward statement gets an explicit `where`
 *     range copied from the forward's inferred ones: the backward never
 *     relies on inference, whose narrowing by guarded reads would be wrong.
 *
 *  5. Recomputation.  The forward statements whose values the reverse pass
 *     reads (transitively) are re-emitted at the top, on versions, with
 *     explicit ranges too; the backward is self-contained.
 *
 * Names: every generated name (gradients, versions, helper temporaries,
 * fresh indices and size symbols) is checked against every name of the
 * forward def and every name generated before; a collision appends "_2",
 * "_3"...  Expressions are built as resolved AST nodes (typed as sema types
 * them) and printed with the parentheses precedence needs.
 */
#include "tc.h"

#include <math.h>
#include <string.h>

#define MAX_SOURCE (16 << 20) /* bytes of backward source */

/* ---- state ---- */

typedef struct Version Version;
struct Version {
  Tensor *fwd;        /* the forward tensor */
  Tensor *t;          /* the backward tensor holding this value (t->id: index in vers) */
  int stmt;           /* defining forward statement; -1 for an input */
  Version *prev;      /* the value a redefinition starts from */
  bool varied, useful, needed;
  bool final;         /* last version of an output */
  bool read_later;    /* read by a later statement */
  Tensor *adj;        /* adjoint, when active */
  bool adj_input;     /* adj is a backward input (d_O) */
  bool adj_defined;   /* a backward statement has defined adj */
};

typedef struct FStmt { /* a forward statement on versions */
  Stmt *s;
  Version *out;
  Expr *rhs;           /* reads on version tensors */
  Expr **exists;
  bool copy;           /* a redefinition starting from a copy of out->prev */
} FStmt;

typedef struct BStmt { /* a statement of the backward def */
  Tensor *lhs;
  IndexVar **idx;
  int nidx;
  const char *op;      /* "=", "+=!", ... */
  Expr *rhs;
  IndexVar **vars;     /* every index of the statement, with its range */
  int nvars;
  Expr **exists;
  int nexists;
} BStmt;

typedef VEC(BStmt *) BStmtVec;

typedef struct Contrib {
  Expr *read;          /* an EX_ACCESS of an active version */
  Expr *adj;           /* its adjoint */
} Contrib;
typedef VEC(Contrib) ContribVec;

typedef struct Grad {
  Ctx *c;
  Def *d;
  const bool *wrt;
  FStmt *fs;
  VEC(Version *) vers;
  VEC(const char *) names;   /* every name in use */
  Tensor **dout;             /* per output: its gradient input */
  Tensor **din;              /* per input: its gradient output, or NULL */
  const char *yname[TC_MAX_RANK], *zname[TC_MAX_RANK];
  BStmtVec rev;              /* the reverse section */
  bool share;                /* accumulate may share the source's tensor */
  VEC(Tensor *) shared;      /* adjoint tensors already shared once */
} Grad;

/* ---- names ---- */

static bool name_used(Grad *G, const char *s) {
  for (int i = 0; i < G->names.len; i++)
    if (!strcmp(G->names.data[i], s))
      return true;
  return false;
}

static void reserve(Grad *G, const char *s) {
  if (!name_used(G, s))
    vec_push(G->c->arena, &G->names, s);
}

/* `base`, or base_2, base_3... : the first that is not in use; reserved. */
static const char *fresh(Grad *G, const char *base) {
  const char *s = base;
  for (int k = 2; name_used(G, s); k++)
    s = arena_printf(G->c->arena, "%s_%d", base, k);
  reserve(G, s);
  return s;
}

static void reserve_def_names(Grad *G) {
  Def *d = G->d;
  reserve(G, d->name);
  for (int i = 0; i < d->ntensors; i++)
    reserve(G, d->tensors[i]->name);
  for (int i = 0; i < d->nsyms; i++)
    reserve(G, d->syms[i]->name);
  for (int i = 0; i < d->nstmts; i++) {
    Stmt *s = d->stmts[i];
    for (int k = 0; k < s->nvars; k++)
      reserve(G, s->vars[k]->name);
    for (int k = 0; k < s->nwheres; k++)
      if (s->wheres[k].name)
        reserve(G, s->wheres[k].name);
  }
}

/* ---- expressions (resolved AST, typed as sema types them) ---- */

static Expr *new_node(Grad *G, ExprKind k, tc_dtype t) {
  Expr *e = arena_alloc(G->c->arena, sizeof *e);
  e->kind = k;
  e->type = t;
  return e;
}

static Expr *mk_int(Grad *G, int64_t v) {
  Expr *e = new_node(G, EX_INT, TC_INT32);
  e->ival = v;
  return e;
}

static bool is_int_lit(const Expr *e, int64_t v) {
  return e->kind == EX_INT && e->type == TC_INT32 && e->ival == v;
}

static Expr *mk_index(Grad *G, IndexVar *v) {
  Expr *e = new_node(G, EX_INDEX, TC_INT32);
  e->var = v;
  return e;
}

static Expr *mk_access(Grad *G, Tensor *t, IndexVar *const *idx, int n) {
  Expr *e = new_node(G, EX_ACCESS, t->dtype);
  e->tensor = t;
  e->nargs = n;
  e->args = arena_alloc(G->c->arena, sizeof *e->args * (size_t)(n + 1));
  for (int i = 0; i < n; i++)
    e->args[i] = mk_index(G, idx[i]);
  return e;
}

static Expr *mk_cast(Grad *G, tc_dtype t, Expr *a) {
  if (a->type == t)
    return a;
  Expr *e = new_node(G, EX_CAST, t);
  e->args = arena_alloc(G->c->arena, sizeof *e->args);
  e->args[0] = a;
  e->nargs = 1;
  return e;
}

static bool is_compare(int op) { return op >= OP_LT && op <= OP_OR; }

/* a op b, with the identities that keep the printed source readable. */
static Expr *mk_bin(Grad *G, BinOp op, Expr *a, Expr *b) {
  tc_dtype t = is_compare(op) ? TC_BOOL : dtype_promote(a->type, b->type);
  if ((op == OP_ADD && is_int_lit(a, 0)) || (op == OP_MUL && is_int_lit(a, 1)))
    return mk_cast(G, t, b);
  if (((op == OP_ADD || op == OP_SUB) && is_int_lit(b, 0)) ||
      ((op == OP_MUL || op == OP_DIV) && is_int_lit(b, 1)))
    return mk_cast(G, t, a);
  Expr *e = new_node(G, EX_BINARY, t);
  e->op = op;
  e->a = a;
  e->b = b;
  return e;
}

static Expr *mk_neg(Grad *G, Expr *a);

static bool is_neg(const Expr *e) { return e->kind == EX_UNARY && e->op == OP_NEG; }

static Expr *mk_add(Grad *G, Expr *a, Expr *b) { return mk_bin(G, OP_ADD, a, b); }
static Expr *mk_sub(Grad *G, Expr *a, Expr *b) { return mk_bin(G, OP_SUB, a, b); }

/* Products and quotients of floats pull a negation out: -(a * b). */
static Expr *mk_mul(Grad *G, Expr *a, Expr *b) {
  if (dtype_is_float(a->type) && is_neg(a))
    return mk_neg(G, mk_bin(G, OP_MUL, a->a, b));
  return mk_bin(G, OP_MUL, a, b);
}

static Expr *mk_div(Grad *G, Expr *a, Expr *b) {
  if (dtype_is_float(a->type) && is_neg(a))
    return mk_neg(G, mk_bin(G, OP_DIV, a->a, b));
  return mk_bin(G, OP_DIV, a, b);
}

static Expr *mk_and(Grad *G, Expr *a, Expr *b) {
  return !a ? b : !b ? a : mk_bin(G, OP_AND, a, b);
}

static Expr *mk_neg(Grad *G, Expr *a) {
  if (is_neg(a))
    return a->a;
  if (a->kind == EX_INT && a->type == TC_INT32 && a->ival > INT32_MIN)
    return mk_int(G, -a->ival);
  Expr *e = new_node(G, EX_UNARY, a->type);
  e->op = OP_NEG;
  e->a = a;
  return e;
}

static Expr *mk_select(Grad *G, Expr *c, Expr *a, Expr *b) {
  Expr *e = new_node(G, EX_SELECT, dtype_promote(a->type, b->type));
  e->a = c;
  e->b = a;
  e->c = b;
  return e;
}

/* c ? a : 0 */
static Expr *mk_when(Grad *G, Expr *c, Expr *a) { return c ? mk_select(G, c, a, mk_int(G, 0)) : a; }

static Expr *mk_call(Grad *G, Builtin bi, Expr *a, Expr *b) {
  Expr *e = new_node(G, EX_BUILTIN, TC_FLOAT32);
  e->builtin = bi;
  e->nargs = b ? 2 : 1;
  e->args = arena_alloc(G->c->arena, sizeof *e->args * 2);
  e->args[0] = a;
  e->args[1] = b;
  for (int i = 0; i < e->nargs; i++)
    if (e->args[i]->type == TC_FLOAT64)
      e->type = TC_FLOAT64;
  return e;
}

/* The literal value v in float type t (exact for small integers). */
static Expr *mk_fconst(Grad *G, tc_dtype t, int64_t v) { return mk_cast(G, t, mk_int(G, v)); }

static bool expr_equal(const Expr *a, const Expr *b) {
  if (a == b)
    return true;
  if (!a || !b || a->kind != b->kind || a->type != b->type || a->nargs != b->nargs)
    return false;
  switch (a->kind) {
  case EX_INT: return a->ival == b->ival;
  case EX_FLOAT: return a->fval == b->fval || (isnan(a->fval) && isnan(b->fval));
  case EX_INDEX: return a->var == b->var;
  case EX_SIZE: return a->sym == b->sym;
  case EX_ACCESS: if (a->tensor != b->tensor) return false; break;
  case EX_BUILTIN: if (a->builtin != b->builtin) return false; break;
  case EX_UNARY: case EX_BINARY: if (a->op != b->op) return false; break;
  default: break;
  }
  for (int i = 0; i < a->nargs; i++)
    if (!expr_equal(a->args[i], b->args[i]))
      return false;
  return expr_equal(a->a, b->a) && expr_equal(a->b, b->b) && expr_equal(a->c, b->c);
}

/* A substitution of index variables. */
typedef struct Subst {
  IndexVar **from;
  Expr **to;
  int n;
} Subst;

/* e with the substitution applied (shares what does not change). */
static Expr *subst(Grad *G, Expr *e, const Subst *m) {
  if (!e || !m->n)
    return e;
  if (e->kind == EX_INDEX) {
    for (int i = 0; i < m->n; i++)
      if (m->from[i] == e->var)
        return m->to[i];
    return e;
  }
  Expr *a = subst(G, e->a, m), *b = subst(G, e->b, m), *c = subst(G, e->c, m);
  Expr **args = e->args;
  for (int i = 0; i < e->nargs; i++) {
    Expr *x = subst(G, e->args[i], m);
    if (x != e->args[i] && args == e->args) {
      args = arena_alloc(G->c->arena, sizeof *args * (size_t)e->nargs);
      memcpy(args, e->args, sizeof *args * (size_t)e->nargs);
    }
    args[i] = x;
  }
  if (a == e->a && b == e->b && c == e->c && args == e->args)
    return e;
  Expr *n = arena_alloc(G->c->arena, sizeof *n);
  *n = *e;
  n->a = a, n->b = b, n->c = c, n->args = args;
  return n;
}

static Expr *subst1(Grad *G, Expr *e, IndexVar *v, Expr *to) {
  Subst m = {&v, &to, 1};
  return subst(G, e, &m);
}

static bool uses_var(const Expr *e, const IndexVar *v) {
  if (!e)
    return false;
  if (e->kind == EX_INDEX)
    return e->var == v;
  for (int i = 0; i < e->nargs; i++)
    if (uses_var(e->args[i], v))
      return true;
  return uses_var(e->a, v) || uses_var(e->b, v) || uses_var(e->c, v);
}

/* A range bound (int64 IR over size symbols) as an expression. */
static Expr *bound_expr(Grad *G, const IRExpr *e, Loc loc) {
  switch (e->kind) {
  case IR_INT:
    if (e->ival >= INT32_MIN && e->ival <= INT32_MAX)
      return mk_int(G, e->ival);
    break;
  case IR_VAR:
    if (e->var->kind == VAR_SIZE && e->var->sym) {
      Expr *x = new_node(G, EX_SIZE, TC_INT32);
      x->sym = e->var->sym;
      return x;
    }
    break;
  case IR_CAST:
    if (dtype_is_int(e->type) && dtype_is_int(e->a->type))
      return bound_expr(G, e->a, loc);
    break;
  case IR_UN:
    if (e->op == OP_NEG)
      return mk_neg(G, bound_expr(G, e->a, loc));
    break;
  case IR_BIN:
    if (e->op <= OP_MOD || e->op == OP_MIN || e->op == OP_MAX)
      return mk_bin(G, (BinOp)e->op, bound_expr(G, e->a, loc), bound_expr(G, e->b, loc));
    break;
  default:
    break;
  }
  error_at(G->c, loc, "cannot differentiate this statement yet: one of its index ranges has no "
                      "TC form");
}

/* ---- printing ---- */

static int prec(const Expr *e) {
  switch (e->kind) {
  case EX_SELECT: return 0;
  case EX_UNARY: return 7;
  case EX_INT: return e->ival < 0 ? 7 : 8;
  case EX_FLOAT: return signbit(e->fval) ? 7 : 8;
  case EX_BINARY:
    switch (e->op) {
    case OP_OR: return 1;
    case OP_AND: return 2;
    case OP_ADD: case OP_SUB: return 5;
    case OP_MUL: case OP_DIV: case OP_MOD: return 6;
    case OP_MIN: case OP_MAX: return 8;
    default: return 3;
    }
  default: return 8;
  }
}

static void print_expr(Buf *b, const Expr *e, int need);

/* A float32 value as a literal that lexes back to it. */
static void print_f32(Buf *b, double v) {
  if (isnan(v)) {
    buf_puts(b, "(0.0 / 0.0)");
  } else if (isinf(v)) {
    buf_puts(b, v < 0 ? "(-1.0 / 0.0)" : "(1.0 / 0.0)");
  } else {
    char s[64];
    snprintf(s, sizeof s, "%.9g", v);
    buf_puts(b, s);
    if (!strpbrk(s, ".e"))
      buf_puts(b, ".0");
  }
}

/* An integer of type t that may not fit int32: built from 31-bit parts. */
static void print_wide_int(Buf *b, const char *t, int64_t v) {
  if (v >= -2147483647 && v <= 2147483647) {
    buf_printf(b, "%s(%lld)", t, (long long)v);
    return;
  }
  int64_t lo = (int64_t)((uint64_t)v & 0x7fffffff);
  buf_puts(b, "(");
  print_wide_int(b, t, (v - lo) / 2147483648LL);
  buf_printf(b, " * %s(65536) * %s(32768) + %s(%lld))", t, t, t, (long long)lo);
}

/* A float64 value as a sum of float32 literals (exact for every double of
 * normal range), or one literal when it is a float32 value. */
static void print_f64(Buf *b, double v) {
  /* volatile: GCC 12.2 at -O2 (its value-range pass) folds the rounding
   * (double)(float)v back to v here */
  volatile float f[3] = {(float)v, 0, 0};
  f[1] = (float)(v - (double)f[0]);
  f[2] = (float)(v - (double)f[0] - (double)f[1]);
  double p[3] = {f[0], f[1], f[2]};
  bool one = isnan(v) || isinf(v) || isinf(p[0]) || p[1] == 0;
  buf_puts(b, one ? "float64(" : "(float64(");
  print_f32(b, one ? v : p[0]);
  for (int i = 1; !one && i < 3; i++) {
    buf_puts(b, ") + float64(");
    print_f32(b, p[i]);
  }
  buf_puts(b, one ? ")" : "))");
}

static void print_literal(Buf *b, const Expr *e) {
  const char *t = dtype_info[e->type].name;
  if (e->kind == EX_FLOAT) {
    if (e->type == TC_FLOAT32) {
      print_f32(b, e->fval);
    } else if (e->type == TC_FLOAT64) {
      print_f64(b, e->fval);
    } else {
      buf_printf(b, "%s(", t);
      print_f32(b, e->fval);
      buf_puts(b, ")");
    }
  } else if (e->type == TC_INT32) {
    if (e->ival == INT32_MIN)
      buf_puts(b, "(-2147483647 - 1)");
    else
      buf_printf(b, "%lld", (long long)e->ival);
  } else {
    print_wide_int(b, t, e->ival);
  }
}

static void print_args(Buf *b, const char *name, Expr *const *args, int n) {
  buf_printf(b, "%s(", name);
  for (int i = 0; i < n; i++) {
    buf_puts(b, i ? ", " : "");
    print_expr(b, args[i], 0);
  }
  buf_puts(b, ")");
}

static void print_expr(Buf *b, const Expr *e, int need) {
  bool paren = prec(e) < need;
  if (paren)
    buf_puts(b, "(");
  switch (e->kind) {
  case EX_INT:
  case EX_FLOAT:
    print_literal(b, e);
    break;
  case EX_INDEX:
    buf_puts(b, e->var->name);
    break;
  case EX_SIZE:
    buf_puts(b, e->sym->name);
    break;
  case EX_ACCESS:
    if (e->nargs)
      print_args(b, e->tensor->name, e->args, e->nargs);
    else
      buf_puts(b, e->tensor->name);
    break;
  case EX_BUILTIN:
    print_args(b, builtin_info[e->builtin].name, e->args, e->nargs);
    break;
  case EX_CAST:
    print_args(b, dtype_info[e->type].name, e->args, e->nargs);
    break;
  case EX_UNARY: {
    bool nest = e->a->kind == EX_UNARY || prec(e->a) == 7;
    buf_puts(b, unop_names[e->op]);
    print_expr(b, e->a, nest ? 9 : 7);
    break;
  }
  case EX_BINARY:
    if (e->op == OP_MIN || e->op == OP_MAX) {
      Expr *args[2] = {e->a, e->b};
      print_args(b, binop_names[e->op], args, 2);
      break;
    }
    print_expr(b, e->a, prec(e));
    buf_printf(b, " %s ", binop_names[e->op]);
    print_expr(b, e->b, prec(e) + 1);
    break;
  case EX_SELECT:
    print_expr(b, e->a, 1);
    buf_puts(b, " ? ");
    print_expr(b, e->b, 1);
    buf_puts(b, " : ");
    print_expr(b, e->c, 0);
    break;
  case EX_IDENT:
  case EX_CALL:
    buf_puts(b, e->name);
    break;
  }
  if (paren)
    buf_puts(b, ")");
}

static void print_range(Grad *G, Buf *b, const IndexVar *v) {
  buf_printf(b, "%s in ", v->name);
  print_expr(b, bound_expr(G, v->lo, v->loc), 1);
  buf_puts(b, ":");
  print_expr(b, bound_expr(G, v->hi, v->loc), 1);
}

static void print_bstmt(Grad *G, Buf *b, const BStmt *s) {
  buf_printf(b, "    %s", s->lhs->name);
  for (int i = 0; i < s->nidx; i++)
    buf_printf(b, "%s%s", i ? ", " : "(", s->idx[i]->name);
  buf_printf(b, "%s %s ", s->nidx ? ")" : "", s->op);
  print_expr(b, s->rhs, 0);
  for (int i = 0; i < s->nvars; i++) {
    buf_puts(b, i ? ", " : " where ");
    print_range(G, b, s->vars[i]);
  }
  for (int i = 0; i < s->nexists; i++) {
    buf_puts(b, i || s->nvars ? ", exists " : " where exists ");
    print_expr(b, s->exists[i], 0);
  }
  buf_puts(b, "\n");
}

/* A dim of a declaration: the symbol, or the constant. */
static void print_dim(Buf *b, const Dim *d) {
  if (d->sym)
    buf_puts(b, d->sym->name);
  else if (d->name)
    buf_puts(b, d->name);
  else
    buf_printf(b, "%lld", (long long)d->value);
}

static void print_boundary(Buf *b, const Tensor *t) {
  if (t->bc == BC_NONE)
    return;
  static const char *const names[] = {
#define X(n, s) s,
      BC_LIST(X)
#undef X
  };
  buf_printf(b, " : %s", names[t->bc]);
  if (t->bc == BC_CONSTANT) {
    char s[64];
    snprintf(s, sizeof s, "%.17g", t->bc_value);
    buf_printf(b, "(%s)", s);
  }
  bool all = true;
  for (int k = 0; k < t->rank; k++)
    all &= t->bc_dim[k];
  for (int k = 0, n = 0; !all && k < t->rank; k++) {
    bool seen = false; /* a symbol repeated in the dims is listed once */
    for (int j = 0; j < k; j++)
      seen |= t->bc_dim[j] && t->dims[j].sym && t->dims[j].sym == t->dims[k].sym;
    if (t->bc_dim[k] && t->dims[k].sym && !seen)
      buf_printf(b, "%s%s", n++ ? ", " : " [", t->dims[k].sym->name);
    if (k == t->rank - 1 && n)
      buf_puts(b, "]");
  }
}

static void print_param(Buf *b, const Tensor *t, const Dim *dims) {
  buf_puts(b, dtype_info[t->dtype].name);
  for (int k = 0; k < t->rank; k++) {
    buf_puts(b, k ? ", " : "(");
    print_dim(b, &dims[k]);
  }
  buf_printf(b, "%s %s", t->rank ? ")" : "", t->name);
}

/* ---- versions ---- */

static Tensor *new_tensor(Grad *G, const char *name, tc_dtype dt, int rank, IRExpr **size) {
  Tensor *t = arena_alloc(G->c->arena, sizeof *t);
  t->name = name;
  t->dtype = dt;
  t->rank = rank;
  t->size = size;
  t->role = T_TEMP;
  t->id = -1;
  return t;
}

static Version *add_version(Grad *G, Tensor *fwd, Tensor *t, int stmt) {
  Version *v = arena_alloc(G->c->arena, sizeof *v);
  v->fwd = fwd;
  v->t = t;
  v->stmt = stmt;
  t->id = G->vers.len;
  vec_push(G->c->arena, &G->vers, v);
  return v;
}

static Version *version_of(Grad *G, const Tensor *t) {
  return t->id >= 0 && t->id < G->vers.len && G->vers.data[t->id]->t == t ? G->vers.data[t->id]
                                                                          : NULL;
}

/* A copy of e whose reads name the current versions. */
static Expr *on_versions(Grad *G, Expr *e, Version **cur) {
  if (!e)
    return NULL;
  Expr *n = arena_alloc(G->c->arena, sizeof *n);
  *n = *e;
  if (e->kind == EX_ACCESS)
    n->tensor = cur[e->tensor->id]->t;
  n->a = on_versions(G, e->a, cur);
  n->b = on_versions(G, e->b, cur);
  n->c = on_versions(G, e->c, cur);
  if (e->nargs) {
    n->args = arena_alloc(G->c->arena, sizeof *n->args * (size_t)e->nargs);
    for (int i = 0; i < e->nargs; i++)
      n->args[i] = on_versions(G, e->args[i], cur);
  }
  return n;
}

/* True when the statement writes every element of its tensor. */
static bool covers_all(Grad *G, const Stmt *s) {
  for (int k = 0; k < s->nidx; k++) {
    const IndexVar *v = s->vars[k];
    IRExpr *zero = ir_i64(G->c, 0), *n = s->lhs->size[k];
    if (!simplify_prove_le(G->c, v->lo, zero) || !simplify_prove_le(G->c, n, v->hi))
      return false;
  }
  return true;
}

static void build_versions(Grad *G) {
  Def *d = G->d;
  Ctx *c = G->c;
  Version **cur = arena_alloc(c->arena, sizeof *cur * (size_t)(d->ntensors + 1));
  int *ndefs = arena_alloc(c->arena, sizeof *ndefs * (size_t)(d->ntensors + 1));
  int *seen = arena_alloc(c->arena, sizeof *seen * (size_t)(d->ntensors + 1));
  for (int i = 0; i < d->ninputs; i++) {
    Tensor *t = arena_alloc(c->arena, sizeof *t);
    *t = *d->tensors[i];
    cur[i] = add_version(G, d->tensors[i], t, -1);
  }
  for (int k = 0; k < d->nstmts; k++)
    ndefs[d->stmts[k]->lhs->id]++;
  G->fs = arena_alloc(c->arena, sizeof *G->fs * (size_t)(d->nstmts + 1));
  for (int k = 0; k < d->nstmts; k++) {
    Stmt *s = d->stmts[k];
    FStmt *f = &G->fs[k];
    Tensor *lhs = s->lhs;
    f->s = s;
    f->rhs = on_versions(G, s->rhs, cur);
    f->exists = arena_alloc(c->arena, sizeof *f->exists * (size_t)(s->nexists + 1));
    for (int i = 0; i < s->nexists; i++)
      f->exists[i] = on_versions(G, s->exists[i], cur);
    int n = ++seen[lhs->id];
    const char *name = n == ndefs[lhs->id] ? lhs->name
                                            : fresh(G, arena_printf(c->arena, "%s_v%d", lhs->name, n));
    Tensor *t = new_tensor(G, name, lhs->dtype, lhs->rank, lhs->size);
    Version *v = add_version(G, lhs, t, k);
    v->prev = n > 1 ? cur[lhs->id] : NULL;
    f->out = v;
    f->copy = v->prev && !(s->op == RED_NONE && covers_all(G, s));
    cur[lhs->id] = v;
  }
  for (int i = 0; i < d->noutputs; i++)
    cur[d->ninputs + i]->final = true;
  for (int i = 0; i < G->vers.len; i++) {
    Version *v = G->vers.data[i];
    for (int k = v->stmt + 1; k < d->nstmts && !v->read_later; k++)
      v->read_later = expr_reads_tensor(G->fs[k].rhs, v->t);
  }
}

/* ---- activity ---- */

static bool is_active(Grad *G, const Tensor *t) {
  Version *v = version_of(G, t);
  return v && v->varied && v->useful;
}

/* Builtins whose derivative is zero wherever it exists. */
static bool is_step(int bi) {
  return bi == BI_floor || bi == BI_ceil || bi == BI_round || bi == BI_trunc || bi == BI_rint;
}

typedef VEC(Version *) VersionVec;

/* The versions read where a derivative can flow: not inside subscripts,
 * conditions, comparisons, integer casts or rounding. */
static void diff_reads(Grad *G, const Expr *e, VersionVec *out) {
  if (!e || !dtype_is_float(e->type))
    return;
  switch (e->kind) {
  case EX_ACCESS: {
    Version *v = version_of(G, e->tensor);
    if (v)
      vec_push(G->c->arena, out, v);
    return;
  }
  case EX_SELECT:
    diff_reads(G, e->b, out);
    diff_reads(G, e->c, out);
    return;
  case EX_BUILTIN:
    if (is_step(e->builtin))
      return;
    break;
  default:
    break;
  }
  for (int i = 0; i < e->nargs; i++)
    diff_reads(G, e->args[i], out);
  diff_reads(G, e->a, out);
  diff_reads(G, e->b, out);
}

/* varied: forward; useful: backward from the float outputs. */
static void find_active(Grad *G) {
  Def *d = G->d;
  for (int i = 0; i < d->ninputs; i++)
    G->vers.data[i]->varied = G->wrt[i] && dtype_is_float(d->tensors[i]->dtype);
  for (int k = 0; k < d->nstmts; k++) {
    FStmt *f = &G->fs[k];
    VersionVec rd = {NULL, 0, 0};
    diff_reads(G, f->rhs, &rd);
    bool v = f->out->prev && f->out->prev->varied;
    for (int i = 0; i < rd.len; i++)
      v |= rd.data[i]->varied;
    f->out->varied = v && dtype_is_float(f->out->t->dtype);
  }
  for (int i = 0; i < G->vers.len; i++) {
    Version *v = G->vers.data[i];
    v->useful = v->final && dtype_is_float(v->t->dtype);
  }
  for (int k = d->nstmts - 1; k >= 0; k--) {
    FStmt *f = &G->fs[k];
    if (!f->out->useful)
      continue;
    VersionVec rd = {NULL, 0, 0};
    diff_reads(G, f->rhs, &rd);
    for (int i = 0; i < rd.len; i++)
      rd.data[i]->useful = true;
    if (f->out->prev && !(f->s->op == RED_NONE && !f->copy))
      f->out->prev->useful = true;
  }
}

static bool active_in(Grad *G, const Expr *e) {
  if (!e || !dtype_is_float(e->type))
    return false;
  switch (e->kind) {
  case EX_ACCESS:
    return is_active(G, e->tensor);
  case EX_SELECT:
    return active_in(G, e->b) || active_in(G, e->c);
  case EX_BUILTIN:
    if (is_step(e->builtin))
      return false;
    break;
  default:
    break;
  }
  for (int i = 0; i < e->nargs; i++)
    if (active_in(G, e->args[i]))
      return true;
  return active_in(G, e->a) || active_in(G, e->b);
}

/* ---- backward statements ---- */

static IndexVar *new_var(Grad *G, const char *name, IRExpr *lo, IRExpr *hi, bool red) {
  IndexVar *v = arena_alloc(G->c->arena, sizeof *v);
  v->name = name;
  v->lo = lo;
  v->hi = hi;
  v->reduction = red;
  v->id = -1;
  return v;
}

/* Fresh indices y0, y1... over the whole extent of t. */
static IndexVar **full_vars(Grad *G, const Tensor *t) {
  IndexVar **v = arena_alloc(G->c->arena, sizeof *v * (size_t)(t->rank + 1));
  for (int k = 0; k < t->rank; k++)
    v[k] = new_var(G, G->yname[k], ir_i64(G->c, 0), t->size[k], false);
  return v;
}

/* A statement over indices `vars` (the left-hand ones first); indices that
 * the expression does not use are kept by `exists` clauses. */
static BStmt *new_bstmt(Grad *G, Tensor *lhs, IndexVar **vars, int nidx, int nvars,
                        const char *op, Expr *rhs) {
  BStmt *s = arena_alloc(G->c->arena, sizeof *s);
  s->lhs = lhs;
  s->idx = vars;
  s->nidx = nidx;
  s->op = op;
  s->rhs = rhs;
  s->vars = vars;
  s->nvars = nvars;
  s->exists = arena_alloc(G->c->arena, sizeof *s->exists * (size_t)(nvars + 1));
  for (int i = nidx; i < nvars; i++)
    if (!uses_var(rhs, vars[i]))
      s->exists[s->nexists++] = mk_index(G, vars[i]);
  return s;
}

static void emit(Grad *G, BStmt *s) { vec_push(G->c->arena, &G->rev, s); }

/* True when indices v[0..rank) cover every element of t. */
static bool covers(Grad *G, IndexVar *const *v, const Tensor *t) {
  for (int k = 0; k < t->rank; k++)
    if (!simplify_prove_le(G->c, v[k]->lo, ir_i64(G->c, 0)) ||
        !simplify_prove_le(G->c, t->size[k], v[k]->hi))
      return false;
  return true;
}

static void define_zero(Grad *G, Version *x) {
  Tensor *a = x->adj;
  IndexVar **y = full_vars(G, a);
  emit(G, new_bstmt(G, a, y, a->rank, a->rank, "=", mk_fconst(G, a->dtype, 0)));
  x->adj_defined = true;
}

/* True when rhs reads, at exactly `lhs`, the complete adjoint of the
 * statement being reversed (a temporary of a's type, not shared before),
 * and a is a temporary: the caller knows that nothing reads the source
 * after this and that no other contribution of this statement writes a. */
static bool is_copy(Grad *G, const Expr *rhs, IndexVar *const *lhs, const Tensor *a) {
  Def *d = G->d;
  if (!G->share || rhs->kind != EX_ACCESS || rhs->type != a->dtype || rhs->nargs != a->rank)
    return false;
  for (int i = 0; i < G->shared.len; i++)
    if (rhs->tensor == G->shared.data[i])
      return false;
  for (int i = 0; i < d->noutputs; i++)
    if (rhs->tensor == G->dout[i])
      return false;
  for (int i = 0; i < d->ninputs; i++)
    if (a == G->din[i])
      return false;
  for (int k = 0; k < a->rank; k++)
    if (rhs->args[k]->kind != EX_INDEX || rhs->args[k]->var != lhs[k])
      return false;
  return true;
}

/* adj(x)(lhs) += rhs, summed over `red`: the definition of the adjoint when
 * it is the first contribution and covers it, else onto zeros. */
static void accumulate(Grad *G, Version *x, IndexVar **lhs, IndexVar **red, int nred,
                       Expr *rhs) {
  Tensor *a = x->adj;
  IndexVar **vars = arena_alloc(G->c->arena, sizeof *vars * (size_t)(a->rank + nred + 1));
  memcpy(vars, lhs, sizeof *vars * (size_t)a->rank);
  if (nred)
    memcpy(vars + a->rank, red, sizeof *vars * (size_t)nred);
  if (!x->adj_defined && !nred && is_copy(G, rhs, lhs, a) && covers(G, lhs, a)) {
    x->adj = rhs->tensor; /* the same values: share the tensor */
    x->adj_defined = true;
    vec_push(G->c->arena, &G->shared, x->adj);
    return;
  }
  rhs = mk_cast(G, a->dtype, rhs);
  const char *op = "+=";
  if (!x->adj_defined && covers(G, lhs, a)) {
    op = nred ? "+=!" : "=";
    x->adj_defined = true;
  } else if (!x->adj_defined) {
    define_zero(G, x);
  }
  emit(G, new_bstmt(G, a, vars, a->rank, a->rank + nred, op, rhs));
}

/* ---- the chain rule ---- */

static void derive(Grad *G, Expr *e, Expr *g, ContribVec *out);

static Expr *pi_of(Grad *G, tc_dtype t) {
  return mk_call(G, BI_acos, mk_fconst(G, t, -1), NULL);
}

/* digamma(u) for u > 0: six steps of the recurrence, then the asymptotic
 * series to w^-10 (error below 1e-11 for w >= 6). */
static Expr *digamma_pos(Grad *G, tc_dtype t, Expr *u) {
  Expr *one = mk_fconst(G, t, 1);
  Expr *w = mk_add(G, u, mk_int(G, 6));
  Expr *s = mk_div(G, one, mk_mul(G, w, w));
  Expr *p = mk_sub(G, mk_div(G, one, mk_int(G, 240)), mk_div(G, s, mk_int(G, 132)));
  p = mk_sub(G, mk_div(G, one, mk_int(G, 252)), mk_mul(G, s, p));
  p = mk_sub(G, mk_div(G, one, mk_int(G, 120)), mk_mul(G, s, p));
  p = mk_sub(G, mk_div(G, one, mk_int(G, 12)), mk_mul(G, s, p));
  Expr *r = mk_sub(G, mk_call(G, BI_log, w, NULL), mk_div(G, one, mk_mul(G, mk_int(G, 2), w)));
  r = mk_sub(G, r, mk_mul(G, s, p));
  for (int k = 0; k < 6; k++)
    r = mk_sub(G, r, mk_div(G, one, mk_add(G, u, mk_int(G, k))));
  return r;
}

/* digamma(x); negative arguments by reflection. */
static Expr *digamma(Grad *G, tc_dtype t, Expr *x) {
  Expr *pi = pi_of(G, t);
  Expr *refl = mk_sub(G, digamma_pos(G, t, mk_sub(G, mk_int(G, 1), x)),
                      mk_div(G, pi, mk_call(G, BI_tan, mk_mul(G, pi, x), NULL)));
  return mk_select(G, mk_bin(G, OP_LT, x, mk_int(G, 0)), refl, digamma_pos(G, t, x));
}

/* d(x, g): x receives adjoint g, when it can. */
static void d(Grad *G, Expr *x, Expr *g, ContribVec *out) {
  if (x && active_in(G, x))
    derive(G, x, g, out);
}

static void derive_builtin(Grad *G, Expr *e, Expr *g, ContribVec *out) {
  tc_dtype t = e->type;
  Expr *x0 = e->args[0], *y0 = e->nargs > 1 ? e->args[1] : NULL;
  Expr *x = mk_cast(G, t, x0), *y = y0 ? mk_cast(G, t, y0) : NULL;
  Expr *one = mk_fconst(G, t, 1), *zero = mk_int(G, 0), *c;
#define F1(b, a) mk_call(G, b, a, NULL)
#define MUL(a, b) mk_mul(G, a, b)
#define DIV(a, b) mk_div(G, a, b)
#define ADD(a, b) mk_add(G, a, b)
#define SUB(a, b) mk_sub(G, a, b)
#define I(v) mk_int(G, v)
  switch ((Builtin)e->builtin) {
  case BI_exp: d(G, x0, MUL(g, e), out); return;
  case BI_exp2: d(G, x0, MUL(MUL(g, e), F1(BI_log, mk_fconst(G, t, 2))), out); return;
  case BI_expm1: d(G, x0, MUL(g, ADD(e, I(1))), out); return;
  case BI_log: d(G, x0, DIV(g, x), out); return;
  case BI_log2: d(G, x0, DIV(g, MUL(x, F1(BI_log, mk_fconst(G, t, 2)))), out); return;
  case BI_log10: d(G, x0, DIV(g, MUL(x, F1(BI_log, mk_fconst(G, t, 10)))), out); return;
  case BI_log1p: d(G, x0, DIV(g, ADD(I(1), x)), out); return;
  case BI_sqrt: d(G, x0, DIV(g, MUL(I(2), e)), out); return;
  case BI_rsqrt: d(G, x0, mk_neg(G, DIV(MUL(g, e), MUL(I(2), x))), out); return;
  case BI_cbrt: d(G, x0, DIV(g, MUL(I(3), MUL(e, e))), out); return;
  case BI_pow:
    d(G, x0, mk_select(G, mk_bin(G, OP_EQ, y, zero), zero,
                       MUL(MUL(g, y), mk_call(G, BI_pow, x, SUB(y, I(1))))), out);
    c = mk_bin(G, OP_AND, mk_bin(G, OP_EQ, x, zero), mk_bin(G, OP_GE, y, zero));
    d(G, y0, mk_select(G, c, zero, MUL(MUL(g, e), F1(BI_log, x))), out);
    return;
  case BI_fabs:
    d(G, x0, MUL(g, mk_select(G, mk_bin(G, OP_GT, x, zero), I(1),
                              mk_select(G, mk_bin(G, OP_LT, x, zero), I(-1), zero))), out);
    return;
  case BI_fmax:
  case BI_fmin:
    c = mk_bin(G, e->builtin == BI_fmax ? OP_GE : OP_LE, x, y);
    if (dtype_is_float(y0->type) && y0->kind != EX_FLOAT)
      c = mk_bin(G, OP_OR, c, mk_bin(G, OP_NE, y, y)); /* fmax(x, NaN) is x */
    d(G, x0, mk_when(G, c, g), out);
    d(G, y0, mk_select(G, c, zero, g), out);
    return;
  case BI_fmod:
    d(G, x0, g, out);
    d(G, y0, mk_neg(G, MUL(g, F1(BI_trunc, DIV(x, y)))), out);
    return;
  case BI_floor: case BI_ceil: case BI_round: case BI_trunc: case BI_rint:
    return;
  case BI_sin: d(G, x0, MUL(g, F1(BI_cos, x)), out); return;
  case BI_cos: d(G, x0, mk_neg(G, MUL(g, F1(BI_sin, x))), out); return;
  case BI_tan: d(G, x0, MUL(g, ADD(I(1), MUL(e, e))), out); return;
  case BI_asin: d(G, x0, DIV(g, F1(BI_sqrt, SUB(I(1), MUL(x, x)))), out); return;
  case BI_acos: d(G, x0, mk_neg(G, DIV(g, F1(BI_sqrt, SUB(I(1), MUL(x, x))))), out); return;
  case BI_atan: d(G, x0, DIV(g, ADD(I(1), MUL(x, x))), out); return;
  case BI_atan2:
    c = ADD(MUL(x, x), MUL(y, y));
    d(G, x0, DIV(MUL(g, y), c), out);
    d(G, y0, mk_neg(G, DIV(MUL(g, x), c)), out);
    return;
  case BI_sinh: d(G, x0, MUL(g, F1(BI_cosh, x)), out); return;
  case BI_cosh: d(G, x0, MUL(g, F1(BI_sinh, x)), out); return;
  case BI_tanh: d(G, x0, MUL(g, SUB(I(1), MUL(e, e))), out); return;
  case BI_asinh: d(G, x0, DIV(g, F1(BI_sqrt, ADD(MUL(x, x), I(1)))), out); return;
  case BI_acosh: d(G, x0, DIV(g, F1(BI_sqrt, SUB(MUL(x, x), I(1)))), out); return;
  case BI_atanh: d(G, x0, DIV(g, SUB(I(1), MUL(x, x))), out); return;
  case BI_erf:
  case BI_erfc:
    c = DIV(MUL(I(2), F1(BI_exp, mk_neg(G, MUL(x, x)))), F1(BI_sqrt, pi_of(G, t)));
    d(G, x0, e->builtin == BI_erf ? MUL(g, c) : mk_neg(G, MUL(g, c)), out);
    return;
  case BI_hypot:
    d(G, x0, DIV(MUL(g, x), e), out);
    d(G, y0, DIV(MUL(g, y), e), out);
    return;
  case BI_copysign:
    d(G, x0, MUL(MUL(g, mk_call(G, BI_copysign, one, x)), mk_call(G, BI_copysign, one, y)), out);
    return;
  case BI_lgamma: d(G, x0, MUL(g, digamma(G, t, x)), out); return;
  case BI_tgamma: d(G, x0, MUL(MUL(g, e), digamma(G, t, x)), out); return;
  case BI_fma:
    d(G, x0, MUL(g, y), out);
    d(G, y0, MUL(g, x), out);
    d(G, e->args[2], g, out);
    return;
  case BI_fdim:
    c = mk_bin(G, OP_GT, x, y);
    d(G, x0, mk_when(G, c, g), out);
    d(G, y0, mk_when(G, c, mk_neg(G, g)), out);
    return;
  case NUM_BUILTINS:
    break;
  }
#undef F1
#undef MUL
#undef DIV
#undef ADD
#undef SUB
#undef I
  internal_error(G->c, __FILE__, __LINE__, "a builtin without a derivative");
}

static void derive_binary(Grad *G, Expr *e, Expr *g, ContribVec *out) {
  Expr *a = e->a, *b = e->b, *c;
  switch ((BinOp)e->op) {
  case OP_ADD:
    d(G, a, g, out);
    d(G, b, g, out);
    return;
  case OP_SUB:
    d(G, a, g, out);
    d(G, b, mk_neg(G, g), out);
    return;
  case OP_MUL:
    d(G, a, mk_mul(G, g, b), out);
    d(G, b, mk_mul(G, g, a), out);
    return;
  case OP_DIV:
    d(G, a, mk_div(G, g, b), out);
    d(G, b, mk_neg(G, mk_div(G, mk_mul(G, g, a), mk_mul(G, b, b))), out);
    return;
  case OP_MOD: /* a - b * floor(a / b) */
    d(G, a, g, out);
    d(G, b, mk_neg(G, mk_mul(G, g, mk_call(G, BI_floor, mk_div(G, a, b), NULL))), out);
    return;
  case OP_MIN:
  case OP_MAX: /* ties go to the first operand */
    c = mk_bin(G, e->op == OP_MIN ? OP_LE : OP_GE, a, b);
    d(G, a, mk_when(G, c, g), out);
    d(G, b, mk_select(G, c, mk_int(G, 0), g), out);
    return;
  default: /* comparisons and logic give bool: nothing flows */
    return;
  }
}

/* Appends the adjoint of every active read in e, given e's adjoint g.
 * The contributions of a ?: branch are guarded by the condition as a whole,
 * so that reads valid only on that branch stay under it. */
static void derive(Grad *G, Expr *e, Expr *g, ContribVec *out) {
  if (!active_in(G, e))
    return;
  switch (e->kind) {
  case EX_ACCESS:
    vec_push(G->c->arena, out, ((Contrib){e, g}));
    return;
  case EX_CAST:
    derive(G, e->args[0], g, out);
    return;
  case EX_UNARY:
    if (e->op == OP_NEG)
      derive(G, e->a, mk_neg(G, g), out);
    return;
  case EX_BINARY:
    derive_binary(G, e, g, out);
    return;
  case EX_BUILTIN:
    derive_builtin(G, e, g, out);
    return;
  case EX_SELECT: {
    ContribVec sub = {NULL, 0, 0};
    d(G, e->b, g, &sub);
    for (int i = 0; i < sub.len; i++)
      vec_push(G->c->arena, out, ((Contrib){sub.data[i].read, mk_when(G, e->a, sub.data[i].adj)}));
    sub.len = 0;
    d(G, e->c, g, &sub);
    for (int i = 0; i < sub.len; i++)
      vec_push(G->c->arena, out,
               ((Contrib){sub.data[i].read, mk_select(G, e->a, mk_int(G, 0), sub.data[i].adj)}));
    return;
  }
  default:
    return;
  }
}

/* ---- gathers: a scatter d_X(s(x, r)) += a(x, r) as statements ---- */

typedef enum { R_IN, R_LOW, R_HIGH } Region; /* reads in, below, above the tensor */

typedef struct Gather {
  Stmt *s;          /* the forward statement: its indices and their ranges */
  Expr **sol;       /* per index of s: its solution, or NULL */
  bool *lhs;        /* per index of s: a left-hand index of the gather */
  Expr *guard;      /* over the indices of s (substituted at the end) */
  VEC(IndexVar *) extra; /* band indices */
} Gather;

static bool is_stmt_var(const Stmt *s, const Expr *e) {
  return e->kind == EX_INDEX && e->var->id >= 0 && e->var->id < s->nvars &&
         s->vars[e->var->id] == e->var;
}

/* True when v's range lies inside [0, n). */
static bool within(Grad *G, const IndexVar *v, IRExpr *n) {
  return simplify_prove_le(G->c, ir_i64(G->c, 0), v->lo) && simplify_prove_le(G->c, v->hi, n);
}

/* guard && c, kept a flat chain of conjuncts. */
static void add_guard(Grad *G, Gather *gt, Expr *c) {
  if (c->kind == EX_BINARY && c->op == OP_AND) {
    add_guard(G, gt, c->a);
    add_guard(G, gt, c->b);
    return;
  }
  gt->guard = mk_and(G, gt->guard, c);
}

/* The index of s to solve sub for: not a left-hand index, not solved, with
 * no solved index beside it; left-hand indices of the forward first (their
 * ranges are the long ones), then unit coefficients.  -1 when none. */
static int pick_var(Gather *gt, const int64_t *coef) {
  int best = -1, score = -1;
  for (int w = 0; w < gt->s->nvars; w++) {
    if (!coef[w])
      continue;
    if (gt->sol[w])
      return -1;
    if (gt->lhs[w])
      continue;
    int sc = 2 * !gt->s->vars[w]->reduction + (coef[w] == 1 || coef[w] == -1);
    if (sc > score)
      best = w, score = sc;
  }
  return best;
}

/* acc + x, or acc - x when `neg`; acc may be NULL (nothing yet). */
static Expr *add_term(Grad *G, Expr *acc, bool neg, Expr *x) {
  if (is_neg(x)) {
    x = x->a;
    neg = !neg;
  }
  if (!acc)
    return neg ? mk_neg(G, x) : x;
  return mk_bin(G, neg ? OP_SUB : OP_ADD, acc, x);
}

/* Makes `target` (an index expression) equal to subscript `sub`: solves sub
 * for one index (guarded by its range and divisibility), else masks. */
static void solve(Grad *G, Gather *gt, Expr *target, Expr *sub) {
  Stmt *s = gt->s;
  int64_t *coef = arena_alloc(G->c->arena, sizeof *coef * (size_t)(s->nvars + 1));
  IRExpr *rest;
  int w = infer_affine(G->c, s, sub, coef, &rest) ? pick_var(gt, coef) : -1;
  if (w < 0) {
    add_guard(G, gt, mk_bin(G, OP_EQ, target, sub));
    return;
  }
  /* num = sign(c) * (target - (sub - c * v)): the terms one by one */
  int64_t c = coef[w], k = c < 0 ? -c : c, sign = c > 0 ? 1 : -1, r;
  Expr *num = c > 0 ? target : NULL;
  for (int u = 0; u < s->nvars; u++) {
    if (u == w || !coef[u])
      continue;
    int64_t q = -sign * coef[u], aq = q < 0 ? -q : q;
    Expr *x = mk_index(G, s->vars[u]);
    num = add_term(G, num, q < 0, aq == 1 ? x : mk_mul(G, mk_int(G, aq), x));
  }
  rest = simplify_expr(G->c, rest);
  if (ir_is_const(rest, &r) && r != INT64_MIN)
    num = r ? add_term(G, num, -sign * r < 0, mk_int(G, -sign * r < 0 ? sign * r : -sign * r)) : num;
  else
    num = add_term(G, num, sign > 0, bound_expr(G, rest, sub->loc));
  if (c < 0)
    num = add_term(G, num, true, target);
  Expr *sol = k == 1 ? num : mk_div(G, num, mk_int(G, k));
  if (k != 1)
    add_guard(G, gt, mk_bin(G, OP_EQ, mk_bin(G, OP_MOD, num, mk_int(G, k)), mk_int(G, 0)));
  IndexVar *v = s->vars[w];
  Expr *x = mk_index(G, v);
  add_guard(G, gt, mk_bin(G, OP_AND, mk_bin(G, OP_LE, bound_expr(G, v->lo, v->loc), x),
                          mk_bin(G, OP_LT, x, bound_expr(G, v->hi, v->loc))));
  for (int u = 0; u < s->nvars; u++)
    if (gt->sol[u])
      gt->sol[u] = subst1(G, gt->sol[u], v, sol);
  gt->sol[w] = sol;
}

/* The position a read at z reaches under boundary condition bc, extent n. */
static Expr *bc_position(Grad *G, BCKind bc, Expr *z, Expr *n) {
  Expr *zero = mk_int(G, 0), *n2 = mk_mul(G, mk_int(G, 2), n);
  switch (bc) {
  case BC_CLAMP:
    return mk_bin(G, OP_MIN, mk_bin(G, OP_MAX, z, zero), mk_sub(G, n, mk_int(G, 1)));
  case BC_WRAP:
    return mk_bin(G, OP_MOD, z, n);
  default: { /* mirror: period 2n, n..2n-1 reflected */
    Expr *m = mk_bin(G, OP_MOD, z, n2);
    return mk_select(G, mk_bin(G, OP_LT, m, n), m, mk_sub(G, mk_sub(G, n2, mk_int(G, 1)), m));
  }
  }
}

/* [lo, hi) of the affine subscript (coef, rest) over the ranges of s. */
static void affine_bounds(Grad *G, const Stmt *s, const int64_t *coef, IRExpr *rest,
                          IRExpr **lo, IRExpr **hi) {
  Ctx *c = G->c;
  IRExpr *l = rest, *h = rest;
  for (int w = 0; w < s->nvars; w++) {
    if (!coef[w])
      continue;
    IRExpr *k = ir_i64(c, coef[w]);
    IRExpr *a = ir_mul(c, k, s->vars[w]->lo);
    IRExpr *b = ir_mul(c, k, ir_sub(c, s->vars[w]->hi, ir_i64(c, 1)));
    l = ir_add(c, l, coef[w] > 0 ? a : b);
    h = ir_add(c, h, coef[w] > 0 ? b : a);
  }
  *lo = simplify_expr(c, l);
  *hi = simplify_expr(c, ir_add(c, h, ir_i64(c, 1)));
}

/* Dim k of a read in region LOW or HIGH of its boundary condition: lhs index
 * y gets the reads outside the tensor.  False when the band is provably
 * empty. */
static bool band(Grad *G, Gather *gt, const Tensor *x, int k, Region rg, Expr *sub, IndexVar *y) {
  Stmt *s = gt->s;
  IRExpr *n = x->size[k];
  Expr *ne = bound_expr(G, n, sub->loc);
  int64_t *coef = arena_alloc(G->c->arena, sizeof *coef * (size_t)(s->nvars + 1));
  IRExpr *rest, *zl, *zh;
  if (infer_affine(G->c, s, sub, coef, &rest) && pick_var(gt, coef) >= 0) {
    affine_bounds(G, s, coef, rest, &zl, &zh);
    IRExpr *zero = ir_i64(G->c, 0);
    if (rg == R_LOW ? simplify_prove_le(G->c, zero, zl) : simplify_prove_le(G->c, zh, n))
      return false;
    IRExpr *lo = rg == R_LOW ? zl : ir_max(G->c, n, zl);
    IRExpr *hi = rg == R_LOW ? ir_min(G->c, zero, zh) : zh;
    IndexVar *z = new_var(G, G->zname[k], simplify_expr(G->c, lo), simplify_expr(G->c, hi), true);
    vec_push(G->c->arena, &gt->extra, z);
    solve(G, gt, mk_index(G, z), sub);
    sub = mk_index(G, z);
  } else {
    add_guard(G, gt, rg == R_LOW ? mk_bin(G, OP_LT, sub, mk_int(G, 0)) : mk_bin(G, OP_GE, sub, ne));
  }
  if (x->bc != BC_CLAMP)
    add_guard(G, gt, mk_bin(G, OP_EQ, mk_index(G, y), bc_position(G, x->bc, sub, ne)));
  return true;
}

/* One gather statement: the reads of X at args in the given regions. */
static void gather_region(Grad *G, FStmt *f, Version *X, Expr **args, Expr *a,
                          const Region *rg) {
  Stmt *s = f->s;
  const Tensor *x = X->t;
  Gather gt = {s, NULL, NULL, NULL, {NULL, 0, 0}};
  gt.sol = arena_alloc(G->c->arena, sizeof *gt.sol * (size_t)(s->nvars + 1));
  gt.lhs = arena_alloc(G->c->arena, sizeof *gt.lhs * (size_t)(s->nvars + 1));
  IndexVar *lhs[TC_MAX_RANK];
  for (int k = 0; k < x->rank; k++) {
    Expr *sub = args[k];
    IRExpr *n = x->size[k], *zero = ir_i64(G->c, 0);
    if (rg[k] != R_IN) {
      bool clamp = x->bc == BC_CLAMP;
      IRExpr *lo = clamp && rg[k] == R_HIGH ? ir_sub(G->c, n, ir_i64(G->c, 1)) : zero;
      IRExpr *hi = clamp && rg[k] == R_LOW ? ir_i64(G->c, 1) : n;
      lhs[k] = new_var(G, G->yname[k], simplify_expr(G->c, lo), hi, false);
      if (!band(G, &gt, x, k, rg[k], sub, lhs[k]))
        return;
    } else if (is_stmt_var(s, sub) && !gt.lhs[sub->var->id] && !gt.sol[sub->var->id] &&
               within(G, sub->var, n)) {
      lhs[k] = sub->var;
      gt.lhs[sub->var->id] = true;
    } else {
      lhs[k] = new_var(G, G->yname[k], zero, n, false);
      solve(G, &gt, mk_index(G, lhs[k]), sub);
    }
  }
  Subst m = {arena_alloc(G->c->arena, sizeof(IndexVar *) * (size_t)(s->nvars + 1)),
             arena_alloc(G->c->arena, sizeof(Expr *) * (size_t)(s->nvars + 1)), 0};
  IndexVar **red = arena_alloc(G->c->arena, sizeof *red * (size_t)(s->nvars + gt.extra.len + 1));
  int nred = 0;
  for (int w = 0; w < s->nvars; w++) {
    if (gt.sol[w]) {
      m.from[m.n] = s->vars[w];
      m.to[m.n++] = gt.sol[w];
    } else if (!gt.lhs[w]) {
      red[nred++] = s->vars[w];
    }
  }
  for (int i = 0; i < gt.extra.len; i++)
    red[nred++] = gt.extra.data[i];
  Expr *rhs = subst(G, a, &m);
  if (gt.guard)
    rhs = mk_when(G, subst(G, gt.guard, &m), rhs);
  accumulate(G, X, lhs, red, nred, rhs);
}

/* The gathers for the reads of X at args with adjoint a: one per
 * combination of regions of the dimensions under clamp, mirror or wrap. */
static void gather(Grad *G, FStmt *f, Version *X, Expr **args, Expr *a) {
  const Tensor *x = X->t;
  int special[TC_MAX_RANK], m = 0, combos = 1;
  for (int k = 0; k < x->rank; k++)
    if (X->stmt < 0 && x->bc != BC_NONE && x->bc != BC_CONSTANT && x->bc_dim[k]) {
      special[m++] = k;
      combos *= 3;
    }
  for (int code = 0; code < combos; code++) {
    Region rg[TC_MAX_RANK] = {R_IN};
    for (int i = 0, c = code; i < m; i++, c /= 3)
      rg[special[i]] = (Region)(c % 3);
    gather_region(G, f, X, args, a, rg);
  }
}

/* ---- the reverse pass ---- */

static const char *const op_names[] = {"=", "+=", "*=", "min=", "max="};
static const char *const op_bang_names[] = {"=", "+=!", "*=!", "min=!", "max=!"};

/* A helper temporary of the reverse pass, indexed like s's left-hand side. */
static Tensor *helper(Grad *G, const char *prefix, const FStmt *f, tc_dtype t) {
  const Tensor *o = f->out->t;
  return new_tensor(G, fresh(G, arena_printf(G->c->arena, "%s_%s", prefix, o->name)), t, o->rank,
                    o->size);
}

/* max=/min=: the seed reaches only the first winning position.  win(x) is
 * the smallest flat position (lexicographic in the reduction indices) whose
 * value equals the result, unless the previous value won. */
static Expr *route_minmax(Grad *G, FStmt *f, Expr *g) {
  Stmt *s = f->s;
  Version *out = f->out;
  Expr *outx = mk_access(G, out->t, s->vars, s->nidx);
  Expr *cand = mk_bin(G, OP_EQ, f->rhs, outx);
  if (out->prev)
    cand = mk_and(G, cand,
                  mk_bin(G, OP_NE, mk_access(G, out->prev->t, s->vars, s->nidx), outx));
  if (s->nvars == s->nidx)
    return mk_when(G, cand, g);
  Expr *flat = NULL, *all = NULL; /* int64: the first factor is cast */
  IRExpr *total = ir_i64(G->c, 1);
  int64_t n;
  for (int i = s->nidx; i < s->nvars; i++) {
    IndexVar *r = s->vars[i];
    IRExpr *ext = simplify_expr(G->c, ir_sub(G->c, r->hi, r->lo));
    Expr *e = bound_expr(G, ext, r->loc);
    Expr *off = mk_sub(G, mk_index(G, r), bound_expr(G, r->lo, r->loc));
    flat = flat ? mk_add(G, mk_mul(G, flat, e), off) : mk_cast(G, TC_INT64, off);
    all = all ? mk_mul(G, all, e) : mk_cast(G, TC_INT64, e);
    total = simplify_expr(G->c, ir_mul(G->c, total, ext));
  }
  if (ir_is_const(total, &n) && n >= 0 && n <= INT32_MAX)
    all = mk_cast(G, TC_INT64, mk_int(G, n));
  Tensor *win = helper(G, "win", f, TC_INT64);
  emit(G, new_bstmt(G, win, s->vars, s->nidx, s->nvars, "min=!", mk_select(G, cand, flat, all)));
  return mk_when(G, mk_bin(G, OP_EQ, flat, mk_access(G, win, s->vars, s->nidx)), g);
}

/* *=: the product of the other factors, exact with zeros: nz(x) counts the
 * zero factors (the previous value among them), pnz(x) multiplies the
 * others. */
typedef struct Product {
  Tensor *nz, *pnz;
} Product;

static Product products(Grad *G, FStmt *f) {
  Stmt *s = f->s;
  Version *out = f->out;
  tc_dtype t = out->t->dtype;
  Product p = {helper(G, "nz", f, TC_INT32), helper(G, "pnz", f, t)};
  Expr *v = mk_cast(G, t, f->rhs), *zero = mk_int(G, 0), *one = mk_int(G, 1);
  Expr *is0 = mk_bin(G, OP_EQ, v, zero);
  const char *nz_op = "+=!", *pnz_op = "*=!";
  if (out->prev) {
    Expr *old = mk_access(G, out->prev->t, s->vars, s->nidx);
    Expr *old0 = mk_bin(G, OP_EQ, old, zero);
    emit(G, new_bstmt(G, p.nz, s->vars, s->nidx, s->nidx, "=", mk_select(G, old0, one, zero)));
    emit(G, new_bstmt(G, p.pnz, s->vars, s->nidx, s->nidx, "=",
                      mk_select(G, old0, mk_fconst(G, t, 1), old)));
    nz_op = "+=", pnz_op = "*=";
  }
  emit(G, new_bstmt(G, p.nz, s->vars, s->nidx, s->nvars, nz_op, mk_select(G, is0, one, zero)));
  emit(G, new_bstmt(G, p.pnz, s->vars, s->nidx, s->nvars, pnz_op,
                    mk_select(G, is0, mk_fconst(G, t, 1), v)));
  return p;
}

/* d(product)/d(factor v) at indices idx. */
static Expr *other_factors(Grad *G, Product p, IndexVar **idx, int n, Expr *v) {
  Expr *nz = mk_access(G, p.nz, idx, n), *pnz = mk_access(G, p.pnz, idx, n);
  Expr *zero = mk_int(G, 0);
  Expr *lone = mk_bin(G, OP_AND, mk_bin(G, OP_EQ, nz, mk_int(G, 1)), mk_bin(G, OP_EQ, v, zero));
  return mk_select(G, mk_bin(G, OP_EQ, nz, zero), mk_div(G, pnz, v), mk_when(G, lone, pnz));
}

/* What flows from the written version to the one it started from. */
static void passthrough(Grad *G, FStmt *f, Product p) {
  Stmt *s = f->s;
  Version *out = f->out, *prev = out->prev;
  if (!prev || !prev->adj || (s->op == RED_NONE && !f->copy))
    return;
  IndexVar **y = full_vars(G, out->t);
  int r = out->t->rank;
  Expr *gy = mk_access(G, out->adj, y, r), *in = NULL;
  for (int k = 0; k < r; k++) {
    const IndexVar *v = s->vars[k];
    Expr *yk = mk_index(G, y[k]);
    if (!simplify_prove_le(G->c, v->lo, ir_i64(G->c, 0)))
      in = mk_and(G, in, mk_bin(G, OP_LE, bound_expr(G, v->lo, v->loc), yk));
    if (!simplify_prove_le(G->c, out->t->size[k], v->hi))
      in = mk_and(G, in, mk_bin(G, OP_LT, yk, bound_expr(G, v->hi, v->loc)));
  }
  Expr *inner = gy, *old = mk_access(G, prev->t, y, r);
  switch (s->op) {
  case RED_NONE:
    inner = mk_int(G, 0);
    break;
  case RED_ADD:
    in = NULL; /* everything flows */
    break;
  case RED_MIN:
  case RED_MAX:
    inner = mk_when(G, mk_bin(G, OP_EQ, old, mk_access(G, out->t, y, r)), gy);
    break;
  case RED_MUL:
    inner = mk_mul(G, gy, other_factors(G, p, y, r, old));
    break;
  }
  accumulate(G, prev, y, NULL, 0, in ? mk_select(G, in, inner, gy) : inner);
}

/* The contributions of one forward statement. */
static void reverse_stmt(Grad *G, FStmt *f) {
  Version *out = f->out;
  if (!out->adj || !out->adj_defined)
    return; /* no adjoint reached it: nothing flows */
  Stmt *s = f->s;
  Expr *g = mk_access(G, out->adj, s->vars, s->nidx), *seed = g;
  Product p = {NULL, NULL};
  if (s->op == RED_MIN || s->op == RED_MAX)
    seed = route_minmax(G, f, g);
  if (s->op == RED_MUL) {
    p = products(G, f);
    seed = mk_mul(G, g, other_factors(G, p, s->vars, s->nidx, mk_cast(G, out->t->dtype, f->rhs)));
  }
  G->share = true; /* nothing in this statement writes prev's adjoint */
  passthrough(G, f, p);
  G->share = false;
  ContribVec cv = {NULL, 0, 0};
  derive(G, f->rhs, seed, &cv);
  /* group the reads of one version at the same subscripts */
  ContribVec groups = {NULL, 0, 0};
  bool *done = arena_alloc(G->c->arena, (size_t)cv.len + 1);
  for (int i = 0; i < cv.len; i++) {
    if (done[i])
      continue;
    Contrib c = cv.data[i];
    for (int j = i + 1; j < cv.len; j++)
      if (!done[j] && expr_equal(c.read, cv.data[j].read)) {
        c.adj = mk_add(G, c.adj, cv.data[j].adj);
        done[j] = true;
      }
    vec_push(G->c->arena, &groups, c);
  }
  /* a group that copies the seed into the only contribution to its version
   * goes last, and may take over the seed's tensor: nothing reads it after */
  int last = -1;
  for (int i = 0; i < groups.len; i++) {
    Expr *r = groups.data[i].read;
    Version *x = version_of(G, r->tensor);
    bool copy = expr_equal(groups.data[i].adj, g) && x->stmt >= 0 && !x->adj_defined &&
                r->nargs == s->nidx;
    for (int k = 0; copy && k < r->nargs; k++)
      copy = r->args[k]->kind == EX_INDEX && r->args[k]->var == s->vars[k];
    for (int j = 0; copy && j < groups.len; j++)
      copy = j == i || groups.data[j].read->tensor != r->tensor;
    if (copy)
      last = i;
  }
  for (int i = 0; i <= groups.len; i++) {
    int k = i < groups.len ? i : last;
    if (k < 0 || (i < groups.len && i == last))
      continue;
    Contrib c = groups.data[k];
    G->share = k == last;
    gather(G, f, version_of(G, c.read->tensor), c.read->args, c.adj);
  }
  G->share = false;
}

/* Names the gradients, assigns adjoints to the active versions. */
static void make_adjoints(Grad *G) {
  Def *d = G->d;
  for (int i = 0; i < G->vers.len; i++) {
    Version *v = G->vers.data[i];
    if (!v->varied || !v->useful)
      continue;
    if (v->stmt < 0) {
      v->adj = G->din[v->fwd->id];
    } else if (v->final && !v->read_later) {
      v->adj = G->dout[v->fwd->id - d->ninputs];
      v->adj_input = v->adj_defined = true;
    } else {
      const char *base = v->final ? arena_printf(G->c->arena, "d_%s_total", v->t->name)
                                  : arena_printf(G->c->arena, "d_%s", v->t->name);
      v->adj = new_tensor(G, fresh(G, base), v->t->dtype, v->t->rank, v->t->size);
    }
  }
  for (int i = 0; i < G->vers.len; i++) { /* outputs read later start from d_O */
    Version *v = G->vers.data[i];
    if (!v->adj || !v->final || !v->read_later)
      continue;
    IndexVar **y = full_vars(G, v->adj);
    Tensor *dout = G->dout[v->fwd->id - d->ninputs];
    emit(G, new_bstmt(G, v->adj, y, v->adj->rank, v->adj->rank, "=",
                      mk_access(G, dout, y, v->adj->rank)));
    v->adj_defined = true;
  }
}

/* ---- recomputation ---- */

static void mark_needed(Grad *G, const Expr *e) {
  if (!e)
    return;
  if (e->kind == EX_ACCESS) {
    Version *v = version_of(G, e->tensor);
    if (v)
      v->needed = true;
  }
  for (int i = 0; i < e->nargs; i++)
    mark_needed(G, e->args[i]);
  mark_needed(G, e->a);
  mark_needed(G, e->b);
  mark_needed(G, e->c);
}

/* The forward statements whose values the reverse pass reads, on versions. */
static BStmtVec recompute(Grad *G) {
  Def *d = G->d;
  for (int i = 0; i < G->rev.len; i++)
    mark_needed(G, G->rev.data[i]->rhs);
  for (int k = d->nstmts - 1; k >= 0; k--) {
    FStmt *f = &G->fs[k];
    if (!f->out->needed)
      continue;
    mark_needed(G, f->rhs);
    for (int i = 0; i < f->s->nexists; i++)
      mark_needed(G, f->exists[i]);
    if (f->copy)
      f->out->prev->needed = true;
  }
  BStmtVec fwd = {NULL, 0, 0};
  for (int k = 0; k < d->nstmts; k++) {
    FStmt *f = &G->fs[k];
    Stmt *s = f->s;
    Tensor *t = f->out->t;
    if (!f->out->needed)
      continue;
    if (f->copy) {
      IndexVar **y = full_vars(G, t);
      vec_push(G->c->arena, &fwd,
               new_bstmt(G, t, y, t->rank, t->rank, "=", mk_access(G, f->out->prev->t, y, t->rank)));
    }
    bool first = !f->copy;
    BStmt *b = new_bstmt(G, t, s->vars, s->nidx, s->nvars,
                         first ? op_bang_names[s->op] : op_names[s->op],
                         first ? mk_cast(G, t->dtype, f->rhs) : f->rhs);
    b->exists = f->exists;
    b->nexists = s->nexists;
    vec_push(G->c->arena, &fwd, b);
  }
  return fwd;
}

/* ---- the def ---- */

/* The gradient inputs d_O (dims: the output's extents, or a fresh size
 * symbol where an extent is an expression) and outputs d_I. */
static void name_gradients(Grad *G) {
  Def *d = G->d;
  Ctx *c = G->c;
  G->dout = arena_alloc(c->arena, sizeof *G->dout * (size_t)(d->noutputs + 1));
  G->din = arena_alloc(c->arena, sizeof *G->din * (size_t)(d->ninputs + 1));
  for (int j = 0; j < d->noutputs; j++) {
    Tensor *o = d->tensors[d->ninputs + j];
    Tensor *t = new_tensor(G, fresh(G, arena_printf(c->arena, "d_%s", o->name)), o->dtype,
                           o->rank, o->size);
    t->dims = arena_alloc(c->arena, sizeof *t->dims * (size_t)(o->rank + 1));
    for (int k = 0; k < o->rank; k++) {
      IRExpr *n = simplify_expr(c, o->size[k]);
      if (n->kind == IR_VAR && n->var->kind == VAR_SIZE && n->var->sym)
        t->dims[k].sym = n->var->sym;
      else if (!ir_is_const(n, &t->dims[k].value) || t->dims[k].value < 0)
        t->dims[k].name = fresh(G, arena_printf(c->arena, "%s_size%d", o->name, k));
    }
    G->dout[j] = t;
  }
  for (int i = 0; i < d->ninputs; i++) {
    Tensor *x = d->tensors[i];
    if (!G->wrt[i])
      continue;
    Tensor *t = new_tensor(G, fresh(G, arena_printf(c->arena, "d_%s", x->name)), x->dtype,
                           x->rank, x->size);
    t->dims = x->dims;
    t->typed = x->rank > 0;
    G->din[i] = t;
  }
  int rank = 0;
  for (int i = 0; i < d->ntensors; i++)
    rank = d->tensors[i]->rank > rank ? d->tensors[i]->rank : rank;
  for (int k = 0; k < rank; k++) {
    G->yname[k] = fresh(G, arena_printf(c->arena, "y%d", k));
    G->zname[k] = fresh(G, arena_printf(c->arena, "z%d", k));
  }
}

static void print_def(Grad *G, Buf *b, const BStmtVec *fwd) {
  Def *d = G->d;
  buf_printf(b, "def %s_grad(", d->name);
  for (int i = 0; i < d->ninputs; i++) {
    const Tensor *x = d->tensors[i];
    buf_puts(b, i ? ", " : "");
    print_param(b, x, x->dims);
    print_boundary(b, x);
  }
  for (int j = 0; j < d->noutputs; j++) {
    buf_puts(b, j || d->ninputs ? ", " : "");
    print_param(b, G->dout[j], G->dout[j]->dims);
  }
  buf_puts(b, ") -> (");
  for (int i = 0, n = 0; i < d->ninputs; i++) {
    const Tensor *t = G->din[i];
    if (!t)
      continue;
    buf_puts(b, n++ ? ", " : "");
    if (t->typed)
      print_param(b, t, t->dims);
    else
      buf_puts(b, t->name);
  }
  buf_puts(b, ") {\n");
  for (int i = 0; i < fwd->len + G->rev.len; i++) {
    print_bstmt(G, b, i < fwd->len ? fwd->data[i] : G->rev.data[i - fwd->len]);
    if (b->len > MAX_SOURCE)
      error_at(G->c, d->loc, "cannot differentiate '%s': its backward would exceed %d MB of "
                             "source (split long expressions with temporaries)", d->name,
               MAX_SOURCE >> 20);
  }
  buf_puts(b, "}\n");
}

void grad_def(Ctx *c, Def *d, const bool *wrt, Buf *out) {
  Grad G = {0};
  G.c = c;
  G.d = d;
  G.wrt = wrt;
  reserve_def_names(&G);
  name_gradients(&G);
  build_versions(&G);
  find_active(&G);
  make_adjoints(&G);
  for (int k = d->nstmts - 1; k >= 0; k--)
    reverse_stmt(&G, &G.fs[k]);
  for (int i = 0; i < d->ninputs; i++) {
    Version *v = G.vers.data[i];
    if (G.din[i] && !v->adj) {
      v->adj = G.din[i];
      define_zero(&G, v);
    } else if (G.din[i] && !v->adj_defined) {
      define_zero(&G, v);
    }
  }
  BStmtVec fwd = recompute(&G);
  print_def(&G, out, &fwd);
}
