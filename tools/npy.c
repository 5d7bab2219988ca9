/*
 * npy.c — NumPy .npy files in and out.
 *
 * A .npy file is a 6-byte magic ("\x93NUMPY"), a version (major, minor), the
 * header length (2 bytes little-endian in 1.0, 4 bytes in 2.0 and 3.0), the
 * header — a Python dict literal such as
 *
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
 *
 * padded with spaces and a newline — and then the raw elements.  We parse the
 * dict ourselves with a small recursive-descent reader that accepts exactly
 * the literals numpy writes (strings, True/False, tuples of integers), and we
 * check every length against the bytes present before touching them, so a
 * malformed or truncated file is an error message, never an out-of-bounds
 * read or a huge allocation.
 *
 * Fortran-order arrays keep their bytes: the array gets column-major strides,
 * and the kernels, which take any strides, read it in place.  Big-endian data
 * is byte-swapped on load.  Bool bytes are normalised to 0/1.
 */
#include "npy.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__)
#define NPY_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define NPY_PRINTF(a, b)
#endif

#define MAX_HEADER (1 << 20) /* numpy itself refuses headers over 10000 bytes */

static const char MAGIC[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

/* What the header says. */
typedef struct Header {
  tc_dtype dtype;
  bool swap; /* the data's byte order differs from the host's */
  bool fortran;
  int rank;
  int64_t shape[TC_MAX_RANK];
} Header;

NPY_PRINTF(4, 5)
static int fail(char *err, size_t errlen, const char *name, const char *fmt, ...) {
  if (!err || !errlen)
    return -1;
  int n = snprintf(err, errlen, "%s: ", name);
  if (n < 0 || (size_t)n >= errlen)
    return -1;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
  va_end(ap);
  return -1;
}

static bool host_is_little(void) {
  uint16_t x = 1;
  unsigned char c;
  memcpy(&c, &x, 1);
  return c == 1;
}

/* "3x4", "0", or "scalar" */
static void format_shape(char *out, size_t cap, int rank, const int64_t *shape) {
  if (rank == 0) {
    snprintf(out, cap, "scalar");
    return;
  }
  size_t k = 0;
  out[0] = '\0';
  for (int i = 0; i < rank && k < cap; i++) {
    int n = snprintf(out + k, cap - k, i ? "x%lld" : "%lld", (long long)shape[i]);
    if (n < 0)
      break;
    k += (size_t)n;
  }
}

/* ---- bfloat16 ---- */

uint16_t npy_f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it NaN, quiet */
    return (uint16_t)((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1); /* round to nearest even */
  return (uint16_t)(u >> 16);
}

float npy_bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* ---- dtypes ---- */

const char *npy_descr(tc_dtype t) {
  static const char *const little[TC_NUM_DTYPES] = {
      [TC_BOOL] = "|b1",    [TC_INT8] = "|i1",    [TC_INT16] = "<i2",
      [TC_INT32] = "<i4",   [TC_INT64] = "<i8",   [TC_UINT8] = "|u1",
      [TC_UINT16] = "<u2",  [TC_UINT32] = "<u4",  [TC_UINT64] = "<u8",
      [TC_FLOAT16] = "<f2", [TC_BFLOAT16] = NULL, [TC_FLOAT32] = "<f4",
      [TC_FLOAT64] = "<f8"};
  static const char *const big[TC_NUM_DTYPES] = {
      [TC_BOOL] = "|b1",    [TC_INT8] = "|i1",    [TC_INT16] = ">i2",
      [TC_INT32] = ">i4",   [TC_INT64] = ">i8",   [TC_UINT8] = "|u1",
      [TC_UINT16] = ">u2",  [TC_UINT32] = ">u4",  [TC_UINT64] = ">u8",
      [TC_FLOAT16] = ">f2", [TC_BFLOAT16] = NULL, [TC_FLOAT32] = ">f4",
      [TC_FLOAT64] = ">f8"};
  if ((unsigned)t >= TC_NUM_DTYPES)
    return NULL;
  return host_is_little() ? little[t] : big[t];
}

/* Maps a descr such as "<f4" to a dtype; sets *swap for foreign byte order. */
static int parse_descr(const char *name, const char *d, Header *h, char *err, size_t errlen) {
  const char *p = d;
  char order = '=';
  if (*p == '<' || *p == '>' || *p == '|' || *p == '=')
    order = *p++;
  char kind = *p ? *p++ : '\0';
  int size = 0;
  while (*p >= '0' && *p <= '9' && size < 100)
    size = size * 10 + (*p++ - '0');
  static const struct { char kind; int size; tc_dtype t; } map[] = {
      {'b', 1, TC_BOOL},   {'i', 1, TC_INT8},    {'i', 2, TC_INT16},
      {'i', 4, TC_INT32},  {'i', 8, TC_INT64},   {'u', 1, TC_UINT8},
      {'u', 2, TC_UINT16}, {'u', 4, TC_UINT32},  {'u', 8, TC_UINT64},
      {'f', 2, TC_FLOAT16}, {'f', 4, TC_FLOAT32}, {'f', 8, TC_FLOAT64}};
  if (!*p)
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
      if (map[i].kind == kind && map[i].size == size) {
        h->dtype = map[i].t;
        bool little = order == '<' || ((order == '=' || order == '|') && host_is_little());
        h->swap = size > 1 && little != host_is_little();
        return 0;
      }
  return fail(err, errlen, name,
              "unsupported dtype '%s' (tensorc reads bool, int8-int64, uint8-uint64, "
              "float16, float32, float64)", d);
}

/* ---- the header dict ---- */

typedef struct Reader {
  const char *p, *end, *start;
  const char *name;
  char *err;
  size_t errlen;
} Reader;

static void skip_space(Reader *r) {
  while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
    r->p++;
}

static int expect_fail(Reader *r, const char *what) {
  if (r->p >= r->end)
    return fail(r->err, r->errlen, r->name, "malformed header: expected %s, found the end", what);
  return fail(r->err, r->errlen, r->name, "malformed header: expected %s at offset %d, found '%c'",
              what, (int)(r->p - r->start), *r->p);
}

static bool accept(Reader *r, char c) {
  skip_space(r);
  if (r->p < r->end && *r->p == c) {
    r->p++;
    return true;
  }
  return false;
}

/* string := "'" chars "'" | '"' chars '"'   (no escapes) */
static int read_string(Reader *r, char *out, size_t cap) {
  skip_space(r);
  if (r->p >= r->end || (*r->p != '\'' && *r->p != '"'))
    return expect_fail(r, "a string");
  char q = *r->p++;
  size_t n = 0;
  while (r->p < r->end && *r->p != q) {
    if (*r->p == '\\' || *r->p == '\n')
      return fail(r->err, r->errlen, r->name, "malformed header: unsupported string");
    if (n + 1 >= cap)
      return fail(r->err, r->errlen, r->name, "malformed header: string too long");
    out[n++] = *r->p++;
  }
  if (r->p >= r->end)
    return fail(r->err, r->errlen, r->name, "malformed header: unterminated string");
  r->p++;
  out[n] = '\0';
  return 0;
}

/* bool := 'True' | 'False' */
static int read_bool(Reader *r, bool *out) {
  skip_space(r);
  size_t left = (size_t)(r->end - r->p);
  if (left >= 4 && !memcmp(r->p, "True", 4)) {
    r->p += 4;
    *out = true;
    return 0;
  }
  if (left >= 5 && !memcmp(r->p, "False", 5)) {
    r->p += 5;
    *out = false;
    return 0;
  }
  return expect_fail(r, "True or False");
}

/* int := digits ['L'] */
static int read_dim(Reader *r, int64_t *out) {
  skip_space(r);
  if (r->p >= r->end || *r->p < '0' || *r->p > '9')
    return expect_fail(r, "a non-negative integer");
  int64_t v = 0;
  while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
    int digit = *r->p++ - '0';
    if (v > (INT64_MAX - digit) / 10)
      return fail(r->err, r->errlen, r->name, "malformed header: dimension too large");
    v = v * 10 + digit;
  }
  if (r->p < r->end && *r->p == 'L') /* Python 2 longs */
    r->p++;
  *out = v;
  return 0;
}

