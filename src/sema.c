/*
 * sema.c — names, types and TC's rules, on the parsed AST in place.
 *
 * Per def, in order:
 *
 *  1. Declarations.  Parameter and output names are unique and are not
 *     builtin, min/max or type names; size symbols are collected from the
 *     inputs' dims in order of appearance (the first binding tensor/dim is
 *     kept: the runtime reads the size there and checks the others); a typed
 *     output may only use symbols bound by inputs.
 *  2. Temporaries.  Every statement's left-hand name that is neither input
 *     nor output becomes a T_TEMP tensor, so that a read of a tensor defined
 *     only later is reported as such instead of looking like a reduction
 *     index.  Ranks are fixed here (declared, else the first statement
 *     writing the tensor) and Def.tensors is rebuilt: inputs, outputs, temps.
 *  3. Statements, in program order.  The left-hand indices become IndexVars;
 *     `where` lets are resolved in order (each may use earlier lets) and
 *     inlined, as copies, wherever they are used; then the right-hand side
 *     and the `exists` clauses are resolved.  An identifier that is no
 *     index, let, size symbol or tensor is a reduction index.  Stmt.vars
 *     lists the left-hand indices, then the reduction indices in order of
 *     first appearance in the (inlined) right-hand side and exists clauses —
 *     an index used only by an unused let is no index of the statement.
 *     Where ranges are resolved last: bounds are integer expressions of
 *     constants and size symbols.
 *  4. Types, bottom-up as names resolve (docs/language.md "Types"); the
 *     statement then fixes or checks its tensor's type, and sets first_def
 *     and init (a reduction initialises with its identity exactly when it is
 *     the tensor's first definition, with or without '!').
 *
 * Compile-time constants (tc_compile_ex): a rank-0 input named by a constant
 * is removed from its def's inputs before step 1 (the others are renumbered)
 * but stays declared, so its name keeps clashing as a parameter's would; every
 * read of it becomes a literal of its dtype (the value rounded to that type),
 * and an integer constant may also appear in where range bounds.
 *
 * Inlining lets could blow an expression up (`b = a + a, c = b + b, ...`):
 * copies are counted against a budget per statement and their depth bounded,
 * so every later pass walks trees of bounded height and size.
 */
#include "tc.h"

#include <math.h>
#include <string.h>

#define MAX_HEIGHT 512       /* expression height after inlining lets */
#define MAX_INLINED 200000   /* nodes copied by inlining, per statement */

/* ---- a string map (open addressing, arena-backed) ---- */

typedef struct Map {
  const char **keys;
  void **vals;
  int cap, len;
} Map;

static uint64_t hash_str(const char *s) { return hash_bytes(s, strlen(s), 0); }

static void *map_get(const Map *m, const char *key) {
  if (!m->cap)
    return NULL;
  for (uint64_t i = hash_str(key) & (uint64_t)(m->cap - 1);; i = (i + 1) & (uint64_t)(m->cap - 1)) {
    if (!m->keys[i])
      return NULL;
    if (!strcmp(m->keys[i], key))
      return m->vals[i];
  }
}

static void map_put(Arena *a, Map *m, const char *key, void *val);

static void map_grow(Arena *a, Map *m) {
  Map n = {NULL, NULL, m->cap ? m->cap * 2 : 16, 0};
  n.keys = arena_alloc(a, sizeof *n.keys * (size_t)n.cap);
  n.vals = arena_alloc(a, sizeof *n.vals * (size_t)n.cap);
  for (int i = 0; i < m->cap; i++)
    if (m->keys[i])
      map_put(a, &n, m->keys[i], m->vals[i]);
  *m = n;
}

/* Inserts or replaces. */
static void map_put(Arena *a, Map *m, const char *key, void *val) {
  if (2 * (m->len + 1) > m->cap)
    map_grow(a, m);
  uint64_t i = hash_str(key) & (uint64_t)(m->cap - 1);
  while (m->keys[i] && strcmp(m->keys[i], key))
    i = (i + 1) & (uint64_t)(m->cap - 1);
  if (!m->keys[i])
    m->len++;
  m->keys[i] = key;
  m->vals[i] = val;
}

/* ---- state ---- */

typedef struct Sema {
  Ctx *c;
  Def *d;
  Map tensors; /* name -> Tensor */
  Map syms;    /* name -> SizeSym */
  Map consts;  /* name -> literal Expr, for constant parameters of this def */
} Sema;

typedef struct Let {
  const char *name;
  int index;   /* position among the statement's lets */
  Expr *e;     /* resolved */
} Let;

