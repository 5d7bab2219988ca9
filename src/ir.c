/*
 * ir.c — the loop-nest IR's small machinery: constructors, structural
 * equality, the "mutate children" helpers every pass builds on, the text
 * printer used by dumps, golden tests and `tensorc explain`, and evaluation
 * of integer expressions over size symbols.
 *
 * Nodes live in the compilation's arena and are never freed one by one; they
 * are treated as immutable values, so a pass that changes nothing returns the
 * very node it was given (Halide's IRMutator habit) and sharing subtrees is
 * safe.
 *
 * Integer constants are kept canonical: an IR_INT's `ival` is its value
 * wrapped to its type's width (sign-extended for signed types, zero-extended
 * for unsigned ones; a uint64 keeps its bit pattern; a bool is 0 or 1).
 *
 * The text form, one statement per line:
 *
 *   for x_m in [0, z_M) parallel {
 *     float32 acc0 = 0.0f
 *     for x_k in [0, z_K) {
 *       acc0 = acc0 + b_A[x_m, x_k] * b_B[x_k, x_n]
 *     }
 *     b_C[x_m, x_n] = acc0
 *   }
 *
 * Integer `/` and `%` in the text are FLOORED (they round toward minus
 * infinity, as TC's), not C's truncating operators; `select(c, a, b)` is the
 * lazy conditional; `min`/`max` are written as calls; int64 and float64
 * constants are plain, other types carry a cast (`(int32)2`) or a suffix
 * (`1.5f` for float32); `fail#N(value, bound)` reports failure site N.
 */
#include "tc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- integer values ---- */

/* Wraps v to the width of integer (or bool) type t. */
static int64_t wrap_to(tc_dtype t, int64_t v) {
  const DTypeInfo *d = &dtype_info[t];
  if (d->is_bool)
    return v != 0;
  if (d->bits >= 64)
    return v;
  uint64_t mask = ((uint64_t)1 << d->bits) - 1;
  uint64_t u = (uint64_t)v & mask;
  if (d->is_signed && (u >> (d->bits - 1)))
    u |= ~mask;
  return (int64_t)u;
}

static bool is_intlike(tc_dtype t) { return dtype_info[t].is_int || dtype_info[t].is_bool; }

/* ---- constructors ---- */

static IRExpr *new_expr(Ctx *c, IRExprKind k, tc_dtype t) {
  IRExpr *e = arena_alloc(c->arena, sizeof *e);
  e->kind = k;
  e->type = t;
  return e;
}

IRExpr *ir_int(Ctx *c, tc_dtype t, int64_t v) {
  IASSERT(c, is_intlike(t));
  IRExpr *e = new_expr(c, IR_INT, t);
  e->ival = wrap_to(t, v);
  return e;
}

IRExpr *ir_i64(Ctx *c, int64_t v) { return ir_int(c, TC_INT64, v); }

/* float32 constants are rounded to float32 here, so that every later stage
 * (folding, printing, the emitted C) sees the value the program computes with. */
IRExpr *ir_float(Ctx *c, tc_dtype t, double v) {
  IASSERT(c, dtype_is_float(t));
  IRExpr *e = new_expr(c, IR_FLOAT, t);
  e->fval = t == TC_FLOAT32 ? (double)(float)v : v;
  return e;
}

IRExpr *ir_var(Ctx *c, IRVar *v) {
  IRExpr *e = new_expr(c, IR_VAR, v->type);
  e->var = v;
  return e;
}

IRExpr *ir_load(Ctx *c, Buffer *b, IRExpr **idx, int nidx) {
  IRExpr *e = new_expr(c, IR_LOAD, b->dtype);
  e->buf = b;
  e->idx = arena_alloc(c->arena, sizeof(IRExpr *) * (size_t)(nidx ? nidx : 1));
  if (nidx)
    memcpy(e->idx, idx, sizeof(IRExpr *) * (size_t)nidx);
  e->nidx = nidx;
  return e;
}

static bool is_compare(int op) {
  return op == OP_LT || op == OP_LE || op == OP_GT || op == OP_GE || op == OP_EQ || op == OP_NE;
}

IRExpr *ir_bin(Ctx *c, BinOp op, IRExpr *a, IRExpr *b) {
  tc_dtype t = is_compare(op) || op == OP_AND || op == OP_OR ? TC_BOOL
                                                             : dtype_promote(a->type, b->type);
  IRExpr *e = new_expr(c, IR_BIN, t);
  e->op = op;
  e->a = a;
  e->b = b;
  return e;
}

