/* front.h — what the unit tests that compile programs share: a context over
 * a source text, the front end up to a checked and inferred def, and a kernel
 * built from generated C and loaded.  Include after tc.h and unit.h. */
#ifndef TC_FRONT_H
#define TC_FRONT_H
#include <dlfcn.h>
#include <unistd.h>

/* Points c at `src` (file name "test.tc"), its arena, error and jump buffer:
 * errors longjmp to *jmp, which the caller sets. */
static inline void front_init(Ctx *c, Arena *arena, tc_error *err, jmp_buf *jmp, SrcFile *file,
                              const char *src) {
  c->arena = arena;
  c->err = err;
  c->jmp = jmp;
  *file = (SrcFile){"test.tc", src, strlen(src)};
  c->file = file;
}

/* Lexes, parses and checks the source, infers every def, and returns
 * `entry` (NULL when there is none). */
static inline Def *front_def(Ctx *c, const char *entry) {
  int ntoks;
  Program *prog = parse_program(c, lex_tokenize(c, &ntoks));
  sema_program(c, prog);
  for (int i = 0; i < prog->ndefs; i++)
    infer_def(c, prog->defs[i]);
  return sema_find_def(prog, entry);
}

/* Compiles generated C with $CC (default cc) and loads it: its tc_kernel,
 * the handle in *so; NULL (printing the compiler's message and the source)
 * on failure. */
static inline tc_kernel_fn front_load(const char *source, void **so) {
  *so = NULL;
  char dir[] = "/tmp/tc_unit_XXXXXX", path[64];
  if (!mkdtemp(dir))
    return NULL;
  snprintf(path, sizeof path, "%s/k.so", dir);
  JitConfig cfg = {getenv("CC") ? getenv("CC") : "cc", NULL, 0};
  tc_error err;
  tc_status st = jit_build(&cfg, source, strlen(source), path, &err);
  if (st == TC_OK)
    *so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  unlink(path);
  rmdir(dir);
  if (st != TC_OK)
    fprintf(stderr, "%s\n--- source:\n%s\n", err.message, source);
  return *so ? (tc_kernel_fn)(uintptr_t)dlsym(*so, "tc_kernel") : NULL;
}

/* Kernel arguments: per buffer, data, shape and strides (compact unless
 * set); sizes per size symbol. */
typedef struct Args {
  void *data[8];
  int64_t shape[32], stride[32], sizes[8];
} Args;

/* Buffer b's data, with `shape` and compact row-major strides. */
static inline void set_buf(Args *a, const Buffer *b, void *data, const int64_t *shape) {
  a->data[b->slot] = data;
  int64_t s = 1;
  for (int d = b->rank - 1; d >= 0; d--) {
    a->shape[b->dim_offset + d] = shape[d];
    a->stride[b->dim_offset + d] = s;
    s *= shape[d];
  }
}

#endif
