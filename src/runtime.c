/*
 * runtime.c — the public API (include/tensorc.h): contexts, programs,
 * binding DLPack tensors to a definition, and running it.
 *
 * A tc_context holds what outlives a program: the compiler configuration,
 * the kernel cache and the thread pool (made on first use), and the
 * compiler identity string (computed once, on first use).  A tc_program owns
 * an arena with the checked AST, a copy of the source text (run-time errors
 * point into it) and, per entry, the lowered IRFunc and the loaded kernel,
 * prepared on first use under that entry's mutex.  There is no global state:
 * several threads may compile and run on one context.
 *
 * The compiler stages report user errors by longjmp (error_at).  Every call
 * into them goes through protect(), the one protected entry point (Lua's
 * luaD_rawrunprotected): it installs the jump target and the arena's
 * out-of-memory handler, and turns a jump into a returned status.  Nothing
 * above protect() ever sees a jump.
 *
 * Running an entry:
 *   1. bind the inputs: CPU device, declared dtype and rank, then the size
 *      symbols — the first tensor dimension that uses a symbol sets it, later
 *      ones must agree, and constant dimensions must match;
 *   2. evaluate every output's and temporary's Tensor.size (inferred
 *      symbolic extents) with those sizes; a negative extent is an error;
 *   3. check caller-provided outputs: shape, dtype, device, no element of an
 *      output aliasing another of its elements, no output overlapping an
 *      input or another output (byte spans, conservatively);
 *   4. allocate temporaries (compact, zeroed);
 *   5. call the kernel with data pointers, shapes, strides and sizes; its
 *      parallel loops run on the context's pool, and its first failure
 *      (an index out of range...) comes back as a located error formatted
 *      from the IRFunc's FailSite — or run the interpreter on the same binding.
 *
 * Preparing an entry's kernel: first by its program-level key (cache.c's
 * "Programs": the program text, entry, constants, compiler and tensorc
 * itself), which gives the loaded kernel and its KMeta — the argument
 * layout, the tensors it touches, the failure sites — without lowering;
 * else lower, emit, find or build the kernel by its C, and record the key.
 * Each entry has two kernels: the unit-stride one, which tc_prepare makes,
 * and the generic one, made when a call's layout fails the former's check
 * (specialize.c).
 */
#include "tc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ================================================================
 * contexts
 * ================================================================ */

struct tc_context {
  char *cc, *cache_dir, *extra_cflags; /* cache_dir NULL: no disk cache */
  int num_threads;
  int verbose;                         /* print compiler commands */
  int debug_passes;                    /* print the IR after each pass */
  int debug_generic;                   /* TENSORC_DEBUG=generic: always the kernel
                                          for any strides (tests, A/B timing) */
  JitConfig jit;
  pthread_mutex_t mu;                  /* guards identity and pool */
  char *identity;                      /* jit_identity, on first use */
  char *self_identity;                 /* jit_self_identity (NULL: unknown) */
  Cache *cache;
  Pool *pool;                          /* on first use */
  Cuda *cuda;                          /* driver and NVRTC, loaded on first use */
};

