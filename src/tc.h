/*
 * tc.h — tensorc's one internal header, a section per source file (chibicc's
 * habit).  The public API lives in include/tensorc.h; this header is for the
 * library's own files only.
 *
 * The pipeline, source to kernel:
 *
 *   lex.c      bytes -> tokens
 *   parse.c    tokens -> AST (Program/Def/Stmt/Expr), names unresolved
 *   sema.c     resolve names, type every expression, check TC's rules
 *   infer.c    range inference: index-variable ranges, tensor sizes,
 *              constraints and which of them still need run-time checks
 *   lower.c    checked Def -> loop-nest IR (IRFunc), multi-dim loads/stores
 *   simplify.c IR simplifier (also used by infer.c for symbolic bounds)
 *   schedule.c default schedule: loop kinds (parallel, vectorized)
 *   flatten.c  multi-dim accesses -> flat offsets with explicit strides
 *   pipeline.c the pass list, one straight function; IR dumps; verifier
 *   emit_c.c   IR -> C source
 *   jit.c      C source -> shared object via $CC; dlopen
 *   cache.c    kernel cache, memory + disk, atomic, checksummed
 *   pool.c     pthread pool for parallel loops
 *   interp.c   reference interpreter over the checked program (test oracle)
 *   grad.c     reverse-mode differentiation: a def's backward as TC source
 *   runtime.c  public API: contexts, programs, binding tensors, running
 *   ir.c       IR constructors, printer, mutator helpers, evaluation
 *   util.c     arenas, string buffers, errors, hashing, dtype table
 */
#ifndef TC_INTERNAL_H
#define TC_INTERNAL_H

#include "tensorc.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#if defined(__GNUC__)
#define TC_NORETURN __attribute__((noreturn))
#define TC_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define TC_NORETURN _Noreturn
#define TC_PRINTF(a, b)
#endif

/* ================================================================
 * util.c
 * ================================================================ */

/* Arena: bump allocator; nodes are never freed one by one.  Memory is zeroed.
 * When `oom` is set, running out of memory longjmps there with TC_ERR_NOMEM;
 * otherwise arena_alloc returns NULL. */
typedef struct ArenaChunk ArenaChunk;
typedef struct Arena {
  ArenaChunk *head;
  jmp_buf *oom;
} Arena;

void *arena_alloc(Arena *a, size_t n);
char *arena_strndup(Arena *a, const char *s, size_t n);
char *arena_strdup(Arena *a, const char *s);
char *arena_printf(Arena *a, const char *fmt, ...) TC_PRINTF(2, 3);
void arena_free(Arena *a); /* frees every chunk; the Arena may be reused */

/* Growable arrays in an arena: `T *data; int len, cap;` fields named as in
 * VEC(T).  vec_push(arena, &v, x). */
#define VEC(T) struct { T *data; int len, cap; }
void vec_grow(Arena *a, void **data, int *cap, size_t elem);
#define vec_push(A, V, X)                                                     \
  do {                                                                        \
    if ((V)->len == (V)->cap)                                                 \
      vec_grow((A), (void **)&(V)->data, &(V)->cap, sizeof(*(V)->data));      \
    (V)->data[(V)->len++] = (X);                                              \
  } while (0)

/* Buf: malloc'ed growable string.  On OOM `oom` is set and writes stop. */
typedef struct Buf {
  char *s;
  size_t len, cap;
  bool oom;
} Buf;
void buf_puts(Buf *b, const char *s);
void buf_putn(Buf *b, const char *s, size_t n);
void buf_printf(Buf *b, const char *fmt, ...) TC_PRINTF(2, 3);
void buf_vprintf(Buf *b, const char *fmt, va_list ap);
void buf_indent(Buf *b, int n); /* 2*n spaces */
char *buf_detach(Buf *b);       /* returns s (never NULL unless oom), resets b */
void buf_free(Buf *b);

uint64_t hash_bytes(const void *p, size_t n, uint64_t seed); /* FNV-1a 64 */
/* Writes all n bytes to fd, retrying on EINTR and short writes. */
bool util_write_all(int fd, const void *data, size_t n);

/* Source positions.  line/col are 1-based; line 0 means "no position". */
typedef struct Loc {
  int line, col;
} Loc;

typedef struct SrcFile {
  const char *name; /* for messages */
  const char *text; /* not NUL-terminated necessarily: use len */
  size_t len;
} SrcFile;

/* Ctx: the state of one compilation step (parse/check/lower/emit), passed
 * first to every stage.  error_at() and internal_error() longjmp to `jmp`,
 * which the protected entry point in runtime.c set up. */
typedef struct Ctx {
  Arena *arena;
  const SrcFile *file;
  tc_error *err;
  jmp_buf *jmp;
} Ctx;

/* Fills c->err with "FILE:LINE:COL: error: msg" + line + caret (TC_ERR_PROGRAM)
 * and longjmps. */
TC_NORETURN void error_at(Ctx *c, Loc loc, const char *fmt, ...) TC_PRINTF(3, 4);
/* An internal bug: TC_ERR_INTERNAL naming file:line; longjmps. */
TC_NORETURN void internal_error(Ctx *c, const char *file, int line, const char *what);
#define IASSERT(C, cond) ((cond) ? (void)0 : internal_error((C), __FILE__, __LINE__, #cond))

/* Fills `err` (may be NULL) without jumping.  `file`/`loc` may be NULL/zero.
 * Renders the diagnostic with the source line and caret when file && loc.line. */
void error_set(tc_error *err, tc_status code, const SrcFile *file, Loc loc,
               const char *fmt, ...) TC_PRINTF(5, 6);
void error_vset(tc_error *err, tc_status code, const SrcFile *file, Loc loc,
                const char *fmt, va_list ap);
void error_clear(tc_error *err);

/* dtype table (const: not mutable state). */
typedef struct DTypeInfo {
  const char *name;  /* TC spelling: "float32" */
  const char *ctype; /* C type in generated code for storage: "float", "uint16_t" */
  const char *vtype; /* C type of a *value* of this type in generated code:
                        float16/bfloat16 values are computed as "float";
                        bool values are "_Bool"... see docs/language.md */
  int size;          /* bytes */
  int bits;
  bool is_int, is_signed, is_float, is_bool;
  uint8_t dl_code;
} DTypeInfo;
extern const DTypeInfo dtype_info[TC_NUM_DTYPES];

/* "float" -> TC_FLOAT32, "double" -> TC_FLOAT64, and every TC_DTYPE_LIST name.
 * Returns false when `name` is no type name. */
bool dtype_from_name(const char *name, size_t len, tc_dtype *out);
/* TC's pairwise promotion (bool with bool -> bool; bool with numeric -> the
 * numeric type).  See docs/language.md. */
tc_dtype dtype_promote(tc_dtype a, tc_dtype b);
static inline bool dtype_is_float(tc_dtype t) { return dtype_info[t].is_float; }
static inline bool dtype_is_int(tc_dtype t) { return dtype_info[t].is_int; }