IRExpr *ir_un(Ctx *c, UnOp op, IRExpr *a) {
  IRExpr *e = new_expr(c, IR_UN, op == OP_NOT ? TC_BOOL : a->type);
  e->op = op;
  e->a = a;
  return e;
}

IRExpr *ir_select(Ctx *c, IRExpr *cond, IRExpr *a, IRExpr *b) {
  IRExpr *e = new_expr(c, IR_SELECT, dtype_promote(a->type, b->type));
  e->a = cond;
  e->b = a;
  e->c = b;
  return e;
}

IRExpr *ir_call(Ctx *c, tc_dtype t, int builtin, IRExpr **args, int nargs) {
  IRExpr *e = new_expr(c, IR_CALL, t);
  e->builtin = builtin;
  e->args = arena_alloc(c->arena, sizeof(IRExpr *) * (size_t)(nargs ? nargs : 1));
  if (nargs)
    memcpy(e->args, args, sizeof(IRExpr *) * (size_t)nargs);
  e->nargs = nargs;
  return e;
}

IRExpr *ir_cast(Ctx *c, tc_dtype t, IRExpr *a) {
  if (a->type == t)
    return a;
  IRExpr *e = new_expr(c, IR_CAST, t);
  e->a = a;
  return e;
}

IRExpr *ir_fail(Ctx *c, tc_dtype t, int site, IRExpr *value, IRExpr *bound) {
  IRExpr *e = new_expr(c, IR_FAIL, t);
  e->site = site;
  e->a = value;
  e->b = bound;
  return e;
}

IRVar *ir_new_var(Ctx *c, const char *name, VarKind k, tc_dtype t) {
  IRVar *v = arena_alloc(c->arena, sizeof *v);
  v->name = arena_strdup(c->arena, name);
  v->kind = k;
  v->type = t;
  return v;
}

static IRStmt *new_stmt(Ctx *c, IRStmtKind k) {
  IRStmt *s = arena_alloc(c->arena, sizeof *s);
  s->kind = k;
  return s;
}

IRStmt *ir_for(Ctx *c, IRVar *v, IRExpr *lo, IRExpr *extent, ForKind k, IRStmt *body) {
  IRStmt *s = new_stmt(c, S_FOR);
  s->var = v;
  s->lo = lo;
  s->extent = extent;
  s->fkind = k;
  s->body = body;
  return s;
}

IRStmt *ir_block(Ctx *c, IRStmt **stmts, int n) {
  IRStmt *s = new_stmt(c, S_BLOCK);
  s->stmts = arena_alloc(c->arena, sizeof(IRStmt *) * (size_t)(n ? n : 1));
  if (n)
    memcpy(s->stmts, stmts, sizeof(IRStmt *) * (size_t)n);
  s->n = n;
  return s;
}

IRStmt *ir_store(Ctx *c, Buffer *b, IRExpr **idx, int nidx, IRExpr *value) {
  IRStmt *s = new_stmt(c, S_STORE);
  s->buf = b;
  s->idx = arena_alloc(c->arena, sizeof(IRExpr *) * (size_t)(nidx ? nidx : 1));
  if (nidx)
    memcpy(s->idx, idx, sizeof(IRExpr *) * (size_t)nidx);
  s->nidx = nidx;
  s->value = value;
  return s;
}

IRStmt *ir_decl(Ctx *c, IRVar *v, IRExpr *value) {
  IRStmt *s = new_stmt(c, S_DECL);
  s->var = v;
  s->value = value;
  return s;
}

IRStmt *ir_assign(Ctx *c, IRVar *v, IRExpr *value) {
  IRStmt *s = new_stmt(c, S_ASSIGN);
  s->var = v;
  s->value = value;
  return s;
}

IRStmt *ir_if(Ctx *c, IRExpr *cond, IRStmt *then, IRStmt *els) {
  IRStmt *s = new_stmt(c, S_IF);
  s->cond = cond;
  s->then = then;
  s->els = els;
  return s;
}

IRStmt *ir_check(Ctx *c, IRExpr *cond, IRExpr *fail) {
  IRStmt *s = new_stmt(c, S_CHECK);
  s->cond = cond;
  s->value = fail;
  return s;
}

IRStmt *ir_alloc(Ctx *c, Buffer *b, IRExpr *extent, int site, IRStmt *body) {
  IRStmt *s = new_stmt(c, S_ALLOC);
  s->buf = b;
  s->extent = extent;
  s->site = site;
  s->body = body;
  return s;
}

/* ---- read-only walks ---- */

