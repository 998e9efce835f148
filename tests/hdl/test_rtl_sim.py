"""RTL regression groups 1-4 in the simulator: matmuls, post-processing, protection, fault behaviour.

All cocotb tests of tests/hdl/cocotb_array.py run in one simulator process per build (cached per
xdist worker; `--dist loadgroup` keeps a build's tests on one worker); each pytest case below
reports one cocotb test of that run.
"""

from __future__ import annotations

import pytest

from testbenches import sim
from tests.hdl.configs import SIM_CONFIGS

COCOTB_MODULE = "tests.hdl.cocotb_array"
GROUPS = {
    "matmul": ["matmul_random", "matmul_extremes"],
    "postproc": ["postproc_boundaries", "postproc_random"],
    "protection": ["protection_signoff", "protection_counter_per_run"],
    "faults": ["fault_pe_activation", "fault_other_registers", "fault_stuck_at", "hang_and_recover"],
    "design": ["fault_sites_resolve", "load_port"],
}
_runs: dict[str, sim.CocotbRun] = {}


def _run(name: str) -> sim.CocotbRun:
    if name not in _runs:
        _runs[name] = sim.run_cocotb(sim.build(SIM_CONFIGS[name]), COCOTB_MODULE, timeout=900)
    return _runs[name]


CASES = [
    pytest.param(name, case, id=f"{name}-{case}", marks=pytest.mark.xdist_group(cfg.key()))
    for name, cfg in SIM_CONFIGS.items()
    for cases in GROUPS.values()
    for case in cases
]


@pytest.mark.sim
@pytest.mark.parametrize("name, case", CASES)
def test_rtl(name: str, case: str) -> None:
    run = _run(name)
    assert case in run.tests, (
        f"cocotb test {case} did not report (exit status {run.returncode}); log {run.log}:\n{run.log_tail()}"
    )
    assert run.tests[case] is None, f"{case} on {name}: {run.tests[case]}\nlog {run.log}"


@pytest.mark.sim
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.xdist_group(c.key())) for n, c in SIM_CONFIGS.items()]
)
def test_every_cocotb_test_is_reported(name: str) -> None:
    """No cocotb test of the module goes unchecked, and the simulator exited cleanly."""
    run = _run(name)
    assert sorted(run.tests) == sorted(c for cases in GROUPS.values() for c in cases)
    assert run.returncode == 0, run.log_tail()
