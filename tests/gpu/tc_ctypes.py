"""A minimal ctypes binding of libtensorc's C API (include/tensorc.h) for
PyTorch tensors on any device: DLPack DLTensor structs are built from a
tensor's pointer, shape and strides (no copy), and CUDA runs go on PyTorch's
current stream.  The GPU tests and the GPU benchmark use it, so they depend
on the C library only, not on the Python package.

    lib = Lib("build/libtensorc.so")
    prog = lib.compile(source)
    out = prog.run("softmax", [x])            # outputs allocated with torch
"""

import ctypes as C
import os

import torch

MAX_RANK = 8
TARGET_C, TARGET_INTERP, TARGET_CUDA = 0, 1, 2
KDL_CPU, KDL_CUDA = 1, 2


class DLDevice(C.Structure):
    _fields_ = [("device_type", C.c_int), ("device_id", C.c_int32)]


class DLDataType(C.Structure):
    _fields_ = [("code", C.c_uint8), ("bits", C.c_uint8), ("lanes", C.c_uint16)]


class DLTensor(C.Structure):
    _fields_ = [("data", C.c_void_p), ("device", DLDevice), ("ndim", C.c_int32),
                ("dtype", DLDataType), ("shape", C.POINTER(C.c_int64)),
                ("strides", C.POINTER(C.c_int64)), ("byte_offset", C.c_uint64)]


class TcError(C.Structure):
    _fields_ = [("code", C.c_int), ("line", C.c_int), ("col", C.c_int),
                ("file", C.c_char * 256), ("message", C.c_char * 1024),
                ("source_line", C.c_char * 512), ("diagnostic", C.c_char * 2048)]


class TcShape(C.Structure):
    _fields_ = [("rank", C.c_int), ("dims", C.c_int64 * MAX_RANK)]


class TcRunOptions(C.Structure):
    _fields_ = [("target", C.c_int), ("stream", C.c_void_p), ("device", C.c_int)]


class TcPrepareInfo(C.Structure):
    _fields_ = [("seconds", C.c_double), ("source", C.c_int), ("path", C.c_char * 512)]


class TensorcError(RuntimeError):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


_DTYPES = {  # torch dtype -> (DLPack code, bits)
    torch.bool: (6, 8), torch.int8: (0, 8), torch.int16: (0, 16), torch.int32: (0, 32),
    torch.int64: (0, 64), torch.uint8: (1, 8), torch.float16: (2, 16),
    torch.bfloat16: (4, 16), torch.float32: (2, 32), torch.float64: (2, 64),
}
_TC_TO_TORCH = [torch.bool, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8,
                None, None, None, torch.float16, torch.bfloat16, torch.float32, torch.float64]


def default_lib_path():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.environ.get("TENSORC_LIB") or os.path.join(here, "..", "..", "build",
                                                         "libtensorc.so")


class Lib:
    def __init__(self, path=None):
        self.dll = d = C.CDLL(path or default_lib_path())
        vp, ip, i = C.c_void_p, C.c_int, C.c_int
        d.tc_context_new.argtypes = [vp, C.POINTER(vp), C.POINTER(TcError)]
        d.tc_context_free.argtypes = [vp]
        d.tc_compile.argtypes = [vp, C.c_char_p, C.c_char_p, C.c_size_t, C.POINTER(vp),
                                 C.POINTER(TcError)]
        d.tc_program_free.argtypes = [vp]
        d.tc_program_find_entry.argtypes = [vp, C.c_char_p]
        d.tc_entry_num_inputs.argtypes = [vp, i]
        d.tc_entry_num_outputs.argtypes = [vp, i]
        d.tc_infer_shapes.argtypes = [vp, i, C.POINTER(TcShape), i, C.POINTER(TcShape), i,
                                      C.POINTER(TcError)]
        d.tc_run_ex.argtypes = [vp, i, C.POINTER(C.POINTER(DLTensor)), i,
                                C.POINTER(C.POINTER(DLTensor)), i, C.POINTER(TcRunOptions),
                                C.POINTER(TcError)]
        d.tc_prepare_ex.argtypes = [vp, i, C.POINTER(TcRunOptions), C.POINTER(TcPrepareInfo),
                                    C.POINTER(TcError)]
        d.tc_emit.argtypes = [vp, i, i, C.POINTER(vp), C.POINTER(TcError)]
        d.tc_free.argtypes = [vp]
        for f in ("tc_context_new", "tc_compile", "tc_infer_shapes", "tc_run_ex",
                  "tc_prepare_ex", "tc_emit"):
            getattr(d, f).restype = ip
        self.ctx = vp()
        err = TcError()
        self._check(d.tc_context_new(None, C.byref(self.ctx), C.byref(err)), err)

    @staticmethod
    def _check(status, err):
        if status != 0:
            raise TensorcError(status, err.diagnostic.decode(errors="replace") or
                               err.message.decode(errors="replace"))

    def compile(self, source, name="<bench>"):
        prog = C.c_void_p()
        err = TcError()
        src = source.encode()
        self._check(self.dll.tc_compile(self.ctx, name.encode(), src, len(src), C.byref(prog),
                                        C.byref(err)), err)
        return Program(self, prog)

    def close(self):
        if self.ctx:
            self.dll.tc_context_free(self.ctx)
            self.ctx = None


