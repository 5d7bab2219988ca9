/*
 * tensorc.c — the command-line tool.
 *
 * A thin shell over the public API (include/tensorc.h) and tools/npy.c:
 *
 *   tensorc check   FILE.tc                       parse and check
 *   tensorc run     FILE.tc --in NAME=X.npy ...   run a def on .npy files
 *   tensorc emit    FILE.tc                       the generated C source
 *   tensorc explain FILE.tc [--shape NAME=AxB]    ranges, shapes, loop nest
 *   tensorc passes  FILE.tc                       the IR after each pass
 *   tensorc grad    FILE.tc [--wrt A,B]           the derived backward def
 *
 * Exit status: 0 ok; 1 a user error — the program, its inputs or the files
 * named — with a diagnostic on stderr; 2 a usage error (unknown option,
 * malformed argument).  Never a signal: SIGPIPE is ignored so that
 * `tensorc emit f.tc | head` ends with a status, not a kill.
 *
 * The command line is parsed into an Options struct first, against one table
 * that says which options each command takes; then each command is a
 * function of (Options, compiled program).  `run` reads every input before it
 * runs anything, so a bad file name or dtype is reported without a compile.
 * Outputs named with --out are written as .npy in their declared dtype
 * (bfloat16, which numpy lacks, as float32); the others are printed.
 */
#include "npy.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { EXIT_USER = 1, EXIT_USAGE = 2 };

enum {
  CMD_CHECK = 1 << 0,
  CMD_RUN = 1 << 1,
  CMD_EMIT = 1 << 2,
  CMD_EXPLAIN = 1 << 3,
  CMD_PASSES = 1 << 4,
  CMD_GRAD = 1 << 5,
  CMD_ALL = 0x3f,
};

static const struct {
  const char *name;
  int bit;
  const char *synopsis;
} commands[] = {
    {"check", CMD_CHECK, "check FILE.tc [-v]"},
    {"run", CMD_RUN,
     "run FILE.tc [--entry NAME] [--in NAME=IN.npy ...] [--out NAME=OUT.npy ...]\n"
     "              [--bench N] [--target c|interp|cuda] [--threads N] [-v]"},
    {"emit", CMD_EMIT, "emit FILE.tc [--entry NAME] [--target c|cuda]"},
    {"explain", CMD_EXPLAIN, "explain FILE.tc [--entry NAME] [--shape NAME=AxBxC ...]"},
    {"passes", CMD_PASSES, "passes FILE.tc [--entry NAME]"},
    {"grad", CMD_GRAD, "grad FILE.tc [--entry NAME] [--wrt NAME,...]"},
};

typedef enum { OPT_ENTRY, OPT_IN, OPT_OUT, OPT_BENCH, OPT_TARGET, OPT_THREADS, OPT_SHAPE,
               OPT_VERBOSE, OPT_HELP, OPT_CONST, OPT_WRT, OPT_SCHEDULE } OptId;

static const struct {
  const char *name;  /* long form */
  const char *alias; /* short form or NULL */
  OptId id;
  int has_arg;
  int cmds;          /* the commands that take it */
} option_table[] = {
    {"--entry", "-e", OPT_ENTRY, 1, CMD_RUN | CMD_EMIT | CMD_EXPLAIN | CMD_PASSES | CMD_GRAD},
    {"--const", NULL, OPT_CONST, 1, CMD_ALL},
    {"--schedule", NULL, OPT_SCHEDULE, 1, CMD_ALL},
    {"--wrt", NULL, OPT_WRT, 1, CMD_GRAD},
    {"--in", "-i", OPT_IN, 1, CMD_RUN},
    {"--out", "-o", OPT_OUT, 1, CMD_RUN},
    {"--bench", NULL, OPT_BENCH, 1, CMD_RUN},
    {"--target", NULL, OPT_TARGET, 1, CMD_RUN | CMD_EMIT},
    {"--threads", NULL, OPT_THREADS, 1, CMD_RUN},
    {"--shape", NULL, OPT_SHAPE, 1, CMD_EXPLAIN},
    {"--verbose", "-v", OPT_VERBOSE, 0, CMD_ALL},
    {"--help", "-h", OPT_HELP, 0, CMD_ALL},
};

/* NAME=VALUE from the command line (pointers into argv). */
typedef struct Spec {
  const char *name;
  size_t name_len;
  const char *value;
  const char *arg; /* the whole argument, for messages */
  int used;
} Spec;

typedef struct Options {
  int cmd;
  const char *cmd_name;
  const char *file;
  const char *entry;
  Spec *ins, *outs, *shapes, *consts;
  int nins, nouts, nshapes, nconsts;
  const char *wrt; /* grad: comma-separated input names, or NULL */
  const char *schedule; /* a file of schedule blocks read after FILE.tc, or NULL */
  int bench;      /* 0: no benchmark */
  tc_target target;
  int threads;    /* 0: default */
  int verbose;
} Options;

/* ---- messages ---- */

#if defined(__GNUC__)
#define CLI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CLI_PRINTF(a, b)
#endif

CLI_PRINTF(1, 2)
static int user_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("tensorc: error: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return EXIT_USER;
}

