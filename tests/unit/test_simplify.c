/* test_simplify.c — the simplifier: constant folding with TC's semantics per
 * type, identities, canonical linear forms, floor division, min/max and
 * comparison proofs, statements, determinism, and randomized checks that
 * simplification never changes a value. */
#include "tc.h"
#include "unit.h"

#include <math.h>

typedef struct {
  Arena arena;
  jmp_buf jmp;
  tc_error err;
  Ctx c;
  SizeSym syms[4];
  IRVar *zv[4]; /* z_N, z_M, z_H, z_KH */
  IRVar *xi, *xj, *xh;
} T;

static Ctx *tctx(T *t) {
  static const char *names[4] = {"z_N", "z_M", "z_H", "z_KH"};
  memset(t, 0, sizeof *t);
  t->c.arena = &t->arena;
  t->c.err = &t->err;
  t->c.jmp = &t->jmp;
  for (int i = 0; i < 4; i++) {
    t->syms[i].id = i;
    t->syms[i].name = names[i] + 2;
    t->zv[i] = ir_new_var(&t->c, names[i], VAR_SIZE, TC_INT64);
    t->zv[i]->sym = &t->syms[i];
  }
  t->xi = ir_new_var(&t->c, "x_i", VAR_LOOP, TC_INT64);
  t->xj = ir_new_var(&t->c, "x_j", VAR_LOOP, TC_INT64);
  t->xh = ir_new_var(&t->c, "x_h", VAR_LOOP, TC_INT64);
  return &t->c;
}

static char outbuf[8192]; /* test-only scratch */

static const char *ps(Ctx *c, IRExpr *e) {
  Buf b = {0};
  ir_print_expr(&b, simplify_expr(c, e));
  snprintf(outbuf, sizeof outbuf, "%s", b.s ? b.s : "");
  buf_free(&b);
  return outbuf;
}

static const char *pstmt(Ctx *c, IRStmt *s) {
  Buf b = {0};
  ir_print_stmt(&b, simplify_stmt(c, s), 0);
  snprintf(outbuf, sizeof outbuf, "%s", b.s ? b.s : "");
  buf_free(&b);
  return outbuf;
}

#define I64(v) ir_i64(c, (v))
#define V(x) ir_var(c, (x))
#define BIN(op, a, b) ir_bin(c, (op), (a), (b))
#define ADD(a, b) BIN(OP_ADD, a, b)
#define SUB(a, b) BIN(OP_SUB, a, b)
#define MUL(a, b) BIN(OP_MUL, a, b)
#define DIV(a, b) BIN(OP_DIV, a, b)
#define MOD(a, b) BIN(OP_MOD, a, b)

static bool sconst(Ctx *c, IRExpr *e, int64_t *v) { return ir_is_const(simplify_expr(c, e), v); }

