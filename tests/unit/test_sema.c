/* test_sema.c — name resolution, temporaries, statement variables, where
 * clauses, reduction rules, type inference, and located semantic errors, on
 * TC programs (matmul, strided conv, batched matmul, softmax with
 * temporaries, gather) and small cases. */
#include "tc.h"
#include "unit.h"

typedef struct Checked {
  Arena arena;
  tc_error err;
  tc_status status;
  Program *prog;
} Checked;

static void check_src(Checked *C, const char *src) {
  memset(C, 0, sizeof *C);
  jmp_buf jb, oom;
  C->arena.oom = &oom;
  SrcFile file = {"t.tc", src, strlen(src)};
  Ctx c = {&C->arena, &file, &C->err, &jb};
  int code = setjmp(jb);
  if (!code)
    code = setjmp(oom);
  if (code) {
    C->status = (tc_status)code;
    return;
  }
  int n;
  Token *toks = lex_tokenize(&c, &n);
  C->prog = parse_program(&c, toks);
  sema_program(&c, C->prog);
  C->status = TC_OK;
}

/* Checks `src`, which must be correct, and returns its first def. */
static Def *ok(Checked *C, const char *src) {
  check_src(C, src);
  CHECK_INT(C->status, TC_OK);
  if (C->status != TC_OK) {
    fprintf(stderr, "%s\n", C->err.diagnostic);
    arena_free(&C->arena);
    return NULL;
  }
  return C->prog->defs[0];
}

/* "i j k(r) h(w)": a statement's variables. */
static char *vars(const Stmt *s) {
  static char out[512];
  size_t k = 0;
  out[0] = '\0';
  for (int i = 0; i < s->nvars; i++) {
    const IndexVar *v = s->vars[i];
    CHECK_INT(v->id, i);
    k += (size_t)snprintf(out + k, sizeof out - k, "%s%s%s%s", i ? " " : "", v->name,
                          v->reduction ? "(r)" : "", v->has_where ? "(w)" : "");
  }
  return out;
}

static char *show(const Expr *e) {
  static char out[2048];
  Buf b = {0};
  ast_print_expr(&b, e);
  snprintf(out, sizeof out, "%s", b.s ? b.s : "");
  buf_free(&b);
  return out;
}

static const char *tname(tc_dtype t) { return dtype_info[t].name; }

TEST(sema_matmul) {
  Checked C;
  Def *d = ok(&C, "def matmul(float(M,K) A, float(K,N) B) -> (C) {\n"
                  "    C(m,n) +=! A(m,k) * B(k,n)\n}\n");
  if (!d)
    return;
  CHECK_INT(d->nsyms, 3);
  CHECK_STR(d->syms[0]->name, "M");
  CHECK_STR(d->syms[1]->name, "K");
  CHECK_STR(d->syms[2]->name, "N");
  CHECK(d->syms[1]->tensor == d->tensors[0]); /* first binding: A dim 1 */
  CHECK_INT(d->syms[1]->dim, 1);
  CHECK(d->syms[2]->tensor == d->tensors[1]);
  CHECK_INT(d->syms[2]->dim, 1);
  CHECK_INT(d->syms[2]->id, 2);
  CHECK(d->tensors[1]->dims[0].sym == d->syms[1]);
  CHECK_INT(d->ntemps, 0);
  Tensor *c = d->tensors[2];
  CHECK_INT(c->dtype, TC_FLOAT32);
  CHECK_INT(c->rank, 2);
  Stmt *s = d->stmts[0];
  CHECK(s->lhs == c);
  CHECK(c->def == s);
  CHECK_STR(vars(s), "m n k(r)");
  CHECK(s->first_def);
  CHECK(s->init);
  CHECK_INT(s->rhs->type, TC_FLOAT32);
  Expr *a = s->rhs->a;
  CHECK_INT(a->kind, EX_ACCESS);
  CHECK(a->tensor == d->tensors[0]);
  CHECK_INT(a->args[0]->kind, EX_INDEX);
  CHECK(a->args[0]->var == s->vars[0]);
  CHECK(a->args[1]->var == s->vars[2]);
  CHECK(s->rhs->b->args[0]->var == s->vars[2]);
  CHECK_INT(s->vars[2]->loc.line, 2);
  CHECK_INT(s->vars[2]->loc.col, 20);
  CHECK(sema_find_def(C.prog, "matmul") == d);
  CHECK(!sema_find_def(C.prog, "nope"));
  arena_free(&C.arena);
}

