/* test_fuzz.c — deterministic fuzzing of the front end through the public
 * API.  Seed programs covering the language are mutated (bytes flipped,
 * tokens inserted, ranges deleted or duplicated, truncations, splices of two
 * seeds) with a fixed-seed generator, and each mutant goes to tc_compile.
 * The library must never crash (ASan/UBSan watch in `make check-asan`) and
 * must answer TC_OK or an error with a message; a program error must carry
 * a line >= 1 inside the source, a column >= 1 and a "FILE:LINE:COL: error:"
 * diagnostic.  Mutants that compile are pushed further: shape inference,
 * explain, the pass dump, the generated C source (no C compiler involved)
 * and, when the tensors are small, a run on the reference interpreter.
 * TENSORC_FUZZ_ITERS (default 30000) and TENSORC_FUZZ_SEED vary the run. */
#include "unit.h"

#include "tensorc.h"

#include <dirent.h>
#include <stdint.h>
#include <time.h>

static const char *const seeds[] = {
    "def matmul(float(M,K) A, float(K,N) B) -> (C) {\n"
    "    C(m,n) +=! A(m,k) * B(k,n)\n"
    "}\n",
    "# strided convolution\n"
    "def conv(float(N,C,H,W) I, float(F,C,KH,KW) W1) -> (O) {\n"
    "    O(n,f,h,w) +=! I(n,c,2*h+kh,2*w+kw) * W1(f,c,kh,kw)\n"
    "}\n",
    "def softmax(float(N,D) X) -> (Y) {\n"
    "    mx(n) max=! X(n,d)\n"
    "    e(n,d) = exp(X(n,d) - mx(n))\n"
    "    s(n) +=! e(n,d)\n"
    "    Y(n,d) = e(n,d) / s(n)\n"
    "}\n",
    "def blur(float(H,W) I : clamp) -> (O) {\n"
    "    O(y,x) = (I(y-1,x) + I(y,x) + I(y+1,x)) / 3.0 where y in 0:H, x in 0:W\n"
    "}\n"
    "def pad(float(N) A : constant(-1.5) [N]) -> (B) {\n"
    "    B(i) = A(i - 2) where i in 0:N+4\n"
    "}\n",
    "def gather(float(V,D) E, int32(B,L) Idx) -> (O) {\n"
    "    O(b,l,d) = E(Idx(b,l), d)\n"
    "}\n",
    "def moments(float(N,D) X) -> (float(N) mean, float(N) var) {\n"
    "    mean(n) +=! X(n,d) / float(D)\n"
    "    var(n) +=! (X(n,d) - mean(n)) * (X(n,d) - mean(n)) / float(D)\n"
    "}\n",
    "def axpy(float alpha, float(N) X, float(N) Y) -> (Z) {\n"
    "    Z(i) = alpha * X(i) + Y(i)\n"
    "}\n"
    "def ints(int32(N) A, uint8(N) B) -> (C, D) {\n"
    "    C(i) = A(i) / 3 + A(i) % 4 - int32(B(i))\n"
    "    D(i) = A(i) > 0 && B(i) != 0 ? 1 : 0\n"
    "}\n",
    "def window(float(N) A, float(K) Wt) -> (B) {\n"
    "    B(i) +=! A(i + k) * Wt(k) where s = i + k, exists A(s)\n"
    "    B(i) = max(B(i), 0.0)\n"
    "}\n",
    "def mix(double(N) A, float16(N) H, bfloat16(N) G) -> (R) {\n"
    "    R(i) = sqrt(fabs(A(i))) + pow(float(H(i)), 2.0) * tanh(float(G(i))) + 1e-3\n"
    "}\n",
    "def pool(float(N,C,H,W) I) -> (O) {\n"
    "    O(n,c,h,w) max=! I(n,c,2*h+kh,2*w+kw) where kh in 0:2, kw in 0:2\n"
    "}\n"
    "def transpose(float(M,N) A) -> (T) {\n"
    "    T(j,i) = A(i,j)\n"
    "}\n",
    "def shifted(float(N) A) -> (O) {\n"
    "    O(i) = A(i - 1)\n"
    "    O(i) *= 2.0\n"
    "    O(i) = min(O(i), -O(i))\n"
    "}\n",
};
#define NSEEDS ((int)(sizeof seeds / sizeof seeds[0]))

