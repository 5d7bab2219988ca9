/* test_ir.c — IR constructors, constant canonicalisation, int64 helpers,
 * structural equality, mutators, the text printer and integer evaluation. */
#include "tc.h"
#include "unit.h"

#include <math.h>

typedef struct {
  Arena arena;
  jmp_buf jmp;
  tc_error err;
  Ctx c;
} T;

static Ctx *tctx(T *t) {
  memset(t, 0, sizeof *t);
  t->c.arena = &t->arena;
  t->c.err = &t->err;
  t->c.jmp = &t->jmp;
  return &t->c;
}

static char *pexpr(const IRExpr *e) {
  static char out[4096]; /* test-only scratch */
  Buf b = {0};
  ir_print_expr(&b, e);
  snprintf(out, sizeof out, "%s", b.s ? b.s : "");
  buf_free(&b);
  return out;
}

static IRVar *size_var(Ctx *c, const char *name, SizeSym *sym, int id) {
  sym->id = id;
  sym->name = name + 2;
  IRVar *v = ir_new_var(c, name, VAR_SIZE, TC_INT64);
  v->sym = sym;
  return v;
}

TEST(int_constants_are_wrapped) {
  T t;
  Ctx *c = tctx(&t);
  CHECK_INT(ir_int(c, TC_INT8, 200)->ival, -56);
  CHECK_INT(ir_int(c, TC_UINT8, -1)->ival, 255);
  CHECK_INT(ir_int(c, TC_INT16, 40000)->ival, 40000 - 65536);
  CHECK_INT(ir_int(c, TC_UINT32, -1)->ival, 4294967295LL);
  CHECK_INT(ir_int(c, TC_INT32, 2147483648LL)->ival, -2147483648LL);
  CHECK_INT(ir_int(c, TC_BOOL, 7)->ival, 1);
  CHECK_INT(ir_int(c, TC_UINT64, -1)->ival, -1);
  arena_free(&t.arena);
}

TEST(float32_constants_are_rounded) {
  T t;
  Ctx *c = tctx(&t);
  CHECK(ir_float(c, TC_FLOAT32, 0.1)->fval == (double)0.1f);
  CHECK(ir_float(c, TC_FLOAT64, 0.1)->fval == 0.1);
  CHECK_STR(pexpr(ir_float(c, TC_FLOAT32, 0.1)), "0.1f");
  CHECK_STR(pexpr(ir_float(c, TC_FLOAT64, 0.1)), "0.1");
  CHECK_STR(pexpr(ir_float(c, TC_FLOAT64, 2)), "2.0");
  CHECK_STR(pexpr(ir_float(c, TC_FLOAT32, 1e30)), "1e+30f");
  CHECK_STR(pexpr(ir_float(c, TC_FLOAT32, -INFINITY)), "-inff");
  arena_free(&t.arena);
}

TEST(binary_types) {
  T t;
  Ctx *c = tctx(&t);
  IRExpr *i32 = ir_int(c, TC_INT32, 1), *f32 = ir_float(c, TC_FLOAT32, 1);
  IRExpr *u8 = ir_int(c, TC_UINT8, 1), *f64 = ir_float(c, TC_FLOAT64, 1);
  CHECK_INT(ir_bin(c, OP_ADD, i32, f32)->type, TC_FLOAT32);
  CHECK_INT(ir_bin(c, OP_LT, i32, f32)->type, TC_BOOL);
  CHECK_INT(ir_bin(c, OP_AND, ir_bin(c, OP_LT, i32, i32), ir_bin(c, OP_EQ, i32, i32))->type, TC_BOOL);
  CHECK_INT(ir_bin(c, OP_MIN, u8, i32)->type, TC_INT32);
  CHECK_INT(ir_bin(c, OP_MAX, f32, f64)->type, TC_FLOAT64);
  CHECK_INT(ir_un(c, OP_NOT, ir_bin(c, OP_LT, i32, i32))->type, TC_BOOL);
  CHECK_INT(ir_un(c, OP_NEG, u8)->type, TC_UINT8);
  CHECK(ir_cast(c, TC_INT32, i32) == i32);
  CHECK_INT(ir_cast(c, TC_INT64, i32)->type, TC_INT64);
  CHECK_INT(ir_select(c, ir_bin(c, OP_LT, i32, i32), i32, f32)->type, TC_FLOAT32);
  arena_free(&t.arena);
}