/* tuple := '(' [ int { ',' int } [','] ] ')' */
static int read_shape(Reader *r, Header *h) {
  if (!accept(r, '('))
    return expect_fail(r, "'(' starting the shape");
  h->rank = 0;
  while (!accept(r, ')')) {
    int64_t v = 0;
    if (read_dim(r, &v))
      return -1;
    if (h->rank == TC_MAX_RANK)
      return fail(r->err, r->errlen, r->name, "arrays of rank over %d are not supported",
                  TC_MAX_RANK);
    h->shape[h->rank++] = v;
    if (!accept(r, ',')) {
      if (!accept(r, ')'))
        return expect_fail(r, "',' or ')' in the shape");
      break;
    }
  }
  return 0;
}

/* dict := '{' [ key ':' value { ',' key ':' value } [','] ] '}' */
static int parse_dict(Reader *r, Header *h) {
  bool have_descr = false, have_fortran = false, have_shape = false;
  char descr[32] = "";
  if (!accept(r, '{'))
    return expect_fail(r, "'{' starting the header");
  while (!accept(r, '}')) {
    char key[32];
    if (read_string(r, key, sizeof key))
      return -1;
    if (!accept(r, ':'))
      return expect_fail(r, "':' after a key");
    if (!strcmp(key, "descr")) {
      skip_space(r);
      if (r->p < r->end && *r->p == '[')
        return fail(r->err, r->errlen, r->name, "structured dtypes are not supported");
      if (read_string(r, descr, sizeof descr))
        return -1;
      have_descr = true;
    } else if (!strcmp(key, "fortran_order")) {
      if (read_bool(r, &h->fortran))
        return -1;
      have_fortran = true;
    } else if (!strcmp(key, "shape")) {
      if (read_shape(r, h))
        return -1;
      have_shape = true;
    } else {
      return fail(r->err, r->errlen, r->name, "malformed header: unexpected key '%s'", key);
    }
    if (!accept(r, ',')) {
      if (!accept(r, '}'))
        return expect_fail(r, "',' or '}' in the header");
      break;
    }
  }
  skip_space(r);
  if (r->p < r->end && *r->p != '\0')
    return fail(r->err, r->errlen, r->name, "malformed header: junk after the dict");
  if (!have_descr || !have_fortran || !have_shape)
    return fail(r->err, r->errlen, r->name, "malformed header: missing key '%s'",
                !have_descr ? "descr" : !have_fortran ? "fortran_order" : "shape");
  return parse_descr(r->name, descr, h, r->err, r->errlen);
}