bool ir_expr_any(const IRExpr *e, ExprPred pred, const void *st) {
  if (!e)
    return false;
  if (pred(st, e))
    return true;
  for (int i = 0; i < e->nidx; i++)
    if (ir_expr_any(e->idx[i], pred, st))
      return true;
  for (int i = 0; i < e->nargs; i++)
    if (ir_expr_any(e->args[i], pred, st))
      return true;
  return ir_expr_any(e->a, pred, st) || ir_expr_any(e->b, pred, st) ||
         ir_expr_any(e->c, pred, st);
}

void ir_expr_visit(const IRExpr *e, ExprVisit f, void *st) {
  if (!e || !f(st, e))
    return;
  for (int i = 0; i < e->nidx; i++)
    ir_expr_visit(e->idx[i], f, st);
  for (int i = 0; i < e->nargs; i++)
    ir_expr_visit(e->args[i], f, st);
  ir_expr_visit(e->a, f, st);
  ir_expr_visit(e->b, f, st);
  ir_expr_visit(e->c, f, st);
}

void ir_stmt_visit(const IRStmt *s, StmtVisit fs, ExprVisit fe, void *st) {
  if (!s || (fs && !fs(st, s)))
    return;
  if (fe) {
    for (int i = 0; i < s->nidx; i++)
      ir_expr_visit(s->idx[i], fe, st);
    ir_expr_visit(s->lo, fe, st);
    ir_expr_visit(s->extent, fe, st);
    ir_expr_visit(s->value, fe, st);
    ir_expr_visit(s->cond, fe, st);
  }
  ir_stmt_visit(s->body, fs, fe, st);
  ir_stmt_visit(s->then, fs, fe, st);
  ir_stmt_visit(s->els, fs, fe, st);
  for (int i = 0; i < s->n; i++)
    ir_stmt_visit(s->stmts[i], fs, fe, st);
}

bool ir_stmt_any(const IRStmt *s, StmtPred pred, const void *st) {
  if (!s)
    return false;
  if (pred(st, s))
    return true;
  for (int i = 0; i < s->n; i++)
    if (ir_stmt_any(s->stmts[i], pred, st))
      return true;
  return ir_stmt_any(s->body, pred, st) || ir_stmt_any(s->then, pred, st) ||
         ir_stmt_any(s->els, pred, st);
}

static bool is_store_to(const void *b, const IRStmt *s) { return s->kind == S_STORE && s->buf == b; }

bool ir_stmt_stores(const IRStmt *s, const Buffer *b) { return ir_stmt_any(s, is_store_to, b); }

static bool is_var_of(const void *v, const IRExpr *e) { return e->kind == IR_VAR && e->var == v; }

static bool is_load_of(const void *b, const IRExpr *e) {
  return e->kind == IR_LOAD && (!b || e->buf == b);
}

static bool is_kind(const void *k, const IRExpr *e) { return e->kind == *(const IRExprKind *)k; }

static bool is_local(const void *st, const IRExpr *e) {
  (void)st;
  return e->kind == IR_VAR && e->var->kind == VAR_LOCAL;
}

bool ir_has_fail(const IRExpr *e) { return ir_has_kind(e, IR_FAIL); }
bool ir_has_kind(const IRExpr *e, IRExprKind k) { return ir_expr_any(e, is_kind, &k); }
bool ir_uses_local(const IRExpr *e) { return ir_expr_any(e, is_local, NULL); }
bool ir_uses_var(const IRExpr *e, const IRVar *v) { return ir_expr_any(e, is_var_of, v); }
bool ir_loads_buf(const IRExpr *e, const Buffer *b) { return ir_expr_any(e, is_load_of, b); }

/* ---- int64 helpers (symbolic index arithmetic) ---- */

static IRExpr *as_i64(Ctx *c, IRExpr *e) { return ir_cast(c, TC_INT64, e); }

static bool is_const_val(const IRExpr *e, int64_t v) {
  int64_t x;
  return ir_is_const(e, &x) && x == v;
}

IRExpr *ir_add(Ctx *c, IRExpr *a, IRExpr *b) {
  int64_t x, y;
  a = as_i64(c, a), b = as_i64(c, b);
  if (ir_is_const(a, &x) && ir_is_const(b, &y))
    return ir_i64(c, (int64_t)((uint64_t)x + (uint64_t)y));
  if (is_const_val(a, 0))
    return b;
  if (is_const_val(b, 0))
    return a;
  return ir_bin(c, OP_ADD, a, b);
}

IRExpr *ir_sub(Ctx *c, IRExpr *a, IRExpr *b) {
  int64_t x, y;
  a = as_i64(c, a), b = as_i64(c, b);
  if (ir_is_const(a, &x) && ir_is_const(b, &y))
    return ir_i64(c, (int64_t)((uint64_t)x - (uint64_t)y));
  if (is_const_val(b, 0))
    return a;
  if (ir_equal(a, b) && !ir_has_fail(a))
    return ir_i64(c, 0);
  return ir_bin(c, OP_SUB, a, b);
}

