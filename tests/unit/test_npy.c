/* test_npy.c — the .npy reader and writer of tools/npy.c: round trips of
 * every dtype and rank, strided and bfloat16 writes, Fortran order, format
 * versions, byte order, and malformed or truncated files (every prefix of a
 * valid file, mutated headers), each checked to fail with a message that
 * names the file.  Under ASan the parses run on exact-size copies, so any
 * read out of bounds is caught. */
#include "unit.h"

#include "../../tools/npy.c"

#include <math.h>
#include <unistd.h>

static char err[512];

/* Writes `t` to memory; returns the malloc'ed bytes. */
static char *encode(const DLTensor *t, size_t *len) {
  char *buf = NULL;
  FILE *f = open_memstream(&buf, len);
  int rc = npy_fwrite(f, "mem", t, err, sizeof err);
  fclose(f);
  if (rc) {
    free(buf);
    return NULL;
  }
  return buf;
}

/* Parses an exact-size copy of bytes[0..len). */
static int parse_copy(const void *bytes, size_t len, NpyArray *a) {
  void *copy = malloc(len ? len : 1);
  memcpy(copy, bytes, len);
  err[0] = '\0';
  int rc = npy_parse("x.npy", copy, len, a, err, sizeof err);
  free(copy);
  return rc;
}

/* A file from a header dict text and raw data; version 1, 2 or 3. */
static char *make_file(int version, const char *dict, const void *data, size_t dlen, size_t *len) {
  size_t hl = strlen(dict), pre = version == 1 ? 10 : 12;
  char *b = malloc(pre + hl + dlen + 1);
  memcpy(b, "\x93NUMPY", 6);
  b[6] = (char)version;
  b[7] = 0;
  for (size_t i = 0; i < pre - 8; i++)
    b[8 + i] = (char)((hl >> (8 * i)) & 0xff);
  memcpy(b + pre, dict, hl);
  if (dlen)
    memcpy(b + pre + hl, data, dlen);
  *len = pre + hl + dlen;
  return b;
}

static DLTensor tensor(void *data, tc_dtype dt, int rank, int64_t *shape, int64_t *strides) {
  DLTensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.device.device_type = kDLCPU;
  t.ndim = rank;
  t.dtype = tc_dtype_to_dl(dt);
  t.shape = shape;
  t.strides = strides;
  return t;
}

TEST(round_trip_every_dtype_and_rank) {
  static const int64_t shapes[][4] = {{0}, {5}, {2, 3, 4}, {3, 0, 2}, {1, 1, 1, 7}};
  static const int ranks[] = {0, 1, 3, 3, 4};
  for (int dt = 0; dt < TC_NUM_DTYPES; dt++) {
    if (dt == TC_BFLOAT16)
      continue;
    for (int s = 0; s < 5; s++) {
      int64_t shape[4];
      memcpy(shape, shapes[s], sizeof shape);
      size_t n = 1;
      for (int i = 0; i < ranks[s]; i++)
        n *= (size_t)shape[i];
      size_t es = tc_dtype_size((tc_dtype)dt);
      unsigned char *data = malloc(n * es + 1);
      for (size_t i = 0; i < n * es; i++)
        data[i] = dt == TC_BOOL ? (unsigned char)(i % 3 == 0) : (unsigned char)(i * 37 + 11);
      DLTensor t = tensor(data, (tc_dtype)dt, ranks[s], shape, NULL);
      size_t len;
      char *file = encode(&t, &len);
      CHECK(file != NULL);
      CHECK_INT(((unsigned char)file[8] | (unsigned char)file[9] << 8) + 10, len - n * es);
      CHECK_INT((len - n * es) % 64, 0);
      NpyArray a;
      CHECK_INT(parse_copy(file, len, &a), 0);
      CHECK_INT(a.dtype, dt);
      CHECK_INT(a.rank, ranks[s]);
      CHECK(!a.fortran_order);
      for (int i = 0; i < ranks[s]; i++)
        CHECK_INT(a.shape[i], shape[i]);
      CHECK_INT(a.nbytes, n * es);
      CHECK(!memcmp(a.data, data, n * es));
      npy_free(&a);
      free(file);
      free(data);
    }
  }
}

