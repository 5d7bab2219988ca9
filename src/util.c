/*
 * util.c — the small things every stage uses: arenas (one per compilation,
 * nodes never freed one by one), growable strings, error rendering with the
 * source line and a caret, FNV-1a hashing and the dtype table.
 */
#include "tc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- arenas ---- */

struct ArenaChunk {
  ArenaChunk *next;
  size_t used, cap;
  _Alignas(max_align_t) unsigned char mem[];
};

static void arena_oom(Arena *a) {
  if (a->oom)
    longjmp(*a->oom, (int)TC_ERR_NOMEM);
}

void *arena_alloc(Arena *a, size_t n) {
  n = (n + 15) & ~(size_t)15;
  ArenaChunk *ch = a->head;
  if (!ch || ch->cap - ch->used < n) {
    size_t cap = n > 65536 ? n : 65536;
    ch = malloc(sizeof(ArenaChunk) + cap);
    if (!ch) {
      arena_oom(a);
      return NULL;
    }
    ch->used = 0;
    ch->cap = cap;
    ch->next = a->head;
    a->head = ch;
  }
  void *p = ch->mem + ch->used;
  ch->used += n;
  memset(p, 0, n);
  return p;
}

char *arena_strndup(Arena *a, const char *s, size_t n) {
  char *p = arena_alloc(a, n + 1);
  if (p)
    memcpy(p, s, n);
  return p;
}

char *arena_strdup(Arena *a, const char *s) { return arena_strndup(a, s, strlen(s)); }

char *arena_printf(Arena *a, const char *fmt, ...) {
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *p = arena_alloc(a, (size_t)(n < 0 ? 0 : n) + 1);
  if (p && n > 0)
    vsnprintf(p, (size_t)n + 1, fmt, ap2);
  va_end(ap2);
  return p;
}

void arena_free(Arena *a) {
  ArenaChunk *ch = a->head;
  while (ch) {
    ArenaChunk *next = ch->next;
    free(ch);
    ch = next;
  }
  a->head = NULL;
}

void vec_grow(Arena *a, void **data, int *cap, size_t elem) {
  int ncap = *cap ? *cap * 2 : 8;
  void *p = arena_alloc(a, (size_t)ncap * elem);
  if (!p)
    return; /* only without an oom handler; the push then writes nowhere */
  if (*data)
    memcpy(p, *data, (size_t)*cap * elem);
  *data = p;
  *cap = ncap;
}

/* ---- strings ---- */

static bool buf_reserve(Buf *b, size_t extra) {
  if (b->oom)
    return false;
  if (b->len + extra + 1 <= b->cap)
    return true;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra + 1)
    cap *= 2;
  char *s = realloc(b->s, cap);
  if (!s) {
    b->oom = true;
    return false;
  }
  b->s = s;
  b->cap = cap;
  return true;
}

void buf_putn(Buf *b, const char *s, size_t n) {
  if (!buf_reserve(b, n))
    return;
  memcpy(b->s + b->len, s, n);
  b->len += n;
  b->s[b->len] = '\0';
}

void buf_puts(Buf *b, const char *s) { buf_putn(b, s, strlen(s)); }

void buf_vprintf(Buf *b, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  if (n > 0 && buf_reserve(b, (size_t)n)) {
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap2);
    b->len += (size_t)n;
  }
  va_end(ap2);
}

void buf_printf(Buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  buf_vprintf(b, fmt, ap);
  va_end(ap);
}

void buf_indent(Buf *b, int n) {
  for (int i = 0; i < n; i++)
    buf_putn(b, "  ", 2);
}

char *buf_detach(Buf *b) {
  char *s = b->s;
  if (!s && !b->oom)
    s = calloc(1, 1);
  if (b->oom) {
    free(b->s);
    s = NULL;
  }
  b->s = NULL;
  b->len = b->cap = 0;
  b->oom = false;
  return s;
}

void buf_free(Buf *b) {
  free(b->s);
  b->s = NULL;
  b->len = b->cap = 0;
}

uint64_t hash_bytes(const void *p, size_t n, uint64_t seed) {
  const unsigned char *s = p;
  uint64_t h = 1469598103934665603ull ^ seed;
  for (size_t i = 0; i < n; i++) {
    h ^= s[i];
    h *= 1099511628211ull;
  }
  return h;
}

