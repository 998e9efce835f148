"""The synthesis flow's fixed settings and the targets a caller may ask for.

Everything here is part of a step's cache key or of synth.json's meaning; change a value only together
with FLOW_VERSION (or SCHEMA_VERSION for synth.json's layout).
"""

from __future__ import annotations

from collections.abc import Iterable

from quasar.errors import ConfigError, check_choice

SCHEMA_VERSION = 1
# Bump when a script, the wrapper or the raw outputs kept per step change meaning: it is part of every key.
FLOW_VERSION = 1

TARGETS = ("xc7", "xc7-nodsp", "ecp5", "pnr")
WRAPPER_TOP = "quasar_synth_wrap"
DIN_BITS = 8  # wrapper: width of the serial configuration input
DOUT_BITS = 16  # wrapper: width of the output shift chain
# The place-and-route wrapper's design, part of the pnr key: 1 = a registered dout_bits-wide output mux
# selected by a registered address (it set the 8x8 Fmax); 2 = the XOR shift chain of pnr_flow.wrapper_verilog;
# 3 = also one input flip-flop per core input bit (in_q) behind the input shift register; 4 = two (in_p, in_q).
WRAPPER_VERSION = 4
# The netlist step between Yosys and nextpnr, part of the pnr key: 1 = hdl_gen.synth.dsp_regs gives each
# MULT18X18D its operand and product flip-flops as input and output registers.
DSP_REGISTERS_VERSION = 1
# The wrapper's clock pin: G2 is PCLKT6_0, a primary-clock input of the CABGA381 package on every LFE5U
# part used here (25F, 45F, 85F; the ULX3S boards' clock pin).
CLOCK_PIN = "G2"
DEFAULT_SEED = 1
DEFAULT_FREQ_MHZ = 100.0
ECP5_SPEED = 6  # the slowest (cheapest) LFE5U speed grade, nextpnr's default
# router1 (nextpnr-ecp5's default) did not converge on 8x8 at 16 bits in 25 minutes (20k arcs left in
# congestion around the DSP rows); router2 routed it. Used for every design so figures stay comparable.
NEXTPNR_ROUTER = "router2"
# How Fmax is obtained: "routed" = nextpnr places and routes, Fmax from its timing report of the routed
# design; "placed" = nextpnr places only (--no-route), Fmax from its timing analysis of the placed design,
# wires estimated from distance: about half the nextpnr time of "routed". On the 16 designs of the default
# sweep it was 5.5% from the routed figure on average, 13.7% at most, mostly below it (docs/synth.md,
# "Placed vs routed Fmax"; `quasar synth-fmax` measures it).
PNR_MODES = ("routed", "placed")
# A place and route that runs longer than this is stopped with a ToolError naming its log.
PNR_TIMEOUT_S = 3600
LENET = "lenet"


def parse_targets(text: str | Iterable[str]) -> tuple[str, ...]:
    """'xc7,ecp5' (or a list) -> validated tuple in canonical order; ConfigError names a bad one."""
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if not items:
        raise ConfigError(f"targets must name at least one of {', '.join(TARGETS)}; got {text!r}")
    for t in items:
        check_choice("target", t, TARGETS)
    return tuple(t for t in TARGETS if t in items)