static const char *const tokens[] = {
    "(", ")", "{", "}", "[", "]", ",", ":", ";", "?", "->", "+", "-", "*", "/", "%", "!",
    "<", ">", "<=", ">=", "==", "!=", "&&", "||", "=", "+=", "*=", "+=!", "*=!", "min=",
    "max=!", "def", "where", "in", "exists", "float", "int32", "bool", "float16", "clamp",
    "mirror", "wrap", "constant(0)", "A", "B", "i", "k", "N", "0", "1", "2147483648",
    "99999999999999999999", "1.5", "1e309", "0.0", "exp", "min", "max", "\n", " ", "#",
    "\t", "\"", "'", "\\", "\x80", "\xff", "$", "@", "_", "9x",
};
#define NTOKENS ((int)(sizeof tokens / sizeof tokens[0]))

typedef struct Rng {
  uint64_t s;
} Rng;

static uint32_t rnd(Rng *r) {
  r->s = r->s * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)(r->s >> 33);
}

static size_t below(Rng *r, size_t n) { return n ? rnd(r) % n : 0; }

/* One mutation of buf[0..*len) in place (capacity cap). */
static void mutate(Rng *r, char *buf, size_t *len, size_t cap) {
  size_t n = *len;
  switch (rnd(r) % 7) {
  case 0: /* flip a byte */
    if (n)
      buf[below(r, n)] = (char)rnd(r);
    break;
  case 1: { /* insert a token */
    const char *t = tokens[below(r, NTOKENS)];
    size_t tl = strlen(t), at = below(r, n + 1);
    if (n + tl < cap) {
      memmove(buf + at + tl, buf + at, n - at);
      memcpy(buf + at, t, tl);
      *len = n + tl;
    }
    break;
  }
  case 2: { /* delete a range */
    size_t at = below(r, n + 1), k = below(r, 12);
    if (at + k > n)
      k = n - at;
    memmove(buf + at, buf + at + k, n - at - k);
    *len = n - k;
    break;
  }
  case 3: /* truncate */
    *len = below(r, n + 1);
    break;
  case 4: { /* duplicate a range */
    size_t at = below(r, n + 1), k = below(r, 24);
    if (at + k > n)
      k = n - at;
    if (n + k < cap) {
      memmove(buf + at + k, buf + at, n - at);
      *len = n + k;
    }
    break;
  }
  case 5: { /* splice the tail of another seed */
    const char *o = seeds[below(r, NSEEDS)];
    size_t ol = strlen(o), from = below(r, ol), at = below(r, n + 1);
    if (at + (ol - from) < cap) {
      memcpy(buf + at, o + from, ol - from);
      *len = at + (ol - from);
    }
    break;
  }
  default: /* replace a byte with a digit or a name character */
    if (n)
      buf[below(r, n)] = "0123456789iNkAB(),+*"[below(r, 20)];
    break;
  }
}

static int count_lines(const char *s, size_t n) {
  int lines = 1;
  for (size_t i = 0; i < n; i++)
    lines += s[i] == '\n';
  return lines;
}

typedef struct Stats {
  int ok, program_errors, other_errors, deep, runs;
} Stats;

/* Runs an entry that compiled on the interpreter when its tensors are tiny. */
static void run_small(tc_program *p, int e, const tc_shape *in, int nin, Stats *st) {
  tc_error err;
  DLTensor t[TC_MAX_RANK * 2];
  DLTensor *ptr[TC_MAX_RANK * 2];
  int64_t shapes[TC_MAX_RANK * 2][TC_MAX_RANK];
  double data[TC_MAX_RANK * 2][256];
  if (nin > TC_MAX_RANK * 2)
    return;
  int nout = tc_entry_num_outputs(p, e);
  tc_shape out[16];
  if (nout > 16 || tc_infer_shapes(p, e, in, nin, out, nout, &err) != TC_OK)
    return;
  for (int i = 0; i < nout; i++) {
    int64_t n = 1;
    for (int d = 0; d < out[i].rank; d++)
      n *= out[i].dims[d] > 0 ? out[i].dims[d] : 1;
    if (n > 4096)
      return;
  }
  for (int i = 0; i < nin; i++) {
    tc_param_info pi;
    if (tc_entry_input(p, e, i, &pi) != TC_OK)
      return;
    memset(&t[i], 0, sizeof t[i]);
    for (int k = 0; k < 256; k++)
      data[i][k] = 0; /* zero bytes are a valid value of every dtype, and index 0 */
    t[i].data = data[i];
    t[i].device.device_type = kDLCPU;
    t[i].ndim = in[i].rank;
    t[i].dtype = tc_dtype_to_dl(pi.dtype);
    memcpy(shapes[i], in[i].dims, sizeof shapes[i]);
    t[i].shape = shapes[i];
    ptr[i] = &t[i];
  }
  DLManagedTensor *outs[16] = {0};
  tc_status s = tc_run_alloc(p, e, ptr, nin, outs, nout, TC_TARGET_INTERP, &err);
  if (s == TC_OK) {
    st->runs++;
    for (int i = 0; i < nout; i++)
      if (outs[i])
        outs[i]->deleter(outs[i]);
  } else {
    CHECK(err.code == s && err.message[0]);
  }
}