TEST(int64_helpers_fold) {
  T t;
  Ctx *c = tctx(&t);
  SizeSym sn;
  IRExpr *n = ir_var(c, size_var(c, "z_N", &sn, 0));
  int64_t v;
  CHECK(ir_is_const(ir_add(c, ir_i64(c, 2), ir_i64(c, 3)), &v) && v == 5);
  CHECK(ir_add(c, n, ir_i64(c, 0)) == n);
  CHECK(ir_add(c, ir_i64(c, 0), n) == n);
  CHECK(ir_sub(c, n, ir_i64(c, 0)) == n);
  CHECK(ir_is_const(ir_sub(c, n, n), &v) && v == 0);
  CHECK(ir_mul(c, n, ir_i64(c, 1)) == n);
  CHECK(ir_is_const(ir_mul(c, ir_i64(c, 0), n), &v) && v == 0);
  CHECK(ir_is_const(ir_floordiv(c, ir_i64(c, -7), ir_i64(c, 2)), &v) && v == -4);
  CHECK(ir_is_const(ir_floordiv(c, ir_i64(c, 7), ir_i64(c, 0)), &v) && v == 0);
  CHECK(ir_floordiv(c, n, ir_i64(c, 1)) == n);
  CHECK(ir_is_const(ir_min(c, ir_i64(c, -1), ir_i64(c, 4)), &v) && v == -1);
  CHECK(ir_is_const(ir_max(c, ir_i64(c, -1), ir_i64(c, 4)), &v) && v == 4);
  CHECK(ir_min(c, n, n) == n);
  CHECK(ir_is_const(ir_add(c, ir_i64(c, INT64_MAX), ir_i64(c, 1)), &v) && v == INT64_MIN);
  /* int32 operands are widened */
  CHECK_INT(ir_add(c, ir_int(c, TC_INT32, 1), n)->type, TC_INT64);
  CHECK_STR(pexpr(ir_sub(c, ir_add(c, n, ir_i64(c, 1)), ir_floordiv(c, n, ir_i64(c, 2)))),
            "z_N + 1 - z_N / 2");
  arena_free(&t.arena);
}

TEST(structural_equality) {
  T t;
  Ctx *c = tctx(&t);
  SizeSym sn, sm;
  IRVar *vn = size_var(c, "z_N", &sn, 0), *vm = size_var(c, "z_M", &sm, 1);
  IRExpr *a = ir_bin(c, OP_ADD, ir_var(c, vn), ir_i64(c, 1));
  IRExpr *b = ir_bin(c, OP_ADD, ir_var(c, vn), ir_i64(c, 1));
  IRExpr *d = ir_bin(c, OP_ADD, ir_var(c, vm), ir_i64(c, 1));
  CHECK(ir_equal(a, b));
  CHECK(!ir_equal(a, d));
  CHECK(!ir_equal(ir_i64(c, 1), ir_int(c, TC_INT32, 1)));
  CHECK(!ir_equal(ir_float(c, TC_FLOAT64, 0.0), ir_float(c, TC_FLOAT64, -0.0)));
  arena_free(&t.arena);
}

static IRExpr *identity_fn(Ctx *c, void *st, IRExpr *e) {
  (void)st;
  return ir_mutate_expr_children(c, e, identity_fn, NULL);
}

