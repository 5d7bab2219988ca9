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

/* A compile-time constant: the value of a rank-0 (scalar) parameter, fixed
 * when the source is compiled.  In every def that declares a scalar
 * parameter called `name`, that parameter is removed from the entry's inputs
 * and each use becomes a literal of the parameter's dtype (so `stride*h + kh`
 * is an affine subscript and range inference sees the value).  `is_float`
 * says whether the value is `f` (1) or `i` (0); an integer value given to a
 * float parameter is converted, a float value given to an integer or bool
 * parameter is an error, as is a value outside the parameter's type. */
typedef struct tc_constant {
  const char *name;
  int is_float;
  int64_t i;
  double f;
} tc_constant;

/* tc_compile with constants (`consts` may be NULL when n_consts is 0).  A
 * name that no def declares as a parameter, one given twice, or a parameter
 * of that name that is not a scalar, is TC_ERR_ARGUMENT naming it.  The
 * constants are substituted into the program, so the generated code (and
 * so the kernel cache key) differs per value. */
tc_status tc_compile_ex(tc_context *ctx, const char *filename, const char *source,
                        size_t len, const tc_constant *consts, int n_consts,
                        tc_program **out, tc_error *err);
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

/* ---- output sizes as expressions ----
 * The extent of an output dimension as an integer expression over the input
 * dimensions (what range inference found), for callers that compute shapes
 * symbolically (PyTorch's fake tensors under dynamic shapes).  It is a
 * postfix program: running the ops in order on a stack of int64 values
 * leaves the extent.  Comparisons, && and || push 0 or 1. */
#define TC_SIZE_OP_LIST(X)                                                    \
  X(TC_SIZE_CONST, "const") /* push `value` */                                \
  X(TC_SIZE_DIM, "dim")     /* push the size of input `input` dim `dim` */    \
  X(TC_SIZE_ADD, "+") X(TC_SIZE_SUB, "-") X(TC_SIZE_MUL, "*")                 \
  X(TC_SIZE_DIV, "/")       /* floor division; 0 when the divisor is 0 */     \
  X(TC_SIZE_MOD, "%")       /* a - b * (a / b); 0 when the divisor is 0 */    \
  X(TC_SIZE_MIN, "min") X(TC_SIZE_MAX, "max")                                 \
  X(TC_SIZE_LT, "<") X(TC_SIZE_LE, "<=") X(TC_SIZE_GT, ">")                   \
  X(TC_SIZE_GE, ">=") X(TC_SIZE_EQ, "==") X(TC_SIZE_NE, "!=")                 \
  X(TC_SIZE_AND, "&&") X(TC_SIZE_OR, "||")                                    \
  X(TC_SIZE_NEG, "neg") X(TC_SIZE_NOT, "!")                                   \
  X(TC_SIZE_SELECT, "?:")   /* pops a, b, c (c on top); pushes a ? b : c */

typedef enum {
#define X(name, text) name,
  TC_SIZE_OP_LIST(X)
#undef X
} tc_size_opcode;

typedef struct tc_size_op {
  tc_size_opcode op;
  int input, dim;  /* TC_SIZE_DIM */
  int64_t value;   /* TC_SIZE_CONST */
} tc_size_op;

/* The extent of dim `dim` of output `output` of `entry`.  Writes the first
 * `cap` ops of the program to `ops` (which may be NULL when cap is 0) and
 * sets *n to its full length: call again with a larger array when *n > cap.
 * TC_ERR_UNSUPPORTED when the extent has no such form (never for extents
 * computed only from sizes; it assumes they fit in int32 where the program
 * computes in int32). */
tc_status tc_output_size(const tc_program *p, int entry, int output, int dim,
                         tc_size_op *ops, int cap, int *n, tc_error *err);

/* ---- running ---- */
/* TC_TARGET_C: the compiled kernel for the tensors' device: the C kernel
 *   for CPU tensors, the CUDA kernel for CUDA tensors (kDLCUDA).
 * TC_TARGET_INTERP: the reference interpreter (CPU tensors only).
 * TC_TARGET_CUDA: the CUDA kernel; CUDA tensors run in place, CPU tensors
 *   are copied to the GPU and back around the run (for the CLI and tests).
 * CUDA needs an NVIDIA driver (libcuda.so.1) and NVRTC (libnvrtc, found on
 * the library path, in Python's nvidia-cuda-nvrtc wheel, under
 * /usr/local/cuda, or named by $TENSORC_NVRTC); both are loaded when first
 * used, and their absence is TC_ERR_UNSUPPORTED.  All tensors of a run must
 * be on one device. */