/* ================================================================
 * lex.c
 * ================================================================ */
typedef enum {
  TK_IDENT,
  TK_INT,   /* decimal integer literal, ival */
  TK_FLOAT, /* literal with '.' or exponent, fval */
  TK_PUNCT, /* operators and punctuation, in `s` */
  TK_EOF,
} TokenKind;

typedef struct Token {
  TokenKind kind;
  const char *s; /* points into the source */
  int len;
  Loc loc;
  int64_t ival;
  double fval;
} Token;

/* Returns an array ending with TK_EOF.  Punctuators: ( ) [ ] { } , : ; ? ->
 * + - * / % ! < > <= >= == != && || = += *= +=! *=! min= max= min=! max=!
 * (`min=`/`max=` are single tokens only when `min`/`max` is directly
 * followed by `=` but not `==`). `#` starts a comment to end of line. */
Token *lex_tokenize(Ctx *c, int *ntokens);

/* ================================================================
 * AST (parse.c builds it; sema.c and infer.c annotate it in place)
 * ================================================================ */

#define BINOP_LIST(X)                                                         \
  X(OP_ADD, "+") X(OP_SUB, "-") X(OP_MUL, "*") X(OP_DIV, "/") X(OP_MOD, "%")  \
  X(OP_LT, "<") X(OP_LE, "<=") X(OP_GT, ">") X(OP_GE, ">=") X(OP_EQ, "==")    \
  X(OP_NE, "!=") X(OP_AND, "&&") X(OP_OR, "||") X(OP_MIN, "min")              \
  X(OP_MAX, "max")
typedef enum {
#define X(n, s) n,
  BINOP_LIST(X)
#undef X
  NUM_BINOPS
} BinOp;
extern const char *const binop_names[NUM_BINOPS];

#define UNOP_LIST(X) X(OP_NEG, "-") X(OP_NOT, "!")
typedef enum {
#define X(n, s) n,
  UNOP_LIST(X)
#undef X
  NUM_UNOPS
} UnOp;
extern const char *const unop_names[NUM_UNOPS];

/* TC's math builtins: name, arity.  Result type: float64 if any argument is
 * float64, else float32 (arguments are converted to the result type). */
#define BUILTIN_LIST(X)                                                       \
  X(exp, 1) X(exp2, 1) X(expm1, 1) X(log, 1) X(log2, 1) X(log10, 1)           \
  X(log1p, 1) X(sqrt, 1) X(rsqrt, 1) X(cbrt, 1) X(pow, 2) X(fabs, 1)          \
  X(fmax, 2) X(fmin, 2) X(fmod, 2) X(floor, 1) X(ceil, 1) X(round, 1)         \
  X(trunc, 1) X(rint, 1) X(sin, 1) X(cos, 1) X(tan, 1) X(asin, 1) X(acos, 1)  \
  X(atan, 1) X(atan2, 2) X(sinh, 1) X(cosh, 1) X(tanh, 1) X(asinh, 1)         \
  X(acosh, 1) X(atanh, 1) X(erf, 1) X(erfc, 1) X(hypot, 2) X(copysign, 2)     \
  X(lgamma, 1) X(tgamma, 1) X(fma, 3) X(fdim, 2)
typedef enum {
#define X(n, a) BI_##n,
  BUILTIN_LIST(X)
#undef X
  NUM_BUILTINS
} Builtin;
typedef struct BuiltinInfo {
  const char *name;
  int arity;
} BuiltinInfo;
extern const BuiltinInfo builtin_info[NUM_BUILTINS];
/* Returns -1 when `name` is no builtin. */
int builtin_lookup(const char *name);

#define EXPR_KIND_LIST(X)                                                     \
  X(EX_INT)     /* ival, type int32 */                                        \
  X(EX_FLOAT)   /* fval, type float32 */                                      \
  X(EX_IDENT)   /* parse only: name */                                        \
  X(EX_CALL)    /* parse only: name(args) */                                  \
  X(EX_ACCESS)  /* tensor(args); rank-0 tensors have nargs == 0 */            \
  X(EX_INDEX)   /* index variable `var` (value type int32) */                 \
  X(EX_SIZE)    /* size symbol `sym` (value type int32) */                    \
  X(EX_BUILTIN) /* builtin(args) */                                           \
  X(EX_CAST)    /* type(args[0]); type is the target */                       \
  X(EX_UNARY)   /* op a */                                                    \
  X(EX_BINARY)  /* a op b; also min/max */                                    \
  X(EX_SELECT)  /* a ? b : c */
typedef enum {
#define X(n) n,
  EXPR_KIND_LIST(X)
#undef X
} ExprKind;

typedef struct Tensor Tensor;
typedef struct IndexVar IndexVar;
typedef struct SizeSym SizeSym;
typedef struct IRExpr IRExpr;
typedef struct IRStmt IRStmt;

typedef struct Expr Expr;
struct Expr {
  ExprKind kind;
  Loc loc;
  tc_dtype type;    /* set by sema */
  const char *name; /* EX_IDENT, EX_CALL (NUL-terminated, arena) */
  int64_t ival;
  double fval;
  int op;           /* BinOp or UnOp */
  int builtin;      /* EX_BUILTIN: Builtin */
  Expr *a, *b, *c;  /* operands; EX_SELECT: a ? b : c */
  Expr **args;      /* EX_CALL, EX_ACCESS, EX_BUILTIN, EX_CAST */
  int nargs;
  Tensor *tensor;   /* EX_ACCESS */
  IndexVar *var;    /* EX_INDEX */
  SizeSym *sym;     /* EX_SIZE */
};

/* A declared dimension: a size symbol or an integer constant. */
typedef struct Dim {
  const char *name; /* parse: symbol name, or NULL for a constant */
  Loc loc;
  int64_t value;    /* the constant */
  SizeSym *sym;     /* sema: resolved symbol, NULL for a constant */
} Dim;

struct SizeSym {
  const char *name;
  Loc loc;
  int id;         /* index in Def.syms; also the kernel's sizes[] slot */
  Tensor *tensor; /* first input binding it ... */
  int dim;        /* ... and its dimension */
  struct IRVar *var; /* infer: its VAR_SIZE variable "z_<name>", shared by lower */
};

typedef enum { T_INPUT, T_OUTPUT, T_TEMP } TensorRole;

#define BC_LIST(X)                                                            \
  X(BC_NONE, "none") X(BC_CONSTANT, "constant") X(BC_CLAMP, "clamp")          \
  X(BC_MIRROR, "mirror") X(BC_WRAP, "wrap")
typedef enum {
#define X(n, s) n,
  BC_LIST(X)
#undef X
} BCKind;

typedef struct Stmt Stmt;