IRExpr *ir_mul(Ctx *c, IRExpr *a, IRExpr *b) {
  int64_t x, y;
  a = as_i64(c, a), b = as_i64(c, b);
  if (ir_is_const(a, &x) && ir_is_const(b, &y))
    return ir_i64(c, (int64_t)((uint64_t)x * (uint64_t)y));
  if (is_const_val(a, 1))
    return b;
  if (is_const_val(b, 1))
    return a;
  if ((is_const_val(a, 0) && !ir_has_fail(b)) || (is_const_val(b, 0) && !ir_has_fail(a)))
    return ir_i64(c, 0);
  return ir_bin(c, OP_MUL, a, b);
}

IRExpr *ir_floordiv(Ctx *c, IRExpr *a, IRExpr *b) {
  a = as_i64(c, a), b = as_i64(c, b);
  if (is_const_val(b, 1))
    return a;
  IRExpr *e = ir_bin(c, OP_DIV, a, b);
  int64_t v;
  if (a->kind == IR_INT && b->kind == IR_INT && ir_eval_int(e, NULL, &v))
    return ir_i64(c, v);
  return e;
}

IRExpr *ir_min(Ctx *c, IRExpr *a, IRExpr *b) {
  int64_t x, y;
  a = as_i64(c, a), b = as_i64(c, b);
  if (ir_is_const(a, &x) && ir_is_const(b, &y))
    return ir_i64(c, x < y ? x : y);
  if (ir_equal(a, b))
    return a;
  return ir_bin(c, OP_MIN, a, b);
}

IRExpr *ir_max(Ctx *c, IRExpr *a, IRExpr *b) {
  int64_t x, y;
  a = as_i64(c, a), b = as_i64(c, b);
  if (ir_is_const(a, &x) && ir_is_const(b, &y))
    return ir_i64(c, x > y ? x : y);
  if (ir_equal(a, b))
    return a;
  return ir_bin(c, OP_MAX, a, b);
}

bool ir_is_const(const IRExpr *e, int64_t *v) {
  if (!e || e->kind != IR_INT)
    return false;
  if (v)
    *v = e->ival;
  return true;
}

bool ir_equal(const IRExpr *a, const IRExpr *b) {
  if (a == b)
    return true;
  if (!a || !b || a->kind != b->kind || a->type != b->type)
    return false;
  switch (a->kind) {
  case IR_INT:
    return a->ival == b->ival;
  case IR_FLOAT:
    return memcmp(&a->fval, &b->fval, sizeof a->fval) == 0;
  case IR_VAR:
    return a->var == b->var;
  case IR_LOAD:
    if (a->buf != b->buf || a->nidx != b->nidx)
      return false;
    for (int i = 0; i < a->nidx; i++)
      if (!ir_equal(a->idx[i], b->idx[i]))
        return false;
    return true;
  case IR_BIN:
    return a->op == b->op && ir_equal(a->a, b->a) && ir_equal(a->b, b->b);
  case IR_UN:
    return a->op == b->op && ir_equal(a->a, b->a);
  case IR_SELECT:
    return ir_equal(a->a, b->a) && ir_equal(a->b, b->b) && ir_equal(a->c, b->c);
  case IR_CALL:
    if (a->builtin != b->builtin || a->nargs != b->nargs)
      return false;
    for (int i = 0; i < a->nargs; i++)
      if (!ir_equal(a->args[i], b->args[i]))
        return false;
    return true;
  case IR_CAST:
    return ir_equal(a->a, b->a);
  case IR_FAIL:
    return a->site == b->site && ir_equal(a->a, b->a) && ir_equal(a->b, b->b);
  case NUM_IR_EXPR_KINDS:
    break;
  }
  return false;
}

/* ---- mutators ---- */

static IRExpr *copy_expr(Ctx *c, const IRExpr *e) {
  IRExpr *n = arena_alloc(c->arena, sizeof *n);
  *n = *e;
  return n;
}

/* Applies f to each element of arr[0..n); returns a new array if any element
 * changed, else arr itself. */
static IRExpr **mutate_list(Ctx *c, IRExpr **arr, int n, ExprFn f, void *st) {
  IRExpr **out = arr;
  for (int i = 0; i < n; i++) {
    IRExpr *x = f(c, st, arr[i]);
    if (x != arr[i] && out == arr) {
      out = arena_alloc(c->arena, sizeof(IRExpr *) * (size_t)n);
      memcpy(out, arr, sizeof(IRExpr *) * (size_t)n);
    }
    out[i] = x;
  }
  return out;
}