TEST(fold_integers_per_type) {
  T t;
  Ctx *c = tctx(&t);
  int64_t v;
  CHECK(sconst(c, BIN(OP_ADD, ir_int(c, TC_INT8, 127), ir_int(c, TC_INT8, 1)), &v) && v == -128);
  CHECK(sconst(c, BIN(OP_ADD, ir_int(c, TC_UINT8, 200), ir_int(c, TC_UINT8, 100)), &v) && v == 44);
  CHECK(sconst(c, BIN(OP_SUB, ir_int(c, TC_UINT16, 0), ir_int(c, TC_UINT16, 1)), &v) && v == 65535);
  CHECK(sconst(c, BIN(OP_MUL, ir_int(c, TC_INT32, 65536), ir_int(c, TC_INT32, 65536)), &v) && v == 0);
  CHECK(sconst(c, BIN(OP_DIV, ir_int(c, TC_INT32, -7), ir_int(c, TC_INT32, 2)), &v) && v == -4);
  CHECK(sconst(c, BIN(OP_MOD, ir_int(c, TC_INT32, -7), ir_int(c, TC_INT32, 2)), &v) && v == 1);
  CHECK(sconst(c, BIN(OP_DIV, ir_int(c, TC_INT32, 5), ir_int(c, TC_INT32, 0)), &v) && v == 0);
  CHECK(sconst(c, BIN(OP_MOD, ir_int(c, TC_INT16, 5), ir_int(c, TC_INT16, 0)), &v) && v == 0);
  CHECK(sconst(c, BIN(OP_DIV, ir_int(c, TC_INT32, INT32_MIN), ir_int(c, TC_INT32, -1)), &v) && v == INT32_MIN);
  CHECK(sconst(c, BIN(OP_DIV, ir_int(c, TC_UINT64, -1), ir_int(c, TC_UINT64, 16)), &v) &&
        (uint64_t)v == UINT64_MAX / 16);
  CHECK(sconst(c, BIN(OP_LT, ir_int(c, TC_UINT64, -1), ir_int(c, TC_UINT64, 0)), &v) && v == 0);
  CHECK(sconst(c, BIN(OP_MAX, ir_int(c, TC_INT8, -3), ir_int(c, TC_INT8, 2)), &v) && v == 2);
  CHECK(sconst(c, ir_un(c, OP_NEG, ir_int(c, TC_INT8, -128)), &v) && v == -128);
  CHECK(sconst(c, ir_un(c, OP_NOT, BIN(OP_LT, I64(1), I64(2))), &v) && v == 0);
  /* mixed types promote first: uint8 200 + int32 100 is int32 300 */
  CHECK(sconst(c, BIN(OP_ADD, ir_int(c, TC_UINT8, 200), ir_int(c, TC_INT32, 100)), &v) && v == 300);
  CHECK_INT(simplify_expr(c, BIN(OP_ADD, ir_int(c, TC_UINT8, 200), ir_int(c, TC_INT32, 100)))->type, TC_INT32);
  arena_free(&t.arena);
}

TEST(fold_floats_exactly) {
  T t;
  Ctx *c = tctx(&t);
  IRExpr *r = simplify_expr(c, ADD(ir_float(c, TC_FLOAT32, 0.1), ir_float(c, TC_FLOAT32, 0.2)));
  float f = 0.1f, g = 0.2f;
  volatile float sum = f + g;
  CHECK(r->kind == IR_FLOAT && r->type == TC_FLOAT32 && r->fval == (double)sum);
  r = simplify_expr(c, ADD(ir_float(c, TC_FLOAT64, 0.1), ir_float(c, TC_FLOAT64, 0.2)));
  CHECK(r->kind == IR_FLOAT && r->fval == 0.1 + 0.2);
  r = simplify_expr(c, DIV(ir_float(c, TC_FLOAT32, 1), ir_float(c, TC_FLOAT32, 3)));
  CHECK(r->kind == IR_FLOAT && r->fval == (double)(1.0f / 3.0f));
  r = simplify_expr(c, DIV(ir_float(c, TC_FLOAT32, 1), ir_float(c, TC_FLOAT32, 0)));
  CHECK(r->kind == IR_FLOAT && isinf(r->fval));
  /* not folded: float16 arithmetic, float %, mixed types, builtins */
  CHECK(simplify_expr(c, ADD(ir_float(c, TC_FLOAT16, 1), ir_float(c, TC_FLOAT16, 2)))->kind == IR_BIN);
  CHECK(simplify_expr(c, MOD(ir_float(c, TC_FLOAT32, 5), ir_float(c, TC_FLOAT32, 3)))->kind == IR_BIN);
  CHECK(simplify_expr(c, ADD(ir_float(c, TC_FLOAT32, 1), ir_float(c, TC_FLOAT64, 2)))->kind == IR_BIN);
  IRExpr *arg = ir_float(c, TC_FLOAT32, 1);
  CHECK(simplify_expr(c, ir_call(c, TC_FLOAT32, BI_exp, &arg, 1))->kind == IR_CALL);
  /* NaN-propagating min/max; -0 vs +0 left alone */
  r = simplify_expr(c, BIN(OP_MIN, ir_float(c, TC_FLOAT32, NAN), ir_float(c, TC_FLOAT32, 1)));
  CHECK(r->kind == IR_FLOAT && isnan(r->fval));
  r = simplify_expr(c, BIN(OP_MAX, ir_float(c, TC_FLOAT32, 1), ir_float(c, TC_FLOAT32, NAN)));
  CHECK(r->kind == IR_FLOAT && isnan(r->fval));
  r = simplify_expr(c, BIN(OP_MAX, ir_float(c, TC_FLOAT64, -1), ir_float(c, TC_FLOAT64, 2)));
  CHECK(r->kind == IR_FLOAT && r->fval == 2);
  CHECK(simplify_expr(c, BIN(OP_MIN, ir_float(c, TC_FLOAT32, -0.0), ir_float(c, TC_FLOAT32, 0.0)))->kind == IR_BIN);
  /* comparisons */
  int64_t v;
  CHECK(sconst(c, BIN(OP_EQ, ir_float(c, TC_FLOAT32, NAN), ir_float(c, TC_FLOAT32, NAN)), &v) && v == 0);
  CHECK(sconst(c, BIN(OP_LT, ir_float(c, TC_FLOAT64, 1), ir_float(c, TC_FLOAT64, 2)), &v) && v == 1);
  CHECK_STR(ps(c, ir_un(c, OP_NEG, ir_float(c, TC_FLOAT32, 1.5))), "-1.5f");
  arena_free(&t.arena);
}

