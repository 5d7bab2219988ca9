/* test_infer.c — range inference through the front end (lex, parse, sema):
 * the ranges, tensor sizes, zero fills and constraint records of TC's
 * examples, and the located errors for what cannot be inferred. */
#include "tc.h"
#include "unit.h"

typedef struct {
  Arena arena;
  jmp_buf jmp;
  tc_error err;
  Ctx c;
  SrcFile file;
  Def *def;
} T;

/* Compiles `src` through infer_def; returns the def named `name`, or NULL
 * with t->err filled. */
static Def *infer_src(T *t, const char *src, const char *name) {
  memset(t, 0, sizeof *t);
  t->file.name = "test.tc";
  t->file.text = src;
  t->file.len = strlen(src);
  t->c.arena = &t->arena;
  t->c.file = &t->file;
  t->c.err = &t->err;
  t->c.jmp = &t->jmp;
  t->arena.oom = &t->jmp;
  if (setjmp(t->jmp))
    return NULL;
  int n;
  Token *toks = lex_tokenize(&t->c, &n);
  Program *p = parse_program(&t->c, toks);
  sema_program(&t->c, p);
  for (int i = 0; i < p->ndefs; i++)
    infer_def(&t->c, p->defs[i]);
  t->def = sema_find_def(p, name);
  return t->def;
}

static char text[8192]; /* test-only scratch */

static const char *irs(const IRExpr *e) {
  Buf b = {0};
  ir_print_expr(&b, e);
  snprintf(text, sizeof text, "%s", b.s ? b.s : "");
  buf_free(&b);
  return text;
}

/* "[lo, hi)" of variable `name` of statement `si` */
static const char *range_of(Def *d, int si, const char *name) {
  Stmt *s = d->stmts[si];
  for (int i = 0; i < s->nvars; i++)
    if (!strcmp(s->vars[i]->name, name)) {
      Buf b = {0};
      buf_puts(&b, "[");
      ir_print_expr(&b, s->vars[i]->lo);
      buf_puts(&b, ", ");
      ir_print_expr(&b, s->vars[i]->hi);
      buf_puts(&b, ")");
      snprintf(text, sizeof text, "%s", b.s);
      buf_free(&b);
      return text;
    }
  return "(no such variable)";
}

static Tensor *tensor(Def *d, const char *name) {
  for (int i = 0; i < d->ntensors; i++)
    if (!strcmp(d->tensors[i]->name, name))
      return d->tensors[i];
  return NULL;
}

static const char *size_of(Def *d, const char *name, int dim) {
  Tensor *t = tensor(d, name);
  return t && t->size && t->size[dim] ? irs(t->size[dim]) : "(none)";
}

/* the constraint of statement si on tensor `name` dim `dim` (nth match) */
static Constraint *cons(Def *d, int si, const char *name, int dim, int nth) {
  Stmt *s = d->stmts[si];
  for (int i = 0; i < s->ncons; i++)
    if (!strcmp(s->cons[i].tensor->name, name) && s->cons[i].dim == dim && nth-- == 0)
      return &s->cons[i];
  return NULL;
}

static int count_unconsumed(Def *d, int si) {
  int n = 0;
  for (int i = 0; i < d->stmts[si]->ncons; i++)
    n += !d->stmts[si]->cons[i].consumed;
  return n;
}

#define ERR_HAS(t, s) CHECK(strstr((t).err.message, (s)) != NULL)

TEST(matmul) {
  T t;
  Def *d = infer_src(&t, "def matmul(float(M,K) A, float(K,N) B) -> (C) {\n"
                         "  C(m,n) +=! A(m,k) * B(k,n)\n"
                         "}\n", "matmul");
  CHECK(d != NULL);
  if (!d) {
    fprintf(stderr, "%s\n", t.err.diagnostic);
    return;
  }
  CHECK_STR(range_of(d, 0, "m"), "[0, z_M)");
  CHECK_STR(range_of(d, 0, "n"), "[0, z_N)");
  CHECK_STR(range_of(d, 0, "k"), "[0, z_K)");
  CHECK_STR(size_of(d, "C", 0), "z_M");
  CHECK_STR(size_of(d, "C", 1), "z_N");
  CHECK(!tensor(d, "C")->zero_fill);
  CHECK_INT(d->stmts[0]->ncons, 4);
  /* k is solved from both A and B in the same round: both consumed */
  CHECK_INT(count_unconsumed(d, 0), 0);
  Constraint *k = cons(d, 0, "B", 0, 0);
  CHECK(k && k->affine && k->coef[2] == 1 && k->coef[0] == 0 && !k->write && !k->conditional);
  CHECK(k && k->rest && k->rest->kind == IR_INT && k->rest->ival == 0);
  CHECK(k && !strcmp(irs(k->size), "z_K"));
  /* one size variable per symbol, shared */
  CHECK(d->syms[0]->var && !strcmp(d->syms[0]->var->name, "z_M") && d->syms[0]->var->kind == VAR_SIZE);
  CHECK(tensor(d, "A")->size[1]->var == tensor(d, "B")->size[0]->var);
  arena_free(&t.arena);
}