CLI_PRINTF(1, 2)
static int usage_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("tensorc: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputs("\nTry 'tensorc --help'.\n", stderr);
  va_end(ap);
  return EXIT_USAGE;
}

/* Prints an error from the library: the located diagnostic as it is,
 * anything else prefixed with the tool's name. */
static int library_error(const tc_error *err) {
  if (err->line > 0 && err->diagnostic[0])
    fprintf(stderr, "%s\n", err->diagnostic);
  else if (err->message[0])
    fprintf(stderr, "tensorc: error: %s\n", err->message);
  else
    fprintf(stderr, "tensorc: error: %s\n", tc_status_string(err->code));
  return EXIT_USER;
}

static void print_usage(FILE *f) {
  fputs("usage: tensorc COMMAND FILE.tc [options]\n"
        "\n"
        "tensorc compiles Tensor Comprehensions programs into C kernels and runs them.\n"
        "\n"
        "commands:\n"
        "  check    parse and check FILE.tc; print its diagnostics (nothing when it is\n"
        "           correct; with -v, 'FILE: ok' and each def's signature)\n"
        "  run      run a def on .npy inputs; write the outputs named by --out as .npy\n"
        "           and print the others\n"
        "  emit     print the generated C source of a def\n"
        "  explain  print a def's inferred ranges, output shapes and loop nest\n"
        "  passes   print a def's IR after each lowering pass\n"
        "  grad     print the backward def derived from a def (docs/gradients.md)\n"
        "\n",
        f);
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(f, "  tensorc %s\n", commands[i].synopsis);
  fputs("\n"
        "options:\n"
        "  -e, --entry NAME      the def to use; optional when FILE.tc has one def\n"
        "  -i, --in NAME=PATH    an input from a .npy file (dtype and shape from the file;\n"
        "                        0-d arrays for scalars; bfloat16 inputs read float32 files)\n"
        "  -o, --out NAME=PATH   write an output to a .npy file (bfloat16 as float32)\n"
        "  --bench N             after the run, time N more runs and print the median\n"
        "  --target c|interp|cuda  the compiled C kernel (default), the reference\n"
        "                        interpreter, or the CUDA kernel (inputs copied to GPU 0\n"
        "                        and back; emit: the CUDA C source; needs no GPU)\n"
        "  --threads N           threads for parallel loops (default $TENSORC_NUM_THREADS,\n"
        "                        else the core count)\n"
        "  --shape NAME=AxBxC    explain with this input shape ('scalar' for rank 0)\n"
        "  --const NAME=VALUE    compile with the scalar parameter NAME fixed to VALUE\n"
        "  --schedule PATH       schedule blocks (docs/language.md, \"Schedules\") read as if\n"
        "                        they followed FILE.tc (messages name both, lines count on)\n"
        "  --wrt NAME,...        grad: the inputs to differentiate (default: every\n"
        "                        floating-point input)\n"
        "  -v, --verbose         timings and the C compiler's command on stderr\n"
        "  -h, --help            this help;  --version  the version\n"
        "\n"
        "FILE.tc may be '-' for standard input.  Options may also be written --opt=VALUE;\n"
        "'--' ends the options.\n"
        "Exit status: 0 ok, 1 error in the program or its inputs (diagnostic on stderr),\n"
        "2 usage error.\n"
        "Environment: CC (C compiler), TENSORC_CFLAGS, TENSORC_CACHE_DIR (default\n"
        "~/.cache/tensorc), TENSORC_NUM_THREADS.\n"
        "Language: docs/language.md.\n",
        f);
}

/* ---- the command line ---- */

static int parse_int_arg(const char *opt, const char *s, int lo, int hi, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (!*s || *end || errno || v < lo || v > hi)
    return usage_error("%s expects an integer in [%d, %d], not '%s'", opt, lo, hi, s);
  *out = (int)v;
  return 0;
}

static int parse_spec(const char *opt, const char *arg, Spec *s) {
  const char *eq = strchr(arg, '=');
  if (!eq || eq == arg)
    return usage_error("%s expects NAME=%s, not '%s'", opt,
                       !strcmp(opt, "--shape") ? "AxBxC" : !strcmp(opt, "--const") ? "VALUE"
                                                                                 : "PATH",
                       arg);
  s->name = arg;
  s->name_len = (size_t)(eq - arg);
  s->value = eq + 1;
  s->arg = arg;
  s->used = 0;
  return 0;
}

