/* test_parse.c — the parser: precedence and associativity (through the
 * canonical printer), defs, parameters, boundary conditions, typed and rank-0
 * outputs, statements, where clauses, and located syntax errors. */
#include "tc.h"
#include "unit.h"

typedef struct Parsed {
  Arena arena;
  tc_error err;
  tc_status status;
  Program *prog;
} Parsed;

static void parse_src(Parsed *P, const char *src) {
  memset(P, 0, sizeof *P);
  jmp_buf jb, oom;
  P->arena.oom = &oom;
  SrcFile file = {"t.tc", src, strlen(src)};
  Ctx c = {&P->arena, &file, &P->err, &jb};
  int code = setjmp(jb);
  if (!code)
    code = setjmp(oom);
  if (code) {
    P->status = (tc_status)code;
    return;
  }
  int n;
  Token *toks = lex_tokenize(&c, &n);
  P->prog = parse_program(&c, toks);
  P->status = TC_OK;
}

static char *show_expr(const Expr *e) {
  static char out[2048];
  Buf b = {0};
  ast_print_expr(&b, e);
  snprintf(out, sizeof out, "%s", b.s ? b.s : "");
  buf_free(&b);
  return out;
}

static char *show_def(const Def *d) {
  static char out[4096];
  Buf b = {0};
  ast_print_def(&b, d);
  snprintf(out, sizeof out, "%s", b.s ? b.s : "");
  buf_free(&b);
  return out;
}

/* The right-hand side of `O(i) = <rhs>`, printed. */
static void check_rhs(const char *rhs, const char *want) {
  char src[1024];
  snprintf(src, sizeof src, "def f() -> (O) {\n  O(i) = %s\n}\n", rhs);
  Parsed P;
  parse_src(&P, src);
  CHECK_INT(P.status, TC_OK);
  if (P.status == TC_OK)
    CHECK_STR(show_expr(P.prog->defs[0]->stmts[0]->rhs), want);
  else
    fprintf(stderr, "  %s: %s\n", rhs, P.err.diagnostic);
  arena_free(&P.arena);
}

TEST(parse_precedence) {
  check_rhs("a + b * c", "(a + (b * c))");
  check_rhs("a * b + c", "((a * b) + c)");
  check_rhs("a - b - c", "((a - b) - c)");
  check_rhs("a / b % c * d", "(((a / b) % c) * d)");
  check_rhs("-a * b", "((-a) * b)");
  check_rhs("- -a", "(-(-a))");
  check_rhs("-a(i) + 1", "((-a(i)) + 1)");
  check_rhs("!a && b || c", "(((!a) && b) || c)");
  check_rhs("a || b && c", "(a || (b && c))");
  check_rhs("a || b || c", "((a || b) || c)");
  check_rhs("a < b == c", "((a < b) == c)");
  check_rhs("a + b < c * d", "((a + b) < (c * d))");
  check_rhs("a <= b && c >= d || e != f", "(((a <= b) && (c >= d)) || (e != f))");
  check_rhs("a > b ? c : d", "((a > b) ? c : d)");
  check_rhs("a ? b : c ? d : e", "(a ? b : (c ? d : e))");
  check_rhs("a ? b ? c : d : e", "(a ? (b ? c : d) : e)");
  check_rhs("a || b ? c + 1 : d * 2", "((a || b) ? (c + 1) : (d * 2))");
  check_rhs("(a + b) * c", "((a + b) * c)");
  check_rhs("((a))", "a");
  check_rhs("f(a, b + c, g(d))", "f(a, (b + c), g(d))");
  check_rhs("min(a, b) + max(c, d)", "(min(a, b) + max(c, d))");
  check_rhs("A() + s", "(A() + s)");
  check_rhs("E(Idx(b, l), d)", "E(Idx(b, l), d)");
  check_rhs("A(2*h + kh - 1)", "A((((2 * h) + kh) - 1))");
}

TEST(parse_literals) {
  check_rhs("1.5", "1.5");
  check_rhs("1.", "1.0");
  check_rhs(".5", "0.5");
  check_rhs("2", "2");
  check_rhs("1e-3", "0.00100000005"); /* the float32 value */
  check_rhs("2.5e+4", "25000.0");
  check_rhs("-2147483647", "(-2147483647)");
}

