/*
 * pipeline.c — the lowering passes as one straight list, IR dumps, and the
 * IR verifier.
 *
 *   lower_def        checked Def -> loop nests, multi-dim accesses
 *   sched_func       the user's schedule on the stages it names
 *   inline_func      pointwise temporaries computed where they are read
 *   fuse_func        nests over the same outer loop fused
 *   fold_func        temporaries of one iteration as local buffers
 *   tile_func        contractions as register tiles over packed panels
 *   schedule_default loop kinds: parallel outer, vectorized inner
 *   flatten_func     multi-dim accesses -> one offset over stride variables
 *   specialize_func  unit-stride versions of vectorized loops (the CPU's
 *                    first kernel: specialize_unit_func, those versions only)
 *   simplify         fold what flattening exposed
 *
 * After each pass the verifier checks the IR's invariants (QBE's ssacheck);
 * it always runs: it is one linear walk, far cheaper than the C compiler
 * that follows.  A violation is a bug in tensorc, reported through
 * internal_error naming the pass it followed.  With a dump buffer the IR
 * text follows each pass ("== after <pass>"), for `tc_dump_passes` and
 * TENSORC_DEBUG=passes.
 *
 * Invariants checked:
 *   - every variable used is in scope: loop variables inside their loop,
 *     locals after their declaration in an enclosing block, sizes, extents
 *     and strides belonging to the function; no loop variable or local is
 *     declared twice in one scope chain;
 *   - loads and stores have nidx == rank before "flatten" and 1 after, and
 *     int64 indices; stored and assigned values have the target's type;
 *   - IR_BIN operands have one type; compares and && || give bool; select
 *     conditions are bool and its arms have the select's type; builtin
 *     arguments have the call's type;
 *   - failure sites are in range; S_CHECK's value is an IR_FAIL;
 *   - local buffers are accessed only inside their S_ALLOC, with one int64
 *     index, and hold no S_CHECK (its early return would skip the free).
 */
#include "tc.h"

#include <string.h>

typedef struct Verify {
  Ctx *c;
  IRFunc *f;
  const char *after;
  int flat;               /* 1: accesses have one index, 0: rank, -1: not known yet */
  VEC(IRVar *) scope;     /* loop variables and locals in scope */
  VEC(Buffer *) locals;   /* local buffers in scope (S_ALLOC) */
} Verify;

#define VCHECK(V, cond, what)                                                 \
  ((cond) ? (void)0 : vfail((V), __LINE__, (what)))

static void vfail(Verify *V, int line, const char *what) {
  internal_error(V->c, __FILE__, line,
                 arena_printf(V->c->arena, "IR verifier, after %s: %s", V->after, what));
}

/* Pass names in pipeline order; accesses are flat from "flatten" on. */
static const char *const pass_names[] = {"lower",    "sched",   "inline",     "fuse",
                                         "fold",     "tile",    "schedule",   "flatten",
                                         "specialize", "simplify"};

static int flat_after(const char *after) {
  int flat = 0;
  for (int i = 0; i < (int)(sizeof pass_names / sizeof pass_names[0]); i++) {
    flat |= !strcmp(pass_names[i], "flatten");
    if (!strcmp(pass_names[i], after))
      return flat;
  }
  return -1;
}

static bool in_scope(Verify *V, const IRVar *v) {
  for (int i = 0; i < V->scope.len; i++)
    if (V->scope.data[i] == v)
      return true;
  return false;
}

static void check_var(Verify *V, const IRVar *v) {
  IRFunc *f = V->f;
  VCHECK(V, v != NULL, "variable without IRVar");
  switch (v->kind) {
  case VAR_LOOP:
  case VAR_LOCAL:
    VCHECK(V, in_scope(V, v), arena_printf(V->c->arena, "%s used out of scope", v->name));
    return;
  case VAR_SIZE:
    VCHECK(V, v->sym && v->sym->id >= 0 && v->sym->id < f->nsizes && f->sizes[v->sym->id] == v,
           "size variable not of this function");
    break;
  case VAR_SHAPE:
  case VAR_STRIDE: {
    Buffer *b = v->buf;
    VCHECK(V, b && b->slot >= 0 && b->slot < f->nbufs && f->bufs[b->slot] == b,
           "extent or stride of a foreign buffer");
    VCHECK(V, v->dim >= 0 && v->dim < b->rank &&
                  (v->kind == VAR_SHAPE ? b->shape : b->stride)[v->dim] == v,
           "extent or stride variable not its buffer's");
    break;
  }
  }
  VCHECK(V, v->type == TC_INT64, "size, extent or stride not int64");
}

static void check_expr(Verify *V, const IRExpr *e);

