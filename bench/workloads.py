"""The benchmark's workloads: each one a TC program, its inputs, the same
computation in PyTorch (which is also the correctness oracle, run in float64),
its Halide pipeline, and the work it does (flops and compulsory bytes) for the
roofline.

Inputs are made with numpy from a fixed seed in the shapes the TC program
declares.  A workload whose natural PyTorch form uses other shapes (the
grouped convolution: NCHW with groups folded into channels) gets free views in
its torch function, so every driver reads the same memory and every output is
compared in the TC program's shape.

Bytes are the compulsory traffic: every input read once, every output written
once, 4 bytes a float (the triad probe counts the same way).  Flops count a
multiply-add as two; for the pointwise and normalisation workloads they are
nominal (one per arithmetic operation, a transcendental as one) and never set
the roofline floor, which is bandwidth there.
"""

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List

import numpy as np

from bench import halide_pipes

F32 = 4  # bytes


@dataclass
class Workload:
    name: str            # short key: --only takes these
    title: str           # what the table shows
    program: str         # bench/programs/FILE.tc
    entry: str           # the def to run
    inputs: Dict[str, tuple]   # TC input name -> shape, in declaration order
    output: str          # the TC output compared and timed
    torch_fn: Callable   # (*tensors in declaration order) -> output tensor, TC shape
    halide: Callable     # (shapes dict) -> halide_pipes.Pipe
    flops: float
    bytes: float
    scales: Dict[str, float] = field(default_factory=dict)  # input name -> std dev
    rtol: float = 1e-3   # elementwise, plus an absolute 1e-4 x max |reference|

    def make_inputs(self, seed=0) -> Dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        out = {}
        for name, shape in self.inputs.items():
            a = rng.standard_normal(shape, dtype=np.float32)
            s = self.scales.get(name, 1.0)
            if s != 1.0:
                a *= np.float32(s)
            out[name] = a
        return out


def _nbytes(*shapes):
    return float(sum(F32 * math.prod(s) for s in shapes))


# ---- torch forms (imported lazily: the self-test runs without torch) ----

def _gelu(x, y, z):
    import torch.nn.functional as F
    return F.gelu(x) * y + z


def _softmax(x):
    import torch
    return torch.softmax(x, -1)


def _layernorm(x, g, b):
    import torch.nn.functional as F
    return F.layer_norm(x, (x.shape[-1],), g, b, eps=1e-5)


def _matmul(a, b):
    return a @ b


def _matmul_nt(a, b):
    return a @ b.t()


def _bmm(a, b):
    import torch
    return torch.bmm(a, b)


def _conv(i, w):
    import torch.nn.functional as F
    return F.conv2d(i, w, padding=1)


def _group_conv(i, w):
    import torch.nn.functional as F
    n, g, c, h, wd = i.shape
    f = w.shape[1]
    o = F.conv2d(i.reshape(n, g * c, h, wd), w.reshape(g * f, c, 3, 3), padding=1, groups=g)
    return o.reshape(n, g, f, h, wd)


def _blur(x):
    import torch.nn.functional as F
    third = 0.33333334
    p = F.pad(x[None, None], (1, 1, 1, 1), mode="replicate")[0, 0]
    t = (p[:, :-2] + p[:, 1:-1] + p[:, 2:]) * third
    return (t[:-2] + t[1:-1] + t[2:]) * third


def _mlp(x, w1, b1, w2, b2):
    import torch.nn.functional as F
    return F.linear(F.relu(F.linear(x, w1, b1)), w2, b2)


