/*
 * parse.c — tokens to the AST, by recursive descent.
 *
 * The parser builds Program/Def/Tensor/Stmt/Expr nodes with names left
 * unresolved: an identifier in an expression is EX_IDENT and `name(args)` is
 * EX_CALL whatever `name` turns out to be (tensor, builtin, cast, min/max);
 * sema.c decides.  Keywords are contextual: `def`, `where`, `in`, `exists`,
 * type names and boundary names are identifiers recognized by position.
 *
 * TC statements have no terminator: one statement's expression ends where
 * no operator continues it, and the next statement starts with a name.  An
 * optional `;` is accepted after each.
 *
 * What the parser guarantees beyond the grammar: parameters and outputs get
 * their Tensor (role, id, pos, dtype when typed, rank and dims), boundary
 * conditions are resolved to the dimensions they apply to (Tensor.bc_dim),
 * ranks are at most TC_MAX_RANK, float literals hold their float32 value.
 *
 * Errors name what was expected and point at the offending token; at the end
 * of input they say so ("unexpected end of input: ...").  Expression nesting
 * is bounded (MAX_DEPTH, counting parentheses, unary operators, conditional
 * branches, call arguments and each link of an operator chain), so the
 * recursion here, and every later pass that walks an expression tree, stays
 * shallow whatever the input.
 *
 * Schedule blocks (`schedule NAME { O.split(y, yo, yi, 64).parallel(yo) }`)
 * are chains of method calls on stage names; the parser records each
 * directive with its stage and arguments, sema.c and sched.c judge them.
 *
 * The file ends with the AST printer: a canonical, fully parenthesized text
 * form used by tests, dumps and cache keys.
 */
#include "tc.h"

#include <math.h>
#include <string.h>

#define MAX_DEPTH 256

typedef struct Parser {
  Ctx *c;
  Token *first;    /* the first token */
  Token *tok;      /* the current token */
  int depth;       /* expression nesting */
  const char *def; /* name of the def being parsed, for messages */
} Parser;

static Expr *expr(Parser *p);

/* ---- tokens ---- */

static bool equal(const Token *t, const char *s) {
  return (t->kind == TK_PUNCT || t->kind == TK_IDENT) && (size_t)t->len == strlen(s) &&
         !memcmp(t->s, s, (size_t)t->len);
}

static bool is_punct(const Token *t, const char *s) { return t->kind == TK_PUNCT && equal(t, s); }
static bool is_word(const Token *t, const char *s) { return t->kind == TK_IDENT && equal(t, s); }

/* The token as messages quote it. */
static const char *describe(Parser *p, const Token *t) {
  if (t->kind == TK_EOF)
    return "end of input";
  int n = t->len > 40 ? 40 : t->len;
  return arena_printf(p->c->arena, "'%.*s%s'", n, t->s, t->len > n ? "..." : "");
}

/* A located error at token `t`; at the end of input the message says so. */
TC_PRINTF(3, 4) TC_NORETURN static void error_tok(Parser *p, const Token *t, const char *fmt, ...) {
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  Loc loc = t->loc;
  if (t->kind == TK_EOF) {
    /* "..., got end of input" would say it twice */
    char *got = strstr(msg, ", got end of input");
    if (got && !got[strlen(", got end of input")])
      *got = '\0';
  } else if (t > p->first && t[-1].loc.line < t->loc.line && !is_punct(&t[-1], "}") &&
             (is_punct(t, "}") || is_punct(t, ")") || is_punct(t, "]"))) {
    /* something missing at the end of a line, found a closer on the next:
       point just after what came before (`B(i) =` then `}`), as C compilers do */
    loc = t[-1].loc;
    loc.col += t[-1].len;
  }
  error_at(p->c, loc, "%s%s", t->kind == TK_EOF ? "unexpected end of input: " : "", msg);
}

static char *tok_str(Parser *p, const Token *t) {
  return arena_strndup(p->c->arena, t->s, (size_t)t->len);
}

/* Consumes `s` or fails with "expected 's' <context>". */
TC_PRINTF(3, 4) static void expect(Parser *p, const char *s, const char *fmt, ...) {
  if (is_punct(p->tok, s)) {
    p->tok++;
    return;
  }
  char ctx[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ctx, sizeof ctx, fmt, ap);
  va_end(ap);
  error_tok(p, p->tok, "expected '%s' %s", s, ctx);
}

