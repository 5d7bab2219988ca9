/* test_sched.c — the schedule language (sched.c): each directive's loop nest
 * on the IR text after the "sched" pass, the autoscheduler leaving scheduled
 * nests alone, errors found when applying, and `explain` printing a schedule
 * that compiles back to the same kernel.  Results against the interpreter
 * are tests/programs/schedule_*.tc's job. */
#include "tensorc.h"
#include "unit.h"

#include <dirent.h>
#include <stdbool.h>

static tc_context *ctx;

static tc_program *compile(const char *src, tc_error *err) {
  tc_program *p = NULL;
  if (tc_compile(ctx, "s.tc", src, strlen(src), &p, err) != TC_OK)
    return NULL;
  return p;
}

/* The IR after pass `pass` (malloc'ed), or NULL with the error in *err. */
static char *ir_after(const char *src, const char *pass, tc_error *err) {
  tc_program *p = compile(src, err);
  if (!p)
    return NULL;
  char *dump = NULL;
  tc_status st = tc_dump_passes(p, 0, &dump, err);
  tc_program_free(p);
  if (st != TC_OK)
    return NULL;
  char head[64];
  snprintf(head, sizeof head, "== after %s\n", pass);
  char *s = strstr(dump, head), *r = NULL;
  if (s) {
    s += strlen(head);
    char *e = strstr(s, "== after ");
    size_t n = e ? (size_t)(e - s) : strlen(s);
    r = malloc(n + 1);
    memcpy(r, s, n);
    r[n] = 0;
  }
  tc_free(dump);
  return r;
}

static char *sched_ir(const char *src) {
  tc_error err;
  char *r = ir_after(src, "sched", &err);
  if (!r)
    fprintf(stderr, "%s\n", err.message);
  return r;
}

static int count(const char *s, const char *sub) {
  int n = 0;
  for (const char *p = s ? strstr(s, sub) : NULL; p; p = strstr(p + 1, sub))
    n++;
  return n;
}

/* Whether a occurs before b in s (both present). */
static bool before(const char *s, const char *a, const char *b) {
  const char *x = s ? strstr(s, a) : NULL, *y = s ? strstr(s, b) : NULL;
  return x && y && x < y;
}

#define PW "def f(float(M,N) A) -> (B) {\n  B(i,j) = A(i,j) * 2.0\n}\n"

TEST(split_shrinks_the_last_iteration) {
  char *ir = sched_ir(PW "schedule f {\n  B.split(i, io, ii, 4)\n}\n");
  CHECK(count(ir, "for s0_io in [0, (z_M + 3) / 4) {") == 1);
  CHECK(count(ir, "for s1_ii in [0, min(4, z_M - 4 * s0_io)) {") == 1);
  CHECK(count(ir, "b_B[4 * s0_io + s1_ii, x0_j] = b_A[4 * s0_io + s1_ii, x0_j] * 2.0f") == 1);
  CHECK(before(ir, "s1_ii in", "x0_j in"));
  free(ir);
}

TEST(reorder_is_innermost_first) {
  char *ir = sched_ir(PW "schedule f {\n  B.reorder(i, j)\n}\n");
  CHECK(before(ir, "for x0_j in [0, z_N)", "for x0_i in [0, z_M)"));
  free(ir);
}

TEST(split_inner_outside_its_outer_is_guarded) {
  char *ir = sched_ir(PW "schedule f {\n  B.split(j, jo, ji, 4).reorder(jo, ji)\n}\n");
  CHECK(before(ir, "for s1_ji in [0, 4)", "for s0_jo in [0, (z_N + 3) / 4)"));
  CHECK(count(ir, "if s1_ji < min(4, z_N - 4 * s0_jo) {") == 1);
  free(ir);
}

TEST(tile_orders_outer_tiles_then_points) {
  char *ir = sched_ir(PW "schedule f {\n  B.tile(j, i, jo, io, ji, ii, 8, 2)\n}\n");
  CHECK(before(ir, "_io in [0, (z_M + 1) / 2)", "_jo in [0, (z_N + 7) / 8)"));
  CHECK(before(ir, "_jo in [0, (z_N + 7) / 8)", "_ii in [0, min(2, z_M - 2 * "));
  CHECK(before(ir, "_ii in [0, min(2, z_M - 2 * ", "_ji in [0, min(8, z_N - 8 * "));
  free(ir);
}

