"""Every entry of tests/programs/*.tc through the Python API, against the
numpy references of refs.py.

The cases are those of the `# test:` directives, read by test_programs.py
(imported, not copied), with the same random inputs.  Each case runs

  - with torch tensors, in a layout chosen by the case index: contiguous,
    column-major (transposed storage), or every other element of a larger
    tensor (strided, with a storage offset); rank-0 inputs are passed as
    Python numbers in every third case (run-time scalars);
  - with numpy arrays (column-major for odd cases), unless a bfloat16 is
    involved, which numpy cannot hold;

and compares every output with the reference (shape, dtype, values).  Cases
marked expect=runtime-error must raise tensorc.Error.

It also checks, on every case, that the output shapes computed in Python
from the size programs (tc_output_size: what the fake kernels use under
torch.compile) equal those of tc_infer_shapes.

Other test files reuse `load`, `shared_context` and `to_torch` from here.

The Python tests compile kernels at -O0 (appended to the JIT's flags), into
the session's cache directory: they test the Python layer, and compile
several hundred kernels; the C tests run every program's -O3 kernel.
"""
import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import refs  # noqa: E402
import tensorc  # noqa: E402
import test_programs as tp  # noqa: E402


TEST_CFLAGS = "-O0"


@functools.lru_cache(maxsize=None)
def shared_context():
    """The default context of the Python tests (made once per session)."""
    return tensorc.set_context(cache_dir=os.environ.get("TENSORC_CACHE_DIR"),
                               cflags=TEST_CFLAGS)


@pytest.fixture(scope="session", autouse=True)
def _context(_cache_dir):
    return shared_context()


@functools.lru_cache(maxsize=None)
def load(fname):
    """The Definition of tests/programs/FNAME (one per session)."""
    return tensorc.define((tp.PROGRAMS / fname).read_text(), filename=fname)


def prepare_all():
    """Compiles every entry's kernel, a few at a time (the C compiler runs
    with the GIL released), so that the tests after it find them ready."""
    ops = [load(f)[e["entry"]] for f, e, _ in tp.CORPUS]
    with ThreadPoolExecutor(max(2, os.cpu_count() or 1)) as ex:
        for f in [ex.submit(op.prepare) for op in ops]:
            try:
                f.result()
            except tensorc.Error:
                pass  # the test of that entry reports it


@pytest.fixture(scope="module", autouse=True)
def _prepared():
    prepare_all()


def strided_view(t):
    """t's values in every other element of a larger tensor, at an offset."""
    if t.dim() == 0:
        return t
    big = torch.zeros([2 * n + 1 for n in t.shape], dtype=t.dtype)
    v = big[tuple(slice(1, None, 2) for _ in t.shape)]
    v.copy_(t)
    return v


def to_torch(a, dtype, layout):
    """A numpy input as a torch tensor of its TC dtype in a given layout:
    0 contiguous, 1 column-major, 2 strided with an offset."""
    t = torch.from_numpy(np.array(a, order="C"))
    if dtype == "bfloat16":
        t = t.to(torch.bfloat16)
    if layout == 1 and t.dim() >= 2:
        t = t.permute(*reversed(range(t.dim()))).contiguous().permute(
            *reversed(range(t.dim())))
        assert not t.is_contiguous() or min(t.shape) <= 1
    elif layout == 2:
        t = strided_view(t)
    return t


def torch_inputs(inputs, sig, layout, scalars_as_numbers=False):
    dtypes = {n: t for n, t, _ in sig["inputs"]}
    out = []
    for n, a in inputs.items():
        if scalars_as_numbers and a.ndim == 0:
            out.append(a.item())
        else:
            out.append(to_torch(a, dtypes[n], layout))
    return out


def to_numpy(t):
    if t.dtype == torch.bfloat16:
        return t.float().numpy()
    return t.numpy()


def check_outputs(key, sig, got, want, tol):
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(sig["outputs"]), f"{key}: {len(got)} outputs"
    for name, g, w in zip(sig["outputs"], got, want):
        tp.compare(f"{key} {name}", to_numpy(g) if isinstance(g, torch.Tensor) else g, w, tol)


def uses_bf16(sig, op):
    return any(t == "bfloat16" for _, t, _ in sig["inputs"]) or \
        any(p.dtype == "bfloat16" for p in op.outputs)


@pytest.mark.parametrize("fname,entry,sig,idx,case", tp.case_params())
def test_program(fname, entry, sig, idx, case):
    key = f"{fname}:{entry['entry']}"
    op = load(fname)[entry["entry"]]
    inputs = tp.make_inputs(fname, entry, idx, case, sig)
    targs = torch_inputs(inputs, sig, idx % 3, scalars_as_numbers=idx % 3 == 1)

    if case["error"]:
        with pytest.raises(tensorc.Error) as ei:
            op(*targs)
        assert ei.value.code in ("runtime", "argument"), str(ei.value)
        assert str(ei.value)
        return

    want = tp.normalize_outputs(refs.REFS[key](**inputs), sig["outputs"])
    check_outputs(f"{key} [torch layout {idx % 3}]", sig, op(*targs), want, entry["tol"])

    if not uses_bf16(sig, op):
        nargs = [np.asfortranarray(a) if idx % 2 and a.ndim >= 2 else a
                 for a in inputs.values()]
        got = op(*nargs)
        for g in (got if isinstance(got, tuple) else (got,)):
            assert isinstance(g, np.ndarray)
        check_outputs(f"{key} [numpy]", sig, got, want, entry["tol"])


@pytest.mark.parametrize("fname,entry,sig,idx,case", tp.case_params())
def test_size_programs(fname, entry, sig, idx, case):
    """The fake kernels' shapes (size programs evaluated in Python) equal
    tc_infer_shapes'."""
    op = load(fname)[entry["entry"]]
    inputs = tp.make_inputs(fname, entry, idx, case, sig)
    shapes = [a.shape for a in inputs.values()]
    reg = op._spec().torch
    try:
        want = op.infer_shapes(*shapes)
    except tensorc.Error:
        assert case["error"]
        return
    assert [tuple(s) for s in reg.output_shapes(shapes)] == list(want)