/* ---- the preamble ---- */

/* Parses magic, version and header length from the first `n` bytes;
 * *data_off receives where the data starts. */
static int parse_preamble(const char *name, const unsigned char *p, size_t n, size_t *hoff,
                          size_t *hlen, char *err, size_t errlen) {
  if (n < 8 || memcmp(p, MAGIC, 6))
    return fail(err, errlen, name, "not a .npy file (no \\x93NUMPY magic)");
  int major = p[6], minor = p[7];
  if ((major != 1 && major != 2 && major != 3) || minor != 0)
    return fail(err, errlen, name, "unsupported .npy format version %d.%d (tensorc reads 1.0, "
                "2.0, 3.0)", major, minor);
  size_t lenbytes = major == 1 ? 2 : 4;
  if (n < 8 + lenbytes)
    return fail(err, errlen, name, "truncated header");
  size_t len = 0;
  for (size_t i = lenbytes; i-- > 0;)
    len = len << 8 | p[8 + i];
  if (len > MAX_HEADER)
    return fail(err, errlen, name, "header too long (%zu bytes)", len);
  *hoff = 8 + lenbytes;
  *hlen = len;
  return 0;
}

/* Checks the header and computes the data size. */
static int parse_header(const char *name, const char *text, size_t len, Header *h,
                        size_t *nbytes, char *err, size_t errlen) {
  memset(h, 0, sizeof *h);
  Reader r = {text, text + len, text, name, err, errlen};
  if (parse_dict(&r, h))
    return -1;
  size_t elem = tc_dtype_size(h->dtype);
  uint64_t total = elem;
  bool empty = false;
  for (int i = 0; i < h->rank; i++)
    if (h->shape[i] == 0)
      empty = true;
  for (int i = 0; i < h->rank && !empty; i++) {
    if ((uint64_t)h->shape[i] > (UINT64_MAX >> 1) / total)
      return fail(err, errlen, name, "array too large");
    total *= (uint64_t)h->shape[i];
  }
  if (empty)
    total = 0;
  if (total > (uint64_t)SIZE_MAX / 2)
    return fail(err, errlen, name, "array too large");
  *nbytes = (size_t)total;
  return 0;
}

/* Fills `a` from a parsed header, adopting `data` (malloc'ed, nbytes):
 * strides for C or Fortran order, byte swapping, bools normalised. */
static void adopt_array(const Header *h, unsigned char *data, size_t nbytes, NpyArray *a) {
  memset(a, 0, sizeof *a);
  a->data = data;
  a->nbytes = nbytes;
  a->dtype = h->dtype;
  a->rank = h->rank;
  a->fortran_order = h->fortran && h->rank > 1;
  memcpy(a->shape, h->shape, sizeof a->shape);
  int64_t s = 1;
  for (int k = 0; k < h->rank; k++) {
    int d = a->fortran_order ? k : h->rank - 1 - k;
    a->strides[d] = s;
    s *= h->shape[d] ? h->shape[d] : 1;
  }
  size_t elem = tc_dtype_size(h->dtype);
  if (h->swap)
    for (size_t i = 0; i + elem <= nbytes; i += elem)
      for (size_t j = 0; j < elem / 2; j++) {
        unsigned char t = data[i + j];
        data[i + j] = data[i + elem - 1 - j];
        data[i + elem - 1 - j] = t;
      }
  if (h->dtype == TC_BOOL)
    for (size_t i = 0; i < nbytes; i++)
      data[i] = data[i] != 0;
}

