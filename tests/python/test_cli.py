"""The `tensorc` command line: exit statuses (0 ok, 1 user error, 2 usage
error, never a signal), `run` on .npy files against numpy (contiguous,
Fortran-order and transposed inputs, scalars, every dtype family, bfloat16
through float32 files), the messages for wrong inputs, --bench, and the
inspection commands emit / explain / passes."""
import re

import numpy as np
import pytest

MATMUL = """\
def matmul(float(M,K) A, float(K,N) B) -> (C) {
    C(m,n) +=! A(m,k) * B(k,n)
}
"""

TWO_DEFS = MATMUL + """
def scale(float alpha, float(N) X) -> (Y) {
    Y(i) = alpha * X(i)
}
"""

DIAG = re.compile(r"^(\S+):(\d+):(\d+): error: .+\n.*\n *\^\n$")


def save(tmp_path, name, array):
    p = tmp_path / f"{name}.npy"
    np.save(p, array)
    return p


def rand(shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(dtype)


# ---- usage and exit statuses ----

def test_version_and_help(tensorc):
    r = tensorc("--version", check_status=0)
    assert re.fullmatch(r"tensorc \d+\.\d+\.\d+\n", r.stdout)
    r = tensorc("--help", check_status=0)
    assert "usage: tensorc" in r.stdout
    for cmd in ("check", "run", "emit", "explain", "passes"):
        assert f"tensorc {cmd} FILE.tc" in r.stdout
    r = tensorc("run", "--help", check_status=0)
    assert "--bench" in r.stdout


@pytest.mark.parametrize("args", [
    [],
    ["frobnicate", "x.tc"],
    ["--frobnicate"],
    ["check"],
    ["check", "a.tc", "b.tc"],
    ["check", "a.tc", "--entry", "matmul"],
    ["run", "a.tc", "--frobnicate"],
    ["run", "a.tc", "--bench", "zero"],
    ["run", "a.tc", "--bench", "0"],
    ["run", "a.tc", "--bench"],
    ["run", "a.tc", "--in", "A"],
    ["run", "a.tc", "--in", "=a.npy"],
    ["run", "a.tc", "--target", "gpu"],
    ["run", "a.tc", "--entry", "x", "--entry", "y"],
    ["emit", "a.tc", "--target", "interp"],
    ["emit", "a.tc", "--in", "A=a.npy"],
    ["explain", "a.tc", "--shape", "A"],
    ["check", "a.tc", "-v=1"],
])
def test_usage_errors_exit_2(tensorc, args):
    r = tensorc(*args, check_status=2)
    assert r.stderr.startswith("tensorc: ") or r.stderr.startswith("usage: ")
    assert r.stdout == ""


def test_check_ok_prints_nothing(tensorc, tc_file):
    f = tc_file(MATMUL)
    r = tensorc("check", f, check_status=0)
    assert r.stdout == "" and r.stderr == ""


def test_check_verbose_lists_defs(tensorc, tc_file):
    f = tc_file(TWO_DEFS)
    r = tensorc("check", "-v", f, check_status=0)
    assert r.stdout.splitlines()[0] == f"{f}: ok, 2 defs"
    assert "def matmul(float32(M,K) A, float32(K,N) B) -> (C)" in r.stdout
    assert "def scale(float32 alpha, float32(N) X) -> (Y)" in r.stdout


def test_check_empty_file_is_ok(tensorc, tc_file):
    f = tc_file("# nothing here\n")
    tensorc("check", f, check_status=0)
    r = tensorc("run", f, check_status=1)
    assert "has no def" in r.stderr


def test_check_error_is_located(tensorc, tc_file):
    f = tc_file("def f(float(N) A) -> (B) {\n    B(i) = A(i) + C(i)\n}\n", name="bad.tc")
    r = tensorc("check", "bad.tc", check_status=1)
    assert DIAG.match(r.stderr), r.stderr
    assert r.stderr.startswith("bad.tc:2:")
    assert "'C'" in r.stderr
    assert r.stdout == ""
    # the same error from every command that compiles
    for cmd in ("run", "emit", "explain", "passes"):
        assert tensorc(cmd, "bad.tc", check_status=1).stderr == r.stderr


def test_check_from_stdin(tensorc):
    tensorc("check", "-", input=MATMUL, check_status=0)
    r = tensorc("check", "-", input="def f(", check_status=1)
    assert r.stderr.startswith("<stdin>:1:")


def test_missing_file(tensorc):
    r = tensorc("check", "nowhere.tc", check_status=1)
    assert "cannot open 'nowhere.tc'" in r.stderr
    r = tensorc("check", ".", check_status=1)
    assert "cannot read '.'" in r.stderr


def test_entry_selection(tensorc, tc_file, tmp_path):
    f = tc_file(TWO_DEFS)
    r = tensorc("emit", f, check_status=2)
    assert "2 defs (matmul, scale)" in r.stderr and "--entry" in r.stderr
    r = tensorc("emit", f, "--entry", "nope", check_status=1)
    assert "no def 'nope'" in r.stderr and "matmul, scale" in r.stderr
    tensorc("emit", f, "--entry", "scale", check_status=0)
    tensorc("emit", f, "--entry=scale", check_status=0)
    tensorc("emit", f, "-e", "scale", check_status=0)


# ---- run ----

def run_matmul(tensorc, tc_file, tmp_path, a, b, *extra):
    f = tc_file(MATMUL)
    out = tmp_path / "C.npy"
    tensorc("run", f, "--in", f"A={save(tmp_path, 'A', a)}",
            "--in", f"B={save(tmp_path, 'B', b)}", "--out", f"C={out}", *extra,
            check_status=0)
    return np.load(out)


@pytest.mark.parametrize("m,k,n", [(3, 4, 5), (17, 33, 9), (1, 1, 1), (2, 0, 3)])
def test_run_matmul_matches_numpy(tensorc, tc_file, tmp_path, m, k, n):
    a, b = rand((m, k)), rand((k, n), seed=1)
    c = run_matmul(tensorc, tc_file, tmp_path, a, b)
    assert c.dtype == np.float32 and c.shape == (m, n)
    np.testing.assert_allclose(c, a @ b, rtol=1e-5, atol=1e-5)


def test_run_interp_target_agrees(tensorc, tc_file, tmp_path):
    a, b = rand((5, 6)), rand((6, 4), seed=1)
    c = run_matmul(tensorc, tc_file, tmp_path, a, b, "--target", "interp")
    np.testing.assert_allclose(c, a @ b, rtol=1e-5, atol=1e-5)


def test_run_fortran_order_and_transposed_inputs(tensorc, tc_file, tmp_path):
    a, b = rand((6, 7)), rand((7, 5), seed=1)
    fa = np.asfortranarray(a)
    bt = rand((5, 7), seed=2).T           # F-contiguous view: saved fortran_order
    assert fa.flags.f_contiguous and not fa.flags.c_contiguous
    for x, y in ((fa, b), (a, bt), (fa, bt)):
        c = run_matmul(tensorc, tc_file, tmp_path, x, y)
        np.testing.assert_allclose(c, np.asarray(x) @ np.asarray(y), rtol=1e-5, atol=1e-5)
    header = (tmp_path / "A.npy").read_bytes()[:128]
    assert b"'fortran_order': True" in header


def test_run_scalar_input(tensorc, tc_file, tmp_path):
    f = tc_file("def axpy(float alpha, float(N) X, float(N) Y) -> (Z) {\n"
                "    Z(i) = alpha * X(i) + Y(i)\n}\n")
    x, y = rand(10), rand(10, seed=1)
    alpha = np.array(2.5, dtype=np.float32)
    out = tmp_path / "Z.npy"
    tensorc("run", f, "--in", f"alpha={save(tmp_path, 'alpha', alpha)}",
            "--in", f"X={save(tmp_path, 'X', x)}", "--in", f"Y={save(tmp_path, 'Y', y)}",
            "--out", f"Z={out}", check_status=0)
    np.testing.assert_allclose(np.load(out), 2.5 * x + y, rtol=1e-6)
    # a 1-element vector is not a scalar
    save(tmp_path, "alpha", np.array([2.5], dtype=np.float32))
    r = tensorc("run", f, "--in", f"alpha={tmp_path / 'alpha.npy'}",
                "--in", f"X={tmp_path / 'X.npy'}", "--in", f"Y={tmp_path / 'Y.npy'}",
                check_status=1)
    assert "input alpha" in r.stderr and "rank 1" in r.stderr and "rank 0" in r.stderr


def test_run_scalar_output_and_integer_dtypes(tensorc, tc_file, tmp_path):
    f = tc_file("def stats(int32(N) A, uint8(N) B) -> (S, int64(N) P) {\n"
                "    S +=! A(i) * int32(B(i))\n"
                "    P(i) = int64(A(i)) * 3000000\n}\n")
    a = np.arange(-5, 7, dtype=np.int32)
    b = np.arange(12, dtype=np.uint8)
    s_out, p_out = tmp_path / "S.npy", tmp_path / "P.npy"
    tensorc("run", f, "--in", f"A={save(tmp_path, 'A', a)}", "--in", f"B={save(tmp_path, 'B', b)}",
            "--out", f"S={s_out}", "--out", f"P={p_out}", check_status=0)
    s, p = np.load(s_out), np.load(p_out)
    assert s.shape == () and s.dtype == np.int32 and int(s) == int((a * b.astype(np.int32)).sum())
    assert p.dtype == np.int64 and np.array_equal(p, a.astype(np.int64) * 3000000)


def test_run_float16_and_bool(tensorc, tc_file, tmp_path):
    f = tc_file("def f(float16(N) H, bool(N) M) -> (float16(N) O, Pos) {\n"
                "    O(i) = M(i) ? H(i) * float16(2.0) : float16(0.0)\n"
                "    Pos(i) = H(i) > 0.0\n}\n")
    h = rand(9, np.float16)
    m = np.arange(9) % 2 == 0
    o_out, p_out = tmp_path / "O.npy", tmp_path / "Pos.npy"
    tensorc("run", f, "--in", f"H={save(tmp_path, 'H', h)}", "--in", f"M={save(tmp_path, 'M', m)}",
            "--out", f"O={o_out}", "--out", f"Pos={p_out}", check_status=0)
    o, pos = np.load(o_out), np.load(p_out)
    assert o.dtype == np.float16 and pos.dtype == np.bool_
    np.testing.assert_array_equal(o, np.where(m, h * np.float16(2), np.float16(0)))
    np.testing.assert_array_equal(pos, h > 0)


def bf16_round(x):
    """float32 -> nearest bfloat16 (ties to even), as float32."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16 << 16
    return u.astype(np.uint32).view(np.float32)


def test_run_bfloat16_through_float32_files(tensorc, tc_file, tmp_path):
    f = tc_file("def f(bfloat16(N) A) -> (bfloat16(N) B, C) {\n"
                "    B(i) = A(i) + A(i)\n"
                "    C(i) = float(A(i))\n}\n")
    a = rand(16) * 3
    b_out, c_out = tmp_path / "B.npy", tmp_path / "C.npy"
    tensorc("run", f, "--in", f"A={save(tmp_path, 'A', a)}", "--out", f"B={b_out}",
            "--out", f"C={c_out}", check_status=0)
    b, c = np.load(b_out), np.load(c_out)
    assert b.dtype == np.float32 and c.dtype == np.float32
    np.testing.assert_array_equal(c, bf16_round(a))         # the input was rounded
    np.testing.assert_array_equal(b, bf16_round(2 * bf16_round(a)))
    r = tensorc("run", f, "--in", f"A={save(tmp_path, 'A64', a.astype(np.float64))}",
                check_status=1)
    assert "float64" in r.stderr and "bfloat16" in r.stderr


def test_run_prints_outputs_without_out(tensorc, tc_file, tmp_path):
    f = tc_file(MATMUL)
    a = np.array([[1, 2], [3, 4]], dtype=np.float32)
    b = np.eye(2, dtype=np.float32)
    r = tensorc("run", f, "--in", f"A={save(tmp_path, 'A', a)}", "--in",
                f"B={save(tmp_path, 'B', b)}", check_status=0)
    assert r.stdout == "C: float32, shape 2x2\n[[1. 2.]\n [3. 4.]]\n"
    g = tc_file("def f(float(N,M) X, double(N) Y) -> (Z, W) {\n"
                "    Z(i,j) = X(i,j)\n    W(i) = Y(i)\n}\n", name="copy.tc")
    x = np.array([[0.1, -2.5e-8, np.inf], [np.nan, -0.0, 1e20]], dtype=np.float32)
    y = np.array([0.1, 1 / 3], dtype=np.float64)
    r = tensorc("run", g, "--in", f"X={save(tmp_path, 'X', x)}",
                "--in", f"Y={save(tmp_path, 'Y', y)}", check_status=0)
    assert r.stdout == ("Z: float32, shape 2x3\n[[0.1 -2.5e-08 inf]\n [nan -0. 1e+20]]\n"
                        "W: float64, shape 2\n[0.1 0.3333333333333333]\n")


def test_run_prints_large_outputs_summarised(tensorc, tc_file, tmp_path):
    f = tc_file("def f(int32(N) A) -> (B) {\n    B(i) = A(i) * 2\n}\n")
    r = tensorc("run", f, "--in", f"A={save(tmp_path, 'A', np.arange(5000, dtype=np.int32))}",
                check_status=0)
    assert r.stdout == "B: int32, shape 5000\n[0 2 4 ... 9994 9996 9998]\n"


def test_run_wrong_dtype(tensorc, tc_file, tmp_path):
    f = tc_file(MATMUL)
    r = tensorc("run", f, "--in", f"A={save(tmp_path, 'A', rand((2, 3), np.float64))}",
                "--in", f"B={save(tmp_path, 'B', rand((3, 2)))}", check_status=1)
    assert "input A:" in r.stderr
    assert "has float64, the program declares float32" in r.stderr


def test_run_wrong_rank(tensorc, tc_file, tmp_path):
    f = tc_file(MATMUL)
    r = tensorc("run", f, "--in", f"A={save(tmp_path, 'A', rand((2, 3, 4)))}",
                "--in", f"B={save(tmp_path, 'B', rand((3, 2)))}", check_status=1)
    assert "input A:" in r.stderr and "2x3x4" in r.stderr and "rank 2" in r.stderr


def test_run_wrong_shape_names_tensor_and_dim(tensorc, tc_file, tmp_path):
    f = tc_file(MATMUL)
    r = tensorc("run", f, "--in", f"A={save(tmp_path, 'A', rand((3, 4)))}",
                "--in", f"B={save(tmp_path, 'B', rand((5, 2)))}", check_status=1)
    err = r.stderr
    assert "B" in err and "dim 0" in err and "5" in err and "4" in err, err
    assert "K" in err, err


def test_run_constant_dim_mismatch(tensorc, tc_file, tmp_path):
    f = tc_file("def f(float(3,N) P) -> (Q) {\n    Q(i,j) = P(i,j)\n}\n")
    r = tensorc("run", f, "--in", f"P={save(tmp_path, 'P', rand((4, 2)))}", check_status=1)
    assert "P" in r.stderr and "dim 0" in r.stderr and "3" in r.stderr, r.stderr


def test_run_missing_extra_and_unknown_names(tensorc, tc_file, tmp_path):
    f = tc_file(MATMUL)
    a, b = save(tmp_path, "A", rand((2, 3))), save(tmp_path, "B", rand((3, 2)))
    r = tensorc("run", f, "--in", f"A={a}", check_status=1)
    assert "missing input B" in r.stderr and "--in B=" in r.stderr
    r = tensorc("run", f, "--in", f"A={a}", "--in", f"B={b}", "--in", f"Z={b}", check_status=1)
    assert "no input 'Z'" in r.stderr and "(inputs: A, B)" in r.stderr
    r = tensorc("run", f, "--in", f"A={a}", "--in", f"B={b}", "--in", f"A={a}", check_status=1)
    assert "input 'A' given twice" in r.stderr
    r = tensorc("run", f, "--in", f"A={a}", "--in", f"B={b}", "--out", "D=d.npy", check_status=1)
    assert "no output 'D'" in r.stderr and "(outputs: C)" in r.stderr
    r = tensorc("run", f, "--in", f"A={tmp_path / 'nope.npy'}", "--in", f"B={b}", check_status=1)
    assert "nope.npy: cannot open" in r.stderr


def test_run_bad_npy_files(tensorc, tc_file, tmp_path):
    f = tc_file(MATMUL)
    b = save(tmp_path, "B", rand((3, 2)))
    good = save(tmp_path, "A", rand((2, 3))).read_bytes()
    cases = {
        "text.npy": (b"not numpy at all", "not a .npy file"),
        "trunc.npy": (good[:-5], "truncated data"),
        "complex.npy": (None, "unsupported dtype '<c8'"),
    }
    np.save(tmp_path / "complex.npy", np.zeros((2, 3), np.complex64))
    for name, (data, msg) in cases.items():
        p = tmp_path / name
        if data is not None:
            p.write_bytes(data)
        r = tensorc("run", f, "--in", f"A={p}", "--in", f"B={b}", check_status=1)
        assert f"{p}: " in r.stderr and msg in r.stderr, r.stderr


def test_run_big_endian_input(tensorc, tc_file, tmp_path):
    a, b = rand((4, 3)).astype(">f4"), rand((3, 2), seed=1)
    c = run_matmul(tensorc, tc_file, tmp_path, a, b)
    np.testing.assert_allclose(c, a.astype(np.float32) @ b, rtol=1e-5)


def test_run_unwritable_output(tensorc, tc_file, tmp_path):
    f = tc_file(MATMUL)
    r = tensorc("run", f, "--in", f"A={save(tmp_path, 'A', rand((2, 3)))}",
                "--in", f"B={save(tmp_path, 'B', rand((3, 2)))}",
                "--out", f"C={tmp_path / 'no' / 'dir' / 'C.npy'}", check_status=1)
    assert "output C:" in r.stderr and "cannot create" in r.stderr


def test_run_indirect_index_out_of_range(tensorc, tc_file, tmp_path):
    f = tc_file("def gather(float(V,D) E, int32(B) Idx) -> (O) {\n"
                "    O(b,d) = E(Idx(b), d)\n}\n")
    e = rand((4, 3))
    for target in ("c", "interp"):
        idx = np.array([0, 3, 1], dtype=np.int32)
        out = tmp_path / "O.npy"
        tensorc("run", f, "--in", f"E={save(tmp_path, 'E', e)}",
                "--in", f"Idx={save(tmp_path, 'Idx', idx)}", "--out", f"O={out}",
                "--target", target, check_status=0)
        np.testing.assert_array_equal(np.load(out), e[idx])
        idx = np.array([0, 4, 1], dtype=np.int32)
        r = tensorc("run", f, "--in", f"E={save(tmp_path, 'E', e)}",
                    "--in", f"Idx={save(tmp_path, 'Idx', idx)}", "--target", target,
                    check_status=1)
        assert "E" in r.stderr and "4" in r.stderr, r.stderr


def test_run_bench(tensorc, tc_file, tmp_path):
    f = tc_file(MATMUL)
    r = tensorc("run", f, "--in", f"A={save(tmp_path, 'A', rand((8, 8)))}",
                "--in", f"B={save(tmp_path, 'B', rand((8, 8)))}",
                "--out", f"C={tmp_path / 'C.npy'}", "--bench", "5", check_status=0)
    m = re.fullmatch(r"bench matmul \(c\): 5 runs, median ([\d.]+) ms "
                     r"\(min ([\d.]+) ms, max ([\d.]+) ms\)\n", r.stdout)
    assert m, r.stdout
    lo, med, hi = float(m.group(2)), float(m.group(1)), float(m.group(3))
    assert 0 <= lo <= med <= hi


def test_run_verbose_reports_times(tensorc, tc_file, tmp_path):
    f = tc_file(MATMUL)
    args = ["run", f, "-v", "--in", f"A={save(tmp_path, 'A', rand((3, 3)))}",
            "--in", f"B={save(tmp_path, 'B', rand((3, 3)))}", "--out", f"C={tmp_path / 'C.npy'}"]
    r = tensorc(*args, check_status=0)
    assert re.search(r"parse and check .*: [\d.]+ ms", r.stderr)
    assert re.search(r"kernel matmul: [\d.]+ ms \((compiled|memory cache|disk cache)\)", r.stderr)
    # a second process finds the kernel in the disk cache
    r = tensorc(*args, check_status=0)
    assert "(disk cache)" in r.stderr


def test_run_threads_option(tensorc, tc_file, tmp_path):
    a, b = rand((40, 30)), rand((30, 20), seed=1)
    c = run_matmul(tensorc, tc_file, tmp_path, a, b, "--threads", "3")
    np.testing.assert_allclose(c, a @ b, rtol=1e-5, atol=1e-5)


# ---- emit, explain, passes ----

def test_emit(tensorc, tc_file):
    f = tc_file(MATMUL)
    r = tensorc("emit", f, check_status=0)
    assert "tc_kernel" in r.stdout
    assert "restrict" in r.stdout
    r2 = tensorc("emit", f, "--target", "c", check_status=0)
    assert r2.stdout == r.stdout


def test_explain(tensorc, tc_file):
    f = tc_file(MATMUL)
    r = tensorc("explain", f, check_status=0)
    for word in ("C", "m", "n", "k", "M", "N", "K"):
        assert re.search(rf"\b{word}\b", r.stdout), word
    r = tensorc("explain", f, "--shape", "A=3x4", "--shape", "B=4x5", check_status=0)
    assert re.search(r"\bC\b.*\b3\b\D+\b5\b", r.stdout), r.stdout
    r = tensorc("explain", f, "--shape", "A=3x4", check_status=1)
    assert "no --shape for input B" in r.stderr
    r = tensorc("explain", f, "--shape", "A=3x4x2", "--shape", "B=4x5", check_status=1)
    assert "rank" in r.stderr
    r = tensorc("explain", f, "--shape", "Q=3", check_status=1)
    assert "no input 'Q'" in r.stderr


def test_passes(tensorc, tc_file):
    f = tc_file(MATMUL)
    r = tensorc("passes", f, check_status=0)
    assert r.stdout.count("\n") > 5
    assert "lower" in r.stdout.lower()


def test_sigpipe_is_not_a_signal(tensorc_bin, tc_file):
    import subprocess
    src = "def f(float(N) A) -> (B) {\n" + "".join(
        f"    T{i}(i) = A(i) * {i}.0\n" for i in range(400)) + "    B(i) = T0(i)\n}\n"
    f = tc_file(src)
    p = subprocess.Popen([str(tensorc_bin), "passes", str(f)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.read(10)
    p.stdout.close()
    p.wait(timeout=120)
    assert p.returncode in (0, 1), p.returncode
