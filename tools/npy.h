/*
 * npy.h — reading and writing NumPy .npy files, the tensor format of the
 * tensorc CLI and of the test tools.  Uses only the public API (tensorc.h).
 *
 * Reading accepts format versions 1.0, 2.0 and 3.0; the dtypes bool (|b1),
 * int8..int64, uint8..uint64, float16, float32 and float64 in either byte
 * order ('<', '>', '|', '='; big-endian data is swapped on load); C or
 * Fortran order (a Fortran-order file is loaded as a column-major strided
 * view, not copied); 0-d arrays (scalars).  Every error is a message that
 * starts with the file name; no malformed or truncated file is read out of
 * bounds.
 *
 * Writing produces format 1.0, C order, native byte order, from any strided
 * DLTensor.  numpy has no bfloat16: a bfloat16 tensor is written as a float32
 * file (exact), and npy_to_bfloat16() converts a float32 array that feeds a
 * bfloat16 input (round to nearest even).
 */
#ifndef TC_NPY_H
#define TC_NPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tensorc.h"

/* A loaded array.  Owns `data`; free with npy_free(). */
typedef struct NpyArray {
  tc_dtype dtype;
  int rank;                     /* 0 for a scalar */
  int64_t shape[TC_MAX_RANK];
  int64_t strides[TC_MAX_RANK]; /* in elements: row-major, or column-major
                                   when fortran_order */
  bool fortran_order;
  void *data;                   /* malloc'ed, nbytes (at least 1 byte) */
  size_t nbytes;
} NpyArray;

/* Reads the .npy file `path` into `a`.  Returns 0, or -1 with a message
 * ("PATH: ...") in err[0..errlen). `a` needs no freeing after an error. */
int npy_read(const char *path, NpyArray *a, char *err, size_t errlen);

/* The same from `len` bytes in memory; `name` is used in messages. */
int npy_parse(const char *name, const void *bytes, size_t len, NpyArray *a,
              char *err, size_t errlen);

void npy_free(NpyArray *a); /* frees the data; `a` may be reused */

/* Fills `t` with a view of `a` (shape and strides point into `a`). */
void npy_dltensor(NpyArray *a, DLTensor *t);

/* Writes the tensor `t` (any strides and byte_offset, CPU memory) to `path`
 * as a format 1.0 file; bfloat16 becomes float32.  Returns 0 or -1 with a
 * message.  npy_fwrite writes to an open stream (`name` for messages). */
int npy_write(const char *path, const DLTensor *t, char *err, size_t errlen);
int npy_fwrite(FILE *f, const char *name, const DLTensor *t, char *err, size_t errlen);

/* Converts a float32 array to bfloat16 in place (same layout), rounding to
 * nearest even.  Returns 0, or -1 when `a` is not float32. */
int npy_to_bfloat16(NpyArray *a, char *err, size_t errlen);

/* The .npy descr of a dtype in native byte order ("<f4"), or NULL for
 * bfloat16, which numpy lacks. */
const char *npy_descr(tc_dtype t);

/* bfloat16 <-> float32 bit conversions (round to nearest even; NaN stays
 * NaN). */
uint16_t npy_f32_to_bf16(float f);
float npy_bf16_to_f32(uint16_t h);

#endif