TEST(header_text_is_numpy_style) {
  int64_t shape[2] = {3, 4}, one[1] = {7};
  float data[12] = {0};
  DLTensor t = tensor(data, TC_FLOAT32, 2, shape, NULL);
  size_t len;
  char *file = encode(&t, &len);
  CHECK(file && !strncmp(file + 10, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", 59));
  CHECK(file && len == 128 + 48 && file[127] == '\n');
  free(file);
  t = tensor(data, TC_FLOAT32, 1, one, NULL);
  file = encode(&t, &len);
  CHECK(file && strstr(file + 10, "'shape': (7,), }"));
  free(file);
  t = tensor(data, TC_FLOAT64, 0, NULL, NULL);
  file = encode(&t, &len);
  CHECK(file && strstr(file + 10, "'shape': (), }"));
  CHECK_INT(len, 128 + 8);
  free(file);
}

TEST(strided_write_gathers_in_row_major_order) {
  int32_t m[3][4];
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 4; j++)
      m[i][j] = 10 * i + j;
  /* the transpose, 4x3, as a view: strides (1, 4) */
  int64_t shape[2] = {4, 3}, strides[2] = {1, 4};
  DLTensor t = tensor(m, TC_INT32, 2, shape, strides);
  size_t len;
  char *file = encode(&t, &len);
  NpyArray a;
  CHECK_INT(parse_copy(file, len, &a), 0);
  const int32_t *v = a.data;
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 3; j++)
      CHECK_INT(v[i * 3 + j], 10 * j + i);
  npy_free(&a);
  free(file);
  /* broadcast (stride 0) with a byte offset */
  int64_t bshape[2] = {2, 3}, bstrides[2] = {0, 1};
  t = tensor(m, TC_INT32, 2, bshape, bstrides);
  t.byte_offset = 4 * sizeof(int32_t);
  file = encode(&t, &len);
  CHECK_INT(parse_copy(file, len, &a), 0);
  v = a.data;
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 3; j++)
      CHECK_INT(v[i * 3 + j], 10 + j);
  npy_free(&a);
  free(file);
}

TEST(bfloat16_rounding) {
  static const struct { uint32_t in; uint16_t out; } cases[] = {
      {0x3F800000u, 0x3F80}, /* 1.0 exact */
      {0x3F808000u, 0x3F80}, /* halfway, even stays */
      {0x3F818000u, 0x3F82}, /* halfway, odd rounds up */
      {0x3F808001u, 0x3F81}, /* above halfway */
      {0x3F807FFFu, 0x3F80}, /* below halfway */
      {0xBF818000u, 0xBF82}, /* negative */
      {0x7F7FFFFFu, 0x7F80}, /* max float rounds to inf */
      {0x7F800000u, 0x7F80}, /* inf */
      {0x00000001u, 0x0000}, /* tiny denormal */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    float f;
    memcpy(&f, &cases[i].in, 4);
    CHECK_INT(npy_f32_to_bf16(f), cases[i].out);
  }
  uint16_t nan = npy_f32_to_bf16(NAN);
  CHECK(isnan(npy_bf16_to_f32(nan)));
  uint32_t snan_bits = 0x7F800001u; /* would round to inf if truncated naively */
  float snan;
  memcpy(&snan, &snan_bits, 4);
  CHECK(isnan(npy_bf16_to_f32(npy_f32_to_bf16(snan))));
  CHECK(npy_bf16_to_f32(0x4049) == 3.140625f);
}