/* Names of one statement. */
typedef struct Scope {
  Stmt *s;
  Map lhs;     /* name -> IndexVar, left-hand indices */
  Map red;     /* name -> IndexVar, reduction index candidates */
  Map lets;    /* name -> Let */
  int cur_let; /* lets with index < cur_let are visible */
  long budget; /* nodes inlining may still copy */
} Scope;

static const char *const red_names[] = {"=", "+=", "*=", "min=", "max="};

static const char *plural(int n, const char *one, const char *many) {
  return n == 1 ? one : many;
}

static const char *type_name(tc_dtype t) { return dtype_info[t].name; }

/* What a reserved name is, or NULL: tensors may not take these names. */
static const char *reserved(const char *name) {
  tc_dtype t;
  if (!strcmp(name, "min") || !strcmp(name, "max") || builtin_lookup(name) >= 0)
    return "a builtin function";
  if (dtype_from_name(name, strlen(name), &t))
    return "a type name";
  return NULL;
}

/* ---- expressions ---- */

static Expr *resolve(Sema *S, Scope *sc, Expr *e, int depth);

/* A copy of the resolved let body `e`, inlined at `use` at depth `depth`. */
static Expr *copy_expr(Sema *S, Scope *sc, const Expr *e, int depth, Loc use) {
  if (depth > MAX_HEIGHT)
    error_at(S->c, use, "expression nested too deeply after inlining where lets");
  if (--sc->budget < 0)
    error_at(S->c, use, "expression too large after inlining where lets");
  Expr *n = arena_alloc(S->c->arena, sizeof *n);
  *n = *e;
  if (e->a)
    n->a = copy_expr(S, sc, e->a, depth + 1, use);
  if (e->b)
    n->b = copy_expr(S, sc, e->b, depth + 1, use);
  if (e->c)
    n->c = copy_expr(S, sc, e->c, depth + 1, use);
  if (e->nargs) {
    n->args = arena_alloc(S->c->arena, sizeof *n->args * (size_t)e->nargs);
    for (int i = 0; i < e->nargs; i++)
      n->args[i] = copy_expr(S, sc, e->args[i], depth + 1, use);
  }
  return n;
}

static void resolve_args(Sema *S, Scope *sc, Expr *e, int depth) {
  for (int i = 0; i < e->nargs; i++)
    e->args[i] = resolve(S, sc, e->args[i], depth + 1);
}

/* True when `e` reads the lhs of its statement at exactly the written point. */
static bool is_written_point(const Stmt *s, const Expr *e) {
  for (int i = 0; i < e->nargs; i++)
    if (e->args[i]->kind != EX_INDEX || e->args[i]->var != s->vars[i])
      return false;
  return true;
}

/* A copy of the literal of a constant parameter, at `loc`. */
static Expr *const_literal(Sema *S, const Expr *lit, Loc loc) {
  Expr *n = arena_alloc(S->c->arena, sizeof *n);
  *n = *lit;
  n->loc = loc;
  return n;
}

/* T(args) or a rank-0 T: a read of tensor `t`. */
static Expr *resolve_access(Sema *S, Scope *sc, Expr *e, Tensor *t, int depth) {
  const Expr *lit = t->role == T_INPUT && !t->rank ? map_get(&S->consts, t->name) : NULL;
  if (lit && e->nargs)
    error_at(S->c, e->loc, "'%s' is a compile-time constant and is read with %d %s", t->name,
             e->nargs, plural(e->nargs, "subscript", "subscripts"));
  if (lit)
    return const_literal(S, lit, e->loc);
  if (t->role != T_INPUT && !t->def)
    error_at(S->c, e->loc, "'%s' is read before it is defined", t->name);
  if (e->nargs != t->rank)
    error_at(S->c, e->loc, "'%s' has rank %d but is read with %d %s", t->name, t->rank,
             e->nargs, plural(e->nargs, "subscript", "subscripts"));
  resolve_args(S, sc, e, depth);
  for (int i = 0; i < e->nargs; i++)
    if (!dtype_is_int(e->args[i]->type))
      error_at(S->c, e->args[i]->loc, "subscript must be an integer, got %s",
               type_name(e->args[i]->type));
  if (t == sc->s->lhs && (sc->s->op != RED_NONE || !is_written_point(sc->s, e)))
    error_at(S->c, e->loc, "a statement may read the tensor it writes only pointwise: "
                           "'%s' is read here, but only '=' reading it at exactly the "
                           "left-hand indices is allowed", t->name);
  e->kind = EX_ACCESS;
  e->tensor = t;
  e->type = t->dtype;
  return e;
}

