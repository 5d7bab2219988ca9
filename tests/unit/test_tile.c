/* test_tile.c — the tiler (src/tile.c) at a fixed vector width on any host
 * (64 bytes: 8-row register tiles of two 16-float vectors; 32 bytes: 6 rows
 * of two 8-float vectors), and a convolution's input box spanning a run of
 * output rows.  The structure is read from the
 * IR after the tile pass; the kernels are compiled with the real JIT flags
 * (vectors of 32 floats compile on any x86-64 or other host) and run through
 * a minimal runtime against sums computed here in double precision. */
#include "tc.h"
#include "unit.h"
#include "front.h"

#include <dlfcn.h>
#include <math.h>
#include <unistd.h>

typedef struct Prog {
  Arena arena;
  jmp_buf jmp;
  tc_error err;
  Ctx c;
  SrcFile file;
  IRFunc *f;
  const char *tiled; /* the IR after the tile pass */
  void *so;
  tc_kernel_fn fn;
} Prog;

/* pipeline.c's passes, with the tiles of `width`-byte vectors. */
static void passes(Prog *P, Def *d, int width) {
  Ctx *c = &P->c;
  P->f = lower_def(c, d);
  inline_func(c, P->f);
  fuse_func(c, P->f);
  fold_func(c, P->f);
  tile_func(c, P->f, width);
  ir_verify(c, P->f, "tile");
  Buf b = {0};
  ir_print_func(&b, P->f);
  P->tiled = arena_strndup(c->arena, b.s, strlen(b.s));
  buf_free(&b);
  schedule_default(c, P->f);
  flatten_func(c, P->f);
  specialize_func(c, P->f);
  P->f->body = simplify_stmt(c, P->f->body);
}

static bool compile_c(Prog *P) {
  Buf b = {0};
  emitc_func(&P->c, P->f, &b);
  P->fn = front_load(b.s, &P->so);
  buf_free(&b);
  return P->fn != NULL;
}

static bool prog_open(Prog *P, const char *src, const char *entry, int width) {
  memset(P, 0, sizeof *P);
  front_init(&P->c, &P->arena, &P->err, &P->jmp, &P->file, src);
  if (setjmp(P->jmp)) {
    fprintf(stderr, "%s\n", P->err.message);
    return false;
  }
  Def *d = front_def(&P->c, entry);
  if (!d)
    return false;
  passes(P, d, width);
  return compile_c(P);
}

static void prog_close(Prog *P) {
  if (P->so)
    dlclose(P->so);
  arena_free(&P->arena);
}

static int count(const char *s, const char *what) {
  int n = 0;
  for (const char *p = strstr(s, what); p; p = strstr(p + 1, what))
    n++;
  return n;
}

/* A runtime that runs the tasks in three uneven chunks. */
static void rt_parallel_for(tc_krt *rt, tc_task_fn task, const void *args, int64_t lo,
                            int64_t hi) {
  (void)rt;
  int64_t step = (hi - lo + 2) / 3;
  for (int64_t s = lo; s < hi; s += step)
    task(args, s, s + step < hi ? s + step : hi);
}

static void rt_fail(tc_krt *rt, int site, int64_t value, int64_t bound) {
  (void)site, (void)value, (void)bound;
  rt->failed = 1;
}


static int run(Prog *P, Args *a) {
  tc_krt rt = {rt_parallel_for, rt_fail, 0};
  tc_kargs ka = {a->data, a->shape, a->stride, a->sizes, &rt};
  return P->fn(&ka);
}

static float frand(unsigned *seed) {
  *seed = *seed * 1103515245u + 12345u;
  return (float)((*seed >> 8) % 2001) / 1000.0f - 1.0f;
}

static bool close_to(float got, double want) { return fabs(got - want) <= 1e-4 * (1 + fabs(want)); }

/* 8 x 32 tiles; 13 rows (a partial tile), 300 reduction steps (two blocks),
 * 45 columns (a partial tile). */
