/* test_cuda.c — the CUDA back end without (and, where one exists, with) a GPU:
 *
 *   - every entry of the test programs and the benchmark programs becomes CUDA
 *     C that NVRTC compiles for sm_90 (compiled in parallel).  Where no
 *     libnvrtc can be found the compile step is skipped with a message,
 *     unless TENSORC_REQUIRE_NVRTC=1 (CI sets it after installing it): then
 *     its absence fails;
 *   - the GPU schedule's plans: fused row kernels for softmax and layer norm
 *     with their pointwise fallback, element fusion of epilogues, one block
 *     for rank-0 reductions, failure records only where an index can fail;
 *   - the public API's device rules: tensors on different devices, the
 *     interpreter on CUDA tensors, CUDA without a driver (a clear error);
 *   - the cubin disk cache: round trip, corruption detected;
 *   - with a GPU: programs run on device memory (in place, outputs allocated
 *     by tc_run_alloc_ex, a failing gather) against the interpreter. */
#include "tc.h"
#include "unit.h"
#include "front.h"

#include <glob.h>
#include <math.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- reading programs ---- */

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  Buf b = {0};
  char chunk[4096];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
    buf_putn(&b, chunk, n);
  fclose(f);
  *len = b.len;
  return buf_detach(&b);
}

/* Every entry's CUDA source, from the test and benchmark programs. */
typedef struct Source {
  char name[256];
  char *text;
} Source;

typedef struct Sources {
  Source *s;
  int n;
  int failed; /* emit failures */
} Sources;

static void add_file(tc_context *ctx, const char *path, Sources *out) {
  size_t len;
  char *src = slurp(path, &len);
  tc_program *p = NULL;
  tc_error err;
  CHECK(src != NULL);
  if (!src)
    return;
  if (tc_compile(ctx, path, src, len, &p, &err) != TC_OK) {
    fprintf(stderr, "%s: %s\n", path, err.diagnostic);
    out->failed++;
    free(src);
    return;
  }
  for (int e = 0; e < tc_program_num_entries(p); e++) {
    char *cu = NULL;
    if (tc_emit(p, e, TC_TARGET_CUDA, &cu, &err) != TC_OK) {
      fprintf(stderr, "%s %s: emit: %s\n", path, tc_program_entry_name(p, e), err.diagnostic);
      out->failed++;
      continue;
    }
    out->s = realloc(out->s, sizeof(Source) * (size_t)(out->n + 1));
    Source *s = &out->s[out->n++];
    snprintf(s->name, sizeof s->name, "%s %s", path, tc_program_entry_name(p, e));
    s->text = cu;
  }
  tc_program_free(p);
  free(src);
}

static Sources all_sources(void) {
  Sources out = {0};
  tc_context_options o;
  tc_context_options_init(&o);
  o.disk_cache = 0;
  tc_context *ctx;
  tc_error err;
  if (tc_context_new(&o, &ctx, &err) != TC_OK)
    return out;
  static const char *const patterns[] = {"tests/programs/*.tc", "bench/programs/*.tc"};
  for (size_t i = 0; i < 2; i++) {
    glob_t g;
    if (glob(patterns[i], 0, NULL, &g) == 0)
      for (size_t k = 0; k < g.gl_pathc; k++)
        add_file(ctx, g.gl_pathv[k], &out);
    globfree(&g);
  }
  tc_context_free(ctx);
  return out;
}

static void free_sources(Sources *s) {
  for (int i = 0; i < s->n; i++)
    tc_free(s->s[i].text);
  free(s->s);
}

/* ---- NVRTC over every program ---- */

/* Compiles sources k, k+nproc, ... in a child process (NVRTC serialises
 * threads, processes run in parallel); exits with the failure count. */
static int compile_share(Sources *src, int k, int nproc) {
  Cuda *cu = cuda_new();
  int failed = 0;
  for (int i = k; i < src->n; i += nproc) {
    Source *s = &src->s[i];
    unsigned char *bin = NULL;
    size_t n = 0;
    tc_error err;
    if (cuda_compile(cu, s->text, strlen(s->text), 90, &bin, &n, &err) != TC_OK) {
      fprintf(stderr, "NVRTC failed on %s:\n%s\n", s->name, err.diagnostic);
      failed++;
    }
    free(bin);
  }
  cuda_free(cu);
  return failed > 100 ? 100 : failed;
}