TEST(vectorize_unroll_parallel_mark_loops) {
  char *ir = sched_ir(PW "schedule f {\n  B.parallel(i).vectorize(j, 8)\n}\n");
  CHECK(count(ir, "for x0_i in [0, z_M) parallel {") == 1);
  CHECK(count(ir, "for s0_j in [0, (z_N + 7) / 8) {") == 1);
  CHECK(count(ir, "for s1_j_vi in [0, min(8, z_N - 8 * s0_j)) vectorized {") == 1);
  free(ir);
  ir = sched_ir(PW "schedule f {\n  B.unroll(j, 3)\n}\n");
  CHECK(count(ir, "for s1_j_ui in [0, 3) unrolled {") == 1);
  CHECK(count(ir, "if s1_j_ui < min(3, z_N - 3 * s0_j) {") == 1);
  free(ir);
}

TEST(fuse_makes_one_loop) {
  char *ir = sched_ir(PW "schedule f {\n  B.fuse(j, i, ij).parallel(ij)\n}\n");
  CHECK(count(ir, "for s0_ij in [0, z_M * z_N) parallel {") == 1);
  CHECK(count(ir, "b_B[s0_ij / z_N, s0_ij % z_N] = b_A[s0_ij / z_N, s0_ij % z_N] * 2.0f") == 1);
  free(ir);
  /* an inner loop whose extent changes with the outer one does not fuse */
  tc_error err;
  CHECK(ir_after(PW "schedule f {\n  B.split(j, jo, ji, 4).fuse(ji, jo, j)\n}\n", "sched",
                 &err) == NULL);
  CHECK(strstr(err.message, "fuse: the extent of 'ji' changes with 'jo'") != NULL);
}

#define MM "def mm(float(M,K) A, float(K,N) B) -> (C) {\n  C(i,j) +=! A(i,k) * B(k,j)\n}\n"

TEST(reduction_keeps_its_accumulator_inside) {
  char *ir = sched_ir(MM "schedule mm {\n  C.split(k, ko, ki, 4).parallel(i)\n}\n");
  CHECK(count(ir, "for x0_i in [0, z_M) parallel {") == 1);
  CHECK(before(ir, "float32 acc0 = 0.0f", "for s1_ko in [0, (z_K + 3) / 4)"));
  CHECK(before(ir, "for s2_ki in [0, min(4, z_K - 4 * s1_ko))",
               "acc0 = acc0 + b_A[x0_i, 4 * s1_ko + s2_ki]"));
  CHECK(count(ir, "b_C[x0_i, x0_j] = acc0") == 1);
  free(ir);
}

TEST(reduction_outside_lhs_accumulates_in_memory) {
  char *ir = sched_ir(MM "schedule mm {\n  C.reorder(j, k, i).vectorize(j)\n}\n");
  /* initialisation, then i, k, j updating C in place */
  CHECK(before(ir, "b_C[x0_i, x0_j] = 0.0f", "for x0_k in [0, z_K)"));
  CHECK(count(ir, "for x0_j in [0, z_N) vectorized") == 2);
  CHECK(before(ir, "for x0_k in [0, z_K)", "= b_C[x0_i, x0_j] + "));
  CHECK(count(ir, "b_C[x0_i, x0_j] = b_C[x0_i, x0_j] + b_A[x0_i, x0_k] * b_B[x0_k, x0_j]") == 1);
  CHECK(count(ir, "acc0") == 0);
  free(ir);
}

#define BLUR                                                                  \
  "def blur(float(H,W) I) -> (O) {\n"                                         \
  "  T(y,x) = I(y,x) + I(y,x+1)\n"                                            \
  "  O(y,x) = T(y,x) + T(y+1,x)\n"                                            \
  "}\n"

TEST(compute_at_computes_the_region_in_a_local_buffer) {
  char *ir = sched_ir(BLUR "schedule blur {\n  O.split(y, yo, yi, 8)\n  T.compute_at(O, yo)\n}\n");
  /* rows 8*yo .. 8*yo + (rows of this strip), one more below, clipped to T */
  CHECK(count(ir, "int64 cr") >= 4);
  CHECK(count(ir, "= max(8 * s0_yo, 0)") == 1);
  CHECK(count(ir, "alloc float32 lb") == 1);
  CHECK(before(ir, "for s0_yo in", "alloc float32 lb"));
  CHECK(before(ir, "alloc float32 lb", "for x0_y in"));
  CHECK(before(ir, "for x0_y in", "for s1_yi in"));
  CHECK(count(ir, "b_T[") == 1); /* the signature: T's reads and writes use lb */
  free(ir);
}