TEST(sema_conv_strided_and_bmm) {
  Checked C;
  Def *d = ok(&C, "def conv(float(N,C,H,W) I, float(F,C,KH,KW) Wt) -> (O) {\n"
                  "  O(n,f,h,w) +=! I(n,c,2*h+kh,2*w+kw) * Wt(f,c,kh,kw)\n}\n"
                  "def bmm(float(B,M,K) X, float(B,K,N) Y) -> (Z) {\n"
                  "  Z(b,m,n) +=! X(b,m,k) * Y(b,k,n)\n}\n");
  if (!d)
    return;
  CHECK_INT(d->nsyms, 7);
  CHECK_STR(vars(d->stmts[0]), "n f h w c(r) kh(r) kw(r)");
  CHECK_STR(show(d->stmts[0]->rhs), "(I(n, c, ((2 * h) + kh), ((2 * w) + kw)) * Wt(f, c, kh, kw))");
  CHECK_INT(d->stmts[0]->rhs->a->args[2]->type, TC_INT32);
  Def *b = C.prog->defs[1];
  CHECK_STR(vars(b->stmts[0]), "b m n k(r)");
  CHECK_INT(b->tensors[2]->rank, 3);
  CHECK_INT(b->nsyms, 4);
  arena_free(&C.arena);
}

TEST(sema_softmax_temporaries) {
  Checked C;
  Def *d = ok(&C, "def softmax(float(N,D) X) -> (Y) {\n"
                  "  mx(n) max=! X(n,d)\n"
                  "  e(n,d) = exp(X(n,d) - mx(n))\n"
                  "  s(n) +=! e(n,d)\n"
                  "  Y(n,d) = e(n,d) / s(n)\n"
                  "}\n");
  if (!d)
    return;
  CHECK_INT(d->ninputs, 1);
  CHECK_INT(d->noutputs, 1);
  CHECK_INT(d->ntemps, 3);
  CHECK_INT(d->ntensors, 5);
  const char *names[] = {"X", "Y", "mx", "e", "s"};
  const int ranks[] = {2, 2, 1, 2, 1};
  for (int i = 0; i < 5; i++) {
    CHECK_STR(d->tensors[i]->name, names[i]);
    CHECK_INT(d->tensors[i]->id, i);
    CHECK_INT(d->tensors[i]->rank, ranks[i]);
    CHECK_INT(d->tensors[i]->dtype, TC_FLOAT32);
  }
  CHECK_INT(d->tensors[2]->role, T_TEMP);
  CHECK_INT(d->tensors[2]->pos, 0);
  CHECK_INT(d->tensors[4]->pos, 2);
  CHECK(d->tensors[3]->def == d->stmts[1]);
  CHECK_STR(vars(d->stmts[0]), "n d(r)");
  CHECK(d->stmts[0]->init);
  CHECK_STR(vars(d->stmts[1]), "n d");
  CHECK(!d->stmts[1]->init);
  CHECK(d->stmts[1]->first_def);
  CHECK_INT(d->stmts[1]->rhs->kind, EX_BUILTIN);
  CHECK_INT(d->stmts[1]->rhs->builtin, BI_exp);
  CHECK_STR(vars(d->stmts[2]), "n d(r)");
  CHECK(d->stmts[3]->rhs->b->tensor == d->tensors[4]);
  arena_free(&C.arena);
}