static int apply_option(Options *o, OptId id, const char *opt, const char *val) {
  switch (id) {
  case OPT_ENTRY:
    if (o->entry)
      return usage_error("--entry given twice");
    o->entry = val;
    return 0;
  case OPT_IN:
    return parse_spec(opt, val, &o->ins[o->nins++]);
  case OPT_OUT:
    return parse_spec(opt, val, &o->outs[o->nouts++]);
  case OPT_SHAPE:
    return parse_spec(opt, val, &o->shapes[o->nshapes++]);
  case OPT_CONST:
    return parse_spec(opt, val, &o->consts[o->nconsts++]);
  case OPT_SCHEDULE:
    if (o->schedule)
      return usage_error("--schedule given twice");
    o->schedule = val;
    return 0;
  case OPT_WRT:
    if (o->wrt)
      return usage_error("--wrt given twice");
    o->wrt = val;
    return 0;
  case OPT_BENCH:
    return parse_int_arg(opt, val, 1, 1000000, &o->bench);
  case OPT_THREADS:
    return parse_int_arg(opt, val, 1, 4096, &o->threads);
  case OPT_TARGET:
    if (!strcmp(val, "c"))
      o->target = TC_TARGET_C;
    else if (!strcmp(val, "interp") && o->cmd == CMD_RUN)
      o->target = TC_TARGET_INTERP;
    else if (!strcmp(val, "cuda"))
      o->target = TC_TARGET_CUDA;
    else
      return usage_error("unknown target '%s' for '%s' (targets: %s)", val, o->cmd_name,
                         o->cmd == CMD_RUN ? "c, interp, cuda" : "c, cuda");
    return 0;
  case OPT_VERBOSE:
    o->verbose = 1;
    return 0;
  case OPT_HELP:
    return 0;
  }
  return 0;
}

/* Returns -1 to continue, else an exit status (help printed: 0). */
static int parse_args(int argc, char **argv, Options *o) {
  memset(o, 0, sizeof *o);
  if (argc < 2) {
    print_usage(stderr);
    return EXIT_USAGE;
  }
  const char *c = argv[1];
  if (!strcmp(c, "--help") || !strcmp(c, "-h") || !strcmp(c, "help")) {
    print_usage(stdout);
    return 0;
  }
  if (!strcmp(c, "--version") || !strcmp(c, "-V")) {
    printf("tensorc %s\n", TC_VERSION);
    return 0;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (!strcmp(c, commands[i].name)) {
      o->cmd = commands[i].bit;
      o->cmd_name = commands[i].name;
    }
  if (!o->cmd)
    return usage_error(c[0] == '-' ? "unknown option '%s'" : "unknown command '%s'", c);
  o->ins = calloc((size_t)argc, sizeof(Spec));
  o->outs = calloc((size_t)argc, sizeof(Spec));
  o->shapes = calloc((size_t)argc, sizeof(Spec));
  o->consts = calloc((size_t)argc, sizeof(Spec));
  if (!o->ins || !o->outs || !o->shapes || !o->consts)
    return user_error("out of memory");
  int help = 0, options_done = 0;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (!options_done && !strcmp(a, "--")) {
      options_done = 1; /* what follows is a file name, even "-x.tc" */
      continue;
    }
    if (options_done || a[0] != '-' || !strcmp(a, "-")) {
      if (o->file)
        return usage_error("'%s' takes one file; '%s' is a second", o->cmd_name, a);
      o->file = a;
      continue;
    }
    const char *eq = a[1] == '-' ? strchr(a, '=') : NULL;
    size_t n = eq ? (size_t)(eq - a) : strlen(a);
    size_t k = 0, nopts = sizeof option_table / sizeof option_table[0];
    for (; k < nopts; k++)
      if ((strlen(option_table[k].name) == n && !strncmp(a, option_table[k].name, n)) ||
          (option_table[k].alias && !eq && !strcmp(a, option_table[k].alias)))
        break;
    if (k == nopts)
      return usage_error("unknown option '%.*s'", (int)n, a);
    if (!(option_table[k].cmds & o->cmd))
      return usage_error("'%s' takes no option %s", o->cmd_name, option_table[k].name);
    const char *val = NULL;
    if (option_table[k].has_arg) {
      if (eq)
        val = eq + 1;
      else if (i + 1 < argc)
        val = argv[++i];
      else
        return usage_error("%s needs a value", option_table[k].name);
    } else if (eq) {
      return usage_error("%s takes no value", option_table[k].name);
    }
    if (option_table[k].id == OPT_HELP)
      help = 1;
    int rc = apply_option(o, option_table[k].id, option_table[k].name, val);
    if (rc)
      return rc;
  }
  if (help) {
    print_usage(stdout);
    return 0;
  }
  if (!o->file)
    return usage_error("'%s' needs a FILE.tc", o->cmd_name);
  return -1;
}

/* ---- files and entries ---- */

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Reads the whole file ('-': stdin); malloc'ed, NUL-terminated. */
static char *read_source(const char *path, size_t *len) {
  FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
  if (!f) {
    user_error("cannot open '%s': %s", path, strerror(errno));
    return NULL;
  }
  size_t cap = 1 << 16, n = 0;
  char *s = malloc(cap);
  while (s) {
    n += fread(s + n, 1, cap - n - 1, f);
    if (n + 1 < cap || ferror(f))
      break;
    char *t = realloc(s, cap * 2);
    if (!t) {
      free(s);
      s = NULL;
    }
    s = t;
    cap *= 2;
  }
  int bad = ferror(f);
  int e = errno;
  if (f != stdin)
    fclose(f);
  if (!s || bad) {
    user_error("cannot read '%s': %s", path, s ? strerror(e) : "out of memory");
    free(s);
    return NULL;
  }
  s[n] = '\0';
  *len = n;
  return s;
}