struct Tensor {
  const char *name;
  Loc loc;
  TensorRole role;
  int id;          /* index in Def.tensors: inputs, then outputs, then temps */
  int pos;         /* index within its role's list */
  tc_dtype dtype;  /* declared, or (untyped outputs, temps) set by sema */
  bool typed;      /* dtype declared in the source */
  int rank;
  Dim *dims;       /* declared dims (inputs, typed outputs), else NULL */
  /* boundary condition (inputs only) */
  BCKind bc;
  double bc_value;             /* BC_CONSTANT: the value */
  bool bc_dim[TC_MAX_RANK];    /* which dims the condition applies to */
  Loc bc_loc;
  /* set by sema/infer */
  Stmt *def;       /* first statement writing it (NULL for inputs) */
  IRExpr **size;   /* rank symbolic extents (IR over size symbols) */
  bool zero_fill;  /* elements no statement writes must be zeroed first */
};

struct IndexVar {
  const char *name;
  Loc loc;          /* first appearance in the statement */
  int id;           /* index in Stmt.vars */
  bool reduction;   /* appears only on the right */
  bool has_where;   /* range given by `where v in lo:hi` */
  IRExpr *lo, *hi;  /* infer: half-open range over size symbols */
};

typedef enum { RED_NONE, RED_ADD, RED_MUL, RED_MIN, RED_MAX } RedOp;

typedef enum { W_RANGE, W_LET, W_EXISTS } WhereKind;
typedef struct Where {
  WhereKind kind;
  Loc loc;
  const char *name; /* W_RANGE, W_LET */
  Expr *lo, *hi;    /* W_RANGE */
  Expr *e;          /* W_LET value, W_EXISTS expression */
} Where;

/* One access constraint for range inference: 0 <= sub < size, where
 * sub = sum(coef[v] * var_v) + rest when `affine`. */
typedef struct Constraint {
  Loc loc;           /* of the access */
  Tensor *tensor;
  int dim;
  Expr *sub;         /* the subscript */
  bool affine;       /* constant coefficients, rest free of index vars/reads */
  int64_t *coef;     /* [stmt->nvars] */
  IRExpr *rest;      /* affine remainder over size symbols */
  IRExpr *size;      /* the extent of tensor dim `dim` */
  bool write;        /* the left-hand side of a later definition */
  bool conditional;  /* under the branch of a ?: (or an exists clause) */
  bool is_exists;    /* from an exists clause: never evaluated */
  bool consumed;     /* used to solve a variable: holds by construction */
} Constraint;

struct Stmt {
  Loc loc;
  const char *lhs_name;
  Loc lhs_loc;
  const char **idx_names; /* parse: left-hand index names */
  Loc *idx_locs;
  int nidx;
  RedOp op;
  bool bang;        /* written with '!' */
  Expr *rhs;
  Where *wheres;
  int nwheres;
  /* sema */
  Tensor *lhs;
  IndexVar **vars;  /* left-hand vars in order, then reduction vars in order
                       of first appearance */
  int nvars;
  bool init;        /* initialise the lhs with the op's identity first */
  bool first_def;   /* this statement sizes its lhs */
  Expr **exists;    /* expressions from `exists` clauses */
  int nexists;
  /* infer */
  Constraint *cons;
  int ncons;
};

typedef struct Schedule Schedule;

typedef struct Def {
  const char *name;
  Loc loc;
  Tensor **tensors; /* inputs, outputs, temps (by id) */
  int ntensors;
  int ninputs, noutputs, ntemps; /* tensors[0..ninputs) are inputs, etc. */
  SizeSym **syms;
  int nsyms;
  Stmt **stmts;
  int nstmts;
  Schedule *sched;  /* sema: its schedule block, or NULL */
} Def;

/* A schedule block (docs/language.md, "Schedules"): `schedule NAME { ... }`,
 * chains of directives on the stages of def NAME.  parse.c builds it;
 * sema.c links it to its def and sched.c checks and applies it. */
typedef struct SchedArg {
  Loc loc;
  const char *name;  /* an identifier, or NULL for an integer */
  int64_t ival;      /* the integer */
} SchedArg;

#define SCHED_DIR_LIST(X)                                                     \
  X(SD_SPLIT, "split") X(SD_TILE, "tile") X(SD_REORDER, "reorder")            \
  X(SD_VECTORIZE, "vectorize") X(SD_UNROLL, "unroll") X(SD_PARALLEL, "parallel") \
  X(SD_FUSE, "fuse")                                                          \
  X(SD_INLINE, "inline") X(SD_COMPUTE_ROOT, "compute_root")                   \
  X(SD_COMPUTE_AT, "compute_at") X(SD_COMPUTE_WITH, "compute_with")           \
  X(SD_STORE_AT, "store_at") X(SD_GEMM, "gemm")
typedef enum {
#define X(n, s) n,
  SCHED_DIR_LIST(X)
#undef X
  NUM_SCHED_DIRS
} SchedDirKind;
extern const char *const sched_dir_names[NUM_SCHED_DIRS];

typedef struct Directive {
  const char *stage;  /* the tensor its statement writes */
  Loc stage_loc;
  int update;         /* 0: the first statement writing it; k: `.update(k-1)` */
  SchedDirKind kind;
  Loc loc;            /* of the directive's name */
  SchedArg *args;
  int nargs;
  Stmt *stmt;         /* sema: the stage's statement */
  int si;             /* sema: its index in Def.stmts */
} Directive;

struct Schedule {
  const char *name;   /* the def it schedules */
  Loc loc;
  Directive *dirs;    /* in source order */
  int ndirs;
};

typedef struct Program {
  Def **defs;
  int ndefs;
  Schedule **scheds;
  int nscheds;
} Program;

/* ================================================================
 * parse.c
 * ================================================================ */
/* program := (def | schedule)*; see docs/language.md for the grammar. */
Program *parse_program(Ctx *c, Token *toks);
/* Canonical text of the AST, fully parenthesized (`(a + (b * c))`,
 * `min(a, b)`), before or after sema (resolved nodes print their names):
 * tests, dumps, cache keys. */
void ast_print_expr(Buf *b, const Expr *e);
void ast_print_def(Buf *b, const Def *d);

/* ================================================================
 * sema.c
 * ================================================================ */
/* Resolves names, types expressions, builds temporaries and statement
 * variables; error_at() on every violation of the language rules. Requires
 * a parsed Program; guarantees every Expr is of a resolved kind with `type`
 * set, Stmt.vars/lhs/init/first_def set, Tensor.dtype set. */
void sema_program(Ctx *c, Program *p);
/* The same with compile-time constants (tc_compile_ex): each replaces the
 * rank-0 input of its name in every def declaring one (removed from
 * Def.tensors; reads become literals of the input's dtype).  Misuse is
 * TC_ERR_ARGUMENT through c->jmp. */
void sema_program_ex(Ctx *c, Program *p, const tc_constant *consts, int nconsts);
/* Returns the def with that name, or NULL. */
Def *sema_find_def(Program *p, const char *name);
/* Whether e (a checked expression, or NULL) reads tensor t anywhere. */
bool expr_reads_tensor(const Expr *e, const Tensor *t);

