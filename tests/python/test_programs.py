"""Every entry of tests/programs/*.tc through `tensorc run`, against numpy.

The programs carry their test cases as `# test:` directives (the format is
tests/programs/README.md).  For each case this test makes random inputs with
numpy as the directives say (a fixed seed per case), writes them as .npy
files, runs

    tensorc run FILE --entry E --in A=a.npy ... --out O=o.npy ...

(inputs of rank 2 and more are written in Fortran order for every second
case, so that kernels also run on non-contiguous views) and compares every
output with the numpy reference of refs.py: same shape, same dtype, and
values equal (integers, bools) or close (floats: tolerance by dtype, or the
entry's `tol` directive).  Cases marked expect=runtime-error must
make tensorc exit with status 1 and a message.

The parameter list of each def is read from the source, so that the test
knows each input's element type (to generate it) and the names of the
outputs; bfloat16 tensors travel as float32 .npy files, as the CLI expects.

Environment: TENSORC_BIN (default build/tensorc); the kernel cache goes to a
temporary directory.
"""
import os
import pathlib
import re
import subprocess
import zlib

import numpy as np
import pytest

import refs

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROGRAMS = ROOT / "tests" / "programs"
BIN = os.environ.get("TENSORC_BIN", str(ROOT / "build" / "tensorc"))

TYPE_ALIASES = {"float": "float32", "double": "float64"}
DTYPES = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16",
          "uint32", "uint64", "float16", "bfloat16", "float32", "float64"}
FLOATS = {"float16", "bfloat16", "float32", "float64"}

# (rtol, atol) against a float64-computed reference, by output dtype.
DEFAULT_TOL = {
    "float64": (1e-9, 1e-12),
    "float32": (1e-4, 1e-5),
    "float16": (5e-3, 5e-3),
    "bfloat16": (2e-2, 2e-2),
}


class DirectiveError(Exception):
    pass


# ---- parsing the sources ----

def strip_comments(text):
    return re.sub(r"#[^\n]*", "", text)


def split_top(s):
    """Splits at commas outside () and []."""
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur))
    return [p.strip() for p in parts]


def canon_type(t):
    t = TYPE_ALIASES.get(t, t)
    if t not in DTYPES:
        raise DirectiveError(f"unknown type {t!r}")
    return t


def parse_dims(s):
    if s is None:
        return []
    return [d.strip() for d in s.split(",") if d.strip()]


def parse_defs(text):
    """{def name: {"inputs": [(name, dtype, dims)], "outputs": [name]}}."""
    defs = {}
    src = strip_comments(text)
    head = re.compile(r"\bdef\s+(\w+)\s*\(")
    pos = 0
    while True:
        m = head.search(src, pos)
        if not m:
            break
        name = m.group(1)
        # the parameter list: up to the matching parenthesis
        i, depth = m.end(), 1
        while depth and i < len(src):
            depth += {"(": 1, ")": -1}.get(src[i], 0)
            i += 1
        params = src[m.end():i - 1]
        m2 = re.compile(r"\s*->\s*\(").match(src, i)
        if not m2:
            raise DirectiveError(f"def {name}: no '-> (' after the parameters")
        j, depth = m2.end(), 1
        while depth and j < len(src):
            depth += {"(": 1, ")": -1}.get(src[j], 0)
            j += 1
        outs = src[m2.end():j - 1]
        inputs = []
        for p in split_top(params):
            pm = re.fullmatch(r"(\w+)\s*(?:\(([^)]*)\))?\s*(\w+)\s*(?::.*)?", p, re.S)
            if not pm:
                raise DirectiveError(f"def {name}: cannot read parameter {p!r}")
            inputs.append((pm.group(3), canon_type(pm.group(1)), parse_dims(pm.group(2))))
        outputs = []
        for o in split_top(outs):
            om = re.fullmatch(r"(?:(\w+)\s*\(([^)]*)\)\s*)?(\w+)", o, re.S)
            if not om:
                raise DirectiveError(f"def {name}: cannot read output {o!r}")
            outputs.append(om.group(3))
        defs[name] = {"inputs": inputs, "outputs": outputs}
        pos = j
    return defs


def parse_shape(spec):
    if spec == "scalar":
        return ()
    try:
        return tuple(int(d) for d in spec.split("x"))
    except ValueError:
        raise DirectiveError(f"bad shape {spec!r}")