TEST(fold_casts) {
  T t;
  Ctx *c = tctx(&t);
  int64_t v;
  CHECK(sconst(c, ir_cast(c, TC_INT32, ir_float(c, TC_FLOAT32, -3.7)), &v) && v == -3);
  CHECK(sconst(c, ir_cast(c, TC_INT8, ir_float(c, TC_FLOAT32, 1000)), &v) && v == 127);
  CHECK(sconst(c, ir_cast(c, TC_UINT8, ir_float(c, TC_FLOAT32, -5)), &v) && v == 0);
  CHECK(sconst(c, ir_cast(c, TC_INT32, ir_float(c, TC_FLOAT64, NAN)), &v) && v == 0);
  CHECK(sconst(c, ir_cast(c, TC_INT64, ir_float(c, TC_FLOAT64, 1e30)), &v) && v == INT64_MAX);
  CHECK(sconst(c, ir_cast(c, TC_UINT64, ir_float(c, TC_FLOAT64, 1e30)), &v) && v == -1);
  CHECK(sconst(c, ir_cast(c, TC_BOOL, ir_float(c, TC_FLOAT32, 0.5)), &v) && v == 1);
  CHECK(sconst(c, ir_cast(c, TC_INT8, ir_int(c, TC_INT32, 300)), &v) && v == 44);
  CHECK(sconst(c, ir_cast(c, TC_BOOL, ir_int(c, TC_INT32, -2)), &v) && v == 1);
  IRExpr *r = simplify_expr(c, ir_cast(c, TC_FLOAT32, ir_int(c, TC_INT32, 16777217)));
  CHECK(r->kind == IR_FLOAT && r->fval == 16777216.0);
  r = simplify_expr(c, ir_cast(c, TC_FLOAT32, ir_float(c, TC_FLOAT64, 0.1)));
  CHECK(r->kind == IR_FLOAT && r->fval == (double)0.1f);
  CHECK(simplify_expr(c, ir_cast(c, TC_FLOAT16, ir_float(c, TC_FLOAT32, 0.1)))->kind == IR_CAST);
  /* int32 -> int64 -> int32 is the identity; int64 -> int32 -> int64 is not */
  IRExpr *x32 = ir_var(c, ir_new_var(c, "v", VAR_LOCAL, TC_INT32));
  CHECK(simplify_expr(c, ir_cast(c, TC_INT32, ir_cast(c, TC_INT64, x32))) == x32);
  CHECK(simplify_expr(c, ir_cast(c, TC_INT64, ir_cast(c, TC_INT32, V(t.xi))))->kind == IR_CAST);
  arena_free(&t.arena);
}

