/*
 * run_programs.c — the program test driver:
 * `run_programs [-v] [--target c|cuda] FILE.tc...`.
 *
 * Each file is compiled with tc_compile, and its `# test:` directives (see
 * tests/programs/README.md) name entries and cases: input shapes, value
 * ranges, tolerances, cases that must fail at run time.  For every case the
 * driver makes random inputs (a fixed seed per file, entry and case), sizes
 * the outputs with tc_infer_shapes and runs the entry with the reference
 * interpreter on compact tensors: that result is the oracle.  Then it runs
 * the entry again, with the interpreter and with the compiled C kernel, on
 * several layouts of the same values:
 *
 *   contiguous  compact row-major (strides NULL)
 *   padded      every tensor with strides larger than compact and a byte
 *               offset; the padding must come back untouched
 *   permuted    column-major inputs and outputs
 *   reversed    every stride negative: element 0 is the last in memory
 *   broadcast   each input's first dimension of extent > 1 has stride 0 (its
 *               first slice repeated); its oracle is the interpreter run on
 *               the same values laid out compactly
 *
 * Outputs start as garbage (a byte pattern different from the oracle's), so
 * an element that a run forgets to write is a mismatch; inputs must come
 * back unchanged.  Integers and bools compare exactly, floats with a
 * relative and absolute tolerance (`# test: tol`, or per type defaults), NaN
 * equal to NaN.  A case marked expect=runtime-error must fail when run, with
 * the same status on both targets: TC_ERR_RUNTIME (an index out of range) or
 * TC_ERR_ARGUMENT (sizes that disagree, an output extent below zero).
 *
 * With --target cuda the compiled runs are the CUDA kernels on the first GPU
 * (TC_TARGET_CUDA on host tensors: each tensor's byte span is copied to the
 * device and back, so layouts, offsets and padding are checked there too),
 * and only the oracle runs on the interpreter.
 *
 * Prints a line per failure, `PASS file entry (N cases)` per entry that
 * passed, and `N passed, M failed` (entries) at the end; exits 1 on any
 * failure.  Uses only the public API (include/tensorc.h) and libc.
 */
#include "tensorc.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ARGS 64
#define MAX_ELEMS ((int64_t)1 << 26) /* per tensor: keeps memory bounded */

/* ---- directives ---- */

typedef struct ShapeArg {
  char name[128];
  tc_shape shape;
} ShapeArg;

typedef struct Case {
  int line;
  ShapeArg args[MAX_ARGS];
  int nargs;
  bool expect_error;
} Case;

typedef struct Values {
  char name[128];
  double lo, hi;
} Values;

typedef struct Section {
  char entry[128];
  int line;
  Case *cases;
  int ncases;
  Values values[MAX_ARGS];
  int nvalues;
  bool has_tol;
  double rtol, atol;
} Section;

typedef struct Directives {
  Section *secs;
  int nsecs;
} Directives;

typedef struct Runner {
  tc_context *ctx;
  const char *file;
  int verbose;
  tc_target compiled; /* TC_TARGET_C, or TC_TARGET_CUDA (--target cuda) */
  int passed, failed;
  bool entry_failed; /* the running entry has failed */
} Runner;

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) {
    fprintf(stderr, "run_programs: out of memory\n");
    exit(2);
  }
  return p;
}

static void failf(Runner *r, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("FAIL %s: ", r->file);
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  r->entry_failed = true;
}

static void free_directives(Directives *d) {
  for (int i = 0; i < d->nsecs; i++)
    free(d->secs[i].cases);
  free(d->secs);
  d->secs = NULL;
  d->nsecs = 0;
}

/* "3x4x5" (or "scalar") into a shape; false when malformed. */
static bool parse_shape(const char *s, tc_shape *out) {
  memset(out, 0, sizeof *out);
  if (!strcmp(s, "scalar"))
    return true;
  for (;;) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || v < 0 || out->rank == TC_MAX_RANK)
      return false;
    out->dims[out->rank++] = v;
    if (*end == '\0')
      return true;
    if (*end != 'x')
      return false;
    s = end + 1;
  }
}

static bool copy_name(char *dst, size_t cap, const char *src, size_t n) {
  if (n == 0 || n >= cap)
    return false;
  memcpy(dst, src, n);
  dst[n] = '\0';
  return true;
}

/* Splits a line into whitespace-separated words (modifies it). */
static int split_words(char *s, char **w, int max) {
  int n = 0;
  for (char *p = strtok(s, " \t\r"); p && n < max; p = strtok(NULL, " \t\r"))
    w[n++] = p;
  return n;
}