/* replaces the var in *st by the constant 7 */
static IRExpr *subst_fn(Ctx *c, void *st, IRExpr *e) {
  if (e->kind == IR_VAR && e->var == st)
    return ir_i64(c, 7);
  return ir_mutate_expr_children(c, e, subst_fn, st);
}

static IRStmt *subst_stmt(Ctx *c, void *st, IRStmt *s) {
  return ir_mutate_stmt_children(c, s, subst_stmt, subst_fn, st);
}

TEST(mutators_keep_unchanged_nodes) {
  T t;
  Ctx *c = tctx(&t);
  SizeSym sn;
  IRVar *vn = size_var(c, "z_N", &sn, 0);
  IRVar *x = ir_new_var(c, "x_i", VAR_LOOP, TC_INT64);
  Buffer buf = {.name = "b_A", .dtype = TC_FLOAT32, .rank = 1};
  IRExpr *idx[1] = {ir_var(c, x)};
  IRExpr *ld = ir_load(c, &buf, idx, 1);
  IRExpr *e = ir_bin(c, OP_MUL, ld, ir_call(c, TC_FLOAT32, BI_exp, &ld, 1));
  CHECK(identity_fn(c, NULL, e) == e);
  IRStmt *st = ir_store(c, &buf, idx, 1, e);
  IRStmt *loop = ir_for(c, x, ir_i64(c, 0), ir_var(c, vn), FOR_SERIAL, st);
  CHECK(subst_stmt(c, NULL, loop) == loop);
  IRStmt *l2 = subst_stmt(c, vn, loop);
  CHECK(l2 != loop);
  CHECK(l2->body == st); /* untouched child shared */
  int64_t v;
  CHECK(ir_is_const(l2->extent, &v) && v == 7);
  IRExpr *e2 = subst_fn(c, x, e);
  CHECK(e2 != e);
  CHECK_STR(pexpr(e2), "b_A[7] * exp(b_A[7])");
  CHECK_STR(pexpr(e), "b_A[x_i] * exp(b_A[x_i])"); /* the original is unchanged */
  arena_free(&t.arena);
}

TEST(printer_precedence) {
  T t;
  Ctx *c = tctx(&t);
  SizeSym sn, sm;
  IRExpr *n = ir_var(c, size_var(c, "z_N", &sn, 0)), *m = ir_var(c, size_var(c, "z_M", &sm, 1));
  CHECK_STR(pexpr(ir_bin(c, OP_SUB, n, ir_bin(c, OP_SUB, m, ir_i64(c, 1)))), "z_N - (z_M - 1)");
  CHECK_STR(pexpr(ir_bin(c, OP_SUB, ir_bin(c, OP_SUB, n, m), ir_i64(c, 1))), "z_N - z_M - 1");
  CHECK_STR(pexpr(ir_bin(c, OP_MUL, ir_bin(c, OP_ADD, n, m), ir_i64(c, 2))), "(z_N + z_M) * 2");
  CHECK_STR(pexpr(ir_bin(c, OP_DIV, n, ir_bin(c, OP_MUL, m, ir_i64(c, 2)))), "z_N / (z_M * 2)");
  CHECK_STR(pexpr(ir_un(c, OP_NEG, ir_un(c, OP_NEG, n))), "-(-z_N)");
  CHECK_STR(pexpr(ir_un(c, OP_NEG, ir_bin(c, OP_ADD, n, m))), "-(z_N + z_M)");
  CHECK_STR(pexpr(ir_bin(c, OP_MIN, n, ir_bin(c, OP_ADD, n, m))), "min(z_N, z_N + z_M)");
  IRExpr *lt = ir_bin(c, OP_LT, n, m), *ge = ir_bin(c, OP_GE, n, ir_i64(c, 0));
  CHECK_STR(pexpr(ir_bin(c, OP_OR, ir_bin(c, OP_AND, lt, ge), lt)), "z_N < z_M && z_N >= 0 || z_N < z_M");
  CHECK_STR(pexpr(ir_bin(c, OP_AND, lt, ir_bin(c, OP_OR, ge, lt))), "z_N < z_M && (z_N >= 0 || z_N < z_M)");
  CHECK_STR(pexpr(ir_select(c, lt, ir_int(c, TC_INT32, 3), ir_cast(c, TC_INT32, n))),
            "select(z_N < z_M, (int32)3, int32(z_N))");
  CHECK_STR(pexpr(ir_fail(c, TC_FLOAT32, 2, n, m)), "fail#2(z_N, z_M)");
  CHECK_STR(pexpr(ir_int(c, TC_BOOL, 1)), "true");
  CHECK_STR(pexpr(ir_int(c, TC_UINT64, -1)), "(uint64)18446744073709551615");
  arena_free(&t.arena);
}