TEST(identities) {
  T t;
  Ctx *c = tctx(&t);
  IRExpr *n = V(t.zv[0]);
  IRExpr *f = ir_var(c, ir_new_var(c, "acc", VAR_LOCAL, TC_FLOAT32));
  IRExpr *cond = BIN(OP_LT, V(t.xi), n);
  CHECK(simplify_expr(c, ADD(n, I64(0))) == n);
  CHECK(simplify_expr(c, MUL(I64(1), n)) == n);
  CHECK_STR(ps(c, MUL(n, I64(0))), "0");
  CHECK_STR(ps(c, SUB(n, n)), "0");
  CHECK(simplify_expr(c, DIV(n, I64(1))) == n);
  CHECK_STR(ps(c, MOD(n, I64(1))), "0");
  CHECK_STR(ps(c, DIV(n, I64(0))), "0");
  /* floats: x * 1 and x - 0 are exact; x * 0, x + 0 and x - x are not identities */
  CHECK(simplify_expr(c, MUL(f, ir_float(c, TC_FLOAT32, 1))) == f);
  CHECK(simplify_expr(c, SUB(f, ir_float(c, TC_FLOAT32, 0))) == f);
  CHECK_STR(ps(c, MUL(f, ir_float(c, TC_FLOAT32, 0))), "acc * 0.0f");
  CHECK_STR(ps(c, ADD(f, ir_float(c, TC_FLOAT32, 0))), "acc + 0.0f");
  CHECK_STR(ps(c, SUB(f, f)), "acc - acc");
  /* int32 + int64 0: the int32 operand widened */
  IRExpr *x32 = ir_var(c, ir_new_var(c, "v", VAR_LOCAL, TC_INT32));
  CHECK_STR(ps(c, ADD(x32, I64(0))), "int64(v)");
  /* select and logic */
  CHECK(simplify_expr(c, ir_select(c, ir_int(c, TC_BOOL, 1), f, ir_float(c, TC_FLOAT32, 2))) == f);
  CHECK_STR(ps(c, ir_select(c, ir_int(c, TC_BOOL, 0), f, ir_float(c, TC_FLOAT32, 2))), "2.0f");
  CHECK(simplify_expr(c, ir_select(c, cond, f, f)) == f);
  CHECK(simplify_expr(c, BIN(OP_AND, ir_int(c, TC_BOOL, 1), cond)) == cond);
  CHECK(simplify_expr(c, BIN(OP_OR, cond, ir_int(c, TC_BOOL, 0))) == cond);
  CHECK_STR(ps(c, BIN(OP_OR, cond, ir_int(c, TC_BOOL, 1))), "true");
  CHECK(simplify_expr(c, ir_un(c, OP_NOT, ir_un(c, OP_NOT, cond))) == cond);
  CHECK(simplify_expr(c, ir_un(c, OP_NEG, ir_un(c, OP_NEG, f))) == f);
  arena_free(&t.arena);
}