/* ================================================================
 * infer.c
 * ================================================================ */
/* Range inference for every statement in order (TC semantics, see
 * docs/language.md).  Fills IndexVar.lo/hi, Stmt.cons, Tensor.size for
 * outputs/temps, Tensor.zero_fill; error_at() for unresolvable, coupled or
 * (statically) empty ranges.  Declared inputs get Tensor.size from dims. */
void infer_def(Ctx *c, Def *d);
/* Linearizes a subscript: true and coef/rest when affine. */
bool infer_affine(Ctx *c, Stmt *s, Expr *sub, int64_t *coef, IRExpr **rest);
/* Appends each statement's index ranges ("  i in [0, z_N)") and each
 * output/temporary's size, for `tensorc explain`.  Requires infer_def. */
void infer_print_def(Buf *b, Def *d);

/* ================================================================
 * grad.c
 * ================================================================ */
/* Appends the TC source of the backward of `d` (def "<name>_grad"; the
 * calling convention is tc_gradient's, docs/gradients.md).  Requires a
 * checked, inferred Def; wrt[i]: input i gets a gradient (float inputs
 * only).  error_at() at a construct it cannot differentiate. */
void grad_def(Ctx *c, Def *d, const bool *wrt, Buf *out);

/* ================================================================
 * IR (ir.c: constructors, printer, mutators, evaluation)
 * ================================================================ */

#define IR_EXPR_KIND_LIST(X)                                                  \
  X(IR_INT)    /* ival, any integer/bool type */                              \
  X(IR_FLOAT)  /* fval, a float type */                                       \
  X(IR_VAR)    /* var */                                                      \
  X(IR_LOAD)   /* buf[idx...] (nidx == rank before flatten, 1 after) */       \
  X(IR_BIN)    /* op a b */                                                   \
  X(IR_UN)     /* op a */                                                     \
  X(IR_SELECT) /* a ? b : c, lazily evaluated */                              \
  X(IR_CALL)   /* builtin(args) */                                            \
  X(IR_CAST)   /* (type) a */                                                 \
  X(IR_FAIL)   /* report failure `site` with value a, bound b; yields 0 */
typedef enum {
#define X(n) n,
  IR_EXPR_KIND_LIST(X)
#undef X
  NUM_IR_EXPR_KINDS
} IRExprKind;

typedef enum {
  VAR_LOOP,   /* a loop counter, int64 */
  VAR_SIZE,   /* a size symbol: kernel sizes[sym->id], int64 */
  VAR_SHAPE,  /* extent of buf dim `dim`, int64 */
  VAR_STRIDE, /* stride (elements) of buf dim `dim`, int64 */
  VAR_LOCAL,  /* a scalar local (accumulator), type `type` */
} VarKind;

typedef struct Buffer Buffer;

typedef struct IRVar {
  const char *name; /* mangled C name, unique in the IRFunc */
  VarKind kind;
  tc_dtype type;    /* TC_INT64 for all but VAR_LOCAL */
  bool user;        /* VAR_LOOP of a stage the user scheduled (sched.c): the
                       autoscheduler's passes leave nests of such loops alone */
  SizeSym *sym;     /* VAR_SIZE */
  Buffer *buf;      /* VAR_SHAPE / VAR_STRIDE */
  int dim;
} IRVar;

struct Buffer {
  const char *name;  /* mangled C name */
  Tensor *tensor;
  int slot;          /* kernel data[] index == tensor->id */
  tc_dtype dtype;
  int rank;
  int dim_offset;    /* first index of this buffer in kernel shape[]/stride[] */
  IRVar *shape[TC_MAX_RANK];
  IRVar *stride[TC_MAX_RANK];
  bool local;        /* a kernel's scratch (S_ALLOC): rank 1, no tensor, slot -1,
                        no shape/stride variables; contents undefined on entry */
};

struct IRExpr {
  IRExprKind kind;
  tc_dtype type;
  int64_t ival;
  double fval;
  IRVar *var;
  Buffer *buf;      /* IR_LOAD */
  IRExpr **idx;     /* IR_LOAD */
  int nidx;
  int op;           /* IR_BIN: BinOp (OP_DIV/OP_MOD on ints: floor semantics), IR_UN */
  int builtin;      /* IR_CALL */
  IRExpr *a, *b, *c;
  IRExpr **args;    /* IR_CALL */
  int nargs;
  int site;         /* IR_FAIL */
};

#define FOR_KIND_LIST(X)                                                      \
  X(FOR_SERIAL, "for") X(FOR_PARALLEL, "parallel") X(FOR_VECTORIZED, "vectorized") \
  X(FOR_UNROLLED, "unrolled") X(FOR_GPU_BLOCK, "gpu_block") X(FOR_GPU_THREAD, "gpu_thread")
typedef enum {
#define X(n, s) n,
  FOR_KIND_LIST(X)
#undef X
} ForKind;
extern const char *const for_kind_names[];

#define IR_STMT_KIND_LIST(X)                                                  \
  X(S_FOR)    /* for var in [lo, lo+extent) body */                           \
  X(S_BLOCK)  /* stmts[0..n) */                                               \
  X(S_STORE)  /* buf[idx...] = value */                                       \
  X(S_DECL)   /* declare local var = value */                                 \
  X(S_ASSIGN) /* local var = value */                                         \
  X(S_IF)     /* if cond then [else els] */                                   \
  X(S_CHECK)  /* if !cond: evaluate `value` (an IR_FAIL) and stop the kernel */ \
  X(S_ALLOC)  /* local buffer `buf` of `extent` elements, live in `body` */
typedef enum {
#define X(n) n,
  IR_STMT_KIND_LIST(X)
#undef X
  NUM_IR_STMT_KINDS
} IRStmtKind;

struct IRStmt {
  IRStmtKind kind;
  Loc loc;
  IRVar *var;           /* S_FOR, S_DECL, S_ASSIGN */
  IRExpr *lo, *extent;  /* S_FOR; S_ALLOC: extent (elements, int64) */
  ForKind fkind;        /* S_FOR */
  IRStmt *body;         /* S_FOR, S_ALLOC */
  IRStmt **stmts;       /* S_BLOCK */
  int n;
  Buffer *buf;          /* S_STORE, S_ALLOC */
  int site;             /* S_ALLOC: the failure site when memory runs out */
  IRExpr **idx;         /* S_STORE */
  int nidx;
  IRExpr *value;        /* S_STORE, S_DECL, S_ASSIGN, S_CHECK (IR_FAIL) */
  IRExpr *cond;         /* S_IF, S_CHECK */
  IRStmt *then, *els;   /* S_IF */
};

