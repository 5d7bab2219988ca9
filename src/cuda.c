/*
 * cuda.c — the CUDA driver API and NVRTC, loaded with dlopen, and the host
 * side of a CUDA run: device memory, kernel arguments, launches, failures.
 *
 * Building tensorc never needs the CUDA toolkit: the few prototypes and
 * constants used here are written from NVIDIA's documentation of the driver
 * API (libcuda.so.1, installed with the driver) and of NVRTC (libnvrtc, from
 * a toolkit or the nvidia-cuda-nvrtc wheel).  Both libraries are opened on
 * first use, per Cuda object (one per tc_context: no global state); using
 * CUDA without them is a clear error, never a crash.
 *
 * NVRTC is looked for in order: $TENSORC_NVRTC (the library, or a directory
 * holding it); the sonames libnvrtc.so, libnvrtc.so.13, libnvrtc.so.12 (the
 * dynamic linker's search, which also finds a copy PyTorch already loaded);
 * the `nvidia/<x>/lib` directories of Python site-packages, found from the
 * libraries mapped in this process (a Python process that imported torch)
 * and from the usual prefixes (virtualenv, conda, pyenv, ~/.local, /usr);
 * then /usr/local/cuda*.  Kernels are compiled for the device's own
 * architecture (-arch=sm_XY) straight to a cubin, with --fmad=false so that
 * a*b+c rounds twice as in the interpreter (the contraction kernels ask for
 * their fused multiply-adds explicitly).
 *
 * Contexts: every device is used through its primary context (the one
 * PyTorch uses), retained on first use and pushed around each call, so a
 * caller's stream belongs to it.  Nothing here synchronises the device.
 *
 * A run (cuda_run) executes the plan emit_cuda.c made: host checks and
 * branches are evaluated here over the sizes, shapes and strides (a small
 * evaluator of the IR's integer expressions), kernels are launched with one
 * argument of 8-byte slots.  Temporaries come from the stream-ordered
 * allocator (cuMemAllocAsync, zeroed with cuMemsetD8Async, freed with
 * cuMemFreeAsync on the same stream), so they cost no device-wide
 * synchronisation.  A kernel that may fail (an indirect index out of range)
 * records the first failure in a small device buffer; after the launches it
 * is copied back and the stream synchronised — only for programs whose
 * kernels can fail.  Staged runs (host tensors, for the CLI and the tests)
 * copy each tensor's whole byte span in and out, so strides, offsets and
 * padding are the same on both sides.
 */
#include "tc.h"

#include <dlfcn.h>
#include <glob.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- the driver API, as documented ---- */
typedef int CUresult; /* CUDA_SUCCESS == 0 */
typedef int CUdevice;
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;
typedef unsigned long long CUdeviceptr;

enum {
  CU_ATTR_MULTIPROCESSOR_COUNT = 16,
  CU_ATTR_CC_MAJOR = 75,
  CU_ATTR_CC_MINOR = 76,
  CU_ATTR_MEMORY_POOLS_SUPPORTED = 115,
  CU_FUNC_MAX_DYNAMIC_SHARED = 8, /* CUfunction_attribute */
};
enum { STAGE_MAX = 160 * 1024 }; /* shared memory a row kernel may ask for */
enum {
  WARP_ROW_MAX = 1024, /* rows up to this long get a warp each ... */
  WARP_ROWS = 8,       /* ... and a block of 8 warps */
};

typedef struct Driver {
  CUresult (*Init)(unsigned flags);
  CUresult (*DriverGetVersion)(int *v);
  CUresult (*DeviceGetCount)(int *n);
  CUresult (*DeviceGet)(CUdevice *d, int ordinal);
  CUresult (*DeviceGetAttribute)(int *v, int attr, CUdevice d);
  CUresult (*DevicePrimaryCtxRetain)(CUcontext *c, CUdevice d);
  CUresult (*DevicePrimaryCtxRelease)(CUdevice d);
  CUresult (*CtxPushCurrent)(CUcontext c);
  CUresult (*CtxPopCurrent)(CUcontext *c);
  CUresult (*ModuleLoadData)(CUmodule *m, const void *image);
  CUresult (*ModuleUnload)(CUmodule m);
  CUresult (*ModuleGetFunction)(CUfunction *f, CUmodule m, const char *name);
  CUresult (*FuncSetAttribute)(CUfunction f, int attr, int value);
  CUresult (*LaunchKernel)(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                           unsigned by, unsigned bz, unsigned smem, CUstream s, void **params,
                           void **extra);
  CUresult (*MemAlloc)(CUdeviceptr *p, size_t n);
  CUresult (*MemFree)(CUdeviceptr p);
  CUresult (*MemAllocAsync)(CUdeviceptr *p, size_t n, CUstream s); /* may be missing */
  CUresult (*MemFreeAsync)(CUdeviceptr p, CUstream s);             /* may be missing */
  CUresult (*MemcpyHtoDAsync)(CUdeviceptr dst, const void *src, size_t n, CUstream s);
  CUresult (*MemcpyDtoHAsync)(void *dst, CUdeviceptr src, size_t n, CUstream s);
  CUresult (*MemsetD8Async)(CUdeviceptr p, unsigned char v, size_t n, CUstream s);
  CUresult (*StreamSynchronize)(CUstream s);
  CUresult (*GetErrorName)(CUresult r, const char **s);
  CUresult (*GetErrorString)(CUresult r, const char **s);
} Driver;