TEST(parse_matmul_def) {
  Parsed P;
  parse_src(&P, "# matmul\ndef matmul(float(M,K) A, float(K,N) B) -> (C) {\n"
                "    C(m,n) +=! A(m,k) * B(k,n)\n}\n");
  CHECK_INT(P.status, TC_OK);
  Def *d = P.prog->defs[0];
  CHECK_STR(d->name, "matmul");
  CHECK_INT(d->loc.line, 2);
  CHECK_INT(d->ninputs, 2);
  CHECK_INT(d->noutputs, 1);
  CHECK_INT(d->ntensors, 3);
  Tensor *a = d->tensors[0], *b = d->tensors[1], *c = d->tensors[2];
  CHECK_STR(a->name, "A");
  CHECK_INT(a->role, T_INPUT);
  CHECK_INT(a->dtype, TC_FLOAT32);
  CHECK(a->typed);
  CHECK_INT(a->rank, 2);
  CHECK_STR(a->dims[0].name, "M");
  CHECK_STR(a->dims[1].name, "K");
  CHECK_INT(a->dims[1].loc.col, 20);
  CHECK_INT(b->id, 1);
  CHECK_INT(b->pos, 1);
  CHECK_INT(c->role, T_OUTPUT);
  CHECK_INT(c->id, 2);
  CHECK_INT(c->pos, 0);
  CHECK(!c->typed);
  CHECK(!c->dims);
  CHECK_INT(a->bc, BC_NONE);
  CHECK_INT(d->nstmts, 1);
  Stmt *s = d->stmts[0];
  CHECK_STR(s->lhs_name, "C");
  CHECK_INT(s->loc.line, 3);
  CHECK_INT(s->loc.col, 5);
  CHECK_INT(s->nidx, 2);
  CHECK_STR(s->idx_names[1], "n");
  CHECK_INT(s->idx_locs[1].col, 9);
  CHECK_INT(s->op, RED_ADD);
  CHECK(s->bang);
  CHECK_INT(s->rhs->kind, EX_BINARY);
  CHECK_INT(s->rhs->op, OP_MUL);
  CHECK_INT(s->rhs->loc.col, 23);
  CHECK_INT(s->rhs->a->kind, EX_CALL);
  CHECK_STR(s->rhs->a->name, "A");
  CHECK_INT(s->rhs->a->nargs, 2);
  CHECK_INT(s->rhs->a->args[1]->kind, EX_IDENT);
  CHECK_STR(show_def(d), "def matmul(float32(M, K) A, float32(K, N) B) -> (C) {\n"
                         "  C(m, n) +=! (A(m, k) * B(k, n))\n}\n");
  arena_free(&P.arena);
}

TEST(parse_operators) {
  static const struct {
    const char *op;
    RedOp red;
    bool bang;
  } ops[] = {{"=", RED_NONE, false},    {"+=", RED_ADD, false},  {"*=", RED_MUL, false},
             {"min=", RED_MIN, false},  {"max=", RED_MAX, false}, {"+=!", RED_ADD, true},
             {"*=!", RED_MUL, true},    {"min=!", RED_MIN, true}, {"max=!", RED_MAX, true}};
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
    char src[256];
    snprintf(src, sizeof src, "def f() -> (O) { O(i) %s x }", ops[i].op);
    Parsed P;
    parse_src(&P, src);
    CHECK_INT(P.status, TC_OK);
    if (P.status != TC_OK)
      continue;
    CHECK_INT(P.prog->defs[0]->stmts[0]->op, ops[i].red);
    CHECK_INT(P.prog->defs[0]->stmts[0]->bang, ops[i].bang);
    arena_free(&P.arena);
  }
  /* '= !x' and '=!x' are an assignment of a negation */
  Parsed P;
  parse_src(&P, "def f() -> (O) { O(i) =!x }");
  CHECK_INT(P.status, TC_OK);
  CHECK_INT(P.prog->defs[0]->stmts[0]->op, RED_NONE);
  CHECK_STR(show_expr(P.prog->defs[0]->stmts[0]->rhs), "(!x)");
  arena_free(&P.arena);
}