static IRExpr *mutate_opt(Ctx *c, IRExpr *e, ExprFn f, void *st) {
  return e ? f(c, st, e) : NULL;
}

IRExpr *ir_mutate_expr_children(Ctx *c, IRExpr *e, ExprFn f, void *st) {
  IRExpr *a = mutate_opt(c, e->a, f, st);
  IRExpr *b = mutate_opt(c, e->b, f, st);
  IRExpr *cc = mutate_opt(c, e->c, f, st);
  IRExpr **idx = e->nidx ? mutate_list(c, e->idx, e->nidx, f, st) : e->idx;
  IRExpr **args = e->nargs ? mutate_list(c, e->args, e->nargs, f, st) : e->args;
  if (a == e->a && b == e->b && cc == e->c && idx == e->idx && args == e->args)
    return e;
  IRExpr *n = copy_expr(c, e);
  n->a = a, n->b = b, n->c = cc, n->idx = idx, n->args = args;
  return n;
}

static IRStmt *mutate_sopt(Ctx *c, IRStmt *s, StmtFn fs, void *st) {
  return s && fs ? fs(c, st, s) : s;
}

static IRExpr *mutate_eopt(Ctx *c, IRExpr *e, ExprFn fe, void *st) {
  return e && fe ? fe(c, st, e) : e;
}

IRStmt *ir_mutate_stmt_children(Ctx *c, IRStmt *s, StmtFn fs, ExprFn fe, void *st) {
  IRExpr *lo = mutate_eopt(c, s->lo, fe, st);
  IRExpr *extent = mutate_eopt(c, s->extent, fe, st);
  IRExpr **idx = s->nidx && fe ? mutate_list(c, s->idx, s->nidx, fe, st) : s->idx;
  IRExpr *value = mutate_eopt(c, s->value, fe, st);
  IRExpr *cond = mutate_eopt(c, s->cond, fe, st);
  IRStmt *body = mutate_sopt(c, s->body, fs, st);
  IRStmt *then = mutate_sopt(c, s->then, fs, st);
  IRStmt *els = mutate_sopt(c, s->els, fs, st);
  IRStmt **stmts = s->stmts;
  for (int i = 0; fs && i < s->n; i++) {
    IRStmt *x = fs(c, st, s->stmts[i]);
    if (x != s->stmts[i] && stmts == s->stmts) {
      stmts = arena_alloc(c->arena, sizeof(IRStmt *) * (size_t)s->n);
      memcpy(stmts, s->stmts, sizeof(IRStmt *) * (size_t)s->n);
    }
    stmts[i] = x;
  }
  if (lo == s->lo && extent == s->extent && idx == s->idx && value == s->value &&
      cond == s->cond && body == s->body && then == s->then && els == s->els &&
      stmts == s->stmts)
    return s;
  IRStmt *n = arena_alloc(c->arena, sizeof *n);
  *n = *s;
  n->lo = lo, n->extent = extent, n->idx = idx, n->value = value, n->cond = cond;
  n->body = body, n->then = then, n->els = els, n->stmts = stmts;
  return n;
}

/* ---- printer ---- */

/* Binding strength of an expression in the text form (higher binds tighter). */
static int prec(const IRExpr *e) {
  if (e->kind == IR_UN)
    return 7;
  if (e->kind != IR_BIN)
    return 8;
  switch (e->op) {
  case OP_OR: return 1;
  case OP_AND: return 2;
  case OP_EQ: case OP_NE: return 3;
  case OP_LT: case OP_LE: case OP_GT: case OP_GE: return 4;
  case OP_ADD: case OP_SUB: return 5;
  case OP_MUL: case OP_DIV: case OP_MOD: return 6;
  default: return 8; /* min/max print as calls */
  }
}

static void print_expr(Buf *b, bool user, const IRExpr *e);
static void print_prec(Buf *b, bool user, const IRExpr *e, int need) {
  if (prec(e) < need) {
    buf_puts(b, "(");
    print_expr(b, user, e);
    buf_puts(b, ")");
  } else {
    print_expr(b, user, e);
  }
}