/* A plain name: index, let, size symbol, rank-0 tensor, else a reduction index. */
static Expr *resolve_name(Sema *S, Scope *sc, Expr *e, int depth) {
  IndexVar *v = map_get(&sc->lhs, e->name);
  Let *l = map_get(&sc->lets, e->name);
  SizeSym *y = map_get(&S->syms, e->name);
  Tensor *t = map_get(&S->tensors, e->name);
  const char *r = reserved(e->name);
  if (!v && l) { /* (declarations keep these names apart) */
    if (l->index >= sc->cur_let)
      error_at(S->c, e->loc, l->index == sc->cur_let
                                 ? "where let '%s' is used in its own definition"
                                 : "where let '%s' is used before its definition (a let may "
                                   "only use earlier lets)", e->name);
    return copy_expr(S, sc, l->e, depth, e->loc);
  }
  if (!v && y) {
    e->kind = EX_SIZE;
    e->sym = y;
    e->type = TC_INT32;
    return e;
  }
  if (t && !v)
    return resolve_access(S, sc, e, t, depth);
  if (r && !v)
    error_at(S->c, e->loc, "'%s' is %s, not a value: call it as %s(...)", e->name, r, e->name);
  if (!v) {
    v = map_get(&sc->red, e->name);
    if (!v) {
      v = arena_alloc(S->c->arena, sizeof *v);
      v->name = e->name;
      v->loc = e->loc;
      v->id = -1; /* numbered when found in the final right-hand side */
      v->reduction = true;
      map_put(S->c->arena, &sc->red, e->name, v);
    }
  }
  e->kind = EX_INDEX;
  e->var = v;
  e->type = TC_INT32;
  return e;
}

static void check_arity(Sema *S, Expr *e, const char *what, int n) {
  if (e->nargs != n)
    error_at(S->c, e->loc, "%s takes %d %s, got %d", what, n, plural(n, "argument", "arguments"),
             e->nargs);
}

static void type_binary(Sema *S, Expr *e);

/* NAME(args): tensor read, min/max, builtin or cast. */
static Expr *resolve_call(Sema *S, Scope *sc, Expr *e, int depth) {
  Tensor *t = map_get(&S->tensors, e->name);
  if (t)
    return resolve_access(S, sc, e, t, depth);
  const char *what = map_get(&sc->lhs, e->name) || map_get(&sc->red, e->name) ? "an index"
                     : map_get(&sc->lets, e->name)                           ? "a where let"
                     : map_get(&S->syms, e->name)                            ? "a size symbol"
                                                                             : NULL;
  if (what)
    error_at(S->c, e->loc, "'%s' is %s, not a tensor or function", e->name, what);
  bool is_min = !strcmp(e->name, "min");
  if (is_min || !strcmp(e->name, "max")) {
    check_arity(S, e, is_min ? "'min'" : "'max'", 2);
    resolve_args(S, sc, e, depth);
    e->kind = EX_BINARY;
    e->op = is_min ? OP_MIN : OP_MAX;
    e->a = e->args[0];
    e->b = e->args[1];
    e->args = NULL;
    e->nargs = 0;
    type_binary(S, e);
    return e;
  }
  int bi = builtin_lookup(e->name);
  if (bi >= 0) {
    check_arity(S, e, arena_printf(S->c->arena, "'%s'", e->name), builtin_info[bi].arity);
    resolve_args(S, sc, e, depth);
    e->kind = EX_BUILTIN;
    e->builtin = bi;
    e->type = TC_FLOAT32;
    for (int i = 0; i < e->nargs; i++)
      if (e->args[i]->type == TC_FLOAT64)
        e->type = TC_FLOAT64;
    return e;
  }
  tc_dtype ty;
  if (dtype_from_name(e->name, strlen(e->name), &ty)) {
    if (e->nargs != 1)
      error_at(S->c, e->loc, "a cast to %s takes exactly one argument, got %d", type_name(ty),
               e->nargs);
    resolve_args(S, sc, e, depth);
    e->kind = EX_CAST;
    e->type = ty;
    return e;
  }
  error_at(S->c, e->loc, "unknown function or tensor '%s'", e->name);
}