TEST(sema_gather_and_scalars) {
  Checked C;
  Def *d = ok(&C, "def gather(float(V,D) E, int32(B,L) Idx, float alpha) -> (O, s) {\n"
                  "  O(b,l,d) = E(Idx(b,l), d) * alpha\n"
                  "  s +=! O(b,l,d) + alpha()\n"
                  "}\n");
  if (!d)
    return;
  Stmt *s0 = d->stmts[0], *s1 = d->stmts[1];
  CHECK_STR(vars(s0), "b l d");
  Expr *e = s0->rhs->a;
  CHECK(e->tensor == d->tensors[0]);
  CHECK_INT(e->args[0]->kind, EX_ACCESS);
  CHECK_INT(e->args[0]->type, TC_INT32);
  CHECK_INT(s0->rhs->b->kind, EX_ACCESS);
  CHECK_INT(s0->rhs->b->nargs, 0);
  CHECK(s0->rhs->b->tensor == d->tensors[2]);
  CHECK_INT(d->tensors[4]->rank, 0);
  CHECK_STR(vars(s1), "b(r) l(r) d(r)");
  CHECK(s1->init);
  CHECK_INT(s1->rhs->b->kind, EX_ACCESS);
  arena_free(&C.arena);
}

TEST(sema_sizes_and_typed_outputs) {
  Checked C;
  Def *d = ok(&C, "def f(float(M,K) A, float(K,N) B, float(N,M) P) -> (int32(M,N) O, double(3) T) {\n"
                  "  O(i,j) = int32(A(i,0)) + M * N\n"
                  "  T(i) = 1.5 where i in 0:3\n"
                  "}\n");
  if (!d)
    return;
  CHECK_INT(d->nsyms, 3);
  Tensor *o = d->tensors[3];
  CHECK(o->dims[0].sym == d->syms[0]);
  CHECK(o->dims[1].sym == d->syms[2]);
  CHECK_INT(o->dtype, TC_INT32);
  Expr *m = d->stmts[0]->rhs->b->a;
  CHECK_INT(m->kind, EX_SIZE);
  CHECK(m->sym == d->syms[0]);
  CHECK_INT(m->type, TC_INT32);
  CHECK_INT(d->stmts[0]->rhs->a->kind, EX_CAST);
  CHECK_INT(d->stmts[0]->rhs->a->type, TC_INT32);
  CHECK_INT(d->tensors[4]->dtype, TC_FLOAT64); /* float32 rhs promotes into float64 */
  CHECK_INT(d->stmts[1]->rhs->type, TC_FLOAT32);
  CHECK_STR(vars(d->stmts[1]), "i(w)");
  arena_free(&C.arena);
}

/* The type of `rhs` in a def over inputs of every kind. */
static void check_type(const char *rhs, tc_dtype want) {
  char src[1024];
  snprintf(src, sizeof src,
           "def f(int8(N) A, uint16(N) B, float16(N) H, double(N) D, bool(N) P, int64(N) L,\n"
           "      uint8(N) U, bfloat16(N) Bf, float(N) F) -> (O) {\n  O(i) = %s\n}\n", rhs);
  Checked C;
  check_src(&C, src);
  CHECK_INT(C.status, TC_OK);
  if (C.status != TC_OK) {
    fprintf(stderr, "  %s: %s\n", rhs, C.err.message);
    return;
  }
  Stmt *s = C.prog->defs[0]->stmts[0];
  if (s->rhs->type != want)
    fprintf(stderr, "  %s: got %s, expected %s\n", rhs, tname(s->rhs->type), tname(want));
  CHECK_INT(s->rhs->type, want);
  CHECK_INT(s->lhs->dtype, want); /* an untyped output takes its first definition's type */
  arena_free(&C.arena);
}