static void *new_node(Parser *p, size_t size) { return arena_alloc(p->c->arena, size); }

static Expr *new_expr(Parser *p, ExprKind k, Loc loc) {
  Expr *e = new_node(p, sizeof *e);
  e->kind = k;
  e->loc = loc;
  return e;
}

/* ---- expressions ---- */

static void enter(Parser *p, const Token *t) {
  if (++p->depth > MAX_DEPTH)
    error_at(p->c, t->loc, "expression nested too deeply (more than %d levels)", MAX_DEPTH);
}

typedef struct OpTok {
  const char *s;
  BinOp op;
} OpTok;

typedef Expr *ParseFn(Parser *p);

/* level := next { OP next }, left associative.  Each link counts as one
 * level of nesting: a long chain is a deep (left-leaning) tree. */
static Expr *binary_chain(Parser *p, ParseFn *next, const OpTok *ops, int nops) {
  int saved = p->depth;
  Expr *e = next(p);
  for (;;) {
    Token *t = p->tok;
    int i = 0;
    while (i < nops && !is_punct(t, ops[i].s))
      i++;
    if (i == nops)
      break;
    enter(p, t);
    p->tok++;
    Expr *b = new_expr(p, EX_BINARY, t->loc);
    b->op = ops[i].op;
    b->a = e;
    b->b = next(p);
    e = b;
  }
  p->depth = saved;
  return e;
}

/* primary := INTEGER | FLOAT | NAME [ '(' [ expr { ',' expr } ] ')' ] | '(' expr ')' */
static Expr *primary(Parser *p) {
  Token *t = p->tok;
  if (t->kind == TK_INT) {
    p->tok++;
    Expr *e = new_expr(p, EX_INT, t->loc);
    e->ival = t->ival;
    return e;
  }
  if (t->kind == TK_FLOAT) {
    p->tok++;
    float f = (float)t->fval;
    if (isinf(f))
      error_at(p->c, t->loc, "floating-point literal out of range for float32");
    Expr *e = new_expr(p, EX_FLOAT, t->loc);
    e->fval = f;
    return e;
  }
  if (is_punct(t, "(")) {
    p->tok++;
    Expr *e = expr(p);
    expect(p, ")", "to match the '(' at %d:%d", t->loc.line, t->loc.col);
    return e;
  }
  if (t->kind != TK_IDENT)
    error_tok(p, t, "expected an expression, got %s", describe(p, t));
  p->tok++;
  if (!is_punct(p->tok, "(")) {
    Expr *e = new_expr(p, EX_IDENT, t->loc);
    e->name = tok_str(p, t);
    return e;
  }
  p->tok++;
  Expr *e = new_expr(p, EX_CALL, t->loc);
  e->name = tok_str(p, t);
  VEC(Expr *) args = {NULL, 0, 0};
  if (!is_punct(p->tok, ")")) {
    for (;;) {
      vec_push(p->c->arena, &args, expr(p));
      if (!is_punct(p->tok, ","))
        break;
      p->tok++;
    }
  }
  expect(p, ")", "after arguments");
  e->args = args.data;
  e->nargs = args.len;
  return e;
}

/* unary := ('-' | '!') unary | primary */
static Expr *unary(Parser *p) {
  Token *t = p->tok;
  if (!is_punct(t, "-") && !is_punct(t, "!"))
    return primary(p);
  enter(p, t);
  p->tok++;
  Expr *e = new_expr(p, EX_UNARY, t->loc);
  e->op = is_punct(t, "-") ? OP_NEG : OP_NOT;
  e->a = unary(p);
  p->depth--;
  return e;
}

/* mul := unary { ('*' | '/' | '%') unary } */
static Expr *mul(Parser *p) {
  static const OpTok ops[] = {{"*", OP_MUL}, {"/", OP_DIV}, {"%", OP_MOD}};
  return binary_chain(p, unary, ops, 3);
}

/* add := mul { ('+' | '-') mul } */
static Expr *add(Parser *p) {
  static const OpTok ops[] = {{"+", OP_ADD}, {"-", OP_SUB}};
  return binary_chain(p, mul, ops, 2);
}

/* cmp := add { ('<' | '<=' | '>' | '>=' | '==' | '!=') add } */
static Expr *cmp(Parser *p) {
  static const OpTok ops[] = {{"<", OP_LT},  {"<=", OP_LE}, {">", OP_GT},
                              {">=", OP_GE}, {"==", OP_EQ}, {"!=", OP_NE}};
  return binary_chain(p, add, ops, 6);
}

