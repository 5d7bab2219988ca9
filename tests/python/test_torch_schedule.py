"""Schedules from Python: define(src, schedule=...) with directive chains or
schedule blocks, results equal to the unscheduled op, the schedule in the
generated code and in explain(), and located errors; the CLI's --schedule."""
import pytest

torch = pytest.importorskip("torch")

import tensorc  # noqa: E402
from test_torch_programs import _context  # noqa: E402,F401  (the tests' context)

BLUR = """
def blur(float(H,W) I) -> (O) {
    T(y,x) = (I(y,x) + I(y,x+1) + I(y,x+2)) / 3.0
    O(y,x) = (T(y,x) + T(y+1,x) + T(y+2,x)) / 3.0
}
"""

CHAINS = """
O.split(y, yo, yi, 8).parallel(yo).vectorize(x, 8)
T.compute_at(O, yo)
"""


def test_chains_and_blocks_give_the_same_results():
    plain = tensorc.define(BLUR).blur
    chains = tensorc.define(BLUR, schedule=CHAINS).blur
    block = tensorc.define(BLUR, schedule="schedule blur {" + CHAINS + "}").blur
    x = torch.randn(37, 29)
    want = plain(x)
    for op in (chains, block):
        torch.testing.assert_close(op(x), want)
    assert "lb" in chains.emit() and "lb" not in plain.emit()  # T in a local buffer
    assert "T.compute_at(O, yo)" in chains.explain()
    assert chains.emit() == block.emit()


def test_schedule_errors_are_located():
    with pytest.raises(tensorc.Error) as e:
        tensorc.define(BLUR, schedule="O.parallel(q)")
    assert "unknown loop 'q' in stage O" in str(e.value)
    assert e.value.line == 7 and e.value.source_line.strip() == "O.parallel(q)"
    with pytest.raises(ValueError):
        tensorc.define(BLUR + BLUR.replace("blur", "blur2"), schedule="O.parallel(y)")


def test_cli_schedule_file(tensorc, tc_file, tmp_path):
    src = tc_file(BLUR)
    sched = tmp_path / "blur.sched"
    sched.write_text("schedule blur {" + CHAINS + "}\n")
    r = tensorc("explain", src, "--schedule", str(sched))
    assert "  O.split(y, yo, yi, 8).parallel(yo).vectorize(x, 8)" in r.stdout
    sched.write_text("schedule blur {\n  T.compute_at(O, q)\n}\n")
    r = tensorc("check", src, "--schedule", str(sched), check_status=1)
    assert "blur.sched:" in r.stderr and "unknown loop 'q' in stage O" in r.stderr