TEST(sema_types) {
  check_type("A(i) + B(i)", TC_INT16);
  check_type("A(i) + 1", TC_INT32);
  check_type("U(i) + B(i)", TC_UINT16);
  check_type("-U(i)", TC_UINT8);
  check_type("min(U(i), L(i))", TC_INT64);
  check_type("max(P(i), P(i))", TC_BOOL);
  check_type("H(i) * 2", TC_FLOAT16);
  check_type("H(i) * 2.0", TC_FLOAT32);
  check_type("H(i) + Bf(i)", TC_FLOAT32);
  check_type("Bf(i) - L(i)", TC_BFLOAT16);
  check_type("D(i) + F(i)", TC_FLOAT64);
  check_type("F(i) % 2", TC_FLOAT32);
  check_type("exp(A(i))", TC_FLOAT32);
  check_type("exp(D(i))", TC_FLOAT64);
  check_type("pow(H(i), D(i))", TC_FLOAT64);
  check_type("fma(A(i), B(i), 1)", TC_FLOAT32);
  check_type("float16(A(i))", TC_FLOAT16);
  check_type("double(F(i))", TC_FLOAT64);
  check_type("bool(A(i))", TC_BOOL);
  check_type("A(i) < 2", TC_BOOL);
  check_type("P(i) && A(i) > 0 || !P(i)", TC_BOOL);
  check_type("P(i) == P(i)", TC_BOOL);
  check_type("P(i) ? A(i) : 2.5", TC_FLOAT32);
  check_type("P(i) ? 1 : 0", TC_INT32);
  check_type("P(i) ? P(i) : A(i) > 0", TC_BOOL);
  check_type("P(i)", TC_BOOL);
  check_type("i + N", TC_INT32);
  check_type("L(i) * i", TC_INT64);
  check_type("A(i) / A(i)", TC_INT8);
  check_type("D(A(i))", TC_FLOAT64);
  check_type("F(L(i) + U(i))", TC_FLOAT32);
}

TEST(sema_resolved_kinds) {
  Checked C;
  Def *d = ok(&C, "def f(float(N) A) -> (O) {\n"
                  "  O(i) = min(A(i), 1.0) + max(i, N) + fabs(A(i)) + int8(i) + (i > 0 ? 1 : 2)\n"
                  "}\n");
  if (!d)
    return;
  CHECK_STR(show(d->stmts[0]->rhs),
            "((((min(A(i), 1.0) + max(i, N)) + fabs(A(i))) + int8(i)) + ((i > 0) ? 1 : 2))");
  Expr *e = d->stmts[0]->rhs->a->a->a->a; /* min */
  CHECK_INT(e->kind, EX_BINARY);
  CHECK_INT(e->op, OP_MIN);
  CHECK_INT(e->type, TC_FLOAT32);
  CHECK_INT(e->b->kind, EX_FLOAT);
  Expr *mx = d->stmts[0]->rhs->a->a->a->b;
  CHECK_INT(mx->op, OP_MAX);
  CHECK_INT(mx->a->kind, EX_INDEX);
  CHECK_INT(mx->b->kind, EX_SIZE);
  CHECK_INT(d->stmts[0]->rhs->a->b->kind, EX_CAST);
  CHECK_INT(d->stmts[0]->rhs->a->b->type, TC_INT8);
  CHECK_INT(d->stmts[0]->rhs->b->kind, EX_SELECT);
  CHECK_INT(d->stmts[0]->rhs->b->a->type, TC_BOOL);
  arena_free(&C.arena);
}

TEST(sema_init_and_first_def) {
  Checked C;
  Def *d = ok(&C, "def f(float(N,K) A) -> (O, P) {\n"
                  "  O(i) +=! A(i,k)\n"
                  "  O(i) += A(i,k)\n"
                  "  P(i) = 0.0\n"
                  "  P(i) +=! A(i,k)\n"
                  "  T(i) max= A(i,k)\n"
                  "  P(i) = P(i) + T(i)\n"
                  "  U(i) *= A(i,k)\n"
                  "  O(i) min=! U(i) where i in 0:N\n"
                  "}\n");
  if (!d)
    return;
  Stmt **s = d->stmts;
  CHECK(s[0]->first_def && s[0]->init && s[0]->bang);
  CHECK(!s[1]->first_def && !s[1]->init);
  CHECK(s[2]->first_def && !s[2]->init);
  CHECK(!s[3]->first_def && !s[3]->init && s[3]->bang);
  CHECK(s[4]->first_def && s[4]->init && !s[4]->bang); /* tensorc's choice */
  CHECK_INT(s[4]->op, RED_MAX);
  CHECK(!s[5]->first_def && !s[5]->init);
  CHECK_INT(s[5]->rhs->a->kind, EX_ACCESS); /* pointwise read of its own lhs */
  CHECK(s[5]->rhs->a->tensor == s[5]->lhs);
  CHECK(s[6]->first_def && s[6]->init);
  CHECK_INT(s[6]->op, RED_MUL);
  CHECK(!s[7]->first_def && !s[7]->init);
  CHECK_STR(vars(s[7]), "i(w)");
  CHECK_INT(d->ntemps, 2);
  CHECK(d->tensors[0]->def == NULL);
  CHECK(d->tensors[3]->def == s[4]);
  /* P(i) = 0.0 fixed P's type as float32; later float rhs is fine */
  CHECK_INT(d->tensors[2]->dtype, TC_FLOAT32);
  arena_free(&C.arena);
}