TEST(convolution_1d_solves_in_rounds) {
  T t;
  Def *d = infer_src(&t, "def conv(float(BS) B, float(KS) K) -> (A) {\n"
                         "  A(i) +=! B(i+k) * K(k)\n"
                         "}\n", "conv");
  CHECK(d != NULL);
  if (!d)
    return;
  CHECK_STR(range_of(d, 0, "k"), "[0, z_KS)");
  CHECK_STR(range_of(d, 0, "i"), "[0, z_BS - z_KS + 1)");
  CHECK_STR(size_of(d, "A", 0), "z_BS - z_KS + 1");
  CHECK(!tensor(d, "A")->zero_fill);
  Constraint *b = cons(d, 0, "B", 0, 0);
  CHECK(b && b->affine && b->coef[0] == 1 && b->coef[1] == 1 && b->consumed);
  CHECK_INT(count_unconsumed(d, 0), 0);
  arena_free(&t.arena);
}

TEST(strided_convolution) {
  T t;
  Def *d = infer_src(&t,
                     "def sconv(float(N,C,H,W) I, float(F,C,KH,KW) W1) -> (O) {\n"
                     "  O(n,f,h,w) +=! I(n,c,2*h+kh,2*w+kw) * W1(f,c,kh,kw)\n"
                     "}\n", "sconv");
  CHECK(d != NULL);
  if (!d) {
    fprintf(stderr, "%s\n", t.err.diagnostic);
    return;
  }
  CHECK_STR(range_of(d, 0, "h"), "[0, (z_H - z_KH) / 2 + 1)");
  CHECK_STR(range_of(d, 0, "w"), "[0, (z_W - z_KW) / 2 + 1)");
  CHECK_STR(range_of(d, 0, "c"), "[0, z_C)");
  CHECK_STR(size_of(d, "O", 2), "(z_H - z_KH) / 2 + 1");
  Constraint *k = cons(d, 0, "I", 2, 0);
  CHECK(k && k->affine && k->coef[2] == 2 && k->consumed);
  CHECK_INT(count_unconsumed(d, 0), 0);
  arena_free(&t.arena);
}

TEST(reversal_and_shift) {
  T t;
  Def *d = infer_src(&t, "def rev(float(N) A) -> (O, P) {\n"
                         "  O(i) = A(N-1-i)\n"
                         "  P(i) = A(i-1)\n"
                         "}\n", "rev");
  CHECK(d != NULL);
  if (!d) {
    fprintf(stderr, "%s\n", t.err.diagnostic);
    return;
  }
  CHECK_STR(range_of(d, 0, "i"), "[0, z_N)");
  CHECK(!tensor(d, "O")->zero_fill);
  Constraint *k = cons(d, 0, "A", 0, 0);
  CHECK(k && k->affine && k->coef[0] == -1 && !strcmp(irs(k->rest), "z_N - 1"));
  CHECK_STR(range_of(d, 1, "i"), "[1, z_N + 1)");
  CHECK_STR(size_of(d, "P", 0), "z_N + 1");
  CHECK(tensor(d, "P")->zero_fill);
  arena_free(&t.arena);
}

TEST(where_clauses_and_runtime_checks) {
  T t;
  Def *d = infer_src(&t, "def shift(float(N) A) -> (O) {\n"
                         "  O(i) = A(i+1) where i in 0:N\n"
                         "}\n", "shift");
  CHECK(d != NULL);
  if (!d)
    return;
  CHECK_STR(range_of(d, 0, "i"), "[0, z_N)");
  CHECK(d->stmts[0]->vars[0]->has_where);
  Constraint *k = cons(d, 0, "A", 0, 0);
  /* not used to solve i: left for the up-front run-time check */
  CHECK(k && k->affine && !k->consumed && !k->conditional && !strcmp(irs(k->rest), "1"));
  CHECK_STR(size_of(d, "O", 0), "z_N");
  CHECK(!tensor(d, "O")->zero_fill);
  arena_free(&t.arena);
}