TEST(nvrtc_compiles_every_program) {
  Sources src = all_sources();
  CHECK_INT(src.failed, 0);
  CHECK(src.n >= 100); /* the program suite has well over a hundred entries */
#if defined(__SANITIZE_ADDRESS__)
  /* the sanitizer run checks the emitter; NVRTC (a large C++ library) was
   * run on the very same sources by the plain build */
  fprintf(stderr, "SKIP NVRTC under AddressSanitizer: %d CUDA sources generated\n", src.n);
  free_sources(&src);
  return;
#endif
  Cuda *cu = cuda_new();
  tc_error err;
  const char *id = cuda_nvrtc_identity(cu, &err);
  if (!id) {
    const char *req = getenv("TENSORC_REQUIRE_NVRTC");
    fprintf(stderr, "SKIP nvrtc_compiles_every_program: %s\n"
                    "     (%d CUDA sources were generated but not compiled)\n",
            err.message, src.n);
    CHECK(!(req && *req == '1')); /* CI installs NVRTC: its absence is a failure there */
  } else {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int nproc = cores < 1 ? 1 : cores > 16 ? 16 : (int)cores, failed = 0;
    pid_t pids[16];
    fflush(stderr);
    for (int k = 0; k < nproc; k++)
      if ((pids[k] = fork()) == 0)
        _exit(compile_share(&src, k, nproc));
    for (int k = 0; k < nproc; k++) {
      int status = 0;
      if (pids[k] < 0 || waitpid(pids[k], &status, 0) < 0 || !WIFEXITED(status))
        failed++;
      else
        failed += WEXITSTATUS(status);
    }
    fprintf(stderr, "  %s: %d CUDA sources compiled for sm_90 (%d failed)\n", id, src.n, failed);
    CHECK_INT(failed, 0);
  }
  cuda_free(cu);
  free_sources(&src);
}

TEST(nvrtc_compile_error_is_reported) {
#if defined(__SANITIZE_ADDRESS__)
  return; /* NVRTC's own static allocations read as leaks to the sanitizer */
#endif
  Cuda *cu = cuda_new();
  tc_error err;
  if (cuda_nvrtc_identity(cu, &err)) {
    static const char bad[] = "extern \"C\" __global__ void k() { undeclared_name = 1; }\n";
    unsigned char *bin = NULL;
    size_t n = 0;
    CHECK_INT(cuda_compile(cu, bad, strlen(bad), 90, &bin, &n, &err), TC_ERR_COMPILER);
    CHECK(strstr(err.message, "undeclared_name") != NULL);
    CHECK(bin == NULL);
  }
  cuda_free(cu);
}

/* ---- plans ---- */

typedef struct Plan {
  Arena arena;
  jmp_buf jmp;
  tc_error err;
  Ctx c;
  SrcFile file;
  GpuPlan *plan;
  char *source;
} Plan;

static bool plan_of(Plan *P, const char *src, const char *entry) {
  memset(P, 0, sizeof *P);
  front_init(&P->c, &P->arena, &P->err, &P->jmp, &P->file, src);
  if (setjmp(P->jmp)) {
    fprintf(stderr, "%s\n", P->err.diagnostic);
    return false;
  }
  Ctx *c = &P->c;
  Def *d = front_def(c, entry);
  if (!d)
    return false;
  IRFunc *f = pipeline_run_gpu(c, d, NULL);
  Buf b = {0};
  P->plan = emitcuda_func(c, f, &b);
  P->source = arena_strdup(c->arena, b.s ? b.s : "");
  buf_free(&b);
  return true;
}

static int count_steps(const GpuStep *s, GpuStepKind k) {
  int n = 0;
  for (; s; s = s->next)
    n += (s->kind == k) + (s->kind == GS_IF ? count_steps(s->then, k) + count_steps(s->els, k) : 0);
  return n;
}

static int count_str(const char *s, const char *w) {
  int n = 0;
  for (const char *p = s; (p = strstr(p, w)); p += strlen(w))
    n++;
  return n;
}

/* The text of kernel tc_k<k>: its body, tc_body<k>, which the entry
 * points tc_k<k> (64-bit subscripts) and tc_k<k>n (32-bit) instantiate. */
static char *kernel_text(Plan *P, int k) {
  const char *name = "__device__ __forceinline__ void tc_body";
  const char *p = P->source;
  for (int i = 0; i <= k && p; i++)
    if ((p = strstr(p, name)))
      p += strlen(name);
  if (!p)
    return arena_strdup(&P->arena, "");
  const char *end = strstr(p, "\nextern \"C\"");
  return arena_strndup(&P->arena, p, end ? (size_t)(end - p) : strlen(p));
}

static const char softmax_src[] =
    "def softmax(float(N,D) X) -> (O) {\n"
    "    mx(n) max=! X(n,d)\n"
    "    e(n,d) = exp(X(n,d) - mx(n))\n"
    "    s(n) +=! e(n,d)\n"
    "    O(n,d) = e(n,d) / s(n)\n"
    "}\n";