typedef enum { TC_TARGET_C = 0, TC_TARGET_INTERP = 1, TC_TARGET_CUDA = 2 } tc_target;

typedef struct tc_prepare_info {
  double seconds;      /* time spent in tc_prepare */
  int source;          /* 0 compiled now, 1 memory cache, 2 disk cache */
  char path[512];      /* the shared object */
  int lowered;         /* 1: the entry was lowered and its C emitted in this call;
                          0: ready already, or found by its program-level cache key
                          (source text, entry, constants, compiler, tensorc) */
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

/* Options of a run (tc_run_options_init sets the defaults: TC_TARGET_C,
 * no stream, device 0). */
typedef struct tc_run_options {
  tc_target target;
  void *stream; /* CUDA: the CUstream (cudaStream_t) of the tensors' device to run
                   on, e.g. PyTorch's current stream; NULL: the legacy default
                   stream.  A CUDA run queues its kernels on it and returns
                   without synchronising, except for an entry whose kernels
                   can report a failure (an indirect index out of range):
                   that run waits for the stream to read the failure record. */
  int device;   /* the CUDA device of TC_TARGET_CUDA on CPU tensors and of
                   tc_prepare_ex (runs on CUDA tensors use theirs) */
} tc_run_options;
void tc_run_options_init(tc_run_options *o);

/* tc_run and tc_run_alloc with options (`opts` NULL: the defaults).
 * tc_run_alloc_ex allocates the outputs of a CUDA run on the tensors' GPU
 * (cuMemAlloc; their deleter frees them). */
tc_status tc_run_ex(tc_program *p, int entry, DLTensor *const *inputs, int n_inputs,
                    DLTensor *const *outputs, int n_outputs, const tc_run_options *opts,
                    tc_error *err);
tc_status tc_run_alloc_ex(tc_program *p, int entry, DLTensor *const *inputs, int n_inputs,
                          DLManagedTensor **outputs, int n_outputs,
                          const tc_run_options *opts, tc_error *err);
/* tc_prepare for opts->target (TC_TARGET_CUDA: the cubin for opts->device,
 * compiled by NVRTC or loaded from the disk cache, and its module). */
tc_status tc_prepare_ex(tc_program *p, int entry, const tc_run_options *opts,
                        tc_prepare_info *info, tc_error *err);

/* ---- inspection ---- */
/* The generated source of `entry` for `target`: C (TC_TARGET_C) or CUDA C
 * (TC_TARGET_CUDA; needs no GPU).  Malloc'ed; free with tc_free. */
tc_status tc_emit(tc_program *p, int entry, tc_target target, char **out, tc_error *err);
/* Ranges, output shapes and the loop nest in text.  `inputs` may be NULL
 * (symbolic sizes) or give concrete input shapes. */
tc_status tc_explain(tc_program *p, int entry, const tc_shape *inputs, int n_inputs,
                     char **out, tc_error *err);
/* The IR after each lowering pass, as text. */
tc_status tc_dump_passes(tc_program *p, int entry, char **out, tc_error *err);

/* ---- gradients (docs/gradients.md) ----
 * Derives the backward of `entry` as the TC source of one new def, named
 * "<entry name>_grad", which the caller compiles like any other source (with
 * tc_compile: constants of `p` are already substituted into it).  `wrt` has
 * one flag per input of `entry` (1: its gradient is wanted), or is NULL for
 * every floating-point input; a flag on an integer or bool input is
 * TC_ERR_ARGUMENT, as is selecting no input.  The backward def takes
 *   - every input of `entry`, in order, with its declaration, then
 *   - one gradient per output of `entry`, in order, with the output's dtype
 *     and extents (integer outputs' gradients are taken and ignored),
 * and returns one gradient per selected input, in input order, with the
 * input's dtype and shape.  A gradient is named "d_" + the tensor's name,
 * with "_2", "_3"... appended when that would collide with a name of the
 * def.  A construct that cannot be differentiated yet is TC_ERR_PROGRAM
 * located at it.  *source_out is malloc'ed: free it with tc_free. */
tc_status tc_gradient(tc_program *p, int entry, const int *wrt, char **source_out,
                      tc_error *err);

void tc_free(void *ptr);

#ifdef __cplusplus
}
#endif
#endif