TEST(guarded_reads_are_conditional) {
  T t;
  Def *d = infer_src(&t, "def g(float(N) A) -> (O) {\n"
                         "  O(i) = i > 0 ? A(i-1) : A(i) where i in 0:N\n"
                         "}\n", "g");
  CHECK(d != NULL);
  if (!d) {
    fprintf(stderr, "%s\n", t.err.diagnostic);
    return;
  }
  Constraint *k0 = cons(d, 0, "A", 0, 0), *k1 = cons(d, 0, "A", 0, 1);
  CHECK(k0 && k0->conditional && !k0->consumed);
  CHECK(k1 && k1->conditional && !k1->consumed);
  arena_free(&t.arena);
}

TEST(exists_clause_constrains) {
  T t;
  Def *d = infer_src(&t, "def e(float(N) A, float(M) B) -> (O) {\n"
                         "  O(i) = 1.0 where exists A(i)\n"
                         "  O(i) = O(i) + B(i)\n"
                         "}\n", "e");
  CHECK(d != NULL);
  if (!d) {
    fprintf(stderr, "%s\n", t.err.diagnostic);
    return;
  }
  CHECK_STR(range_of(d, 0, "i"), "[0, z_N)");
  Constraint *k = cons(d, 0, "A", 0, 0);
  CHECK(k && k->is_exists && k->consumed);
  CHECK_STR(size_of(d, "O", 0), "z_N");
  /* the later definition: the write bounds i together with the reads */
  CHECK_STR(range_of(d, 1, "i"), "[0, min(z_M, z_N))");
  Constraint *w = cons(d, 1, "O", 0, 0);
  CHECK(w && w->write && w->consumed);
  arena_free(&t.arena);
}

TEST(typed_output_bounds_and_zero_fill) {
  T t;
  Def *d = infer_src(&t, "def ty(float(N) A, float(M) B) -> (float(N) O, float(M) P) {\n"
                         "  O(i) = A(i)\n"
                         "  P(i) = A(i)\n"
                         "}\n", "ty");
  CHECK(d != NULL);
  if (!d) {
    fprintf(stderr, "%s\n", t.err.diagnostic);
    return;
  }
  CHECK_STR(range_of(d, 0, "i"), "[0, z_N)");
  CHECK(!tensor(d, "O")->zero_fill);
  CHECK_STR(range_of(d, 1, "i"), "[0, min(z_M, z_N))");
  CHECK(tensor(d, "P")->zero_fill);
  Constraint *w = cons(d, 1, "P", 0, 0);
  CHECK(w && w->write && w->consumed);
  arena_free(&t.arena);
}

TEST(boundary_conditions_do_not_constrain) {
  T t;
  Def *d = infer_src(&t, "def blur(float(H,W) I : clamp) -> (O) {\n"
                         "  O(y,x) = I(y-1,x) + I(y+1,x) where y in 0:H, x in 0:W\n"
                         "}\n", "blur");
  CHECK(d != NULL);
  if (!d) {
    fprintf(stderr, "%s\n", t.err.diagnostic);
    return;
  }
  CHECK_INT(d->stmts[0]->ncons, 0);
  CHECK_STR(size_of(d, "O", 0), "z_H");
  arena_free(&t.arena);
  d = infer_src(&t, "def cs(float(N,H) I : constant(0) [H]) -> (O) {\n"
                    "  O(n,h) = I(n,h-1)\n"
                    "}\n", "cs");
  CHECK(d == NULL);
  ERR_HAS(t, "cannot infer the range of index 'h'");
  arena_free(&t.arena);
  d = infer_src(&t, "def cs(float(N,H) I : constant(0) [H]) -> (O) {\n"
                    "  O(n,h) = I(n,h-1) where h in 0:H\n"
                    "}\n", "cs");
  CHECK(d != NULL);
  if (d) {
    CHECK_INT(d->stmts[0]->ncons, 1);
    CHECK_STR(range_of(d, 0, "n"), "[0, z_N)");
  }
  arena_free(&t.arena);
}