static void type_binary(Sema *S, Expr *e) {
  tc_dtype a = e->a->type, b = e->b->type;
  switch ((BinOp)e->op) {
  case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_MOD:
    if (a == TC_BOOL || b == TC_BOOL)
      error_at(S->c, e->loc, "arithmetic on bool: '%s' needs numeric operands",
               binop_names[e->op]);
    e->type = dtype_promote(a, b);
    return;
  case OP_LT: case OP_LE: case OP_GT: case OP_GE: case OP_EQ: case OP_NE:
    e->type = TC_BOOL;
    return;
  case OP_AND: case OP_OR:
    if (a != TC_BOOL || b != TC_BOOL)
      error_at(S->c, e->loc, "'%s' needs bool operands, got %s", binop_names[e->op],
               type_name(a != TC_BOOL ? a : b));
    e->type = TC_BOOL;
    return;
  case OP_MIN: case OP_MAX:
    e->type = dtype_promote(a, b);
    return;
  case NUM_BINOPS:
    break;
  }
  IASSERT(S->c, !"binary operator");
}

static Expr *resolve(Sema *S, Scope *sc, Expr *e, int depth) {
  if (depth > MAX_HEIGHT)
    error_at(S->c, e->loc, "expression nested too deeply");
  switch (e->kind) {
  case EX_INT:
    e->type = TC_INT32;
    return e;
  case EX_FLOAT:
    e->type = TC_FLOAT32;
    return e;
  case EX_IDENT:
    return resolve_name(S, sc, e, depth);
  case EX_CALL:
    return resolve_call(S, sc, e, depth);
  case EX_UNARY:
    e->a = resolve(S, sc, e->a, depth + 1);
    if (e->op == OP_NEG && e->a->type == TC_BOOL)
      error_at(S->c, e->loc, "arithmetic on bool: unary '-' needs a numeric operand");
    if (e->op == OP_NOT && e->a->type != TC_BOOL)
      error_at(S->c, e->loc, "'!' needs a bool operand, got %s", type_name(e->a->type));
    e->type = e->a->type;
    return e;
  case EX_BINARY:
    e->a = resolve(S, sc, e->a, depth + 1);
    e->b = resolve(S, sc, e->b, depth + 1);
    type_binary(S, e);
    return e;
  case EX_SELECT:
    e->a = resolve(S, sc, e->a, depth + 1);
    if (e->a->type != TC_BOOL)
      error_at(S->c, e->a->loc, "the condition of '?:' must be bool, got %s",
               type_name(e->a->type));
    e->b = resolve(S, sc, e->b, depth + 1);
    e->c = resolve(S, sc, e->c, depth + 1);
    e->type = dtype_promote(e->b->type, e->c->type);
    return e;
  default:
    break;
  }
  internal_error(S->c, __FILE__, __LINE__, "expression resolved twice");
}

/* A where-range bound: integer constants, size symbols, + - * / % min max
 * and unary minus; nothing that varies inside the statement. */
static Expr *resolve_bound(Sema *S, Expr *e) {
  switch (e->kind) {
  case EX_INT:
    e->type = TC_INT32;
    return e;
  case EX_IDENT: {
    SizeSym *y = map_get(&S->syms, e->name);
    const Expr *lit = map_get(&S->consts, e->name);
    if (!y && lit && lit->kind == EX_INT && dtype_is_int(lit->type))
      return const_literal(S, lit, e->loc);
    if (!y)
      error_at(S->c, e->loc, "'%s' cannot appear in a where range bound: bounds may use only "
                             "integer constants and size symbols", e->name);
    e->kind = EX_SIZE;
    e->sym = y;
    e->type = TC_INT32;
    return e;
  }
  case EX_CALL:
    if ((!strcmp(e->name, "min") || !strcmp(e->name, "max")) && e->nargs == 2) {
      e->a = resolve_bound(S, e->args[0]);
      e->b = resolve_bound(S, e->args[1]);
      e->kind = EX_BINARY;
      e->op = !strcmp(e->name, "min") ? OP_MIN : OP_MAX;
      e->args = NULL;
      e->nargs = 0;
      e->type = TC_INT32;
      return e;
    }
    error_at(S->c, e->loc, "a where range bound cannot read tensors or call functions ('%s')",
             e->name);
  case EX_UNARY:
    if (e->op != OP_NEG)
      break;
    e->a = resolve_bound(S, e->a);
    e->type = TC_INT32;
    return e;
  case EX_BINARY:
    if (e->op > OP_MOD)
      break;
    e->a = resolve_bound(S, e->a);
    e->b = resolve_bound(S, e->b);
    e->type = TC_INT32;
    return e;
  default:
    break;
  }
  error_at(S->c, e->loc, "a where range bound must be an integer expression of constants and "
                         "size symbols");
}

/* ---- statements ---- */

static IndexVar *new_var(Sema *S, const char *name, Loc loc, int id, bool red) {
  IndexVar *v = arena_alloc(S->c->arena, sizeof *v);
  v->name = name;
  v->loc = loc;
  v->id = id;
  v->reduction = red;
  return v;
}

typedef VEC(IndexVar *) VarVec;