TEST(inline_and_compute_root) {
  char *ir = sched_ir(BLUR "schedule blur {\n  T.inline()\n}\n");
  CHECK(count(ir, "b_T[") == 1); /* the signature */
  CHECK(count(ir, "b_O[x1_y, x1_x] = b_I[x1_y, x1_x] + b_I[x1_y, x1_x + 1] + "
                  "(b_I[x1_y + 1, x1_x] + b_I[x1_y + 1, x1_x + 1])") +
            count(ir, "b_O[x1_y, x1_x] = b_I[x1_y, x1_x] + b_I[x1_y, x1_x + 1] + "
                      "b_I[x1_y + 1, x1_x] + b_I[x1_y + 1, x1_x + 1]") ==
        1);
  free(ir);
  /* compute_root: the nest as written, and the autoscheduler leaves it alone */
  tc_error err;
  ir = ir_after(BLUR "schedule blur {\n  T.compute_root()\n}\n", "schedule", &err);
  CHECK(count(ir, "for x0_y in [0, z_H) {") == 1);
  CHECK(count(ir, "for x1_y in [0, z_H - 1) parallel") == 1);
  free(ir);
}

TEST(scheduled_stages_are_left_alone) {
  tc_error err;
  char *ir = ir_after(PW "schedule f {\n  B.split(i, io, ii, 4)\n}\n", "schedule", &err);
  CHECK(ir && count(ir, "parallel") == 0 && count(ir, "vectorized") == 0);
  free(ir);
  ir = ir_after(PW, "schedule", &err);
  CHECK(count(ir, "parallel") == 1 && count(ir, "vectorized") == 1);
  free(ir);
}

#define SOFTMAX                                                               \
  "def sm(float(N,D) X) -> (O) {\n"                                            \
  "  mx(n) max=! X(n,d)\n"                                                    \
  "  e(n,d) = exp(X(n,d) - mx(n))\n"                                          \
  "  s(n) +=! e(n,d)\n"                                                       \
  "  O(n,d) = e(n,d) / s(n)\n"                                                \
  "}\n"

static char *ir_of(const char *src, const char *pass) {
  tc_error err;
  char *r = ir_after(src, pass, &err);
  if (!r)
    fprintf(stderr, "%s\n", err.message);
  return r;
}

TEST(gemm_gives_the_tiles_and_blocks) {
  char *ir = ir_of(MM "schedule mm {\n  C.gemm(i, j, k, 3, 4, 8, 12, 6)\n}\n", "tile");
  CHECK(count(ir, "alloc float32 lb") == 3); /* panels of B and A, a tile's accumulators */
  CHECK(count(ir, "[96] {") == 1);           /* B's panel: 12 columns by 8 steps */
  CHECK(count(ir, "[12] {") == 1);           /* 3 x 4 accumulators */
  CHECK(count(ir, "[0, 3) unrolled") == 4);  /* packing A, loading, updating, storing the tile */
  CHECK(count(ir, "[0, 4) vectorized") == 4); /* packing B, loading, updating, storing */
  CHECK(count(ir, "min(8, z_K - 8 * ") == 1);  /* blocks of 8 reduction steps */
  CHECK(count(ir, "min(3, ") >= 1);            /* panels of 12 / 4 = 3 tiles */
  CHECK(count(ir, "min(2, ") >= 1);            /* chunks of 6 / 3 = 2 tiles of packed A */
  free(ir);
  /* without the directive: the autoscheduler's own tiles */
  ir = ir_of(MM, "tile");
  CHECK(count(ir, "[12] {") == 0 && count(ir, "alloc float32 lb") == 3);
  free(ir);
  /* rows along p instead of m: A is packed with p's subscript clamped */
  const char *r = "def r(float(P,M,K) A, float(K,N) B) -> (C) {\n"
                  "  C(p,m,n) +=! A(p,m,k) * B(k,n)\n}\n";
  char src[512];
  snprintf(src, sizeof src, "%sschedule r {\n  C.gemm(p, n, k, 2, 8, 16, 16, 4)\n}\n", r);
  ir = ir_of(src, "tile");
  CHECK(count(ir, "= b_A[min(") == 1);
  free(ir);
  ir = ir_of(r, "tile");
  CHECK(count(ir, "= b_A[min(") == 0 && count(ir, "b_A[") >= 2);
  free(ir);
}