static int truncated_data(const char *name, const Header *h, size_t want, size_t have, char *err,
                          size_t errlen) {
  char shape[128];
  format_shape(shape, sizeof shape, h->rank, h->shape);
  return fail(err, errlen, name, "truncated data: shape %s of %s needs %zu bytes, the file has %zu",
              shape, tc_dtype_name(h->dtype), want, have);
}

int npy_parse(const char *name, const void *bytes, size_t len, NpyArray *a, char *err,
              size_t errlen) {
  const unsigned char *p = bytes;
  size_t hoff, hlen, nbytes;
  Header h;
  if (parse_preamble(name, p, len, &hoff, &hlen, err, errlen))
    return -1;
  if (hlen > len - hoff)
    return fail(err, errlen, name, "truncated header");
  if (parse_header(name, (const char *)p + hoff, hlen, &h, &nbytes, err, errlen))
    return -1;
  size_t have = len - hoff - hlen;
  if (have < nbytes)
    return truncated_data(name, &h, nbytes, have, err, errlen);
  unsigned char *data = malloc(nbytes ? nbytes : 1);
  if (!data)
    return fail(err, errlen, name, "out of memory (%zu bytes)", nbytes);
  memcpy(data, p + hoff + hlen, nbytes);
  adopt_array(&h, data, nbytes, a);
  return 0;
}

int npy_read(const char *path, NpyArray *a, char *err, size_t errlen) {
  memset(a, 0, sizeof *a);
  FILE *f = fopen(path, "rb");
  if (!f)
    return fail(err, errlen, path, "cannot open: %s", strerror(errno));
  unsigned char pre[12];
  size_t n = fread(pre, 1, sizeof pre, f);
  size_t hoff, hlen, nbytes;
  Header h;
  char *text = NULL;
  unsigned char *data = NULL;
  int rc = -1;
  if (parse_preamble(path, pre, n, &hoff, &hlen, err, errlen))
    goto out;
  if (fseek(f, (long)hoff, SEEK_SET) || !(text = malloc(hlen + 1)))
    goto io;
  if (fread(text, 1, hlen, f) != hlen) {
    fail(err, errlen, path, "truncated header");
    goto out;
  }
  if (parse_header(path, text, hlen, &h, &nbytes, err, errlen))
    goto out;
  /* how much data is there, before allocating what the header claims */
  long here = ftell(f);
  if (here < 0 || fseek(f, 0, SEEK_END))
    goto io;
  long end = ftell(f);
  if (end < here || fseek(f, here, SEEK_SET))
    goto io;
  if ((uint64_t)(end - here) < (uint64_t)nbytes) {
    truncated_data(path, &h, nbytes, (size_t)(end - here), err, errlen);
    goto out;
  }
  if (!(data = malloc(nbytes ? nbytes : 1))) {
    fail(err, errlen, path, "out of memory (%zu bytes)", nbytes);
    goto out;
  }
  if (fread(data, 1, nbytes, f) != nbytes)
    goto io;
  adopt_array(&h, data, nbytes, a);
  data = NULL;
  rc = 0;
  goto out;
io:
  fail(err, errlen, path, "read error: %s", ferror(f) ? strerror(errno) : "unexpected end of file");
out:
  free(text);
  free(data);
  fclose(f);
  return rc;
}

void npy_free(NpyArray *a) {
  if (!a)
    return;
  free(a->data);
  a->data = NULL;
  a->nbytes = 0;
}

void npy_dltensor(NpyArray *a, DLTensor *t) {
  memset(t, 0, sizeof *t);
  t->data = a->data;
  t->device.device_type = kDLCPU;
  t->ndim = a->rank;
  t->dtype = tc_dtype_to_dl(a->dtype);
  t->shape = a->shape;
  t->strides = a->strides;
}

int npy_to_bfloat16(NpyArray *a, char *err, size_t errlen) {
  if (a->dtype != TC_FLOAT32)
    return fail(err, errlen, "bfloat16", "expects float32 data, got %s", tc_dtype_name(a->dtype));
  size_t n = a->nbytes / 4;
  uint16_t *out = malloc(n ? n * 2 : 1);
  if (!out)
    return fail(err, errlen, "bfloat16", "out of memory");
  const unsigned char *in = a->data;
  for (size_t i = 0; i < n; i++) {
    float f;
    memcpy(&f, in + 4 * i, 4);
    out[i] = npy_f32_to_bf16(f);
  }
  free(a->data);
  a->data = out;
  a->nbytes = n * 2;
  a->dtype = TC_BFLOAT16;
  return 0;
}