TEST(sema_lets_and_exists) {
  Checked C;
  Def *d = ok(&C, "def f(float(N,K) A, float(N) B) -> (O, P, Q) {\n"
                  "  O(i) +=! B(j) * x where x = A(i,k), y = A(q, q)\n"
                  "  P(i) +=! 1.0 where exists A(i, k)\n"
                  "  Q(i) +=! z * z where t = i + 1, z = B(t) * 2, j in 0:N, exists B(j)\n"
                  "}\n");
  if (!d)
    return;
  Stmt *s = d->stmts[0];
  CHECK_STR(vars(s), "i j(r) k(r)"); /* q only in the unused let y */
  CHECK_STR(show(s->rhs), "(B(j) * A(i, k))");
  CHECK_INT(s->rhs->b->args[1]->var->loc.col, 35);
  CHECK(s->rhs->b != s->wheres[0].e); /* inlined as a copy */
  CHECK_STR(vars(d->stmts[1]), "i k(r)");
  CHECK_INT(d->stmts[1]->nexists, 1);
  CHECK_STR(show(d->stmts[1]->exists[0]), "A(i, k)");
  Stmt *q = d->stmts[2];
  CHECK_STR(show(q->rhs), "((B((i + 1)) * 2) * (B((i + 1)) * 2))");
  CHECK_STR(vars(q), "i j(r)(w)");
  CHECK_INT(q->rhs->type, TC_FLOAT32);
  arena_free(&C.arena);
  /* a var that appears only in exists is a reduction var: '=' rejects it */
  check_src(&C, "def f(float(N,K) A) -> (O) {\n  O(i) = 1 where exists A(i, k)\n}\n");
  CHECK_INT(C.status, TC_ERR_PROGRAM);
  CHECK_INT(C.err.col, 30);
  arena_free(&C.arena);
}

TEST(sema_where_bounds) {
  Checked C;
  Def *d = ok(&C, "def f(float(N,M) A) -> (O) {\n"
                  "  O(i, j) = A(i, j) where i in 1:N-1, j in max(0, M/2 - 1):min(M, 2*N) % 7\n"
                  "}\n");
  if (!d)
    return;
  Where *w = d->stmts[0]->wheres;
  CHECK_INT(w[0].hi->kind, EX_BINARY);
  CHECK_INT(w[0].hi->a->kind, EX_SIZE);
  CHECK_INT(w[1].lo->op, OP_MAX);
  CHECK_STR(show(w[1].hi), "(min(M, (2 * N)) % 7)");
  CHECK_INT(w[1].hi->type, TC_INT32);
  CHECK_STR(vars(d->stmts[0]), "i(w) j(w)");
  arena_free(&C.arena);
}