/* One `# test:` line (the text after the colon); false with a message. */
static bool parse_directive(Directives *d, char *text, int line, char *msg, size_t msglen) {
  char *w[MAX_ARGS + 4];
  int n = split_words(text, w, MAX_ARGS + 4);
  if (n == 0) {
    snprintf(msg, msglen, "empty directive");
    return false;
  }
  if (!strcmp(w[0], "entry")) {
    if (n != 2) {
      snprintf(msg, msglen, "usage: entry NAME");
      return false;
    }
    d->secs = realloc(d->secs, sizeof(Section) * (size_t)(d->nsecs + 1));
    if (!d->secs)
      exit(2);
    Section *s = &d->secs[d->nsecs++];
    memset(s, 0, sizeof *s);
    s->line = line;
    if (!copy_name(s->entry, sizeof s->entry, w[1], strlen(w[1]))) {
      snprintf(msg, msglen, "bad entry name");
      return false;
    }
    return true;
  }
  if (d->nsecs == 0) {
    snprintf(msg, msglen, "'%s' before any 'entry'", w[0]);
    return false;
  }
  Section *s = &d->secs[d->nsecs - 1];
  if (!strcmp(w[0], "shapes")) {
    s->cases = realloc(s->cases, sizeof(Case) * (size_t)(s->ncases + 1));
    if (!s->cases)
      exit(2);
    Case *c = &s->cases[s->ncases++];
    memset(c, 0, sizeof *c);
    c->line = line;
    for (int i = 1; i < n; i++) {
      char *eq = strchr(w[i], '=');
      if (!eq) {
        snprintf(msg, msglen, "expected NAME=AxB, got '%s'", w[i]);
        return false;
      }
      if (!strncmp(w[i], "expect=", 7)) {
        if (strcmp(eq + 1, "runtime-error")) {
          snprintf(msg, msglen, "unknown expectation '%s'", eq + 1);
          return false;
        }
        c->expect_error = true;
        continue;
      }
      ShapeArg *a = &c->args[c->nargs];
      if (c->nargs == MAX_ARGS || !copy_name(a->name, sizeof a->name, w[i], (size_t)(eq - w[i])) ||
          !parse_shape(eq + 1, &a->shape)) {
        snprintf(msg, msglen, "bad shape '%s'", w[i]);
        return false;
      }
      c->nargs++;
    }
    return true;
  }
  if (!strcmp(w[0], "values")) {
    char *e1, *e2;
    Values *v = &s->values[s->nvalues];
    if (n != 4 || s->nvalues == MAX_ARGS || !copy_name(v->name, sizeof v->name, w[1], strlen(w[1]))) {
      snprintf(msg, msglen, "usage: values NAME LO HI");
      return false;
    }
    v->lo = strtod(w[2], &e1);
    v->hi = strtod(w[3], &e2);
    if (*e1 || *e2 || !(v->lo < v->hi)) {
      snprintf(msg, msglen, "bad value range '%s %s'", w[2], w[3]);
      return false;
    }
    s->nvalues++;
    return true;
  }
  if (!strcmp(w[0], "tol")) {
    char *e1, *e2;
    if (n != 3) {
      snprintf(msg, msglen, "usage: tol RTOL ATOL");
      return false;
    }
    s->rtol = strtod(w[1], &e1);
    s->atol = strtod(w[2], &e2);
    if (*e1 || *e2 || s->rtol < 0 || s->atol < 0) {
      snprintf(msg, msglen, "bad tolerance");
      return false;
    }
    s->has_tol = true;
    return true;
  }
  snprintf(msg, msglen, "unknown directive '%s'", w[0]);
  return false;
}

/* Finds every `# test:` line of the source. */
static bool parse_directives(Runner *r, const char *src, size_t len, Directives *d) {
  int line = 1;
  const char *p = src, *end = src + len;
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol)
      eol = end;
    const char *q = p;
    while (q < eol && (*q == ' ' || *q == '\t'))
      q++;
    static const char tag[] = "# test:";
    if ((size_t)(eol - q) >= sizeof tag - 1 && !memcmp(q, tag, sizeof tag - 1)) {
      size_t n = (size_t)(eol - q) - (sizeof tag - 1);
      char *text = xcalloc(n + 1, 1), msg[256];
      memcpy(text, q + sizeof tag - 1, n);
      bool ok = parse_directive(d, text, line, msg, sizeof msg);
      free(text);
      if (!ok) {
        failf(r, "line %d: %s", line, msg);
        return false;
      }
    }
    line++;
    p = eol + 1;
  }
  return true;
}

/* ---- host tensors: compact row-major arrays ---- */

typedef struct Host {
  tc_dtype dtype;
  tc_shape shape;
  int64_t n; /* elements */
  size_t esz;
  unsigned char *data;
} Host;

static int64_t count_elems(const tc_shape *s) {
  int64_t n = 1;
  for (int d = 0; d < s->rank; d++) {
    if (s->dims[d] < 0 || (s->dims[d] > 0 && n > MAX_ELEMS / s->dims[d]))
      return -1;
    n *= s->dims[d];
  }
  return n;
}

static bool host_init(Host *h, tc_dtype t, const tc_shape *s) {
  h->dtype = t;
  h->shape = *s;
  h->n = count_elems(s);
  h->esz = tc_dtype_size(t);
  h->data = NULL;
  if (h->n < 0)
    return false;
  h->data = xcalloc((size_t)h->n, h->esz);
  return true;
}