/* A run-time failure site: what the kernel reports through IR_FAIL. */
typedef enum {
  FAIL_INDEX,   /* a subscript out of range: value = index, bound = extent */
  FAIL_RANGE,   /* an up-front check: a read reaches `value` but extent is `bound` */
  FAIL_BC_EMPTY, /* a boundary condition on a dimension of extent 0 */
  FAIL_NOMEM,    /* a local buffer (S_ALLOC) of `value` bytes could not be allocated */
  FAIL_LAYOUT    /* specialize_unit_func's check: a stride is not 1; run the generic kernel */
} FailKind;
typedef struct FailSite {
  FailKind kind;
  Loc loc;
  Tensor *tensor;
  int dim;
  bool write;     /* FAIL_RANGE: the access is the statement's left-hand side */
} FailSite;

/* One lowered entry: what the kernel receives and its body. */
/* A contraction's register tiles and blocks (tile.c; the `gemm` directive). */
typedef struct TileParams {
  int mr, nr;      /* a register tile: mr rows (of i) by nr columns (of j); 0: not tiled */
  int kc;          /* reduction steps per block */
  int nct;         /* tiles of nr per packed panel of V (a task's j block: nct*nr) */
  int mch;         /* tiles of mr whose packed W a task keeps at once */
  IRVar *i;        /* the rows' loop (NULL: tile.c's choice) */
} TileParams;

/* One stage's part in the autoscheduler's fusion, folding and tiling: what a
 * schedule asks (IRFunc.want, from sched.c) or what the passes did
 * (IRFunc.did, for sched_print).  Stages are statement indices. */
typedef struct StageHint {
  bool directed;   /* want: the stage has directives: fuse/fold do only what they say */
  bool named;      /* want: a compute_with or store_at names it: it is not inlined */
  int with;        /* its nest joins the nest of stage `with` (compute_with); -1: no */
  int fold;        /* its tensor is held per iteration of stage `fold`'s outer loop
                      (store_at); -1: no */
  TileParams tile; /* tile.mr > 0: tiled with these (gemm) */
  Loc with_loc, fold_loc, tile_loc; /* want: the directives */
} StageHint;

typedef struct IRFunc {
  Def *def;
  Buffer **bufs;   /* one per Def tensor, by tensor id */
  int nbufs;
  IRVar **sizes;   /* one per size symbol, by id */
  int nsizes;
  int ndims;       /* total dims over bufs (length of shape[]/stride[]) */
  IRStmt *body;
  VEC(FailSite) sites;
  int nvars;       /* counter for fresh names */
  struct GpuHint *gpu; /* schedule_gpu.c -> emit_cuda.c: what loop kinds cannot say */
  StageHint *want; /* sched.c -> fuse/fold/tile: [def->nstmts], what the schedule asks, or NULL */
  StageHint *did;  /* fuse/fold/tile -> sched_print: [def->nstmts], what they did, or NULL */
} IRFunc;

/* constructors (arena from the Ctx) */
IRExpr *ir_int(Ctx *c, tc_dtype t, int64_t v);
IRExpr *ir_i64(Ctx *c, int64_t v);
IRExpr *ir_float(Ctx *c, tc_dtype t, double v);
IRExpr *ir_var(Ctx *c, IRVar *v);
IRExpr *ir_load(Ctx *c, Buffer *b, IRExpr **idx, int nidx);
IRExpr *ir_bin(Ctx *c, BinOp op, IRExpr *a, IRExpr *b); /* type: promote, bool for compares */
IRExpr *ir_un(Ctx *c, UnOp op, IRExpr *a);
IRExpr *ir_select(Ctx *c, IRExpr *cond, IRExpr *a, IRExpr *b);
IRExpr *ir_call(Ctx *c, tc_dtype t, int builtin, IRExpr **args, int nargs);
IRExpr *ir_cast(Ctx *c, tc_dtype t, IRExpr *a); /* returns a when a->type == t */
IRExpr *ir_fail(Ctx *c, tc_dtype t, int site, IRExpr *value, IRExpr *bound);
IRVar *ir_new_var(Ctx *c, const char *name, VarKind k, tc_dtype t);
IRStmt *ir_for(Ctx *c, IRVar *v, IRExpr *lo, IRExpr *extent, ForKind k, IRStmt *body);
IRStmt *ir_block(Ctx *c, IRStmt **stmts, int n);
IRStmt *ir_store(Ctx *c, Buffer *b, IRExpr **idx, int nidx, IRExpr *value);
IRStmt *ir_decl(Ctx *c, IRVar *v, IRExpr *value);
IRStmt *ir_assign(Ctx *c, IRVar *v, IRExpr *value);
IRStmt *ir_if(Ctx *c, IRExpr *cond, IRStmt *then, IRStmt *els);
IRStmt *ir_check(Ctx *c, IRExpr *cond, IRExpr *fail);
IRStmt *ir_alloc(Ctx *c, Buffer *b, IRExpr *extent, int site, IRStmt *body);

/* Integer helpers on symbolic int64 expressions (fold constants). */
IRExpr *ir_add(Ctx *c, IRExpr *a, IRExpr *b);
IRExpr *ir_sub(Ctx *c, IRExpr *a, IRExpr *b);
IRExpr *ir_mul(Ctx *c, IRExpr *a, IRExpr *b);
IRExpr *ir_floordiv(Ctx *c, IRExpr *a, IRExpr *b);
IRExpr *ir_min(Ctx *c, IRExpr *a, IRExpr *b);
IRExpr *ir_max(Ctx *c, IRExpr *a, IRExpr *b);
bool ir_is_const(const IRExpr *e, int64_t *v);
bool ir_equal(const IRExpr *a, const IRExpr *b); /* structural */
/* Read-only walks of an expression tree, children in the order indices,
 * arguments, a, b, c.  ir_expr_any: whether pred holds at some node
 * (pre-order, stopping at the first); ir_expr_visit: f at every node,
 * pre-order, f returning false skipping that node's children. */
typedef bool (*ExprPred)(const void *st, const IRExpr *e);
typedef bool (*ExprVisit)(void *st, const IRExpr *e);
bool ir_expr_any(const IRExpr *e, ExprPred pred, const void *st);
void ir_expr_visit(const IRExpr *e, ExprVisit f, void *st);
/* Every statement of s through fs (pre-order, false skipping its children;
 * NULL: all) and every expression in them through ir_expr_visit(fe) (NULL:
 * none): indices, lo, extent, value, cond, then body, then, els, stmts. */
typedef bool (*StmtVisit)(void *st, const IRStmt *s);
void ir_stmt_visit(const IRStmt *s, StmtVisit fs, ExprVisit fe, void *st);
/* Whether pred holds at some statement of s (pre-order; stops at the first). */
typedef bool (*StmtPred)(const void *st, const IRStmt *s);
bool ir_stmt_any(const IRStmt *s, StmtPred pred, const void *st);
bool ir_stmt_stores(const IRStmt *s, const Buffer *b); /* some S_STORE to b */
bool ir_has_fail(const IRExpr *e);                   /* contains an IR_FAIL */
bool ir_has_kind(const IRExpr *e, IRExprKind k);     /* contains a node of kind k */
bool ir_uses_local(const IRExpr *e);                 /* reads a VAR_LOCAL */
bool ir_uses_var(const IRExpr *e, const IRVar *v);   /* reads v */
bool ir_loads_buf(const IRExpr *e, const Buffer *b); /* loads b (NULL: any buffer) */