/* and := cmp { '&&' cmp } */
static Expr *and_expr(Parser *p) {
  static const OpTok ops[] = {{"&&", OP_AND}};
  return binary_chain(p, cmp, ops, 1);
}

/* or := and { '||' and } */
static Expr *or_expr(Parser *p) {
  static const OpTok ops[] = {{"||", OP_OR}};
  return binary_chain(p, and_expr, ops, 1);
}

/* expr := or [ '?' expr ':' expr ]      (right associative) */
static Expr *expr(Parser *p) {
  enter(p, p->tok);
  Expr *e = or_expr(p);
  Token *t = p->tok;
  if (is_punct(t, "?")) {
    p->tok++;
    Expr *s = new_expr(p, EX_SELECT, t->loc);
    s->a = e;
    s->b = expr(p);
    expect(p, ":", "in the conditional expression ('?' at %d:%d)", t->loc.line, t->loc.col);
    s->c = expr(p);
    e = s;
  }
  p->depth--;
  return e;
}

/* ---- parameters and outputs ---- */

static Tensor *new_tensor(Parser *p, TensorRole role) {
  Tensor *t = new_node(p, sizeof *t);
  t->role = role;
  return t;
}

/* True when the current token is a type name; sets *out. */
static bool type_name(Parser *p, tc_dtype *out) {
  return p->tok->kind == TK_IDENT && dtype_from_name(p->tok->s, (size_t)p->tok->len, out);
}

/* dims := '(' dim { ',' dim } ')'        dim := NAME | INTEGER */
static void dims(Parser *p, Tensor *t) {
  p->tok++; /* '(' */
  VEC(Dim) v = {NULL, 0, 0};
  for (;;) {
    Token *d = p->tok;
    Dim dim = {0};
    dim.loc = d->loc;
    if (d->kind == TK_IDENT)
      dim.name = tok_str(p, d);
    else if (d->kind == TK_INT)
      dim.value = d->ival;
    else
      error_tok(p, d, "expected a dimension (a size symbol or an integer), got %s",
                describe(p, d));
    if (v.len == TC_MAX_RANK)
      error_at(p->c, d->loc, "too many dimensions: tensors have at most %d", TC_MAX_RANK);
    vec_push(p->c->arena, &v, dim);
    p->tok++;
    if (is_punct(p->tok, ")"))
      break;
    if (!is_punct(p->tok, ","))
      error_tok(p, p->tok, "expected ',' or ')' in the list of dimensions, got %s",
                describe(p, p->tok));
    p->tok++;
  }
  p->tok++;
  t->dims = v.data;
  t->rank = v.len;
}

/* Marks the dimension of `t` whose size symbol is token `n`. */
static void bc_mark(Parser *p, Tensor *t, const Token *n) {
  bool found = false;
  for (int i = 0; i < t->rank; i++) {
    const char *d = t->dims[i].name;
    if (!d || strlen(d) != (size_t)n->len || memcmp(d, n->s, (size_t)n->len))
      continue;
    if (t->bc_dim[i])
      error_at(p->c, n->loc, "dimension '%.*s' is listed twice", n->len, n->s);
    t->bc_dim[i] = found = true;
  }
  if (!found)
    error_at(p->c, n->loc, "'%.*s' is not a size symbol in the dimensions of '%s'", n->len,
             n->s, t->name);
}

/* boundary := ( 'clamp' | 'mirror' | 'wrap' | 'constant' '(' ['-'] NUMBER ')' )
 *             [ '[' NAME { ',' NAME } ']' ] */
