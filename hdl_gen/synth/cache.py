"""The step cache: each target runs in its own step directory, reused while the key stamped there still matches."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hdl_gen.synth.settings import FLOW_VERSION


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def step_key(step: str, script: str, sources: dict[str, str], tools: dict[str, str], extra: dict | None = None) -> str:
    """Hash of everything a step's result depends on. Scripts name sources by run-relative path only."""
    blob = json.dumps({"flow": FLOW_VERSION, "step": step, "script": script, "sources": sources,
                       "tools": tools, "extra": extra or {}}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class StepContext:
    run_dir: Path
    top: str
    sources: list[str]  # relative to run_dir
    digests: dict[str, str]  # relative path -> sha256
    tools: dict[str, str]
    seed: int
    freq_mhz: float
    device: str
    force: bool
    pnr_mode: str = "routed"

    @property
    def pnr_dir(self) -> str:
        """Step directory of place and route: `pnr` (routed) or `pnr-placed`, so both can stay cached."""
        return "pnr" if self.pnr_mode == "routed" else f"pnr-{self.pnr_mode}"


def cached_meta(step_dir: Path, key: str, force: bool) -> dict[str, Any] | None:
    stamp, meta = step_dir / "key.txt", step_dir / "meta.json"
    if force or not (stamp.exists() and meta.exists()) or stamp.read_text().strip() != key:
        return None
    return json.loads(meta.read_text())


def fresh_dir(step_dir: Path) -> None:
    if step_dir.exists():
        shutil.rmtree(step_dir)
    step_dir.mkdir(parents=True)


def finish_step(step_dir: Path, key: str, meta: dict[str, Any]) -> dict[str, Any]:
    (step_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    (step_dir / "key.txt").write_text(key + "\n")  # last: a step interrupted earlier is never reused
    return meta