/* Mutators (Halide's IRMutator): `f` is called on each child; the helpers
 * return the same node when no child changed. */
typedef IRExpr *(*ExprFn)(Ctx *c, void *st, IRExpr *e);
typedef IRStmt *(*StmtFn)(Ctx *c, void *st, IRStmt *s);
IRExpr *ir_mutate_expr_children(Ctx *c, IRExpr *e, ExprFn f, void *st);
IRStmt *ir_mutate_stmt_children(Ctx *c, IRStmt *s, StmtFn fs, ExprFn fe, void *st);

/* Text form (golden tests, dumps, explain). */
void ir_print_expr(Buf *b, const IRExpr *e);
void ir_print_user(Buf *b, const IRExpr *e); /* size symbols by source name */
void ir_print_stmt(Buf *b, const IRStmt *s, int indent);
void ir_print_func(Buf *b, const IRFunc *f);

/* Evaluates an integer expression over size symbols (VAR_SIZE) with
 * sizes[sym->id].  Returns false for anything else (loads, loop vars...). */
bool ir_eval_int(const IRExpr *e, const int64_t *sizes, int64_t *out);

/* ================================================================
 * simplify.c
 * ================================================================ */
/* Constant folding, algebraic identities, canonical linear forms for integer
 * expressions, min/max of comparable bounds, dead branches.  Never changes
 * the value of a (non-failing) expression. */
IRExpr *simplify_expr(Ctx *c, IRExpr *e);
IRStmt *simplify_stmt(Ctx *c, IRStmt *s);
/* true when a <= b can be proven for all size values >= 0 (used by infer). */
bool simplify_prove_le(Ctx *c, IRExpr *a, IRExpr *b);

/* ================================================================
 * lower.c / schedule.c / flatten.c / pipeline.c
 * ================================================================ */
/* lower.c: Requires a checked, inferred Def.  Produces an IRFunc whose body
 * runs the statements in order: zero-fills, identity initialisation,
 * up-front range checks (S_CHECK), loop nests with multi-dim loads/stores;
 * boundary conditions rewritten into safe index arithmetic; non-affine or
 * conditional subscripts guarded per element (IR_SELECT + IR_FAIL). */
IRFunc *lower_def(Ctx *c, Def *d);
/* inline.c: pointwise temporaries computed where they are read (their
 * nests removed).  fuse.c: adjacent nests over the same outer loop that
 * share only that loop's slices become one nest.  Both before schedule. */
void inline_func(Ctx *c, IRFunc *f);
void fuse_func(Ctx *c, IRFunc *f);
/* fold.c: after fuse, a temporary accessed only in one top-level loop, at
 * the loop's variable in one dimension, becomes a local buffer of its other
 * dimensions around the loop's body. */
void fold_func(Ctx *c, IRFunc *f);
/* tile.c: contractions (a `+=` of products into 2+ dims, float32/64) as
 * register tiles over packed panels, for vectors of `vector_bytes`. */
int tile_host_vector_bytes(void);
void tile_func(Ctx *c, IRFunc *f, int vector_bytes);
/* sched.c: the user's schedule.  sched_check_def (from sema) checks the
 * def's schedule block: stage, loop and tensor names, arguments, legality
 * that needs no IR; error_at() at the directive.  sched_func (after lower)
 * applies it; stages it schedules get loops with IRVar.user set.
 * sched_print appends the schedule in use (the user's directives, the
 * autoscheduler's decisions as directives or comments) as a block that can
 * be pasted back; requires the final IRFunc of pipeline_run.  compute_with,
 * store_at and gemm reach fuse.c, fold.c and tile.c through IRFunc.want,
 * and what those passes did comes back through IRFunc.did. */
void sched_check_def(Ctx *c, Def *d);
void sched_func(Ctx *c, IRFunc *f);
void sched_print(Buf *b, const IRFunc *f);
/* The statement whose loop variable v is (x<k>_<name>), or -1; f->did
 * (allocated on first use, every stage -1 and untiled). */
int sched_stage_of_loop(const IRVar *v);
StageHint *sched_did(Ctx *c, IRFunc *f);
/* Whether v is the loop of a stage with directives that leave its nest to
 * the autoscheduler (compute_with, store_at, gemm): inline.c keeps it. */
bool sched_directed(const IRFunc *f, const IRVar *v);
/* For schedule.c, at a user-scheduled nest's turn: its vector loops as the
 * autoscheduler makes them (loads hoisted, boundary tests partitioned). */
IRStmt *sched_vectorize(Ctx *c, IRFunc *f, IRStmt *nest);
/* schedule.c: marks loop kinds (outermost parallel, innermost vectorized,
 * including reductions), splits 1-d parallel loops into vector blocks. */
void schedule_default(Ctx *c, IRFunc *f);
/* One innermost loop vectorized (with loop-invariant loads hoisted), or
 * partitioned into edges and a vectorized interior free of boundary tests,
 * or returned as it is; for tile.c's packing loops. */
IRStmt *schedule_vector_loop(Ctx *c, IRFunc *f, IRStmt *loop);
/* flatten.c: multi-dim IR_LOAD/S_STORE -> one flat index using stride vars. */
void flatten_func(Ctx *c, IRFunc *f);
/* specialize.c: after flatten, each statement with vectorized loops gets a
 * unit-stride version, chosen at run time when its strides are 1. */
void specialize_func(Ctx *c, IRFunc *f);
/* specialize.c: only the unit-stride versions, behind one FAIL_LAYOUT check
 * at the start (the CPU's first kernel; another layout runs the kernel of
 * specialize_func, built when one first arrives). */
void specialize_unit_func(Ctx *c, IRFunc *f);
/* pipeline.c: runs the passes in order; when `dump` is non-NULL appends the
 * IR after each pass.  Runs ir_verify between passes.  pipeline_run is the
 * kernel for every layout (specialize_func), pipeline_run_unit the CPU's
 * first kernel, for unit strides (specialize_unit_func). */
IRFunc *pipeline_run(Ctx *c, Def *d, Buf *dump);
IRFunc *pipeline_run_unit(Ctx *c, Def *d, Buf *dump);
void ir_verify(Ctx *c, IRFunc *f, const char *after);

/* ================================================================
 * emit_c.c
 * ================================================================ */
/* Writes a self-contained C11 translation unit defining
 *   int tc_kernel(const tc_kargs *a);   (returns 0, or 1 after a failure)
 * and `const int tc_kernel_abi = TC_KERNEL_ABI;`. */
