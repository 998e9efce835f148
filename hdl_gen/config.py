"""The one configuration object of the generated systolic array.

Every hardware width is derived here from a handful of knobs, so the RTL generator, the testbenches,
the campaigns and the synthesis flow can never disagree on a width. This module never generates
Verilog and never runs a tool.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields

from quasar import arithmetic
from quasar.errors import ConfigError, check_choice, check_range
from quasar.protection import DOMAINS, POLICIES, ProtectionSpec

PROTECTIONS = ("none", "range")
REQUANTS = ("mul", "shift")  # requantization datapath: multiplier M then shift S, or shift S alone (M = 1)
MAX_DIM = 64
MIN_BITS, MAX_BITS = 2, 16
MAX_K = 16384
# The registers a drained row passes through, one clock edge apart (docs/rtl.md, "Timing"): the biased
# accumulator v_j, its copy pp_j.v_reg next to the multipliers, the requantization's two partial products
# pp_j.pl_reg / pp_j.ph_reg (each one 18x18 multiplier), their sum, the product pp_j.p_reg, the shifted
# product pp_j.t_reg, the rounded and clamped activation oact_j, and the (protected) output row.
DRAIN_STAGES = ("v", "input", "partial", "product", "shifted", "oact", "out")
# The drain stage of each register a drained row passes through, by its name in the fault-site map (v_j,
# pp_j.<reg>, oact_j): one table for the analytic fault model and the idle set.
DRAIN_STAGE_OF = {"v": "v", "v_reg": "input", "pl_reg": "partial", "ph_reg": "partial", "p_reg": "product",
                  "t_reg": "shifted", "oact": "oact"}
# The requantization product v * M is split at this bit of v: v_lo = v[LO-1:0] (unsigned) and the signed
# rest, so that each partial product fits one signed 18x18 multiplier (MULT18X18D): 17 unsigned bits plus
# a zero sign bit times the unsigned 16-bit M plus a zero sign bit.
PRODUCT_SPLIT = 17
# After edge e, a_reg/w_reg of PE (i, j) hold operand index e - OPERAND_LAG - i - j: one edge reads the
# operand buffers into a_word/w_word, the next loads PE (0, 0). Row i's accumulators are final after
# edge K + C + OPERAND_LAG - 1 + i, and the drain reads them at the next edge.
OPERAND_LAG = 2
# Edges from a_reg/w_reg holding operand k to its product being in acc: the multiplier's operand
# registers a_op/w_op, the PE's product register p_reg, then acc. Row i's accumulators are final after edge
# K + C + OPERAND_LAG + MAC_LAG - 2 + i; the drain reads them at the next.
MAC_LAG = 3
# PE (i, j) is cleared at edge PE_CLEAR_EDGE + i + j of a run: the clear travels through the array one
# PE per edge, like the operands (docs/rtl.md, "Timing"); a flip of a PE register after an earlier edge
# is wiped out.
PE_CLEAR_EDGE = 1
# The fixed latency of a tile run beyond K + rows + cols: `done` rises with the last row's output
# write, edge K + C + OPERAND_LAG + MAC_LAG - 1 + (rows - 1) + (len(DRAIN_STAGES) - 1).
TILE_OVERHEAD = OPERAND_LAG + MAC_LAG - 3 + len(DRAIN_STAGES)


@dataclass(frozen=True)
class ArrayConfig:
    """An R x C output-stationary array; see docs/rtl.md for what each derived width means."""

    rows: int = 8
    cols: int = 8
    act_bits: int = 8
    weight_bits: int = 8
    k_max: int = 1024
    protection: str = "none"
    per_channel_bounds: bool = False
    # "shift": the post-processing has no multiplier and computes the contract with M = 1 (the pow2
    # format, docs/arithmetic.md); the `mult` port is then absent and a tile with M != 1 cannot run on it.
    requant: str = "mul"
    protect_policy: str = "clamp"
    protect_domain: str = "act"

    M_BITS = arithmetic.M_BITS
    S_BITS = arithmetic.S_BITS

    def __post_init__(self) -> None:
        # Normalise (e.g. "8" from a JSON file or CLI) and validate; frozen, hence object.__setattr__.
        for name, lo, hi in (
            ("rows", 1, MAX_DIM),
            ("cols", 1, MAX_DIM),
            ("act_bits", MIN_BITS, MAX_BITS),
            ("weight_bits", MIN_BITS, MAX_BITS),
            ("k_max", 1, MAX_K),
        ):
            object.__setattr__(self, name, check_range(name, getattr(self, name), lo, hi))
        if isinstance(self.protection, str) and ":" in self.protection:
            # a full spec string: it sets the parts it names, the others keep their field values
            spec = ProtectionSpec.parse(self.protection, "channel" if self.per_channel_bounds is True else None)
            parts = self.protection.split(":")[1:]
            object.__setattr__(self, "protection", spec.kind)
            object.__setattr__(self, "per_channel_bounds", spec.per_channel)
            if spec.policy in parts:
                object.__setattr__(self, "protect_policy", spec.policy)
            if spec.domain in parts:
                object.__setattr__(self, "protect_domain", spec.domain)
        object.__setattr__(self, "protection", check_choice("protection", self.protection, PROTECTIONS))
        object.__setattr__(self, "requant", check_choice("requant", self.requant, REQUANTS))
        if not isinstance(self.per_channel_bounds, bool):
            raise ConfigError(f"per_channel_bounds must be true or false, got {self.per_channel_bounds!r}")
        check_choice("protect_policy", self.protect_policy, POLICIES)
        check_choice("protect_domain", self.protect_domain, DOMAINS)
        if self.protection == "none" and (self.protect_policy, self.protect_domain) != ("clamp", "act"):
            raise ConfigError(f"protection 'none' has no policy or domain; got protect_policy={self.protect_policy!r}, "
                              f"protect_domain={self.protect_domain!r} (use protection='range' or the defaults)")

    @classmethod
    def from_spec(cls, spec: str | ProtectionSpec, **dims: object) -> ArrayConfig:
        """The array of the given dimensions (rows, cols, widths, k_max) protected as `spec` says."""
        s = ProtectionSpec.parse(spec)
        return cls(**dims, protection=s.kind, per_channel_bounds=s.per_channel,  # type: ignore[arg-type]
                   protect_policy=s.policy, protect_domain=s.domain)

    @property
    def spec(self) -> ProtectionSpec:
        """The protection variant as a spec (its `str` is the canonical name: none, range, range:zero:...)."""
        if not self.protected:
            return ProtectionSpec()
        return ProtectionSpec("range", self.protect_policy, self.protect_domain,
                              "channel" if self.per_channel_bounds else "layer")

    # ---- derived widths -------------------------------------------------------------------------
    @property
    def acc_bits(self) -> int:
        """Signed accumulator width; no overflow for any K <= k_max (docs/arithmetic.md)."""
        return arithmetic.acc_bits(self.act_bits, self.weight_bits, self.k_max)

    @property
    def v_bits(self) -> int:
        """Signed width of the biased accumulator v = acc + bias (also the logit width)."""
        return self.acc_bits + 1

    @property
    def p_bits(self) -> int:
        """Signed width of the requantization product register pp_j.p_reg: v * M (V + 16 bits), or v itself
        in a shift-only design (V bits); pp_j.t_reg is one bit wider."""
        return self.v_bits + (0 if self.shift_only else self.M_BITS)

    @property
    def lo_bits(self) -> int:
        """Width of v's low part v[LO-1:0] in the partial-product stage: PRODUCT_SPLIT, or V - 1 when v is
        narrower (the high part keeps at least the sign bit)."""
        return min(PRODUCT_SPLIT, self.v_bits - 1)

    @property
    def pl_bits(self) -> int:
        """Unsigned width of pp_j.pl_reg = v_lo * M (LO + 16 bits), or v_lo itself in a shift-only design."""
        return self.lo_bits + (0 if self.shift_only else self.M_BITS)

    @property
    def ph_bits(self) -> int:
        """Signed width of pp_j.ph_reg = v_hi * M with v_hi = v >> LO (V - LO + 16 bits), or v_hi itself in a
        shift-only design. ph_bits + lo_bits = p_bits: p = ph * 2^LO + pl."""
        return self.p_bits - self.lo_bits

    @property
    def k_bits(self) -> int:
        """Width of the run-time reduction-length port `k` (holds 1..k_max)."""
        return self.k_max.bit_length()

    @property
    def addr_bits(self) -> int:
        """Address width of the operand buffers (k_max words each)."""
        return max(1, arithmetic.clog2(self.k_max))

    @property
    def row_bits(self) -> int:
        return max(1, arithmetic.clog2(self.rows))

    @property
    def cyc_bits(self) -> int:
        """Width of the run's cycle counter: holds tile_cycles(k) for any value of the k port."""
        return ((1 << self.k_bits) - 1 + self.rows + self.cols + TILE_OVERHEAD).bit_length()

    @property
    def ld_bits(self) -> int:
        """Width of the synthesizable load port's data bus (one abuf or wbuf word)."""
        return max(self.rows * self.act_bits, self.cols * self.weight_bits)

    @property
    def bound_lanes(self) -> int:
        """How many (lo, hi) pairs the protection unit takes: 1, or one per output channel."""
        return self.cols if self.per_channel_bounds else 1

    @property
    def protected(self) -> bool:
        return self.protection == "range"

    @property
    def protect_bits(self) -> int:
        """Width of the values the protection sees (and of each bound): A in the act domain, V in acc."""
        return self.v_bits if self.protect_domain == "acc" else self.act_bits

    @property
    def bound_range(self) -> tuple[int, int]:
        """Inclusive range of a bound: activation codes (act), or signed V-bit values v (acc)."""
        if self.protect_domain == "acc":
            return -(1 << (self.v_bits - 1)), (1 << (self.v_bits - 1)) - 1
        return 0, (1 << self.act_bits) - 1

    @property
    def valid_rows_bits(self) -> int:
        """Width of the run-time port `valid_rows` (holds 0..rows)."""
        return self.rows.bit_length()

    # ---- timing ---------------------------------------------------------------------------------
    def tile_cycles(self, k: int) -> int:
        """Clock edges from the edge that samples `start` (edge 0) to the edge that raises `done`.

        `done` rises at edge k + rows + cols + 9 (docs/rtl.md, "Timing"), the edge that writes the
        last output row; the regression measures it.
        """
        k = check_range("k", k, 1, self.k_max)
        return k + self.rows + self.cols + TILE_OVERHEAD

    @staticmethod
    def pe_clear_edge(row: int, col: int) -> int:
        """The edge at which PE (row, col) is cleared in a run: PE_CLEAR_EDGE + row + col."""
        return PE_CLEAR_EDGE + row + col

    def products_in(self, k: int, edge: int, row: int, col: int) -> int:
        """How many products acc(row, col) has taken right after edge `edge` of a run of length k:
        the product of operand index n enters it at edge n + OPERAND_LAG + MAC_LAG + row + col."""
        return min(k, max(0, edge - OPERAND_LAG - MAC_LAG + 1 - row - col))

    def stage_edge(self, k: int, stage: str, row: int) -> int:
        """The edge after which drain stage `stage` (one of DRAIN_STAGES) holds output row `row` of a
        tile run of reduction length k; the drain reads row 0's accumulators at edge k + cols + 4."""
        k = check_range("k", k, 1, self.k_max)
        check_choice("drain stage", stage, DRAIN_STAGES)
        row = check_range("row", row, 0, self.rows - 1)
        return k + self.cols + OPERAND_LAG + MAC_LAG - 1 + DRAIN_STAGES.index(stage) + row

    # ---- identity and serialisation -------------------------------------------------------------
    @property
    def shift_only(self) -> bool:
        return self.requant == "shift"

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        if self.requant == "mul":  # left out: keys (build and synthesis caches) from before stay valid
            del out["requant"]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ArrayConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown array config key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(names))}")
        return cls(**data)  # type: ignore[arg-type]

    def key(self) -> str:
        """Short, stable, filesystem-safe identity: readable prefix plus a hash of every field (the
        protection's policy and domain enter only when not the defaults, so older keys stay valid)."""
        d = self.to_dict()
        for name, default in (("protect_policy", "clamp"), ("protect_domain", "act")):
            if d[name] == default:
                del d[name]
        digest = hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]
        pc = "pc" if self.per_channel_bounds else ""
        rq = "_shift" if self.shift_only else ""
        variant = "".join(
            f"-{v}" for v, default in ((self.protect_policy, "clamp"), (self.protect_domain, "act")) if v != default
        )
        return (
            f"{self.rows}x{self.cols}_a{self.act_bits}w{self.weight_bits}_k{self.k_max}_"
            f"{self.protection}{pc}{variant}{rq}_{digest}"
        )

    def suffix(self) -> str:
        """Module-name suffix: the widths a generated module depends on."""
        return f"a{self.act_bits}w{self.weight_bits}acc{self.acc_bits}"

    def verilog_params(self) -> dict[str, int]:
        """The constants baked into the generated top (emitted there as localparams of these names)."""
        return {
            "ROWS": self.rows,
            "COLS": self.cols,
            "ACT_BITS": self.act_bits,
            "WEIGHT_BITS": self.weight_bits,
            "ACC_BITS": self.acc_bits,
            "V_BITS": self.v_bits,
            "K_MAX": self.k_max,
            "K_BITS": self.k_bits,
            "M_BITS": self.M_BITS,
            "S_BITS": self.S_BITS,
            "PROTECT": int(self.protected),
            "PER_CHANNEL_BOUNDS": int(self.per_channel_bounds),
            "PROTECT_ZERO": int(self.protect_policy == "zero"),
            "PROTECT_ACC": int(self.protect_domain == "acc"),
            "TILE_OVERHEAD": TILE_OVERHEAD,
            # only in shift-only designs: a multiplier design's text (and its synthesis caches) stays as it was
            **({"SHIFT_ONLY": 1} if self.shift_only else {}),
        }
