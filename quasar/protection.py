"""The protection spec: one string that names a range-protection variant (docs/arithmetic.md).

Grammar: `none`, or `range` followed by up to three `:`-separated parts in any order, at most one of
each kind, the missing ones taking their defaults:

    policy       clamp (default) | zero    what replaces an out-of-range value
    domain       act (default)   | acc     output activation y after requantization, or the biased
                                           accumulator v before it (this also covers the logits)
    granularity  layer (default) | channel one (lo, hi) pair per layer, or one per output channel

`range` alone is `range:clamp:act:layer`, today's protection. The canonical name of a spec is
`none`, `range`, or all four parts (`range:zero:act:channel`); campaigns, the sweep, the synthesis
grid and `quasar signoff` all take these strings. Pure parsing: never imports the models or the RTL.
"""

from __future__ import annotations

from dataclasses import dataclass

from quasar.errors import ConfigError

KINDS = ("none", "range")
POLICIES = ("clamp", "zero")
DOMAINS = ("act", "acc")
GRANULARITIES = ("layer", "channel")
_PARTS = {"policy": POLICIES, "domain": DOMAINS, "granularity": GRANULARITIES}
GRAMMAR = "none, or range[:POLICY][:DOMAIN][:GRANULARITY] with POLICY clamp|zero, DOMAIN act|acc, " \
          "GRANULARITY layer|channel (e.g. range, range:zero, range:clamp:acc:channel)"


@dataclass(frozen=True)
class ProtectionSpec:
    """A parsed protection variant; `str(spec)` is its canonical name."""

    kind: str = "none"
    policy: str = "clamp"
    domain: str = "act"
    granularity: str = "layer"

    def __post_init__(self) -> None:
        for name, allowed in (("kind", KINDS), *_PARTS.items()):
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"protection {name} must be one of {', '.join(allowed)}; got {value!r}")

    @property
    def protected(self) -> bool:
        return self.kind == "range"

    @property
    def per_channel(self) -> bool:
        return self.granularity == "channel"

    def __str__(self) -> str:
        if self.kind == "none":
            return "none"
        if (self.policy, self.domain, self.granularity) == ("clamp", "act", "layer"):
            return "range"
        return f"range:{self.policy}:{self.domain}:{self.granularity}"

    @classmethod
    def parse(cls, text: object, granularity: str | None = None) -> ProtectionSpec:
        """Parse a spec string. `granularity` (layer|channel) is what a spec that names none gets: the
        legacy `--per-channel-bounds` flag; an explicit part in the string always wins."""
        if isinstance(text, ProtectionSpec):
            return text
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"protection spec must be {GRAMMAR}; got {text!r}")
        head, *parts = [p.strip() for p in text.strip().split(":")]
        if head not in KINDS:
            raise ConfigError(f"protection spec {text!r} must start with none or range; the grammar is {GRAMMAR}")
        if head == "none":
            if parts:
                raise ConfigError(f"protection spec {text!r}: 'none' takes no parts; the grammar is {GRAMMAR}")
            return cls()
        chosen: dict[str, str] = {}
        for part in parts:
            kind = next((k for k, allowed in _PARTS.items() if part in allowed), None)
            if kind is None:
                raise ConfigError(f"protection spec {text!r}: unknown part {part!r}; the grammar is {GRAMMAR}")
            if kind in chosen:
                raise ConfigError(f"protection spec {text!r} names the {kind} twice ({chosen[kind]!r} and {part!r})")
            chosen[kind] = part
        if "granularity" not in chosen and granularity is not None:
            chosen["granularity"] = granularity
        return cls("range", **chosen)


def parse_specs(text: object, granularity: str | None = None) -> tuple[ProtectionSpec, ...]:
    """A comma-separated list (or a sequence) of specs, in order; two spellings of one variant are refused."""
    items = [p for p in text.split(",")] if isinstance(text, str) else list(text)  # type: ignore[call-overload]
    if not items or any(isinstance(p, str) and not p.strip() for p in items):
        raise ConfigError(f"protection list {text!r} has an empty entry; give comma-separated specs: {GRAMMAR}")
    specs = [ProtectionSpec.parse(p, granularity) for p in items]
    seen: dict[str, object] = {}
    for raw, spec in zip(items, specs, strict=True):
        if str(spec) in seen:
            raise ConfigError(f"protection list names {str(spec)!r} twice ({seen[str(spec)]!r} and {raw!r})")
        seen[str(spec)] = raw
    return tuple(specs)