void emitc_func(Ctx *c, IRFunc *f, Buf *out);

/* The kernel ABI shared by runtime.c and generated code.  emit_c.c writes the
 * same declarations (TC_KERNEL_ABI_DECLS) into every kernel. */
#define TC_KERNEL_ABI 1
typedef struct tc_krt tc_krt;
typedef void (*tc_task_fn)(const void *args, int64_t lo, int64_t hi);
struct tc_krt {
  /* runs task(args, a, b) over sub-ranges covering [lo, hi), in parallel */
  void (*parallel_for)(tc_krt *rt, tc_task_fn task, const void *args, int64_t lo, int64_t hi);
  /* records the first failure (thread-safe); sets `failed` */
  void (*fail)(tc_krt *rt, int site, int64_t value, int64_t bound);
  volatile int failed;
};
typedef struct tc_kargs {
  void *const *data;      /* per tensor id */
  const int64_t *shape;   /* per buffer dim, at Buffer.dim_offset */
  const int64_t *stride;  /* in elements */
  const int64_t *sizes;   /* per size symbol id */
  tc_krt *rt;
} tc_kargs;
#define TC_KERNEL_ABI_DECLS                                                   \
  "typedef struct tc_krt tc_krt;\n"                                           \
  "typedef void (*tc_task_fn)(const void *args, int64_t lo, int64_t hi);\n"   \
  "struct tc_krt {\n"                                                         \
  "  void (*parallel_for)(tc_krt *rt, tc_task_fn task, const void *args, int64_t lo, int64_t hi);\n" \
  "  void (*fail)(tc_krt *rt, int site, int64_t value, int64_t bound);\n"     \
  "  volatile int failed;\n"                                                  \
  "};\n"                                                                      \
  "typedef struct tc_kargs {\n"                                               \
  "  void *const *data;\n"                                                    \
  "  const int64_t *shape;\n"                                                 \
  "  const int64_t *stride;\n"                                                \
  "  const int64_t *sizes;\n"                                                 \
  "  tc_krt *rt;\n"                                                           \
  "} tc_kargs;\n"
typedef int (*tc_kernel_fn)(const tc_kargs *a);

/* ================================================================
 * jit.c / cache.c
 * ================================================================ */
typedef struct JitConfig {
  const char *cc;           /* compiler command (may contain spaces: "ccache gcc") */
  const char *extra_cflags; /* may be NULL */
  int verbose;              /* print the command to stderr */
} JitConfig;
/* Compiles `source` into the shared object `so_path` (which it creates).
 * Compiler failure: TC_ERR_COMPILER with the compiler's output in the message. */
tc_status jit_build(const JitConfig *cfg, const char *source, size_t len,
                    const char *so_path, tc_error *err);
/* A string identifying the compiler and host for cache keys (the resolved
 * compiler path, its size and mtime, the flags, the CPU model). */
char *jit_identity(const JitConfig *cfg); /* malloc'ed */
/* tensorc's own code for the program-level cache key (jit.c's comment);
 * NULL when it cannot be found.  Malloc'ed. */
char *jit_self_identity(void);

typedef struct Cache Cache;
Cache *cache_new(const char *dir /* NULL: memory only */);
void cache_free(Cache *k); /* dlcloses every handle */
/* Finds or builds the kernel for `source`: memory, then disk (checksum
 * verified; corrupt entries rebuilt), then jit_build + atomic rename.
 * Thread-safe. `how`: 0 built, 1 memory, 2 disk. */
tc_status cache_get(Cache *k, const JitConfig *cfg, const char *identity,
                    const char *source, size_t len, tc_kernel_fn *fn, int *how,
                    char *path, size_t pathlen, tc_error *err);
/* Programs (cache.c's comment): `text` is everything a kernel depends on
 * besides `identity`; a hit gives the kernel (loaded from memory or disk,
 * never built; `how` 1 or 2) and the metadata stored with it (*meta
 * malloc'ed).  put maps text to the kernel of `source` (built by cache_get
 * under `kernel_identity`) and stores the metadata, in memory and on disk. */
bool cache_find_program(Cache *k, const char *identity, const void *text, size_t len,
                        tc_kernel_fn *fn, unsigned char **meta, size_t *metalen, int *how,
                        char *path, size_t pathlen);
void cache_put_program(Cache *k, const char *identity, const void *text, size_t len,
                       const char *kernel_identity, const char *source, size_t srclen,
                       const unsigned char *meta, size_t metalen);
/* Other artifacts (CUDA cubins) on disk only: `<dir>/<hex key>.<ext>`,
 * verified on load (a bad entry is removed: false), published atomically.
 * *out is malloc'ed. */
bool cache_blob_load(Cache *k, const char *identity, const char *source, size_t len,
                     const char *ext, unsigned char **out, size_t *n);
void cache_blob_store(Cache *k, const char *identity, const char *source, size_t len,
                      const char *ext, const unsigned char *data, size_t n);

/* ================================================================
 * pool.c
 * ================================================================ */
typedef struct Pool Pool;
Pool *pool_new(int nthreads); /* nthreads <= 1: no threads, serial */
void pool_free(Pool *p);
/* Runs task(args, a, b) over chunks covering [lo, hi); the caller works too.
 * If the pool is busy with another caller's job the range runs serially on
 * the caller (no deadlock, no nesting). */
void pool_parallel_for(Pool *p, tc_task_fn task, const void *args, int64_t lo, int64_t hi);
int pool_threads(const Pool *p);

/* ================================================================
 * interp.c / runtime.c
 * ================================================================ */
/* A bound tensor: strided view of memory, element strides. */
typedef struct View {
  char *data;
  tc_dtype dtype;
  int rank;
  int64_t shape[TC_MAX_RANK];
  int64_t stride[TC_MAX_RANK];
} View;

/* Everything a run needs: size symbol values and one view per Def tensor
 * (inputs, outputs, temps by id), outputs/temps already allocated. */
typedef struct Binding {
  Def *def;
  int64_t *sizes;  /* [def->nsyms] */
  View *views;     /* [def->ntensors] */
} Binding;

/* Runs the def by direct evaluation of the checked program.  Errors (an
 * index out of range...) are TC_ERR_RUNTIME located at the access. */
tc_status interp_run(const SrcFile *file, const Binding *b, tc_error *err);

/* ================================================================
 * schedule_gpu.c / emit_cuda.c / cuda.c: the CUDA back end
 * ================================================================ */
/* schedule_gpu.c: maps a lowered IRFunc (multi-dim accesses, serial loops)
 * onto kernels, blocks and threads; the GPU dialect of the IR is described
 * at the top of that file. */
void schedule_gpu(Ctx *c, IRFunc *f);
/* A contraction acc += A(.., m, .., k) * B(.., k, .., n) for the tiled
 * kernel, keyed by the variables of its loops (passes keep variables);
 * emit_cuda.c re-checks the pattern and falls back to the plain mapping. */