/* Numbers the reduction indices of `e` in order of first appearance. */
static void collect_vars(Sema *S, const Expr *e, VarVec *vars) {
  if (e->kind == EX_INDEX && e->var->id < 0) {
    e->var->id = vars->len;
    e->var->loc = e->loc;
    vec_push(S->c->arena, vars, e->var);
  }
  if (e->a)
    collect_vars(S, e->a, vars);
  if (e->b)
    collect_vars(S, e->b, vars);
  if (e->c)
    collect_vars(S, e->c, vars);
  for (int i = 0; i < e->nargs; i++)
    collect_vars(S, e->args[i], vars);
}

static void declare_lhs_vars(Sema *S, Scope *sc, VarVec *vars) {
  Stmt *s = sc->s;
  for (int i = 0; i < s->nidx; i++) {
    const char *n = s->idx_names[i];
    Loc loc = s->idx_locs[i];
    if (map_get(&sc->lhs, n))
      error_at(S->c, loc, "index '%s' appears twice on the left-hand side", n);
    if (map_get(&S->syms, n))
      error_at(S->c, loc, "'%s' is a size symbol and cannot be a left-hand index", n);
    if (map_get(&S->tensors, n))
      error_at(S->c, loc, "'%s' is a tensor and cannot be a left-hand index", n);
    IndexVar *v = new_var(S, n, loc, i, false);
    map_put(S->c->arena, &sc->lhs, n, v);
    vec_push(S->c->arena, vars, v);
  }
  s->vars = vars->data; /* resolve_access compares reads of the lhs with these */
}

/* Declares every let of the statement, then resolves them in order. */
static void resolve_lets(Sema *S, Scope *sc) {
  Stmt *s = sc->s;
  int n = 0;
  for (int i = 0; i < s->nwheres; i++) {
    Where *w = &s->wheres[i];
    if (w->kind != W_LET)
      continue;
    const char *what = map_get(&sc->lets, w->name) ? "another where let"
                       : map_get(&sc->lhs, w->name) ? "a left-hand index"
                       : map_get(&S->syms, w->name) ? "a size symbol"
                       : map_get(&S->tensors, w->name) ? "a tensor"
                                                       : NULL;
    if (what)
      error_at(S->c, w->loc, "where let '%s' has the name of %s", w->name, what);
    Let *l = arena_alloc(S->c->arena, sizeof *l);
    l->name = w->name;
    l->index = n++;
    map_put(S->c->arena, &sc->lets, w->name, l);
  }
  sc->cur_let = 0;
  for (int i = 0; i < s->nwheres; i++) {
    Where *w = &s->wheres[i];
    if (w->kind != W_LET)
      continue;
    Let *l = map_get(&sc->lets, w->name);
    w->e = l->e = resolve(S, sc, w->e, 0);
    sc->cur_let++;
  }
}

static void resolve_ranges(Sema *S, Scope *sc) {
  Stmt *s = sc->s;
  for (int i = 0; i < s->nwheres; i++) {
    Where *w = &s->wheres[i];
    if (w->kind != W_RANGE)
      continue;
    IndexVar *v = map_get(&sc->lhs, w->name);
    if (!v)
      v = map_get(&sc->red, w->name);
    if (!v || v->id < 0)
      error_at(S->c, w->loc, "'%s' in where clause is not an index of this statement", w->name);
    if (v->has_where)
      error_at(S->c, w->loc, "index '%s' has more than one where range", w->name);
    v->has_where = true;
    w->lo = resolve_bound(S, w->lo);
    w->hi = resolve_bound(S, w->hi);
  }
}

/* The statement's value fixes or must fit its tensor's type. */
static void assign_type(Sema *S, Stmt *s) {
  Tensor *t = s->lhs;
  tc_dtype rt = s->rhs->type;
  s->first_def = !t->def;
  if (s->first_def) {
    t->def = s;
    if (!t->typed)
      t->dtype = rt;
  }
  if (dtype_promote(rt, t->dtype) != t->dtype)
    error_at(S->c, s->loc, "cannot assign %s to %s tensor '%s' without a cast", type_name(rt),
             type_name(t->dtype), t->name);
  if (s->op != RED_NONE && t->dtype == TC_BOOL)
    error_at(S->c, s->loc, "cannot reduce with '%s%s' into bool tensor '%s'", red_names[s->op],
             s->bang ? "!" : "", t->name);
  s->init = s->op != RED_NONE && s->first_def;
}