TEST(bfloat16_written_as_float32_and_converted_back) {
  uint16_t h[3] = {0x3F80, 0xC000, 0x4049}; /* 1, -2, 3.140625 */
  int64_t shape[1] = {3};
  DLTensor t = tensor(h, TC_BFLOAT16, 1, shape, NULL);
  size_t len;
  char *file = encode(&t, &len);
  CHECK(file && strstr(file + 10, "'<f4'"));
  NpyArray a;
  CHECK_INT(parse_copy(file, len, &a), 0);
  CHECK_INT(a.dtype, TC_FLOAT32);
  const float *f = a.data;
  CHECK(f[0] == 1.0f && f[1] == -2.0f && f[2] == 3.140625f);
  CHECK_INT(npy_to_bfloat16(&a, err, sizeof err), 0);
  CHECK_INT(a.dtype, TC_BFLOAT16);
  CHECK_INT(a.nbytes, 6);
  CHECK(!memcmp(a.data, h, 6));
  CHECK_INT(npy_to_bfloat16(&a, err, sizeof err), -1); /* no longer float32 */
  npy_free(&a);
  free(file);
}

TEST(fortran_order_is_a_strided_view) {
  /* 2x3 column-major: memory holds column by column */
  int16_t col[6] = {0, 10, 1, 11, 2, 12}; /* a[i][j] = 10*i + j */
  size_t len;
  char *file = make_file(1, "{'descr': '<i2', 'fortran_order': True, 'shape': (2, 3), }\n", col,
                         sizeof col, &len);
  NpyArray a;
  CHECK_INT(parse_copy(file, len, &a), 0);
  CHECK(a.fortran_order);
  CHECK_INT(a.strides[0], 1);
  CHECK_INT(a.strides[1], 2);
  const int16_t *v = a.data;
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 3; j++)
      CHECK_INT(v[i * a.strides[0] + j * a.strides[1]], 10 * i + j);
  /* writing the view back gives C order */
  DLTensor t;
  npy_dltensor(&a, &t);
  CHECK(t.strides == a.strides && t.shape == a.shape && t.ndim == 2);
  char *out = encode(&t, &len);
  NpyArray b;
  CHECK_INT(parse_copy(out, len, &b), 0);
  CHECK(!b.fortran_order && b.strides[0] == 3 && b.strides[1] == 1);
  const int16_t *w = b.data;
  for (int k = 0; k < 6; k++)
    CHECK_INT(w[k], 10 * (k / 3) + k % 3);
  npy_free(&a);
  npy_free(&b);
  free(out);
  free(file);
}

TEST(versions_byte_order_and_spellings) {
  int32_t le[2] = {1, -2};
  unsigned char be[8] = {0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe};
  static const char *dicts[] = {
      "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }",
      "{\"descr\": \"=i4\", \"shape\": (2L,), \"fortran_order\": False}",
      "{'shape':(2,),'fortran_order':False,'descr':'<i4'}  \n",
  };
  for (int v = 1; v <= 3; v++)
    for (int d = 0; d < 3; d++) {
      size_t len;
      char *file = make_file(v, dicts[d], le, sizeof le, &len);
      NpyArray a;
      CHECK_INT(parse_copy(file, len, &a), 0);
      CHECK(a.rank == 1 && a.shape[0] == 2 && a.dtype == TC_INT32);
      CHECK(a.nbytes == 8 && !memcmp(a.data, le, 8));
      npy_free(&a);
      free(file);
    }
  size_t len;
  char *file = make_file(1, "{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }", be, 8, &len);
  NpyArray a;
  CHECK_INT(parse_copy(file, len, &a), 0);
  CHECK(a.nbytes == 8 && !memcmp(a.data, le, 8));
  npy_free(&a);
  free(file);
  /* single bytes: order irrelevant; bools normalised to 0/1 */
  unsigned char bools[3] = {0, 1, 7};
  file = make_file(1, "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }", bools, 3, &len);
  CHECK_INT(parse_copy(file, len, &a), 0);
  CHECK(a.dtype == TC_BOOL && ((unsigned char *)a.data)[2] == 1);
  npy_free(&a);
  free(file);
  /* trailing bytes after the data are ignored, as numpy does */
  file = make_file(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }", bools, 3, &len);
  CHECK_INT(parse_copy(file, len, &a), 0);
  CHECK(a.dtype == TC_UINT8 && a.nbytes == 2);
  npy_free(&a);
  free(file);
}