static void list_names(char *out, size_t cap, const tc_program *p, int entry, int outputs) {
  size_t k = 0;
  out[0] = '\0';
  int n = entry < 0 ? tc_program_num_entries(p)
                    : outputs ? tc_entry_num_outputs(p, entry) : tc_entry_num_inputs(p, entry);
  for (int i = 0; i < n && k + 1 < cap; i++) {
    tc_param_info info;
    const char *name = "?";
    if (entry < 0)
      name = tc_program_entry_name(p, i);
    else if ((outputs ? tc_entry_output(p, entry, i, &info) : tc_entry_input(p, entry, i, &info)) == TC_OK)
      name = info.name;
    int w = snprintf(out + k, cap - k, "%s%s", i ? ", " : "", name);
    if (w < 0)
      break;
    k += (size_t)w;
  }
  if (n == 0)
    snprintf(out, cap, "none");
}

/* The entry named by --entry, or the only one.  -1 after an error (*rc set). */
static int select_entry(const Options *o, const tc_program *p, int *rc) {
  int n = tc_program_num_entries(p);
  char names[1024];
  list_names(names, sizeof names, p, -1, 0);
  if (o->entry) {
    int e = tc_program_find_entry(p, o->entry);
    if (e < 0)
      *rc = user_error("%s has no def '%s' (defs: %s)", o->file, o->entry, names);
    return e;
  }
  if (n == 1)
    return 0;
  if (n == 0)
    *rc = user_error("%s has no def", o->file);
  else
    *rc = usage_error("%s has %d defs (%s): choose one with --entry NAME", o->file, n, names);
  return -1;
}

/* "float32(M,K) A" (with_type) or "A", for messages and `check -v`. */
static void format_param(char *out, size_t cap, const tc_param_info *pi, int with_type) {
  size_t k = 0;
  int w = 0;
  if (with_type)
    k += (size_t)snprintf(out, cap, "%s", tc_dtype_name(pi->dtype));
  for (int d = 0; with_type && d < pi->rank && k < cap; d++) {
    if (pi->dim_names[d])
      w = snprintf(out + k, cap - k, "%s%s", d ? "," : "(", pi->dim_names[d]);
    else
      w = snprintf(out + k, cap - k, "%s%" PRId64, d ? "," : "(", pi->dim_values[d]);
    k += w > 0 ? (size_t)w : 0;
  }
  if (with_type && pi->rank > 0 && k < cap)
    k += (size_t)snprintf(out + k, cap - k, ")");
  if (k < cap)
    snprintf(out + k, cap - k, "%s%s", k ? " " : "", pi->name);
}

static void print_signature(const tc_program *p, int e) {
  printf("  def %s(", tc_program_entry_name(p, e));
  char buf[512];
  for (int i = 0; i < tc_entry_num_inputs(p, e); i++) {
    tc_param_info pi;
    if (tc_entry_input(p, e, i, &pi) != TC_OK)
      continue;
    format_param(buf, sizeof buf, &pi, 1);
    printf("%s%s", i ? ", " : "", buf);
  }
  printf(") -> (");
  for (int i = 0; i < tc_entry_num_outputs(p, e); i++) {
    tc_param_info pi;
    if (tc_entry_output(p, e, i, &pi) != TC_OK)
      continue;
    format_param(buf, sizeof buf, &pi, pi.typed);
    printf("%s%s", i ? ", " : "", buf);
  }
  printf(")\n");
}

static const Spec *find_spec(Spec *specs, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (strlen(name) == specs[i].name_len && !strncmp(specs[i].name, name, specs[i].name_len)) {
      specs[i].used = 1;
      return &specs[i];
    }
  return NULL;
}

/* Every spec must name a parameter; a name given twice is an error too. */
static int check_specs(const Options *o, const tc_program *p, int e, Spec *specs, int n,
                       int outputs, const char *what) {
  int np = outputs ? tc_entry_num_outputs(p, e) : tc_entry_num_inputs(p, e);
  for (int i = 0; i < np; i++) {
    tc_param_info pi;
    if ((outputs ? tc_entry_output(p, e, i, &pi) : tc_entry_input(p, e, i, &pi)) == TC_OK)
      find_spec(specs, n, pi.name);
  }
  for (int i = 0; i < n; i++) {
    for (int j = 0; j < i; j++)
      if (specs[j].name_len == specs[i].name_len &&
          !strncmp(specs[j].name, specs[i].name, specs[i].name_len))
        return user_error("%s '%.*s' given twice", what, (int)specs[i].name_len, specs[i].name);
    if (!specs[i].used) {
      char names[1024];
      list_names(names, sizeof names, p, e, outputs);
      return user_error("def '%s' in %s has no %s '%.*s' (%ss: %s)", tc_program_entry_name(p, e),
                        o->file, what, (int)specs[i].name_len, specs[i].name, what, names);
    }
  }
  return 0;
}

/* ---- check, emit, passes, explain ---- */

static int cmd_check(const Options *o, tc_program *p) {
  if (!o->verbose)
    return 0;
  int n = tc_program_num_entries(p);
  printf("%s: ok, %d def%s\n", o->file, n, n == 1 ? "" : "s");
  for (int e = 0; e < n; e++)
    print_signature(p, e);
  return 0;
}

