"""Run every sign-off item on one design and write signoff.json and signoff.md (atomically).

The report says, per item, pass / fail / skipped / n/a, a one-line summary and the evidence (counts,
proof method, logs, synthesis figures); the sign-off passes when no item fails. Never prints; the CLI
(hdl_gen.signoff.cli) does.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hdl_gen.config import ArrayConfig
from hdl_gen.signoff import items as it
from quasar.errors import check_range

ITEMS = ("lint", "formal", "golden", "injection", "synthesis")


@dataclass
class SignoffReport:
    cfg: ArrayConfig
    items: list[it.Item]
    wall_s: float
    settings: dict[str, Any]

    @property
    def failed(self) -> list[str]:
        return [i.name for i in self.items if i.status == it.FAIL]

    @property
    def passed(self) -> bool:
        return not self.failed

    def item(self, name: str) -> it.Item:
        return next(i for i in self.items if i.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "failed": self.failed, "protection": str(self.cfg.spec),
                "design": self.cfg.to_dict(), "key": self.cfg.key(), "settings": self.settings,
                "wall_s": round(self.wall_s, 2), "items": [i.to_dict() for i in self.items]}

    def markdown(self) -> str:
        c = self.cfg
        lines = [f"# Sign-off: {c.rows}x{c.cols} array, A={c.act_bits} W={c.weight_bits} k_max={c.k_max}, "
                 f"protection `{c.spec}`", "",
                 f"**{'PASS' if self.passed else 'FAIL'}**" + ("" if self.passed else
                                                               f": failed {', '.join(self.failed)}")
                 + f" (design key `{c.key()}`, {self.wall_s:.1f} s)", "",
                 "| item | result | summary | seconds |", "|---|---|---|---:|"]
        for i in self.items:
            lines.append(f"| {i.name} | {i.status} | {i.summary} | {i.seconds:.1f} |")
        for i in self.items:
            if not i.evidence:
                continue
            lines += ["", f"## {i.name}", ""]
            for key, value in i.evidence.items():
                text = json.dumps(value) if not isinstance(value, str) else value
                if "\n" in text:
                    lines += [f"- {key}:", "", "```", text, "```"]
                else:
                    lines.append(f"- {key}: {text}")
        return "\n".join(lines) + "\n"


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def signoff(cfg: ArrayConfig, out: str | Path, *, tiles: int = 24, seed: int = 1, synth: bool = True,
            synth_targets: str = "xc7,pnr", pnr_mode: str = "placed", synth_out: str | Path | None = None,
            replace: dict[str, str] | None = None) -> SignoffReport:
    """Every item on `cfg`; writes out/signoff.json and out/signoff.md. `replace` swaps generated modules
    (tests' broken blocks; synthesis is then skipped: it would measure the generated block)."""
    from hdl_gen import synth as synth_mod

    tiles = check_range("tiles", tiles, 1, 10_000)
    seed = check_range("seed", seed, 0, 2**31 - 1)
    if synth:
        synth_mod.parse_targets(synth_targets)  # a bad target is refused before any work
        from quasar.errors import check_choice

        check_choice("fmax", pnr_mode, synth_mod.PNR_MODES)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    done = [it.lint(cfg, out / "lint", replace), it.formal(cfg, out / "formal", replace),
            *it.simulation(cfg, tiles, seed, replace)]
    if not synth:
        done.append(it.Item("synthesis", it.SKIPPED, "skipped (--no-synth)"))
    elif replace:
        done.append(it.Item("synthesis", it.SKIPPED, "skipped: a replaced block is not what the generator synthesizes"))
    else:
        done.append(it.synthesis(cfg, Path(synth_out) if synth_out else out / "synth", synth_targets, pnr_mode))
    settings = {"tiles": tiles, "seed": seed, "synth": synth, "synth_targets": synth_targets, "fmax": pnr_mode,
                "replaced_modules": sorted(replace or {})}
    report = SignoffReport(cfg, done, time.monotonic() - t0, settings)
    _atomic(out / "signoff.json", json.dumps(report.to_dict(), indent=2) + "\n")
    _atomic(out / "signoff.md", report.markdown())
    return report