static void check_access(Verify *V, Buffer *b, IRExpr *const *idx, int nidx) {
  IRFunc *f = V->f;
  if (b && b->local) {
    bool live = false;
    for (int i = 0; i < V->locals.len; i++)
      live |= V->locals.data[i] == b;
    VCHECK(V, live, arena_printf(V->c->arena, "local buffer %s used outside its alloc", b->name));
    VCHECK(V, b->rank == 1 && nidx == 1, "local buffer access with more than one index");
    VCHECK(V, idx[0] && idx[0]->type == TC_INT64, "index not int64");
    check_expr(V, idx[0]);
    return;
  }
  VCHECK(V, b && b->slot >= 0 && b->slot < V->f->nbufs && f->bufs[b->slot] == b,
         "access to a foreign buffer");
  if (b->rank != 1) {
    int flat = nidx == 1 && b->rank != 1;
    if (V->flat < 0)
      V->flat = flat;
    VCHECK(V, nidx == (V->flat ? 1 : b->rank),
           arena_printf(V->c->arena, "access to %s with %d indices (%s)", b->name, nidx,
                        V->flat ? "flat" : "one per dimension"));
  }
  VCHECK(V, nidx == 1 || nidx == b->rank, "access with a bad index count");
  for (int i = 0; i < nidx; i++) {
    VCHECK(V, idx[i] && idx[i]->type == TC_INT64, "index not int64");
    check_expr(V, idx[i]);
  }
}

static bool is_compare(int op) {
  return op == OP_LT || op == OP_LE || op == OP_GT || op == OP_GE || op == OP_EQ || op == OP_NE;
}

static void check_expr(Verify *V, const IRExpr *e) {
  VCHECK(V, e != NULL, "missing expression");
  VCHECK(V, (unsigned)e->type < TC_NUM_DTYPES, "bad type");
  switch (e->kind) {
  case IR_INT:
    VCHECK(V, !dtype_is_float(e->type), "integer constant of a float type");
    return;
  case IR_FLOAT:
    VCHECK(V, dtype_is_float(e->type), "float constant of a non-float type");
    return;
  case IR_VAR:
    check_var(V, e->var);
    VCHECK(V, e->type == e->var->type, "variable read with another type");
    return;
  case IR_LOAD:
    check_access(V, e->buf, e->idx, e->nidx);
    VCHECK(V, e->type == e->buf->dtype, "load of another type than its buffer");
    return;
  case IR_BIN:
    check_expr(V, e->a);
    check_expr(V, e->b);
    VCHECK(V, (unsigned)e->op < NUM_BINOPS, "bad binary operator");
    VCHECK(V, e->a->type == e->b->type,
           arena_printf(V->c->arena, "operands of %s of types %s and %s", binop_names[e->op],
                        dtype_info[e->a->type].name, dtype_info[e->b->type].name));
    if (is_compare(e->op))
      VCHECK(V, e->type == TC_BOOL, "comparison not bool");
    else if (e->op == OP_AND || e->op == OP_OR)
      VCHECK(V, e->type == TC_BOOL && e->a->type == TC_BOOL, "&& or || not on bools");
    else
      VCHECK(V, e->type == e->a->type, "arithmetic result of another type");
    return;
  case IR_UN:
    check_expr(V, e->a);
    VCHECK(V, e->op == OP_NOT ? e->type == TC_BOOL && e->a->type == TC_BOOL
                              : e->type == e->a->type,
           "unary operator types");
    return;
  case IR_SELECT:
    check_expr(V, e->a);
    check_expr(V, e->b);
    check_expr(V, e->c);
    VCHECK(V, e->a->type == TC_BOOL, "select condition not bool");
    VCHECK(V, e->b->type == e->type && e->c->type == e->type, "select arms of another type");
    return;
  case IR_CALL:
    VCHECK(V, (unsigned)e->builtin < NUM_BUILTINS, "bad builtin");
    VCHECK(V, e->nargs == builtin_info[e->builtin].arity, "builtin arity");
    VCHECK(V, dtype_is_float(e->type), "builtin of a non-float type");
    for (int i = 0; i < e->nargs; i++) {
      check_expr(V, e->args[i]);
      VCHECK(V, e->args[i]->type == e->type, "builtin argument of another type");
    }
    return;
  case IR_CAST:
    check_expr(V, e->a);
    return;
  case IR_FAIL:
    VCHECK(V, e->site >= 0 && e->site < V->f->sites.len, "failure site out of range");
    check_expr(V, e->a);
    check_expr(V, e->b);
    return;
  case NUM_IR_EXPR_KINDS:
    break;
  }
  VCHECK(V, false, "bad expression kind");
}

static void declare(Verify *V, IRVar *v, VarKind k) {
  VCHECK(V, v && v->kind == k, "declared variable of the wrong kind");
  VCHECK(V, !in_scope(V, v), arena_printf(V->c->arena, "%s declared twice", v->name));
  vec_push(V->c->arena, &V->scope, v);
}