def all_workloads() -> List[Workload]:
    n_pw = 4 * 1024 * 1024
    rows, cols = 4096, 1024
    mm = 1024
    bb, bm = 32, 256
    cn, cc, ch, cf = 8, 64, 56, 64
    gn, gg, gc, gh = 8, 32, 16, 28   # 512 channels in 32 groups of 16
    bh = 4096
    mb, mi, mh, mo = 2048, 1024, 4096, 1024
    return [
        Workload("gelu", "gelu(x)*y+z 4M", "gelu.tc", "gelu_mul_add",
                 {"X": (n_pw,), "Y": (n_pw,), "Z": (n_pw,)}, "O", _gelu, halide_pipes.gelu,
                 flops=12.0 * n_pw, bytes=_nbytes((n_pw,)) * 4),
        Workload("softmax", "softmax 4096x1024", "softmax.tc", "softmax",
                 {"X": (rows, cols)}, "O", _softmax, halide_pipes.softmax,
                 flops=5.0 * rows * cols, bytes=_nbytes((rows, cols)) * 2),
        Workload("layernorm", "layernorm 4096x1024", "layernorm.tc", "layernorm",
                 {"X": (rows, cols), "gamma": (cols,), "beta": (cols,)}, "Y",
                 _layernorm, halide_pipes.layernorm,
                 flops=8.0 * rows * cols, bytes=_nbytes((rows, cols), (rows, cols), (cols,), (cols,))),
        Workload("matmul", "matmul 1024^3", "matmul.tc", "matmul",
                 {"A": (mm, mm), "B": (mm, mm)}, "C", _matmul, halide_pipes.matmul,
                 flops=2.0 * mm ** 3, bytes=_nbytes((mm, mm)) * 3),
        Workload("matmul_nt", "A.B^T 1024^3", "matmul_nt.tc", "matmul_nt",
                 {"A": (mm, mm), "B": (mm, mm)}, "C", _matmul_nt, halide_pipes.matmul_nt,
                 flops=2.0 * mm ** 3, bytes=_nbytes((mm, mm)) * 3),
        Workload("bmm", "bmm 32x256^3", "bmm.tc", "bmm",
                 {"A": (bb, bm, bm), "B": (bb, bm, bm)}, "C", _bmm, halide_pipes.bmm,
                 flops=2.0 * bb * bm ** 3, bytes=_nbytes((bb, bm, bm)) * 3),
        Workload("conv", "conv3x3 8x64x56x56->64", "conv.tc", "conv3x3",
                 {"I": (cn, cc, ch, ch), "Wt": (cf, cc, 3, 3)}, "O", _conv, halide_pipes.conv,
                 flops=2.0 * cn * cf * ch * ch * cc * 9,
                 bytes=_nbytes((cn, cc, ch, ch), (cf, cc, 3, 3), (cn, cf, ch, ch)),
                 scales={"Wt": 1 / math.sqrt(cc * 9)}),
        Workload("group_conv", "group conv g32 8x512x28x28", "group_conv.tc", "group_conv3x3",
                 {"I": (gn, gg, gc, gh, gh), "Wt": (gg, gc, gc, 3, 3)}, "O",
                 _group_conv, halide_pipes.group_conv,
                 flops=2.0 * gn * gg * gc * gh * gh * gc * 9,
                 bytes=_nbytes((gn, gg, gc, gh, gh), (gg, gc, gc, 3, 3), (gn, gg, gc, gh, gh)),
                 scales={"Wt": 1 / math.sqrt(gc * 9)}),
        Workload("blur", "separable blur 4096^2", "blur.tc", "blur3x3",
                 {"I": (bh, bh)}, "O", _blur, halide_pipes.blur,
                 flops=6.0 * bh * bh, bytes=_nbytes((bh, bh)) * 2),
        Workload("mlp", "MLP 2048x1024x4096", "mlp.tc", "mlp2",
                 {"X": (mb, mi), "W1": (mh, mi), "B1": (mh,), "W2": (mo, mh), "B2": (mo,)}, "Y",
                 _mlp, halide_pipes.mlp,
                 flops=2.0 * mb * mi * mh + 2.0 * mb * mh * mo + 2.0 * mb * mh + mb * mo,
                 bytes=_nbytes((mb, mi), (mh, mi), (mh,), (mo, mh), (mo,), (mb, mo)),
                 scales={"W1": 1 / math.sqrt(mi), "W2": 1 / math.sqrt(mh)}),
    ]


def check_output(out: np.ndarray, ref: np.ndarray, rtol: float):
    """None when out matches the float64 reference, else a message saying
    where and by how much it differs."""
    if out.shape != ref.shape:
        return f"shape {out.shape}, expected {ref.shape}"
    if not np.all(np.isfinite(out)):
        bad = np.argwhere(~np.isfinite(out))[0]
        return f"non-finite value {float(out[tuple(bad)])} at {tuple(int(i) for i in bad)}"
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    atol = 1e-4 * scale
    diff = np.abs(out.astype(np.float64) - ref)
    bad = diff > atol + rtol * np.abs(ref)
    if not np.any(bad):
        return None
    i = tuple(int(k) for k in np.unravel_index(int(np.argmax(np.where(bad, diff, -1))), diff.shape))
    return (f"{int(bad.sum())} of {out.size} elements differ; worst at {i}: got {float(out[i]):.8g}, "
            f"expected {float(ref[i]):.8g} (max |ref| {scale:.3g}, rtol {rtol}, atol {atol:.3g})")
