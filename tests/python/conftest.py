"""Shared fixtures for the tests that drive the `tensorc` binary.

The binary is $TENSORC_BIN (default build/tensorc, relative to the repository
root).  Every test session gets its own kernel cache directory
($TENSORC_CACHE_DIR), so tests never touch ~/.cache/tensorc and kernels
compiled by one test are reused by the next.

Fixtures:
  tensorc_bin   path of the binary (skips the session when it is missing)
  tensorc       run(*args, input=None, check_status=None) -> CompletedProcess;
                asserts the exit status is 0, 1 or 2 (never a signal)
  tc_file       tc_file(source, name="prog.tc") -> path of a new .tc file
"""
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _binary():
    p = Path(os.environ.get("TENSORC_BIN", "build/tensorc"))
    return p if p.is_absolute() else ROOT / p


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory):
    """A fresh kernel cache for the session, also seen by tests that start
    tensorc themselves."""
    d = tmp_path_factory.mktemp("tensorc-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TENSORC_CACHE_DIR", str(d))
        yield d


@pytest.fixture(scope="session")
def tensorc_bin():
    b = _binary()
    if not b.exists():
        pytest.fail(f"{b} does not exist: run `make` first (or set TENSORC_BIN)")
    return b


@pytest.fixture
def tensorc(tensorc_bin, tmp_path):
    def run(*args, input=None, check_status=None, cwd=None, timeout=300):
        r = subprocess.run(
            [str(tensorc_bin), *map(str, args)],
            input=input,
            capture_output=True,
            text=True,
            cwd=cwd or tmp_path,
            timeout=timeout,
        )
        assert r.returncode in (0, 1, 2), (
            f"tensorc {' '.join(map(str, args))} ended with status {r.returncode}"
            f" (a signal?)\nstderr:\n{r.stderr}")
        if check_status is not None:
            assert r.returncode == check_status, (
                f"tensorc {' '.join(map(str, args))}: status {r.returncode},"
                f" expected {check_status}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        return r

    return run


@pytest.fixture
def tc_file(tmp_path):
    def make(source, name="prog.tc"):
        p = tmp_path / name
        p.write_text(source)
        return p

    return make