/* Shortest decimal that reads back as the same value. */
static void print_float(Buf *b, tc_dtype t, double v) {
  if (isnan(v)) {
    buf_puts(b, t == TC_FLOAT64 ? "nan" : t == TC_FLOAT32 ? "nanf" : "nan");
    return;
  }
  if (isinf(v)) {
    buf_puts(b, v < 0 ? "-inf" : "inf");
    if (t == TC_FLOAT32)
      buf_puts(b, "f");
    return;
  }
  char s[64];
  for (int p = 1; p <= 17; p++) {
    snprintf(s, sizeof s, "%.*g", p, v);
    double r = strtod(s, NULL);
    if (t == TC_FLOAT32 ? (float)r == (float)v : r == v)
      break;
  }
  if (!strpbrk(s, ".e"))
    strcat(s, ".0");
  if (t != TC_FLOAT32 && t != TC_FLOAT64)
    buf_printf(b, "(%s)", dtype_info[t].name);
  buf_puts(b, s);
  if (t == TC_FLOAT32)
    buf_puts(b, "f");
}

static void print_int(Buf *b, tc_dtype t, int64_t v) {
  if (t == TC_BOOL) {
    buf_puts(b, v ? "true" : "false");
    return;
  }
  if (t != TC_INT64)
    buf_printf(b, "(%s)", dtype_info[t].name);
  if (t == TC_UINT64)
    buf_printf(b, "%llu", (unsigned long long)v);
  else
    buf_printf(b, "%lld", (long long)v);
}

static void print_list(Buf *b, bool user, IRExpr *const *xs, int n) {
  for (int i = 0; i < n; i++) {
    if (i)
      buf_puts(b, ", ");
    print_expr(b, user, xs[i]);
  }
}

static void print_expr(Buf *b, bool user, const IRExpr *e) {
  if (!e) {
    buf_puts(b, "<null>");
    return;
  }
  switch (e->kind) {
  case IR_INT:
    print_int(b, user ? TC_INT64 : e->type, e->ival);
    return;
  case IR_FLOAT:
    print_float(b, e->type, e->fval);
    return;
  case IR_VAR:
    if (user && e->var && e->var->kind == VAR_SIZE && e->var->sym)
      buf_puts(b, e->var->sym->name); /* diagnostics speak the source's names */
    else
      buf_puts(b, e->var ? e->var->name : "<var?>");
    return;
  case IR_LOAD:
    buf_printf(b, "%s[", e->buf ? e->buf->name : "<buf?>");
    print_list(b, user, e->idx, e->nidx);
    buf_puts(b, "]");
    return;
  case IR_BIN:
    if (e->op == OP_MIN || e->op == OP_MAX) {
      buf_printf(b, "%s(", binop_names[e->op]);
      print_expr(b, user, e->a);
      buf_puts(b, ", ");
      print_expr(b, user, e->b);
      buf_puts(b, ")");
      return;
    }
    print_prec(b, user, e->a, prec(e));
    buf_printf(b, " %s ", binop_names[e->op]);
    print_prec(b, user, e->b, prec(e) + 1);
    return;
  case IR_UN: {
    /* "-(-x)" and "-(-1)" must not read as "--x" */
    const IRExpr *a = e->a;
    bool paren = a->kind == IR_UN || (a->kind == IR_INT && a->ival < 0) ||
                 (a->kind == IR_FLOAT && signbit(a->fval));
    buf_puts(b, unop_names[e->op]);
    if (paren) {
      buf_puts(b, "(");
      print_expr(b, user, a);
      buf_puts(b, ")");
    } else {
      print_prec(b, user, a, 7);
    }
    return;
  }
  case IR_SELECT:
    buf_puts(b, "select(");
    print_expr(b, user, e->a);
    buf_puts(b, ", ");
    print_expr(b, user, e->b);
    buf_puts(b, ", ");
    print_expr(b, user, e->c);
    buf_puts(b, ")");
    return;
  case IR_CALL:
    buf_printf(b, "%s(", (unsigned)e->builtin < NUM_BUILTINS ? builtin_info[e->builtin].name : "?");
    print_list(b, user, e->args, e->nargs);
    buf_puts(b, ")");
    return;
  case IR_CAST:
    buf_printf(b, "%s(", dtype_info[e->type].name);
    print_expr(b, user, e->a);
    buf_puts(b, ")");
    return;
  case IR_FAIL:
    buf_printf(b, "fail#%d(", e->site);
    print_expr(b, user, e->a);
    buf_puts(b, ", ");
    print_expr(b, user, e->b);
    buf_puts(b, ")");
    return;
  case NUM_IR_EXPR_KINDS:
    break;
  }
  buf_puts(b, "<bad expr>");
}

void ir_print_expr(Buf *b, const IRExpr *e) { print_expr(b, false, e); }

/* The same, with size symbols under their source names and no type tags on
 * integers: for diagnostics about bounds. */