TEST(failures_are_never_dropped) {
  T t;
  Ctx *c = tctx(&t);
  IRExpr *n = V(t.zv[0]);
  IRExpr *fl = ir_fail(c, TC_INT64, 3, V(t.xi), n);
  IRExpr *bfl = ir_fail(c, TC_BOOL, 4, V(t.xi), n);
  CHECK_STR(ps(c, MUL(fl, I64(0))), "fail#3(x_i, z_N) * 0");
  CHECK(strstr(ps(c, SUB(fl, fl)), "fail#3") != NULL);
  CHECK_STR(ps(c, BIN(OP_AND, bfl, ir_int(c, TC_BOOL, 0))), "fail#4(x_i, z_N) && false");
  /* the right operand of a short-circuited && is never evaluated */
  CHECK_STR(ps(c, BIN(OP_AND, ir_int(c, TC_BOOL, 0), bfl)), "false");
  /* the untaken arm of a select is never evaluated */
  CHECK_STR(ps(c, ir_select(c, ir_int(c, TC_BOOL, 1), V(t.xi), fl)), "x_i");
  CHECK(strstr(ps(c, ir_select(c, bfl, V(t.xi), V(t.xi))), "fail#4") != NULL);
  /* a check whose condition can fail stays */
  IRStmt *chk = ir_check(c, BIN(OP_LT, I64(3), I64(2)), ir_fail(c, TC_INT32, 0, I64(3), I64(2)));
  CHECK_STR(pstmt(c, chk), "check false else fail#0(3, 2)\n");
  arena_free(&t.arena);
}

TEST(linear_forms) {
  T t;
  Ctx *c = tctx(&t);
  IRExpr *N = V(t.zv[0]), *M = V(t.zv[1]), *H = V(t.zv[2]), *KH = V(t.zv[3]);
  IRExpr *i = V(t.xi), *j = V(t.xj);
  CHECK_STR(ps(c, SUB(SUB(H, I64(1)), SUB(KH, I64(1)))), "z_H - z_KH");
  CHECK_STR(ps(c, SUB(ADD(i, I64(1)), I64(1))), "x_i");
  CHECK_STR(ps(c, SUB(SUB(N, I64(1)), i)), "z_N - x_i - 1");
  CHECK_STR(ps(c, SUB(MUL(I64(2), ADD(i, I64(3))), i)), "x_i + 6");
  CHECK_STR(ps(c, ADD(SUB(N, M), I64(1))), "z_N - z_M + 1");
  CHECK_STR(ps(c, SUB(I64(3), N)), "3 - z_N");
  CHECK_STR(ps(c, SUB(ir_un(c, OP_NEG, N), M)), "-z_M - z_N");
  CHECK_STR(ps(c, ADD(MUL(j, I64(3)), MUL(I64(-2), i))), "3 * x_j - 2 * x_i");
  CHECK_STR(ps(c, ADD(ADD(N, i), ADD(j, N))), "x_i + x_j + 2 * z_N");
  /* non-linear parts are atoms */
  CHECK_STR(ps(c, SUB(ADD(MUL(i, N), I64(1)), MUL(i, N))), "1");
  CHECK_STR(ps(c, ADD(MUL(N, M), MUL(M, N))), "2 * (z_M * z_N)");
  /* int32 wraps: still exact as arithmetic modulo 2^32 */
  IRExpr *v = ir_var(c, ir_new_var(c, "v", VAR_LOCAL, TC_INT32));
  CHECK_STR(ps(c, SUB(ADD(v, ir_int(c, TC_INT32, 5)), ir_int(c, TC_INT32, 5))), "v");
  arena_free(&t.arena);
}

TEST(linear_forms_are_deterministic) {
  T t1, t2;
  Ctx *c1 = tctx(&t1), *c2 = tctx(&t2);
  char a[256], b[256];
  Ctx *c = c1;
  /* built in different orders, over different (same-named) variables */
  IRExpr *e1 = ADD(ADD(V(t1.zv[2]), V(t1.xi)), SUB(V(t1.zv[0]), V(t1.xj)));
  snprintf(a, sizeof a, "%s", ps(c, e1));
  c = c2;
  IRExpr *e2 = SUB(ADD(V(t2.zv[0]), ADD(V(t2.xi), V(t2.zv[2]))), V(t2.xj));
  snprintf(b, sizeof b, "%s", ps(c, e2));
  CHECK_STR(a, b);
  CHECK_STR(a, "x_i + z_H + z_N - x_j");
  /* simplifying twice gives the same node */
  IRExpr *s1 = simplify_expr(c, e2);
  CHECK(simplify_expr(c, s1) == s1);
  arena_free(&t1.arena);
  arena_free(&t2.arena);
}