static int print_text(tc_status st, char *text, const tc_error *err) {
  if (st != TC_OK)
    return library_error(err);
  if (!text)
    return user_error("no text returned");
  fputs(text, stdout);
  if (text[0] && text[strlen(text) - 1] != '\n')
    fputc('\n', stdout);
  tc_free(text);
  return 0;
}

static int cmd_emit(const Options *o, tc_program *p, int e) {
  char *text = NULL;
  tc_error err;
  tc_status st = tc_emit(p, e, o->target, &text, &err);
  return print_text(st, text, &err);
}

/* The --wrt flags per input of entry e into flags[]; 0, or an exit status. */
static int wrt_flags(const Options *o, const tc_program *p, int e, int *flags) {
  int n = tc_entry_num_inputs(p, e);
  for (const char *s = o->wrt; *s;) {
    size_t len = strcspn(s, ",");
    int found = 0;
    for (int i = 0; i < n; i++) {
      tc_param_info pi;
      if (tc_entry_input(p, e, i, &pi) == TC_OK && strlen(pi.name) == len &&
          !strncmp(pi.name, s, len))
        found = flags[i] = 1;
    }
    if (!found) {
      char names[1024];
      list_names(names, sizeof names, p, e, 0);
      return user_error("def '%s' in %s has no input '%.*s' (inputs: %s)",
                        tc_program_entry_name(p, e), o->file, (int)len, s, names);
    }
    s += len + (s[len] == ',');
  }
  return 0;
}

static int cmd_grad(const Options *o, tc_program *p, int e) {
  int *flags = calloc((size_t)tc_entry_num_inputs(p, e) + 1, sizeof *flags);
  if (!flags)
    return user_error("out of memory");
  int rc = o->wrt ? wrt_flags(o, p, e, flags) : 0;
  if (!rc) {
    char *text = NULL;
    tc_error err;
    tc_status st = tc_gradient(p, e, o->wrt ? flags : NULL, &text, &err);
    rc = print_text(st, text, &err);
  }
  free(flags);
  return rc;
}

static int cmd_passes(tc_program *p, int e) {
  char *text = NULL;
  tc_error err;
  tc_status st = tc_dump_passes(p, e, &text, &err);
  return print_text(st, text, &err);
}

/* "3x4x5" -> dims; "scalar" or "" -> rank 0. */
static int parse_dims(const Spec *s, tc_shape *shape) {
  const char *v = s->value;
  shape->rank = 0;
  if (!*v || !strcmp(v, "scalar"))
    return 0;
  for (;;) {
    char *end;
    errno = 0;
    if (*v < '0' || *v > '9')
      break;
    long long d = strtoll(v, &end, 10);
    if (errno || shape->rank == TC_MAX_RANK)
      break;
    shape->dims[shape->rank++] = d;
    if (!*end)
      return 0;
    if (*end != 'x' && *end != 'X' && *end != ',')
      break;
    v = end + 1;
  }
  return usage_error("--shape expects NAME=AxBxC (at most %d dims) or NAME=scalar, not '%s'",
                     TC_MAX_RANK, s->arg);
}

static int cmd_explain(Options *o, tc_program *p, int e) {
  int n = tc_entry_num_inputs(p, e);
  tc_shape *shapes = calloc((size_t)n + 1, sizeof *shapes);
  int rc = 0, given = 0;
  if (!shapes)
    return user_error("out of memory");
  rc = check_specs(o, p, e, o->shapes, o->nshapes, 0, "input");
  for (int i = 0; i < n && !rc; i++) {
    tc_param_info pi;
    tc_entry_input(p, e, i, &pi);
    const Spec *s = find_spec(o->shapes, o->nshapes, pi.name);
    if (!s)
      continue;
    given++;
    if ((rc = parse_dims(s, &shapes[i])))
      break;
    if (shapes[i].rank != pi.rank)
      rc = user_error("--shape %s: rank %d, but %s is declared with rank %d", s->arg,
                      shapes[i].rank, pi.name, pi.rank);
  }
  for (int i = 0; i < n && !rc && given; i++) {
    tc_param_info pi;
    tc_entry_input(p, e, i, &pi);
    if (pi.rank > 0 && !find_spec(o->shapes, o->nshapes, pi.name))
      rc = user_error("explain: no --shape for input %s (give every input's shape, or none)",
                      pi.name);
  }
  if (!rc) {
    char *text = NULL;
    tc_error err;
    tc_status st = tc_explain(p, e, given ? shapes : NULL, n, &text, &err);
    rc = print_text(st, text, &err);
  }
  free(shapes);
  return rc;
}

/* ---- printing tensors ---- */

static float half_to_float(uint16_t h) {
  int sign = h >> 15, ex = (h >> 10) & 0x1f, man = h & 0x3ff;
  float v;
  if (ex == 0)
    v = ldexpf((float)man, -24);
  else if (ex == 31)
    v = man ? NAN : INFINITY;
  else
    v = ldexpf((float)(man | 0x400), ex - 25);
  return sign ? -v : v;
}

/* The shortest "%g" text that reads back as the same value (numpy's
 * habit), with a '.' when it would look like an integer: "0.1", "2.", "1e-08". */
