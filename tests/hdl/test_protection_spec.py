"""The protection spec (quasar/protection.py) and how ArrayConfig takes it: grammar, canonical names,
error messages, config keys."""

from __future__ import annotations

import pytest

from hdl_gen import ArrayConfig
from quasar.errors import ConfigError
from quasar.protection import ProtectionSpec, parse_specs


@pytest.mark.parametrize(
    "text, canonical",
    [
        ("none", "none"),
        ("range", "range"),
        ("range:clamp:act:layer", "range"),
        ("range:zero", "range:zero:act:layer"),
        ("range:channel:zero", "range:zero:act:channel"),
        (" range : acc ", "range:clamp:acc:layer"),
        ("range:zero:acc:channel", "range:zero:acc:channel"),
    ],
)
def test_spec_canonical_names(text: str, canonical: str) -> None:
    spec = ProtectionSpec.parse(text)
    assert str(spec) == canonical
    assert ProtectionSpec.parse(str(spec)) == spec


@pytest.mark.parametrize(
    "text, message",
    [
        ("", r"protection spec must be none, or range\[:POLICY\]"),
        ("ranged", r"protection spec 'ranged' must start with none or range"),
        ("none:zero", r"'none' takes no parts"),
        ("range:zro", r"protection spec 'range:zro': unknown part 'zro'; the grammar is none, or range"),
        ("range:zero:clamp", r"names the policy twice \('zero' and 'clamp'\)"),
        ("range:act:acc", r"names the domain twice"),
        ("range::zero", r"unknown part ''"),
    ],
)
def test_spec_errors_name_the_bad_value(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ProtectionSpec.parse(text)


def test_spec_lists() -> None:
    assert [str(s) for s in parse_specs("none,range,range:zero")] == ["none", "range", "range:zero:act:layer"]
    # the legacy per-channel flag applies to specs that name no granularity
    assert [str(s) for s in parse_specs("range,range:layer", "channel")] == ["range:clamp:act:channel", "range"]
    with pytest.raises(ConfigError, match=r"names 'range' twice \('range' and 'range:clamp'\)"):
        parse_specs("range,range:clamp")
    with pytest.raises(ConfigError, match="has an empty entry"):
        parse_specs("none,,range")


def test_array_config_takes_a_spec() -> None:
    cfg = ArrayConfig(rows=2, cols=3, protection="range:zero:acc:channel")
    assert (cfg.protection, cfg.per_channel_bounds, cfg.protect_policy, cfg.protect_domain) == (
        "range", True, "zero", "acc")
    assert str(cfg.spec) == "range:zero:acc:channel"
    assert cfg == ArrayConfig.from_spec("range:zero:acc:channel", rows=2, cols=3)
    assert ArrayConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.protect_bits == cfg.v_bits and cfg.bound_range == (-(1 << (cfg.v_bits - 1)), (1 << (cfg.v_bits - 1)) - 1)
    assert ArrayConfig(protection="range").protect_bits == 8 and ArrayConfig(protection="range").bound_range == (0, 255)
    # the legacy flag still gives per-channel bounds to a spec that names no granularity
    assert ArrayConfig(protection="range:zero", per_channel_bounds=True).per_channel_bounds


def test_keys_of_todays_designs_are_unchanged_and_variants_differ() -> None:
    keys = {str(s): ArrayConfig.from_spec(s).key() for s in
            ("none", "range", "range:zero", "range:acc", "range:zero:acc", "range:channel")}
    assert keys["range"] == ArrayConfig(protection="range").key()
    assert keys["range"].startswith("8x8_a8w8_k1024_range_") and keys["range:zero"].startswith(
        "8x8_a8w8_k1024_range-zero_")
    assert len(set(keys.values())) == len(keys)


def test_none_refuses_a_policy_or_domain() -> None:
    with pytest.raises(ConfigError, match="protection 'none' has no policy or domain; got protect_policy='zero'"):
        ArrayConfig(protection="none", protect_policy="zero")
    with pytest.raises(ConfigError, match="protect_domain must be one of act, acc; got 'v'"):
        ArrayConfig(protection="range", protect_domain="v")