/* symbol names: the _v2 entry points are what the documented names mean */
static const struct {
  const char *name;
  size_t off;
  bool optional;
} driver_syms[] = {
#define D(field, sym, opt) {sym, offsetof(Driver, field), opt}
    D(Init, "cuInit", false),
    D(DriverGetVersion, "cuDriverGetVersion", false),
    D(DeviceGetCount, "cuDeviceGetCount", false),
    D(DeviceGet, "cuDeviceGet", false),
    D(DeviceGetAttribute, "cuDeviceGetAttribute", false),
    D(DevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", false),
    D(DevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2", false),
    D(CtxPushCurrent, "cuCtxPushCurrent_v2", false),
    D(CtxPopCurrent, "cuCtxPopCurrent_v2", false),
    D(ModuleLoadData, "cuModuleLoadData", false),
    D(ModuleUnload, "cuModuleUnload", false),
    D(ModuleGetFunction, "cuModuleGetFunction", false),
    D(FuncSetAttribute, "cuFuncSetAttribute", false),
    D(LaunchKernel, "cuLaunchKernel", false),
    D(MemAlloc, "cuMemAlloc_v2", false),
    D(MemFree, "cuMemFree_v2", false),
    D(MemAllocAsync, "cuMemAllocAsync", true),
    D(MemFreeAsync, "cuMemFreeAsync", true),
    D(MemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2", false),
    D(MemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2", false),
    D(MemsetD8Async, "cuMemsetD8Async", false),
    D(StreamSynchronize, "cuStreamSynchronize", false),
    D(GetErrorName, "cuGetErrorName", false),
    D(GetErrorString, "cuGetErrorString", false),
#undef D
};

/* ---- NVRTC, as documented ---- */
typedef int nvrtcResult; /* NVRTC_SUCCESS == 0 */
typedef struct _nvrtcProgram *nvrtcProgram;

typedef struct Nvrtc {
  nvrtcResult (*Version)(int *major, int *minor);
  nvrtcResult (*CreateProgram)(nvrtcProgram *p, const char *src, const char *name, int nheaders,
                               const char *const *headers, const char *const *names);
  nvrtcResult (*DestroyProgram)(nvrtcProgram *p);
  nvrtcResult (*CompileProgram)(nvrtcProgram p, int nopts, const char *const *opts);
  nvrtcResult (*GetProgramLogSize)(nvrtcProgram p, size_t *n);
  nvrtcResult (*GetProgramLog)(nvrtcProgram p, char *log);
  nvrtcResult (*GetCUBINSize)(nvrtcProgram p, size_t *n);
  nvrtcResult (*GetCUBIN)(nvrtcProgram p, char *cubin);
  const char *(*GetErrorString)(nvrtcResult r);
} Nvrtc;

static const struct {
  const char *name;
  size_t off;
} nvrtc_syms[] = {
#define N(field, sym) {sym, offsetof(Nvrtc, field)}
    N(Version, "nvrtcVersion"),
    N(CreateProgram, "nvrtcCreateProgram"),
    N(DestroyProgram, "nvrtcDestroyProgram"),
    N(CompileProgram, "nvrtcCompileProgram"),
    N(GetProgramLogSize, "nvrtcGetProgramLogSize"),
    N(GetProgramLog, "nvrtcGetProgramLog"),
    N(GetCUBINSize, "nvrtcGetCUBINSize"),
    N(GetCUBIN, "nvrtcGetCUBIN"),
    N(GetErrorString, "nvrtcGetErrorString"),
#undef N
};

/* One device, initialised on first use. */
typedef struct Device {
  bool ready;
  CUdevice dev;
  CUcontext ctx; /* its primary context, retained */
  int arch;      /* 10 * major + minor */
  int sms;
  bool pools;    /* stream-ordered allocation works */
} Device;

struct Cuda {
  pthread_mutex_t mu;       /* guards loading and device initialisation */
  int drv_state;            /* 0 not tried, 1 loaded, -1 failed (drv_msg) */
  char drv_msg[768];
  void *libcuda;
  const char *drv_name;     /* the soname that loaded */
  Driver d;
  Device *devs;
  int ndevs;
  int rtc_state;            /* the same for NVRTC */
  char rtc_msg[768];
  void *libnvrtc;
  Nvrtc r;
  char rtc_path[PATH_MAX];
  char rtc_id[PATH_MAX + 64];
};

Cuda *cuda_new(void) {
  Cuda *cu = calloc(1, sizeof *cu);
  if (cu)
    pthread_mutex_init(&cu->mu, NULL);
  return cu;
}

void cuda_free(Cuda *cu) {
  if (!cu)
    return;
  for (int i = 0; i < cu->ndevs; i++)
    if (cu->devs[i].ready)
      cu->d.DevicePrimaryCtxRelease(cu->devs[i].dev);
  free(cu->devs);
  if (cu->libcuda)
    dlclose(cu->libcuda);
  if (cu->libnvrtc)
    dlclose(cu->libnvrtc);
  pthread_mutex_destroy(&cu->mu);
  free(cu);
}

/* ---- errors ---- */

/* "cuX: CUDA_ERROR_Y: text" */
static void cu_error(Cuda *cu, tc_error *err, tc_status code, const char *what, CUresult r) {
  const char *name = NULL, *text = NULL;
  if (cu->d.GetErrorName)
    cu->d.GetErrorName(r, &name);
  if (cu->d.GetErrorString)
    cu->d.GetErrorString(r, &text);
  error_set(err, code, NULL, (Loc){0, 0}, "CUDA: %s failed: %s (%d): %s", what,
            name ? name : "?", r, text ? text : "unknown error");
}

#define CU(cu, err, call, what)                                               \
  do {                                                                        \
    CUresult r_ = (call);                                                     \
    if (r_ != 0) {                                                            \
      cu_error((cu), (err), TC_ERR_RUNTIME, (what), r_);                      \
      return TC_ERR_RUNTIME;                                                  \
    }                                                                         \
  } while (0)

/* ---- loading the driver ---- */

static bool load_syms(void *h, void *table, const char *const *names, const size_t *offs,
                      const bool *optional, size_t n, const char **missing) {
  for (size_t i = 0; i < n; i++) {
    void *p = dlsym(h, names[i]);
    if (!p && !(optional && optional[i])) {
      *missing = names[i];
      return false;
    }
    memcpy((char *)table + offs[i], &p, sizeof p); /* POSIX: function pointers round-trip */
  }
  return true;
}

static void load_driver_locked(Cuda *cu) {
  cu->drv_state = -1;
  static const char *const names[] = {"libcuda.so.1", "libcuda.so"};
  for (int i = 0; i < 2 && !cu->libcuda; i++)
    if ((cu->libcuda = dlopen(names[i], RTLD_NOW | RTLD_LOCAL)))
      cu->drv_name = names[i];
  if (!cu->libcuda) {
    const char *m = dlerror();
    snprintf(cu->drv_msg, sizeof cu->drv_msg,
             "no CUDA driver: libcuda.so.1 cannot be loaded (%s); CUDA needs an NVIDIA GPU "
             "and its driver", m ? m : "not found");
    return;
  }
  enum { ND = sizeof driver_syms / sizeof driver_syms[0] };
  const char *syms[ND];
  size_t offs[ND];
  bool opt[ND];
  for (size_t i = 0; i < ND; i++) {
    syms[i] = driver_syms[i].name;
    offs[i] = driver_syms[i].off;
    opt[i] = driver_syms[i].optional;
  }
  const char *missing = NULL;
  if (!load_syms(cu->libcuda, &cu->d, syms, offs, opt, ND, &missing)) {
    snprintf(cu->drv_msg, sizeof cu->drv_msg,
             "the CUDA driver library has no %s (driver too old)", missing);
    return;
  }
  CUresult r = cu->d.Init(0);
  int n = 0;
  if (r == 0)
    r = cu->d.DeviceGetCount(&n);
  if (r != 0) {
    const char *name = NULL, *text = NULL;
    cu->d.GetErrorName(r, &name);
    cu->d.GetErrorString(r, &text);
    snprintf(cu->drv_msg, sizeof cu->drv_msg, "CUDA driver: cuInit failed: %s: %s",
             name ? name : "?", text ? text : "?");
    return;
  }
  if (n <= 0) {
    snprintf(cu->drv_msg, sizeof cu->drv_msg, "CUDA driver: no CUDA device");
    return;
  }
  cu->devs = calloc((size_t)n, sizeof *cu->devs);
  if (!cu->devs) {
    snprintf(cu->drv_msg, sizeof cu->drv_msg, "out of memory");
    return;
  }
  cu->ndevs = n;
  cu->drv_state = 1;
}

/* Device `ordinal`, initialised: driver loaded, primary context retained. */
static tc_status get_device(Cuda *cu, int ordinal, Device **out, tc_error *err) {
  pthread_mutex_lock(&cu->mu);
  if (cu->drv_state == 0)
    load_driver_locked(cu);
  tc_status st = TC_OK;
  if (cu->drv_state < 0) {
    error_set(err, TC_ERR_UNSUPPORTED, NULL, (Loc){0, 0}, "%s", cu->drv_msg);
    st = TC_ERR_UNSUPPORTED;
  } else if (ordinal < 0 || ordinal >= cu->ndevs) {
    error_set(err, TC_ERR_ARGUMENT, NULL, (Loc){0, 0}, "no CUDA device %d (this machine has %d)",
              ordinal, cu->ndevs);
    st = TC_ERR_ARGUMENT;
  } else if (!cu->devs[ordinal].ready) {
    Device *dv = &cu->devs[ordinal];
    int major = 0, minor = 0, pools = 0;
    CUresult r = cu->d.DeviceGet(&dv->dev, ordinal);
    const char *what = "cuDeviceGet";
    if (!r && (r = cu->d.DeviceGetAttribute(&major, CU_ATTR_CC_MAJOR, dv->dev)) == 0 &&
        (r = cu->d.DeviceGetAttribute(&minor, CU_ATTR_CC_MINOR, dv->dev)) == 0 &&
        (r = cu->d.DeviceGetAttribute(&dv->sms, CU_ATTR_MULTIPROCESSOR_COUNT, dv->dev)) == 0) {
      if (cu->d.DeviceGetAttribute(&pools, CU_ATTR_MEMORY_POOLS_SUPPORTED, dv->dev))
        pools = 0;
      what = "cuDevicePrimaryCtxRetain";
      r = cu->d.DevicePrimaryCtxRetain(&dv->ctx, dv->dev);
    }
    if (r) {
      cu_error(cu, err, TC_ERR_RUNTIME, what, r);
      st = TC_ERR_RUNTIME;
    } else {
      dv->arch = 10 * major + minor;
      dv->pools = pools && cu->d.MemAllocAsync && cu->d.MemFreeAsync;
      dv->ready = true;
    }
  }
  *out = st ? NULL : &cu->devs[ordinal];
  pthread_mutex_unlock(&cu->mu);
  return st;
}

tc_status cuda_device_arch(Cuda *cu, int device, int *arch, tc_error *err) {
  Device *dv;
  tc_status st = get_device(cu, device, &dv, err);
  if (!st)
    *arch = dv->arch;
  return st;
}

static tc_status push(Cuda *cu, Device *dv, tc_error *err) {
  CU(cu, err, cu->d.CtxPushCurrent(dv->ctx), "cuCtxPushCurrent");
  return TC_OK;
}

static void pop(Cuda *cu) {
  CUcontext c;
  cu->d.CtxPopCurrent(&c);
}

/* ---- loading NVRTC ---- */

static bool try_nvrtc(Cuda *cu, const char *path) {
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h)
    return false;
  enum { NN = sizeof nvrtc_syms / sizeof nvrtc_syms[0] };
  const char *names[NN];
  size_t offs[NN];
  for (size_t i = 0; i < NN; i++) {
    names[i] = nvrtc_syms[i].name;
    offs[i] = nvrtc_syms[i].off;
  }
  const char *missing = NULL;
  Nvrtc r;
  if (!load_syms(h, &r, names, offs, NULL, NN, &missing)) {
    dlclose(h);
    return false;
  }
  cu->libnvrtc = h;
  cu->r = r;
  snprintf(cu->rtc_path, sizeof cu->rtc_path, "%s", path);
  return true;
}

/* The first libnvrtc matching `pattern` (a glob) that loads. */
static bool try_glob(Cuda *cu, const char *pattern) {
  glob_t g;
  bool ok = false;
  if (glob(pattern, 0, NULL, &g) == 0) {
    for (size_t i = g.gl_pathc; i > 0 && !ok; i--) /* the newest version sorts last */
      ok = try_nvrtc(cu, g.gl_pathv[i - 1]);
  }
  globfree(&g);
  return ok;
}

/* In a Python site-packages directory: the nvidia-cuda-nvrtc wheels. */
static bool try_site(Cuda *cu, const char *site) {
  char pat[PATH_MAX];
  static const char *const rel[] = {"nvidia/cu13/lib/libnvrtc.so.*[0-9]",
                                    "nvidia/cuda_nvrtc/lib/libnvrtc.so.*[0-9]",
                                    "nvidia/*/lib/libnvrtc.so.*[0-9]"};
  for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++)
    if (snprintf(pat, sizeof pat, "%s/%s", site, rel[i]) < (int)sizeof pat && try_glob(cu, pat))
      return true;
  return false;
}

/* Site-packages directories of the libraries this process has mapped. */
static bool try_mapped_sites(Cuda *cu) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f)
    return false;
  char line[PATH_MAX + 256], last[PATH_MAX] = "";
  bool ok = false;
  while (!ok && fgets(line, sizeof line, f)) {
    char *p = strchr(line, '/');
    if (!p)
      continue;
    static const char *const marks[] = {"/site-packages/", "/dist-packages/"};
    for (size_t m = 0; m < 2 && !ok; m++) {
      char *s = strstr(p, marks[m]);
      if (!s)
        continue;
      size_t n = (size_t)(s - p) + strlen(marks[m]) - 1;
      if (n >= sizeof last || (strlen(last) == n && !strncmp(last, p, n)))
        continue;
      memcpy(last, p, n);
      last[n] = '\0';
      ok = try_site(cu, last);
    }
  }
  fclose(f);
  return ok;
}