/* Everything that needs no C compiler, on an entry that compiled. */
static void go_deeper(tc_program *p, Stats *st) {
  for (int e = 0; e < tc_program_num_entries(p); e++) {
    tc_error err;
    char *text = NULL;
    int nin = tc_entry_num_inputs(p, e);
    tc_shape in[TC_MAX_RANK * 2];
    int fits = nin <= TC_MAX_RANK * 2, small = 1;
    for (int i = 0; i < nin && fits; i++) {
      tc_param_info pi;
      CHECK_INT(tc_entry_input(p, e, i, &pi), TC_OK);
      in[i].rank = pi.rank;
      int64_t n = 1;
      for (int d = 0; d < pi.rank; d++) {
        in[i].dims[d] = pi.dim_values[d] >= 0 ? pi.dim_values[d] : 3;
        if (in[i].dims[d] > 256 || (n *= in[i].dims[d]) > 256)
          small = 0; /* the run buffers hold 256 elements */
      }
    }
    if (!fits)
      continue;
    st->deep++;
    if (tc_explain(p, e, NULL, nin, &text, &err) == TC_OK)
      CHECK(text != NULL);
    else
      CHECK(err.message[0]);
    tc_free(text);
    text = NULL;
    if (tc_explain(p, e, in, nin, &text, &err) != TC_OK)
      CHECK(err.message[0]);
    tc_free(text);
    text = NULL;
    if (tc_dump_passes(p, e, &text, &err) != TC_OK)
      CHECK(err.message[0]);
    tc_free(text);
    text = NULL;
    if (tc_emit(p, e, TC_TARGET_C, &text, &err) != TC_OK)
      CHECK(err.message[0]);
    tc_free(text);
    if (small)
      run_small(p, e, in, nin, st);
  }
}

static void fuzz_one(tc_context *ctx, const char *src, size_t len, Stats *st) {
  tc_program *p = NULL;
  tc_error err;
  memset(&err, 0x5a, sizeof err); /* the library must fill what it reports */
  tc_status s = tc_compile(ctx, "fuzz.tc", src, len, &p, &err);
  if (s == TC_OK) {
    CHECK(p != NULL);
    st->ok++;
    go_deeper(p, st);
    tc_program_free(p);
    return;
  }
  CHECK(p == NULL);
  CHECK_INT(err.code, s);
  CHECK(memchr(err.message, '\0', sizeof err.message) && err.message[0]);
  if (s == TC_ERR_PROGRAM) {
    st->program_errors++;
    int lines = count_lines(src, len);
    if (err.line < 1 || err.line > lines || err.col < 1) {
      fprintf(stderr, "bad location %d:%d (%d lines) for: %s\n--- source:\n%.*s\n---\n",
              err.line, err.col, lines, err.message, (int)len, src);
      CHECK(0);
    }
    char prefix[300];
    snprintf(prefix, sizeof prefix, "fuzz.tc:%d:%d: error: ", err.line, err.col);
    CHECK(!strncmp(err.diagnostic, prefix, strlen(prefix)));
  } else {
    st->other_errors++;
    if (s != TC_ERR_NOMEM)
      fprintf(stderr, "note: status %s: %s\n", tc_status_string(s), err.message);
    CHECK(s == TC_ERR_NOMEM);
  }
}

TEST(seeds_compile) {
  tc_context_options o;
  tc_context_options_init(&o);
  o.disk_cache = 0;
  o.num_threads = 1;
  tc_context *ctx = NULL;
  tc_error err;
  CHECK_INT(tc_context_new(&o, &ctx, &err), TC_OK);
  for (int i = 0; i < NSEEDS; i++) {
    tc_program *p = NULL;
    tc_status s = tc_compile(ctx, "seed.tc", seeds[i], strlen(seeds[i]), &p, &err);
    if (s != TC_OK)
      fprintf(stderr, "seed %d: %s\n", i, err.diagnostic);
    CHECK_INT(s, TC_OK);
    tc_program_free(p);
  }
  tc_context_free(ctx);
}