def parse_directives(text):
    """[{"entry", "cases": [{"shapes", "error"}], "values", "tol"}]."""
    entries = []
    for lineno, line in enumerate(text.splitlines(), 1):
        m = re.match(r"\s*#\s*test:\s*(.*)$", line)
        if not m:
            continue
        words = m.group(1).split()
        if not words:
            raise DirectiveError(f"line {lineno}: empty directive")
        kind, args = words[0], words[1:]
        if kind == "entry":
            if len(args) != 1:
                raise DirectiveError(f"line {lineno}: entry takes one name")
            entries.append({"entry": args[0], "cases": [], "values": {}, "tol": None})
            continue
        if not entries:
            raise DirectiveError(f"line {lineno}: {kind} before any entry")
        e = entries[-1]
        if kind == "shapes":
            case = {"shapes": {}, "error": False}
            for w in args:
                if w == "expect=runtime-error":
                    case["error"] = True
                    continue
                if "=" not in w:
                    raise DirectiveError(f"line {lineno}: bad shape {w!r}")
                k, v = w.split("=", 1)
                case["shapes"][k] = parse_shape(v)
            e["cases"].append(case)
        elif kind == "values":
            if len(args) != 3:
                raise DirectiveError(f"line {lineno}: values NAME LO HI")
            e["values"][args[0]] = (args[1], args[2])
        elif kind == "tol":
            if len(args) != 2:
                raise DirectiveError(f"line {lineno}: tol RTOL ATOL")
            e["tol"] = (float(args[0]), float(args[1]))
        else:
            raise DirectiveError(f"line {lineno}: unknown directive {kind!r}")
    return entries


def load_corpus():
    """[(file name, entry directives, def signature)], and the parse errors."""
    items, errors = [], []
    for path in sorted(PROGRAMS.glob("*.tc")):
        text = path.read_text()
        try:
            defs = parse_defs(text)
            for e in parse_directives(text):
                items.append((path.name, e, defs.get(e["entry"])))
        except DirectiveError as ex:
            errors.append(f"{path.name}: {ex}")
    return items, errors


CORPUS, CORPUS_ERRORS = load_corpus()


# ---- inputs ----

def parse_int(s):
    try:
        return int(s)
    except ValueError:
        return int(float(s))


def gen_input(rng, dtype, shape, spec):
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype in FLOATS:
        lo, hi = (float(spec[0]), float(spec[1])) if spec else (-1.0, 1.0)
        x = rng.uniform(lo, hi, shape)
        if dtype == "bfloat16":
            return refs.bf16_round(x.astype(np.float32))
        return x.astype(dtype)
    np_t = np.dtype(dtype)
    if spec:
        lo, hi = parse_int(spec[0]), parse_int(spec[1])
    else:
        lo, hi = (0, 16) if np_t.kind == "u" else (-8, 8)
    gen_t = np.uint64 if hi > 2**63 - 1 else np.int64
    return rng.integers(lo, hi, size=shape, dtype=gen_t).astype(np_t)


def make_inputs(fname, entry, idx, case, sig):
    seed = zlib.crc32(f"{fname}:{entry['entry']}:{idx}".encode())
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, dtype, dims in sig["inputs"]:
        if name in case["shapes"]:
            shape = case["shapes"][name]
        elif not dims:
            shape = ()
        else:
            raise DirectiveError(f"no shape for input {name}")
        arrays[name] = np.asarray(gen_input(rng, dtype, shape, entry["values"].get(name)))
        if arrays[name].shape != shape:
            arrays[name] = arrays[name].reshape(shape)
    unknown = set(case["shapes"]) - {n for n, _, _ in sig["inputs"]}
    if unknown:
        raise DirectiveError(f"shapes for unknown inputs {sorted(unknown)}")
    return arrays


# ---- comparing ----

def normalize_outputs(result, names):
    if isinstance(result, dict):
        missing = set(names) - set(result)
        assert not missing, f"reference lacks outputs {sorted(missing)}"
        return [result[n] for n in names]
    if not isinstance(result, (tuple, list)):
        result = (result,)
    assert len(result) == len(names), \
        f"reference gives {len(result)} outputs, the def has {len(names)}"
    return list(result)


def compare(name, got, want, tol):
    if isinstance(want, refs.Bf16):
        dname, want = "bfloat16", want.a
    else:
        want = np.asarray(want)
        dname = want.dtype.name
    assert got.shape == want.shape, f"{name}: shape {got.shape}, expected {want.shape}"
    assert got.dtype == want.dtype, f"{name}: dtype {got.dtype}, expected {want.dtype}"
    if dname in FLOATS:
        rtol, atol = tol if tol else DEFAULT_TOL[dname]
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64),
                                   rtol=rtol, atol=atol, equal_nan=True,
                                   err_msg=f"output {name} ({dname})")
    else:
        if not np.array_equal(got, want):
            bad = np.argwhere(got != want)
            first = tuple(bad[0]) if len(bad) else ()
            raise AssertionError(
                f"output {name} ({dname}): {len(bad)} of {got.size} elements differ; "
                f"first at {first}: got {got[first]!r}, expected {want[first]!r}")


