"""testbenches.sim without compiling: the launch command and environment, results parsing, pruning."""

from __future__ import annotations

import os
import time

import pytest

from hdl_gen import ArrayConfig, generate
from quasar.errors import ConfigError
from testbenches import sim


def _fake_build(tmp_path, waves: bool = False) -> sim.SimBuild:
    cfg = ArrayConfig(rows=2, cols=2, k_max=8)
    return sim.SimBuild(cfg, generate(cfg, tmp_path / "rtl"), tmp_path, waves, 0.0)


def test_sim_command_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("QUASAR_TEST_KNOB", "outer")
    build = _fake_build(tmp_path)
    results = tmp_path / "shard" / "results.xml"
    cmd, env, cwd = sim.sim_command(build, "pkg.module", "case_a", extra_env={"QUASAR_TEST_KNOB": "inner"},
                                    python_path=[tmp_path / "extra"], results_xml=results)
    assert cmd[0] == str(build.executable) and cwd == results.parent and cwd.is_dir()
    assert env["QUASAR_TEST_KNOB"] == "inner"  # the caller's environment wins over the inherited one
    assert env["PYTHONPATH"].split(os.pathsep)[:2] == [str(tmp_path / "extra"), str(sim.REPO_ROOT)]
    assert env["COCOTB_TEST_MODULES"] == "pkg.module" and env["COCOTB_TOPLEVEL"] == "quasar_array"
    assert "case_a" in env["COCOTB_TEST_FILTER"]
    assert env["COCOTB_RESULTS_FILE"] == str(results)
    assert env[sim.CONFIG_ENV] == str(build.design.config_path) and env[sim.SITES_ENV] == str(build.design.sites_path)
    _, _, cwd2 = sim.sim_command(build, "pkg.module")
    assert cwd2.parent == tmp_path / "runs" and cwd2 != cwd  # a fresh directory per run
    with pytest.raises(ConfigError, match="waves=True needs a build made with build"):
        sim.sim_command(build, "pkg.module", waves=True)


def test_parse_results(tmp_path) -> None:
    xml = tmp_path / "results.xml"
    xml.write_text(
        '<testsuites><testsuite name="all" tests="3">'
        '<testcase name="ok" classname="m"/>'
        '<testcase name="bad" classname="m"><failure message="boom">trace</failure></testcase>'
        '<testcase name="skip" classname="m"><skipped/></testcase>'
        "</testsuite></testsuites>"
    )
    parsed = sim.parse_results(xml)
    assert parsed["ok"] is None and parsed["bad"] == "failure: boom trace" and parsed["skip"].startswith("skipped")
    assert sim.parse_results(tmp_path / "missing.xml") == {}


def test_prune_keeps_recent_runs(tmp_path) -> None:
    old, new = tmp_path / "run-old", tmp_path / "run-new"
    old.mkdir()
    new.mkdir()
    os.utime(old, (time.time() - 3 * 86400,) * 2)
    sim._prune(tmp_path, sim.RUN_DIR_MAX_AGE_S)
    assert not old.exists() and new.exists()