TEST(plan_softmax_is_one_row_kernel) {
  Plan P;
  CHECK(plan_of(&P, softmax_src, "softmax"));
  GpuStep *s = P.plan->steps;
  CHECK(s && s->kind == GS_IF && !s->next);
  if (s && s->kind == GS_IF) {
    CHECK(s->then && s->then->kind == GS_LAUNCH && s->then->gk == GK_ROWS && !s->then->next);
    CHECK_INT(count_steps(s->els, GS_LAUNCH), 3); /* short rows: mx, s, O; e recomputed */
    /* the row kernel keeps mx, e and s on chip: it stores only O */
    char *k0 = kernel_text(&P, s->then->kernel);
    CHECK(strstr(k0, "b_O[") != NULL);
    CHECK(!strstr(k0, "b_mx[") && !strstr(k0, "b_e[") && !strstr(k0, "b_s["));
    CHECK_INT(count_str(k0, "tc_bred_max_f32("), 1);
    CHECK_INT(count_str(k0, "tc_bred_add_f32("), 1);
  }
  CHECK(!P.plan->can_fail);
  arena_free(&P.arena);
}

/* Every kernel has a wide entry point and a narrow one whose subscripts
 * compute on 32 bits; row kernels synchronise through tc_bar (a warp's
 * barrier when each warp has a row of its own). */
TEST(kernels_have_narrow_variants) {
  Plan P;
  CHECK(plan_of(&P, softmax_src, "softmax"));
  for (int k = 0; k < P.plan->nkernels; k++) {
    char wide[96], narrow[96];
    snprintf(wide, sizeof wide, " tc_k%d(const tc_args a) { tc_body%d<true>(a); }", k, k);
    snprintf(narrow, sizeof narrow, " tc_k%dn(const tc_args a) { tc_body%d<false>(a); }", k, k);
    CHECK(strstr(P.source, wide) != NULL);
    CHECK(strstr(P.source, narrow) != NULL);
  }
  GpuStep *s = P.plan->steps;
  if (s && s->kind == GS_IF && s->then) {
    char *k0 = kernel_text(&P, s->then->kernel);
    /* X(n,d) at n*s0 + d*s1: both variants, the narrow one on 32 bits */
    CHECK(strstr(k0, "b_X[tc_w ? ") != NULL);
    CHECK(strstr(k0, ": (tc_i64)((tc_i32)((tc_u32)((tc_i32)((tc_u32)x0_n * (tc_u32)b_X_s0))") !=
          NULL);
    CHECK(strstr(k0, "tc_bar();") != NULL && !strstr(k0, "__syncthreads"));
  }
  arena_free(&P.arena);
}

TEST(plan_layernorm_recomputes_temporaries) {
  Plan P;
  CHECK(plan_of(&P,
                "def layernorm(float(N,D) X, float(D) gamma, float(D) beta) -> (Y) {\n"
                "    mean(n) +=! X(n,d) / float(D)\n"
                "    xc(n,d) = X(n,d) - mean(n)\n"
                "    var(n) +=! xc(n,d) * xc(n,d) / float(D)\n"
                "    Y(n,d) = xc(n,d) * rsqrt(var(n) + 1e-5) * gamma(d) + beta(d)\n"
                "}\n",
                "layernorm"));
  GpuStep *s = P.plan->steps;
  CHECK(s && s->kind == GS_IF && s->then && s->then->gk == GK_ROWS);
  if (s && s->then) {
    char *k0 = kernel_text(&P, s->then->kernel);
    CHECK(!strstr(k0, "b_xc[") && !strstr(k0, "b_mean[") && !strstr(k0, "b_var["));
    CHECK_INT(count_str(k0, "tc_bred_add_f32("), 2);
  }
  arena_free(&P.arena);
}

/* Later passes over the staged row read it in 16-byte vectors, the output
 * goes out in 16-byte stores, and softmax's exp(X - max) is computed once:
 * the sum's pass writes it over the staged row, the output's pass reads it
 * there (or computes it, when the launch gave no room to stage). */