TEST(malformed_headers_fail_with_messages) {
  static const struct { const char *dict; const char *msg; } cases[] = {
      {"{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", "unsupported dtype '<c8'"},
      {"{'descr': '<f16', 'fortran_order': False, 'shape': (1,), }", "unsupported dtype"},
      {"{'descr': '<U3', 'fortran_order': False, 'shape': (1,), }", "unsupported dtype"},
      {"{'descr': 'O', 'fortran_order': False, 'shape': (1,), }", "unsupported dtype"},
      {"{'descr': '', 'fortran_order': False, 'shape': (1,), }", "unsupported dtype"},
      {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", "structured"},
      {"{'descr': '<f4', 'shape': (1,), }", "missing key 'fortran_order'"},
      {"{'fortran_order': False, 'shape': (1,), }", "missing key 'descr'"},
      {"{'descr': '<f4', 'fortran_order': False}", "missing key 'shape'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", "unexpected key 'x'"},
      {"{'descr': '<f4', 'fortran_order': 0, 'shape': (1,), }", "expected True or False"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", "non-negative integer"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1 2), }", "',' or ')'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': [1], }", "'('"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", "rank over 8"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", "too large"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", "too large"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), } junk", "junk after"},
      {"{'descr': '<f4, 'fortran_order': False, 'shape': (1,), }", "expected"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), ", "the end"},
      {"{'descr': '<f4'", "the end"},
      {"{'descr\\n': '<f4'}", "unsupported string"},
      {"'descr': '<f4'", "'{'"},
      {"", "'{'"},
  };
  float data[4] = {0};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t len;
    char *file = make_file(1, cases[i].dict, data, sizeof data, &len);
    NpyArray a;
    int rc = parse_copy(file, len, &a);
    CHECK_INT(rc, -1);
    if (rc == 0)
      npy_free(&a);
    if (!strstr(err, cases[i].msg) || strncmp(err, "x.npy: ", 7)) {
      fprintf(stderr, "  case %zu: got \"%s\", expected \"%s\"\n", i, err, cases[i].msg);
      CHECK(0);
    }
    free(file);
  }
}

TEST(bad_preambles) {
  NpyArray a;
  CHECK_INT(parse_copy("\x93NUMPZ\x01\x00\x00\x00", 10, &a), -1);
  CHECK(strstr(err, "not a .npy file"));
  CHECK_INT(parse_copy("PK\x03\x04", 4, &a), -1);
  CHECK(strstr(err, "not a .npy file"));
  CHECK_INT(parse_copy("\x93NUMPY\x04\x00\x00\x00", 10, &a), -1);
  CHECK(strstr(err, "version 4.0"));
  CHECK_INT(parse_copy("\x93NUMPY\x01\x01\x00\x00", 10, &a), -1);
  CHECK(strstr(err, "version 1.1"));
  CHECK_INT(parse_copy("\x93NUMPY\x02\x00\x00\x00\x00\x10", 12, &a), -1);
  CHECK(strstr(err, "header too long"));
  CHECK_INT(parse_copy("\x93NUMPY\x01\x00\xff\x00{}", 12, &a), -1);
  CHECK(strstr(err, "truncated header"));
}

TEST(every_truncation_fails) {
  double d[6] = {1, 2, 3, 4, 5, 6};
  int64_t shape[2] = {2, 3};
  DLTensor t = tensor(d, TC_FLOAT64, 2, shape, NULL);
  size_t len;
  char *file = encode(&t, &len);
  for (size_t n = 0; n < len; n++) {
    NpyArray a;
    int rc = parse_copy(file, n, &a);
    CHECK_INT(rc, -1);
    if (rc == 0)
      npy_free(&a);
    CHECK(!strncmp(err, "x.npy: ", 7));
    if (n >= 128)
      CHECK(strstr(err, "truncated data: shape 2x3 of float64 needs 48 bytes"));
  }
  free(file);
}