TEST(parse_statements_without_terminators) {
  Parsed P;
  parse_src(&P, "def f(float(N) A) -> (O, s) {\n"
                "  t(i) = A(i) O(i) = t(i) * 2;\n"
                "  s = 1; s() += 2;;\n"
                "  s = -s\n"
                "}\n");
  CHECK_INT(P.status, TC_OK);
  Def *d = P.prog->defs[0];
  CHECK_INT(d->nstmts, 5);
  CHECK_STR(d->stmts[1]->lhs_name, "O");
  CHECK_INT(d->stmts[1]->loc.col, 15);
  CHECK_INT(d->stmts[2]->nidx, 0);
  CHECK_INT(d->stmts[3]->nidx, 0);
  CHECK_INT(d->stmts[3]->op, RED_ADD);
  CHECK_STR(show_expr(d->stmts[4]->rhs), "(-s)");
  arena_free(&P.arena);
}

TEST(parse_where_clauses) {
  Parsed P;
  parse_src(&P, "def f(float(N) A) -> (O) {\n"
                "  O(i) +=! x * A(k) where i in 0:N-1, k in 1 : max(N, 2), x = A(i) + 1,\n"
                "    exists A(i + k), in = 3, exists = 4\n"
                "}\n");
  CHECK_INT(P.status, TC_OK);
  if (P.status != TC_OK) {
    fprintf(stderr, "%s\n", P.err.diagnostic);
    return;
  }
  Stmt *s = P.prog->defs[0]->stmts[0];
  CHECK_INT(s->nwheres, 6);
  CHECK_INT(s->wheres[0].kind, W_RANGE);
  CHECK_STR(s->wheres[0].name, "i");
  CHECK_INT(s->wheres[0].loc.col, 27);
  CHECK_STR(show_expr(s->wheres[0].lo), "0");
  CHECK_STR(show_expr(s->wheres[0].hi), "(N - 1)");
  CHECK_INT(s->wheres[1].kind, W_RANGE);
  CHECK_STR(show_expr(s->wheres[1].hi), "max(N, 2)");
  CHECK_INT(s->wheres[2].kind, W_LET);
  CHECK_STR(s->wheres[2].name, "x");
  CHECK_STR(show_expr(s->wheres[2].e), "(A(i) + 1)");
  CHECK_INT(s->wheres[3].kind, W_EXISTS);
  CHECK_STR(show_expr(s->wheres[3].e), "A((i + k))");
  CHECK_INT(s->wheres[3].loc.line, 3);
  /* contextual keywords: lets called `in` and `exists` */
  CHECK_INT(s->wheres[4].kind, W_LET);
  CHECK_STR(s->wheres[4].name, "in");
  CHECK_INT(s->wheres[5].kind, W_LET);
  CHECK_STR(s->wheres[5].name, "exists");
  CHECK_STR(show_def(P.prog->defs[0]),
            "def f(float32(N) A) -> (O) {\n"
            "  O(i) +=! (x * A(k)) where i in 0:(N - 1), k in 1:max(N, 2), x = (A(i) + 1), "
            "exists A((i + k)), in = 3, exists = 4\n}\n");
  arena_free(&P.arena);
}

TEST(parse_boundary_conditions) {
  Parsed P;
  parse_src(&P, "def f(float(H,W) I : clamp, float(N) M : mirror, float(N) Wr : wrap,\n"
                "      float(N,C,H,W) P : constant(-1.5) [H, W], double(N,N) Q : constant(2) [N],\n"
                "      int8(3,N) R : constant(0)) -> (O) { O(i) = 1 }");
  CHECK_INT(P.status, TC_OK);
  if (P.status != TC_OK) {
    fprintf(stderr, "%s\n", P.err.diagnostic);
    return;
  }
  Tensor **t = P.prog->defs[0]->tensors;
  CHECK_INT(t[0]->bc, BC_CLAMP);
  CHECK(t[0]->bc_dim[0] && t[0]->bc_dim[1] && !t[0]->bc_dim[2]);
  CHECK_INT(t[0]->bc_loc.line, 1);
  CHECK_INT(t[0]->bc_loc.col, 22);
  CHECK_INT(t[1]->bc, BC_MIRROR);
  CHECK_INT(t[2]->bc, BC_WRAP);
  CHECK_INT(t[3]->bc, BC_CONSTANT);
  CHECK(t[3]->bc_value == -1.5);
  CHECK(!t[3]->bc_dim[0] && !t[3]->bc_dim[1] && t[3]->bc_dim[2] && t[3]->bc_dim[3]);
  CHECK_INT(t[4]->dtype, TC_FLOAT64);
  CHECK(t[4]->bc_value == 2.0);
  CHECK(t[4]->bc_dim[0] && t[4]->bc_dim[1]); /* both dims are N */
  CHECK_INT(t[5]->dtype, TC_INT8);
  CHECK_INT(t[5]->dims[0].value, 3);
  CHECK(!t[5]->dims[0].name);
  CHECK(t[5]->bc_dim[0] && t[5]->bc_dim[1]);
  CHECK_STR(show_def(P.prog->defs[0]),
            "def f(float32(H, W) I : clamp, float32(N) M : mirror, float32(N) Wr : wrap, "
            "float32(N, C, H, W) P : constant(-1.5) [H, W], float64(N, N) Q : constant(2), "
            "int8(3, N) R : constant(0)) -> (O) {\n  O(i) = 1\n}\n");
  arena_free(&P.arena);
}