TEST(plan_rows_vectorise_and_restage) {
  Plan P;
  CHECK(plan_of(&P, softmax_src, "softmax"));
  GpuStep *s = P.plan->steps;
  if (s && s->kind == GS_IF && s->then) {
    char *k0 = kernel_text(&P, s->then->kernel);
    CHECK_INT(count_str(k0, "if (tc_vec) {"), 3);
    CHECK_INT(count_str(k0, "tc_st ? *(const float4 *)&tc_row[4 * tc_v] : "), 2);
    CHECK_INT(count_str(k0, "*(float4 *)&b_O["), 1);
    CHECK_INT(count_str(k0, "const float tc_ev = expf(tc_sv - acc0);"), 2);
    CHECK_INT(count_str(k0, "const float tc_ev = tc_st ? tc_sv : expf(tc_sv - acc0);"), 2);
    CHECK_INT(count_str(k0, "expf("), 4); /* no exp but in the tc_ev definitions */
    CHECK(strstr(k0, "(&tc_o.x)[tc_j] = tc_ev / acc1;") != NULL);
    CHECK(strstr(k0, "typedef typename tc_ix_of<tc_w>::t tc_ix;") != NULL);
  }
  arena_free(&P.arena);
  /* the output's pass also reads X itself: nothing restaged */
  CHECK(plan_of(&P,
                "def sp(float(N,D) X) -> (O) {\n"
                "    mx(n) max=! X(n,d)\n"
                "    e(n,d) = exp(X(n,d) - mx(n))\n"
                "    s(n) +=! e(n,d)\n"
                "    O(n,d) = e(n,d) / s(n) + X(n,d)\n"
                "}\n",
                "sp"));
  CHECK(!strstr(P.source, "tc_ev"));
  arena_free(&P.arena);
}

/* The separable blur (its horizontal pass recomputed by the vertical one's
 * threads) computes 8 rows a thread, values before stores. */
TEST(plan_blur_is_a_stencil) {
  Plan P;
  CHECK(plan_of(&P,
                "def blur(float(H,W) I : clamp) -> (O) {\n"
                "    T(y,x) = (I(y-1,x-1) + I(y-1,x) + I(y-1,x+1)) * 0.33333334 "
                "where y in 0:H+2, x in 0:W\n"
                "    O(y,x) = (T(y,x) + T(y+1,x) + T(y+2,x)) * 0.33333334 where y in 0:H\n"
                "}\n",
                "blur"));
  CHECK_INT(P.plan->nkernels, 1);
  GpuStep *s = P.plan->steps;
  while (s && s->kind != GS_LAUNCH)
    s = s->kind == GS_IF ? s->then : s->next;
  CHECK(s && s->gk == GK_POINTWISE && s->rows == 8);
  CHECK(strstr(P.source, "tc_s[7] = ") != NULL && strstr(P.source, "= tc_s[tc_r];") != NULL);
  arena_free(&P.arena);
  /* a pointwise kernel reading each input once is no stencil */
  CHECK(plan_of(&P, "def ax(float(M,N) A, float(M,N) B) -> (C) {\n    C(i,j) = A(i,j) * B(i,j)\n}\n",
                "ax"));
  s = P.plan->steps;
  while (s && s->kind != GS_LAUNCH)
    s = s->kind == GS_IF ? s->then : s->next;
  CHECK(s && s->gk == GK_POINTWISE && s->rows == 0);
  CHECK(!strstr(P.source, "tc_s["));
  arena_free(&P.arena);
}

TEST(plan_epilogues_fuse) {
  Plan P;
  CHECK(plan_of(&P,
                "def fcrelu(float(B,M) I, float(N,M) W1, float(N) B1) -> (O1) {\n"
                "    O1(b, n) +=! I(b, m) * W1(n, m)\n"
                "    O1(b, n) = O1(b, n) + B1(n)\n"
                "    O1(b, n) = fmax(O1(b, n), 0)\n"
                "}\n",
                "fcrelu"));
  CHECK_INT(P.plan->nkernels, 1);
  CHECK_INT(count_steps(P.plan->steps, GS_IF), 0);
  /* one store of O1, after the reduction: the others were forwarded */
  CHECK_INT(count_str(P.source, "b_O1["), 1);
  arena_free(&P.arena);
}

/* Convolutions (several reduction loops around a product, output
 * positions read by the input only, output channels by the weights only)
 * run as implicit GEMMs: a tile for few output channels and one for many,
 * chosen on the host; the padding is one unsigned compare per dimension of
 * a row part and a k part computed outside the element loop.  Products
 * where no output index belongs to one factor alone keep the pointwise
 * kernel. */