TEST(mutated_headers_never_crash) {
  float data[6] = {1, 2, 3, 4, 5, 6};
  int64_t shape[2] = {2, 3};
  DLTensor t = tensor(data, TC_FLOAT32, 2, shape, NULL);
  size_t len;
  char *file = encode(&t, &len);
  uint64_t seed = 12345;
  int ok = 0, bad = 0;
  for (int iter = 0; iter < 20000; iter++) {
    char *m = malloc(len);
    memcpy(m, file, len);
    int nmut = 1 + iter % 4;
    for (int k = 0; k < nmut; k++) {
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      size_t pos = (size_t)(seed >> 33) % 80; /* the preamble and the header */
      static const char alphabet[] = "{}()[]',:0123456789 TrueFalse<>|=fiubc\n\x93\xff";
      m[pos] = alphabet[(seed >> 20) % (sizeof alphabet - 1)];
    }
    NpyArray a;
    size_t cut = (iter % 7 == 0) ? (size_t)(seed >> 40) % len : len;
    if (parse_copy(m, cut, &a) == 0) {
      CHECK(a.rank >= 0 && a.rank <= TC_MAX_RANK);
      CHECK(a.nbytes <= cut);
      ok++;
      npy_free(&a);
    } else {
      CHECK(!strncmp(err, "x.npy: ", 7) && strlen(err) > 7);
      bad++;
    }
    free(m);
  }
  CHECK(ok > 0 && bad > 0);
  free(file);
}

TEST(files_on_disk) {
  char dir[] = "/tmp/test_npy_XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char path[256], trunc[256];
  snprintf(path, sizeof path, "%s/a.npy", dir);
  snprintf(trunc, sizeof trunc, "%s/t.npy", dir);
  uint64_t v[5] = {1, 2, 3, UINT64_MAX, 0};
  int64_t shape[1] = {5};
  DLTensor t = tensor(v, TC_UINT64, 1, shape, NULL);
  CHECK_INT(npy_write(path, &t, err, sizeof err), 0);
  NpyArray a;
  CHECK_INT(npy_read(path, &a, err, sizeof err), 0);
  CHECK(a.dtype == TC_UINT64 && a.rank == 1 && a.shape[0] == 5 && !memcmp(a.data, v, 40));
  npy_free(&a);
  /* a truncated copy on disk */
  FILE *in = fopen(path, "rb"), *out = fopen(trunc, "wb");
  char buf[512];
  size_t n = fread(buf, 1, sizeof buf, in);
  fwrite(buf, 1, n - 9, out);
  fclose(in);
  fclose(out);
  CHECK_INT(npy_read(trunc, &a, err, sizeof err), -1);
  CHECK(strstr(err, trunc) == err && strstr(err, "truncated data: shape 5 of uint64 needs 40 bytes, the file has 31"));
  /* not there; a directory */
  char missing[300];
  snprintf(missing, sizeof missing, "%s/missing.npy", dir);
  CHECK_INT(npy_read(missing, &a, err, sizeof err), -1);
  CHECK(strstr(err, "missing.npy: cannot open: No such file"));
  CHECK_INT(npy_read(dir, &a, err, sizeof err), -1);
  CHECK(strstr(err, dir) == err);
  /* cannot create */
  CHECK_INT(npy_write(missing + 0 * strlen(missing), &t, err, sizeof err), 0);
  char nodir[300];
  snprintf(nodir, sizeof nodir, "%s/no/such/dir.npy", dir);
  CHECK_INT(npy_write(nodir, &t, err, sizeof err), -1);
  CHECK(strstr(err, "cannot create"));
  remove(path);
  remove(trunc);
  remove(missing);
  rmdir(dir);
}

TEST(write_rejects_what_it_cannot_write) {
  float f = 1;
  DLTensor t = tensor(&f, TC_FLOAT32, 0, NULL, NULL);
  t.device.device_type = kDLCUDA;
  size_t len;
  CHECK(encode(&t, &len) == NULL);
  CHECK(strstr(err, "not in CPU memory"));
  t = tensor(&f, TC_FLOAT32, 0, NULL, NULL);
  t.dtype.lanes = 4;
  CHECK(encode(&t, &len) == NULL);
  CHECK(strstr(err, "dtype"));
}

RUN_TESTS()
