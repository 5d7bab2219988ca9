/*
 * tensorc.h — the public C API of tensorc, a tensor-comprehension compiler.
 *
 * A tc_context holds what outlives one program: the C compiler to use, the
 * kernel cache (in memory and on disk) and the thread pool.  A tc_program is
 * one checked source with one entry per `def`.  Entries run on DLPack
 * DLTensors.  Every function that can fail returns a tc_status (TC_OK == 0)
 * and, when given a tc_error*, fills it with a message and, for errors in a
 * program, the line and column.  Nothing here exits, aborts or keeps global
 * mutable state: contexts and programs may be used from several threads.
 *
 * Ownership: each *_new / tc_compile result is owned by the caller and freed
 * with the matching *_free, which accepts NULL.  Strings returned by
 * accessors live as long as the object they came from.  Strings returned
 * through `char **` are malloc'ed: free them with tc_free().
 */
#ifndef TENSORC_H
#define TENSORC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TC_VERSION "0.1.0"
#define TC_MAX_RANK 8

/* ---- DLPack ABI (version 0.8 layout), declared from the DLPack specification ----
 * Skipped when the application already included a DLPack header. */
#ifndef DLPACK_VERSION
typedef enum {
  kDLCPU = 1, kDLCUDA = 2, kDLCUDAHost = 3, kDLOpenCL = 4, kDLVulkan = 7,
  kDLMetal = 8, kDLVPI = 9, kDLROCM = 10, kDLROCMHost = 11, kDLExtDev = 12,
  kDLCUDAManaged = 13, kDLOneAPI = 14, kDLWebGPU = 15, kDLHexagon = 16,
} DLDeviceType;

typedef struct {
  DLDeviceType device_type;
  int32_t device_id;
} DLDevice;

typedef enum {
  kDLInt = 0, kDLUInt = 1, kDLFloat = 2, kDLOpaqueHandle = 3,
  kDLBfloat = 4, kDLComplex = 5, kDLBool = 6,
} DLDataTypeCode;

typedef struct {
  uint8_t code;   /* a DLDataTypeCode */
  uint8_t bits;
  uint16_t lanes; /* 1 for scalars */
} DLDataType;

typedef struct {
  void *data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t *shape;
  int64_t *strides;     /* in elements; NULL means compact row-major */
  uint64_t byte_offset;
} DLTensor;

typedef struct DLManagedTensor {
  DLTensor dl_tensor;
  void *manager_ctx;
  void (*deleter)(struct DLManagedTensor *self);
} DLManagedTensor;
#endif

/* ---- status codes ---- */
#define TC_STATUS_LIST(X)                                                     \
  X(TC_OK, "ok")                                                              \
  X(TC_ERR_PROGRAM, "error in program")        /* located: line/col set */   \
  X(TC_ERR_ARGUMENT, "bad argument")           /* wrong tensor, shape... */  \
  X(TC_ERR_RUNTIME, "error while running")     /* e.g. indirect index OOB */ \
  X(TC_ERR_COMPILER, "C compiler failed")                                     \
  X(TC_ERR_IO, "input/output error")                                          \
  X(TC_ERR_NOMEM, "out of memory")                                            \
  X(TC_ERR_UNSUPPORTED, "unsupported")                                        \
  X(TC_ERR_INTERNAL, "internal error")

typedef enum {
#define X(name, text) name,
  TC_STATUS_LIST(X)
#undef X
} tc_status;

const char *tc_status_string(tc_status s);

/* An error as a value.  `message` is the short text ("undefined tensor 'B'");
 * `diagnostic` the full rendering, "FILE:LINE:COL: error: message" followed
 * by the source line and a caret when line > 0. */
typedef struct tc_error {
  tc_status code;
  int line, col;            /* 1-based; 0 when not about a source position */
  char file[256];
  char message[1024];
  char source_line[512];
  char diagnostic[2048];
} tc_error;

/* ---- element types ---- */
#define TC_DTYPE_LIST(X)                                                      \
  X(TC_BOOL, "bool") X(TC_INT8, "int8") X(TC_INT16, "int16")                  \
  X(TC_INT32, "int32") X(TC_INT64, "int64") X(TC_UINT8, "uint8")              \
  X(TC_UINT16, "uint16") X(TC_UINT32, "uint32") X(TC_UINT64, "uint64")        \
  X(TC_FLOAT16, "float16") X(TC_BFLOAT16, "bfloat16")                         \
  X(TC_FLOAT32, "float32") X(TC_FLOAT64, "float64")

typedef enum {
#define X(name, text) name,
  TC_DTYPE_LIST(X)
#undef X
  TC_NUM_DTYPES
} tc_dtype;

const char *tc_dtype_name(tc_dtype t);
size_t tc_dtype_size(tc_dtype t);
DLDataType tc_dtype_to_dl(tc_dtype t);
/* Returns 0 and sets *out, or -1 when DLPack type has no tensorc equivalent. */
int tc_dtype_from_dl(DLDataType dt, tc_dtype *out);