static const char conv_src[] =
    "def conv(float(N,C,H,W) I : constant(0) [H,W], float(F,C,3,3) Wt, float(F) B) -> (O) {\n"
    "    O(n,f,h,w) +=! I(n,c,h+kh-1,w+kw-1) * Wt(f,c,kh,kw) where h in 0:H, w in 0:W\n"
    "    O(n,f,h,w) = fmax(O(n,f,h,w) + B(f), 0.0)\n"
    "}\n"
    "def gconv(float(N,G,C,H,W) I, float(G,F,C,KH,KW) Wt) -> (O) {\n"
    "    O(n,g,f,h,w) +=! I(n,g,c,h+kh,w+kw) * Wt(g,f,c,kh,kw)\n"
    "}\n"
    "def depthwise(float(N,C,H,W) I, float(C,KH,KW) Wt) -> (O) {\n"
    "    O(n,c,h,w) +=! I(n,c,h+kh,w+kw) * Wt(c,kh,kw)\n"
    "}\n";

TEST(plan_convolutions_are_implicit_gemms) {
  Plan P;
  CHECK(plan_of(&P, conv_src, "conv"));
  GpuStep *s = P.plan->steps;
  CHECK(s && s->kind == GS_IF && !s->next && P.plan->nkernels == 2);
  if (s && s->kind == GS_IF && s->then && s->els) {
    CHECK(s->then->gk == GK_TILED && s->then->tile_n == 16 && !s->then->outer);
    CHECK(s->els->gk == GK_TILED && s->els->tile_n == 64 && !s->els->outer);
    for (int k = 0; k < 2; k++) {
      char *t = kernel_text(&P, k);
      CHECK_INT(count_str(t, "b_O["), 1); /* the bias and ReLU fused into the one store */
      CHECK(strstr(t, "__fmaf_rn(") != NULL);
      CHECK(strstr(t, "((tc_u64)((tc_i64)((tc_u64)tc_sma0 + (tc_u64)tc_ska0)) < (tc_u64)(b_I_n2))") !=
            NULL);
      CHECK(strstr(t, "if (tc_k0 + 8 + 8 <= 0xffffffffll) {") != NULL);
    }
    CHECK(strstr(kernel_text(&P, 0), "tc_As[8][256]") != NULL);
    CHECK(strstr(kernel_text(&P, 1), "tc_As[8][128]") != NULL);
  }
  arena_free(&P.arena);
  CHECK(plan_of(&P, conv_src, "gconv")); /* the groups on blockIdx.z */
  s = P.plan->steps;
  CHECK(s && s->kind == GS_IF && s->then && s->then->gk == GK_TILED && s->then->outer);
  arena_free(&P.arena);
  CHECK(plan_of(&P, conv_src, "depthwise"));
  CHECK(P.plan->nkernels >= 1 && !strstr(P.source, "tc_As["));
  arena_free(&P.arena);
}

/* 16-bit float contractions run on the tensor cores (one kernel, mma.sync
 * with the operands' type, 16-byte copies where a subscript is affine);
 * float32 ones, mixed 16-bit types and integer ones keep the SIMT kernel. */
static int mma_calls(const char *src, const char *entry, const char *what) {
  Plan P;
  if (!plan_of(&P, src, entry))
    return -1;
  int n = P.plan->nkernels == 1 ? count_str(kernel_text(&P, 0), what) : -2;
  arena_free(&P.arena);
  return n;
}

TEST(plan_half_contractions_use_tensor_cores) {
  const char *bf =
      "def mm(bfloat16(M,K) A, bfloat16(K,N) B) -> (C) {\n    C(m,n) +=! A(m,k) * B(k,n)\n}\n";
  const char *f16t = "def mm(float16(K,M) A, float16(N,K) B) -> (C) {\n"
                     "    C(m,n) +=! float(A(k,m)) * float(B(n,k))\n}\n";
  const char *relu = "def mm(bfloat16(M,K) A, bfloat16(N,K) B, float(N) b) -> (C) {\n"
                     "    C(m,n) +=! float(A(m,k)) * float(B(n,k))\n"
                     "    C(m,n) = fmax(C(m,n) + b(n), 0.0)\n}\n";
  const char *f32 = "def mm(float(M,K) A, float(K,N) B) -> (C) {\n    C(m,n) +=! A(m,k) * B(k,n)\n}\n";
  const char *mixed = "def mm(float16(M,K) A, bfloat16(K,N) B) -> (C) {\n"
                      "    C(m,n) +=! A(m,k) * B(k,n)\n}\n";
  const char *scaled = "def mm(bfloat16(M,K) A, bfloat16(K,N) B) -> (C) {\n"
                       "    C(m,n) +=! A(m,k) * B(k,n) * 2.0\n}\n";
  const char *clamp = "def mm(bfloat16(M,K) A : clamp, bfloat16(K,N) B) -> (C) {\n"
                      "    C(m,n) +=! A(m,k+1) * B(k,n) where m in 0:M, k in 0:K\n}\n";
  CHECK_INT(mma_calls(bf, "mm", "tc_mma_bf16(tc_c"), 1);
  int copies = mma_calls(bf, "mm", "tc_cp16(tc_saddr"); /* A and B, prologue and loop */
  CHECK(copies >= 4 && copies % 2 == 0);
  CHECK_INT(mma_calls(bf, "mm", "tc_ldm4t("), 1);          /* B(k,n): [k][n] tiles */
  CHECK_INT(mma_calls(f16t, "mm", "tc_mma_f16(tc_c"), 1);
  CHECK_INT(mma_calls(f16t, "mm", "tc_ldm4t("), 1);        /* A(k,m) */
  CHECK_INT(mma_calls(relu, "mm", "tc_mma_bf16(tc_c"), 1);
  CHECK_INT(mma_calls(relu, "mm", "fmaxf("), 1);
  CHECK_INT(mma_calls(f32, "mm", "tc_mma_"), 0);
  CHECK_INT(mma_calls(f32, "mm", "__fmaf_rn("), 1);
  CHECK_INT(mma_calls(mixed, "mm", "tc_mma_"), 0);
  CHECK_INT(mma_calls(scaled, "mm", "tc_mma_"), 0);
  /* a clamped subscript is not affine: A's loads one by one, B's copied */
  CHECK_INT(mma_calls(clamp, "mm", "tc_mma_bf16(tc_c"), 1);
  CHECK_INT(2 * mma_calls(clamp, "mm", "tc_cp16(tc_saddr"), copies);
}

