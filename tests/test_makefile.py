"""The Makefile front door: replay passes PROTECTION and asks for RUN and FAULT, lists reach the CLI in its one
list form, help says where gen-rtl writes. make runs on a copy, with the venv stamp marked up to date (-o), so
no test can ever (re)install anything."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _make(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    for name in ("Makefile", "pyproject.toml", "requirements.lock"):
        if not (tmp_path / name).exists():
            shutil.copy(ROOT / name, tmp_path / name)
    return subprocess.run(["make", "-s", "-o", ".venv/.installed", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)


def _quasar_line(done: subprocess.CompletedProcess) -> str:
    return next(line for line in done.stdout.splitlines() if "/bin/quasar " in line)


def test_replay_passes_protection_only_when_given(tmp_path):
    line = _quasar_line(_make(tmp_path, "-n", "replay", "RUN=runs/campaign/x", "FAULT=17", "PROTECTION=range"))
    assert line.endswith('replay --run "runs/campaign/x" --fault "17" --protection "range" --waves'), line
    line = _quasar_line(_make(tmp_path, "-n", "replay", "RUN=runs/campaign/x", "FAULT=17"))
    assert "--protection" not in line  # the CLI's default design (none), not the Makefile's PROTECTION ?= range


def test_replay_without_run_says_what_it_needs(tmp_path):
    done = _make(tmp_path, "replay")
    assert done.returncode == 2
    assert "error: make replay needs RUN=<campaign run directory> and FAULT=<fault id>" in done.stderr, done.stderr


@pytest.mark.parametrize("bits", ["2 4 8", "2,4,8", " 2  4 8 "])
def test_sweep_bits_reach_the_cli_comma_separated(tmp_path, bits):
    assert '--bits "2,4,8"' in _quasar_line(_make(tmp_path, "-n", "sweep", f"BITS={bits}"))


def test_help_says_where_gen_rtl_writes(tmp_path):
    assert "OUT=DIR   write the RTL to DIR/rtl" in _make(tmp_path, "help").stdout


def test_paper_passes_bits_only_when_given(tmp_path):
    assert '--bits "16,8"' in _quasar_line(_make(tmp_path, "-n", "paper", "BITS=16 8"))
    line = _quasar_line(_make(tmp_path, "-n", "paper"))
    assert " paper --net lenet " in line and "--bits" not in line  # the preset's widths, not BITS ?= 8