TEST(sema_rank0_and_boundary_program) {
  Checked C;
  Def *d = ok(&C, "def blur(float(H,W) I : clamp, float alpha) -> (O, total) {\n"
                  "  O(y,x) = alpha * (I(y-1,x) + I(y,x) + I(y+1,x)) / 3.0 where y in 0:H, x in 0:W\n"
                  "  total +=! O(y, x)\n"
                  "  total = total * 2\n"
                  "}\n");
  if (!d)
    return;
  CHECK_STR(vars(d->stmts[0]), "y(w) x(w)");
  CHECK_STR(vars(d->stmts[1]), "y(r) x(r)");
  CHECK_INT(d->tensors[3]->rank, 0);
  CHECK(d->stmts[2]->rhs->a->tensor == d->tensors[3]);
  arena_free(&C.arena);
}

/* Expects a semantic error with exactly `msg` at line:col. */
static void check_error(const char *src, int line, int col, const char *msg) {
  Checked C;
  check_src(&C, src);
  CHECK_INT(C.status, TC_ERR_PROGRAM);
  CHECK_INT(C.err.line, line);
  CHECK_INT(C.err.col, col);
  CHECK_STR(C.err.message, msg);
  if (C.err.line != line || C.err.col != col)
    fprintf(stderr, "  in: %s\n", src);
  arena_free(&C.arena);
}

#define HDR "def f(float(N) A, int32(N) I, bool(N) P) -> (O) {\n"

TEST(sema_errors_names) {
  check_error("def f(float(N) A) -> (B) { B(i) = A(i) }\ndef f(float(N) A) -> (B) { B(i) = A(i) }",
              2, 1, "duplicate definition 'f' (the first is at 1:1)");
  check_error("def f(float(N) A, float(N) A) -> (O) { O(i) = 1 }", 1, 28,
              "duplicate parameter 'A'");
  check_error("def f(float(N) A) -> (O, O) { O(i) = 1 }", 1, 26, "duplicate output 'O'");
  check_error("def f(float(N) A) -> (A) { A(i) = 1 }", 1, 23, "'A' is both an input and an output");
  check_error("def f(float(N) A) -> (O, C) {\n  O(i) = A(i)\n}", 1, 26,
              "output 'C' is never defined");
  check_error("def f(float(N) A) -> (int32(P) O) { O(i) = 1 }", 1, 29,
              "size symbol 'P' of output 'O' is not bound by any input");
  check_error("def f(float(N) N) -> (O) { O(i) = 1 }", 1, 16,
              "'N' is both a size symbol and a tensor");
  check_error("def f(float(N) exp) -> (O) { O(i) = 1 }", 1, 16,
              "'exp' is a builtin function and cannot name a tensor");
  check_error("def f(float(N) A) -> (int32) { int32(i) = 1 }", 1, 23,
              "'int32' is a type name and cannot name a tensor");
  check_error(HDR "  O(i) = A(i)\n  A(i) = 1\n}", 3, 3, "cannot assign to input 'A'");
  check_error(HDR "  N(i) = A(i)\n}", 2, 3, "cannot assign to size symbol 'N'");
  check_error(HDR "  max(i) = A(i)\n}", 2, 3, "'max' is a builtin function and cannot name a tensor");
  check_error(HDR "  O(i, i) = A(i)\n}", 2, 8, "index 'i' appears twice on the left-hand side");
  check_error(HDR "  O(N) = A(0)\n}", 2, 5, "'N' is a size symbol and cannot be a left-hand index");
  check_error(HDR "  O(A) = 1\n}", 2, 5, "'A' is a tensor and cannot be a left-hand index");
  check_error(HDR "  O(i) = A(i)\n  O(i, j) = A(i)\n}", 3, 3,
              "'O' has rank 1 (from its first definition) but is written here with 2 indices");
  check_error("def f(float(N) A) -> (float(N, N) O) {\n  O(i) = A(i)\n}", 2, 3,
              "'O' has rank 2 (declared) but is written here with 1 index");
  check_error(HDR "  O(a,b,c,d,e,f,g,h,k) = 1\n}", 2, 3,
              "'O' is written with 9 indices; tensors have at most 8 dimensions");
  check_error(HDR "  O(i) = foo(i)\n}", 2, 10, "unknown function or tensor 'foo'");
  check_error(HDR "  O(i) = T(i)\n  T(i) = A(i)\n}", 2, 10, "'T' is read before it is defined");
  check_error(HDR "  O(i) += O(i) + A(i)\n}", 2, 11, "'O' is read before it is defined");
  check_error(HDR "  O(i) = 1\n  O(i) = O(i+1)\n}", 3, 10,
              "a statement may read the tensor it writes only pointwise: 'O' is read here, but "
              "only '=' reading it at exactly the left-hand indices is allowed");
  check_error(HDR "  O(i) = 1\n  O(i) += O(i)\n}", 3, 11,
              "a statement may read the tensor it writes only pointwise: 'O' is read here, but "
              "only '=' reading it at exactly the left-hand indices is allowed");
  check_error(HDR "  O(i) = A(i, i)\n}", 2, 10, "'A' has rank 1 but is read with 2 subscripts");
  check_error(HDR "  O(i) = A\n}", 2, 10, "'A' has rank 1 but is read with 0 subscripts");
  check_error(HDR "  O(i) = i(3)\n}", 2, 10, "'i' is an index, not a tensor or function");
  check_error(HDR "  O(i) = N(3)\n}", 2, 10, "'N' is a size symbol, not a tensor or function");
  check_error(HDR "  O(i) = exp\n}", 2, 10,
              "'exp' is a builtin function, not a value: call it as exp(...)");
  check_error(HDR "  O(i) = pow(A(i))\n}", 2, 10, "'pow' takes 2 arguments, got 1");
  check_error(HDR "  O(i) = min(A(i), 1, 2)\n}", 2, 10, "'min' takes 2 arguments, got 3");
  check_error(HDR "  O(i) = int32(A(i), 1)\n}", 2, 10,
              "a cast to int32 takes exactly one argument, got 2");
}