TEST(plan_scalar_reduction_is_one_block) {
  Plan P;
  CHECK(plan_of(&P, "def s(float(N) A) -> (t) {\n    t +=! A(i) * A(i)\n}\n", "s"));
  GpuStep *s = P.plan->steps;
  CHECK(s && s->kind == GS_LAUNCH && s->gk == GK_SINGLE && s->threads >= 32 && !s->next);
  CHECK(strstr(P.source, "tc_bred_add_f32(") != NULL);
  arena_free(&P.arena);
}

TEST(plan_failures_only_where_needed) {
  Plan P;
  CHECK(plan_of(&P, "def mm(float(M,K) A, float(K,N) B) -> (C) {\n"
                    "    C(m,n) +=! A(m,k) * B(k,n)\n}\n", "mm"));
  CHECK(!P.plan->can_fail);
  CHECK(P.plan->steps && P.plan->steps->gk == GK_TILED); /* the contraction's kernel */
  CHECK(strstr(P.source, "tc_As[") != NULL);
  CHECK(!strstr(P.source, "tc_fr"));
  arena_free(&P.arena);
  CHECK(plan_of(&P, "def g(float(V,D) E, int32(B) Idx) -> (O) {\n"
                    "    O(b,d) = E(Idx(b), d)\n}\n", "g"));
  CHECK(P.plan->can_fail);
  CHECK(strstr(P.source, "tc_report(tc_fr, ") != NULL);
  arena_free(&P.arena);
  /* a range check of a where clause runs on the host, before the kernel */
  CHECK(plan_of(&P, "def w(float(N) A) -> (O) {\n    O(i) = A(i + 2) where i in 0:N\n}\n", "w"));
  CHECK_INT(count_steps(P.plan->steps, GS_CHECK), 1);
  CHECK(P.plan->steps && P.plan->steps->kind == GS_CHECK);
  arena_free(&P.arena);
}

/* ---- the API's device rules ---- */

static tc_program *compile_src(tc_context *ctx, const char *src) {
  tc_program *p = NULL;
  tc_error err;
  if (tc_compile(ctx, "t.tc", src, strlen(src), &p, &err) != TC_OK)
    fprintf(stderr, "%s\n", err.diagnostic);
  return p;
}

static DLTensor vec(float *data, int64_t *shape, DLDeviceType dev, int id) {
  DLTensor t = {data, {dev, id}, 1, {kDLFloat, 32, 1}, shape, NULL, 0};
  return t;
}