bool util_write_all(int fd, const void *data, size_t n) {
  const char *s = data;
  while (n) {
    ssize_t w = write(fd, s, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return false;
    s += w;
    n -= (size_t)w;
  }
  return true;
}

/* ---- errors ---- */

static void copy_str(char *dst, size_t cap, const char *src, size_t n) {
  if (n >= cap)
    n = cap - 1;
  memcpy(dst, src, n);
  dst[n] = '\0';
}

/* Finds line `line` (1-based) of the file; returns its start and length. */
static const char *find_line(const SrcFile *f, int line, size_t *len) {
  const char *p = f->text, *end = f->text + f->len;
  for (int l = 1; l < line && p < end; p++)
    if (*p == '\n')
      l++;
  const char *q = p;
  while (q < end && *q != '\n')
    q++;
  *len = (size_t)(q - p);
  return p;
}

void error_clear(tc_error *err) {
  if (err)
    memset(err, 0, sizeof *err);
}

void error_vset(tc_error *err, tc_status code, const SrcFile *file, Loc loc,
                const char *fmt, va_list ap) {
  if (!err)
    return;
  error_clear(err);
  err->code = code;
  vsnprintf(err->message, sizeof err->message, fmt, ap);
  if (file && file->name)
    copy_str(err->file, sizeof err->file, file->name, strlen(file->name));
  if (!file || loc.line <= 0) {
    snprintf(err->diagnostic, sizeof err->diagnostic, "error: %s", err->message);
    return;
  }
  err->line = loc.line;
  err->col = loc.col;
  size_t n;
  const char *src = find_line(file, loc.line, &n);
  copy_str(err->source_line, sizeof err->source_line, src, n);
  /* caret under the column; tabs kept so it lines up */
  char caret[512];
  size_t k = 0;
  for (int i = 1; i < loc.col && k + 2 < sizeof caret; i++)
    caret[k++] = (size_t)(i - 1) < n && src[i - 1] == '\t' ? '\t' : ' ';
  caret[k++] = '^';
  caret[k] = '\0';
  /* a long message is cut, never overflowed */
  if (snprintf(err->diagnostic, sizeof err->diagnostic, "%s:%d:%d: error: %s\n%s\n%s",
               err->file, loc.line, loc.col, err->message, err->source_line, caret) < 0)
    err->diagnostic[0] = '\0';
}

void error_set(tc_error *err, tc_status code, const SrcFile *file, Loc loc,
               const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  error_vset(err, code, file, loc, fmt, ap);
  va_end(ap);
}

void error_at(Ctx *c, Loc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  error_vset(c->err, TC_ERR_PROGRAM, c->file, loc, fmt, ap);
  va_end(ap);
  longjmp(*c->jmp, (int)TC_ERR_PROGRAM);
}

void internal_error(Ctx *c, const char *file, int line, const char *what) {
  error_set(c->err, TC_ERR_INTERNAL, NULL, (Loc){0, 0},
            "internal error at %s:%d: %s (please report this)", file, line, what);
  longjmp(*c->jmp, (int)TC_ERR_INTERNAL);
}

const char *tc_status_string(tc_status s) {
  switch (s) {
#define X(name, text) \
  case name:          \
    return text;
    TC_STATUS_LIST(X)
#undef X
  }
  return "unknown status";
}

/* ---- dtypes ---- */

const DTypeInfo dtype_info[TC_NUM_DTYPES] = {
    /* name, ctype, vtype, size, bits, int, signed, float, bool, dl code */
    [TC_BOOL] = {"bool", "uint8_t", "_Bool", 1, 8, false, false, false, true, kDLBool},
    [TC_INT8] = {"int8", "int8_t", "int8_t", 1, 8, true, true, false, false, kDLInt},
    [TC_INT16] = {"int16", "int16_t", "int16_t", 2, 16, true, true, false, false, kDLInt},
    [TC_INT32] = {"int32", "int32_t", "int32_t", 4, 32, true, true, false, false, kDLInt},
    [TC_INT64] = {"int64", "int64_t", "int64_t", 8, 64, true, true, false, false, kDLInt},
    [TC_UINT8] = {"uint8", "uint8_t", "uint8_t", 1, 8, true, false, false, false, kDLUInt},
    [TC_UINT16] = {"uint16", "uint16_t", "uint16_t", 2, 16, true, false, false, false, kDLUInt},
    [TC_UINT32] = {"uint32", "uint32_t", "uint32_t", 4, 32, true, false, false, false, kDLUInt},
    [TC_UINT64] = {"uint64", "uint64_t", "uint64_t", 8, 64, true, false, false, false, kDLUInt},
    [TC_FLOAT16] = {"float16", "uint16_t", "float", 2, 16, false, true, true, false, kDLFloat},
    [TC_BFLOAT16] = {"bfloat16", "uint16_t", "float", 2, 16, false, true, true, false, kDLBfloat},
    [TC_FLOAT32] = {"float32", "float", "float", 4, 32, false, true, true, false, kDLFloat},
    [TC_FLOAT64] = {"float64", "double", "double", 8, 64, false, true, true, false, kDLFloat},
};

bool dtype_from_name(const char *name, size_t len, tc_dtype *out) {
  static const struct {
    const char *name;
    tc_dtype t;
  } alias[] = {{"float", TC_FLOAT32}, {"double", TC_FLOAT64}};
  for (size_t i = 0; i < sizeof alias / sizeof alias[0]; i++)
    if (strlen(alias[i].name) == len && !memcmp(alias[i].name, name, len)) {
      *out = alias[i].t;
      return true;
    }
  for (int t = 0; t < TC_NUM_DTYPES; t++)
    if (strlen(dtype_info[t].name) == len && !memcmp(dtype_info[t].name, name, len)) {
      *out = (tc_dtype)t;
      return true;
    }
  return false;
}

static tc_dtype int_of(bool is_signed, int bits) {
  switch (bits) {
  case 8: return is_signed ? TC_INT8 : TC_UINT8;
  case 16: return is_signed ? TC_INT16 : TC_UINT16;
  case 32: return is_signed ? TC_INT32 : TC_UINT32;
  default: return is_signed ? TC_INT64 : TC_UINT64;
  }
}

tc_dtype dtype_promote(tc_dtype a, tc_dtype b) {
  const DTypeInfo *x = &dtype_info[a], *y = &dtype_info[b];
  if (a == b)
    return a;
  if (x->is_bool)
    return b;
  if (y->is_bool)
    return a;
  if (x->is_float && y->is_float) {
    if (x->bits == y->bits) /* float16 with bfloat16 */
      return TC_FLOAT32;
    return x->bits > y->bits ? a : b;
  }
  if (x->is_float)
    return a;
  if (y->is_float)
    return b;
  int bits = x->bits > y->bits ? x->bits : y->bits;
  return int_of(x->is_signed || y->is_signed, bits);
}

const char *tc_dtype_name(tc_dtype t) {
  return (unsigned)t < TC_NUM_DTYPES ? dtype_info[t].name : "?";
}

size_t tc_dtype_size(tc_dtype t) {
  return (unsigned)t < TC_NUM_DTYPES ? (size_t)dtype_info[t].size : 0;
}

DLDataType tc_dtype_to_dl(tc_dtype t) {
  DLDataType d = {dtype_info[t].dl_code, (uint8_t)dtype_info[t].bits, 1};
  return d;
}

int tc_dtype_from_dl(DLDataType dt, tc_dtype *out) {
  if (dt.lanes != 1)
    return -1;
  for (int t = 0; t < TC_NUM_DTYPES; t++)
    if (dtype_info[t].dl_code == dt.code && dtype_info[t].bits == dt.bits) {
      *out = (tc_dtype)t;
      return 0;
    }
  /* numpy-style bool stored as uint8 with code kDLUInt is not bool: no alias */
  return -1;
}

void tc_free(void *p) { free(p); }

/* ---- shared name tables ---- */

const char *const binop_names[NUM_BINOPS] = {
#define X(n, s) s,
    BINOP_LIST(X)
#undef X
};

const char *const unop_names[NUM_UNOPS] = {
#define X(n, s) s,
    UNOP_LIST(X)
#undef X
};

const BuiltinInfo builtin_info[NUM_BUILTINS] = {
#define X(n, a) {#n, a},
    BUILTIN_LIST(X)
#undef X
};

int builtin_lookup(const char *name) {
  for (int i = 0; i < NUM_BUILTINS; i++)
    if (!strcmp(builtin_info[i].name, name))
      return i;
  return -1;
}

const char *const for_kind_names[] = {
#define X(n, s) s,
    FOR_KIND_LIST(X)
#undef X
};