TEST(floor_division_of_linear_forms) {
  T t;
  Ctx *c = tctx(&t);
  IRExpr *H = V(t.zv[2]), *KH = V(t.zv[3]), *h = V(t.xh), *i = V(t.xi);
  CHECK_STR(ps(c, DIV(ADD(MUL(I64(2), h), I64(4)), I64(2))), "x_h + 2");
  CHECK_STR(ps(c, DIV(ADD(SUB(H, KH), I64(2)), I64(2))), "(z_H - z_KH) / 2 + 1");
  CHECK_STR(ps(c, DIV(ADD(MUL(I64(4), h), i), I64(2))), "2 * x_h + x_i / 2");
  CHECK_STR(ps(c, DIV(SUB(H, KH), I64(2))), "(z_H - z_KH) / 2");
  CHECK_STR(ps(c, DIV(DIV(H, I64(2)), I64(3))), "z_H / 6");
  CHECK_STR(ps(c, MOD(ADD(MUL(I64(2), h), I64(5)), I64(2))), "1");
  CHECK_STR(ps(c, MOD(ADD(MUL(I64(6), h), i), I64(3))), "x_i % 3");
  CHECK_STR(ps(c, DIV(ADD(h, I64(-3)), I64(2))), "(x_h + 1) / 2 - 2");
  arena_free(&t.arena);
}

TEST(min_max_and_comparisons_by_proof) {
  T t;
  Ctx *c = tctx(&t);
  IRExpr *N = V(t.zv[0]), *M = V(t.zv[1]), *i = V(t.xi);
  CHECK(simplify_expr(c, BIN(OP_MIN, N, ADD(N, I64(1)))) == N);
  CHECK_STR(ps(c, BIN(OP_MAX, SUB(N, I64(1)), N)), "z_N");
  CHECK_STR(ps(c, BIN(OP_MIN, N, I64(0))), "0");
  CHECK_STR(ps(c, BIN(OP_MAX, I64(0), N)), "z_N");
  CHECK_STR(ps(c, BIN(OP_MIN, N, M)), "min(z_M, z_N)");
  CHECK_STR(ps(c, BIN(OP_MAX, i, I64(0))), "max(x_i, 0)");
  IRExpr *mn = BIN(OP_MIN, N, M), *mx = BIN(OP_MAX, N, M);
  CHECK_STR(ps(c, BIN(OP_MIN, mn, N)), "min(z_M, z_N)");
  CHECK_STR(ps(c, BIN(OP_MAX, M, mx)), "max(z_M, z_N)");
  CHECK_STR(ps(c, BIN(OP_MIN, mn, mx)), "min(z_M, z_N)");
  CHECK_STR(ps(c, BIN(OP_LT, ADD(N, I64(1)), N)), "false");
  CHECK_STR(ps(c, BIN(OP_GT, ADD(N, I64(1)), N)), "true");
  CHECK_STR(ps(c, BIN(OP_LT, N, I64(0))), "false");
  CHECK_STR(ps(c, BIN(OP_GE, N, I64(0))), "true");
  CHECK_STR(ps(c, BIN(OP_LT, i, ADD(i, I64(1)))), "true");
  CHECK_STR(ps(c, BIN(OP_EQ, ADD(i, I64(2)), ADD(I64(1), ADD(i, I64(1))))), "true");
  CHECK_STR(ps(c, BIN(OP_NE, ADD(i, I64(2)), i)), "true");
  CHECK_STR(ps(c, BIN(OP_LE, N, M)), "z_N <= z_M");
  CHECK_STR(ps(c, BIN(OP_LE, mn, ADD(N, I64(2)))), "true");
  CHECK(simplify_prove_le(c, DIV(N, I64(2)), N));
  CHECK(simplify_prove_le(c, I64(0), DIV(N, I64(3))));
  CHECK(simplify_prove_le(c, SUB(N, I64(2)), MUL(I64(2), DIV(N, I64(2)))));
  CHECK(!simplify_prove_le(c, N, DIV(N, I64(2))));
  CHECK(!simplify_prove_le(c, I64(0), i));
  CHECK(!simplify_prove_le(c, N, M));
  CHECK(simplify_prove_le(c, I64(0), ir_cast(c, TC_INT64, ir_var(c, ir_new_var(c, "u", VAR_LOCAL, TC_UINT8)))));
  arena_free(&t.arena);
}