static void check_stmt(Sema *S, Stmt *s) {
  Scope sc = {0};
  sc.s = s;
  sc.budget = MAX_INLINED;
  s->lhs = map_get(&S->tensors, s->lhs_name);
  IASSERT(S->c, s->lhs);
  VarVec vars = {NULL, 0, 0};
  declare_lhs_vars(S, &sc, &vars);
  resolve_lets(S, &sc);
  s->rhs = resolve(S, &sc, s->rhs, 0);
  VEC(Expr *) ex = {NULL, 0, 0};
  for (int i = 0; i < s->nwheres; i++)
    if (s->wheres[i].kind == W_EXISTS) {
      s->wheres[i].e = resolve(S, &sc, s->wheres[i].e, 0);
      vec_push(S->c->arena, &ex, s->wheres[i].e);
    }
  s->exists = ex.data;
  s->nexists = ex.len;
  collect_vars(S, s->rhs, &vars);
  for (int i = 0; i < s->nexists; i++)
    collect_vars(S, s->exists[i], &vars);
  s->vars = vars.data;
  s->nvars = vars.len;
  resolve_ranges(S, &sc);
  if (s->op == RED_NONE && s->nvars > s->nidx) {
    const IndexVar *k = s->vars[s->nidx];
    error_at(S->c, k->loc, "index '%s' appears only on the right-hand side, so it is a "
                           "reduction index, but '=' does not reduce: use '+=!' (or another "
                           "reduction)", k->name);
  }
  assign_type(S, s);
}

/* ---- declarations ---- */

static void declare_tensor(Sema *S, Tensor *t) {
  Tensor *old = map_get(&S->tensors, t->name);
  if (old && old->role == T_INPUT && t->role == T_OUTPUT)
    error_at(S->c, t->loc, "'%s' is both an input and an output", t->name);
  if (old)
    error_at(S->c, t->loc, "duplicate %s '%s'", t->role == T_INPUT ? "parameter" : "output",
             t->name);
  const char *r = reserved(t->name);
  if (r)
    error_at(S->c, t->loc, "'%s' is %s and cannot name a tensor", t->name, r);
  map_put(S->c->arena, &S->tensors, t->name, t);
}

typedef VEC(SizeSym *) SymVec;

static void declare_inputs(Sema *S, SymVec *syms) {
  Def *d = S->d;
  for (int i = 0; i < d->ninputs; i++) {
    Tensor *t = d->tensors[i];
    declare_tensor(S, t);
    for (int j = 0; j < t->rank; j++) {
      Dim *dim = &t->dims[j];
      if (!dim->name)
        continue;
      SizeSym *y = map_get(&S->syms, dim->name);
      if (!y) {
        y = arena_alloc(S->c->arena, sizeof *y);
        y->name = dim->name;
        y->loc = dim->loc;
        y->id = syms->len;
        y->tensor = t;
        y->dim = j;
        map_put(S->c->arena, &S->syms, y->name, y);
        vec_push(S->c->arena, syms, y);
      }
      dim->sym = y;
    }
  }
}

static void declare_outputs(Sema *S) {
  Def *d = S->d;
  for (int i = 0; i < d->noutputs; i++) {
    Tensor *t = d->tensors[d->ninputs + i];
    declare_tensor(S, t);
    if (!t->typed)
      t->rank = -1; /* fixed by the first statement writing it */
    for (int j = 0; t->dims && j < t->rank; j++) {
      Dim *dim = &t->dims[j];
      if (dim->name && !(dim->sym = map_get(&S->syms, dim->name)))
        error_at(S->c, dim->loc, "size symbol '%s' of output '%s' is not bound by any input",
                 dim->name, t->name);
    }
  }
}

static Tensor *new_temp(Sema *S, Stmt *s, int pos) {
  const char *r = reserved(s->lhs_name);
  if (r)
    error_at(S->c, s->lhs_loc, "'%s' is %s and cannot name a tensor", s->lhs_name, r);
  Tensor *t = arena_alloc(S->c->arena, sizeof *t);
  t->name = s->lhs_name;
  t->loc = s->lhs_loc;
  t->role = T_TEMP;
  t->pos = pos;
  t->id = S->d->ninputs + S->d->noutputs + pos;
  t->rank = -1;
  map_put(S->c->arena, &S->tensors, t->name, t);
  return t;
}