static void print_float(FILE *f, double v, tc_dtype dt) {
  char buf[64];
  if (isnan(v) || isinf(v)) {
    fputs(isnan(v) ? "nan" : v < 0 ? "-inf" : "inf", f);
    return;
  }
  int maxp = dt == TC_FLOAT64 ? 17 : dt == TC_FLOAT16 ? 5 : 9;
  for (int p = 1; p <= maxp; p++) {
    snprintf(buf, sizeof buf, "%.*g", p, v);
    double back = strtod(buf, NULL);
    if (dt == TC_FLOAT64 ? back == v
        : dt == TC_BFLOAT16 ? npy_f32_to_bf16((float)back) == npy_f32_to_bf16((float)v)
        : dt == TC_FLOAT32 ? (float)back == (float)v : p == maxp)
      break;
  }
  if (!strpbrk(buf, ".e")) /* not already 1.5 or 1e+20 */
    strcat(buf, ".");
  fputs(buf, f);
}

static void print_element(FILE *f, tc_dtype dt, const unsigned char *p) {
  union { int8_t i8; int16_t i16; int32_t i32; int64_t i64; uint8_t u8; uint16_t u16;
          uint32_t u32; uint64_t u64; float f32; double f64; } v;
  memcpy(&v, p, tc_dtype_size(dt));
  switch (dt) {
  case TC_BOOL: fputs(v.u8 ? "True" : "False", f); break;
  case TC_INT8: fprintf(f, "%d", v.i8); break;
  case TC_INT16: fprintf(f, "%d", v.i16); break;
  case TC_INT32: fprintf(f, "%" PRId32, v.i32); break;
  case TC_INT64: fprintf(f, "%" PRId64, v.i64); break;
  case TC_UINT8: fprintf(f, "%u", v.u8); break;
  case TC_UINT16: fprintf(f, "%u", v.u16); break;
  case TC_UINT32: fprintf(f, "%" PRIu32, v.u32); break;
  case TC_UINT64: fprintf(f, "%" PRIu64, v.u64); break;
  case TC_FLOAT16: print_float(f, (double)half_to_float(v.u16), dt); break;
  case TC_BFLOAT16: print_float(f, (double)npy_bf16_to_f32(v.u16), dt); break;
  case TC_FLOAT32: print_float(f, (double)v.f32, dt); break;
  case TC_FLOAT64: print_float(f, v.f64, dt); break;
  case TC_NUM_DTYPES: break;
  }
}

/* numpy's layout: nested brackets, one row per line; with `summary`, only
 * the first and last 3 entries of each dimension. */
static void print_dim(FILE *f, const DLTensor *t, int d, const unsigned char *base, int summary) {
  tc_dtype dt;
  tc_dtype_from_dl(t->dtype, &dt);
  int64_t n = t->shape[d], stride = 1;
  if (t->strides)
    stride = t->strides[d];
  else
    for (int k = d + 1; k < t->ndim; k++)
      stride *= t->shape[k];
  fputc('[', f);
  for (int64_t i = 0; i < n; i++) {
    if (summary && n > 6 && i == 3) {
      fputs(d + 1 == t->ndim ? "... " : "...", f);
      i = n - 3;
      if (d + 1 < t->ndim)
        fprintf(f, "\n%*s", d + 1, "");
    }
    const unsigned char *p = base + i * stride * (int64_t)tc_dtype_size(dt);
    if (d + 1 == t->ndim)
      print_element(f, dt, p);
    else
      print_dim(f, t, d + 1, p, summary);
    if (i + 1 < n) {
      if (d + 1 == t->ndim)
        fputc(' ', f);
      else
        fprintf(f, "%.*s\n%*s", t->ndim - d - 2, "\n\n\n\n\n\n\n\n", d + 1, "");
    }
  }
  fputc(']', f);
}

static void print_tensor(FILE *f, const char *name, const DLTensor *t) {
  tc_dtype dt;
  tc_dtype_from_dl(t->dtype, &dt);
  int64_t count = 1;
  fprintf(f, "%s: %s, shape ", name, tc_dtype_name(dt));
  for (int d = 0; d < t->ndim; d++) {
    fprintf(f, d ? "x%" PRId64 : "%" PRId64, t->shape[d]);
    count *= t->shape[d];
  }
  fputs(t->ndim ? "\n" : "scalar\n", f);
  const unsigned char *base = (const unsigned char *)t->data + t->byte_offset;
  if (t->ndim == 0)
    print_element(f, dt, base);
  else
    print_dim(f, t, 0, base, count > 1000);
  fputc('\n', f);
}

/* ---- run ---- */

typedef struct RunState {
  NpyArray *arrays;   /* per input */
  DLTensor *tensors;  /* per input */
  DLTensor **in_ptrs;
  DLManagedTensor **outs;
  DLTensor **out_ptrs;
  int nin, nout;
} RunState;