static void boundary(Parser *p, Tensor *t) {
  Token *k = p->tok;
  t->bc_loc = k->loc;
  if (is_word(k, "clamp"))
    t->bc = BC_CLAMP;
  else if (is_word(k, "mirror"))
    t->bc = BC_MIRROR;
  else if (is_word(k, "wrap"))
    t->bc = BC_WRAP;
  else if (is_word(k, "constant"))
    t->bc = BC_CONSTANT;
  else
    error_tok(p, k, "expected a boundary condition (clamp, mirror, wrap or constant(v)) "
                    "after ':', got %s", describe(p, k));
  if (t->rank == 0)
    error_at(p->c, k->loc, "a boundary condition needs a tensor, but '%s' is a scalar", t->name);
  p->tok++;
  if (t->bc == BC_CONSTANT) {
    expect(p, "(", "after 'constant'");
    bool neg = is_punct(p->tok, "-");
    if (neg)
      p->tok++;
    Token *v = p->tok;
    if (v->kind == TK_INT)
      t->bc_value = (double)v->ival;
    else if (v->kind == TK_FLOAT)
      t->bc_value = v->fval;
    else
      error_tok(p, v, "expected a number in 'constant(...)', got %s", describe(p, v));
    if (neg)
      t->bc_value = -t->bc_value;
    p->tok++;
    expect(p, ")", "after the value of 'constant'");
  }
  if (!is_punct(p->tok, "[")) {
    for (int i = 0; i < t->rank; i++)
      t->bc_dim[i] = true;
    return;
  }
  p->tok++;
  for (;;) {
    Token *n = p->tok;
    if (n->kind != TK_IDENT)
      error_tok(p, n, "expected a dimension name in the boundary list, got %s", describe(p, n));
    bc_mark(p, t, n);
    p->tok++;
    if (is_punct(p->tok, "]"))
      break;
    if (!is_punct(p->tok, ","))
      error_tok(p, p->tok, "expected ',' or ']' in the boundary list, got %s",
                describe(p, p->tok));
    p->tok++;
  }
  p->tok++;
}

/* param := TYPE [ '(' dim { ',' dim } ')' ] NAME [ ':' boundary ] */
static Tensor *param(Parser *p) {
  Tensor *t = new_tensor(p, T_INPUT);
  if (!type_name(p, &t->dtype))
    error_tok(p, p->tok, "expected a parameter type (such as float or int32), got %s",
              describe(p, p->tok));
  t->typed = true;
  p->tok++;
  if (is_punct(p->tok, "("))
    dims(p, t);
  if (p->tok->kind != TK_IDENT)
    error_tok(p, p->tok, "expected the parameter's name after its type, got %s",
              describe(p, p->tok));
  t->name = tok_str(p, p->tok);
  t->loc = p->tok->loc;
  p->tok++;
  if (is_punct(p->tok, ":")) {
    p->tok++;
    boundary(p, t);
  }
  return t;
}

/* output := [ TYPE [ '(' dim { ',' dim } ')' ] ] NAME
 * (a type without dimensions declares a typed scalar) */
static Tensor *output(Parser *p) {
  Tensor *t = new_tensor(p, T_OUTPUT);
  Token *next = p->tok + 1;
  if (type_name(p, &t->dtype) && (is_punct(next, "(") || next->kind == TK_IDENT)) {
    t->typed = true;
    p->tok++;
    if (is_punct(p->tok, "("))
      dims(p, t);
  }
  if (p->tok->kind != TK_IDENT)
    error_tok(p, p->tok, "expected an output name, got %s", describe(p, p->tok));
  t->name = tok_str(p, p->tok);
  t->loc = p->tok->loc;
  p->tok++;
  return t;
}

/* ---- statements ---- */

static const struct {
  const char *s;
  RedOp op;
  bool bang;
} assign_ops[] = {
    {"=", RED_NONE, false},  {"+=", RED_ADD, false},  {"*=", RED_MUL, false},
    {"min=", RED_MIN, false}, {"max=", RED_MAX, false}, {"+=!", RED_ADD, true},
    {"*=!", RED_MUL, true},  {"min=!", RED_MIN, true},  {"max=!", RED_MAX, true},
};

/* clause := NAME 'in' expr ':' expr | NAME '=' expr | 'exists' expr */
static Where clause(Parser *p) {
  Token *t = p->tok;
  Where w = {0};
  w.loc = t->loc;
  if (t->kind != TK_IDENT)
    error_tok(p, t, "expected a where clause (i in lo:hi, x = expr or exists expr), got %s",
              describe(p, t));
  Token *next = t + 1;
  if (is_word(t, "exists") && !is_punct(next, "=") && !is_word(next, "in")) {
    p->tok++;
    w.kind = W_EXISTS;
    w.e = expr(p);
    return w;
  }
  w.name = tok_str(p, t);
  p->tok++;
  if (is_word(p->tok, "in")) {
    p->tok++;
    w.kind = W_RANGE;
    w.lo = expr(p);
    expect(p, ":", "between the bounds of '%s' (write %s in lo:hi)", w.name, w.name);
    w.hi = expr(p);
  } else if (is_punct(p->tok, "=")) {
    p->tok++;
    w.kind = W_LET;
    w.e = expr(p);
  } else {
    error_tok(p, p->tok, "expected 'in' or '=' after '%s' in a where clause, got %s", w.name,
              describe(p, p->tok));
  }
  return w;
}