static void load_nvrtc_locked(Cuda *cu) {
  cu->rtc_state = -1;
  const char *env = getenv("TENSORC_NVRTC");
  char pat[PATH_MAX];
  bool ok = false;
  if (env && *env) {
    ok = try_nvrtc(cu, env);
    if (!ok && snprintf(pat, sizeof pat, "%s/libnvrtc.so*", env) < (int)sizeof pat)
      ok = try_glob(cu, pat);
    if (!ok) {
      snprintf(cu->rtc_msg, sizeof cu->rtc_msg,
               "TENSORC_NVRTC=%s names no loadable libnvrtc", env);
      return;
    }
  }
  static const char *const sonames[] = {"libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12"};
  for (size_t i = 0; !ok && i < sizeof sonames / sizeof sonames[0]; i++)
    ok = try_nvrtc(cu, sonames[i]);
  if (!ok)
    ok = try_mapped_sites(cu);
  const char *home = getenv("HOME"), *venv = getenv("VIRTUAL_ENV"), *conda = getenv("CONDA_PREFIX");
  const char *pyenv = getenv("PYENV_ROOT");
  const struct {
    const char *base, *fmt;
  } sites[] = {
      {venv, "%s/lib/python3*/site-packages"},
      {conda, "%s/lib/python3*/site-packages"},
      {pyenv, "%s/versions/*/lib/python3*/site-packages"},
      {home, "%s/.pyenv/versions/*/lib/python3*/site-packages"},
      {home, "%s/.local/lib/python3*/site-packages"},
      {"", "%s/usr/local/lib/python3*/dist-packages"},
      {"", "%s/usr/local/lib/python3*/site-packages"},
      {"", "%s/usr/lib/python3/dist-packages"},
      {"", "%s/opt/conda/lib/python3*/site-packages"},
  };
  for (size_t i = 0; !ok && i < sizeof sites / sizeof sites[0]; i++) {
    glob_t g;
    if (!sites[i].base || snprintf(pat, sizeof pat, sites[i].fmt, sites[i].base) >= (int)sizeof pat)
      continue;
    if (glob(pat, 0, NULL, &g) == 0)
      for (size_t k = 0; k < g.gl_pathc && !ok; k++)
        ok = try_site(cu, g.gl_pathv[k]);
    globfree(&g);
  }
  static const char *const toolkit[] = {"/usr/local/cuda/lib64/libnvrtc.so*",
                                        "/usr/local/cuda-*/lib64/libnvrtc.so*",
                                        "/usr/lib/x86_64-linux-gnu/libnvrtc.so*",
                                        "/usr/lib/aarch64-linux-gnu/libnvrtc.so*"};
  for (size_t i = 0; !ok && i < sizeof toolkit / sizeof toolkit[0]; i++)
    ok = try_glob(cu, toolkit[i]);
  if (!ok) {
    snprintf(cu->rtc_msg, sizeof cu->rtc_msg,
             "NVRTC not found: install it (python3 -m pip install nvidia-cuda-nvrtc) or set "
             "TENSORC_NVRTC to libnvrtc.so's path");
    return;
  }
  int major = 0, minor = 0;
  cu->r.Version(&major, &minor);
  snprintf(cu->rtc_id, sizeof cu->rtc_id, "nvrtc %d.%d (%s)", major, minor, cu->rtc_path);
  cu->rtc_state = 1;
}