TEST(devices_must_agree) {
  tc_context *ctx;
  tc_error err;
  CHECK_INT(tc_context_new(NULL, &ctx, &err), TC_OK);
  tc_program *p = compile_src(ctx, "def add(float(N) A, float(N) B) -> (C) {\n"
                                   "    C(i) = A(i) + B(i)\n}\n");
  float a[4] = {1, 2, 3, 4}, b[4] = {1, 1, 1, 1}, c[4];
  int64_t n[1] = {4};
  DLTensor ta = vec(a, n, kDLCPU, 0), tb = vec(b, n, kDLCUDA, 0), tcc = vec(c, n, kDLCPU, 0);
  DLTensor *in[2] = {&ta, &tb}, *out[1] = {&tcc};
  CHECK_INT(tc_run(p, 0, in, 2, out, 1, TC_TARGET_C, &err), TC_ERR_ARGUMENT);
  CHECK(strstr(err.message, "one device") != NULL);
  DLTensor tb1 = vec(b, n, kDLCUDA, 1), ta0 = vec(a, n, kDLCUDA, 0);
  DLTensor *in2[2] = {&ta0, &tb1};
  CHECK_INT(tc_run(p, 0, in2, 2, out, 1, TC_TARGET_CUDA, &err), TC_ERR_ARGUMENT);
  DLTensor tc0 = vec(c, n, kDLCUDA, 0);
  DLTensor *in3[2] = {&ta0, &ta0}, *out3[1] = {&tc0};
  CHECK_INT(tc_run(p, 0, in3, 2, out3, 1, TC_TARGET_INTERP, &err), TC_ERR_UNSUPPORTED);
  CHECK(strstr(err.message, "CPU tensors only") != NULL);
  tc_program_free(p);
  tc_context_free(ctx);
}

/* Without a GPU, CUDA is a clear error; with one, a staged run matches. */
TEST(cuda_run_or_clear_error) {
  tc_context *ctx;
  tc_error err;
  CHECK_INT(tc_context_new(NULL, &ctx, &err), TC_OK);
  tc_program *p = compile_src(ctx, "def add(float(N) A, float(N) B) -> (C) {\n"
                                   "    C(i) = A(i) * 2.0 + B(i)\n}\n");
  float a[5] = {1, 2, 3, 4, 5}, b[5] = {1, 1, 1, 1, -1}, c[5] = {0};
  int64_t n[1] = {5};
  DLTensor ta = vec(a, n, kDLCPU, 0), tb = vec(b, n, kDLCPU, 0), tcc = vec(c, n, kDLCPU, 0);
  DLTensor *in[2] = {&ta, &tb}, *out[1] = {&tcc};
  tc_status st = tc_run(p, 0, in, 2, out, 1, TC_TARGET_CUDA, &err);
  Cuda *cu = cuda_new();
  int arch;
  tc_error e2;
  if (cuda_device_arch(cu, 0, &arch, &e2) != TC_OK) {
    CHECK_INT(st, TC_ERR_UNSUPPORTED);
    CHECK(strstr(err.message, "CUDA") != NULL || strstr(err.message, "NVRTC") != NULL);
  } else if (!cuda_nvrtc_identity(cu, &e2)) {
    CHECK_INT(st, TC_ERR_UNSUPPORTED);
    CHECK(strstr(err.message, "NVRTC") != NULL);
  } else {
    CHECK_INT(st, TC_OK);
    for (int i = 0; i < 5; i++)
      CHECK(c[i] == a[i] * 2 + b[i]);
  }
  cuda_free(cu);
  tc_program_free(p);
  tc_context_free(ctx);
}

/* ---- the cubin cache ---- */

TEST(cubin_cache_round_trip) {
  char dir[] = "/tmp/tc_test_cuda_XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  Cache *k = cache_new(dir);
  unsigned char blob[100], *got = NULL;
  for (int i = 0; i < 100; i++)
    blob[i] = (unsigned char)(i * 7);
  size_t n = 0;
  CHECK(!cache_blob_load(k, "id", "src", 3, "cubin", &got, &n));
  cache_blob_store(k, "id", "src", 3, "cubin", blob, sizeof blob);
  CHECK(cache_blob_load(k, "id", "src", 3, "cubin", &got, &n));
  CHECK(n == sizeof blob && got && !memcmp(got, blob, n));
  free(got);
  CHECK(!cache_blob_load(k, "id2", "src", 3, "cubin", &got, &n)); /* another identity */
  /* corrupt the entry: it is detected and removed */
  glob_t g;
  char pat[64];
  snprintf(pat, sizeof pat, "%s/*.cubin", dir);
  CHECK(glob(pat, 0, NULL, &g) == 0 && g.gl_pathc == 1);
  if (g.gl_pathc == 1) {
    FILE *f = fopen(g.gl_pathv[0], "r+b");
    CHECK(f != NULL);
    if (f) {
      fseek(f, 10, SEEK_SET);
      fputc(0xff ^ blob[10], f);
      fclose(f);
    }
    CHECK(!cache_blob_load(k, "id", "src", 3, "cubin", &got, &n));
    CHECK(access(g.gl_pathv[0], F_OK) != 0);
    unlink(g.gl_pathv[0]);
  }
  globfree(&g);
  cache_free(k);
  rmdir(dir);
}

/* ---- on a GPU: device memory in place ---- */