void ir_print_user(Buf *b, const IRExpr *e) { print_expr(b, true, e); }

static void print_body(Buf *b, const IRStmt *s, int indent) {
  if (s)
    ir_print_stmt(b, s, indent);
}

void ir_print_stmt(Buf *b, const IRStmt *s, int indent) {
  if (!s)
    return;
  if (s->kind == S_BLOCK) {
    for (int i = 0; i < s->n; i++)
      ir_print_stmt(b, s->stmts[i], indent);
    return;
  }
  buf_indent(b, indent);
  switch (s->kind) {
  case S_FOR: {
    buf_printf(b, "for %s in [", s->var->name);
    int64_t lo;
    if (ir_is_const(s->lo, &lo) && lo == 0) {
      buf_puts(b, "0, ");
      ir_print_expr(b, s->extent);
    } else {
      ir_print_expr(b, s->lo);
      buf_puts(b, ", ");
      print_prec(b, false, s->lo, 5);
      buf_puts(b, " + ");
      print_prec(b, false, s->extent, 6);
    }
    buf_puts(b, ")");
    if (s->fkind != FOR_SERIAL)
      buf_printf(b, " %s", for_kind_names[s->fkind]);
    buf_puts(b, " {\n");
    print_body(b, s->body, indent + 1);
    buf_indent(b, indent);
    buf_puts(b, "}\n");
    return;
  }
  case S_STORE:
    buf_printf(b, "%s[", s->buf->name);
    print_list(b, false, s->idx, s->nidx);
    buf_puts(b, "] = ");
    ir_print_expr(b, s->value);
    buf_puts(b, "\n");
    return;
  case S_DECL:
    buf_printf(b, "%s %s = ", dtype_info[s->var->type].name, s->var->name);
    ir_print_expr(b, s->value);
    buf_puts(b, "\n");
    return;
  case S_ASSIGN:
    buf_printf(b, "%s = ", s->var->name);
    ir_print_expr(b, s->value);
    buf_puts(b, "\n");
    return;
  case S_IF:
    buf_puts(b, "if ");
    ir_print_expr(b, s->cond);
    buf_puts(b, " {\n");
    print_body(b, s->then, indent + 1);
    if (s->els) {
      buf_indent(b, indent);
      buf_puts(b, "} else {\n");
      print_body(b, s->els, indent + 1);
    }
    buf_indent(b, indent);
    buf_puts(b, "}\n");
    return;
  case S_CHECK:
    buf_puts(b, "check ");
    ir_print_expr(b, s->cond);
    buf_puts(b, " else ");
    ir_print_expr(b, s->value);
    buf_puts(b, "\n");
    return;
  case S_ALLOC:
    buf_printf(b, "alloc %s %s[", dtype_info[s->buf->dtype].name, s->buf->name);
    ir_print_expr(b, s->extent);
    buf_puts(b, "] {\n");
    print_body(b, s->body, indent + 1);
    buf_indent(b, indent);
    buf_puts(b, "}\n");
    return;
  case S_BLOCK:
  case NUM_IR_STMT_KINDS:
    break;
  }
  buf_puts(b, "<bad stmt>\n");
}

static const char *const fail_kind_names[] = {"index", "range", "bc_empty", "nomem"};

void ir_print_func(Buf *b, const IRFunc *f) {
  buf_printf(b, "func %s(", f->def && f->def->name ? f->def->name : "?");
  for (int i = 0; i < f->nbufs; i++) {
    const Buffer *bf = f->bufs[i];
    if (i)
      buf_puts(b, ", ");
    if (!bf) {
      buf_puts(b, "<none>");
      continue;
    }
    buf_printf(b, "%s %s", dtype_info[bf->dtype].name, bf->name);
    if (bf->rank) {
      buf_puts(b, "[");
      for (int d = 0; d < bf->rank; d++)
        buf_printf(b, "%s%s", d ? ", " : "", bf->shape[d] ? bf->shape[d]->name : "?");
      buf_puts(b, "]");
    }
  }
  buf_puts(b, ")");
  if (f->nsizes) {
    buf_puts(b, " sizes(");
    for (int i = 0; i < f->nsizes; i++)
      buf_printf(b, "%s%s", i ? ", " : "", f->sizes[i] ? f->sizes[i]->name : "?");
    buf_puts(b, ")");
  }
  buf_puts(b, " {\n");
  print_body(b, f->body, 1);
  buf_puts(b, "}\n");
  for (int i = 0; i < f->sites.len; i++) {
    const FailSite *fs = &f->sites.data[i];
    buf_printf(b, "# site %d: %s %s dim %d at %d:%d\n", i,
               (unsigned)fs->kind < 4 ? fail_kind_names[fs->kind] : "?",
               fs->tensor && fs->tensor->name ? fs->tensor->name : "?", fs->dim, fs->loc.line,
               fs->loc.col);
  }
}