/* ---- contexts ---- */
typedef struct tc_context tc_context;

typedef struct tc_context_options {
  const char *cc;          /* C compiler; NULL: $CC, else "cc" */
  const char *cache_dir;   /* NULL: $TENSORC_CACHE_DIR, else ~/.cache/tensorc */
  const char *extra_cflags;/* appended to the compile command; NULL: $TENSORC_CFLAGS */
  int num_threads;         /* 0: $TENSORC_NUM_THREADS, else the core count */
  int disk_cache;          /* 1 use the disk cache (default when options is NULL) */
  int verbose;             /* 1: print each compiler command to stderr */
} tc_context_options;

/* Fills `o` with the defaults (environment variables are read by tc_context_new). */
void tc_context_options_init(tc_context_options *o);
tc_status tc_context_new(const tc_context_options *opts, tc_context **out, tc_error *err);
void tc_context_free(tc_context *ctx);

/* ---- programs ---- */
typedef struct tc_program tc_program;

/* Parses and checks `source` (length `len`; `filename` is used in messages).
 * On a program error returns TC_ERR_PROGRAM with err->line/col set. The
 * program keeps a pointer to `ctx`, which must outlive it. */
tc_status tc_compile(tc_context *ctx, const char *filename, const char *source,
                     size_t len, tc_program **out, tc_error *err);
void tc_program_free(tc_program *p);

int tc_program_num_entries(const tc_program *p);
const char *tc_program_entry_name(const tc_program *p, int entry);
/* Index of the entry called `name`, or -1. */
int tc_program_find_entry(const tc_program *p, const char *name);

typedef struct tc_param_info {
  const char *name;
  tc_dtype dtype;
  int rank;
  const char *dim_names[TC_MAX_RANK]; /* size symbol, or NULL for a constant */
  int64_t dim_values[TC_MAX_RANK];    /* the constant, or -1 */
  int typed;                          /* outputs: 1 if declared with a type */
} tc_param_info;

int tc_entry_num_inputs(const tc_program *p, int entry);
int tc_entry_num_outputs(const tc_program *p, int entry);
tc_status tc_entry_input(const tc_program *p, int entry, int i, tc_param_info *out);
tc_status tc_entry_output(const tc_program *p, int entry, int i, tc_param_info *out);

typedef struct tc_shape {
  int rank;
  int64_t dims[TC_MAX_RANK];
} tc_shape;

/* Output shapes from input shapes, by range inference.  `inputs` has
 * tc_entry_num_inputs entries (rank-0 for scalars), `outputs` room for
 * tc_entry_num_outputs. */
tc_status tc_infer_shapes(const tc_program *p, int entry, const tc_shape *inputs,
                          int n_inputs, tc_shape *outputs, int n_outputs,
                          tc_error *err);

/* ---- running ---- */
typedef enum { TC_TARGET_C = 0, TC_TARGET_INTERP = 1 } tc_target;

typedef struct tc_prepare_info {
  double seconds;      /* time spent in tc_prepare */
  int source;          /* 0 compiled now, 1 memory cache, 2 disk cache */
  char path[512];      /* the shared object */
} tc_prepare_info;

/* Generates, compiles (or loads from the cache) the kernel of `entry`.
 * tc_run does this itself on first use; call it to control when. */
tc_status tc_prepare(tc_program *p, int entry, tc_prepare_info *info, tc_error *err);

/* Runs `entry` on caller-provided tensors.  Outputs must have the inferred
 * shape and the declared dtype; any strides; they must not overlap inputs or
 * each other. */
tc_status tc_run(tc_program *p, int entry, DLTensor *const *inputs, int n_inputs,
                 DLTensor *const *outputs, int n_outputs, tc_target target,
                 tc_error *err);

/* Like tc_run, but allocates compact outputs.  On success outputs[i] are new
 * DLManagedTensors owned by the caller (call their deleter). */
tc_status tc_run_alloc(tc_program *p, int entry, DLTensor *const *inputs, int n_inputs,
                       DLManagedTensor **outputs, int n_outputs, tc_target target,
                       tc_error *err);

/* ---- inspection ---- */
/* The generated C source of `entry` (malloc'ed; free with tc_free). */
tc_status tc_emit(tc_program *p, int entry, tc_target target, char **out, tc_error *err);
/* Ranges, output shapes and the loop nest in text.  `inputs` may be NULL
 * (symbolic sizes) or give concrete input shapes. */
tc_status tc_explain(tc_program *p, int entry, const tc_shape *inputs, int n_inputs,
                     char **out, tc_error *err);
/* The IR after each lowering pass, as text. */
tc_status tc_dump_passes(tc_program *p, int entry, char **out, tc_error *err);

void tc_free(void *ptr);

#ifdef __cplusplus
}
#endif
#endif