TEST(sema_errors_rules) {
  check_error(HDR "  O(i) = A(k)\n}", 2, 12,
              "index 'k' appears only on the right-hand side, so it is a reduction index, but "
              "'=' does not reduce: use '+=!' (or another reduction)");
  check_error(HDR "  O(i) = A(i) where q in 0:N\n}", 2, 21,
              "'q' in where clause is not an index of this statement");
  check_error(HDR "  O(i) = A(i) where x = A(q), q in 0:N\n}", 2, 31,
              "'q' in where clause is not an index of this statement");
  check_error(HDR "  O(i) = A(i) where i in 0:N, i in 0:N\n}", 2, 31,
              "index 'i' has more than one where range");
  check_error(HDR "  O(i) = A(i) where i in 0:A(0)\n}", 2, 28,
              "a where range bound cannot read tensors or call functions ('A')");
  check_error(HDR "  O(i) +=! A(k) where k in 0:i\n}", 2, 30,
              "'i' cannot appear in a where range bound: bounds may use only integer constants "
              "and size symbols");
  check_error(HDR "  O(i) = A(i) where i in 0:N/2.0\n}", 2, 30,
              "a where range bound must be an integer expression of constants and size symbols");
  check_error(HDR "  O(i) = A(i) where i in 0:N > 1\n}", 2, 30,
              "a where range bound must be an integer expression of constants and size symbols");
  check_error(HDR "  O(i) = x where x = y, y = A(i)\n}", 2, 22,
              "where let 'y' is used before its definition (a let may only use earlier lets)");
  check_error(HDR "  O(i) = x where x = x + 1\n}", 2, 22,
              "where let 'x' is used in its own definition");
  check_error(HDR "  O(i) = A(i) where x = 1, x = 2\n}", 2, 28,
              "where let 'x' has the name of another where let");
  check_error(HDR "  O(i) = A(i) where i = 1\n}", 2, 21,
              "where let 'i' has the name of a left-hand index");
  check_error(HDR "  O(i) = A(i) where N = 1\n}", 2, 21, "where let 'N' has the name of a size symbol");
  check_error(HDR "  O(i) = A(i) where A = 1\n}", 2, 21, "where let 'A' has the name of a tensor");
}