TEST(compute_with_and_store_at_steer_fuse_and_fold) {
  const char *all = "schedule sm {\n  mx.store_at(mx, n)\n  e.compute_with(mx, n).store_at(mx, n)\n"
                    "  s.compute_with(mx, n).store_at(mx, n)\n  O.compute_with(mx, n)\n}\n";
  char *full = malloc(strlen(SOFTMAX) + strlen(all) + 1);
  strcpy(full, SOFTMAX);
  strcat(full, all);
  char *ir = ir_of(full, "fold");
  free(full);
  CHECK(count(ir, "for x0_n in") == 1 && count(ir, "for x3_n in") == 0); /* one loop over n */
  CHECK(count(ir, "alloc float32 lb") == 3);                             /* mx, e, s per row */
  CHECK(count(ir, "b_e[") == 1);                                         /* the signature */
  free(ir);
  /* e without store_at: stored whole; O with a directive of its own: its own loop */
  ir = ir_of(SOFTMAX "schedule sm {\n  e.compute_with(mx, n)\n  s.compute_with(mx, n)\n"
                     "  O.compute_root()\n}\n", "fold");
  CHECK(count(ir, "for x0_n in") == 1 && count(ir, "for x3_n in") == 1);
  CHECK(count(ir, "b_e[x1_n, x1_d] = ") + count(ir, "b_e[x0_n, x1_d] = ") == 1);
  CHECK(count(ir, "alloc float32 lb") == 1); /* mx only (no directive: the autoscheduler's) */
  free(ir);
}

static void expect_error(const char *src, const char *msg) {
  tc_error err;
  char *ir = ir_after(src, "sched", &err);
  CHECK(ir == NULL);
  if (!ir && !strstr(err.diagnostic, msg))
    fprintf(stderr, "error was: %s\n  expected: %s\n", err.diagnostic, msg);
  CHECK(!ir && strstr(err.diagnostic, msg));
  free(ir);
}

TEST(errors_of_gemm_compute_with_store_at_when_applying) {
  /* not a product of two factors */
  expect_error("def f(float(M,K) A, float(K,N) B) -> (C) {\n  C(i,j) +=! A(i,k) + B(k,j)\n}\n"
               "schedule f {\n  C.gemm(i, j, k, 4, 8, 64, 64, 8)\n}\n",
               "s.tc:5:5: error: gemm: this stage is not a contraction that tile.c tiles");
  /* rows along a loop that both factors read */
  expect_error("def f(float(G,M,K) A, float(G,K,N) B) -> (C) {\n"
               "  C(g,i,j) +=! A(g,i,k) * B(g,k,j)\n}\n"
               "schedule f {\n  C.gemm(g, j, k, 4, 8, 64, 64, 8)\n}\n",
               "gemm: 'g' cannot be the rows of the tiles");
  /* a nest over another range */
  expect_error("def f(float(M) A) -> (B) {\n  T(i) = A(i) * 2.0\n  B(i) = T(i) + T(i+1)\n}\n"
               "schedule f {\n  B.compute_with(T, i)\n}\n", /* T is not inlined: named */
               "s.tc:6:5: error: compute_with: this stage's loop nest cannot join that of T");
  /* the nest named is not right before */
  expect_error("def f(float(M,K) A, float(K,N) B) -> (C, D) {\n  C(i,j) +=! A(i,k) * B(k,j)\n"
               "  D(i,j) = C(i,j) * 2.0\n}\nschedule f {\n  D.compute_with(C, i)\n}\n",
               "compute_with: the loop nest of C does not come right before this stage's");
  /* a temporary read outside the loop it is held in */
  expect_error("def f(float(M) A) -> (B, C) {\n  T(i) = A(i) * 2.0\n  B(i) = T(i) + 1.0\n"
               "  C(i) = T(i) * 3.0\n}\nschedule f {\n  T.store_at(T, i)\n  C.compute_root()\n}\n",
               "store_at: T cannot be held per iteration of that loop");
}