TEST(gather) {
  T t;
  Def *d = infer_src(&t, "def gather(float(V,D) E, int32(B,L) Idx) -> (O) {\n"
                         "  O(b,l,d) = E(Idx(b,l), d)\n"
                         "}\n", "gather");
  CHECK(d != NULL);
  if (!d) {
    fprintf(stderr, "%s\n", t.err.diagnostic);
    return;
  }
  CHECK_STR(range_of(d, 0, "b"), "[0, z_B)");
  CHECK_STR(range_of(d, 0, "l"), "[0, z_L)");
  CHECK_STR(range_of(d, 0, "d"), "[0, z_D)");
  Constraint *e0 = cons(d, 0, "E", 0, 0);
  CHECK(e0 && !e0->affine && !e0->consumed && e0->rest == NULL);
  CHECK(cons(d, 0, "E", 1, 0)->consumed && cons(d, 0, "Idx", 0, 0)->consumed &&
        cons(d, 0, "Idx", 1, 0)->consumed);
  CHECK_INT(d->stmts[0]->ncons, 4);
  arena_free(&t.arena);
}

TEST(temporaries_have_symbolic_sizes) {
  T t;
  Def *d = infer_src(&t, "def tmp(float(N,K) A) -> (O) {\n"
                         "  S(n) +=! A(n,k)\n"
                         "  T(i) = S(i+1) - S(i)\n"
                         "  O(i) = T(i) * 2.0\n"
                         "}\n", "tmp");
  CHECK(d != NULL);
  if (!d) {
    fprintf(stderr, "%s\n", t.err.diagnostic);
    return;
  }
  CHECK_STR(size_of(d, "S", 0), "z_N");
  CHECK_STR(range_of(d, 1, "i"), "[0, z_N - 1)");
  CHECK_STR(size_of(d, "T", 0), "z_N - 1");
  CHECK_STR(range_of(d, 2, "i"), "[0, z_N - 1)");
  CHECK_INT(tensor(d, "T")->role, T_TEMP);
  Buf b = {0};
  infer_print_def(&b, d);
  CHECK(b.s && strstr(b.s, "    i in [0, z_N - 1)\n"));
  CHECK(b.s && strstr(b.s, "  temp T float32[z_N - 1]\n"));
  CHECK(b.s && strstr(b.s, "  output O float32[z_N - 1]\n"));
  buf_free(&b);
  arena_free(&t.arena);
}

TEST(constants_and_divided_sizes) {
  T t;
  Def *d = infer_src(&t, "def half(float(N) A, float(3) W) -> (O) {\n"
                         "  O(i) +=! A(2*i + N/2 + k) * W(k)\n"
                         "}\n", "half");
  CHECK(d != NULL);
  if (!d) {
    fprintf(stderr, "%s\n", t.err.diagnostic);
    return;
  }
  CHECK_STR(range_of(d, 0, "k"), "[0, 3)");
  /* i = ceil(-(N/2) / 2) is the first i reading A in bounds (negative for N >= 4) */
  CHECK_STR(range_of(d, 0, "i"), "[(1 - z_N / 2) / 2, (z_N - z_N / 2 + 1) / 2 - 1)");
  /* ... so the write to O is checked before the statement runs */
  Constraint *w = cons(d, 0, "O", 0, 0);
  CHECK(w && w->write && w->affine && !w->consumed && w->coef[0] == 1);
  CHECK(w && !strcmp(irs(w->size), "(z_N - z_N / 2 + 1) / 2 - 1"));
  CHECK(tensor(d, "O")->zero_fill);
  arena_free(&t.arena);
  d = infer_src(&t, "def down(float(N) A) -> (O) {\n"
                    "  O(i) = A(2*i)\n"
                    "}\n", "down");
  CHECK(d != NULL);
  if (d) {
    CHECK_STR(range_of(d, 0, "i"), "[0, (z_N + 1) / 2)");
    CHECK(!tensor(d, "O")->zero_fill);
  }
  arena_free(&t.arena);
}

TEST(where_on_reduction_and_constant_subscripts) {
  T t;
  Def *d = infer_src(&t, "def w(float(N,M) A) -> (O) {\n"
                         "  O(i) +=! A(i, j) + A(0, N - 1) where j in 1:M\n"
                         "}\n", "w");
  CHECK(d != NULL);
  if (!d) {
    fprintf(stderr, "%s\n", t.err.diagnostic);
    return;
  }
  CHECK_STR(range_of(d, 0, "j"), "[1, z_M)");
  CHECK_STR(range_of(d, 0, "i"), "[0, z_N)");
  /* A(i, j): dim 1 has only where-solved j: checked; A(0, N-1): both checked */
  CHECK(!cons(d, 0, "A", 1, 0)->consumed);
  CHECK(cons(d, 0, "A", 0, 0)->consumed);
  CHECK(!cons(d, 0, "A", 0, 1)->consumed && !cons(d, 0, "A", 1, 1)->consumed);
  CHECK_INT(count_unconsumed(d, 0), 3);
  arena_free(&t.arena);
}