/* ---- writing ---- */

/* The header for `rank`/`shape` of `descr`, padded so the data starts at a
 * multiple of 64 bytes; returns its length (the preamble included). */
static size_t make_header(char *out, size_t cap, const char *descr, int rank, const int64_t *shape) {
  char dict[512];
  int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
  for (int i = 0; i < rank; i++)
    n += snprintf(dict + n, sizeof dict - (size_t)n, "%lld%s", (long long)shape[i],
                  rank == 1 ? "," : i + 1 < rank ? ", " : "");
  n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
  size_t total = 10 + (size_t)n + 1;
  total = (total + 63) / 64 * 64;
  size_t hlen = total - 10;
  if (total > cap)
    return 0;
  memcpy(out, MAGIC, 6);
  out[6] = 1;
  out[7] = 0;
  out[8] = (char)(hlen & 0xff);
  out[9] = (char)(hlen >> 8);
  memcpy(out + 10, dict, (size_t)n);
  memset(out + 10 + n, ' ', hlen - (size_t)n - 1);
  out[total - 1] = '\n';
  return total;
}

int npy_fwrite(FILE *f, const char *name, const DLTensor *t, char *err, size_t errlen) {
  tc_dtype dt;
  if (t->device.device_type != kDLCPU)
    return fail(err, errlen, name, "tensor is not in CPU memory");
  if (tc_dtype_from_dl(t->dtype, &dt))
    return fail(err, errlen, name, "tensor has a dtype tensorc does not know");
  if (t->ndim < 0 || t->ndim > TC_MAX_RANK)
    return fail(err, errlen, name, "tensor has rank %d", (int)t->ndim);
  bool bf16 = dt == TC_BFLOAT16;
  tc_dtype file_dt = bf16 ? TC_FLOAT32 : dt;
  int rank = t->ndim;
  char header[1024];
  size_t hl = make_header(header, sizeof header, npy_descr(file_dt), rank, t->shape);
  if (!hl || fwrite(header, 1, hl, f) != hl)
    return fail(err, errlen, name, "write error: %s", strerror(errno));

  int64_t count = 1, stride[TC_MAX_RANK];
  bool compact = true;
  for (int i = rank - 1; i >= 0; i--) {
    stride[i] = t->strides ? t->strides[i] : count;
    if (t->shape[i] != 1 && stride[i] != count)
      compact = false;
    count *= t->shape[i];
  }
  if (count <= 0)
    return 0;
  size_t esize = tc_dtype_size(dt), osize = tc_dtype_size(file_dt);
  const unsigned char *base = (const unsigned char *)t->data + t->byte_offset;
  if (compact && !bf16) {
    if (fwrite(base, esize, (size_t)count, f) != (size_t)count)
      return fail(err, errlen, name, "write error: %s", strerror(errno));
    return 0;
  }
  /* gather element by element in row-major order, in chunks */
  unsigned char chunk[1 << 16];
  size_t used = 0;
  int64_t idx[TC_MAX_RANK] = {0};
  for (int64_t e = 0; e < count; e++) {
    int64_t off = 0;
    for (int i = 0; i < rank; i++)
      off += idx[i] * stride[i];
    const unsigned char *src = base + off * (int64_t)esize;
    if (bf16) {
      uint16_t h;
      memcpy(&h, src, 2);
      float v = npy_bf16_to_f32(h);
      memcpy(chunk + used, &v, 4);
    } else {
      memcpy(chunk + used, src, esize);
    }
    used += osize;
    if (used + 8 > sizeof chunk || e + 1 == count) {
      if (fwrite(chunk, 1, used, f) != used)
        return fail(err, errlen, name, "write error: %s", strerror(errno));
      used = 0;
    }
    for (int i = rank - 1; i >= 0 && ++idx[i] == t->shape[i]; i--)
      idx[i] = 0;
  }
  return 0;
}

int npy_write(const char *path, const DLTensor *t, char *err, size_t errlen) {
  FILE *f = fopen(path, "wb");
  if (!f)
    return fail(err, errlen, path, "cannot create: %s", strerror(errno));
  int rc = npy_fwrite(f, path, t, err, errlen);
  if (fclose(f) && rc == 0)
    rc = fail(err, errlen, path, "write error: %s", strerror(errno));
  if (rc)
    remove(path);
  return rc;
}