static void free_run(RunState *r) {
  for (int i = 0; i < r->nin && r->arrays; i++)
    npy_free(&r->arrays[i]);
  for (int i = 0; i < r->nout && r->outs; i++)
    if (r->outs[i] && r->outs[i]->deleter)
      r->outs[i]->deleter(r->outs[i]);
  free(r->arrays);
  free(r->tensors);
  free(r->in_ptrs);
  free(r->outs);
  free(r->out_ptrs);
}

static void shape_text(char *out, size_t cap, int rank, const int64_t *shape) {
  size_t k = 0;
  if (rank == 0)
    snprintf(out, cap, "scalar");
  for (int d = 0; d < rank && k < cap; d++) {
    int w = snprintf(out + k, cap - k, d ? "x%" PRId64 : "%" PRId64, shape[d]);
    k += w > 0 ? (size_t)w : 0;
  }
}

/* Loads input i from its --in file and checks it against the declaration. */
static int load_input(Options *o, tc_program *p, int e, int i, RunState *r) {
  tc_param_info pi;
  char err[1024], decl[512], shp[128];
  tc_entry_input(p, e, i, &pi);
  format_param(decl, sizeof decl, &pi, 1);
  const Spec *s = find_spec(o->ins, o->nins, pi.name);
  if (!s)
    return user_error("missing input %s: give it with --in %s=FILE.npy (declared %s)", pi.name,
                      pi.name, decl);
  NpyArray *a = &r->arrays[i];
  if (npy_read(s->value, a, err, sizeof err))
    return user_error("input %s: %s", pi.name, err);
  if (a->dtype != pi.dtype) {
    if (pi.dtype == TC_BFLOAT16 && a->dtype == TC_FLOAT32)
      npy_to_bfloat16(a, err, sizeof err);
    else
      return user_error("input %s: %s has %s, the program declares %s%s", pi.name, s->value,
                        tc_dtype_name(a->dtype), tc_dtype_name(pi.dtype),
                        pi.dtype == TC_BFLOAT16 ? " (give bfloat16 inputs as float32 files)" : "");
  }
  if (a->rank != pi.rank) {
    shape_text(shp, sizeof shp, a->rank, a->shape);
    return user_error("input %s: %s has shape %s (rank %d), the program declares rank %d: %s",
                      pi.name, s->value, shp, a->rank, pi.rank, decl);
  }
  npy_dltensor(a, &r->tensors[i]);
  r->in_ptrs[i] = &r->tensors[i];
  return 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int bench(const Options *o, tc_program *p, int e, RunState *r) {
  double *t = malloc((size_t)o->bench * sizeof *t);
  tc_error err;
  if (!t)
    return user_error("out of memory");
  for (int k = 0; k < o->bench; k++) {
    double t0 = now();
    if (tc_run(p, e, r->in_ptrs, r->nin, r->out_ptrs, r->nout, o->target, &err) != TC_OK) {
      free(t);
      return library_error(&err);
    }
    t[k] = now() - t0;
  }
  qsort(t, (size_t)o->bench, sizeof *t, cmp_double);
  int n = o->bench;
  double median = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
  printf("bench %s (%s): %d run%s, median %.3f ms (min %.3f ms, max %.3f ms)\n",
         tc_program_entry_name(p, e),
         o->target == TC_TARGET_C ? "c" : o->target == TC_TARGET_CUDA ? "cuda" : "interp", n,
         n == 1 ? "" : "s", 1e3 * median, 1e3 * t[0], 1e3 * t[n - 1]);
  free(t);
  return 0;
}

static int write_outputs(Options *o, tc_program *p, int e, RunState *r) {
  char err[1024];
  for (int i = 0; i < r->nout; i++) {
    tc_param_info pi;
    tc_entry_output(p, e, i, &pi);
    const Spec *s = find_spec(o->outs, o->nouts, pi.name);
    if (!s)
      print_tensor(stdout, pi.name, r->out_ptrs[i]);
    else if (npy_write(s->value, r->out_ptrs[i], err, sizeof err))
      return user_error("output %s: %s", pi.name, err);
  }
  return 0;
}

static int cmd_run(Options *o, tc_program *p, int e) {
  RunState r = {0};
  tc_error err;
  int rc = 0;
  r.nin = tc_entry_num_inputs(p, e);
  r.nout = tc_entry_num_outputs(p, e);
  size_t ni = (size_t)r.nin + 1, no = (size_t)r.nout + 1;
  r.arrays = calloc(ni, sizeof *r.arrays);
  r.tensors = calloc(ni, sizeof *r.tensors);
  r.in_ptrs = calloc(ni, sizeof *r.in_ptrs);
  r.outs = calloc(no, sizeof *r.outs);
  r.out_ptrs = calloc(no, sizeof *r.out_ptrs);
  if (!r.arrays || !r.tensors || !r.in_ptrs || !r.outs || !r.out_ptrs)
    rc = user_error("out of memory");
  if (!rc)
    rc = check_specs(o, p, e, o->ins, o->nins, 0, "input");
  if (!rc)
    rc = check_specs(o, p, e, o->outs, o->nouts, 1, "output");
  for (int i = 0; i < r.nin && !rc; i++)
    rc = load_input(o, p, e, i, &r);
  if (!rc && o->target != TC_TARGET_INTERP && o->verbose) {
    tc_prepare_info info;
    tc_run_options ro;
    tc_run_options_init(&ro);
    ro.target = o->target;
    if (tc_prepare_ex(p, e, &ro, &info, &err) != TC_OK)
      rc = library_error(&err);
    else
      fprintf(stderr, "tensorc: kernel %s: %.1f ms (%s) %s\n", tc_program_entry_name(p, e),
              1e3 * info.seconds,
              info.source == 0 ? "compiled" : info.source == 1 ? "memory cache" : "disk cache",
              info.path);
  }
  if (!rc) {
    double t0 = now();
    if (tc_run_alloc(p, e, r.in_ptrs, r.nin, r.outs, r.nout, o->target, &err) != TC_OK)
      rc = library_error(&err);
    else if (o->verbose)
      fprintf(stderr, "tensorc: first run: %.3f ms\n", 1e3 * (now() - t0));
  }
  for (int i = 0; i < r.nout && !rc; i++)
    r.out_ptrs[i] = &r.outs[i]->dl_tensor;
  if (!rc)
    rc = write_outputs(o, p, e, &r);
  if (!rc && o->bench)
    rc = bench(o, p, e, &r);
  free_run(&r);
  return rc;
}

/* ---- main ---- */

/* The --const values: an integer, else a number with '.', 'e', "inf", "nan". */
static int parse_consts(const Options *o, tc_constant *k) {
  for (int i = 0; i < o->nconsts; i++) {
    const Spec *s = &o->consts[i];
    char *end;
    k[i].name = strndup(s->name, s->name_len);
    if (!k[i].name)
      return user_error("out of memory");
    errno = 0;
    k[i].i = strtoll(s->value, &end, 10);
    if (*s->value && !*end && !errno)
      continue;
    k[i].is_float = 1;
    k[i].f = strtod(s->value, &end);
    if (!*s->value || *end)
      return usage_error("--const expects NAME=NUMBER, not '%s'", s->arg);
  }
  return 0;
}

static int run_command(Options *o) {
  size_t len;
  char *src = read_source(o->file, &len);
  if (!src)
    return EXIT_USER;
  char *both_name = NULL;
  if (o->schedule) {
    size_t slen;
    char *sch = read_source(o->schedule, &slen);
    char *both = sch ? realloc(src, len + slen + 2) : NULL;
    both_name = both ? malloc(strlen(o->file) + strlen(o->schedule) + 4) : NULL;
    if (!both_name) {
      free(sch);
      free(both ? both : src);
      return sch ? user_error("out of memory") : EXIT_USER;
    }
    src = both;
    src[len++] = '\n';
    memcpy(src + len, sch, slen);
    len += slen;
    src[len] = '\0';
    free(sch);
    sprintf(both_name, "%s + %s", o->file, o->schedule);
  }
  tc_context_options copt;
  tc_context_options_init(&copt);
  copt.num_threads = o->threads;
  copt.verbose = o->verbose;
  if (o->cmd != CMD_RUN)
    copt.num_threads = 1; /* nothing runs: no pool needed */
  tc_context *ctx = NULL;
  tc_program *prog = NULL;
  tc_error err;
  const char *name = both_name ? both_name : strcmp(o->file, "-") ? o->file : "<stdin>";
  double t0 = now();
  tc_constant *consts = calloc((size_t)o->nconsts + 1, sizeof *consts);
  int rc = consts ? parse_consts(o, consts) : user_error("out of memory");
  if (!rc && tc_context_new(&copt, &ctx, &err) != TC_OK)
    rc = library_error(&err);
  else if (!rc && tc_compile_ex(ctx, name, src, len, consts, o->nconsts, &prog, &err) != TC_OK)
    rc = library_error(&err);
  else if (!rc && o->verbose)
    fprintf(stderr, "tensorc: parse and check %s: %.3f ms\n", name, 1e3 * (now() - t0));
  int e = 0;
  if (!rc && o->cmd != CMD_CHECK)
    e = select_entry(o, prog, &rc);
  if (!rc) {
    switch (o->cmd) {
    case CMD_CHECK: rc = cmd_check(o, prog); break;
    case CMD_RUN: rc = cmd_run(o, prog, e); break;
    case CMD_EMIT: rc = cmd_emit(o, prog, e); break;
    case CMD_EXPLAIN: rc = cmd_explain(o, prog, e); break;
    case CMD_PASSES: rc = cmd_passes(prog, e); break;
    case CMD_GRAD: rc = cmd_grad(o, prog, e); break;
    }
  }
  for (int i = 0; consts && i < o->nconsts; i++)
    free((char *)consts[i].name);
  free(consts);
  tc_program_free(prog);
  tc_context_free(ctx);
  free(src);
  free(both_name);
  return rc;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  Options o;
  int rc = parse_args(argc, argv, &o);
  if (rc < 0)
    rc = run_command(&o);
  free(o.ins);
  free(o.outs);
  free(o.shapes);
  free(o.consts);
  if (fflush(stdout) || ferror(stdout)) {
    if (!rc)
      fprintf(stderr, "tensorc: error writing the output: %s\n", strerror(errno));
    rc = rc ? rc : EXIT_USER;
  }
  return rc;
}