TEST(sema_errors_types) {
  check_error("def f(float(N) A) -> (int32(N) O) {\n  O(i) = A(i)\n}", 2, 3,
              "cannot assign float32 to int32 tensor 'O' without a cast");
  check_error("def f(int8(N) A) -> (O) {\n  O(i) = A(i)\n  O(i) = O(i) + 1\n}", 3, 3,
              "cannot assign int32 to int8 tensor 'O' without a cast");
  check_error("def f(double(N) A) -> (float16(N) O) {\n  O(i) = float(A(i))\n}", 2, 3,
              "cannot assign float32 to float16 tensor 'O' without a cast");
  check_error(HDR "  O(i) = A(2.0)\n}", 2, 12, "subscript must be an integer, got float32");
  check_error(HDR "  O(i) = A(P(i))\n}", 2, 12, "subscript must be an integer, got bool");
  check_error(HDR "  O(i) = A(i) > 0 && 1\n}", 2, 19, "'&&' needs bool operands, got int32");
  check_error(HDR "  O(i) = I(i) || P(i)\n}", 2, 15, "'||' needs bool operands, got int32");
  check_error(HDR "  O(i) = (A(i) > 0) + 1\n}", 2, 21, "arithmetic on bool: '+' needs numeric operands");
  check_error(HDR "  O(i) = P(i) * P(i)\n}", 2, 15, "arithmetic on bool: '*' needs numeric operands");
  check_error(HDR "  O(i) = -P(i)\n}", 2, 10, "arithmetic on bool: unary '-' needs a numeric operand");
  check_error(HDR "  O(i) = !A(i)\n}", 2, 10, "'!' needs a bool operand, got float32");
  check_error(HDR "  O(i) = A(i) ? 1 : 2\n}", 2, 10, "the condition of '?:' must be bool, got float32");
  check_error(HDR "  O(i) +=! A(k) > 0\n}", 2, 3, "cannot reduce with '+=!' into bool tensor 'O'");
  check_error("def f(float(N) A) -> (bool(N) O) {\n  O(i) max= P(i, k)\n}", 2, 13,
              "unknown function or tensor 'P'");
  check_error("def f(bool(N,K) P) -> (bool(N) O) {\n  O(i) max= P(i, k)\n}", 2, 3,
              "cannot reduce with 'max=' into bool tensor 'O'");
}

TEST(sema_inlining_limits) {
  /* x0 = A(i), x1 = x0 + x0, ...: doubling lets are refused, not expanded */
  static char src[16384];
  int n = snprintf(src, sizeof src, "def f(float(N) A) -> (O) {\n  O(i) = x60 where x0 = A(i)");
  for (int k = 1; k <= 60; k++)
    n += snprintf(src + n, sizeof src - (size_t)n, ", x%d = x%d + x%d", k, k - 1, k - 1);
  snprintf(src + n, sizeof src - (size_t)n, "\n}\n");
  Checked C;
  check_src(&C, src);
  CHECK_INT(C.status, TC_ERR_PROGRAM);
  CHECK_STR(C.err.message, "expression too large after inlining where lets");
  arena_free(&C.arena);
  /* each let nests the previous one 120 levels deeper: small, but too deep */
  n = snprintf(src, sizeof src, "def f(float(N) A) -> (O) {\n  O(i) = x5 where x0 = A(i)");
  for (int k = 1; k <= 5; k++) {
    n += snprintf(src + n, sizeof src - (size_t)n, ", x%d = ", k);
    for (int j = 0; j < 120; j++)
      n += snprintf(src + n, sizeof src - (size_t)n, "1+(");
    n += snprintf(src + n, sizeof src - (size_t)n, "x%d", k - 1);
    for (int j = 0; j < 120; j++)
      n += snprintf(src + n, sizeof src - (size_t)n, ")");
  }
  snprintf(src + n, sizeof src - (size_t)n, "\n}\n");
  check_src(&C, src);
  CHECK_INT(C.status, TC_ERR_PROGRAM);
  CHECK_STR(C.err.message, "expression nested too deeply after inlining where lets");
  arena_free(&C.arena);
}

RUN_TESTS()