/* lhs := NAME [ '(' [ NAME { ',' NAME } ] ')' ] */
static void lhs(Parser *p, Stmt *s) {
  Token *t = p->tok;
  s->loc = s->lhs_loc = t->loc;
  s->lhs_name = tok_str(p, t);
  p->tok++;
  if (!is_punct(p->tok, "("))
    return;
  p->tok++;
  VEC(const char *) names = {NULL, 0, 0};
  VEC(Loc) locs = {NULL, 0, 0};
  while (names.len || !is_punct(p->tok, ")")) {
    Token *n = p->tok;
    if (n->kind != TK_IDENT)
      error_tok(p, n, "expected an index name on the left-hand side of '%s' (left-hand "
                      "indices are plain names), got %s", s->lhs_name, describe(p, n));
    vec_push(p->c->arena, &names, tok_str(p, n));
    vec_push(p->c->arena, &locs, n->loc);
    p->tok++;
    if (is_punct(p->tok, ")"))
      break;
    if (!is_punct(p->tok, ","))
      error_tok(p, p->tok, "expected ',' or ')' after index '%s' of '%s' (left-hand "
                           "indices are plain names), got %s",
                names.data[names.len - 1], s->lhs_name, describe(p, p->tok));
    p->tok++;
  }
  p->tok++;
  s->idx_names = names.data;
  s->idx_locs = locs.data;
  s->nidx = names.len;
}

/* stmt := lhs OP expr [ 'where' clause { ',' clause } ] */
static Stmt *stmt(Parser *p) {
  Stmt *s = new_node(p, sizeof *s);
  lhs(p, s);
  Token *t = p->tok;
  size_t i = 0;
  while (i < sizeof assign_ops / sizeof assign_ops[0] && !is_punct(t, assign_ops[i].s))
    i++;
  if (i == sizeof assign_ops / sizeof assign_ops[0])
    error_tok(p, t, "expected '=' or a reduction operator (+=, *=, min=, max=, +=!, ...) "
                    "after the left-hand side '%s', got %s", s->lhs_name, describe(p, t));
  s->op = assign_ops[i].op;
  s->bang = assign_ops[i].bang;
  p->tok++;
  s->rhs = expr(p);
  if (!is_word(p->tok, "where"))
    return s;
  p->tok++;
  VEC(Where) ws = {NULL, 0, 0};
  for (;;) {
    vec_push(p->c->arena, &ws, clause(p));
    if (!is_punct(p->tok, ","))
      break;
    p->tok++;
  }
  s->wheres = ws.data;
  s->nwheres = ws.len;
  return s;
}

/* ---- definitions ---- */

/* def := 'def' NAME '(' [ param { ',' param } ] ')' '->' '(' [ output { ',' output } ] ')'
 *        '{' { stmt [';'] } '}' */