TEST(parse_outputs_and_scalars) {
  Parsed P;
  parse_src(&P, "def f(float alpha, int32(4) V) -> (int32(M, 3) O, float s, U, bool(N) B) {\n"
                "  O(i, j) = 1\n}\n"
                "def g() -> () {}\n");
  CHECK_INT(P.status, TC_OK);
  if (P.status != TC_OK) {
    fprintf(stderr, "%s\n", P.err.diagnostic);
    return;
  }
  CHECK_INT(P.prog->ndefs, 2);
  Def *d = P.prog->defs[0];
  Tensor **t = d->tensors;
  CHECK_INT(d->ntensors, 6);
  CHECK_INT(t[0]->rank, 0);
  CHECK(!t[0]->dims);
  CHECK_INT(t[1]->dims[0].value, 4);
  CHECK_INT(t[2]->role, T_OUTPUT);
  CHECK(t[2]->typed);
  CHECK_INT(t[2]->dtype, TC_INT32);
  CHECK_INT(t[2]->rank, 2);
  CHECK_STR(t[2]->dims[0].name, "M");
  CHECK_INT(t[2]->dims[1].value, 3);
  CHECK(t[3]->typed);
  CHECK_INT(t[3]->rank, 0);
  CHECK(!t[4]->typed);
  CHECK_STR(t[4]->name, "U");
  CHECK_INT(t[5]->dtype, TC_BOOL);
  CHECK_INT(t[5]->id, 5);
  CHECK_INT(t[5]->pos, 3);
  CHECK_INT(P.prog->defs[1]->ntensors, 0);
  CHECK_INT(P.prog->defs[1]->nstmts, 0);
  arena_free(&P.arena);
}

TEST(parse_type_aliases) {
  Parsed P;
  parse_src(&P, "def f(float a, double b, float16 c, bfloat16 d, uint64 e, int16 f_, bool g)"
                " -> (O) { O = 1 }");
  CHECK_INT(P.status, TC_OK);
  Tensor **t = P.prog->defs[0]->tensors;
  CHECK_INT(t[0]->dtype, TC_FLOAT32);
  CHECK_INT(t[1]->dtype, TC_FLOAT64);
  CHECK_INT(t[2]->dtype, TC_FLOAT16);
  CHECK_INT(t[3]->dtype, TC_BFLOAT16);
  CHECK_INT(t[4]->dtype, TC_UINT64);
  CHECK_INT(t[5]->dtype, TC_INT16);
  CHECK_INT(t[6]->dtype, TC_BOOL);
  arena_free(&P.arena);
}

TEST(parse_deep_but_legal) {
  /* 200 nested parentheses and a 200-term sum are fine */
  static char src[8192];
  int k = snprintf(src, sizeof src, "def f() -> (O) { O(i) = ");
  for (int i = 0; i < 200; i++)
    src[k++] = '(';
  src[k++] = 'x';
  for (int i = 0; i < 200; i++)
    src[k++] = ')';
  for (int i = 0; i < 200; i++)
    k += snprintf(src + k, sizeof src - (size_t)k, "+x");
  snprintf(src + k, sizeof src - (size_t)k, " }");
  Parsed P;
  parse_src(&P, src);
  CHECK_INT(P.status, TC_OK);
  arena_free(&P.arena);
}