TEST(errors_when_applying) {
  /* the extent of an unrolled loop is known only after range inference */
  expect_error(PW "schedule f {\n  B.unroll(j)\n}\n",
               "s.tc:5:5: error: unroll: the extent of 'j' is not a constant; give a factor");
  expect_error("def f(float(M,3) A) -> (B) {\n  B(i,j) = A(i,j)\n}\n"
               "schedule f {\n  B.unroll(i, 65)\n}\n",
               "unroll: 'i_ui' has 65 iterations; at most 64 unroll");
  /* a constant extent unrolls whole */
  char *ir = sched_ir("def f(float(M,3) A) -> (B) {\n  B(i,j) = A(i,j)\n}\n"
                      "schedule f {\n  B.unroll(j)\n}\n");
  CHECK(count(ir, "for x0_j in [0, 3) unrolled {") == 1);
  free(ir);
}

/* explain's schedule block for src + sched, pasted after src in place of
 * sched, gives the same C. */
static void check_paste_back(const char *src, const char *sched, const char *want_line) {
  tc_error err;
  char *full = malloc(strlen(src) + strlen(sched) + 1);
  strcpy(full, src);
  strcat(full, sched);
  tc_program *p = compile(full, &err);
  free(full);
  CHECK(p != NULL);
  if (!p)
    return;
  char *ex = NULL, *c1 = NULL, *c2 = NULL;
  CHECK(tc_explain(p, 0, NULL, 0, &ex, &err) == TC_OK);
  CHECK(tc_emit(p, 0, TC_TARGET_C, &c1, &err) == TC_OK);
  tc_program_free(p);
  const char *blk = ex ? strstr(ex, "pasted back):\n") : NULL;
  if (blk)
    blk += strlen("pasted back):");
  const char *end = blk ? strstr(blk, "\n}\n") : NULL;
  CHECK(blk && end);
  if (!blk || !end) {
    tc_free(ex);
    tc_free(c1);
    return;
  }
  CHECK(count(blk, want_line) >= 1);
  size_t n = strlen(src), m = (size_t)(end + 3 - blk);
  char *both = malloc(n + m + 1);
  memcpy(both, src, n);
  memcpy(both + n, blk, m);
  both[n + m] = 0;
  p = compile(both, &err);
  CHECK(p != NULL);
  if (p) {
    CHECK(tc_emit(p, 0, TC_TARGET_C, &c2, &err) == TC_OK);
    CHECK(c1 && c2 && !strcmp(c1, c2));
    tc_program_free(p);
  }
  free(both);
  tc_free(ex);
  tc_free(c1);
  tc_free(c2);
}

TEST(explain_prints_a_schedule_that_pastes_back) {
  check_paste_back(PW, "", "  B.parallel(i).vectorize(j)\n");
  check_paste_back("def rs(float(N,D) X) -> (s, O) {\n  s(n) +=! X(n,d)\n"
                   "  O(d,n) = X(n,d) - s(n)\n}\n", "",
                   "  O.parallel(d).vectorize(n)\n");
  /* the user's own schedule comes back as written */
  check_paste_back(BLUR, "schedule blur {\n  O.split(y, yo, yi, 8).parallel(yo)\n"
                         "  T.compute_at(O, yo)\n}\n",
                   "  T.compute_at(O, yo)\n");
  /* the register tiles of a contraction, a fused and folded row pipeline */
  check_paste_back(MM, "", "  C.gemm(i, j, k, ");
  check_paste_back(SOFTMAX, "", "  e.compute_with(mx, n).store_at(mx, n)\n");
  check_paste_back(SOFTMAX, "", "  O.compute_with(mx, n)\n");
  check_paste_back(SOFTMAX, "", "  mx.store_at(mx, n)\n");
  /* and edited: e stored whole, O in a loop of its own */
  check_paste_back(SOFTMAX, "schedule sm {\n  e.compute_with(mx, n)\n  s.compute_with(mx, n)\n"
                            "  O.parallel(n)\n}\n", "  e.compute_with(mx, n)\n");
}

static char *read_text(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *t = n >= 0 ? malloc((size_t)n + 1) : NULL;
  if (t && fread(t, 1, (size_t)n, f) != (size_t)n) {
    free(t);
    t = NULL;
  }
  if (t)
    t[n] = 0;
  fclose(f);
  return t;
}