/* Multi-index of the k-th element in row-major order. */
static void unravel(const tc_shape *s, int64_t k, int64_t *idx) {
  for (int d = s->rank - 1; d >= 0; d--) {
    idx[d] = s->dims[d] ? k % s->dims[d] : 0;
    k = s->dims[d] ? k / s->dims[d] : 0;
  }
}

/* ---- random values ---- */

static uint64_t next_rand(uint64_t *st) {
  uint64_t x = *st; /* xorshift64* */
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *st = x;
  return x * 2685821657736338717ull;
}

static uint64_t seed_of(const char *file, const char *entry, int ci) {
  const char *base = strrchr(file, '/');
  base = base ? base + 1 : file;
  uint64_t h = 1469598103934665603ull;
  for (const char *p = base; *p; p++)
    h = (h ^ (unsigned char)*p) * 1099511628211ull;
  for (const char *p = entry; *p; p++)
    h = (h ^ (unsigned char)*p) * 1099511628211ull;
  h = (h ^ (uint64_t)ci) * 1099511628211ull;
  return h ? h : 1;
}

/* float16 bits of x, rounded to nearest even. */
static uint16_t half_from(double x) {
  uint16_t sign = signbit(x) ? 0x8000 : 0;
  if (isnan(x))
    return sign | 0x7e00;
  double a = fabs(x);
  if (a >= 65520.0)
    return sign | 0x7c00;
  if (a < ldexp(1, -14))
    return sign | (uint16_t)nearbyint(ldexp(a, 24));
  int ex;
  frexp(a, &ex);
  double m = nearbyint(ldexp(a, 11 - ex)); /* in [1024, 2048] */
  return sign | (uint16_t)(((ex + 14) << 10) + (int)m - 1024);
}

static double half_value(uint16_t h) {
  int e = (h >> 10) & 31, m = h & 1023;
  double a = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
  return (h & 0x8000) ? -a : a;
}