# ---- the tests ----

def case_params():
    out = []
    for fname, entry, sig in CORPUS:
        for idx, case in enumerate(entry["cases"]):
            out.append(pytest.param(fname, entry, sig, idx, case,
                                    id=f"{fname}:{entry['entry']}:{idx}"))
    return out


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tensorc-cache")


@pytest.mark.parametrize("fname,entry,sig,idx,case", case_params())
def test_program(fname, entry, sig, idx, case, cache_dir, tmp_path):
    key = f"{fname}:{entry['entry']}"
    assert sig is not None, f"{key}: no def named {entry['entry']}"
    ref = refs.REFS.get(key)
    assert ref is not None, f"{key}: no reference in refs.py"
    if not os.path.exists(BIN):
        pytest.fail(f"tensorc binary {BIN} does not exist (set TENSORC_BIN)")

    inputs = make_inputs(fname, entry, idx, case, sig)
    cmd = [BIN, "run", str(PROGRAMS / fname), "--entry", entry["entry"]]
    for name, arr in inputs.items():
        path = tmp_path / f"in_{name}.npy"
        # odd cases: column-major files, which the CLI loads as strided views
        np.save(path, np.asfortranarray(arr) if idx % 2 and arr.ndim >= 2 else arr)
        cmd += ["--in", f"{name}={path}"]
    out_paths = {}
    for name in sig["outputs"]:
        out_paths[name] = tmp_path / f"out_{name}.npy"
        cmd += ["--out", f"{name}={out_paths[name]}"]
    env = dict(os.environ, TENSORC_CACHE_DIR=str(cache_dir))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    shapes = " ".join(f"{n}={'x'.join(map(str, a.shape)) or 'scalar'}" for n, a in inputs.items())

    if case["error"]:
        assert proc.returncode == 1, (
            f"{key} [{shapes}]: expected a run-time error (exit 1), got exit "
            f"{proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
        assert (proc.stderr + proc.stdout).strip(), f"{key}: exit 1 without a message"
        return
    assert proc.returncode == 0, (
        f"{key} [{shapes}]: tensorc run exited {proc.returncode}\n"
        f"stdout: {proc.stdout}\nstderr: {proc.stderr}")

    want = normalize_outputs(ref(**inputs), sig["outputs"])
    for name, w in zip(sig["outputs"], want):
        got = np.load(out_paths[name])
        compare(f"{key} [{shapes}] {name}", got, w, entry["tol"])


def test_corpus_parses():
    assert not CORPUS_ERRORS, "\n".join(CORPUS_ERRORS)
    assert len({f for f, _, _ in CORPUS}) >= 45


def test_directives_complete():
    """Each entry names a def and has two valid cases of different sizes;
    each def of a file is an entry; names are unique per file."""
    problems = []
    seen = set()
    for fname, entry, sig in CORPUS:
        key = f"{fname}:{entry['entry']}"
        if key in seen:
            problems.append(f"{key}: entry listed twice")
        seen.add(key)
        if sig is None:
            problems.append(f"{key}: no such def")
            continue
        sizes = {tuple(sorted(c["shapes"].items())) for c in entry["cases"]}
        if len(entry["cases"]) < 2 or len(sizes) < 2:
            problems.append(f"{key}: needs two cases of different sizes")
        for name in entry["values"]:
            if name not in {n for n, _, _ in sig["inputs"]}:
                problems.append(f"{key}: values for unknown input {name}")
    for path in sorted(PROGRAMS.glob("*.tc")):
        text = path.read_text()
        listed = {e["entry"] for e in parse_directives(text)}
        for d in parse_defs(text):
            if d not in listed:
                problems.append(f"{path.name}: def {d} has no test entry")
    assert not problems, "\n".join(problems)


def test_refs_match_entries():
    """Every entry has a reference and every reference an entry."""
    keys = {f"{f}:{e['entry']}" for f, e, _ in CORPUS}
    missing = sorted(keys - set(refs.REFS))
    stale = sorted(set(refs.REFS) - keys)
    assert not missing, f"entries without a reference: {missing}"
    assert not stale, f"references without an entry: {stale}"