def dltensor(t):
    """A DLTensor viewing torch tensor t (kept alive by the caller)."""
    code, bits = _DTYPES[t.dtype]
    shape = (C.c_int64 * max(t.dim(), 1))(*t.shape)
    strides = (C.c_int64 * max(t.dim(), 1))(*t.stride())
    dev = DLDevice(KDL_CUDA, t.device.index or 0) if t.is_cuda else DLDevice(KDL_CPU, 0)
    d = DLTensor(C.c_void_p(t.data_ptr()), dev, t.dim(), DLDataType(code, bits, 1), shape,
                 strides, 0)
    d._keep = (shape, strides, t)
    return d


class Program:
    def __init__(self, lib, handle):
        self.lib, self.handle = lib, handle

    def __del__(self):
        if self.handle and self.lib.ctx:
            self.lib.dll.tc_program_free(self.handle)
            self.handle = None

    def entry(self, name):
        e = self.lib.dll.tc_program_find_entry(self.handle, name.encode())
        if e < 0:
            raise KeyError(name)
        return e

    def output_shapes(self, e, inputs):
        nin = self.lib.dll.tc_entry_num_inputs(self.handle, e)
        nout = self.lib.dll.tc_entry_num_outputs(self.handle, e)
        ins = (TcShape * max(nin, 1))()
        for k, t in enumerate(inputs):
            ins[k].rank = t.dim()
            for j, s in enumerate(t.shape):
                ins[k].dims[j] = s
        outs = (TcShape * max(nout, 1))()
        err = TcError()
        Lib._check(self.lib.dll.tc_infer_shapes(self.handle, e, ins, nin, outs, nout,
                                                C.byref(err)), err)
        return [tuple(outs[k].dims[j] for j in range(outs[k].rank)) for k in range(nout)]

    def options(self, target, device=0, stream=None):
        o = TcRunOptions(target, None, device)
        if stream is not None:
            o.stream = C.c_void_p(stream)
        return o

    def run(self, entry, inputs, outputs=None, target=TARGET_C, out_dtypes=None, stream=None):
        """Runs `entry`; CUDA tensors go on PyTorch's current stream (or
        `stream`, a raw handle).  Allocates outputs like the first input when
        `outputs` is None.  Returns the outputs."""
        e = self.entry(entry) if isinstance(entry, str) else entry
        if outputs is None:
            shapes = self.output_shapes(e, inputs)
            dev = inputs[0].device
            dts = out_dtypes or [inputs[0].dtype] * len(shapes)
            outputs = [torch.empty(s, dtype=dt, device=dev) for s, dt in zip(shapes, dts)]
        din = [dltensor(t) for t in inputs]
        dout = [dltensor(t) for t in outputs]
        pin = (C.POINTER(DLTensor) * max(len(din), 1))(*[C.pointer(x) for x in din])
        pout = (C.POINTER(DLTensor) * max(len(dout), 1))(*[C.pointer(x) for x in dout])
        on_gpu = any(t.is_cuda for t in list(inputs) + list(outputs))
        if stream is None and on_gpu:
            dev = next(t.device for t in list(inputs) + list(outputs) if t.is_cuda)
            stream = torch.cuda.current_stream(dev).cuda_stream
        opts = self.options(target, stream=stream)
        err = TcError()
        Lib._check(self.lib.dll.tc_run_ex(self.handle, e, pin, len(din), pout, len(dout),
                                          C.byref(opts), C.byref(err)), err)
        return outputs

    def bind(self, entry, inputs, outputs, target=TARGET_C):
        """A callable running `entry` on these tensors with the C call's
        arguments built once (for timing: no Python work per call)."""
        e = self.entry(entry) if isinstance(entry, str) else entry
        keep = [dltensor(t) for t in inputs], [dltensor(t) for t in outputs]
        pin = (C.POINTER(DLTensor) * max(len(inputs), 1))(*[C.pointer(x) for x in keep[0]])
        pout = (C.POINTER(DLTensor) * max(len(outputs), 1))(*[C.pointer(x) for x in keep[1]])
        dev = next((t.device for t in list(inputs) + list(outputs) if t.is_cuda), None)
        stream = torch.cuda.current_stream(dev).cuda_stream if dev is not None else None
        opts = self.options(target, stream=stream)
        err = TcError()
        run, h, nin, nout = self.lib.dll.tc_run_ex, self.handle, len(inputs), len(outputs)

        def call():
            if run(h, e, pin, nin, pout, nout, C.byref(opts), C.byref(err)) != 0:
                raise TensorcError(err.code, err.diagnostic.decode(errors="replace"))
        call.keep = (keep, pin, pout, opts, inputs, outputs)
        return call

    def prepare(self, entry, target=TARGET_CUDA, device=0):
        """Compiles (or loads from the cache) and returns (seconds, source)."""
        e = self.entry(entry) if isinstance(entry, str) else entry
        info = TcPrepareInfo()
        err = TcError()
        o = self.options(target, device)
        Lib._check(self.lib.dll.tc_prepare_ex(self.handle, e, C.byref(o), C.byref(info),
                                              C.byref(err)), err)
        return info.seconds, info.source

    def emit(self, entry, target=TARGET_CUDA):
        e = self.entry(entry) if isinstance(entry, str) else entry
        out = C.c_void_p()
        err = TcError()
        Lib._check(self.lib.dll.tc_emit(self.handle, e, target, C.byref(out), C.byref(err)), err)
        text = C.string_at(out).decode()
        self.lib.dll.tc_free(out)
        return text