/* Expects a syntax error with exactly `msg` at line:col. */
static void check_error(const char *src, int line, int col, const char *msg) {
  Parsed P;
  parse_src(&P, src);
  CHECK_INT(P.status, TC_ERR_PROGRAM);
  CHECK_INT(P.err.line, line);
  CHECK_INT(P.err.col, col);
  CHECK_STR(P.err.message, msg);
  if (P.err.line != line || P.err.col != col)
    fprintf(stderr, "  in: %s\n", src);
  arena_free(&P.arena);
}

TEST(parse_errors) {
  check_error("def matmul(float(M,K) A) (C) {}", 1, 26,
              "expected '->' after the parameter list of 'matmul'");
  check_error("def matmul(float(M,K) A) -> (C) {\n  C(m) = A(m, 0)\n", 2, 17,
              "unexpected end of input: missing '}' to close 'def matmul'");
  check_error("def f() -> (O) {\n  O(i) = g(i, 2\n}", 2, 16, "expected ')' after arguments");
  check_error("def f() -> (O) {\n  O(i) = g(i 2)\n}", 2, 14, "expected ')' after arguments");
  check_error("def f() -> (O) {\n  O(i) = (i + 2\n}", 2, 16, "expected ')' to match the '(' at 2:10");
  check_error("def f() -> (O) {\n  O(i) = i +\n}", 2, 13, "expected an expression, got '}'");
  check_error("def f() -> (O) {\n  O(i) = i ? 1 2\n}", 2, 16,
              "expected ':' in the conditional expression ('?' at 2:12)");
  check_error("def f() -> (O) {\n  O(i) = )\n}", 2, 10, "expected an expression, got ')'");
  check_error("def f() -> (O) {\n  O(i) = ", 2, 9,
              "unexpected end of input: expected an expression");
  check_error("def f() -> (O) {\n  O(i) -= 1\n}", 2, 8,
              "expected '=' or a reduction operator (+=, *=, min=, max=, +=!, ...) after the "
              "left-hand side 'O', got '-'");
  check_error("def f() -> (O) {\n  O(i+1) = 1\n}", 2, 6,
              "expected ',' or ')' after index 'i' of 'O' (left-hand indices are plain names), "
              "got '+'");
  check_error("def f() -> (O) {\n  O(1) = 1\n}", 2, 5,
              "expected an index name on the left-hand side of 'O' (left-hand indices are plain "
              "names), got '1'");
  check_error("def f() -> (O) {\n  O(i,) = 1\n}", 2, 7,
              "expected an index name on the left-hand side of 'O' (left-hand indices are plain "
              "names), got ')'");
  check_error("def f() -> (O) {\n  (i) = 1\n}", 2, 3,
              "expected a statement or '}' in the body of 'f', got '('");
  check_error("def f() -> (O) {\n  O(i) = 1 where\n}", 2, 17,
              "expected a where clause (i in lo:hi, x = expr or exists expr), got '}'");
  check_error("def f() -> (O) {\n  O(i) = 1 where i in 0 N\n}", 2, 25,
              "expected ':' between the bounds of 'i' (write i in lo:hi)");
  check_error("def f() -> (O) {\n  O(i) = 1 where i < N\n}", 2, 20,
              "expected 'in' or '=' after 'i' in a where clause, got '<'");
  check_error("def f(floatx(N) A) -> (O) {}", 1, 7,
              "expected a parameter type (such as float or int32), got 'floatx'");
  check_error("def f(float(N) A,) -> (O) {}", 1, 18,
              "expected a parameter type (such as float or int32), got ')'");
  check_error("def f(float(N)) -> (O) {}", 1, 15,
              "expected the parameter's name after its type, got ')'");
  check_error("def f(float(N A) -> (O) {}", 1, 15,
              "expected ',' or ')' in the list of dimensions, got 'A'");
  check_error("def f(float(N, 2.5) A) -> (O) {}", 1, 16,
              "expected a dimension (a size symbol or an integer), got '2.5'");
  check_error("def f(float(N) A B) -> (O) {}", 1, 18,
              "expected ',' or ')' after parameter 'A', got 'B'");
  check_error("def f(float(1,2,3,4,5,6,7,8,9) A) -> (O) {}", 1, 29,
              "too many dimensions: tensors have at most 8");
  check_error("def f(float(N) A) -> (O P) {}", 1, 25,
              "expected ',' or ')' after output 'O', got 'P'");
  check_error("def f(float(N) A) -> (O,) {}", 1, 25, "expected an output name, got ')'");
  check_error("def f(float(N) A) -> (O) O(i) = 1", 1, 26,
              "expected '{' to open the body of 'f'");
  check_error("def (float(N) A) -> (O) {}", 1, 5, "expected a name after 'def', got '('");
  check_error("def f float(N) A) -> (O) {}", 1, 7,
              "expected '(' to open the parameter list of 'f'");
  check_error("def f(float(N) A) -> O {}", 1, 22, "expected '(' to open the output list of 'f'");
  check_error("O(i) = 1", 1, 1, "expected 'def' to start a definition, got 'O'");
  check_error("def f() -> (O) { O(i) = 1 }\n}", 2, 1,
              "expected 'def' to start a definition, got '}'");
  check_error("def f() -> (O) {\n  O(i) = 1\ndef g() -> (P) { P(i) = 1 }", 3, 1,
              "missing '}' to close 'def f' before the next 'def'");
  check_error("def f(float(H) I : pad) -> (O) {}", 1, 20,
              "expected a boundary condition (clamp, mirror, wrap or constant(v)) after ':', "
              "got 'pad'");
  check_error("def f(float(H) I : constant) -> (O) {}", 1, 28, "expected '(' after 'constant'");
  check_error("def f(float(H) I : constant(x)) -> (O) {}", 1, 29,
              "expected a number in 'constant(...)', got 'x'");
  check_error("def f(float(H) I : constant(1 2)) -> (O) {}", 1, 31,
              "expected ')' after the value of 'constant'");
  check_error("def f(float(H,W) I : clamp [K]) -> (O) {}", 1, 29,
              "'K' is not a size symbol in the dimensions of 'I'");
  check_error("def f(float(H,W) I : clamp [H, H]) -> (O) {}", 1, 32,
              "dimension 'H' is listed twice");
  check_error("def f(float(H,W) I : clamp [H W]) -> (O) {}", 1, 31,
              "expected ',' or ']' in the boundary list, got 'W'");
  check_error("def f(float(H,W) I : clamp []) -> (O) {}", 1, 29,
              "expected a dimension name in the boundary list, got ']'");
  check_error("def f(float s : wrap) -> (O) {}", 1, 17,
              "a boundary condition needs a tensor, but 's' is a scalar");
  check_error("def f() -> (O) {\n  O(i) = 1e40\n}", 2, 10,
              "floating-point literal out of range for float32");
}