TEST(statements) {
  T t;
  Ctx *c = tctx(&t);
  IRExpr *N = V(t.zv[0]);
  Buffer B = {.name = "b_O", .dtype = TC_INT64, .rank = 1};
  IRExpr *ix[1] = {ADD(V(t.xi), I64(1))};
  IRStmt *st = ir_store(c, &B, ix, 1, MUL(V(t.xi), I64(2)));
  CHECK_STR(pstmt(c, ir_for(c, t.xi, I64(0), I64(0), FOR_SERIAL, st)), "");
  CHECK_STR(pstmt(c, ir_for(c, t.xi, I64(0), SUB(I64(2), I64(5)), FOR_PARALLEL, st)), "");
  CHECK_STR(pstmt(c, ir_for(c, t.xi, I64(3), SUB(N, SUB(N, I64(1))), FOR_SERIAL, st)), "b_O[4] = 6\n");
  CHECK_STR(pstmt(c, ir_for(c, t.xi, I64(0), SUB(ADD(N, I64(1)), I64(1)), FOR_VECTORIZED, st)),
            "for x_i in [0, z_N) vectorized {\n  b_O[x_i + 1] = 2 * x_i\n}\n");
  IRStmt *chk = ir_check(c, BIN(OP_LE, N, ADD(N, I64(1))), ir_fail(c, TC_INT32, 0, N, N));
  IRStmt *chk2 = ir_check(c, BIN(OP_LE, N, V(t.zv[1])), ir_fail(c, TC_INT32, 1, N, V(t.zv[1])));
  IRStmt *iff = ir_if(c, BIN(OP_GE, N, I64(0)), st, chk2);
  IRStmt *inner[2] = {chk, iff};
  IRStmt *outer[3] = {ir_block(c, inner, 2), chk2, ir_if(c, BIN(OP_LT, N, I64(0)), st, NULL)};
  CHECK_STR(pstmt(c, ir_block(c, outer, 3)),
            "b_O[x_i + 1] = 2 * x_i\ncheck z_N <= z_M else fail#1(z_N, z_M)\n");
  /* unchanged statements come back as the same node */
  IRStmt *keep = ir_for(c, t.xi, I64(0), N, FOR_SERIAL, chk2);
  CHECK(simplify_stmt(c, keep) == keep);
  arena_free(&t.arena);
}

/* ---- randomized: simplification preserves values ---- */