static Def *def(Parser *p) {
  Def *d = new_node(p, sizeof *d);
  d->loc = p->tok->loc;
  p->tok++;
  if (p->tok->kind != TK_IDENT)
    error_tok(p, p->tok, "expected a name after 'def', got %s", describe(p, p->tok));
  d->name = p->def = tok_str(p, p->tok);
  p->tok++;
  VEC(Tensor *) ts = {NULL, 0, 0};
  expect(p, "(", "to open the parameter list of '%s'", d->name);
  while (d->ninputs || !is_punct(p->tok, ")")) {
    Tensor *t = param(p);
    t->id = t->pos = d->ninputs++;
    vec_push(p->c->arena, &ts, t);
    if (is_punct(p->tok, ")"))
      break;
    if (!is_punct(p->tok, ","))
      error_tok(p, p->tok, "expected ',' or ')' after parameter '%s', got %s", t->name,
                describe(p, p->tok));
    p->tok++;
  }
  p->tok++;
  expect(p, "->", "after the parameter list of '%s'", d->name);
  expect(p, "(", "to open the output list of '%s'", d->name);
  while (d->noutputs || !is_punct(p->tok, ")")) {
    Tensor *t = output(p);
    t->pos = d->noutputs++;
    t->id = d->ninputs + t->pos;
    vec_push(p->c->arena, &ts, t);
    if (is_punct(p->tok, ")"))
      break;
    if (!is_punct(p->tok, ","))
      error_tok(p, p->tok, "expected ',' or ')' after output '%s', got %s", t->name,
                describe(p, p->tok));
    p->tok++;
  }
  p->tok++;
  d->tensors = ts.data;
  d->ntensors = ts.len;
  expect(p, "{", "to open the body of '%s'", d->name);
  VEC(Stmt *) ss = {NULL, 0, 0};
  while (!is_punct(p->tok, "}")) {
    Token *t = p->tok;
    if (t->kind == TK_EOF)
      error_at(p->c, t->loc, "unexpected end of input: missing '}' to close 'def %s'", d->name);
    if (is_word(t, "def") && t[1].kind == TK_IDENT)
      error_at(p->c, t->loc, "missing '}' to close 'def %s' before the next 'def'", d->name);
    if (t->kind != TK_IDENT)
      error_tok(p, t, "expected a statement or '}' in the body of '%s', got %s", d->name,
                describe(p, t));
    vec_push(p->c->arena, &ss, stmt(p));
    while (is_punct(p->tok, ";"))
      p->tok++;
  }
  p->tok++;
  d->stmts = ss.data;
  d->nstmts = ss.len;
  return d;
}

/* ---- schedules ---- */

const char *const sched_dir_names[NUM_SCHED_DIRS] = {
#define X(n, s) s,
    SCHED_DIR_LIST(X)
#undef X
};

/* arg := NAME | INT */
static SchedArg sched_arg(Parser *p, const char *dir) {
  SchedArg a = {p->tok->loc, NULL, 0};
  if (p->tok->kind == TK_IDENT)
    a.name = tok_str(p, p->tok);
  else if (p->tok->kind == TK_INT)
    a.ival = p->tok->ival;
  else
    error_tok(p, p->tok, "expected a name or an integer as argument of '%s', got %s", dir,
              describe(p, p->tok));
  p->tok++;
  return a;
}

/* directive := '.' NAME '(' [arg {',' arg}] ')' */
static Directive directive(Parser *p, const Directive *stage) {
  Directive d = *stage;
  p->tok++; /* '.' */
  if (p->tok->kind != TK_IDENT)
    error_tok(p, p->tok, "expected a directive name after '.', got %s", describe(p, p->tok));
  int k = 0;
  while (k < NUM_SCHED_DIRS && !equal(p->tok, sched_dir_names[k]))
    k++;
  if (k == NUM_SCHED_DIRS)
    error_tok(p, p->tok, "unknown schedule directive %s (split, tile, reorder, vectorize, "
              "unroll, parallel, fuse, inline, compute_root, compute_at, compute_with, store_at, gemm)", describe(p, p->tok));
  d.kind = (SchedDirKind)k;
  d.loc = p->tok->loc;
  p->tok++;
  expect(p, "(", "after '%s'", sched_dir_names[k]);
  VEC(SchedArg) args = {NULL, 0, 0};
  while (!is_punct(p->tok, ")")) {
    if (args.len) {
      if (!is_punct(p->tok, ","))
        error_tok(p, p->tok, "expected ',' or ')' in the arguments of '%s', got %s",
                  sched_dir_names[k], describe(p, p->tok));
      p->tok++;
    }
    vec_push(p->c->arena, &args, sched_arg(p, sched_dir_names[k]));
  }
  p->tok++;
  d.args = args.data;
  d.nargs = args.len;
  return d;
}

/* chain := NAME ['.' 'update' '(' INT ')'] directive {directive} [';'] */
typedef VEC(Directive) DirVec;

static void chain(Parser *p, DirVec *dirs) {
  Directive stage = {0};
  if (p->tok->kind != TK_IDENT)
    error_tok(p, p->tok, "expected the name of a stage (the tensor a statement writes), got %s",
              describe(p, p->tok));
  stage.stage = tok_str(p, p->tok);
  stage.stage_loc = p->tok->loc;
  p->tok++;
  if (is_punct(p->tok, ".") && is_word(p->tok + 1, "update")) {
    p->tok += 2;
    expect(p, "(", "after 'update'");
    if (p->tok->kind != TK_INT)
      error_tok(p, p->tok, "expected the number of an update stage, got %s", describe(p, p->tok));
    stage.update = (int)(p->tok->ival < 1000000 ? p->tok->ival + 1 : 1000000);
    p->tok++;
    expect(p, ")", "after the number of the update stage");
  }
  if (!is_punct(p->tok, "."))
    error_tok(p, p->tok, "expected '.' and a directive after '%s', got %s", stage.stage,
              describe(p, p->tok));
  while (is_punct(p->tok, "."))
    vec_push(p->c->arena, dirs, directive(p, &stage));
  if (is_punct(p->tok, ";"))
    p->tok++;
}