static tc_status get_nvrtc(Cuda *cu, tc_error *err) {
  pthread_mutex_lock(&cu->mu);
  if (cu->rtc_state == 0)
    load_nvrtc_locked(cu);
  tc_status st = cu->rtc_state > 0 ? TC_OK : TC_ERR_UNSUPPORTED;
  if (st)
    error_set(err, st, NULL, (Loc){0, 0}, "%s", cu->rtc_msg);
  pthread_mutex_unlock(&cu->mu);
  return st;
}

const char *cuda_nvrtc_identity(Cuda *cu, tc_error *err) {
  return get_nvrtc(cu, err) ? NULL : cu->rtc_id;
}

tc_status cuda_compile(Cuda *cu, const char *src, size_t len, int arch, unsigned char **cubin,
                       size_t *n, tc_error *err) {
  *cubin = NULL;
  *n = 0;
  tc_status st = get_nvrtc(cu, err);
  if (st)
    return st;
  char *text = malloc(len + 1); /* NVRTC wants a NUL-terminated source */
  if (!text) {
    error_set(err, TC_ERR_NOMEM, NULL, (Loc){0, 0}, "out of memory");
    return TC_ERR_NOMEM;
  }
  memcpy(text, src, len);
  text[len] = '\0';
  char archopt[32];
  snprintf(archopt, sizeof archopt, "-arch=sm_%d", arch);
  const char *opts[] = {archopt, "--fmad=false"};
  nvrtcProgram prog = NULL;
  nvrtcResult r = cu->r.CreateProgram(&prog, text, "tensorc.cu", 0, NULL, NULL);
  free(text);
  if (r) {
    error_set(err, TC_ERR_COMPILER, NULL, (Loc){0, 0}, "NVRTC: nvrtcCreateProgram: %s",
              cu->r.GetErrorString(r));
    return TC_ERR_COMPILER;
  }
  r = cu->r.CompileProgram(prog, (int)(sizeof opts / sizeof opts[0]), opts);
  if (r) {
    size_t loglen = 0;
    char *log = NULL;
    if (!cu->r.GetProgramLogSize(prog, &loglen) && loglen && (log = malloc(loglen + 1)) &&
        cu->r.GetProgramLog(prog, log))
      log[0] = '\0';
    error_set(err, TC_ERR_COMPILER, NULL, (Loc){0, 0}, "NVRTC (sm_%d) failed: %s\n%s", arch,
              cu->r.GetErrorString(r), log ? log : "");
    free(log);
    cu->r.DestroyProgram(&prog);
    return TC_ERR_COMPILER;
  }
  size_t size = 0;
  unsigned char *bin = NULL;
  r = cu->r.GetCUBINSize(prog, &size);
  if (!r && size && (bin = malloc(size)))
    r = cu->r.GetCUBIN(prog, (char *)bin);
  cu->r.DestroyProgram(&prog);
  if (r || !size || !bin) {
    free(bin);
    error_set(err, r ? TC_ERR_COMPILER : TC_ERR_NOMEM, NULL, (Loc){0, 0},
              "NVRTC: no cubin: %s", r ? cu->r.GetErrorString(r) : "out of memory");
    return r ? TC_ERR_COMPILER : TC_ERR_NOMEM;
  }
  *cubin = bin;
  *n = size;
  return TC_OK;
}

/* ---- modules ---- */

struct CudaModule {
  int device;
  CUmodule mod;
  int nkernels;
  CUfunction fn[]; /* tc_k0, tc_k0n, tc_k1, ...: each kernel's wide and narrow variant */
};