/* ---- evaluation ---- */

/* Floor division and remainder on int64; x / 0 == x % 0 == 0; INT64_MIN / -1
 * wraps.  Unsigned 64-bit operands use unsigned division. */
static int64_t floordiv64(int64_t a, int64_t b, bool is_unsigned) {
  if (b == 0)
    return 0;
  if (is_unsigned)
    return (int64_t)((uint64_t)a / (uint64_t)b);
  if (b == -1)
    return (int64_t)(0 - (uint64_t)a);
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0)))
    q--;
  return q;
}

static int64_t floormod64(int64_t a, int64_t b, bool is_unsigned) {
  if (b == 0)
    return 0;
  if (is_unsigned)
    return (int64_t)((uint64_t)a % (uint64_t)b);
  if (b == -1)
    return 0;
  int64_t r = a % b;
  if (r != 0 && ((r < 0) != (b < 0)))
    r += b;
  return r;
}

/* op on x, y already wrapped to the operand type t. */
static bool eval_binop(int op, tc_dtype t, int64_t x, int64_t y, int64_t *out) {
  bool u = t == TC_UINT64;
  uint64_t ux = (uint64_t)x, uy = (uint64_t)y;
  switch (op) {
  case OP_ADD: *out = (int64_t)(ux + uy); return true;
  case OP_SUB: *out = (int64_t)(ux - uy); return true;
  case OP_MUL: *out = (int64_t)(ux * uy); return true;
  case OP_DIV: *out = floordiv64(x, y, u); return true;
  case OP_MOD: *out = floormod64(x, y, u); return true;
  case OP_LT: *out = u ? ux < uy : x < y; return true;
  case OP_LE: *out = u ? ux <= uy : x <= y; return true;
  case OP_GT: *out = u ? ux > uy : x > y; return true;
  case OP_GE: *out = u ? ux >= uy : x >= y; return true;
  case OP_EQ: *out = x == y; return true;
  case OP_NE: *out = x != y; return true;
  case OP_AND: *out = x && y; return true;
  case OP_OR: *out = x || y; return true;
  case OP_MIN: *out = (u ? ux < uy : x < y) ? x : y; return true;
  case OP_MAX: *out = (u ? ux > uy : x > y) ? x : y; return true;
  }
  return false;
}

bool ir_eval_int(const IRExpr *e, const int64_t *sizes, int64_t *out) {
  int64_t x, y, z;
  if (!e || !is_intlike(e->type))
    return false;
  switch (e->kind) {
  case IR_INT:
    *out = e->ival;
    return true;
  case IR_VAR:
    if (e->var->kind != VAR_SIZE || !e->var->sym || !sizes)
      return false;
    *out = wrap_to(e->type, sizes[e->var->sym->id]);
    return true;
  case IR_BIN: {
    if (!is_intlike(e->a->type) || !is_intlike(e->b->type))
      return false;
    tc_dtype t = dtype_promote(e->a->type, e->b->type);
    if (e->op == OP_AND || e->op == OP_OR) {
      /* short-circuit, as the generated code does */
      if (!ir_eval_int(e->a, sizes, &x))
        return false;
      if ((e->op == OP_AND && !x) || (e->op == OP_OR && x)) {
        *out = e->op == OP_OR;
        return true;
      }
      if (!ir_eval_int(e->b, sizes, &y))
        return false;
      *out = y != 0;
      return true;
    }
    if (!ir_eval_int(e->a, sizes, &x) || !ir_eval_int(e->b, sizes, &y))
      return false;
    if (!eval_binop(e->op, t, wrap_to(t, x), wrap_to(t, y), &z))
      return false;
    *out = wrap_to(e->type, z);
    return true;
  }
  case IR_UN:
    if (!ir_eval_int(e->a, sizes, &x))
      return false;
    *out = wrap_to(e->type, e->op == OP_NOT ? !x : (int64_t)(0 - (uint64_t)x));
    return true;
  case IR_SELECT:
    if (!ir_eval_int(e->a, sizes, &x))
      return false;
    if (!ir_eval_int(x ? e->b : e->c, sizes, &y))
      return false;
    *out = wrap_to(e->type, y);
    return true;
  case IR_CAST:
    if (!is_intlike(e->a->type) || !ir_eval_int(e->a, sizes, &x))
      return false;
    *out = wrap_to(e->type, x);
    return true;
  default:
    return false;
  }
}