TEST(error_coupled) {
  T t;
  Def *d = infer_src(&t, "def cp(float(N,M) I) -> (O) {\n"
                         "  O(i) +=! I(i+j, i-j)\n"
                         "}\n", "cp");
  CHECK(d == NULL);
  CHECK_STR(t.err.message, "cannot infer the range of 'i': it only appears together with 'j' in "
                           "I(i + j, i - j); add a where clause, e.g. 'where i in 0:N'");
  CHECK_INT(t.err.line, 2);
  CHECK_INT(t.err.col, 12);
  arena_free(&t.arena);
}

TEST(error_unconstrained) {
  T t;
  Def *d = infer_src(&t, "def u(float(N) A) -> (O) {\n"
                     "  O(i) = float(i)\n"
                     "}\n", "u");
  CHECK(d == NULL);
  CHECK_STR(t.err.message, "cannot infer the range of index 'i': no read constrains it; add a "
                           "where clause, e.g. 'where i in 0:N'");
  CHECK_INT(t.err.line, 2);
  CHECK_INT(t.err.col, 5);
  arena_free(&t.arena);
  d = infer_src(&t, "def u(float(N) A) -> (O) {\n"
                    "  O(i) +=! A(k*k) * float(i) where i in 0:N\n"
                    "}\n", "u");
  CHECK(d == NULL);
  CHECK_STR(t.err.message, "cannot infer the range of index 'k': no read constrains it; add a "
                           "where clause, e.g. 'where k in 0:N'");
  arena_free(&t.arena);
}

TEST(error_empty_range) {
  T t;
  Def *d = infer_src(&t, "def em(float(N) A) -> (O) {\n"
                         "  O(i) = A(i) where i in 3:1\n"
                         "}\n", "em");
  CHECK(d == NULL);
  CHECK_STR(t.err.message, "the range of 'i' is empty: [3, 1)");
  CHECK_INT(t.err.line, 2);
  arena_free(&t.arena);
  d = infer_src(&t, "def em(float(4) A, float(9) K) -> (O) {\n"
                    "  O(i) +=! A(i + k) * K(k)\n"
                    "}\n", "em");
  CHECK(d == NULL);
  CHECK_STR(t.err.message, "the range of 'i' is empty: [0, -4): no value keeps every access in bounds: A((i + k))");
  arena_free(&t.arena);
}

TEST(error_negative_lhs_start) {
  T t;
  Def *d = infer_src(&t, "def ng(float(N) A) -> (O) {\n"
                         "  O(i) = A(i+1)\n"
                         "}\n", "ng");
  CHECK(d == NULL);
  ERR_HAS(t, "the range of left-hand index 'i' is [-1, N - 1), which starts below 0");
  arena_free(&t.arena);
}

TEST(affine_linearization) {
  T t;
  Def *d = infer_src(&t, "def af(float(N) A, int32(N) B) -> (O) {\n"
                         "  O(i) +=! A(int64(3*(i - k) + N*2 - (k+k))) + A(i*k) + A(B(i)) + "
                         "A(-(i) + N - 1 + 0*k) where k in 0:1\n"
                         "}\n", "af");
  CHECK(d != NULL);
  if (!d) {
    fprintf(stderr, "%s\n", t.err.diagnostic);
    return;
  }
  Stmt *s = d->stmts[0];
  int64_t coef[2];
  IRExpr *rest;
  Constraint *k0 = cons(d, 0, "A", 0, 0);
  CHECK(infer_affine(&t.c, s, k0->sub, coef, &rest));
  CHECK_INT(coef[0], 3);
  CHECK_INT(coef[1], -5);
  CHECK_STR(irs(rest), "2 * z_N");
  CHECK(!infer_affine(&t.c, s, cons(d, 0, "A", 0, 1)->sub, coef, &rest));
  CHECK(!infer_affine(&t.c, s, cons(d, 0, "A", 0, 2)->sub, coef, &rest));
  CHECK(infer_affine(&t.c, s, cons(d, 0, "A", 0, 3)->sub, coef, &rest));
  CHECK_INT(coef[0], -1);
  CHECK_INT(coef[1], 0);
  CHECK_STR(irs(rest), "z_N - 1");
  arena_free(&t.arena);
}

RUN_TESTS()