tc_status cuda_module_load(Cuda *cu, int device, const unsigned char *cubin, size_t n,
                           int nkernels, CudaModule **out, tc_error *err) {
  (void)n;
  *out = NULL;
  Device *dv;
  tc_status st = get_device(cu, device, &dv, err);
  if (st || (st = push(cu, dv, err)))
    return st;
  CudaModule *m = calloc(1, sizeof *m + sizeof(CUfunction) * (size_t)(2 * nkernels + 1));
  if (!m) {
    pop(cu);
    error_set(err, TC_ERR_NOMEM, NULL, (Loc){0, 0}, "out of memory");
    return TC_ERR_NOMEM;
  }
  m->device = device;
  m->nkernels = nkernels;
  CUresult r = cu->d.ModuleLoadData(&m->mod, cubin);
  const char *what = "cuModuleLoadData";
  for (int k = 0; !r && k < 2 * nkernels; k++) {
    char name[32];
    snprintf(name, sizeof name, "tc_k%d%s", k / 2, k % 2 ? "n" : "");
    what = "cuModuleGetFunction";
    r = cu->d.ModuleGetFunction(&m->fn[k], m->mod, name);
  }
  if (r) {
    cu_error(cu, err, TC_ERR_RUNTIME, what, r);
    if (m->mod)
      cu->d.ModuleUnload(m->mod);
    free(m);
    pop(cu);
    return TC_ERR_RUNTIME;
  }
  pop(cu);
  *out = m;
  return TC_OK;
}

void cuda_module_free(Cuda *cu, CudaModule *m) {
  if (!m)
    return;
  Device *dv;
  tc_error ignored;
  if (m->mod && !get_device(cu, m->device, &dv, &ignored) && !push(cu, dv, &ignored)) {
    cu->d.ModuleUnload(m->mod);
    pop(cu);
  }
  free(m);
}

/* ---- entries: one IRFunc's cubins (by architecture) and modules (by device) ---- */

typedef struct Cubin {
  int arch;
  unsigned char *bytes;
  size_t n;
} Cubin;

struct CudaEntry {
  Arena arena;       /* fn and plan */
  IRFunc *fn;
  GpuPlan *plan;
  char *src;
  size_t len;
  Cubin cubins[4];
  int ncubins;
  CudaModule **mods; /* by device ordinal */
  int nmods;
};

CudaEntry *cuda_entry_new(Arena *a, IRFunc *fn, GpuPlan *plan, const char *src, size_t len) {
  CudaEntry *e = calloc(1, sizeof *e);
  char *copy = malloc(len + 1);
  if (!e || !copy) {
    free(e);
    free(copy);
    return NULL;
  }
  memcpy(copy, src, len);
  copy[len] = '\0';
  e->arena = *a;
  *a = (Arena){0};
  e->fn = fn;
  e->plan = plan;
  e->src = copy;
  e->len = len;
  return e;
}

void cuda_entry_free(Cuda *cu, CudaEntry *e) {
  if (!e)
    return;
  for (int i = 0; i < e->nmods; i++)
    cuda_module_free(cu, e->mods[i]);
  for (int i = 0; i < e->ncubins; i++)
    free(e->cubins[i].bytes);
  free(e->mods);
  free(e->src);
  arena_free(&e->arena);
  free(e);
}

IRFunc *cuda_entry_fn(const CudaEntry *e) { return e->fn; }
const GpuPlan *cuda_entry_plan(const CudaEntry *e) { return e->plan; }

/* The cubin for `arch`: memory, disk cache, or NVRTC. */
static tc_status entry_cubin(Cuda *cu, Cache *cache, CudaEntry *e, int arch, Cubin **out,
                             int *how, tc_error *err) {
  for (int i = 0; i < e->ncubins; i++)
    if (e->cubins[i].arch == arch) {
      *out = &e->cubins[i];
      *how = 1;
      return TC_OK;
    }
  if (e->ncubins == (int)(sizeof e->cubins / sizeof e->cubins[0])) {
    error_set(err, TC_ERR_UNSUPPORTED, NULL, (Loc){0, 0}, "too many GPU architectures");
    return TC_ERR_UNSUPPORTED;
  }
  const char *rtc = cuda_nvrtc_identity(cu, err);
  if (!rtc)
    return TC_ERR_UNSUPPORTED;
  char id[PATH_MAX + 160];
  snprintf(id, sizeof id, "tensorc %s cuda sm_%d --fmad=false %s", TC_VERSION, arch, rtc);
  Cubin *c = &e->cubins[e->ncubins];
  c->arch = arch;
  if (cache && cache_blob_load(cache, id, e->src, e->len, "cubin", &c->bytes, &c->n)) {
    *how = 2;
  } else {
    tc_status st = cuda_compile(cu, e->src, e->len, arch, &c->bytes, &c->n, err);
    if (st)
      return st;
    if (cache)
      cache_blob_store(cache, id, e->src, e->len, "cubin", c->bytes, c->n);
    *how = 0;
  }
  e->ncubins++;
  *out = c;
  return TC_OK;
}

tc_status cuda_entry_module(Cuda *cu, Cache *cache, CudaEntry *e, int device, CudaModule **m,
                            int *how, tc_error *err) {
  *m = NULL;
  *how = 1;
  if (device >= 0 && device < e->nmods && e->mods[device]) {
    *m = e->mods[device];
    return TC_OK;
  }
  int arch;
  Cubin *c;
  tc_status st = cuda_device_arch(cu, device, &arch, err);
  if (st || (st = entry_cubin(cu, cache, e, arch, &c, how, err)))
    return st;
  if (device >= e->nmods) {
    CudaModule **mods = realloc(e->mods, sizeof *mods * (size_t)(device + 1));
    if (!mods) {
      error_set(err, TC_ERR_NOMEM, NULL, (Loc){0, 0}, "out of memory");
      return TC_ERR_NOMEM;
    }
    for (int i = e->nmods; i <= device; i++)
      mods[i] = NULL;
    e->mods = mods;
    e->nmods = device + 1;
  }
  st = cuda_module_load(cu, device, c->bytes, c->n, e->plan->nkernels, &e->mods[device], err);
  *m = e->mods[device];
  return st;
}

/* ---- evaluating host steps: integer IR over sizes, shapes, strides ---- */

typedef struct Env {
  const int64_t *sizes, *shape, *stride;
} Env;

static int64_t wrap(tc_dtype t, int64_t v) {
  const DTypeInfo *d = &dtype_info[t];
  if (d->is_bool)
    return v != 0;
  if (d->bits >= 64)
    return v;
  uint64_t mask = ((uint64_t)1 << d->bits) - 1, u = (uint64_t)v & mask;
  if (d->is_signed && (u >> (d->bits - 1)))
    u |= ~mask;
  return (int64_t)u;
}