TEST(tile_avx512_matmul) {
  Prog P;
  CHECK(prog_open(&P, "def mm(float(M,K) A, float(K,N) B) -> (C) { C(m,n) +=! A(m,k) * B(k,n) }\n",
                  "mm", 64));
  if (!P.fn) {
    prog_close(&P);
    return;
  }
  /* W packed (one at a time, and in 8 x 8 blocks: 2), C in, fma, C out */
  CHECK(count(P.tiled, "in [0, 8) unrolled") == 6);
  CHECK(count(P.tiled, "in [0, 32) vectorized") >= 3);
  CHECK(count(P.tiled, "fma(") == 1);
  enum { M = 13, K = 300, N = 45 };
  static float a[M * K], b[K * N], c[M * N];
  unsigned seed = 7;
  for (int i = 0; i < M * K; i++)
    a[i] = frand(&seed);
  for (int i = 0; i < K * N; i++)
    b[i] = frand(&seed);
  Args ar = {.sizes = {M, K, N}};
  set_buf(&ar, P.f->bufs[0], a, (int64_t[]){M, K});
  set_buf(&ar, P.f->bufs[1], b, (int64_t[]){K, N});
  set_buf(&ar, P.f->bufs[2], c, (int64_t[]){M, N});
  CHECK_INT(run(&P, &ar), 0);
  int bad = 0;
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++) {
      double want = 0;
      for (int k = 0; k < K; k++)
        want += (double)a[m * K + k] * b[k * N + n];
      bad += !close_to(c[m * N + n], want);
    }
  CHECK_INT(bad, 0);
  prog_close(&P);
}

/* A padded 3x3 convolution whose input box spans a run of output rows
 * (one box per run, each row read at its offset), and the same with the
 * rows read in reverse (a negative coefficient of h).  40 rows: runs of
 * several rows, the last one partial; 30 channels: two reduction blocks. */
static const char conv_src[] =
    "def conv(float(N,C,H,W) I : constant(0) [H,W], float(F,C,3,3) Wt) -> (O) {\n"
    "  O(n,f,h,w) +=! I(n,c,h+kh-1,w+kw-1) * Wt(f,c,kh,kw) where h in 0:H, w in 0:W\n"
    "}\n"
    "def flip(float(N,C,H,W) I : constant(0) [H,W], float(F,C,3,3) Wt) -> (O) {\n"
    "  O(n,f,h,w) +=! I(n,c,H-h-kh,w+kw-1) * Wt(f,c,kh,kw) where h in 0:H, w in 0:W\n"
    "}\n";

static void check_conv(const char *entry, bool flip, int width) {
  Prog P;
  CHECK(prog_open(&P, conv_src, entry, width));
  if (!P.fn) {
    prog_close(&P);
    return;
  }
  CHECK(count(P.tiled, "alloc int64") == 1); /* the offset table: a box */
  CHECK(count(P.tiled, width == 64 ? "in [0, 8) unrolled" : "in [0, 6) unrolled") == 4);
  enum { N = 3, C = 30, H = 40, W = 19, F = 5 };
  static float in[N * C * H * W], wt[F * C * 9], out[N * F * H * W];
  unsigned seed = 3;
  for (int i = 0; i < N * C * H * W; i++)
    in[i] = frand(&seed);
  for (int i = 0; i < F * C * 9; i++)
    wt[i] = frand(&seed);
  Args ar = {.sizes = {N, C, H, W, F}};
  set_buf(&ar, P.f->bufs[0], in, (int64_t[]){N, C, H, W});
  set_buf(&ar, P.f->bufs[1], wt, (int64_t[]){F, C, 3, 3});
  set_buf(&ar, P.f->bufs[2], out, (int64_t[]){N, F, H, W});
  CHECK_INT(run(&P, &ar), 0);
  int bad = 0;
  for (int n = 0; n < N; n++)
    for (int f = 0; f < F; f++)
      for (int h = 0; h < H; h++)
        for (int w = 0; w < W; w++) {
          double want = 0;
          for (int c = 0; c < C; c++)
            for (int kh = 0; kh < 3; kh++)
              for (int kw = 0; kw < 3; kw++) {
                int y = flip ? H - h - kh : h + kh - 1, x = w + kw - 1;
                if (y >= 0 && y < H && x >= 0 && x < W)
                  want += (double)in[((n * C + c) * H + y) * W + x] * wt[(f * C + c) * 9 + kh * 3 + kw];
              }
          bad += !close_to(out[((n * F + f) * H + h) * W + w], want);
        }
  CHECK_INT(bad, 0);
  prog_close(&P);
}

TEST(tile_conv_box_runs) {
  check_conv("conv", false, 64);
  check_conv("conv", false, 32);
}

TEST(tile_conv_box_runs_reversed) {
  check_conv("flip", true, 64);
  check_conv("flip", true, 32);
}

RUN_TESTS()