typedef struct Pasted {
  int same, differ;
  int gemm, with, store; /* directives of the autoscheduler's passes compared */
} Pasted;

/* Every def of the .tc files in dirname: pasting explain's schedule back
 * gives the same C, unless it names a 1-d split or a reciprocal
 * (docs/language.md); no comment stands for a tiled, fused or folded stage. */
static void paste_back_dir(const char *dirname, Pasted *P) {
  DIR *dir = opendir(dirname);
  CHECK(dir != NULL);
  for (struct dirent *e; dir && (e = readdir(dir));) {
    size_t n = strlen(e->d_name);
    if (n < 4 || strcmp(e->d_name + n - 3, ".tc"))
      continue;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dirname, e->d_name);
    char *src = read_text(path);
    tc_error err;
    tc_program *p = src ? compile(src, &err) : NULL;
    for (int k = 0; p && k < tc_program_num_entries(p); k++) {
      const char *name = tc_program_entry_name(p, k);
      char own[160], *ex = NULL, *c1 = NULL, *c2 = NULL;
      snprintf(own, sizeof own, "schedule %s {", name);
      if (strstr(src, own) || tc_explain(p, k, NULL, 0, &ex, &err) != TC_OK)
        continue;
      char *blk = strstr(ex, "pasted back):\n"), *end = blk ? strstr(blk, "\n}\n") : NULL;
      if (blk && end && tc_emit(p, k, TC_TARGET_C, &c1, &err) == TC_OK) {
        blk += strlen("pasted back):");
        end[3] = 0;
        CHECK(!strstr(blk, "register-tiled") && !strstr(blk, "fused into"));
        if (!strstr(blk, "reciprocal") && !strstr(blk, ".split(")) {
          P->gemm += count(blk, ".gemm(");
          P->with += count(blk, ".compute_with(");
          P->store += count(blk, ".store_at(");
          char *both = malloc(strlen(src) + strlen(blk) + 1);
          strcpy(both, src);
          strcat(both, blk);
          tc_program *q = compile(both, &err);
          int kq = q ? tc_program_find_entry(q, name) : -1;
          if (kq >= 0 && tc_emit(q, kq, TC_TARGET_C, &c2, &err) == TC_OK && !strcmp(c1, c2))
            P->same++;
          else {
            P->differ++;
            fprintf(stderr, "%s %s: pasting back\n%s\ngives other code\n", path, name, blk);
          }
          tc_program_free(q);
          free(both);
        }
      }
      tc_free(ex);
      tc_free(c1);
      tc_free(c2);
    }
    tc_program_free(p);
    free(src);
  }
  if (dir)
    closedir(dir);
}

TEST(explain_pastes_back_over_the_test_programs) {
  Pasted P = {0};
  paste_back_dir("tests/programs", &P);
  paste_back_dir("examples", &P);
  paste_back_dir("bench/programs", &P);
  if (P.same < 120 || P.gemm < 50 || P.with < 70 || P.store < 15)
    fprintf(stderr, "only %d defs compared, with %d gemm, %d compute_with, %d store_at\n",
            P.same, P.gemm, P.with, P.store);
  CHECK(P.same >= 120);
  CHECK(P.gemm >= 50 && P.with >= 70 && P.store >= 15);
  CHECK_INT(P.differ, 0);
}

TEST(cuda_ignores_schedules) {
  tc_error err;
  tc_program *p = compile(BLUR "schedule blur {\n  T.compute_at(O, y)\n}\n", &err);
  CHECK(p != NULL);
  char *a = NULL, *b = NULL;
  if (p) {
    if (tc_emit(p, 0, TC_TARGET_CUDA, &a, &err) == TC_OK) {
      tc_program *q = compile(BLUR, &err);
      CHECK(q && tc_emit(q, 0, TC_TARGET_CUDA, &b, &err) == TC_OK);
      CHECK(a && b && !strcmp(a, b));
      tc_program_free(q);
    }
    tc_program_free(p);
  }
  tc_free(a);
  tc_free(b);
}

int main(void) {
  tc_context_options o;
  tc_context_options_init(&o);
  tc_error err;
  if (tc_context_new(&o, &ctx, &err) != TC_OK) {
    fprintf(stderr, "%s\n", err.message);
    return 1;
  }
  int r = unit_run_all();
  tc_context_free(ctx);
  return r;
}