static uint16_t bf16_from(double x) {
  float f = (float)x;
  uint32_t u;
  memcpy(&u, &f, 4);
  if (isnan(f))
    return (uint16_t)((u >> 16) | 0x40);
  return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

static double bf16_value(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static bool is_float_type(tc_dtype t) {
  return t == TC_FLOAT16 || t == TC_BFLOAT16 || t == TC_FLOAT32 || t == TC_FLOAT64;
}

static bool is_signed_type(tc_dtype t) {
  return t == TC_INT8 || t == TC_INT16 || t == TC_INT32 || t == TC_INT64;
}

/* Writes number v (already in range for integer types) as element k. */
static void put_number(Host *h, int64_t k, double v, int64_t iv) {
  unsigned char *p = h->data + (size_t)k * h->esz;
  uint8_t u8 = (uint8_t)iv;
  uint16_t u16 = (uint16_t)iv;
  uint32_t u32 = (uint32_t)iv;
  float f = (float)v;
  switch (h->dtype) {
  case TC_BOOL: u8 = iv != 0; memcpy(p, &u8, 1); break;
  case TC_INT8: case TC_UINT8: memcpy(p, &u8, 1); break;
  case TC_INT16: case TC_UINT16: memcpy(p, &u16, 2); break;
  case TC_INT32: case TC_UINT32: memcpy(p, &u32, 4); break;
  case TC_INT64: case TC_UINT64: memcpy(p, &iv, 8); break;
  case TC_FLOAT16: u16 = half_from(v); memcpy(p, &u16, 2); break;
  case TC_BFLOAT16: u16 = bf16_from(v); memcpy(p, &u16, 2); break;
  case TC_FLOAT32: memcpy(p, &f, 4); break;
  case TC_FLOAT64: memcpy(p, &v, 8); break;
  default: break;
  }
}

static void fill_random(Host *h, uint64_t *st, const Values *range) {
  bool fl = is_float_type(h->dtype);
  double lo = fl ? -1 : is_signed_type(h->dtype) ? -8 : 0;
  double hi = fl ? 1 : h->dtype == TC_BOOL ? 2 : is_signed_type(h->dtype) ? 8 : 16;
  if (range) {
    lo = range->lo;
    hi = range->hi;
  }
  int64_t ilo = (int64_t)ceil(lo), ihi = (int64_t)ceil(hi);
  uint64_t span = ihi > ilo ? (uint64_t)ihi - (uint64_t)ilo : 1;
  for (int64_t k = 0; k < h->n; k++) {
    uint64_t r = next_rand(st);
    if (fl)
      put_number(h, k, lo + (hi - lo) * ((double)(r >> 11) * 0x1.0p-53), 0);
    else
      put_number(h, k, 0, (int64_t)((uint64_t)ilo + r % span));
  }
}

/* Element k as a double (floats) or exact integer bits. */
static void get_number(tc_dtype t, const unsigned char *p, double *f, int64_t *iv) {
  uint8_t u8;
  uint16_t u16;
  uint32_t u32;
  float x;
  *f = 0;
  *iv = 0;
  switch (t) {
  case TC_BOOL: case TC_UINT8: memcpy(&u8, p, 1); *iv = u8; break;
  case TC_INT8: memcpy(&u8, p, 1); *iv = (int8_t)u8; break;
  case TC_UINT16: memcpy(&u16, p, 2); *iv = u16; break;
  case TC_INT16: memcpy(&u16, p, 2); *iv = (int16_t)u16; break;
  case TC_UINT32: memcpy(&u32, p, 4); *iv = u32; break;
  case TC_INT32: memcpy(&u32, p, 4); *iv = (int32_t)u32; break;
  case TC_INT64: case TC_UINT64: memcpy(iv, p, 8); break;
  case TC_FLOAT16: memcpy(&u16, p, 2); *f = half_value(u16); break;
  case TC_BFLOAT16: memcpy(&u16, p, 2); *f = bf16_value(u16); break;
  case TC_FLOAT32: memcpy(&x, p, 4); *f = x; break;
  case TC_FLOAT64: memcpy(f, p, 8); break;
  default: break;
  }
}

/* ---- layouts: DLTensors over allocated memory ---- */

typedef enum { L_CONTIG, L_PADDED, L_PERMUTED, L_REVERSED, L_BROADCAST, NUM_LAYOUTS } Layout;
static const char *const layout_names[] = {"contiguous", "padded", "permuted", "reversed",
                                           "broadcast"};

/* Output bytes before a run: far from any value a test computes (huge or NaN
 * floats, 127 or -57 integers, bools neither 0 nor 1), and different for
 * the oracle and the runs checked against it. */
#define SENTINEL_REF 0x7F
#define SENTINEL_RUN 0xC7

typedef struct Dev {
  DLTensor dl;
  int64_t shape[TC_MAX_RANK];
  int64_t strides[TC_MAX_RANK];
  unsigned char *mem; /* allocation; dl.data == mem, offset in dl.byte_offset */
  size_t bytes;
  unsigned char *copy; /* inputs: the bytes before the run */
} Dev;

/* Index of the first dimension of extent > 1, or -1. */
static int broadcast_dim(const tc_shape *s) {
  for (int d = 0; d < s->rank; d++)
    if (s->dims[d] > 1)
      return d;
  return -1;
}

static int64_t elem_offset(const Dev *v, const int64_t *idx) {
  int64_t off = 0;
  for (int d = 0; d < v->dl.ndim; d++)
    off += idx[d] * v->strides[d];
  return off;
}

static unsigned char *elem_ptr(const Dev *v, const int64_t *idx, size_t esz) {
  int64_t pos = (int64_t)v->dl.byte_offset + elem_offset(v, idx) * (int64_t)esz;
  return v->mem + pos;
}

/* Lays h out in layout L (outputs: filled with `sentinel` only). */
static void dev_make(Dev *v, const Host *h, Layout L, bool input, int sentinel) {
  memset(v, 0, sizeof *v);
  int rank = h->shape.rank;
  int bd = L == L_BROADCAST && input ? broadcast_dim(&h->shape) : -1;
  int64_t ext[TC_MAX_RANK]; /* allocated extents */
  for (int d = 0; d < rank; d++) {
    v->shape[d] = h->shape.dims[d];
    ext[d] = d == bd ? 1 : h->shape.dims[d];
    if (L == L_PADDED)
      ext[d] += 1 + (d & 1);
  }
  int64_t st = 1;
  size_t esz = h->esz, off = L == L_PADDED ? 3 * esz : 0;
  if (L == L_PERMUTED) {
    for (int d = 0; d < rank; d++) {
      v->strides[d] = st;
      st *= ext[d] > 0 ? ext[d] : 1;
    }
  } else {
    for (int d = rank - 1; d >= 0; d--) {
      v->strides[d] = d == bd ? 0 : st;
      st *= ext[d] > 0 ? ext[d] : 1;
    }
  }
  if (L == L_REVERSED) { /* element 0 last in memory, every stride negated */
    for (int d = 0; d < rank; d++)
      v->strides[d] = -v->strides[d];
    off = h->n > 0 ? (size_t)(h->n - 1) * esz : 0;
  }
  v->bytes = off + (size_t)st * esz;
  v->mem = xcalloc(v->bytes, 1);
  memset(v->mem, sentinel, v->bytes);
  v->dl.data = v->mem;
  v->dl.device.device_type = kDLCPU;
  v->dl.ndim = rank;
  v->dl.dtype = tc_dtype_to_dl(h->dtype);
  v->dl.shape = v->shape;
  v->dl.strides = L == L_CONTIG ? NULL : v->strides;
  v->dl.byte_offset = off;
  if (!input)
    return;
  int64_t idx[TC_MAX_RANK];
  for (int64_t k = 0; k < h->n; k++) {
    unravel(&h->shape, k, idx);
    memcpy(elem_ptr(v, idx, esz), h->data + (size_t)k * esz, esz);
  }
  v->copy = xcalloc(v->bytes, 1);
  memcpy(v->copy, v->mem, v->bytes);
}

static void dev_free(Dev *v) {
  free(v->mem);
  free(v->copy);
  v->mem = v->copy = NULL;
}

/* Compact copy of a device tensor's elements. */
static void dev_read(const Dev *v, Host *h) {
  int64_t idx[TC_MAX_RANK];
  for (int64_t k = 0; k < h->n; k++) {
    unravel(&h->shape, k, idx);
    memcpy(h->data + (size_t)k * h->esz, elem_ptr(v, idx, h->esz), h->esz);
  }
}

/* Bytes outside the tensor's elements still hold the sentinel. */
static bool dev_padding_intact(const Dev *v, const Host *h, int sentinel) {
  unsigned char *mask = xcalloc(v->bytes, 1);
  int64_t idx[TC_MAX_RANK];
  for (int64_t k = 0; k < h->n; k++) {
    unravel(&h->shape, k, idx);
    memset(mask + (elem_ptr(v, idx, h->esz) - v->mem), 1, h->esz);
  }
  bool ok = true;
  for (size_t i = 0; i < v->bytes && ok; i++)
    ok = mask[i] || v->mem[i] == sentinel;
  free(mask);
  return ok;
}

/* ---- one entry, one case ---- */

typedef struct Entry {
  tc_program *prog;
  int index;
  const Section *sec;
  int nin, nout;
  tc_param_info in[MAX_ARGS], out[MAX_ARGS];
} Entry;

static void format_index(char *buf, size_t cap, const tc_shape *s, int64_t k) {
  int64_t idx[TC_MAX_RANK];
  unravel(s, k, idx);
  size_t n = (size_t)snprintf(buf, cap, "[");
  for (int d = 0; d < s->rank && n < cap; d++)
    n += (size_t)snprintf(buf + n, cap - n, "%s%lld", d ? "," : "", (long long)idx[d]);
  if (n < cap)
    snprintf(buf + n, cap - n, "]");
}

static void tolerance(const Section *sec, tc_dtype t, double *rtol, double *atol) {
  if (sec->has_tol) {
    *rtol = sec->rtol;
    *atol = sec->atol;
    return;
  }
  /* compiled reductions may sum in another order than the interpreter's
   * (vector lanes) and contractions may fuse multiply-adds
   * (docs/language.md): float32 results agree to rounding, not bits */
  switch (t) {
  case TC_FLOAT64: *rtol = 1e-9; *atol = 1e-12; break;
  case TC_FLOAT16: *rtol = *atol = 1e-3; break;
  case TC_BFLOAT16: *rtol = *atol = 1e-2; break;
  default: *rtol = 1e-4; *atol = 1e-5; break;
  }
}

/* Compares output o of a run with the oracle; reports the first mismatch. */
static bool compare_output(Runner *r, const Entry *e, const char *what, int o, const Host *got,
                           const Host *want) {
  double rtol, atol;
  tolerance(e->sec, got->dtype, &rtol, &atol);
  for (int64_t k = 0; k < got->n; k++) {
    double fa, fb;
    int64_t ia, ib;
    get_number(got->dtype, got->data + (size_t)k * got->esz, &fa, &ia);
    get_number(want->dtype, want->data + (size_t)k * want->esz, &fb, &ib);
    bool ok;
    if (!is_float_type(got->dtype))
      ok = ia == ib;
    else if (isnan(fa) || isnan(fb))
      ok = isnan(fa) && isnan(fb);
    else
      ok = fa == fb || fabs(fa - fb) <= atol + rtol * fabs(fb);
    if (ok)
      continue;
    char idx[160];
    format_index(idx, sizeof idx, &got->shape, k);
    if (is_float_type(got->dtype))
      failf(r, "%s %s: output %s%s: got %.9g, expected %.9g", e->sec->entry, what,
            e->out[o].name, idx, fa, fb);
    else
      failf(r, "%s %s: output %s%s: got %lld, expected %lld", e->sec->entry, what,
            e->out[o].name, idx, (long long)ia, (long long)ib);
    return false;
  }
  return true;
}

/* Runs the entry on `inputs` in layout L with target t.  With `oracle`
 * NULL, stores the outputs in `result` (compact); otherwise compares them
 * with the oracle. */
static bool run_layout(Runner *r, const Entry *e, const char *casename, const Host *inputs,
                       const Host *outs, Layout L, tc_target t, const Host *oracle, Host *result) {
  Dev din[MAX_ARGS], dout[MAX_ARGS];
  DLTensor *pin[MAX_ARGS], *pout[MAX_ARGS];
  for (int i = 0; i < e->nin; i++) {
    dev_make(&din[i], &inputs[i], L, true, 0);
    pin[i] = &din[i].dl;
  }
  int sentinel = oracle ? SENTINEL_RUN : SENTINEL_REF;
  for (int i = 0; i < e->nout; i++) {
    dev_make(&dout[i], &outs[i], L == L_BROADCAST ? L_CONTIG : L, false, sentinel);
    pout[i] = &dout[i].dl;
  }
  char what[256];
  snprintf(what, sizeof what, "%s [%s, %s]", casename, layout_names[L],
           t == TC_TARGET_C ? "c" : t == TC_TARGET_CUDA ? "cuda" : "interp");
  tc_error err;
  tc_status st = tc_run(e->prog, e->index, pin, e->nin, pout, e->nout, t, &err);
  bool ok = st == TC_OK;
  if (!ok)
    failf(r, "%s %s: %s: %s", e->sec->entry, what, tc_status_string(st), err.diagnostic);
  for (int i = 0; ok && i < e->nin; i++)
    if (memcmp(din[i].mem, din[i].copy, din[i].bytes)) {
      failf(r, "%s %s: input %s was modified", e->sec->entry, what, e->in[i].name);
      ok = false;
    }
  bool ran = ok; /* every output is checked, each failure reported */
  for (int i = 0; ran && i < e->nout; i++) {
    if (!dev_padding_intact(&dout[i], &outs[i], sentinel)) {
      failf(r, "%s %s: output %s: bytes outside the tensor were written", e->sec->entry, what,
            e->out[i].name);
      ok = false;
      continue;
    }
    Host got;
    host_init(&got, outs[i].dtype, &outs[i].shape);
    dev_read(&dout[i], &got);
    bool same = !oracle || compare_output(r, e, what, i, &got, &oracle[i]);
    ok &= same;
    if (result)
      result[i] = got;
    else
      free(got.data);
  }
  for (int i = 0; i < e->nin; i++)
    dev_free(&din[i]);
  for (int i = 0; i < e->nout; i++)
    dev_free(&dout[i]);
  return ok;
}

static void free_hosts(Host *h, int n) {
  for (int i = 0; i < n; i++) {
    free(h[i].data);
    h[i].data = NULL;
  }
}

/* The oracle for `inputs` (interpreter, compact), then every other run. */
static bool check_inputs(Runner *r, const Entry *e, const char *casename, const Host *inputs,
                         const Host *outs, bool bcast) {
  Host oracle[MAX_ARGS];
  memset(oracle, 0, sizeof oracle);
  if (!run_layout(r, e, casename, inputs, outs, L_CONTIG, TC_TARGET_INTERP, NULL, oracle)) {
    free_hosts(oracle, e->nout);
    return false;
  }
  bool ok = true;
  static const Layout plain[] = {L_CONTIG, L_PADDED, L_PERMUTED, L_REVERSED};
  for (int t = 0; t < 2; t++) {
    tc_target target = t ? TC_TARGET_INTERP : r->compiled;
    if (t && r->compiled != TC_TARGET_C)
      break; /* on the GPU the interpreter's layouts were tested already */
    if (bcast) {
      ok &= run_layout(r, e, casename, inputs, outs, L_BROADCAST, target, oracle, NULL);
      continue;
    }
    for (size_t l = 0; l < sizeof plain / sizeof plain[0]; l++)
      if (!(plain[l] == L_CONTIG && target == TC_TARGET_INTERP))
        ok &= run_layout(r, e, casename, inputs, outs, plain[l], target, oracle, NULL);
  }
  free_hosts(oracle, e->nout);
  return ok;
}

/* The inputs' values with every broadcast dimension's first slice repeated;
 * false when no input has such a dimension. */
static bool broadcast_values(const Entry *e, const Host *inputs, Host *bc) {
  bool any = false;
  for (int i = 0; i < e->nin; i++) {
    host_init(&bc[i], inputs[i].dtype, &inputs[i].shape);
    int d = broadcast_dim(&inputs[i].shape);
    any |= d >= 0;
    int64_t idx[TC_MAX_RANK];
    for (int64_t k = 0; k < bc[i].n; k++) {
      unravel(&bc[i].shape, k, idx);
      if (d >= 0)
        idx[d] = 0;
      int64_t src = 0;
      for (int j = 0; j < bc[i].shape.rank; j++)
        src = src * bc[i].shape.dims[j] + idx[j];
      memcpy(bc[i].data + (size_t)k * bc[i].esz, inputs[i].data + (size_t)src * bc[i].esz,
             bc[i].esz);
    }
  }
  return any;
}

static const Values *values_for(const Section *sec, const char *name) {
  for (int i = 0; i < sec->nvalues; i++)
    if (!strcmp(sec->values[i].name, name))
      return &sec->values[i];
  return NULL;
}

/* Input shapes of a case, by name; false with a failure reported. */
static bool case_shapes(Runner *r, const Entry *e, const Case *c, const char *casename,
                        tc_shape *shapes) {
  for (int a = 0; a < c->nargs; a++) {
    bool found = false;
    for (int i = 0; i < e->nin; i++)
      found |= !strcmp(e->in[i].name, c->args[a].name);
    if (!found) {
      failf(r, "%s %s: no input named '%s'", e->sec->entry, casename, c->args[a].name);
      return false;
    }
  }
  for (int i = 0; i < e->nin; i++) {
    const ShapeArg *a = NULL;
    for (int k = 0; k < c->nargs; k++)
      if (!strcmp(c->args[k].name, e->in[i].name))
        a = &c->args[k];
    memset(&shapes[i], 0, sizeof shapes[i]);
    if (a)
      shapes[i] = a->shape;
    if (shapes[i].rank != e->in[i].rank) {
      failf(r, "%s %s: input %s has rank %d, the shape given has %d", e->sec->entry, casename,
            e->in[i].name, e->in[i].rank, shapes[i].rank);
      return false;
    }
    if (count_elems(&shapes[i]) < 0) {
      failf(r, "%s %s: input %s is too large for the test driver", e->sec->entry, casename,
            e->in[i].name);
      return false;
    }
  }
  return true;
}

/* A case that must fail at run time: TC_ERR_RUNTIME (an index out of range)
 * or TC_ERR_ARGUMENT (sizes that disagree, an output extent below 0), the
 * same on both targets. */
static bool run_error_case(Runner *r, const Entry *e, const char *casename, const Host *inputs) {
  tc_status got[2];
  for (int t = 0; t < 2; t++) {
    tc_target target = t ? r->compiled : TC_TARGET_INTERP;
    const char *tname = t ? (r->compiled == TC_TARGET_CUDA ? "cuda" : "c") : "interp";
    Dev din[MAX_ARGS];
    DLTensor *pin[MAX_ARGS];
    DLManagedTensor *outs[MAX_ARGS] = {0};
    for (int i = 0; i < e->nin; i++) {
      dev_make(&din[i], &inputs[i], L_CONTIG, true, 0);
      pin[i] = &din[i].dl;
    }
    tc_error err;
    tc_status st = tc_run_alloc(e->prog, e->index, pin, e->nin, outs, e->nout, target, &err);
    got[t] = st;
    if (st != TC_ERR_RUNTIME && st != TC_ERR_ARGUMENT)
      failf(r, "%s %s [%s]: expected a run-time error, got %s%s%s", e->sec->entry, casename,
            tname, tc_status_string(st), st ? ": " : "", st ? err.diagnostic : "");
    else if (r->verbose)
      printf("  %s %s [%s]: %s: %s\n", e->sec->entry, casename, tname,
             tc_status_string(st), err.message);
    if (st == TC_OK)
      for (int i = 0; i < e->nout; i++)
        if (outs[i] && outs[i]->deleter)
          outs[i]->deleter(outs[i]);
    for (int i = 0; i < e->nin; i++)
      dev_free(&din[i]);
  }
  if (got[0] != got[1] && !r->entry_failed)
    failf(r, "%s %s: the interpreter fails with '%s', the compiled kernel with '%s'", e->sec->entry,
          casename, tc_status_string(got[0]), tc_status_string(got[1]));
  return !r->entry_failed;
}

static bool run_case(Runner *r, const Entry *e, int ci) {
  const Case *c = &e->sec->cases[ci];
  char casename[64];
  snprintf(casename, sizeof casename, "case %d (line %d)", ci + 1, c->line);
  tc_shape ishapes[MAX_ARGS], oshapes[MAX_ARGS];
  if (!case_shapes(r, e, c, casename, ishapes))
    return false;
  Host inputs[MAX_ARGS], outs[MAX_ARGS], bc[MAX_ARGS];
  uint64_t st = seed_of(r->file, e->sec->entry, ci);
  for (int i = 0; i < e->nin; i++) {
    host_init(&inputs[i], e->in[i].dtype, &ishapes[i]);
    fill_random(&inputs[i], &st, values_for(e->sec, e->in[i].name));
  }
  bool ok;
  tc_error err;
  if (c->expect_error) {
    ok = run_error_case(r, e, casename, inputs);
  } else if (tc_infer_shapes(e->prog, e->index, ishapes, e->nin, oshapes, e->nout, &err)) {
    failf(r, "%s %s: tc_infer_shapes: %s", e->sec->entry, casename, err.diagnostic);
    ok = false;
  } else {
    ok = true;
    for (int i = 0; ok && i < e->nout; i++)
      if (!host_init(&outs[i], e->out[i].dtype, &oshapes[i])) {
        failf(r, "%s %s: output %s is too large for the test driver", e->sec->entry, casename,
              e->out[i].name);
        ok = false;
        free_hosts(outs, i + 1);
      }
    if (ok) {
      ok = check_inputs(r, e, casename, inputs, outs, false);
      if (broadcast_values(e, inputs, bc))
        ok &= check_inputs(r, e, casename, bc, outs, true);
      free_hosts(bc, e->nin);
      free_hosts(outs, e->nout);
    }
  }
  free_hosts(inputs, e->nin);
  return ok;
}

static void run_section(Runner *r, tc_program *p, const Section *sec) {
  Entry e;
  memset(&e, 0, sizeof e);
  e.prog = p;
  e.sec = sec;
  r->entry_failed = false;
  e.index = tc_program_find_entry(p, sec->entry);
  if (e.index < 0) {
    failf(r, "line %d: no def named '%s'", sec->line, sec->entry);
  } else {
    e.nin = tc_entry_num_inputs(p, e.index);
    e.nout = tc_entry_num_outputs(p, e.index);
    if (e.nin > MAX_ARGS || e.nout > MAX_ARGS)
      failf(r, "%s: too many parameters for the test driver", sec->entry);
    for (int i = 0; !r->entry_failed && i < e.nin; i++)
      if (tc_entry_input(p, e.index, i, &e.in[i]))
        failf(r, "%s: tc_entry_input failed", sec->entry);
    for (int i = 0; !r->entry_failed && i < e.nout; i++)
      if (tc_entry_output(p, e.index, i, &e.out[i]))
        failf(r, "%s: tc_entry_output failed", sec->entry);
    if (sec->ncases == 0)
      failf(r, "%s: no 'shapes' case", sec->entry);
    for (int v = 0; !r->entry_failed && v < sec->nvalues; v++) {
      bool found = false;
      for (int i = 0; i < e.nin; i++)
        found |= !strcmp(e.in[i].name, sec->values[v].name);
      if (!found)
        failf(r, "%s: 'values' names no input: '%s'", sec->entry, sec->values[v].name);
    }
    int normal = 0;
    for (int ci = 0; ci < sec->ncases; ci++)
      normal += !sec->cases[ci].expect_error;
    if (normal == 1) /* error-only entries are fine */
      printf("WARN %s: %s has one case that runs to completion (README: at least two)\n",
             r->file, sec->entry);
    for (int ci = 0; !r->entry_failed && ci < sec->ncases; ci++)
      run_case(r, &e, ci);
  }
  if (r->entry_failed) {
    r->failed++;
  } else {
    r->passed++;
    printf("PASS %s %s (%d cases)\n", r->file, sec->entry, sec->ncases);
  }
  fflush(stdout);
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  size_t cap = 4096, n = 0;
  char *s = malloc(cap);
  for (size_t k; s && (k = fread(s + n, 1, cap - n, f)) > 0;) {
    n += k;
    if (n == cap) {
      char *t = realloc(s, cap *= 2);
      if (!t)
        free(s);
      s = t;
    }
  }
  fclose(f);
  *len = n;
  return s;
}

static void run_file(Runner *r, const char *path) {
  r->file = path;
  r->entry_failed = false;
  size_t len;
  char *src = read_file(path, &len);
  if (!src) {
    failf(r, "cannot read the file");
    r->failed++;
    return;
  }
  Directives d = {NULL, 0};
  tc_program *p = NULL;
  tc_error err;
  if (!parse_directives(r, src, len, &d)) {
    r->failed++;
  } else if (d.nsecs == 0) {
    failf(r, "no '# test: entry' directive");
    r->failed++;
  } else if (tc_compile(r->ctx, path, src, len, &p, &err) != TC_OK) {
    failf(r, "does not compile:\n%s", err.diagnostic);
    r->failed++;
  } else {
    for (int i = 0; i < d.nsecs; i++)
      run_section(r, p, &d.secs[i]);
    for (int i = 0; i < tc_program_num_entries(p); i++) {
      bool tested = false;
      for (int k = 0; k < d.nsecs; k++)
        tested |= !strcmp(d.secs[k].entry, tc_program_entry_name(p, i));
      if (!tested)
        printf("WARN %s: def '%s' has no test directives\n", path, tc_program_entry_name(p, i));
    }
  }
  tc_program_free(p);
  free_directives(&d);
  free(src);
}

int main(int argc, char **argv) {
  Runner r;
  memset(&r, 0, sizeof r);
  int first = 1;
  r.compiled = TC_TARGET_C;
  for (; first < argc && argv[first][0] == '-'; first++) {
    if (!strcmp(argv[first], "-v"))
      r.verbose = 1;
    else if (!strcmp(argv[first], "--target") && first + 1 < argc &&
             (!strcmp(argv[first + 1], "c") || !strcmp(argv[first + 1], "cuda")))
      r.compiled = !strcmp(argv[++first], "cuda") ? TC_TARGET_CUDA : TC_TARGET_C;
    else
      break;
  }
  if (first >= argc) {
    fprintf(stderr, "usage: run_programs [-v] [--target c|cuda] FILE.tc...\n");
    return 2;
  }
  tc_error err;
  if (tc_context_new(NULL, &r.ctx, &err) != TC_OK) {
    fprintf(stderr, "run_programs: %s\n", err.diagnostic);
    return 2;
  }
  for (int i = first; i < argc; i++)
    run_file(&r, argv[i]);
  tc_context_free(r.ctx);
  printf("%d passed, %d failed\n", r.passed, r.failed);
  return r.failed ? 1 : 0;
}