static void *to_device(Cuda *cu, const void *host, size_t n, void **mgr) {
  void *p = NULL;
  tc_error err;
  if (cuda_alloc_managed(cu, 0, n, &p, mgr, &err) != TC_OK)
    return NULL;
  if (cuda_memcpy(cu, 0, p, host, n, true, &err) != TC_OK) {
    cuda_managed_release(*mgr);
    return NULL;
  }
  return p;
}

TEST(gpu_in_place_runs) {
  Cuda *cu = cuda_new();
  int arch;
  tc_error err;
  if (cuda_device_arch(cu, 0, &arch, &err) != TC_OK || !cuda_nvrtc_identity(cu, &err)) {
    fprintf(stderr, "SKIP gpu_in_place_runs: %s\n", err.message);
    cuda_free(cu);
    return;
  }
  tc_context *ctx;
  CHECK_INT(tc_context_new(NULL, &ctx, &err), TC_OK);
  tc_program *p = compile_src(ctx, softmax_src);
  enum { N = 37, D = 300 };
  static float x[N * D], want[N * D], got[N * D];
  for (int i = 0; i < N * D; i++)
    x[i] = (float)((i * 7919) % 1000) / 100.0f - 5.0f;
  int64_t shape[2] = {N, D};
  DLTensor hx = {x, {kDLCPU, 0}, 2, {kDLFloat, 32, 1}, shape, NULL, 0};
  DLTensor hw = {want, {kDLCPU, 0}, 2, {kDLFloat, 32, 1}, shape, NULL, 0};
  DLTensor *in[1] = {&hx}, *out[1] = {&hw};
  CHECK_INT(tc_run(p, 0, in, 1, out, 1, TC_TARGET_INTERP, &err), TC_OK);
  void *mx, *mo;
  void *dx = to_device(cu, x, sizeof x, &mx);
  CHECK(dx != NULL);
  DLTensor gx = {dx, {kDLCUDA, 0}, 2, {kDLFloat, 32, 1}, shape, NULL, 0};
  DLTensor *gin[1] = {&gx};
  DLManagedTensor *res[1] = {NULL};
  tc_run_options o;
  tc_run_options_init(&o);
  CHECK_INT(tc_run_alloc_ex(p, 0, gin, 1, res, 1, &o, &err), TC_OK);
  if (res[0]) {
    CHECK_INT(res[0]->dl_tensor.device.device_type, kDLCUDA);
    CHECK_INT(cuda_memcpy(cu, 0, got, res[0]->dl_tensor.data, sizeof got, false, &err), TC_OK);
    for (int i = 0; i < N * D; i++)
      CHECK(fabsf(got[i] - want[i]) <= 1e-6f + 1e-5f * fabsf(want[i]));
    res[0]->deleter(res[0]);
  }
  /* in place, into a caller's device output */
  void *dout = to_device(cu, got, sizeof got, &mo);
  DLTensor go = {dout, {kDLCUDA, 0}, 2, {kDLFloat, 32, 1}, shape, NULL, 0};
  DLTensor *gout[1] = {&go};
  CHECK_INT(tc_run_ex(p, 0, gin, 1, gout, 1, &o, &err), TC_OK);
  cuda_managed_release(mo);
  cuda_managed_release(mx);
  tc_program_free(p);
  /* a gather whose index is out of range fails on the device too */
  p = compile_src(ctx, "def g(float(V) E, int32(B) Idx) -> (O) {\n    O(b) = E(Idx(b))\n}\n");
  float e[4] = {1, 2, 3, 4};
  int idx[3] = {0, 3, 4};
  void *me, *mi;
  void *de = to_device(cu, e, sizeof e, &me), *di = to_device(cu, idx, sizeof idx, &mi);
  int64_t s4[1] = {4}, s3[1] = {3};
  DLTensor te = {de, {kDLCUDA, 0}, 1, {kDLFloat, 32, 1}, s4, NULL, 0};
  DLTensor ti = {di, {kDLCUDA, 0}, 1, {kDLInt, 32, 1}, s3, NULL, 0};
  DLTensor *gi[2] = {&te, &ti};
  DLManagedTensor *r2[1] = {NULL};
  CHECK_INT(tc_run_alloc_ex(p, 0, gi, 2, r2, 1, &o, &err), TC_ERR_RUNTIME);
  CHECK(strstr(err.message, "index 4 is out of range for E dim 0") != NULL);
  cuda_managed_release(me);
  cuda_managed_release(mi);
  tc_program_free(p);
  tc_context_free(ctx);
  cuda_free(cu);
}

int main(void) { return unit_run_all(); }