TEST(printer_loop_nest) {
  T t;
  Ctx *c = tctx(&t);
  SizeSym sm, sk, sn;
  IRVar *zm = size_var(c, "z_M", &sm, 0), *zk = size_var(c, "z_K", &sk, 1), *zn = size_var(c, "z_N", &sn, 2);
  IRVar *xm = ir_new_var(c, "x_m", VAR_LOOP, TC_INT64), *xn = ir_new_var(c, "x_n", VAR_LOOP, TC_INT64);
  IRVar *xk = ir_new_var(c, "x_k", VAR_LOOP, TC_INT64);
  IRVar *acc = ir_new_var(c, "acc0", VAR_LOCAL, TC_FLOAT32);
  Buffer A = {.name = "b_A", .dtype = TC_FLOAT32, .rank = 2};
  Buffer B = {.name = "b_B", .dtype = TC_FLOAT32, .rank = 2};
  Buffer C = {.name = "b_C", .dtype = TC_FLOAT32, .rank = 2};
  IRExpr *ia[2] = {ir_var(c, xm), ir_var(c, xk)}, *ib[2] = {ir_var(c, xk), ir_var(c, xn)};
  IRExpr *ic[2] = {ir_var(c, xm), ir_var(c, xn)};
  IRExpr *prod = ir_bin(c, OP_MUL, ir_load(c, &A, ia, 2), ir_load(c, &B, ib, 2));
  IRStmt *inner = ir_for(c, xk, ir_i64(c, 0), ir_var(c, zk), FOR_SERIAL,
                         ir_assign(c, acc, ir_bin(c, OP_ADD, ir_var(c, acc), prod)));
  IRStmt *body[3] = {ir_decl(c, acc, ir_float(c, TC_FLOAT32, 0)), inner, ir_store(c, &C, ic, 2, ir_var(c, acc))};
  IRStmt *nloop = ir_for(c, xn, ir_i64(c, 1), ir_var(c, zn), FOR_VECTORIZED, ir_block(c, body, 3));
  IRStmt *chk = ir_check(c, ir_bin(c, OP_LE, ir_var(c, zk), ir_var(c, zn)),
                         ir_fail(c, TC_INT32, 0, ir_var(c, zk), ir_var(c, zn)));
  IRStmt *top[2] = {chk, ir_for(c, xm, ir_i64(c, 0), ir_var(c, zm), FOR_PARALLEL, nloop)};
  IRStmt *ifs = ir_if(c, ir_bin(c, OP_GT, ir_var(c, zm), ir_i64(c, 0)), ir_block(c, top, 2), NULL);
  Buf b = {0};
  ir_print_stmt(&b, ifs, 0);
  CHECK_STR(b.s, "if z_M > 0 {\n"
                 "  check z_K <= z_N else fail#0(z_K, z_N)\n"
                 "  for x_m in [0, z_M) parallel {\n"
                 "    for x_n in [1, 1 + z_N) vectorized {\n"
                 "      float32 acc0 = 0.0f\n"
                 "      for x_k in [0, z_K) {\n"
                 "        acc0 = acc0 + b_A[x_m, x_k] * b_B[x_k, x_n]\n"
                 "      }\n"
                 "      b_C[x_m, x_n] = acc0\n"
                 "    }\n"
                 "  }\n"
                 "}\n");
  buf_free(&b);
  arena_free(&t.arena);
}

