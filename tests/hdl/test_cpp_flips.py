"""The cpp clock's multi-flip C calls (ArrayTB.run_flips, run_flip_batch) on a cpp build: equal to the
Python-stepped runs and the dataflow model (tests/hdl/cocotb_cpp_flips.py)."""

from __future__ import annotations

import pytest

from hdl_gen import ArrayConfig
from testbenches import sim

CASES = ["multi_flip_runs", "control_flips_and_batches"]
CONFIGS = {  # a protected design (violations counted) and a wide one (registers over 32 bits)
    "4x4_a4w4_range": ArrayConfig(4, 4, 4, 4, k_max=16, protection="range"),
    "2x2_a16w16_none": ArrayConfig(2, 2, 16, 16, k_max=16, protection="none"),
}
_runs: dict[str, sim.CocotbRun] = {}


def _run(name: str) -> sim.CocotbRun:
    if name not in _runs:
        _runs[name] = sim.run_cocotb(sim.build(CONFIGS[name], clock="cpp"), "tests.hdl.cocotb_cpp_flips", timeout=600)
    return _runs[name]


@pytest.mark.sim
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xdist_group(f"cpp-{n}")) for n in CONFIGS])
def test_cpp_multi_flip_calls(name: str) -> None:
    run = _run(name)
    assert sorted(run.tests) == sorted(CASES), f"exit {run.returncode}; log {run.log}:\n{run.log_tail()}"
    for case in CASES:
        assert run.tests[case] is None, f"{case} on {name}: {run.tests[case]}\nlog {run.log}"