TEST(mutants_never_crash) {
  tc_context_options o;
  tc_context_options_init(&o);
  o.disk_cache = 0;
  o.num_threads = 1;
  tc_context *ctx = NULL;
  tc_error err;
  CHECK_INT(tc_context_new(&o, &ctx, &err), TC_OK);
  Rng r = {0x7c0ffee5eedull};
  Stats st = {0};
  enum { CAP = 4096 };
  char *buf = malloc(CAP);
  int iters = 30000; /* about a second under ASan */
  const char *env = getenv("TENSORC_FUZZ_ITERS");
  if (env && atoi(env) > 0)
    iters = atoi(env);
  if ((env = getenv("TENSORC_FUZZ_SEED")))
    r.s ^= strtoull(env, NULL, 0);
  clock_t start = clock();
  for (int it = 0; it < iters; it++) {
    const char *seed = seeds[it % NSEEDS];
    size_t len = strlen(seed);
    memcpy(buf, seed, len);
    int nmut = 1 + (int)below(&r, it % 5 == 0 ? 12 : 3);
    for (int k = 0; k < nmut; k++)
      mutate(&r, buf, &len, CAP);
    /* an exact-size copy: ASan sees any read past the end */
    char *src = malloc(len ? len : 1);
    memcpy(src, buf, len);
    fuzz_one(ctx, src, len, &st);
    free(src);
  }
  /* the extremes */
  fuzz_one(ctx, "", 0, &st);
  fuzz_one(ctx, "\0\0\0", 3, &st);
  fuzz_one(ctx, "def", 3, &st);
  memset(buf, '(', CAP); /* deep nesting must not overflow the stack */
  memcpy(buf, "def f(float(N) A) -> (B) { B(i) = ", 34);
  fuzz_one(ctx, buf, CAP, &st);
  memset(buf, '-', CAP);
  fuzz_one(ctx, buf, CAP, &st);
  memcpy(buf, "def f(float(N) A) -> (B) { B(i) = ", 34);
  fuzz_one(ctx, buf, CAP, &st);
  printf("fuzz: %d mutants: %d ok (%d explored, %d interpreted), %d program errors, %d other "
         "(%.1f s)\n",
         iters, st.ok, st.deep, st.runs, st.program_errors, st.other_errors,
         (double)(clock() - start) / CLOCKS_PER_SEC);
  CHECK(st.ok > 0 && st.program_errors > 0);
  free(buf);
  tc_context_free(ctx);
}

/* The golden malformed programs of tests/errors (when run from the
 * repository root, as `make unit` does), mutated a little: near-misses of
 * errors the front end already reports. */
TEST(error_programs_mutated) {
  DIR *dir = opendir("tests/errors");
  if (!dir) {
    printf("fuzz: tests/errors not found from here: skipped\n");
    return;
  }
  tc_context_options o;
  tc_context_options_init(&o);
  o.disk_cache = 0;
  o.num_threads = 1;
  tc_context *ctx = NULL;
  tc_error err;
  CHECK_INT(tc_context_new(&o, &ctx, &err), TC_OK);
  Rng r = {0xe4404e5ull};
  Stats st = {0};
  enum { CAP = 8192 };
  char *buf = malloc(CAP);
  int files = 0;
  struct dirent *de;
  while ((de = readdir(dir))) {
    size_t nl = strlen(de->d_name);
    if (nl < 4 || strcmp(de->d_name + nl - 3, ".tc"))
      continue;
    char path[512];
    snprintf(path, sizeof path, "tests/errors/%s", de->d_name);
    FILE *f = fopen(path, "rb");
    if (!f)
      continue;
    size_t n = fread(buf, 1, CAP / 2, f);
    fclose(f);
    char *orig = malloc(n + 1);
    memcpy(orig, buf, n);
    files++;
    fuzz_one(ctx, orig, n, &st); /* the program itself (run.sh checks its message) */
    for (int it = 0; it < 400; it++) {
      size_t len = n;
      memcpy(buf, orig, n);
      int nmut = 1 + (int)below(&r, 3);
      for (int k = 0; k < nmut; k++)
        mutate(&r, buf, &len, CAP);
      char *src = malloc(len ? len : 1);
      memcpy(src, buf, len);
      fuzz_one(ctx, src, len, &st);
      free(src);
    }
    free(orig);
  }
  closedir(dir);
  printf("fuzz: %d error programs mutated: %d ok, %d program errors, %d other\n", files, st.ok,
         st.program_errors, st.other_errors);
  CHECK(files >= 30);
  free(buf);
  tc_context_free(ctx);
}

RUN_TESTS()