/* schedule := 'schedule' NAME '{' {chain} '}' */
static Schedule *schedule(Parser *p) {
  Schedule *s = new_node(p, sizeof *s);
  s->loc = p->tok->loc;
  p->tok++;
  if (p->tok->kind != TK_IDENT)
    error_tok(p, p->tok, "expected the name of a def after 'schedule', got %s",
              describe(p, p->tok));
  s->name = tok_str(p, p->tok);
  s->loc = p->tok->loc;
  p->tok++;
  expect(p, "{", "to open the schedule of '%s'", s->name);
  DirVec dirs = {NULL, 0, 0};
  while (!is_punct(p->tok, "}")) {
    if (p->tok->kind == TK_EOF)
      error_tok(p, p->tok, "expected '}' to close the schedule of '%s'", s->name);
    chain(p, &dirs);
  }
  p->tok++;
  s->dirs = dirs.data;
  s->ndirs = dirs.len;
  return s;
}

/* program := { def | schedule } */
Program *parse_program(Ctx *c, Token *toks) {
  Parser p = {c, toks, toks, 0, NULL};
  Program *prog = arena_alloc(c->arena, sizeof *prog);
  VEC(Def *) defs = {NULL, 0, 0};
  VEC(Schedule *) scheds = {NULL, 0, 0};
  while (p.tok->kind != TK_EOF) {
    if (is_word(p.tok, "schedule") && p.tok[1].kind == TK_IDENT) {
      vec_push(c->arena, &scheds, schedule(&p));
      continue;
    }
    if (!is_word(p.tok, "def"))
      error_tok(&p, p.tok, "expected 'def' to start a definition, got %s", describe(&p, p.tok));
    vec_push(c->arena, &defs, def(&p));
  }
  prog->defs = defs.data;
  prog->ndefs = defs.len;
  prog->scheds = scheds.data;
  prog->nscheds = scheds.len;
  return prog;
}

/* ---- printing ---- */

/* Names as they read, whether resolved by sema or not. */
static const char *expr_name(const Expr *e) {
  switch (e->kind) {
  case EX_ACCESS: return e->tensor->name;
  case EX_INDEX: return e->var->name;
  case EX_SIZE: return e->sym->name;
  case EX_BUILTIN: return builtin_info[e->builtin].name;
  case EX_CAST: return dtype_info[e->type].name;
  default: return e->name;
  }
}

static void print_args(Buf *b, const Expr *e) {
  buf_puts(b, "(");
  for (int i = 0; i < e->nargs; i++) {
    if (i)
      buf_puts(b, ", ");
    ast_print_expr(b, e->args[i]);
  }
  buf_puts(b, ")");
}

void ast_print_expr(Buf *b, const Expr *e) {
  switch (e->kind) {
  case EX_INT:
    buf_printf(b, "%lld", (long long)e->ival);
    return;
  case EX_FLOAT: {
    char s[64];
    snprintf(s, sizeof s, "%.9g", e->fval);
    buf_puts(b, s);
    if (!strpbrk(s, ".en"))
      buf_puts(b, ".0");
    return;
  }
  case EX_IDENT:
  case EX_INDEX:
  case EX_SIZE:
    buf_puts(b, expr_name(e));
    return;
  case EX_ACCESS:
    buf_puts(b, expr_name(e));
    if (e->nargs)
      print_args(b, e);
    return;
  case EX_CALL:
  case EX_BUILTIN:
  case EX_CAST:
    buf_puts(b, expr_name(e));
    print_args(b, e);
    return;
  case EX_UNARY:
    buf_printf(b, "(%s", unop_names[e->op]);
    ast_print_expr(b, e->a);
    buf_puts(b, ")");
    return;
  case EX_BINARY:
    if (e->op == OP_MIN || e->op == OP_MAX) {
      buf_printf(b, "%s(", binop_names[e->op]);
      ast_print_expr(b, e->a);
      buf_puts(b, ", ");
      ast_print_expr(b, e->b);
      buf_puts(b, ")");
      return;
    }
    buf_puts(b, "(");
    ast_print_expr(b, e->a);
    buf_printf(b, " %s ", binop_names[e->op]);
    ast_print_expr(b, e->b);
    buf_puts(b, ")");
    return;
  case EX_SELECT:
    buf_puts(b, "(");
    ast_print_expr(b, e->a);
    buf_puts(b, " ? ");
    ast_print_expr(b, e->b);
    buf_puts(b, " : ");
    ast_print_expr(b, e->c);
    buf_puts(b, ")");
    return;
  }
}