/* Creates the temporaries, fixes ranks, rebuilds Def.tensors. */
static void declare_temps(Sema *S) {
  Def *d = S->d;
  VEC(Tensor *) temps = {NULL, 0, 0};
  for (int i = 0; i < d->nstmts; i++) {
    Stmt *s = d->stmts[i];
    if (map_get(&S->syms, s->lhs_name))
      error_at(S->c, s->lhs_loc, "cannot assign to size symbol '%s'", s->lhs_name);
    Tensor *t = map_get(&S->tensors, s->lhs_name);
    if (!t) {
      t = new_temp(S, s, temps.len);
      vec_push(S->c->arena, &temps, t);
    }
    if (t->role == T_INPUT)
      error_at(S->c, s->lhs_loc, "cannot assign to input '%s'", t->name);
    if (s->nidx > TC_MAX_RANK)
      error_at(S->c, s->lhs_loc, "'%s' is written with %d indices; tensors have at most %d "
                                 "dimensions", t->name, s->nidx, TC_MAX_RANK);
    if (t->rank < 0)
      t->rank = s->nidx;
    else if (t->rank != s->nidx)
      error_at(S->c, s->lhs_loc, "'%s' has rank %d (%s) but is written here with %d %s",
               t->name, t->rank, t->typed ? "declared" : "from its first definition", s->nidx,
               plural(s->nidx, "index", "indices"));
  }
  for (int i = 0; i < d->noutputs; i++) {
    Tensor *t = d->tensors[d->ninputs + i];
    bool written = false;
    for (int k = 0; k < d->nstmts && !written; k++)
      written = !strcmp(d->stmts[k]->lhs_name, t->name);
    if (!written)
      error_at(S->c, t->loc, "output '%s' is never defined", t->name);
  }
  int n = d->ninputs + d->noutputs;
  Tensor **all = arena_alloc(S->c->arena, sizeof *all * (size_t)(n + temps.len));
  memcpy(all, d->tensors, sizeof *all * (size_t)n);
  for (int i = 0; i < temps.len; i++)
    all[n + i] = temps.data[i];
  d->tensors = all;
  d->ntemps = temps.len;
  d->ntensors = n + temps.len;
}

/* ---- compile-time constants ---- */

typedef struct Consts {
  const tc_constant *v;
  int n;
  bool *used; /* [n] */
} Consts;

/* A misuse of the constants: TC_ERR_ARGUMENT, located when loc.line > 0. */
TC_PRINTF(3, 4)
static TC_NORETURN void const_error(Ctx *c, Loc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  error_vset(c->err, TC_ERR_ARGUMENT, c->file, loc, fmt, ap);
  va_end(ap);
  longjmp(*c->jmp, (int)TC_ERR_ARGUMENT);
}

/* x rounded to a binary format with a p-bit significand and minimum normal
 * exponent emin, ties to even (float16: 11, -14; bfloat16: 8, -126). */
static double round_binary(double x, int p, int emin) {
  if (isnan(x) || isinf(x) || x == 0)
    return x;
  int ex;
  frexp(fabs(x), &ex);
  double q = ldexp(1.0, (ex - 1 < emin ? emin : ex - 1) - (p - 1));
  return copysign(nearbyint(fabs(x) / q) * q, x);
}

/* The literal that replaces parameter `t`, given constant `k`. */
static Expr *const_value(Ctx *c, const Tensor *t, const tc_constant *k) {
  const DTypeInfo *d = &dtype_info[t->dtype];
  Expr *e = arena_alloc(c->arena, sizeof *e);
  e->loc = t->loc;
  e->type = t->dtype;
  e->name = t->name;
  if (d->is_float) {
    double v = k->is_float ? k->f : (double)k->i, r = v;
    if (t->dtype == TC_FLOAT32)
      r = (float)v;
    else if (t->dtype == TC_FLOAT16)
      r = fabs(v) >= 65520.0 ? copysign(INFINITY, v) : round_binary(v, 11, -14);
    else if (t->dtype == TC_BFLOAT16)
      r = (float)round_binary(v, 8, -126);
    if (isinf(r) && !isinf(v))
      const_error(c, t->loc, "constant '%s' = %g does not fit %s", t->name, v, d->name);
    e->kind = EX_FLOAT;
    e->fval = r;
    return e;
  }
  if (k->is_float)
    const_error(c, t->loc, "constant '%s' is a %s parameter: its value must be an integer, "
                "not %g", t->name, d->name, k->f);
  int64_t lo = 0, hi = d->is_bool ? 1 : d->bits == 64 ? INT64_MAX : ((int64_t)1 << d->bits) - 1;
  if (d->is_signed && !d->is_bool) {
    hi = d->bits == 64 ? INT64_MAX : ((int64_t)1 << (d->bits - 1)) - 1;
    lo = -hi - 1;
  }
  if (k->i < lo || k->i > hi)
    const_error(c, t->loc, "constant '%s' = %lld does not fit %s", t->name, (long long)k->i,
                d->name);
  e->kind = EX_INT;
  e->ival = k->i;
  return e;
}

