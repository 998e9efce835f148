"""Which Lattice ECP5 part a design is placed on: the parts nextpnr knows and the choice of the smallest that fits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quasar.errors import ConfigError, check_choice


@dataclass(frozen=True)
class Ecp5Device:
    """One LFE5U part as nextpnr knows it; capacities from the Lattice ECP5 family data sheet."""

    name: str  # nextpnr flag without dashes
    part: str
    package: str
    luts: int  # LUT4s == TRELLIS_COMB == TRELLIS_FF sites
    mult18: int
    ebr: int  # DP16KD blocks


# CABGA381 exists for all three parts; the wrapper needs ~40 pins, far below any of them.
ECP5_DEVICES = (
    Ecp5Device("25k", "LFE5U-25F", "CABGA381", luts=24288, mult18=28, ebr=56),
    Ecp5Device("45k", "LFE5U-45F", "CABGA381", luts=43848, mult18=72, ebr=108),
    Ecp5Device("85k", "LFE5U-85F", "CABGA381", luts=83640, mult18=156, ebr=208),
)
DEVICE_CHOICES = ("auto", *(d.name for d in ECP5_DEVICES))
# Placement needs slack: aim below this share of the LUTs when choosing a part automatically.
AUTO_LUT_FILL = 0.85


def ecp5_demand(m: dict[str, Any]) -> dict[str, int]:
    """What a synthesized ECP5 netlist needs from a part: LUT sites (distributed RAM costs 6 per DPR16X4,
    its slice share in nextpnr's packing), FFs, 18x18 multipliers (an ALU54B needs two) and EBRs."""
    return {
        "luts": int(m["lut4_equiv"]) + 6 * int(m["dpr16x4"]),
        "ffs": int(m["ffs"]),
        "mult18": int(m["mult18"]) + 2 * int(m["alu54"]),
        "ebr": int(m["dp16kd"]),
    }


def _shortfall(demand: dict[str, int], dev: Ecp5Device, lut_fill: float = 1.0) -> list[str]:
    """What `demand` needs beyond `dev` (LUTs counted against `lut_fill` of the part), as readable phrases."""
    have = {"luts": dev.luts, "ffs": dev.luts, "mult18": dev.mult18, "ebr": dev.ebr}
    limit = {**have, "luts": int(dev.luts * lut_fill)}
    names = {"luts": "LUT4 sites", "ffs": "flip-flops", "mult18": "MULT18X18D", "ebr": "DP16KD"}
    return [f"{demand[k]} {names[k]} (the part has {have[k]})" for k in have if demand[k] > limit[k]]


def candidate_devices(demand: dict[str, int], device: str = "auto") -> list[Ecp5Device]:
    """Parts to try, smallest first. Raises ConfigError when the estimate exceeds the chosen (or largest) part."""
    check_choice("device", device, DEVICE_CHOICES)
    if device != "auto":
        dev = next(d for d in ECP5_DEVICES if d.name == device)
        short = _shortfall(demand, dev)
        if short:
            raise ConfigError(
                f"the design does not fit {dev.part} (--device {device}): it needs {', '.join(short)}; "
                f"allowed: a larger --device ({', '.join(d.name for d in ECP5_DEVICES)}, or auto), "
                "a smaller array, fewer bits or a smaller --k-max"
            )
        return [dev]
    largest = ECP5_DEVICES[-1]
    short = _shortfall(demand, largest)
    if short:
        raise ConfigError(
            f"the design does not fit the largest ECP5 part, {largest.part}: it needs {', '.join(short)}; "
            "allowed: a smaller array, fewer bits or a smaller --k-max, or --targets without pnr"
        )
    fitting = [d for d in ECP5_DEVICES if not _shortfall(demand, d, AUTO_LUT_FILL)]
    first = ECP5_DEVICES.index(fitting[0]) if fitting else len(ECP5_DEVICES) - 1
    return list(ECP5_DEVICES[first:])