static void print_tensor(Buf *b, const Tensor *t) {
  if (t->typed) {
    buf_puts(b, dtype_info[t->dtype].name);
    if (t->dims) {
      buf_puts(b, "(");
      for (int i = 0; i < t->rank; i++) {
        if (i)
          buf_puts(b, ", ");
        if (t->dims[i].name)
          buf_puts(b, t->dims[i].name);
        else
          buf_printf(b, "%lld", (long long)t->dims[i].value);
      }
      buf_puts(b, ")");
    }
    buf_puts(b, " ");
  }
  buf_puts(b, t->name);
  if (t->bc == BC_NONE)
    return;
  static const char *const bc_names[] = {
#define X(n, s) s,
      BC_LIST(X)
#undef X
  };
  buf_printf(b, " : %s", bc_names[t->bc]);
  if (t->bc == BC_CONSTANT)
    buf_printf(b, "(%.17g)", t->bc_value);
  int n = 0;
  for (int i = 0; i < t->rank; i++)
    n += t->bc_dim[i];
  if (n == t->rank)
    return;
  buf_puts(b, " [");
  for (int i = 0, k = 0; i < t->rank; i++) {
    if (!t->bc_dim[i])
      continue;
    bool seen = false; /* float(N,N) A : clamp [N] marks both dims */
    for (int j = 0; j < i; j++)
      seen |= t->bc_dim[j] && !strcmp(t->dims[j].name, t->dims[i].name);
    if (!seen)
      buf_printf(b, "%s%s", k++ ? ", " : "", t->dims[i].name);
  }
  buf_puts(b, "]");
}

static const char *op_text(const Stmt *s) {
  static const char *const ops[] = {"=", "+=", "*=", "min=", "max="};
  return ops[s->op];
}

static void print_stmt(Buf *b, const Stmt *s) {
  buf_puts(b, s->lhs_name);
  if (s->nidx) {
    buf_puts(b, "(");
    for (int i = 0; i < s->nidx; i++)
      buf_printf(b, "%s%s", i ? ", " : "", s->idx_names[i]);
    buf_puts(b, ")");
  }
  buf_printf(b, " %s%s ", op_text(s), s->bang ? "!" : "");
  ast_print_expr(b, s->rhs);
  for (int i = 0; i < s->nwheres; i++) {
    const Where *w = &s->wheres[i];
    buf_puts(b, i ? ", " : " where ");
    if (w->kind == W_RANGE) {
      buf_printf(b, "%s in ", w->name);
      ast_print_expr(b, w->lo);
      buf_puts(b, ":");
      ast_print_expr(b, w->hi);
    } else if (w->kind == W_LET) {
      buf_printf(b, "%s = ", w->name);
      ast_print_expr(b, w->e);
    } else {
      buf_puts(b, "exists ");
      ast_print_expr(b, w->e);
    }
  }
  buf_puts(b, "\n");
}

void ast_print_def(Buf *b, const Def *d) {
  buf_printf(b, "def %s(", d->name);
  for (int i = 0; i < d->ninputs; i++) {
    if (i)
      buf_puts(b, ", ");
    print_tensor(b, d->tensors[i]);
  }
  buf_puts(b, ") -> (");
  for (int i = 0; i < d->noutputs; i++) {
    if (i)
      buf_puts(b, ", ");
    print_tensor(b, d->tensors[d->ninputs + i]);
  }
  buf_puts(b, ") {\n");
  for (int i = 0; i < d->nstmts; i++) {
    buf_indent(b, 1);
    print_stmt(b, d->stmts[i]);
  }
  buf_puts(b, "}\n");
}