static void check_stmt(Verify *V, const IRStmt *s) {
  VCHECK(V, s != NULL, "missing statement");
  int mark = V->scope.len;
  switch (s->kind) {
  case S_FOR:
    VCHECK(V, (unsigned)s->fkind <= FOR_GPU_THREAD, "bad loop kind");
    check_expr(V, s->lo);
    check_expr(V, s->extent);
    VCHECK(V, s->lo->type == TC_INT64 && s->extent->type == TC_INT64, "loop bounds not int64");
    declare(V, s->var, VAR_LOOP);
    check_stmt(V, s->body);
    V->scope.len = mark;
    return;
  case S_BLOCK:
    for (int i = 0; i < s->n; i++)
      check_stmt(V, s->stmts[i]);
    V->scope.len = mark;
    return;
  case S_STORE:
    check_access(V, s->buf, s->idx, s->nidx);
    check_expr(V, s->value);
    VCHECK(V, s->value->type == s->buf->dtype, "stored value of another type than its buffer");
    return;
  case S_DECL:
    check_expr(V, s->value);
    VCHECK(V, s->value->type == s->var->type, "declared value of another type");
    declare(V, s->var, VAR_LOCAL); /* visible to the rest of the enclosing block */
    return;
  case S_ASSIGN:
    check_expr(V, s->value);
    VCHECK(V, s->var && s->var->kind == VAR_LOCAL && in_scope(V, s->var),
           "assignment to an undeclared local");
    VCHECK(V, s->value->type == s->var->type, "assigned value of another type");
    return;
  case S_IF:
    check_expr(V, s->cond);
    VCHECK(V, s->cond->type == TC_BOOL, "if condition not bool");
    check_stmt(V, s->then);
    V->scope.len = mark;
    if (s->els)
      check_stmt(V, s->els);
    V->scope.len = mark;
    return;
  case S_CHECK:
    check_expr(V, s->cond);
    VCHECK(V, s->cond->type == TC_BOOL, "check condition not bool");
    VCHECK(V, s->value && s->value->kind == IR_FAIL, "check without a failure");
    VCHECK(V, V->locals.len == 0, "check inside an alloc (its early return would leak)");
    check_expr(V, s->value);
    return;
  case S_ALLOC: {
    int lmark = V->locals.len;
    VCHECK(V, s->buf && s->buf->local && s->buf->rank == 1 && s->buf->slot < 0,
           "alloc of a buffer that is not local");
    VCHECK(V, s->site >= 0 && s->site < V->f->sites.len &&
                  V->f->sites.data[s->site].kind == FAIL_NOMEM,
           "alloc without an out-of-memory failure site");
    check_expr(V, s->extent);
    VCHECK(V, s->extent->type == TC_INT64, "alloc extent not int64");
    for (int i = 0; i < V->locals.len; i++)
      VCHECK(V, V->locals.data[i] != s->buf, "local buffer allocated twice");
    vec_push(V->c->arena, &V->locals, s->buf);
    check_stmt(V, s->body);
    V->locals.len = lmark;
    V->scope.len = mark;
    return;
  }
  case NUM_IR_STMT_KINDS:
    break;
  }
  VCHECK(V, false, "bad statement kind");
}

void ir_verify(Ctx *c, IRFunc *f, const char *after) {
  Verify V = {.c = c, .f = f, .after = after, .flat = flat_after(after)};
  for (int i = 0; i < f->nbufs; i++)
    VCHECK(&V, f->bufs[i] && f->bufs[i]->slot == i, "buffer slot");
  if (f->body)
    check_stmt(&V, f->body);
}

static void after_pass(Ctx *c, IRFunc *f, const char *pass, Buf *dump) {
  ir_verify(c, f, pass);
  if (dump) {
    buf_printf(dump, "== after %s\n", pass);
    ir_print_func(dump, f);
  }
}

static IRFunc *run_cpu(Ctx *c, Def *d, Buf *dump, bool generic) {
  IRFunc *f = lower_def(c, d);
  after_pass(c, f, "lower", dump);
  sched_func(c, f);
  after_pass(c, f, "sched", dump);
  inline_func(c, f);
  after_pass(c, f, "inline", dump);
  fuse_func(c, f);
  after_pass(c, f, "fuse", dump);
  fold_func(c, f);
  after_pass(c, f, "fold", dump);
  tile_func(c, f, tile_host_vector_bytes());
  after_pass(c, f, "tile", dump);
  schedule_default(c, f);
  after_pass(c, f, "schedule", dump);
  flatten_func(c, f);
  after_pass(c, f, "flatten", dump);
  if (generic)
    specialize_func(c, f);
  else
    specialize_unit_func(c, f);
  after_pass(c, f, "specialize", dump);
  f->body = simplify_stmt(c, f->body);
  after_pass(c, f, "simplify", dump);
  return f;
}

IRFunc *pipeline_run(Ctx *c, Def *d, Buf *dump) { return run_cpu(c, d, dump, true); }

IRFunc *pipeline_run_unit(Ctx *c, Def *d, Buf *dump) { return run_cpu(c, d, dump, false); }

/* The CUDA target's list: the GPU schedule (kernels, blocks, threads) in
 * place of the CPU's; emit_cuda.c follows. */
IRFunc *pipeline_run_gpu(Ctx *c, Def *d, Buf *dump) {
  IRFunc *f = lower_def(c, d);
  after_pass(c, f, "lower", dump);
  schedule_gpu(c, f);
  after_pass(c, f, "schedule_gpu", dump);
  flatten_func(c, f);
  after_pass(c, f, "flatten", dump);
  specialize_func(c, f);
  after_pass(c, f, "specialize", dump);
  f->body = simplify_stmt(c, f->body);
  after_pass(c, f, "simplify", dump);
  return f;
}