static uint64_t rng_next(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static IRExpr *rand_expr(Ctx *c, T *t, tc_dtype ty, uint64_t *s, int depth) {
  int r = (int)(rng_next(s) % (depth > 0 ? 13 : 3));
  if (r == 12) { /* through a narrower type and back */
    tc_dtype via = ty == TC_INT8 ? TC_INT64 : dtype_info[ty].is_signed ? TC_INT8 : TC_UINT8;
    return ir_cast(c, ty, ir_cast(c, via, rand_expr(c, t, ty, s, depth - 1)));
  }
  if (r == 0)
    return ir_int(c, ty, (int64_t)(rng_next(s) % 11) - 5);
  if (r <= 2) {
    IRExpr *v = ir_var(c, t->zv[rng_next(s) % 4]);
    return ty == TC_INT64 ? v : ir_cast(c, ty, v);
  }
  static const BinOp ops[] = {OP_ADD, OP_SUB, OP_MUL, OP_ADD, OP_SUB, OP_DIV, OP_MOD, OP_MIN, OP_MAX};
  if (r == 3)
    return ir_un(c, OP_NEG, rand_expr(c, t, ty, s, depth - 1));
  if (r == 4) {
    IRExpr *cond = ir_bin(c, rng_next(s) % 2 ? OP_LT : OP_LE, rand_expr(c, t, ty, s, depth - 1),
                          rand_expr(c, t, ty, s, depth - 1));
    return ir_select(c, cond, rand_expr(c, t, ty, s, depth - 1), rand_expr(c, t, ty, s, depth - 1));
  }
  BinOp op = ops[rng_next(s) % 9];
  IRExpr *a = rand_expr(c, t, ty, s, depth - 1);
  IRExpr *b = (op == OP_DIV || op == OP_MOD) && rng_next(s) % 3 ? ir_int(c, ty, (int64_t)(rng_next(s) % 7) - 1)
                                                               : rand_expr(c, t, ty, s, depth - 1);
  return ir_bin(c, op, a, b);
}

static void check_random(tc_dtype ty, int64_t maxsize, uint64_t seed) {
  T t;
  Ctx *c = tctx(&t);
  uint64_t s = seed;
  int bad = 0;
  for (int n = 0; n < 3000 && bad < 5; n++) {
    IRExpr *e = rand_expr(c, &t, ty, &s, 5);
    IRExpr *r = simplify_expr(c, e);
    for (int k = 0; k < 8; k++) {
      int64_t sizes[4], x, y;
      for (int q = 0; q < 4; q++)
        sizes[q] = (int64_t)(rng_next(&s) % (uint64_t)(maxsize + 1));
      bool ok1 = ir_eval_int(e, sizes, &x), ok2 = ir_eval_int(r, sizes, &y);
      if (!ok1 || !ok2 || x != y) {
        Buf b = {0};
        ir_print_expr(&b, e);
        buf_puts(&b, "  ==>  ");
        ir_print_expr(&b, r);
        fprintf(stderr, "mismatch (%s): %s: %lld vs %lld\n", dtype_info[ty].name, b.s, (long long)x,
                (long long)y);
        buf_free(&b);
        bad++;
        break;
      }
    }
  }
  CHECK_INT(bad, 0);
  arena_free(&t.arena);
}

TEST(random_int64_preserves_values) { check_random(TC_INT64, 40, 0x9e3779b97f4a7c15ull); }
TEST(random_int8_wraps_identically) { check_random(TC_INT8, 300, 0x1234567887654321ull); }
TEST(random_uint16_wraps_identically) { check_random(TC_UINT16, 70000, 0xdeadbeefcafef00dull); }

TEST(random_prove_le_is_sound) {
  T t;
  Ctx *c = tctx(&t);
  uint64_t s = 42;
  int proved = 0, bad = 0;
  for (int n = 0; n < 4000; n++) {
    IRExpr *a = rand_expr(c, &t, TC_INT64, &s, 3), *b = rand_expr(c, &t, TC_INT64, &s, 3);
    if (!simplify_prove_le(c, a, b))
      continue;
    proved++;
    for (int k = 0; k < 16; k++) {
      int64_t sizes[4], x, y;
      for (int q = 0; q < 4; q++)
        sizes[q] = (int64_t)(rng_next(&s) % 30);
      if (ir_eval_int(a, sizes, &x) && ir_eval_int(b, sizes, &y) && x > y) {
        bad++;
        break;
      }
    }
  }
  CHECK(proved > 100);
  CHECK_INT(bad, 0);
  arena_free(&t.arena);
}

RUN_TESTS()