TEST(eval_int_semantics) {
  T t;
  Ctx *c = tctx(&t);
  SizeSym sn;
  IRExpr *n = ir_var(c, size_var(c, "z_N", &sn, 0));
  int64_t sizes[1] = {10}, v;
#define EV(e) (ir_eval_int((e), sizes, &v) ? v : -999999)
  CHECK_INT(EV(ir_bin(c, OP_DIV, ir_i64(c, -7), ir_i64(c, 2))), -4);
  CHECK_INT(EV(ir_bin(c, OP_MOD, ir_i64(c, -7), ir_i64(c, 2))), 1);
  CHECK_INT(EV(ir_bin(c, OP_MOD, ir_i64(c, 7), ir_i64(c, -2))), -1);
  CHECK_INT(EV(ir_bin(c, OP_DIV, ir_i64(c, 7), ir_i64(c, -2))), -4);
  CHECK_INT(EV(ir_bin(c, OP_DIV, ir_i64(c, 7), ir_i64(c, 0))), 0);
  CHECK_INT(EV(ir_bin(c, OP_MOD, ir_i64(c, 7), ir_i64(c, 0))), 0);
  CHECK_INT(EV(ir_bin(c, OP_DIV, ir_i64(c, INT64_MIN), ir_i64(c, -1))), INT64_MIN);
  CHECK_INT(EV(ir_bin(c, OP_MOD, ir_i64(c, INT64_MIN), ir_i64(c, -1))), 0);
  CHECK_INT(EV(ir_bin(c, OP_DIV, ir_int(c, TC_INT32, INT32_MIN), ir_int(c, TC_INT32, -1))), INT32_MIN);
  CHECK_INT(EV(ir_bin(c, OP_ADD, ir_int(c, TC_INT32, INT32_MAX), ir_int(c, TC_INT32, 1))), INT32_MIN);
  CHECK_INT(EV(ir_bin(c, OP_MUL, ir_int(c, TC_UINT8, 16), ir_int(c, TC_UINT8, 17))), 16);
  CHECK_INT(EV(ir_bin(c, OP_LT, ir_int(c, TC_UINT64, -1), ir_int(c, TC_UINT64, 1))), 0);
  CHECK_INT(EV(ir_bin(c, OP_DIV, ir_int(c, TC_UINT64, -2), ir_int(c, TC_UINT64, 2))), INT64_MAX);
  /* uint32 with int32 promotes to int32: 0xffffffff reads as -1 */
  CHECK_INT(EV(ir_bin(c, OP_LT, ir_int(c, TC_UINT32, -1), ir_int(c, TC_INT32, 0))), 1);
  CHECK_INT(EV(ir_bin(c, OP_SUB, n, ir_i64(c, 3))), 7);
  CHECK_INT(EV(ir_cast(c, TC_INT8, ir_bin(c, OP_MUL, n, ir_i64(c, 30)))), 44);
  CHECK_INT(EV(ir_select(c, ir_bin(c, OP_GT, n, ir_i64(c, 3)), ir_i64(c, 1), ir_i64(c, 2))), 1);
  CHECK_INT(EV(ir_un(c, OP_NEG, n)), -10);
  CHECK_INT(EV(ir_bin(c, OP_MAX, n, ir_i64(c, 12))), 12);
  CHECK(!ir_eval_int(ir_float(c, TC_FLOAT32, 1), sizes, &v));
  CHECK(!ir_eval_int(ir_var(c, ir_new_var(c, "x", VAR_LOOP, TC_INT64)), sizes, &v));
  CHECK(!ir_eval_int(n, NULL, &v));
#undef EV
  arena_free(&t.arena);
}

RUN_TESTS()