TEST(parse_nesting_limits) {
  static char src[1 << 16];
  const char *kinds[] = {"(", "-", "!", "exp(", "A(", "x ? "};
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    int n = snprintf(src, sizeof src, "def f() -> (O) {\n  O(i) = ");
    for (int i = 0; i < 5000; i++)
      n += snprintf(src + n, sizeof src - (size_t)n, "%s", kinds[k]);
    snprintf(src + n, sizeof src - (size_t)n, "x");
    Parsed P;
    parse_src(&P, src);
    CHECK_INT(P.status, TC_ERR_PROGRAM);
    CHECK_STR(P.err.message, "expression nested too deeply (more than 256 levels)");
    CHECK_INT(P.err.line, 2);
    arena_free(&P.arena);
  }
  /* a 300-term chain is a tree 300 deep: refused as well */
  int n = snprintf(src, sizeof src, "def f() -> (O) { O(i) = x");
  for (int i = 0; i < 300; i++)
    n += snprintf(src + n, sizeof src - (size_t)n, " * x");
  snprintf(src + n, sizeof src - (size_t)n, " }");
  Parsed P;
  parse_src(&P, src);
  CHECK_INT(P.status, TC_ERR_PROGRAM);
  CHECK_STR(P.err.message, "expression nested too deeply (more than 256 levels)");
  arena_free(&P.arena);
}

RUN_TESTS()