/* Removes the inputs named by constants from the def (renumbering the other
 * inputs and the outputs) and records their literals. */
static void take_constants(Sema *S, Consts *k) {
  Def *d = S->d;
  int n = 0;
  for (int i = 0; i < d->ninputs; i++) {
    Tensor *t = d->tensors[i];
    int j = 0;
    while (j < k->n && strcmp(k->v[j].name, t->name))
      j++;
    if (j == k->n) {
      t->id = t->pos = n;
      d->tensors[n++] = t;
      continue;
    }
    if (t->rank)
      const_error(S->c, t->loc, "'%s' is given as a compile-time constant, but it is a tensor "
                  "of rank %d: only scalar (rank-0) parameters can be constants", t->name,
                  t->rank);
    k->used[j] = true;
    declare_tensor(S, t);
    map_put(S->c->arena, &S->consts, t->name, const_value(S->c, t, &k->v[j]));
  }
  for (int i = 0; n < d->ninputs && i < d->noutputs; i++) {
    Tensor *t = d->tensors[d->ninputs + i];
    t->id = n + i;
    d->tensors[n + i] = t;
  }
  d->ntensors -= d->ninputs - n;
  d->ninputs = n;
}

static void check_def(Ctx *c, Def *d, Consts *k) {
  Sema S = {c, d, {0}, {0}, {0}};
  SymVec syms = {NULL, 0, 0};
  take_constants(&S, k);
  declare_inputs(&S, &syms);
  d->syms = syms.data;
  d->nsyms = syms.len;
  declare_outputs(&S);
  for (int i = 0; i < d->nsyms; i++) {
    Tensor *t = map_get(&S.tensors, d->syms[i]->name);
    if (t)
      error_at(c, t->loc, "'%s' is both a size symbol and a tensor", t->name);
  }
  declare_temps(&S);
  for (int i = 0; i < d->nstmts; i++)
    check_stmt(&S, d->stmts[i]);
}

void sema_program(Ctx *c, Program *p) { sema_program_ex(c, p, NULL, 0); }

void sema_program_ex(Ctx *c, Program *p, const tc_constant *consts, int nconsts) {
  Consts k = {consts, nconsts > 0 && consts ? nconsts : 0, NULL};
  k.used = arena_alloc(c->arena, sizeof *k.used * (size_t)(k.n + 1));
  for (int i = 0; i < k.n; i++) {
    if (!k.v[i].name || !*k.v[i].name)
      const_error(c, (Loc){0, 0}, "compile-time constant %d has no name", i);
    for (int j = 0; j < i; j++)
      if (!strcmp(k.v[i].name, k.v[j].name))
        const_error(c, (Loc){0, 0}, "compile-time constant '%s' is given twice", k.v[i].name);
  }
  Map names = {0};
  for (int i = 0; i < p->ndefs; i++) {
    Def *d = p->defs[i];
    Def *old = map_get(&names, d->name);
    if (old)
      error_at(c, d->loc, "duplicate definition '%s' (the first is at %d:%d)", d->name,
               old->loc.line, old->loc.col);
    map_put(c->arena, &names, d->name, d);
  }
  for (int i = 0; i < p->ndefs; i++)
    check_def(c, p->defs[i], &k);
  for (int i = 0; i < p->nscheds; i++) {
    Schedule *s = p->scheds[i];
    Def *d = map_get(&names, s->name);
    if (!d)
      error_at(c, s->loc, "schedule for '%s', which no def defines", s->name);
    if (d->sched)
      error_at(c, s->loc, "a second schedule for '%s' (the first is at %d:%d)", s->name,
               d->sched->loc.line, d->sched->loc.col);
    d->sched = s;
    sched_check_def(c, d);
  }
  for (int i = 0; i < k.n; i++)
    if (!k.used[i])
      const_error(c, (Loc){0, 0}, "compile-time constant '%s': no definition has a parameter "
                  "of that name", k.v[i].name);
}

bool expr_reads_tensor(const Expr *e, const Tensor *t) {
  if (!e)
    return false;
  if (e->kind == EX_ACCESS && e->tensor == t)
    return true;
  for (int i = 0; i < e->nargs; i++)
    if (expr_reads_tensor(e->args[i], t))
      return true;
  return expr_reads_tensor(e->a, t) || expr_reads_tensor(e->b, t) || expr_reads_tensor(e->c, t);
}

Def *sema_find_def(Program *p, const char *name) {
  for (int i = 0; p && i < p->ndefs; i++)
    if (!strcmp(p->defs[i]->name, name))
      return p->defs[i];
  return NULL;
}