void tc_context_options_init(tc_context_options *o) {
  memset(o, 0, sizeof *o);
  o->disk_cache = 1;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static bool env_has(const char *name, const char *word) {
  const char *v = getenv(name);
  return v && strstr(v, word);
}

static int default_threads(void) {
  const char *v = getenv("TENSORC_NUM_THREADS");
  if (v && *v) {
    char *end;
    long n = strtol(v, &end, 10);
    if (*end == '\0' && n > 0)
      return n > 1024 ? 1024 : (int)n;
  }
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > 1024 ? 1024 : (int)n;
}

/* $TENSORC_CACHE_DIR, else $HOME/.cache/tensorc, else /tmp/tensorc-cache-UID. */
static char *default_cache_dir(void) {
  const char *v = getenv("TENSORC_CACHE_DIR");
  if (v && *v)
    return strdup(v);
  Buf b = {0};
  const char *home = getenv("HOME");
  if (home && *home)
    buf_printf(&b, "%s/.cache/tensorc", home);
  else
    buf_printf(&b, "/tmp/tensorc-cache-%ld", (long)getuid());
  return buf_detach(&b);
}

tc_status tc_context_new(const tc_context_options *opts, tc_context **out, tc_error *err) {
  tc_context_options o;
  tc_context_options_init(&o);
  if (opts)
    o = *opts;
  error_clear(err);
  *out = NULL;
  tc_context *ctx = calloc(1, sizeof *ctx);
  if (!ctx)
    goto oom;
  pthread_mutex_init(&ctx->mu, NULL);
  const char *cc = o.cc ? o.cc : getenv("CC");
  ctx->cc = strdup(cc && *cc ? cc : "cc");
  const char *extra = o.extra_cflags ? o.extra_cflags : getenv("TENSORC_CFLAGS");
  ctx->extra_cflags = dup_or_null(extra);
  if (o.disk_cache)
    ctx->cache_dir = o.cache_dir ? strdup(o.cache_dir) : default_cache_dir();
  ctx->num_threads = o.num_threads > 0 ? o.num_threads : default_threads();
  ctx->verbose = o.verbose || env_has("TENSORC_DEBUG", "jit");
  ctx->debug_passes = env_has("TENSORC_DEBUG", "passes");
  ctx->debug_generic = env_has("TENSORC_DEBUG", "generic");
  ctx->jit = (JitConfig){ctx->cc, ctx->extra_cflags, ctx->verbose};
  ctx->cache = cache_new(ctx->cache_dir);
  ctx->cuda = cuda_new();
  if (!ctx->cc || (extra && !ctx->extra_cflags) || (o.disk_cache && !ctx->cache_dir) ||
      !ctx->cache || !ctx->cuda) {
    tc_context_free(ctx);
    goto oom;
  }
  *out = ctx;
  return TC_OK;
oom:
  error_set(err, TC_ERR_NOMEM, NULL, (Loc){0, 0}, "out of memory");
  return TC_ERR_NOMEM;
}

void tc_context_free(tc_context *ctx) {
  if (!ctx)
    return;
  pool_free(ctx->pool);
  cache_free(ctx->cache);
  cuda_free(ctx->cuda);
  free(ctx->identity);
  free(ctx->self_identity);
  free(ctx->cc);
  free(ctx->cache_dir);
  free(ctx->extra_cflags);
  pthread_mutex_destroy(&ctx->mu);
  free(ctx);
}

static const char *context_identity(tc_context *ctx) {
  pthread_mutex_lock(&ctx->mu);
  if (!ctx->identity) {
    ctx->identity = jit_identity(&ctx->jit);
    ctx->self_identity = jit_self_identity();
  }
  const char *id = ctx->identity;
  pthread_mutex_unlock(&ctx->mu);
  return id;
}

static Pool *context_pool(tc_context *ctx) {
  pthread_mutex_lock(&ctx->mu);
  if (!ctx->pool)
    ctx->pool = pool_new(ctx->num_threads); /* NULL on OOM: loops run serially */
  Pool *p = ctx->pool;
  pthread_mutex_unlock(&ctx->mu);
  return p;
}

/* ================================================================
 * the protected entry point
 * ================================================================ */

typedef void (*Step)(Ctx *c, void *st);

/* Runs step(c, st) with error_at/IASSERT/arena OOM jumps caught.  The
 * arena's OOM handler is removed again before returning. */
static tc_status protect(Arena *a, const SrcFile *file, tc_error *err, Step step, void *st) {
  tc_error local;
  jmp_buf jmp;
  Ctx c = {a, file, err ? err : &local, &jmp};
  error_clear(c.err);
  a->oom = &jmp;
  int rc = setjmp(jmp);
  if (rc == 0) {
    step(&c, st);
    a->oom = NULL;
    return TC_OK;
  }
  a->oom = NULL;
  if (rc == TC_ERR_NOMEM || c.err->code == TC_OK)
    error_set(c.err, rc == TC_ERR_NOMEM ? TC_ERR_NOMEM : TC_ERR_INTERNAL, NULL, (Loc){0, 0},
              rc == TC_ERR_NOMEM ? "out of memory" : "internal error");
  return (tc_status)rc;
}

/* ================================================================
 * programs
 * ================================================================ */

/* A run-time failure site as the run time needs it (FailSite without the
 * AST: the program-level cache stores it). */
typedef struct KSite {
  FailKind kind;
  Loc loc;
  const char *tensor; /* its name, or NULL */
  int dim;
  bool write;
} KSite;

/* What calling a compiled kernel needs besides the Def: the kernel's
 * argument layout, the tensors it touches, its failure sites.  Filled from
 * the lowered IRFunc, or read back from the program-level cache. */
typedef struct KMeta {
  int nbufs, nsizes, ndims;
  int *rank;          /* [nbufs]: the buffer's rank, -1: no buffer */
  int *dim_offset;    /* [nbufs]: its first index in shape[]/stride[] */
  bool *used;         /* [nbufs]: the kernel reads or writes the buffer */
  KSite *sites;
  int nsites;
} KMeta;

/* One compiled kernel of an entry: the unit-stride one, or the generic one
 * (specialize.c), each prepared on first use. */
typedef struct Variant {
  bool ready;
  Arena arena;         /* meta's arrays */
  KMeta meta;          /* what running it needs: from lowering or the cache */
  tc_kernel_fn run;
  int source;          /* 0 compiled, 1 memory cache, 2 disk cache */
  bool lowered;        /* the last prepare lowered the Def (no program-level hit) */
  char path[512];
} Variant;

/* One entry's kernels.  The unit-stride kernel (pipeline_run_unit) is the one
 * tc_prepare makes; it fails at its start (FAIL_LAYOUT) on a layout with a
 * non-unit stride where it assumes 1, and run_kernel then prepares and runs
 * the generic kernel (pipeline_run) instead: its generic-stride
 * loop copies cost the C compiler a third of its time, paid only by
 * programs that use such layouts. */
typedef struct Kernel {
  pthread_mutex_t mu;  /* guards this struct and lowering of the entry's Def */
  Variant unit, generic;
  CudaEntry *cuda;     /* the CUDA code, lowered on first CUDA use */
} Kernel;

struct tc_program {
  tc_context *ctx;
  Arena arena;         /* tokens, AST, inference results */
  SrcFile file;
  char *text, *name;   /* our copies */
  Program *prog;
  Kernel *kernels;     /* one per def */
  const tc_constant *consts; /* during tc_compile_ex only */
  int nconsts;
  char *consts_text;   /* the constants, for the program-level cache key */
};

static void compile_step(Ctx *c, void *st) {
  tc_program *p = st;
  int ntoks;
  Token *toks = lex_tokenize(c, &ntoks);
  Program *prog = parse_program(c, toks);
  sema_program_ex(c, prog, p->consts, p->nconsts);
  for (int i = 0; i < prog->ndefs; i++)
    infer_def(c, prog->defs[i]);
  p->prog = prog;
}

/* The constants as text: each name (length-prefixed), kind and value. */
static char *constants_text(const tc_constant *consts, int n) {
  Buf b = {0};
  buf_printf(&b, "constants %d\n", n);
  for (int i = 0; i < n; i++) {
    const char *name = consts[i].name ? consts[i].name : "";
    buf_printf(&b, "%zu:%s %d %lld %a\n", strlen(name), name, consts[i].is_float,
               (long long)consts[i].i, consts[i].is_float ? consts[i].f : 0.0);
  }
  return buf_detach(&b);
}

tc_status tc_compile(tc_context *ctx, const char *filename, const char *source, size_t len,
                     tc_program **out, tc_error *err) {
  return tc_compile_ex(ctx, filename, source, len, NULL, 0, out, err);
}

tc_status tc_compile_ex(tc_context *ctx, const char *filename, const char *source, size_t len,
                        const tc_constant *consts, int n_consts, tc_program **out,
                        tc_error *err) {
  error_clear(err);
  if (!out || !ctx || (!source && len) || n_consts < 0 || (n_consts && !consts)) {
    error_set(err, TC_ERR_ARGUMENT, NULL, (Loc){0, 0}, "tc_compile: NULL argument");
    return TC_ERR_ARGUMENT;
  }
  *out = NULL;
  tc_program *p = calloc(1, sizeof *p);
  if (!p)
    goto oom;
  p->ctx = ctx;
  p->text = malloc(len + 1);
  p->name = strdup(filename ? filename : "<input>");
  if (!p->text || !p->name)
    goto oom;
  if (len)
    memcpy(p->text, source, len);
  p->text[len] = '\0';
  p->file = (SrcFile){p->name, p->text, len};
  p->consts = consts;
  p->nconsts = n_consts;
  if (!(p->consts_text = constants_text(consts, n_consts)))
    goto oom;
  tc_status st = protect(&p->arena, &p->file, err, compile_step, p);
  p->consts = NULL;
  p->nconsts = 0;
  if (st != TC_OK) {
    tc_program_free(p);
    return st;
  }
  p->kernels = calloc((size_t)p->prog->ndefs + 1, sizeof *p->kernels);
  if (!p->kernels)
    goto oom;
  for (int i = 0; i < p->prog->ndefs; i++)
    pthread_mutex_init(&p->kernels[i].mu, NULL);
  *out = p;
  return TC_OK;
oom:
  tc_program_free(p);
  error_set(err, TC_ERR_NOMEM, NULL, (Loc){0, 0}, "out of memory");
  return TC_ERR_NOMEM;
}

void tc_program_free(tc_program *p) {
  if (!p)
    return;
  if (p->kernels) {
    for (int i = 0; i < p->prog->ndefs; i++) {
      cuda_entry_free(p->ctx->cuda, p->kernels[i].cuda);
      arena_free(&p->kernels[i].unit.arena);
      arena_free(&p->kernels[i].generic.arena);
      pthread_mutex_destroy(&p->kernels[i].mu);
    }
    free(p->kernels);
  }
  arena_free(&p->arena);
  free(p->text);
  free(p->name);
  free(p->consts_text);
  free(p);
}

int tc_program_num_entries(const tc_program *p) { return p ? p->prog->ndefs : 0; }

static Def *entry_def(const tc_program *p, int entry) {
  return p && entry >= 0 && entry < p->prog->ndefs ? p->prog->defs[entry] : NULL;
}

const char *tc_program_entry_name(const tc_program *p, int entry) {
  Def *d = entry_def(p, entry);
  return d ? d->name : NULL;
}

int tc_program_find_entry(const tc_program *p, const char *name) {
  for (int i = 0; p && name && i < p->prog->ndefs; i++)
    if (!strcmp(p->prog->defs[i]->name, name))
      return i;
  return -1;
}

/* The Def of `entry`, or NULL with TC_ERR_ARGUMENT in err. */
static Def *get_def(const tc_program *p, int entry, tc_error *err) {
  Def *d = entry_def(p, entry);
  if (!d)
    error_set(err, TC_ERR_ARGUMENT, NULL, (Loc){0, 0},
              "no entry %d (the program has %d)", entry, p ? p->prog->ndefs : 0);
  return d;
}

int tc_entry_num_inputs(const tc_program *p, int entry) {
  Def *d = entry_def(p, entry);
  return d ? d->ninputs : -1;
}

int tc_entry_num_outputs(const tc_program *p, int entry) {
  Def *d = entry_def(p, entry);
  return d ? d->noutputs : -1;
}

static void param_info(const Tensor *t, tc_param_info *out) {
  memset(out, 0, sizeof *out);
  out->name = t->name;
  out->dtype = t->dtype;
  out->rank = t->rank;
  out->typed = t->role == T_INPUT || t->typed;
  for (int i = 0; i < t->rank && i < TC_MAX_RANK; i++) {
    out->dim_values[i] = -1;
    if (!t->dims)
      continue;
    if (t->dims[i].sym)
      out->dim_names[i] = t->dims[i].sym->name;
    else if (t->dims[i].name)
      out->dim_names[i] = t->dims[i].name;
    else
      out->dim_values[i] = t->dims[i].value;
  }
}

static tc_status entry_param(const tc_program *p, int entry, int i, bool input,
                             tc_param_info *out) {
  Def *d = entry_def(p, entry);
  int n = d ? (input ? d->ninputs : d->noutputs) : 0;
  if (!d || !out || i < 0 || i >= n)
    return TC_ERR_ARGUMENT;
  param_info(d->tensors[input ? i : d->ninputs + i], out);
  return TC_OK;
}

tc_status tc_entry_input(const tc_program *p, int entry, int i, tc_param_info *out) {
  return entry_param(p, entry, i, true, out);
}

tc_status tc_entry_output(const tc_program *p, int entry, int i, tc_param_info *out) {
  return entry_param(p, entry, i, false, out);
}

/* ================================================================
 * sizes: binding input shapes to size symbols, inferring the rest
 * ================================================================ */

static void arg_error(tc_error *err, const char *fmt, ...) TC_PRINTF(2, 3);
static void arg_error(tc_error *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  error_vset(err, TC_ERR_ARGUMENT, NULL, (Loc){0, 0}, fmt, ap);
  va_end(ap);
}

/* Binds the size symbols from the input shapes (in[i] for input i): the
 * first dimension using a symbol sets it, the others must agree.
 * from_t/from_d record which tensor dimension set each symbol. */
static tc_status bind_sizes_into(const Def *d, const tc_shape *in, int64_t *sizes, int *from_t,
                                 int *from_d, tc_error *err) {
  for (int s = 0; s < d->nsyms; s++)
    from_t[s] = -1;
  for (int i = 0; i < d->ninputs; i++) {
    const Tensor *t = d->tensors[i];
    if (in[i].rank != t->rank) {
      arg_error(err, "%s: %s has rank %d, expected %d", d->name, t->name, in[i].rank, t->rank);
      return TC_ERR_ARGUMENT;
    }
    for (int k = 0; k < t->rank; k++) {
      int64_t n = in[i].dims[k];
      const Dim *dim = &t->dims[k];
      if (n < 0) {
        arg_error(err, "%s: %s has negative size %lld in dim %d", d->name, t->name,
                  (long long)n, k);
        return TC_ERR_ARGUMENT;
      }
      if (!dim->sym) {
        if (n != dim->value) {
          arg_error(err, "%s: %s has size %lld in dim %d, but the definition declares %lld",
                    d->name, t->name, (long long)n, k, (long long)dim->value);
          return TC_ERR_ARGUMENT;
        }
        continue;
      }
      int s = dim->sym->id;
      if (from_t[s] < 0) {
        sizes[s] = n;
        from_t[s] = i;
        from_d[s] = k;
      } else if (sizes[s] != n) {
        arg_error(err, "%s: %s has size %lld in dim %d, but %s = %lld (from %s dim %d)",
                  d->name, t->name, (long long)n, k, dim->sym->name, (long long)sizes[s],
                  d->tensors[from_t[s]]->name, from_d[s]);
        return TC_ERR_ARGUMENT;
      }
    }
  }
  for (int s = 0; s < d->nsyms; s++) {
    if (from_t[s] < 0) {
      error_set(err, TC_ERR_INTERNAL, NULL, (Loc){0, 0},
                "internal error: %s: size %s is bound by no input", d->name, d->syms[s]->name);
      return TC_ERR_INTERNAL;
    }
  }
  return TC_OK;
}

static tc_status bind_sizes(const Def *d, const tc_shape *in, int64_t *sizes, tc_error *err) {
  int *from_t = malloc(2 * ((size_t)d->nsyms + 1) * sizeof *from_t);
  if (!from_t) {
    error_set(err, TC_ERR_NOMEM, NULL, (Loc){0, 0}, "out of memory");
    return TC_ERR_NOMEM;
  }
  tc_status st = bind_sizes_into(d, in, sizes, from_t, from_t + d->nsyms + 1, err);
  free(from_t);
  return st;
}

/* Evaluates the inferred shape of every output and temporary into
 * shapes[tensor id]. */
static tc_status infer_sizes(const Def *d, const int64_t *sizes, tc_shape *shapes,
                             tc_error *err) {
  for (int i = d->ninputs; i < d->ntensors; i++) {
    const Tensor *t = d->tensors[i];
    shapes[i].rank = t->rank;
    for (int k = 0; k < t->rank; k++) {
      int64_t v;
      bool ok;
      if (t->size && t->size[k])
        ok = ir_eval_int(t->size[k], sizes, &v);
      else if (t->dims && !t->dims[k].sym)
        ok = true, v = t->dims[k].value;
      else if (t->dims)
        ok = true, v = sizes[t->dims[k].sym->id];
      else
        ok = false;
      if (!ok) {
        error_set(err, TC_ERR_INTERNAL, NULL, (Loc){0, 0},
                  "internal error: %s: cannot evaluate the size of %s dim %d", d->name,
                  t->name, k);
        return TC_ERR_INTERNAL;
      }
      if (v < 0) {
        arg_error(err,
                  "%s: inferred size of %s dim %d is %lld (shapes too small for the ranges "
                  "of this definition)",
                  d->name, t->name, k, (long long)v);
        return TC_ERR_ARGUMENT;
      }
      shapes[i].dims[k] = v;
    }
  }
  return TC_OK;
}

tc_status tc_infer_shapes(const tc_program *p, int entry, const tc_shape *inputs,
                          int n_inputs, tc_shape *outputs, int n_outputs, tc_error *err) {
  error_clear(err);
  Def *d = get_def(p, entry, err);
  if (!d)
    return TC_ERR_ARGUMENT;
  if (n_inputs != d->ninputs || n_outputs != d->noutputs || (n_inputs && !inputs) ||
      (n_outputs && !outputs)) {
    arg_error(err, "%s takes %d inputs and %d outputs, got %d and %d", d->name, d->ninputs,
              d->noutputs, n_inputs, n_outputs);
    return TC_ERR_ARGUMENT;
  }
  int64_t *sizes = calloc((size_t)d->nsyms + 1, sizeof *sizes);
  tc_shape *shapes = calloc((size_t)d->ntensors + 1, sizeof *shapes);
  tc_status st = TC_ERR_NOMEM;
  if (!sizes || !shapes)
    error_set(err, TC_ERR_NOMEM, NULL, (Loc){0, 0}, "out of memory");
  else if ((st = bind_sizes(d, inputs, sizes, err)) == TC_OK &&
           (st = infer_sizes(d, sizes, shapes, err)) == TC_OK)
    memcpy(outputs, shapes + d->ninputs, (size_t)d->noutputs * sizeof *outputs);
  free(sizes);
  free(shapes);
  return st;
}

/* ================================================================
 * output sizes as postfix programs (tc_output_size)
 * ================================================================ */

typedef struct SizeProg {
  tc_size_op *ops;
  int cap, n;
  bool unsupported;
} SizeProg;

static void size_push(SizeProg *sp, tc_size_opcode op, int input, int dim, int64_t value) {
  if (sp->n < sp->cap)
    sp->ops[sp->n] = (tc_size_op){op, input, dim, value};
  sp->n++;
}

static const tc_size_opcode size_binops[NUM_BINOPS] = {
    [OP_ADD] = TC_SIZE_ADD, [OP_SUB] = TC_SIZE_SUB, [OP_MUL] = TC_SIZE_MUL,
    [OP_DIV] = TC_SIZE_DIV, [OP_MOD] = TC_SIZE_MOD, [OP_LT] = TC_SIZE_LT,
    [OP_LE] = TC_SIZE_LE,   [OP_GT] = TC_SIZE_GT,   [OP_GE] = TC_SIZE_GE,
    [OP_EQ] = TC_SIZE_EQ,   [OP_NE] = TC_SIZE_NE,   [OP_AND] = TC_SIZE_AND,
    [OP_OR] = TC_SIZE_OR,   [OP_MIN] = TC_SIZE_MIN, [OP_MAX] = TC_SIZE_MAX,
};

static void size_sym(SizeProg *sp, const SizeSym *s) {
  if (!s->tensor || s->tensor->role != T_INPUT)
    sp->unsupported = true;
  else
    size_push(sp, TC_SIZE_DIM, s->tensor->id, s->dim, 0);
}

/* Appends the postfix form of an integer expression over size symbols. */
static void size_expr(SizeProg *sp, const IRExpr *e) {
  if (!e || sp->unsupported || !(dtype_is_int(e->type) || e->type == TC_BOOL)) {
    sp->unsupported = true;
    return;
  }
  switch (e->kind) {
  case IR_INT:
    size_push(sp, TC_SIZE_CONST, 0, 0, e->ival);
    return;
  case IR_VAR:
    if (e->var->kind == VAR_SIZE && e->var->sym)
      size_sym(sp, e->var->sym);
    else
      sp->unsupported = true;
    return;
  case IR_BIN:
    size_expr(sp, e->a);
    size_expr(sp, e->b);
    size_push(sp, size_binops[e->op], 0, 0, 0);
    return;
  case IR_UN:
    size_expr(sp, e->a);
    size_push(sp, e->op == OP_NOT ? TC_SIZE_NOT : TC_SIZE_NEG, 0, 0, 0);
    return;
  case IR_SELECT:
    size_expr(sp, e->a);
    size_expr(sp, e->b);
    size_expr(sp, e->c);
    size_push(sp, TC_SIZE_SELECT, 0, 0, 0);
    return;
  case IR_CAST:
    size_expr(sp, e->a);
    if (e->type == TC_BOOL) {
      size_push(sp, TC_SIZE_CONST, 0, 0, 0);
      size_push(sp, TC_SIZE_NE, 0, 0, 0);
    } else if (dtype_info[e->type].bits < 32) {
      sp->unsupported = true; /* a narrowing wrap */
    }
    return;
  default:
    sp->unsupported = true;
    return;
  }
}

tc_status tc_output_size(const tc_program *p, int entry, int output, int dim,
                         tc_size_op *ops, int cap, int *n, tc_error *err) {
  error_clear(err);
  Def *d = get_def(p, entry, err);
  if (!d)
    return TC_ERR_ARGUMENT;
  if (output < 0 || output >= d->noutputs || !n || cap < 0 || (cap && !ops)) {
    arg_error(err, "%s: tc_output_size: bad output %d or buffer", d->name, output);
    return TC_ERR_ARGUMENT;
  }
  const Tensor *t = d->tensors[d->ninputs + output];
  if (dim < 0 || dim >= t->rank) {
    arg_error(err, "%s: output %s has no dim %d (rank %d)", d->name, t->name, dim, t->rank);
    return TC_ERR_ARGUMENT;
  }
  SizeProg sp = {ops, cap, 0, false};
  if (t->size && t->size[dim])
    size_expr(&sp, t->size[dim]);
  else if (t->dims && !t->dims[dim].sym)
    size_push(&sp, TC_SIZE_CONST, 0, 0, t->dims[dim].value);
  else if (t->dims)
    size_sym(&sp, t->dims[dim].sym);
  else
    sp.unsupported = true;
  *n = sp.n;
  if (sp.unsupported) {
    error_set(err, TC_ERR_UNSUPPORTED, NULL, (Loc){0, 0},
              "%s: the size of output %s dim %d is not an expression of the input sizes",
              d->name, t->name, dim);
    return TC_ERR_UNSUPPORTED;
  }
  return TC_OK;
}

/* ================================================================
 * binding DLTensors
 * ================================================================ */

/* a*b without overflow: false when it would overflow. */
static bool mul64(int64_t a, int64_t b, int64_t *r) {
  if (a == 0 || b == 0) {
    *r = 0;
    return true;
  }
  bool over = a > 0 ? (b > 0 ? a > INT64_MAX / b : b < INT64_MIN / a)
                    : (b > 0 ? a < INT64_MIN / b : b < INT64_MAX / a);
  if (over)
    return false;
  *r = a * b;
  return true;
}

static int64_t abs64(int64_t x) { return x >= 0 ? x : x == INT64_MIN ? INT64_MAX : -x; }

static bool add64(int64_t a, int64_t b, int64_t *r) {
  if ((b > 0 && a > INT64_MAX - b) || (b < 0 && a < INT64_MIN - b))
    return false;
  *r = a + b;
  return true;
}

static const char *device_name(DLDeviceType t) {
  switch (t) {
  case kDLCPU: return "cpu";
  case kDLCUDA: return "cuda";
  case kDLCUDAHost: return "cuda_host";
  case kDLOpenCL: return "opencl";
  case kDLVulkan: return "vulkan";
  case kDLMetal: return "metal";
  case kDLVPI: return "vpi";
  case kDLROCM: return "rocm";
  case kDLROCMHost: return "rocm_host";
  case kDLExtDev: return "ext_dev";
  case kDLCUDAManaged: return "cuda_managed";
  case kDLOneAPI: return "oneapi";
  case kDLWebGPU: return "webgpu";
  case kDLHexagon: return "hexagon";
  }
  return "unknown";
}

/* The element count of a shape, or -1 when it overflows. */
static int64_t num_elements(const tc_shape *s) {
  int64_t n = 1;
  for (int k = 0; k < s->rank; k++)
    if (!mul64(n, s->dims[k], &n))
      return -1;
  return n;
}

/* Checks device, dtype and rank of tensor `t` and makes its view. */
static tc_status check_tensor(const Def *d, const Tensor *t, const DLTensor *dl, View *v,
                              tc_error *err) {
  if (!dl) {
    arg_error(err, "%s: %s is NULL", d->name, t->name);
    return TC_ERR_ARGUMENT;
  }
  if (dl->device.device_type != kDLCPU && dl->device.device_type != kDLCUDA) {
    error_set(err, TC_ERR_UNSUPPORTED, NULL, (Loc){0, 0},
              "%s: %s is on device %s:%d; only CPU and CUDA tensors are supported",
              d->name, t->name, device_name(dl->device.device_type), (int)dl->device.device_id);
    return TC_ERR_UNSUPPORTED;
  }
  tc_dtype dt;
  if (tc_dtype_from_dl(dl->dtype, &dt)) {
    arg_error(err, "%s: %s has an unsupported dtype (code %d, %d bits, %d lanes), expected %s",
              d->name, t->name, dl->dtype.code, dl->dtype.bits, dl->dtype.lanes,
              tc_dtype_name(t->dtype));
    return TC_ERR_ARGUMENT;
  }
  if (dt != t->dtype) {
    arg_error(err, "%s: %s has dtype %s, expected %s", d->name, t->name, tc_dtype_name(dt),
              tc_dtype_name(t->dtype));
    return TC_ERR_ARGUMENT;
  }
  if (dl->ndim != t->rank) {
    arg_error(err, "%s: %s has rank %d, expected %d", d->name, t->name, (int)dl->ndim, t->rank);
    return TC_ERR_ARGUMENT;
  }
  if (t->rank && !dl->shape) {
    arg_error(err, "%s: %s has no shape", d->name, t->name);
    return TC_ERR_ARGUMENT;
  }
  memset(v, 0, sizeof *v);
  v->dtype = dt;
  v->rank = t->rank;
  int64_t stride = 1;
  bool empty = false;
  for (int k = t->rank - 1; k >= 0; k--) {
    v->shape[k] = dl->shape[k];
    if (v->shape[k] < 0) {
      arg_error(err, "%s: %s has negative size %lld in dim %d", d->name, t->name,
                (long long)v->shape[k], k);
      return TC_ERR_ARGUMENT;
    }
    empty |= v->shape[k] == 0;
    v->stride[k] = dl->strides ? dl->strides[k] : stride;
    if (!dl->strides && !mul64(stride, v->shape[k] ? v->shape[k] : 1, &stride)) {
      arg_error(err, "%s: %s is too large", d->name, t->name);
      return TC_ERR_ARGUMENT;
    }
  }
  if (!dl->data && !empty) {
    arg_error(err, "%s: %s has no data (NULL pointer)", d->name, t->name);
    return TC_ERR_ARGUMENT;
  }
  v->data = dl->data ? (char *)dl->data + dl->byte_offset : NULL;
  return TC_OK;
}

/* The bytes a view can touch: [lo, hi) around its data pointer.  false when
 * the view is empty or the span overflows. */
static bool byte_span(const View *v, int64_t *lo, int64_t *hi, bool *overflow) {
  int64_t es = (int64_t)tc_dtype_size(v->dtype), a = 0, b = 0;
  *overflow = false;
  for (int k = 0; k < v->rank; k++)
    if (v->shape[k] == 0)
      return false;
  for (int k = 0; k < v->rank; k++) {
    int64_t ext;
    if (!mul64(v->shape[k] - 1, v->stride[k], &ext) || !mul64(ext, es, &ext) ||
        !add64(ext < 0 ? a : b, ext, ext < 0 ? &a : &b)) {
      *overflow = true;
      return false;
    }
  }
  *lo = a;
  *hi = b + es;
  return true;
}

static bool spans_overlap(const View *x, const View *y) {
  int64_t xl, xh, yl, yh;
  bool of1, of2;
  bool ex = byte_span(x, &xl, &xh, &of1), ey = byte_span(y, &yl, &yh, &of2);
  if (!ex || !ey)
    return of1 || of2; /* an overflowing span is assumed to overlap */
  uintptr_t xa = (uintptr_t)x->data, ya = (uintptr_t)y->data;
  /* [xa+xl, xa+xh) and [ya+yl, ya+yh) intersect; compare in unsigned space */
  return ya + (uintptr_t)yl < xa + (uintptr_t)xh && xa + (uintptr_t)xl < ya + (uintptr_t)yh;
}

/* Two distinct indices of the view never reach the same element: sorting
 * the dims of extent > 1 by |stride|, each stride must exceed the span of
 * the smaller ones (conservative). */
static bool self_overlapping(const View *v) {
  int order[TC_MAX_RANK], n = 0;
  for (int k = 0; k < v->rank; k++) {
    if (v->shape[k] == 0)
      return false;
    if (v->shape[k] > 1)
      order[n++] = k;
  }
  for (int i = 1; i < n; i++) /* insertion sort by |stride| */
    for (int j = i; j > 0 && abs64(v->stride[order[j]]) < abs64(v->stride[order[j - 1]]); j--) {
      int tmp = order[j];
      order[j] = order[j - 1];
      order[j - 1] = tmp;
    }
  int64_t span = 1; /* offsets reached by the smaller dims: [0, span) */
  for (int i = 0; i < n; i++) {
    int64_t s = abs64(v->stride[order[i]]), ext;
    if (s < span || !mul64(s, v->shape[order[i]] - 1, &ext) || !add64(span, ext, &span))
      return true;
  }
  return false;
}

/* One call's binding; memory we allocated is in `owned`. */
typedef struct Run {
  Binding b;
  tc_shape *shapes; /* per tensor id */
  void **owned;     /* per tensor id */
} Run;

static void run_free(Run *r) {
  if (r->owned && r->b.def)
    for (int i = 0; i < r->b.def->ntensors; i++)
      free(r->owned[i]);
  free(r->owned);
  free(r->shapes);
  free(r->b.sizes);
  free(r->b.views);
  memset(r, 0, sizeof *r);
}

/* Binds the inputs and infers every other shape. */
static tc_status bind_inputs(Def *d, DLTensor *const *inputs, int n_inputs, int n_outputs,
                             Run *r, tc_error *err) {
  memset(r, 0, sizeof *r);
  if (n_inputs != d->ninputs || n_outputs != d->noutputs) {
    arg_error(err, "%s takes %d input%s and %d output%s, got %d and %d", d->name, d->ninputs,
              d->ninputs == 1 ? "" : "s", d->noutputs, d->noutputs == 1 ? "" : "s", n_inputs,
              n_outputs);
    return TC_ERR_ARGUMENT;
  }
  if (n_inputs && !inputs) {
    arg_error(err, "%s: the inputs array is NULL", d->name);
    return TC_ERR_ARGUMENT;
  }
  r->b.def = d;
  r->b.sizes = calloc((size_t)d->nsyms + 1, sizeof *r->b.sizes);
  r->b.views = calloc((size_t)d->ntensors + 1, sizeof *r->b.views);
  r->shapes = calloc((size_t)d->ntensors + 1, sizeof *r->shapes);
  r->owned = calloc((size_t)d->ntensors + 1, sizeof *r->owned);
  if (!r->b.sizes || !r->b.views || !r->shapes || !r->owned) {
    error_set(err, TC_ERR_NOMEM, NULL, (Loc){0, 0}, "out of memory");
    return TC_ERR_NOMEM;
  }
  for (int i = 0; i < d->ninputs; i++) {
    View *v = &r->b.views[i];
    tc_status st = check_tensor(d, d->tensors[i], inputs[i], v, err);
    if (st)
      return st;
    r->shapes[i].rank = v->rank;
    memcpy(r->shapes[i].dims, v->shape, sizeof v->shape);
  }
  tc_status st = bind_sizes(d, r->shapes, r->b.sizes, err);
  return st ? st : infer_sizes(d, r->b.sizes, r->shapes, err);
}

/* Checks the caller's outputs against the inferred shapes and for aliasing. */
static tc_status bind_outputs(Def *d, DLTensor *const *outputs, Run *r, tc_error *err) {
  if (d->noutputs && !outputs) {
    arg_error(err, "%s: the outputs array is NULL", d->name);
    return TC_ERR_ARGUMENT;
  }
  for (int j = 0; j < d->noutputs; j++) {
    int id = d->ninputs + j;
    const Tensor *t = d->tensors[id];
    View *v = &r->b.views[id];
    tc_status st = check_tensor(d, t, outputs[j], v, err);
    if (st)
      return st;
    for (int k = 0; k < t->rank; k++) {
      if (v->shape[k] != r->shapes[id].dims[k]) {
        arg_error(err, "%s: output %s has size %lld in dim %d, expected %lld (inferred)",
                  d->name, t->name, (long long)v->shape[k], k,
                  (long long)r->shapes[id].dims[k]);
        return TC_ERR_ARGUMENT;
      }
    }
    if (self_overlapping(v)) {
      arg_error(err, "%s: output %s has overlapping elements (its strides make two indices "
                "share memory)", d->name, t->name);
      return TC_ERR_ARGUMENT;
    }
    for (int i = 0; i < id; i++) {
      if (spans_overlap(v, &r->b.views[i])) {
        arg_error(err, "%s: output %s overlaps %s %s in memory", d->name, t->name,
                  i < d->ninputs ? "input" : "output", d->tensors[i]->name);
        return TC_ERR_ARGUMENT;
      }
    }
  }
  return TC_OK;
}

/* Allocates the temporaries, compact and zeroed: every one (`used` NULL,
 * the interpreter), or those a compiled kernel reads or writes (`used[id]`):
 * a temporary that inlining or folding took out of the kernel keeps its
 * view, whose shape the kernel may read, but gets no memory. */
static tc_status alloc_temps(Def *d, Run *r, const bool *used, tc_error *err) {
  for (int id = d->ninputs + d->noutputs; id < d->ntensors; id++) {
    if ((used && !used[id]) || r->owned[id]) /* owned: by a first kernel that stopped */
      continue;
    const Tensor *t = d->tensors[id];
    View *v = &r->b.views[id];
    int64_t n = num_elements(&r->shapes[id]), bytes;
    if (n < 0 || !mul64(n, (int64_t)tc_dtype_size(t->dtype), &bytes) ||
        (uint64_t)bytes > SIZE_MAX) {
      arg_error(err, "%s: temporary %s would be too large", d->name, t->name);
      return TC_ERR_ARGUMENT;
    }
    r->owned[id] = calloc(1, bytes ? (size_t)bytes : 1);
    if (!r->owned[id]) {
      error_set(err, TC_ERR_NOMEM, NULL, (Loc){0, 0},
                "out of memory allocating temporary %s (%lld bytes)", t->name, (long long)bytes);
      return TC_ERR_NOMEM;
    }
    v->data = r->owned[id];
    v->dtype = t->dtype;
    v->rank = t->rank;
    int64_t stride = 1;
    for (int k = t->rank - 1; k >= 0; k--) {
      v->shape[k] = r->shapes[id].dims[k];
      v->stride[k] = stride;
      stride *= v->shape[k] ? v->shape[k] : 1;
    }
  }
  return TC_OK;
}

/* Marks in used[slot] the tensors whose memory the kernel's IR touches. */
static void mark_expr(const IRExpr *e, bool *used) {
  if (!e)
    return;
  if (e->kind == IR_LOAD && e->buf && !e->buf->local && e->buf->slot >= 0)
    used[e->buf->slot] = true;
  for (int i = 0; i < e->nidx; i++)
    mark_expr(e->idx[i], used);
  for (int i = 0; i < e->nargs; i++)
    mark_expr(e->args[i], used);
  mark_expr(e->a, used);
  mark_expr(e->b, used);
  mark_expr(e->c, used);
}

static void mark_stmt(const IRStmt *s, bool *used) {
  if (!s)
    return;
  if (s->kind == S_STORE && s->buf && !s->buf->local && s->buf->slot >= 0)
    used[s->buf->slot] = true;
  mark_expr(s->lo, used);
  mark_expr(s->extent, used);
  mark_expr(s->value, used);
  mark_expr(s->cond, used);
  for (int i = 0; i < s->nidx; i++)
    mark_expr(s->idx[i], used);
  for (int i = 0; i < s->n; i++)
    mark_stmt(s->stmts[i], used);
  mark_stmt(s->body, used);
  mark_stmt(s->then, used);
  mark_stmt(s->els, used);
}

/* ================================================================
 * kernels
 * ================================================================ */

typedef struct LowerJob {
  Def *def;
  Buf *dump;   /* IR after each pass, or NULL */
  Buf *source; /* generated C (CUDA C with `cuda`), or NULL */
  IRFunc *fn;
  bool *used;  /* C target: [nbufs], the buffers the kernel touches */
  bool cuda;   /* the CUDA pass list and emitter */
  bool generic; /* C: the kernel for any strides (pipeline_run), else pipeline_run_unit */
  GpuPlan *plan;
} LowerJob;

static void lower_step(Ctx *c, void *st) {
  LowerJob *j = st;
  j->fn = j->cuda      ? pipeline_run_gpu(c, j->def, j->dump)
          : j->generic ? pipeline_run(c, j->def, j->dump)
                       : pipeline_run_unit(c, j->def, j->dump);
  if (!j->cuda) {
    j->used = arena_alloc(c->arena, (size_t)j->fn->nbufs + 1);
    mark_stmt(j->fn->body, j->used);
  }
  if (j->source && j->cuda)
    j->plan = emitcuda_func(c, j->fn, j->source);
  else if (j->source)
    emitc_func(c, j->fn, j->source);
}

/* Lowers (and emits) the entry's Def into arena `a`.  Caller holds k->mu:
 * lowering may annotate the Def. */
static tc_status lower_entry(tc_program *p, Def *d, Arena *a, LowerJob *j, tc_error *err) {
  j->def = d;
  tc_status st = protect(a, &p->file, err, lower_step, j);
  if (st == TC_OK && ((j->source && j->source->oom) || (j->dump && j->dump->oom))) {
    error_set(err, TC_ERR_NOMEM, NULL, (Loc){0, 0}, "out of memory");
    st = TC_ERR_NOMEM;
  }
  return st;
}

/* ---- kernel metadata: from the IRFunc, as text, back from text ---- */

static KSite site_of(const FailSite *f) {
  return (KSite){f->kind, f->loc, f->tensor ? f->tensor->name : NULL, f->dim, f->write};
}

/* The metadata of a lowered C kernel, in arena `a`. */
static void meta_from_fn(Arena *a, const IRFunc *fn, const bool *used, KMeta *m) {
  size_t n = (size_t)fn->nbufs + 1;
  *m = (KMeta){fn->nbufs, fn->nsizes, fn->ndims, arena_alloc(a, n * sizeof(int)),
               arena_alloc(a, n * sizeof(int)), arena_alloc(a, n),
               arena_alloc(a, ((size_t)fn->sites.len + 1) * sizeof(KSite)), fn->sites.len};
  for (int i = 0; i < fn->nbufs; i++) {
    const Buffer *b = fn->bufs[i];
    m->rank[i] = b ? b->rank : -1;
    m->dim_offset[i] = b ? b->dim_offset : 0;
    m->used[i] = used[i];
  }
  for (int i = 0; i < fn->sites.len; i++)
    m->sites[i] = site_of(&fn->sites.data[i]);
}

/* The metadata as text (the program-level cache's payload):
 *   tcmeta 1 NBUFS NSIZES NDIMS NSITES
 *   b RANK DIM_OFFSET USED                       one per buffer
 *   s KIND LINE COL DIM WRITE LEN:NAME           one per site (LEN -1: none) */
static void meta_write(Buf *b, const KMeta *m) {
  buf_printf(b, "tcmeta 1 %d %d %d %d\n", m->nbufs, m->nsizes, m->ndims, m->nsites);
  for (int i = 0; i < m->nbufs; i++)
    buf_printf(b, "b %d %d %d\n", m->rank[i], m->dim_offset[i], (int)m->used[i]);
  for (int i = 0; i < m->nsites; i++) {
    const KSite *t = &m->sites[i];
    buf_printf(b, "s %d %d %d %d %d %d:%s\n", (int)t->kind, t->loc.line, t->loc.col, t->dim,
               (int)t->write, t->tensor ? (int)strlen(t->tensor) : -1,
               t->tensor ? t->tensor : "");
  }
}

typedef struct Reader {
  const char *p, *end;
  bool ok;
} Reader;

static long read_int(Reader *r, long lo, long hi) {
  while (r->p < r->end && *r->p == ' ')
    r->p++;
  bool neg = r->p < r->end && *r->p == '-';
  r->p += neg;
  long v = 0;
  int digits = 0;
  while (r->p < r->end && *r->p >= '0' && *r->p <= '9' && digits < 12)
    v = v * 10 + (*r->p++ - '0'), digits++;
  v = neg ? -v : v;
  if (!digits || v < lo || v > hi)
    r->ok = false;
  return r->ok ? v : lo;
}

static void read_word(Reader *r, const char *w) {
  size_t n = strlen(w);
  while (r->p < r->end && (*r->p == ' ' || *r->p == '\n'))
    r->p++;
  if ((size_t)(r->end - r->p) < n || memcmp(r->p, w, n))
    r->ok = false;
  else
    r->p += n;
}

/* Parses metadata text for Def `d` into arena `a`; false when it is not
 * well formed or does not fit `d` (the caller lowers instead). */
static bool meta_read(Arena *a, const Def *d, const unsigned char *text, size_t n, KMeta *m) {
  Reader r = {(const char *)text, (const char *)text + n, true};
  read_word(&r, "tcmeta 1");
  int nbufs = (int)read_int(&r, 0, 1 << 20), nsizes = (int)read_int(&r, 0, 1 << 20);
  int ndims = (int)read_int(&r, 0, 1 << 24), nsites = (int)read_int(&r, 0, 1 << 24);
  if (!r.ok || nbufs != d->ntensors || nsizes != d->nsyms)
    return false;
  *m = (KMeta){nbufs, nsizes, ndims, arena_alloc(a, ((size_t)nbufs + 1) * sizeof(int)),
               arena_alloc(a, ((size_t)nbufs + 1) * sizeof(int)), arena_alloc(a, (size_t)nbufs + 1),
               arena_alloc(a, ((size_t)nsites + 1) * sizeof(KSite)), nsites};
  for (int i = 0; i < nbufs && r.ok; i++) {
    read_word(&r, "b");
    m->rank[i] = (int)read_int(&r, -1, TC_MAX_RANK);
    m->dim_offset[i] = (int)read_int(&r, 0, ndims);
    m->used[i] = read_int(&r, 0, 1);
    r.ok &= m->rank[i] < 0 || (m->rank[i] == d->tensors[i]->rank &&
                               m->dim_offset[i] + m->rank[i] <= ndims);
  }
  for (int i = 0; i < nsites && r.ok; i++) {
    KSite *t = &m->sites[i];
    read_word(&r, "s");
    t->kind = (FailKind)read_int(&r, FAIL_INDEX, FAIL_LAYOUT);
    t->loc.line = (int)read_int(&r, 0, 1L << 30);
    t->loc.col = (int)read_int(&r, 0, 1L << 30);
    t->dim = (int)read_int(&r, -1, TC_MAX_RANK);
    t->write = read_int(&r, 0, 1);
    long len = read_int(&r, -1, 1 << 16);
    read_word(&r, ":");
    if (r.ok && len >= 0 && r.end - r.p >= len) {
      char *name = arena_alloc(a, (size_t)len + 1);
      memcpy(name, r.p, (size_t)len);
      name[len] = '\0';
      t->tensor = name;
      r.p += len;
    } else {
      r.ok &= len < 0;
    }
  }
  while (r.p < r.end && *r.p == '\n')
    r.p++;
  return r.ok && r.p == r.end;
}

typedef struct MetaJob {
  const IRFunc *fn;        /* copy: from this lowered function */
  const bool *used;
  const Def *d;            /* read: for this Def, from this text */
  const unsigned char *text;
  size_t n;
  KMeta *m;
  bool ok;
} MetaJob;

static void meta_copy_step(Ctx *c, void *st) {
  MetaJob *j = st;
  meta_from_fn(c->arena, j->fn, j->used, j->m);
}

static void meta_read_step(Ctx *c, void *st) {
  MetaJob *j = st;
  j->ok = meta_read(c->arena, j->d, j->text, j->n, j->m);
}

/* ---- the program-level cache key ---- */

/* Everything the C kernel of `entry` depends on besides the compiler
 * identity: tensorc's own code, the target and its options, the entry, the
 * constants, the whole program text (its schedules included).  False when
 * tensorc's code cannot be identified: no program-level caching then. */
static bool program_key_text(tc_program *p, int entry, bool generic, Buf *b) {
  const char *self = p->ctx->self_identity;
  if (!self)
    return false;
  const Def *d = p->prog->defs[entry];
  buf_printf(b, "%starget: c vector %d %s\nentry: %d %s\n%s", self, tile_host_vector_bytes(),
             generic ? "generic" : "unit", entry, d->name, p->consts_text);
  buf_printf(b, "text: %zu\n", p->file.len);
  buf_putn(b, p->file.text, p->file.len);
  return !b->oom;
}

/* Looks the entry up by its program-level key; true with the kernel and its
 * metadata in v (arena `a`) on a hit. */
static bool prepare_cached(tc_program *p, int entry, const char *id, const Buf *key,
                           Variant *v, Arena *a) {
  unsigned char *meta = NULL;
  size_t n = 0;
  tc_kernel_fn fn = NULL;
  int how = 0;
  bool hit = cache_find_program(p->ctx->cache, id, key->s, key->len, &fn, &meta, &n, &how,
                                v->path, sizeof v->path);
  MetaJob mj = {.d = p->prog->defs[entry], .text = meta, .n = n, .m = &v->meta};
  tc_error ignored;
  if (hit && protect(a, &p->file, &ignored, meta_read_step, &mj) == TC_OK && mj.ok) {
    v->run = fn;
    v->source = how;
  } else {
    hit = false;
  }
  free(meta);
  return hit;
}

/* Lowers and emits the entry, then finds or builds its kernel by the C's
 * key; with a program-level key, records it for the next time.  The
 * metadata goes to arena `a`.  Caller holds k->mu. */
static tc_status prepare_lowered(tc_program *p, int entry, const char *id, const Buf *key,
                                 bool generic, Variant *v, Arena *a, tc_error *err) {
  tc_context *ctx = p->ctx;
  Arena la = {0}; /* the IR: freed once its metadata is copied out */
  Buf src = {0}, dump = {0};
  LowerJob j = {.source = &src, .dump = ctx->debug_passes ? &dump : NULL, .generic = generic};
  tc_status st = lower_entry(p, p->prog->defs[entry], &la, &j, err);
  if (dump.s)
    fprintf(stderr, "%s", dump.s);
  buf_free(&dump);
  if (st == TC_OK)
    st = cache_get(ctx->cache, &ctx->jit, id, src.s, src.len, &v->run, &v->source, v->path,
                   sizeof v->path, err);
  MetaJob mj = {.fn = j.fn, .used = j.used, .m = &v->meta};
  if (st == TC_OK)
    st = protect(a, &p->file, err, meta_copy_step, &mj);
  if (st == TC_OK && key) {
    Buf text = {0};
    meta_write(&text, &v->meta);
    if (!text.oom)
      cache_put_program(ctx->cache, id, key->s, key->len, id, src.s, src.len,
                        (const unsigned char *)text.s, text.len);
    buf_free(&text);
  }
  buf_free(&src);
  arena_free(&la);
  return st;
}

/* Makes one of the entry's kernels ready.  Caller holds k->mu. */
static tc_status prepare_locked(tc_program *p, int entry, bool generic, tc_error *err) {
  Kernel *k = &p->kernels[entry];
  Variant *v = generic ? &k->generic : &k->unit;
  tc_context *ctx = p->ctx;
  if (v->ready) {
    v->source = 1;
    v->lowered = false;
    return TC_OK;
  }
  const char *id = context_identity(ctx);
  if (!id) {
    error_set(err, TC_ERR_NOMEM, NULL, (Loc){0, 0}, "out of memory");
    return TC_ERR_NOMEM;
  }
  Arena a = {0};
  Buf key = {0};
  bool keyed = !ctx->debug_passes && program_key_text(p, entry, generic, &key);
  tc_status st = TC_OK;
  v->lowered = !keyed || !prepare_cached(p, entry, id, &key, v, &a);
  if (v->lowered) {
    arena_free(&a);
    a = (Arena){0};
    st = prepare_lowered(p, entry, id, keyed ? &key : NULL, generic, v, &a, err);
  }
  buf_free(&key);
  if (st != TC_OK) {
    arena_free(&a);
    return st;
  }
  if (ctx->verbose) {
    static const char *const how[] = {"compiled", "from the memory cache", "from the disk cache"};
    fprintf(stderr, "tensorc: %s: kernel%s %s: %s\n", p->prog->defs[entry]->name,
            generic ? " for any strides" : "",
            how[v->source >= 0 && v->source <= 2 ? v->source : 0], v->path);
  }
  v->arena = a;
  v->ready = true;
  return TC_OK;
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

tc_status tc_prepare(tc_program *p, int entry, tc_prepare_info *info, tc_error *err) {
  error_clear(err);
  double t0 = now_seconds();
  if (!get_def(p, entry, err))
    return TC_ERR_ARGUMENT;
  Kernel *k = &p->kernels[entry];
  pthread_mutex_lock(&k->mu);
  tc_status st = prepare_locked(p, entry, false, err);
  if (info) {
    memset(info, 0, sizeof *info);
    info->source = k->unit.source;
    info->lowered = k->unit.lowered;
    snprintf(info->path, sizeof info->path, "%s", k->unit.path);
  }
  pthread_mutex_unlock(&k->mu);
  if (info)
    info->seconds = now_seconds() - t0;
  return st;
}

/* The run-time services a kernel calls: the pool, and failure reports. */
typedef struct RunRT {
  tc_krt rt; /* first: the kernel sees a tc_krt * */
  Pool *pool;
  atomic_int claimed;
  int site;
  int64_t value, bound;
} RunRT;

static void rt_parallel_for(tc_krt *rt, tc_task_fn task, const void *args, int64_t lo,
                            int64_t hi) {
  pool_parallel_for(((RunRT *)rt)->pool, task, args, lo, hi);
}

static void rt_fail(tc_krt *rt, int site, int64_t value, int64_t bound) {
  RunRT *r = (RunRT *)rt;
  int expected = 0;
  if (atomic_compare_exchange_strong(&r->claimed, &expected, 1)) {
    r->site = site;
    r->value = value;
    r->bound = bound;
  }
  rt->failed = 1;
}

/* Turns the kernel's first failure into a located error; `sites` are the
 * kernel's (NULL: no valid site). */
static tc_status report_failure(tc_program *p, const char *def, const KSite *sites,
                                int nsites, const RunRT *r, tc_error *err) {
  if (!atomic_load(&r->claimed) || r->site < 0 || r->site >= nsites || !sites) {
    error_set(err, TC_ERR_INTERNAL, NULL, (Loc){0, 0},
              "internal error: %s: the kernel failed without a valid failure site (%d)",
              def, atomic_load(&r->claimed) ? r->site : -1);
    return TC_ERR_INTERNAL;
  }
  const KSite *s = &sites[r->site];
  const char *name = s->tensor ? s->tensor : "?";
  long long value = (long long)r->value, bound = (long long)r->bound;
  switch (s->kind) {
  case FAIL_INDEX:
    error_set(err, TC_ERR_RUNTIME, &p->file, s->loc,
              "index %lld is out of range for %s dim %d (size %lld)", value, name, s->dim, bound);
    break;
  case FAIL_RANGE:
    error_set(err, TC_ERR_RUNTIME, &p->file, s->loc,
              "with these sizes the %s of %s dim %d reaches index %lld, but its size is %lld "
              "(check the where clause)",
              s->write ? "write" : "read", name, s->dim, value, bound);
    break;
  case FAIL_BC_EMPTY:
    error_set(err, TC_ERR_RUNTIME, &p->file, s->loc,
              "%s has a boundary condition on dim %d, which has extent 0", name, s->dim);
    break;
  case FAIL_NOMEM:
    error_set(err, TC_ERR_NOMEM, &p->file, s->loc,
              "out of memory: the kernel's scratch buffer of %lld bytes", value);
    return TC_ERR_NOMEM;
  case FAIL_LAYOUT: /* call_kernel's business: never reported */
    error_set(err, TC_ERR_INTERNAL, NULL, (Loc){0, 0},
              "internal error: %s: a layout check reported as a failure", def);
    return TC_ERR_INTERNAL;
  }
  return TC_ERR_RUNTIME;
}

/* Calls one compiled kernel on a complete binding.  *layout: it stopped at
 * its FAIL_LAYOUT check, before writing anything. */
static tc_status call_kernel(tc_program *p, Run *r, const KMeta *fn, tc_kernel_fn kernel,
                             bool *layout, tc_error *err) {
  const Def *d = r->b.def;
  *layout = false;
  if (fn->nbufs != d->ntensors || fn->nsizes != d->nsyms) {
    error_set(err, TC_ERR_INTERNAL, NULL, (Loc){0, 0},
              "internal error: %s: the kernel's buffers do not match the definition", d->name);
    return TC_ERR_INTERNAL;
  }
  void **data = calloc((size_t)d->ntensors + 1, sizeof *data);
  int64_t *dims = calloc(2 * (size_t)fn->ndims + 1, sizeof *dims);
  tc_status st = data && dims ? alloc_temps(r->b.def, r, fn->used, err) : TC_ERR_NOMEM;
  if (st) {
    free(data);
    free(dims);
    if (st == TC_ERR_NOMEM && (!data || !dims))
      error_set(err, TC_ERR_NOMEM, NULL, (Loc){0, 0}, "out of memory");
    return st;
  }
  int64_t *shape = dims, *stride = dims + fn->ndims;
  for (int i = 0; i < d->ntensors; i++) {
    const View *v = &r->b.views[i];
    int off = fn->dim_offset[i];
    data[i] = v->data;
    for (int k2 = 0; k2 < fn->rank[i]; k2++) {
      shape[off + k2] = v->shape[k2];
      stride[off + k2] = v->stride[k2];
    }
  }
  RunRT rt = {{rt_parallel_for, rt_fail, 0}, context_pool(p->ctx), 0, 0, 0, 0};
  tc_kargs args = {data, shape, stride, r->b.sizes, &rt.rt};
  int rc = kernel(&args);
  if (rc || rt.rt.failed) {
    *layout = atomic_load(&rt.claimed) && rt.site >= 0 && rt.site < fn->nsites &&
              fn->sites[rt.site].kind == FAIL_LAYOUT;
    st = *layout ? TC_OK : report_failure(p, d->name, fn->sites, fn->nsites, &rt, err);
  }
  free(data);
  free(dims);
  return st;
}

/* Runs the entry's unit-stride kernel, or when the layout is not the one it
 * assumes, its generic kernel (prepared on first need). */
static tc_status run_kernel(tc_program *p, int entry, Run *r, tc_error *err) {
  Kernel *k = &p->kernels[entry];
  for (int generic = p->ctx->debug_generic; generic < 2; generic++) {
    pthread_mutex_lock(&k->mu);
    tc_status st = prepare_locked(p, entry, generic, err);
    const Variant *v = generic ? &k->generic : &k->unit; /* fixed once ready */
    pthread_mutex_unlock(&k->mu);
    if (st)
      return st;
    bool layout;
    st = call_kernel(p, r, &v->meta, v->run, &layout, err);
    if (!layout)
      return st;
  }
  error_set(err, TC_ERR_INTERNAL, NULL, (Loc){0, 0},
            "internal error: %s: the kernel for any strides checked the layout",
            r->b.def->name);
  return TC_ERR_INTERNAL;
}

/* ================================================================
 * CUDA runs (cuda.c does the device's part)
 * ================================================================ */

void tc_run_options_init(tc_run_options *o) {
  memset(o, 0, sizeof *o);
  o->target = TC_TARGET_C;
}

static const char *param_name(const Def *d, int i, int n_inputs) {
  int id = i < n_inputs ? i : d->ninputs + (i - n_inputs);
  bool ok = i < n_inputs ? i < d->ninputs : i - n_inputs < d->noutputs;
  return ok ? d->tensors[id]->name : "?";
}

/* The one device all the run's tensors are on (CPU, or one CUDA device). */
static tc_status common_device(const Def *d, DLTensor *const *inputs, int n_inputs,
                               DLTensor *const *outputs, int n_outputs, DLDevice *dev,
                               tc_error *err) {
  int first = -1;
  *dev = (DLDevice){kDLCPU, 0};
  for (int i = 0; i < n_inputs + n_outputs; i++) {
    DLTensor *const *arr = i < n_inputs ? inputs : outputs;
    const DLTensor *t = arr ? arr[i < n_inputs ? i : i - n_inputs] : NULL;
    if (!t)
      continue; /* binding reports it */
    DLDevice v = t->device;
    if (v.device_type == kDLCPU)
      v.device_id = 0;
    if (first < 0) {
      *dev = v;
      first = i;
    } else if (v.device_type != dev->device_type || v.device_id != dev->device_id) {
      arg_error(err, "%s: %s is on %s:%d but %s is on %s:%d (the tensors of a run must be on "
                "one device)", d->name, param_name(d, i, n_inputs),
                device_name(v.device_type), (int)v.device_id, param_name(d, first, n_inputs),
                device_name(dev->device_type), (int)dev->device_id);
      return TC_ERR_ARGUMENT;
    }
  }
  return TC_OK;
}

/* CUDA runs give temporaries device memory: here only their views. */
static tc_status temp_views(Def *d, Run *r, tc_error *err) {
  for (int id = d->ninputs + d->noutputs; id < d->ntensors; id++) {
    const Tensor *t = d->tensors[id];
    View *v = &r->b.views[id];
    int64_t n = num_elements(&r->shapes[id]), bytes;
    if (n < 0 || !mul64(n, (int64_t)tc_dtype_size(t->dtype), &bytes)) {
      arg_error(err, "%s: temporary %s would be too large", d->name, t->name);
      return TC_ERR_ARGUMENT;
    }
    v->data = NULL;
    v->dtype = t->dtype;
    v->rank = t->rank;
    int64_t stride = 1;
    for (int k = t->rank - 1; k >= 0; k--) {
      v->shape[k] = r->shapes[id].dims[k];
      v->stride[k] = stride;
      stride *= v->shape[k] ? v->shape[k] : 1;
    }
  }
  return TC_OK;
}

/* Lowers the entry for CUDA (once) and loads its module on `device`.
 * Caller holds k->mu. */
static tc_status prepare_cuda_locked(tc_program *p, int entry, int device, CudaModule **m,
                                     int *how, tc_error *err) {
  Kernel *k = &p->kernels[entry];
  tc_context *ctx = p->ctx;
  if (!k->cuda) {
    Arena a = {0};
    Buf src = {0}, dump = {0};
    LowerJob j = {.source = &src, .dump = ctx->debug_passes ? &dump : NULL, .cuda = true};
    tc_status st = lower_entry(p, p->prog->defs[entry], &a, &j, err);
    if (dump.s)
      fprintf(stderr, "%s", dump.s);
    buf_free(&dump);
    if (!st && !(k->cuda = cuda_entry_new(&a, j.fn, j.plan, src.s, src.len))) {
      error_set(err, TC_ERR_NOMEM, NULL, (Loc){0, 0}, "out of memory");
      st = TC_ERR_NOMEM;
    }
    buf_free(&src);
    arena_free(&a);
    if (st)
      return st;
  }
  tc_status st = cuda_entry_module(ctx->cuda, ctx->cache, k->cuda, device, m, how, err);
  if (!st && ctx->verbose && *how != 1) {
    static const char *const text[] = {"compiled by NVRTC", "", "from the disk cache"};
    fprintf(stderr, "tensorc: %s: CUDA kernels for device %d %s\n", p->prog->defs[entry]->name,
            device, text[*how]);
  }
  return st;
}

static tc_status run_cuda(tc_program *p, int entry, Run *r, void *stream, int device,
                          bool staged, tc_error *err) {
  Kernel *k = &p->kernels[entry];
  CudaModule *m = NULL;
  int how;
  pthread_mutex_lock(&k->mu);
  tc_status st = prepare_cuda_locked(p, entry, device, &m, &how, err);
  CudaEntry *e = k->cuda;
  pthread_mutex_unlock(&k->mu);
  if (st)
    return st;
  IRFunc *fn = cuda_entry_fn(e);
  CudaFailure fl;
  st = cuda_run(p->ctx->cuda, m, fn, cuda_entry_plan(e), &r->b, device, stream, staged, &fl, err);
  if (st || !fl.failed)
    return st;
  RunRT rt = {{NULL, NULL, 0}, NULL, 0, fl.site, fl.value, fl.bound};
  atomic_store(&rt.claimed, 1);
  KSite *sites = calloc((size_t)fn->sites.len + 1, sizeof *sites);
  for (int i = 0; sites && i < fn->sites.len; i++)
    sites[i] = site_of(&fn->sites.data[i]);
  st = report_failure(p, fn->def->name, sites, fn->sites.len, &rt, err);
  free(sites);
  return st;
}

/* Binds everything for a run on caller-provided outputs; with `views_only`
 * (CUDA, compiled kernels) the temporaries get no host memory here. */
static tc_status bind_all(tc_program *p, int entry, DLTensor *const *inputs, int n_inputs,
                          DLTensor *const *outputs, int n_outputs, Run *r, bool views_only,
                          tc_error *err) {
  Def *d = get_def(p, entry, err);
  if (!d)
    return TC_ERR_ARGUMENT;
  tc_status st = bind_inputs(d, inputs, n_inputs, n_outputs, r, err);
  if (!st)
    st = bind_outputs(d, outputs, r, err);
  if (!st)
    st = views_only ? temp_views(d, r, err) : alloc_temps(d, r, NULL, err);
  return st;
}

tc_status tc_run_ex(tc_program *p, int entry, DLTensor *const *inputs, int n_inputs,
                    DLTensor *const *outputs, int n_outputs, const tc_run_options *opts,
                    tc_error *err) {
  error_clear(err);
  tc_run_options o;
  tc_run_options_init(&o);
  if (opts)
    o = *opts;
  if (o.target != TC_TARGET_C && o.target != TC_TARGET_INTERP && o.target != TC_TARGET_CUDA) {
    arg_error(err, "unknown target %d", (int)o.target);
    return TC_ERR_ARGUMENT;
  }
  Def *d = get_def(p, entry, err);
  if (!d)
    return TC_ERR_ARGUMENT;
  DLDevice dev;
  tc_status st = common_device(d, inputs, n_inputs, outputs, n_outputs, &dev, err);
  if (st)
    return st;
  bool on_gpu = dev.device_type == kDLCUDA;
  if (on_gpu && o.target == TC_TARGET_INTERP) {
    error_set(err, TC_ERR_UNSUPPORTED, NULL, (Loc){0, 0},
              "%s: the interpreter runs on CPU tensors only (these are on cuda:%d)", d->name,
              (int)dev.device_id);
    return TC_ERR_UNSUPPORTED;
  }
  bool cuda = on_gpu || o.target == TC_TARGET_CUDA;
  Run r = {0};
  /* CUDA runs give temporaries device memory, compiled kernels allocate
   * those they use (run_kernel): both only need the views here. */
  st = bind_all(p, entry, inputs, n_inputs, outputs, n_outputs, &r,
                cuda || o.target == TC_TARGET_C, err);
  if (!st && cuda)
    st = run_cuda(p, entry, &r, o.stream, on_gpu ? dev.device_id : o.device, !on_gpu, err);
  else if (!st)
    st = o.target == TC_TARGET_C ? run_kernel(p, entry, &r, err)
                                 : interp_run(&p->file, &r.b, err);
  run_free(&r);
  return st;
}

tc_status tc_run(tc_program *p, int entry, DLTensor *const *inputs, int n_inputs,
                 DLTensor *const *outputs, int n_outputs, tc_target target, tc_error *err) {
  tc_run_options o;
  tc_run_options_init(&o);
  o.target = target;
  return tc_run_ex(p, entry, inputs, n_inputs, outputs, n_outputs, &o, err);
}

tc_status tc_prepare_ex(tc_program *p, int entry, const tc_run_options *opts,
                        tc_prepare_info *info, tc_error *err) {
  if (!opts || opts->target != TC_TARGET_CUDA)
    return tc_prepare(p, entry, info, err);
  error_clear(err);
  double t0 = now_seconds();
  if (!get_def(p, entry, err))
    return TC_ERR_ARGUMENT;
  Kernel *k = &p->kernels[entry];
  CudaModule *m;
  int how = 0;
  pthread_mutex_lock(&k->mu);
  bool fresh = !k->cuda;
  tc_status st = prepare_cuda_locked(p, entry, opts->device, &m, &how, err);
  pthread_mutex_unlock(&k->mu);
  if (info) {
    memset(info, 0, sizeof *info);
    info->source = how;
    info->lowered = fresh && st == TC_OK;
    snprintf(info->path, sizeof info->path, "%s", p->ctx->cache_dir ? p->ctx->cache_dir : "");
    info->seconds = now_seconds() - t0;
  }
  return st;
}

static void managed_deleter(DLManagedTensor *self) { free(self); }

/* One block: the DLManagedTensor, its shape and strides, then the data
 * (64-byte aligned). */
static DLManagedTensor *new_managed(tc_dtype t, const tc_shape *s) {
  size_t head = sizeof(DLManagedTensor) + 2 * (size_t)s->rank * sizeof(int64_t);
  head = (head + 63) & ~(size_t)63;
  int64_t n = num_elements(s), bytes;
  if (n < 0 || !mul64(n, (int64_t)tc_dtype_size(t), &bytes) ||
      (uint64_t)bytes > SIZE_MAX - head - 64)
    return NULL;
  size_t total = (head + (size_t)bytes + 63) & ~(size_t)63;
  DLManagedTensor *m = aligned_alloc(64, total);
  if (!m)
    return NULL;
  memset(m, 0, head);
  int64_t *shape = (int64_t *)(m + 1), *strides = shape + s->rank;
  int64_t stride = 1;
  for (int k = s->rank - 1; k >= 0; k--) {
    shape[k] = s->dims[k];
    strides[k] = stride;
    stride *= s->dims[k] ? s->dims[k] : 1;
  }
  m->dl_tensor.data = (char *)m + head;
  m->dl_tensor.device = (DLDevice){kDLCPU, 0};
  m->dl_tensor.ndim = s->rank;
  m->dl_tensor.dtype = tc_dtype_to_dl(t);
  m->dl_tensor.shape = shape;
  m->dl_tensor.strides = strides;
  m->dl_tensor.byte_offset = 0;
  m->deleter = managed_deleter;
  return m;
}

static void cuda_managed_deleter(DLManagedTensor *self) {
  cuda_managed_release(self->manager_ctx);
  free(self);
}

/* A compact output in CUDA device memory. */
static DLManagedTensor *new_managed_cuda(tc_context *ctx, tc_dtype t, const tc_shape *s,
                                         int device, tc_error *err) {
  int64_t n = num_elements(s), bytes;
  if (n < 0 || !mul64(n, (int64_t)tc_dtype_size(t), &bytes)) {
    error_set(err, TC_ERR_NOMEM, NULL, (Loc){0, 0}, "an output is too large");
    return NULL;
  }
  DLManagedTensor *m = calloc(1, sizeof *m + 2 * (size_t)(s->rank + 1) * sizeof(int64_t));
  if (!m) {
    error_set(err, TC_ERR_NOMEM, NULL, (Loc){0, 0}, "out of memory");
    return NULL;
  }
  void *ptr, *mgr;
  if (cuda_alloc_managed(ctx->cuda, device, (size_t)bytes, &ptr, &mgr, err)) {
    free(m);
    return NULL;
  }
  int64_t *shape = (int64_t *)(m + 1), *strides = shape + s->rank;
  int64_t stride = 1;
  for (int k = s->rank - 1; k >= 0; k--) {
    shape[k] = s->dims[k];
    strides[k] = stride;
    stride *= s->dims[k] ? s->dims[k] : 1;
  }
  m->dl_tensor = (DLTensor){ptr, {kDLCUDA, device}, s->rank, tc_dtype_to_dl(t), shape, strides, 0};
  m->manager_ctx = mgr;
  m->deleter = cuda_managed_deleter;
  return m;
}

tc_status tc_run_alloc(tc_program *p, int entry, DLTensor *const *inputs, int n_inputs,
                       DLManagedTensor **outputs, int n_outputs, tc_target target,
                       tc_error *err) {
  tc_run_options o;
  tc_run_options_init(&o);
  o.target = target;
  return tc_run_alloc_ex(p, entry, inputs, n_inputs, outputs, n_outputs, &o, err);
}

tc_status tc_run_alloc_ex(tc_program *p, int entry, DLTensor *const *inputs, int n_inputs,
                          DLManagedTensor **outputs, int n_outputs,
                          const tc_run_options *opts, tc_error *err) {
  error_clear(err);
  Def *d = get_def(p, entry, err);
  if (!d)
    return TC_ERR_ARGUMENT;
  if (n_outputs && !outputs) {
    arg_error(err, "%s: the outputs array is NULL", d->name);
    return TC_ERR_ARGUMENT;
  }
  Run r = {0};
  DLDevice dev;
  tc_status st = common_device(d, inputs, n_inputs, NULL, 0, &dev, err);
  if (!st)
    st = bind_inputs(d, inputs, n_inputs, n_outputs, &r, err);
  DLTensor **views = calloc((size_t)d->noutputs + 1, sizeof *views);
  for (int j = 0; j < n_outputs; j++)
    outputs[j] = NULL;
  if (!st && !views) {
    error_set(err, TC_ERR_NOMEM, NULL, (Loc){0, 0}, "out of memory");
    st = TC_ERR_NOMEM;
  }
  for (int j = 0; !st && j < d->noutputs; j++) {
    const Tensor *t = d->tensors[d->ninputs + j];
    if (dev.device_type == kDLCUDA) {
      outputs[j] = new_managed_cuda(p->ctx, t->dtype, &r.shapes[d->ninputs + j],
                                    dev.device_id, err);
      if (!outputs[j]) {
        st = err && err->code ? err->code : TC_ERR_NOMEM;
        break;
      }
      views[j] = &outputs[j]->dl_tensor;
      continue;
    }
    outputs[j] = new_managed(t->dtype, &r.shapes[d->ninputs + j]);
    if (!outputs[j]) {
      error_set(err, TC_ERR_NOMEM, NULL, (Loc){0, 0}, "out of memory allocating output %s",
                t->name);
      st = TC_ERR_NOMEM;
    } else {
      views[j] = &outputs[j]->dl_tensor;
    }
  }
  run_free(&r);
  if (!st)
    st = tc_run_ex(p, entry, inputs, n_inputs, views, n_outputs, opts, err);
  free(views);
  if (st) {
    for (int j = 0; j < n_outputs; j++) {
      if (outputs[j])
        outputs[j]->deleter(outputs[j]);
      outputs[j] = NULL;
    }
  }
  return st;
}

/* ================================================================
 * inspection
 * ================================================================ */

tc_status tc_emit(tc_program *p, int entry, tc_target target, char **out, tc_error *err) {
  error_clear(err);
  if (out)
    *out = NULL;
  Def *d = get_def(p, entry, err);
  if (!d)
    return TC_ERR_ARGUMENT;
  if (target != TC_TARGET_C && target != TC_TARGET_CUDA) {
    error_set(err, TC_ERR_UNSUPPORTED, NULL, (Loc){0, 0},
              "target %d generates no source (the C and CUDA targets do)", (int)target);
    return TC_ERR_UNSUPPORTED;
  }
  Arena a = {0};
  Buf src = {0};
  LowerJob j = {.source = &src, .cuda = target == TC_TARGET_CUDA};
  pthread_mutex_lock(&p->kernels[entry].mu);
  tc_status st = lower_entry(p, d, &a, &j, err);
  pthread_mutex_unlock(&p->kernels[entry].mu);
  arena_free(&a);
  if (st == TC_OK && out)
    *out = buf_detach(&src);
  buf_free(&src);
  return st;
}

tc_status tc_dump_passes(tc_program *p, int entry, char **out, tc_error *err) {
  error_clear(err);
  if (out)
    *out = NULL;
  Def *d = get_def(p, entry, err);
  if (!d)
    return TC_ERR_ARGUMENT;
  Arena a = {0};
  Buf dump = {0};
  LowerJob j = {.dump = &dump};
  pthread_mutex_lock(&p->kernels[entry].mu);
  tc_status st = lower_entry(p, d, &a, &j, err);
  pthread_mutex_unlock(&p->kernels[entry].mu);
  arena_free(&a);
  if (st == TC_OK && out)
    *out = buf_detach(&dump);
  buf_free(&dump);
  return st;
}

/* ================================================================
 * gradients
 * ================================================================ */

typedef struct GradJob {
  Def *def;
  const bool *wrt;
  Buf *out;
} GradJob;

static void grad_step(Ctx *c, void *st) {
  GradJob *j = st;
  grad_def(c, j->def, j->wrt, j->out);
}

/* wrt (NULL: every float input) as flags; false with err set on misuse. */
static bool gradient_flags(const Def *d, const int *wrt, bool *flags, tc_error *err) {
  int n = 0;
  for (int i = 0; i < d->ninputs; i++) {
    const Tensor *t = d->tensors[i];
    flags[i] = wrt ? wrt[i] != 0 : dtype_is_float(t->dtype);
    if (flags[i] && !dtype_is_float(t->dtype)) {
      arg_error(err, "%s: input %s is %s: only floating-point inputs have gradients", d->name,
                t->name, tc_dtype_name(t->dtype));
      return false;
    }
    n += flags[i];
  }
  if (!n)
    arg_error(err, "%s: no input is selected for a gradient%s", d->name,
              wrt ? "" : " (it has no floating-point input)");
  return n > 0;
}

tc_status tc_gradient(tc_program *p, int entry, const int *wrt, char **source_out,
                      tc_error *err) {
  error_clear(err);
  if (source_out)
    *source_out = NULL;
  Def *d = get_def(p, entry, err);
  if (!d)
    return TC_ERR_ARGUMENT;
  if (!source_out) {
    arg_error(err, "tc_gradient: NULL source_out");
    return TC_ERR_ARGUMENT;
  }
  bool *flags = calloc((size_t)d->ninputs + 1, sizeof *flags);
  if (!flags) {
    error_set(err, TC_ERR_NOMEM, NULL, (Loc){0, 0}, "out of memory");
    return TC_ERR_NOMEM;
  }
  tc_status st = TC_ERR_ARGUMENT;
  Arena a = {0};
  Buf src = {0};
  if (gradient_flags(d, wrt, flags, err)) {
    GradJob j = {d, flags, &src};
    pthread_mutex_lock(&p->kernels[entry].mu);
    st = protect(&a, &p->file, err, grad_step, &j);
    pthread_mutex_unlock(&p->kernels[entry].mu);
  }
  if (st == TC_OK && src.oom) {
    error_set(err, TC_ERR_NOMEM, NULL, (Loc){0, 0}, "out of memory");
    st = TC_ERR_NOMEM;
  }
  tc_program *check = NULL; /* the derived source must check like any other */
  tc_error cerr;
  if (st == TC_OK && tc_compile(p->ctx, p->name, src.s, src.len, &check, &cerr) != TC_OK) {
    error_set(err, TC_ERR_INTERNAL, NULL, (Loc){0, 0},
              "internal error: the backward derived from %s does not check: %s", d->name,
              cerr.message);
    st = TC_ERR_INTERNAL;
  }
  tc_program_free(check);
  if (st == TC_OK)
    *source_out = buf_detach(&src);
  buf_free(&src);
  arena_free(&a);
  free(flags);
  return st;
}

/* Appends " = VALUE" for an integer expression when sizes are known. */
static void print_value(Buf *b, const IRExpr *e, const int64_t *sizes) {
  int64_t v;
  if (sizes && ir_eval_int(e, sizes, &v))
    buf_printf(b, "%lld", (long long)v);
  else
    ir_print_user(b, e);
}

/* The source line `line` of the program, trimmed. */
static void print_source_line(Buf *b, const SrcFile *f, int line) {
  const char *s = f->text, *end = f->text + f->len;
  for (int l = 1; l < line && s < end; s++)
    if (*s == '\n')
      l++;
  while (s < end && (*s == ' ' || *s == '\t'))
    s++;
  const char *e = s;
  while (e < end && *e != '\n')
    e++;
  while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
    e--;
  buf_putn(b, s, (size_t)(e - s));
}

static void explain_stmt(Buf *b, const SrcFile *f, const Stmt *s, int n, const int64_t *sizes) {
  buf_printf(b, "statement %d, line %d:\n  ", n, s->loc.line);
  print_source_line(b, f, s->loc.line);
  buf_puts(b, "\n");
  for (int i = 0; i < s->nvars; i++) {
    const IndexVar *v = s->vars[i];
    buf_printf(b, "    %s in [", v->name);
    ir_print_user(b, v->lo);
    buf_puts(b, ", ");
    ir_print_user(b, v->hi);
    buf_puts(b, ")");
    if (sizes) {
      buf_puts(b, " = [");
      print_value(b, v->lo, sizes);
      buf_puts(b, ", ");
      print_value(b, v->hi, sizes);
      buf_puts(b, ")");
    }
    buf_printf(b, "%s%s\n", v->reduction ? "  (reduction)" : "",
               v->has_where ? "  (where clause)" : "");
  }
}

/* One extent of a tensor: declared (inputs) or inferred. */
static void print_extent(Buf *b, const Tensor *t, int k, const int64_t *sizes) {
  const Dim *dim = t->role == T_INPUT && t->dims ? &t->dims[k] : NULL;
  if (dim && !dim->sym)
    buf_printf(b, "%lld", (long long)dim->value);
  else if (dim && sizes)
    buf_printf(b, "%lld", (long long)sizes[dim->sym->id]);
  else if (dim)
    buf_puts(b, dim->sym->name);
  else if (t->size && t->size[k])
    print_value(b, t->size[k], sizes);
  else
    buf_puts(b, "?");
}

static void explain_tensor(Buf *b, const Tensor *t, const int64_t *sizes) {
  static const char *const roles[] = {"input", "output", "temporary"};
  buf_printf(b, "  %s %s: %s(", roles[t->role], t->name, tc_dtype_name(t->dtype));
  for (int k = 0; k < t->rank; k++) {
    buf_puts(b, k ? ", " : "");
    print_extent(b, t, k, NULL);
  }
  buf_puts(b, ")");
  if (sizes && t->rank) {
    buf_puts(b, " = (");
    for (int k = 0; k < t->rank; k++) {
      buf_puts(b, k ? ", " : "");
      print_extent(b, t, k, sizes);
    }
    buf_puts(b, ")");
  }
  buf_puts(b, "\n");
}

static void explain_def(Buf *b, tc_program *p, const Def *d, const int64_t *sizes,
                        const IRFunc *fn) {
  buf_printf(b, "def %s\ntensors:\n", d->name);
  for (int i = 0; i < d->ntensors; i++)
    explain_tensor(b, d->tensors[i], sizes);
  if (d->nsyms) {
    buf_puts(b, "sizes:\n");
    for (int s = 0; s < d->nsyms; s++) {
      const SizeSym *sym = d->syms[s];
      buf_printf(b, "  %s", sym->name);
      if (sym->var && strcmp(sym->var->name, sym->name))
        buf_printf(b, " (%s)", sym->var->name);
      if (sym->tensor)
        buf_printf(b, " from %s dim %d", sym->tensor->name, sym->dim);
      if (sizes)
        buf_printf(b, " = %lld", (long long)sizes[s]);
      buf_puts(b, "\n");
    }
  }
  for (int i = 0; i < d->nstmts; i++)
    explain_stmt(b, &p->file, d->stmts[i], i + 1, sizes);
  buf_puts(b, "schedule in use (the CPU target's; it can be pasted back):\n");
  sched_print(b, fn);
  buf_puts(b, "loop nest:\n");
  ir_print_stmt(b, fn->body, 1);
}

tc_status tc_explain(tc_program *p, int entry, const tc_shape *inputs, int n_inputs,
                     char **out, tc_error *err) {
  error_clear(err);
  if (out)
    *out = NULL;
  Def *d = get_def(p, entry, err);
  if (!d)
    return TC_ERR_ARGUMENT;
  int64_t *sizes = NULL;
  tc_status st = TC_OK;
  if (inputs) {
    if (n_inputs != d->ninputs) {
      arg_error(err, "%s takes %d inputs, got %d shapes", d->name, d->ninputs, n_inputs);
      return TC_ERR_ARGUMENT;
    }
    sizes = calloc((size_t)d->nsyms + 1, sizeof *sizes);
    tc_shape *shapes = calloc((size_t)d->ntensors + 1, sizeof *shapes);
    if (!sizes || !shapes) {
      error_set(err, TC_ERR_NOMEM, NULL, (Loc){0, 0}, "out of memory");
      st = TC_ERR_NOMEM;
    } else if ((st = bind_sizes(d, inputs, sizes, err)) == TC_OK) {
      st = infer_sizes(d, sizes, shapes, err);
    }
    free(shapes);
  }
  Arena a = {0};
  Buf b = {0};
  LowerJob j = {0};
  if (st == TC_OK) {
    pthread_mutex_lock(&p->kernels[entry].mu);
    st = lower_entry(p, d, &a, &j, err);
    if (st == TC_OK)
      explain_def(&b, p, d, sizes, j.fn);
    pthread_mutex_unlock(&p->kernels[entry].mu);
  }
  if (st == TC_OK && b.oom) {
    error_set(err, TC_ERR_NOMEM, NULL, (Loc){0, 0}, "out of memory");
    st = TC_ERR_NOMEM;
  }
  if (st == TC_OK && out)
    *out = buf_detach(&b);
  buf_free(&b);
  arena_free(&a);
  free(sizes);
  return st;
}