typedef struct GpuHint GpuHint;
struct GpuHint {
  GpuHint *next;
  const IRVar *root;    /* the kernel's outermost loop */
  const IRVar *m, *n, *k, *acc;
  bool a_kfast, b_kfast; /* the operand's last subscript is k (else m, n) */
  bool conv;             /* an implicit GEMM (emit_cuda.c's find_conv finds its loop
                            sets): m and n are NULL, k the outer reduction loop */
};
/* pipeline.c: the CUDA pass list: lower, schedule_gpu, flatten, simplify. */
IRFunc *pipeline_run_gpu(Ctx *c, Def *d, Buf *dump);

/* emit_cuda.c: CUDA C for NVRTC, one __global__ tc_k<N> per kernel, and the
 * host plan that launches them.  Every kernel takes one argument: `nslots`
 * 8-byte slots, data pointers by buffer slot, then shape[ndims],
 * stride[ndims], sizes[nsizes], then the device failure record. */
typedef enum {
  GK_POINTWISE, /* block loops on grid y (with threadIdx.y), thread loop on grid x */
  GK_ROWS,      /* block loops on grid x, `threads` threads cooperate per block */
  GK_SINGLE,    /* one block of `threads` threads */
  GK_TILED      /* a contraction: x tiles of `inner` (n), y of `mid` (m), z `outer` */
} GpuKernelKind;

typedef enum { GS_CHECK, GS_IF, GS_LAUNCH } GpuStepKind;
typedef struct GpuStep GpuStep;
struct GpuStep {
  GpuStepKind kind;
  GpuStep *next;
  const IRStmt *check;         /* GS_CHECK: an S_CHECK over sizes, shapes, strides */
  const IRExpr *cond;          /* GS_IF: over sizes, shapes, strides */
  GpuStep *then, *els;         /* GS_IF */
  int kernel;                  /* GS_LAUNCH: runs tc_k<kernel> */
  GpuKernelKind gk;
  const IRExpr *outer, *inner; /* iterations: block loops (product; NULL: 1),
                                  POINTWISE: the thread loop's */
  const IRExpr *mid;           /* TILED: the m extent */
  int tile_m, tile_n;          /* TILED: the tile */
  const IRExpr *stage;         /* ROWS: elements of the row staged in shared memory */
  int stage_size;              /* ... of this many bytes each (the launch gives the room
                                  when it fits, else the kernel reads memory) */
  int threads;                 /* ROWS, SINGLE: threads per block */
  int rows;                    /* POINTWISE: consecutive block-loop iterations per
                                  thread (a stencil's; 0: one) */
};

typedef struct GpuPlan {
  GpuStep *steps;
  int nkernels;
  int nslots;
  bool can_fail;               /* some kernel may report a failure */
  bool *buf_used;              /* [nbufs]: some kernel reads or writes the buffer (a
                                  temporary no kernel uses gets no device memory) */
} GpuPlan;

/* Requires the output of pipeline_run_gpu. */
GpuPlan *emitcuda_func(Ctx *c, IRFunc *f, Buf *out);
/* The slot of the failure record in the kernel argument. */
int emitcuda_fail_slot(const IRFunc *f);

/* cuda.c: the CUDA driver API and NVRTC, both loaded with dlopen on first
 * use (building tensorc never needs the CUDA toolkit). */
typedef struct Cuda Cuda;
Cuda *cuda_new(void);            /* loads nothing yet; NULL on OOM */
void cuda_free(Cuda *cu);        /* unloads modules and releases contexts */
/* NVRTC: `src` to a cubin for sm_<arch> (90 for H100); *cubin malloc'ed.
 * TC_ERR_UNSUPPORTED when no libnvrtc can be loaded, TC_ERR_COMPILER with
 * NVRTC's log on a compile error. */
tc_status cuda_compile(Cuda *cu, const char *src, size_t len, int arch, unsigned char **cubin,
                       size_t *n, tc_error *err);
/* "nvrtc MAJOR.MINOR (PATH)" for cache keys and -v, or NULL with err. */
const char *cuda_nvrtc_identity(Cuda *cu, tc_error *err);
/* sm_XY of device `device` as XY; TC_ERR_UNSUPPORTED without a driver or device. */
tc_status cuda_device_arch(Cuda *cu, int device, int *arch, tc_error *err);

typedef struct CudaModule CudaModule;
/* Loads a cubin with `nkernels` kernels tc_k0.. into device `device`. */
tc_status cuda_module_load(Cuda *cu, int device, const unsigned char *cubin, size_t n,
                           int nkernels, CudaModule **out, tc_error *err);
void cuda_module_free(Cuda *cu, CudaModule *m);

typedef struct CudaFailure {
  int failed;                    /* a kernel reported failure `site` */
  int site;
  int64_t value, bound;
} CudaFailure;

/* Runs a plan on `stream` (a CUstream; NULL: the legacy default stream).
 * Views with data == NULL (temporaries) get zeroed device memory for the
 * run.  With `staged`, the other views are host memory: their byte spans
 * are copied to the device and back (outputs) around the run; otherwise
 * they are device memory of `device`.  The stream is synchronised only when
 * staged or when a kernel may fail (to read the failure record). */
tc_status cuda_run(Cuda *cu, CudaModule *m, const IRFunc *f, const GpuPlan *plan,
                   const Binding *b, int device, void *stream, bool staged,
                   CudaFailure *fail, tc_error *err);
/* One entry's CUDA code: its GPU IRFunc and plan (in `a`, which it takes
 * over), its source, cubins by architecture and modules by device. */
typedef struct CudaEntry CudaEntry;
CudaEntry *cuda_entry_new(Arena *a, IRFunc *fn, GpuPlan *plan, const char *src, size_t len);
void cuda_entry_free(Cuda *cu, CudaEntry *e);
IRFunc *cuda_entry_fn(const CudaEntry *e);
const GpuPlan *cuda_entry_plan(const CudaEntry *e);
/* The module of device `device`: the cubin from memory, the disk cache
 * (`cache`, may be NULL) or NVRTC.  *how: 0 compiled, 1 memory, 2 disk.
 * Not thread-safe on one entry (runtime.c holds the entry's lock). */
tc_status cuda_entry_module(Cuda *cu, Cache *cache, CudaEntry *e, int device, CudaModule **m,
                            int *how, tc_error *err);

/* Device memory for library-allocated outputs: a DLManagedTensor deleter
 * context that frees `ptr` (even after the Cuda is gone). */
tc_status cuda_alloc_managed(Cuda *cu, int device, size_t bytes, void **ptr, void **manager,
                             tc_error *err);
void cuda_managed_release(void *manager);
/* A synchronous copy between host and device memory (tests and tools). */
tc_status cuda_memcpy(Cuda *cu, int device, void *dst, const void *src, size_t n,
                      bool to_device, tc_error *err);

#endif