static int64_t floordiv(int64_t a, int64_t b) {
  if (b == 0)
    return 0;
  if (b == -1)
    return (int64_t)(0 - (uint64_t)a);
  int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t floormod(int64_t a, int64_t b) {
  if (b == 0 || b == -1)
    return 0;
  int64_t r = a % b;
  return (r != 0 && (r < 0) != (b < 0)) ? r + b : r;
}

static bool eval(const IRExpr *e, const Env *env, int64_t *out);

static bool eval_bin(const IRExpr *e, const Env *env, int64_t *out) {
  int64_t a, b;
  if (!eval(e->a, env, &a))
    return false;
  if (e->op == OP_AND || e->op == OP_OR) { /* lazy */
    if ((e->op == OP_AND) != (a != 0)) {
      *out = a != 0;
      return true;
    }
    if (!eval(e->b, env, &b))
      return false;
    *out = b != 0;
    return true;
  }
  if (!eval(e->b, env, &b))
    return false;
  bool u64 = e->a->type == TC_UINT64;
  uint64_t ua = (uint64_t)a, ub = (uint64_t)b;
  int64_t v;
  switch (e->op) {
  case OP_ADD: v = (int64_t)(ua + ub); break;
  case OP_SUB: v = (int64_t)(ua - ub); break;
  case OP_MUL: v = (int64_t)(ua * ub); break;
  case OP_DIV: v = u64 ? (int64_t)(ub ? ua / ub : 0) : floordiv(a, b); break;
  case OP_MOD: v = u64 ? (int64_t)(ub ? ua % ub : 0) : floormod(a, b); break;
  case OP_MIN: v = (u64 ? ua < ub : a < b) ? a : b; break;
  case OP_MAX: v = (u64 ? ua > ub : a > b) ? a : b; break;
  case OP_LT: v = u64 ? ua < ub : a < b; break;
  case OP_LE: v = u64 ? ua <= ub : a <= b; break;
  case OP_GT: v = u64 ? ua > ub : a > b; break;
  case OP_GE: v = u64 ? ua >= ub : a >= b; break;
  case OP_EQ: v = a == b; break;
  case OP_NE: v = a != b; break;
  default: return false;
  }
  *out = wrap(e->type, v);
  return true;
}

/* Integer (or bool) expressions only; false for anything else. */
static bool eval(const IRExpr *e, const Env *env, int64_t *out) {
  if (!e || dtype_is_float(e->type))
    return false;
  int64_t a;
  switch (e->kind) {
  case IR_INT:
    *out = e->ival;
    return true;
  case IR_VAR: {
    const IRVar *v = e->var;
    switch (v->kind) {
    case VAR_SIZE: *out = env->sizes[v->sym->id]; return true;
    case VAR_SHAPE: *out = env->shape[v->buf->dim_offset + v->dim]; return true;
    case VAR_STRIDE: *out = env->stride[v->buf->dim_offset + v->dim]; return true;
    default: return false;
    }
  }
  case IR_BIN:
    return eval_bin(e, env, out);
  case IR_UN:
    if (!eval(e->a, env, &a))
      return false;
    *out = wrap(e->type, e->op == OP_NOT ? !a : (int64_t)(0 - (uint64_t)a));
    return true;
  case IR_SELECT:
    if (!eval(e->a, env, &a))
      return false;
    return eval(a ? e->b : e->c, env, out);
  case IR_CAST:
    if (!eval(e->a, env, &a))
      return false;
    *out = wrap(e->type, a);
    return true;
  case IR_FAIL:
    *out = 0;
    return true;
  default:
    return false;
  }
}

/* ---- runs ---- */

typedef struct Alloc {
  CUdeviceptr p;
  bool async;
} Alloc;

typedef struct Run {
  Cuda *cu;
  Device *dv;
  CudaModule *m;
  CUstream stream;
  uint64_t *slots;
  Env env;
  Alloc *allocs;
  int nallocs;
  CudaFailure *fail;
  tc_error *err;
  bool narrow; /* every offset of every buffer fits in int32: the narrow kernels */
} Run;

static tc_status dev_alloc(Run *R, size_t bytes, CUdeviceptr *p) {
  Cuda *cu = R->cu;
  bool async = R->dv->pools;
  if (bytes == 0)
    bytes = 1;
  if (async)
    CU(cu, R->err, cu->d.MemAllocAsync(p, bytes, R->stream), "cuMemAllocAsync");
  else
    CU(cu, R->err, cu->d.MemAlloc(p, bytes), "cuMemAlloc");
  R->allocs[R->nallocs++] = (Alloc){*p, async};
  return TC_OK;
}

/* The byte span [lo, hi) of a view around its data pointer. */
static bool span(const View *v, int64_t *lo, int64_t *hi) {
  int64_t es = (int64_t)dtype_info[v->dtype].size, a = 0, b = 0;
  *lo = *hi = 0;
  for (int k = 0; k < v->rank; k++)
    if (v->shape[k] == 0)
      return true;
  for (int k = 0; k < v->rank; k++) {
    int64_t ext;
    if (__builtin_mul_overflow(v->shape[k] - 1, v->stride[k], &ext) ||
        __builtin_mul_overflow(ext, es, &ext) ||
        __builtin_add_overflow(ext < 0 ? a : b, ext, ext < 0 ? &a : &b))
      return false;
  }
  *lo = a;
  *hi = b + es;
  return true;
}

static int64_t elements(const View *v) {
  int64_t n = 1;
  for (int k = 0; k < v->rank; k++)
    n *= v->shape[k];
  return n;
}

/* Whether every element offset of v, (i0*stride0 + i1*stride1 + ...) over
 * its shape, fits in int32: kernels may then compute subscripts on 32 bits. */
static bool offsets_fit_i32(const View *v) {
  int64_t lo = 0, hi = 0;
  for (int k = 0; k < v->rank; k++)
    if (v->shape[k] == 0)
      return true;
  for (int k = 0; k < v->rank; k++) {
    int64_t ext;
    if (v->shape[k] > INT32_MAX || v->stride[k] > INT32_MAX || v->stride[k] < -INT32_MAX ||
        __builtin_mul_overflow(v->shape[k] - 1, v->stride[k], &ext) ||
        __builtin_add_overflow(ext < 0 ? lo : hi, ext, ext < 0 ? &lo : &hi))
      return false;
  }
  return lo >= INT32_MIN && hi <= INT32_MAX;
}

/* Device memory for every buffer a kernel uses; slots for data, shapes,
 * strides, sizes. */
static tc_status bind_buffers(Run *R, const IRFunc *f, const GpuPlan *plan, const Binding *b,
                              bool staged) {
  Cuda *cu = R->cu;
  R->narrow = true;
  for (int i = 0; i < f->nbufs; i++)
    R->narrow &= offsets_fit_i32(&b->views[i]);
  for (int i = 0; i < f->nbufs; i++) {
    const View *v = &b->views[i];
    const Buffer *bf = f->bufs[i];
    for (int k = 0; k < bf->rank; k++) {
      R->slots[f->nbufs + bf->dim_offset + k] = (uint64_t)v->shape[k];
      R->slots[f->nbufs + f->ndims + bf->dim_offset + k] = (uint64_t)v->stride[k];
    }
    CUdeviceptr p;
    tc_status st;
    if (!v->data && !plan->buf_used[i]) { /* a temporary the kernels keep on chip */
      R->slots[i] = 0;
    } else if (!v->data) { /* a temporary: zeroed, compact */
      size_t bytes = (size_t)elements(v) * dtype_info[v->dtype].size;
      if ((st = dev_alloc(R, bytes, &p)))
        return st;
      CU(cu, R->err, cu->d.MemsetD8Async(p, 0, bytes ? bytes : 1, R->stream), "cuMemsetD8Async");
      R->slots[i] = p;
    } else if (staged) {
      int64_t lo, hi;
      if (!span(v, &lo, &hi)) {
        error_set(R->err, TC_ERR_ARGUMENT, NULL, (Loc){0, 0}, "a tensor's strides overflow");
        return TC_ERR_ARGUMENT;
      }
      if ((st = dev_alloc(R, (size_t)(hi - lo), &p)))
        return st;
      if (hi > lo)
        CU(cu, R->err, cu->d.MemcpyHtoDAsync(p, v->data + lo, (size_t)(hi - lo), R->stream),
           "cuMemcpyHtoDAsync");
      R->slots[i] = (uint64_t)(p - (CUdeviceptr)lo);
    } else {
      R->slots[i] = (uint64_t)(uintptr_t)v->data;
    }
  }
  for (int s = 0; s < f->nsizes; s++)
    R->slots[f->nbufs + 2 * f->ndims + s] = (uint64_t)b->sizes[s];
  return TC_OK;
}

static unsigned cap_u(int64_t v, int64_t cap) { return (unsigned)(v < 1 ? 1 : v > cap ? cap : v); }

static tc_status launch(Run *R, const GpuStep *s) {
  int64_t outer = 1, inner = 1;
  if ((s->outer && !eval(s->outer, &R->env, &outer)) ||
      (s->inner && !eval(s->inner, &R->env, &inner))) {
    error_set(R->err, TC_ERR_INTERNAL, NULL, (Loc){0, 0},
              "internal error: kernel %d: launch extents are not host expressions", s->kernel);
    return TC_ERR_INTERNAL;
  }
  if (outer <= 0 || (inner <= 0 && s->gk != GK_ROWS))
    return TC_OK; /* nothing to do (a row kernel still writes empty rows' results) */
  unsigned gx = 1, gy = 1, gz = 1, bx = 1, by = 1, smem = 0;
  switch (s->gk) {
  case GK_POINTWISE: {
    int64_t rows = s->rows > 1 ? s->rows : 1; /* a stencil's rows per thread */
    int64_t oy = (outer + rows - 1) / rows;
    while (bx < 256 && (int64_t)bx < inner)
      bx <<= 1;
    by = 256 / bx;
    while (by > 1 && (int64_t)(by / 2) >= oy)
      by >>= 1;
    gx = cap_u((inner + bx - 1) / bx, 0x7fffffff);
    gy = cap_u((oy + by - 1) / by, 65535);
    /* with plenty of blocks, each thread takes 4 iterations (more loads in
     * flight per thread, fewer blocks to schedule) */
    if (rows == 1 && (int64_t)gx * gy >= 64 * (int64_t)R->dv->sms && gx >= 4)
      gx = (gx + 3) / 4;
    break;
  }
  case GK_ROWS: /* about 32 elements of a row per thread (measured best on an H100) */
    bx = (unsigned)s->threads;
    if (s->inner)
      for (bx = 64; bx < 1024 && (int64_t)bx * 32 < inner; bx <<= 1)
        ;
    if (s->inner && inner <= WARP_ROW_MAX) { /* short rows: a warp each, no block barriers */
      bx = 32;
      by = WARP_ROWS;
    }
    gx = cap_u((outer + by - 1) / by, 0x7fffffff);
    if (s->stage) { /* room to keep the rows on chip, when they fit */
      int64_t n = 0;
      if (eval(s->stage, &R->env, &n) && n > 0 && n <= STAGE_MAX / s->stage_size / by)
        smem = (unsigned)(n * s->stage_size * by);
    }
    break;
  case GK_SINGLE:
    bx = (unsigned)s->threads;
    break;
  case GK_TILED: {
    int64_t mid = 1;
    if (!eval(s->mid, &R->env, &mid)) {
      error_set(R->err, TC_ERR_INTERNAL, NULL, (Loc){0, 0},
                "internal error: kernel %d: tile extents are not host expressions", s->kernel);
      return TC_ERR_INTERNAL;
    }
    if (mid <= 0)
      return TC_OK;
    bx = (unsigned)s->threads;
    gx = cap_u((inner + s->tile_n - 1) / s->tile_n, 0x7fffffff);
    gy = cap_u((mid + s->tile_m - 1) / s->tile_m, 65535);
    gz = cap_u(outer, 65535);
    break;
  }
  }
  if (s->kernel < 0 || s->kernel >= R->m->nkernels) {
    error_set(R->err, TC_ERR_INTERNAL, NULL, (Loc){0, 0}, "internal error: no kernel %d",
              s->kernel);
    return TC_ERR_INTERNAL;
  }
  void *params[1] = {R->slots};
  CUfunction fn = R->m->fn[2 * s->kernel + (R->narrow ? 1 : 0)];
  if (smem > 48 * 1024 && R->cu->d.FuncSetAttribute(fn, CU_FUNC_MAX_DYNAMIC_SHARED, STAGE_MAX))
    smem = 0; /* not granted: the kernel reads its rows from memory */
  CU(R->cu, R->err,
     R->cu->d.LaunchKernel(fn, gx, gy, gz, bx, by, 1, smem, R->stream, params, NULL),
     "cuLaunchKernel");
  return TC_OK;
}

/* Runs the steps; a failed host check stops the run (R->fail set). */
static tc_status exec_steps(Run *R, const GpuStep *s) {
  for (; s && !R->fail->failed; s = s->next) {
    int64_t v, value, bound;
    tc_status st = TC_OK;
    switch (s->kind) {
    case GS_CHECK:
      if (!eval(s->check->cond, &R->env, &v))
        goto not_host;
      if (!v) {
        const IRExpr *fl = s->check->value;
        if (!eval(fl->a, &R->env, &value) || !eval(fl->b, &R->env, &bound))
          goto not_host;
        *R->fail = (CudaFailure){1, fl->site, value, bound};
      }
      break;
    case GS_IF:
      if (!eval(s->cond, &R->env, &v))
        goto not_host;
      st = exec_steps(R, v ? s->then : s->els);
      break;
    case GS_LAUNCH:
      st = launch(R, s);
      break;
    }
    if (st)
      return st;
  }
  return TC_OK;
not_host:
  error_set(R->err, TC_ERR_INTERNAL, NULL, (Loc){0, 0},
            "internal error: a host step of the CUDA plan cannot be evaluated on the host");
  return TC_ERR_INTERNAL;
}

/* The device failure record, as emit_cuda.c declares it. */
typedef struct DevFail {
  int claimed, site;
  long long value, bound;
} DevFail;

static tc_status run_locked(Run *R, const IRFunc *f, const GpuPlan *plan, const Binding *b,
                            bool staged) {
  Cuda *cu = R->cu;
  tc_status st = bind_buffers(R, f, plan, b, staged);
  CUdeviceptr fp = 0;
  int fslot = emitcuda_fail_slot(f);
  if (!st && plan->can_fail) {
    st = dev_alloc(R, sizeof(DevFail), &fp);
    if (!st)
      CU(cu, R->err, cu->d.MemsetD8Async(fp, 0, sizeof(DevFail), R->stream), "cuMemsetD8Async");
  }
  R->slots[fslot] = fp;
  if (!st)
    st = exec_steps(R, plan->steps);
  if (st)
    return st;
  if (staged) {
    for (int i = b->def->ninputs; i < b->def->ninputs + b->def->noutputs; i++) {
      const View *v = &b->views[i];
      int64_t lo, hi;
      if (span(v, &lo, &hi) && hi > lo)
        CU(cu, R->err,
           cu->d.MemcpyDtoHAsync(v->data + lo, (CUdeviceptr)(R->slots[i] + (uint64_t)lo),
                                 (size_t)(hi - lo), R->stream),
           "cuMemcpyDtoHAsync");
    }
  }
  DevFail df = {0, 0, 0, 0};
  if (fp)
    CU(cu, R->err, cu->d.MemcpyDtoHAsync(&df, fp, sizeof df, R->stream), "cuMemcpyDtoHAsync");
  if (fp || staged)
    CU(cu, R->err, cu->d.StreamSynchronize(R->stream), "cuStreamSynchronize");
  if (df.claimed && !R->fail->failed)
    *R->fail = (CudaFailure){1, df.site, df.value, df.bound};
  return TC_OK;
}

tc_status cuda_run(Cuda *cu, CudaModule *m, const IRFunc *f, const GpuPlan *plan,
                   const Binding *b, int device, void *stream, bool staged,
                   CudaFailure *fail, tc_error *err) {
  memset(fail, 0, sizeof *fail);
  Device *dv;
  tc_status st = get_device(cu, device, &dv, err);
  if (st)
    return st;
  if (m->device != device) {
    error_set(err, TC_ERR_INTERNAL, NULL, (Loc){0, 0},
              "internal error: a module of device %d run on device %d", m->device, device);
    return TC_ERR_INTERNAL;
  }
  Run R = {cu, dv, m, (CUstream)stream, NULL, {b->sizes, NULL, NULL}, NULL, 0, fail, err, false};
  R.slots = calloc((size_t)plan->nslots + 1, sizeof *R.slots);
  R.allocs = calloc((size_t)f->nbufs + 2, sizeof *R.allocs);
  if (!R.slots || !R.allocs) {
    free(R.slots);
    free(R.allocs);
    error_set(err, TC_ERR_NOMEM, NULL, (Loc){0, 0}, "out of memory");
    return TC_ERR_NOMEM;
  }
  R.env.shape = (const int64_t *)R.slots + f->nbufs;
  R.env.stride = (const int64_t *)R.slots + f->nbufs + f->ndims;
  if (!(st = push(cu, dv, err))) {
    st = run_locked(&R, f, plan, b, staged);
    for (int i = 0; i < R.nallocs; i++) {
      if (R.allocs[i].async)
        cu->d.MemFreeAsync(R.allocs[i].p, R.stream);
      else { /* a synchronous free must not race the kernels */
        cu->d.StreamSynchronize(R.stream);
        cu->d.MemFree(R.allocs[i].p);
      }
    }
    pop(cu);
  }
  free(R.slots);
  free(R.allocs);
  return st;
}

/* ---- library-allocated device outputs ---- */

typedef struct Managed {
  void *lib; /* our own reference to libcuda: outlives the Cuda */
  Driver d;
  CUdevice dev;
  CUdeviceptr p;
} Managed;

tc_status cuda_alloc_managed(Cuda *cu, int device, size_t bytes, void **ptr, void **manager,
                             tc_error *err) {
  *ptr = *manager = NULL;
  Device *dv;
  tc_status st = get_device(cu, device, &dv, err);
  if (st)
    return st;
  Managed *g = calloc(1, sizeof *g);
  if (!g) {
    error_set(err, TC_ERR_NOMEM, NULL, (Loc){0, 0}, "out of memory");
    return TC_ERR_NOMEM;
  }
  g->lib = dlopen(cu->drv_name, RTLD_NOW | RTLD_LOCAL);
  g->d = cu->d;
  g->dev = dv->dev;
  if ((st = push(cu, dv, err))) {
    cuda_managed_release(g);
    return st;
  }
  CUresult r = cu->d.MemAlloc(&g->p, bytes ? bytes : 1);
  pop(cu);
  if (r) {
    g->p = 0;
    cuda_managed_release(g);
    cu_error(cu, err, r == 2 ? TC_ERR_NOMEM : TC_ERR_RUNTIME, "cuMemAlloc", r);
    return r == 2 ? TC_ERR_NOMEM : TC_ERR_RUNTIME;
  }
  *ptr = (void *)(uintptr_t)g->p;
  *manager = g;
  return TC_OK;
}

void cuda_managed_release(void *manager) {
  Managed *g = manager;
  if (!g)
    return;
  CUcontext ctx, old;
  if (g->p && !g->d.DevicePrimaryCtxRetain(&ctx, g->dev)) {
    if (!g->d.CtxPushCurrent(ctx)) {
      g->d.MemFree(g->p);
      g->d.CtxPopCurrent(&old);
    }
    g->d.DevicePrimaryCtxRelease(g->dev);
  }
  if (g->lib)
    dlclose(g->lib);
  free(g);
}

tc_status cuda_memcpy(Cuda *cu, int device, void *dst, const void *src, size_t n,
                      bool to_device, tc_error *err) {
  Device *dv;
  tc_status st = get_device(cu, device, &dv, err);
  if (st || (st = push(cu, dv, err)))
    return st;
  CUresult r = to_device ? cu->d.MemcpyHtoDAsync((CUdeviceptr)(uintptr_t)dst, src, n, NULL)
                         : cu->d.MemcpyDtoHAsync(dst, (CUdeviceptr)(uintptr_t)src, n, NULL);
  if (!r)
    r = cu->d.StreamSynchronize(NULL);
  pop(cu);
  if (r) {
    cu_error(cu, err, TC_ERR_RUNTIME, to_device ? "cuMemcpyHtoD" : "cuMemcpyDtoH", r);
    return TC_ERR_RUNTIME;
  }
  return TC_OK;
}
