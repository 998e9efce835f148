"""The items of a protection sign-off, each run on one design and returned as an `Item` with evidence.

- `lint`: `verilator --lint-only -Wall` on the design's sources;
- `formal`: the Yosys proof of the protection unit (hdl_gen.formal): in bounds the output is
  unchanged, out of bounds it is the policy's value, padding lanes pass, the counter is exact;
- `golden` and `injection`: the simulator checks of hdl_gen.signoff.cocotb_checks (random tiles
  bit-exact with the oracle; every boundary at the protection's input), one simulator run;
- `synthesis`: LUT/FF/Fmax of the protected design against the unprotected one (hdl_gen.synth).
An item fails with its evidence and never raises for a failing check; only a broken tool setup does.
`replace` ({module: Verilog}) swaps a generated module everywhere it is checked: the tests' broken
blocks. Writes only under the given work directory and the simulator build directory.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hdl_gen.config import ArrayConfig

PASS, FAIL, SKIPPED, NOT_APPLICABLE = "pass", "fail", "skipped", "n/a"
COCOTB_MODULE = "hdl_gen.signoff.cocotb_checks"
SIM_TESTS = {"golden": "signoff_golden", "injection": "signoff_protection"}
# the sub-checks an injection or golden failure message starts with (hdl_gen.signoff.cocotb_checks)
SUB_CHECKS = ("counter", "in-range", "policy", "padding", "golden")


@dataclass
class Item:
    name: str
    status: str
    summary: str
    seconds: float = 0.0
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def lint(cfg: ArrayConfig, work: Path, replace: dict[str, str] | None = None) -> Item:
    from hdl_gen.rtl import TOP, generate
    from quasar import toolenv

    t0 = time.monotonic()
    design = generate(cfg, work / "rtl")
    for module, text in (replace or {}).items():
        (design.out_dir / f"{module}.v").write_text(text)
    cmd = ["verilator", "--lint-only", "-Wall", "--top-module", TOP, *map(str, design.sources)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=toolenv.apply(dict(__import__("os").environ)),
                          check=False, timeout=600)
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("%Warning") or line.startswith("%Error")]
    ok = proc.returncode == 0 and not warnings
    return Item("lint", PASS if ok else FAIL,
                "verilator -Wall clean" if ok else f"{len(warnings)} lint warning(s)/error(s)",
                time.monotonic() - t0,
                {"command": "verilator --lint-only -Wall --top-module " + TOP + " <sources>",
                 "sources": [p.name for p in design.sources], "messages": warnings[:20]})


_ASSERT_FAIL = re.compile(r"^.*(?:Assert(?:ion)? failed|failed assertion|FAIL).*$", re.M | re.I)


def formal(cfg: ArrayConfig, work: Path, replace: dict[str, str] | None = None) -> Item:
    from hdl_gen.formal import prove_protection
    from hdl_gen.rtl import protect_name

    if not cfg.protected:
        return Item("formal", NOT_APPLICABLE, "protection none has no protection unit to prove")
    name = protect_name(cfg)
    result = prove_protection(cfg, work, protect_verilog=(replace or {}).get(name))
    evidence = {"module": name, "lanes": cfg.cols, "bits": cfg.protect_bits, "policy": cfg.protect_policy,
                "domain": cfg.protect_domain, "bound_lanes": cfg.bound_lanes,
                "method": "yosys sat -tempinduct -prove-asserts (base case and induction)",
                "log": str(work / "prove.log")}
    if result.proven:
        return Item("formal", PASS, "proven for all inputs and reachable counter states", result.seconds, evidence)
    evidence["failures"] = _ASSERT_FAIL.findall(result.log)[:10]
    evidence["log_tail"] = _tail(result.log)
    return Item("formal", FAIL, "the proof found a counterexample (or did not finish)", result.seconds, evidence)


_SIGNOFF_LINE = re.compile(r"SIGNOFF (golden|protection) (.*)$", re.M)


def simulation(cfg: ArrayConfig, tiles: int, seed: int, replace: dict[str, str] | None = None) -> list[Item]:
    """The `golden` and `injection` items, from one simulator run of both cocotb checks."""
    from testbenches import sim

    t0 = time.monotonic()
    build = sim.build(cfg, replace=replace)
    run = sim.run_cocotb(build, COCOTB_MODULE, list(SIM_TESTS.values()),
                         extra_env={"QUASAR_SIGNOFF_TILES": str(tiles), "QUASAR_TEST_SEED": str(seed)}, timeout=1800)
    seconds = time.monotonic() - t0
    log = run.log.read_text(errors="replace") if run.log.is_file() else ""
    counts = {}
    for kind, rest in _SIGNOFF_LINE.findall(log):
        counts[kind] = dict(kv.split("=", 1) for kv in rest.split() if "=" in kv)
    items = []
    for item, test in SIM_TESTS.items():
        why = run.tests.get(test, f"not reported (simulator exit status {run.returncode})")
        evidence: dict[str, Any] = {"cocotb_test": f"{COCOTB_MODULE}.{test}", "seed": seed, "log": str(run.log),
                                    "build": str(build.root)}
        if item == "golden":
            evidence["tiles"] = tiles
        evidence.update(counts.get("golden" if item == "golden" else "protection", {}))
        if why is None:
            summary = (f"{tiles} random tiles bit-exact with the oracle" if item == "golden" else
                       f"{evidence.get('runs', '?')} runs: {evidence.get('violations', '?')} out-of-range values "
                       f"corrected per policy, {evidence.get('in_range', '?')} in-range and "
                       f"{evidence.get('padding', '?')} padding values untouched, counter exact")
            items.append(Item(item, PASS, summary, seconds / 2, evidence))
            continue
        text = str(why)
        failed = next((c for c in SUB_CHECKS if re.search(rf"\b{re.escape(c)}:", text)), "error")
        evidence["failed_check"] = failed
        evidence["failure"] = _tail(text, 12)
        items.append(Item(item, FAIL, f"failed: {failed}", seconds / 2, evidence))
    return items


SYNTH_METRICS = (("luts", "xc7", "luts"), ("ffs", "xc7", "ffs"), ("dsp48e1", "xc7", "dsp48e1"),
                 ("fmax_mhz", "pnr", "fmax_mhz"))


def synthesis(cfg: ArrayConfig, out: Path, targets: str, pnr_mode: str) -> Item:
    """The protected design against the same array unprotected; the item passes when both synthesize."""
    from dataclasses import replace

    from hdl_gen import synth

    t0 = time.monotonic()
    chosen = synth.parse_targets(targets)
    base_cfg = replace(cfg, protection="none", per_channel_bounds=False, protect_policy="clamp",
                       protect_domain="act")
    try:
        res = {"none": synth.synthesize(base_cfg, out, targets=chosen, pnr_mode=pnr_mode),
               str(cfg.spec): synth.synthesize(cfg, out, targets=chosen, pnr_mode=pnr_mode)}
    except Exception as exc:  # noqa: BLE001 - a tool failure is this item's failure, reported with its text
        return Item("synthesis", FAIL, f"synthesis failed: {type(exc).__name__}", time.monotonic() - t0,
                    {"error": _tail(str(exc))})
    metrics = {}
    for label, target, key in SYNTH_METRICS:
        if target not in chosen:
            continue
        base = res["none"]["targets"][target].get(key)
        prot = res[str(cfg.spec)]["targets"][target].get(key)
        pct = None if not base or prot is None else round(100.0 * (prot - base) / base, 2)
        metrics[label] = {"none": base, "protected": prot, "overhead_pct": pct}
    missing = [k for k, m in metrics.items() if m["protected"] is None and k != "dsp48e1"]
    evidence = {"targets": list(chosen), "fmax": pnr_mode, "metrics": metrics,
                "config_keys": {p: r["config_key"] for p, r in res.items()}, "out": str(out)}
    if missing:
        return Item("synthesis", FAIL, f"no result for {', '.join(missing)}", time.monotonic() - t0, evidence)
    parts = [f"{k} {m['none']} -> {m['protected']}" + (f" ({m['overhead_pct']:+.1f}%)" if m["overhead_pct"]
                                                          is not None else "") for k, m in metrics.items()]
    return Item("synthesis", PASS, "; ".join(parts), time.monotonic() - t0, evidence)
