"""`quasar synth-formats`: the table of the shift-only vs the multiplier datapath, from synthesize's results
(the tools are replaced by a stub here; tests/synth/test_synth_regression.py runs the real flows)."""

import json

import pytest

from hdl_gen import synth
from hdl_gen.synth import formats as synth_formats
from quasar.errors import ConfigError


def _fake_synthesize(calls):
    def fake(cfg, out, targets, seed, force, jobs, pnr_mode):
        calls.append((cfg.act_bits, cfg.requant, tuple(targets), pnr_mode))
        shift = cfg.requant == "shift"
        return {
            "config_key": cfg.key(), "wall_s": 1.0,
            "targets": {
                "xc7": {"luts": 800 if shift else 1000, "ffs": 500, "dsp48e1": 0 if shift else 8},
                "xc7-nodsp": {"luts": 900 if shift else 1500},
                "pnr": {"fmax_mhz": 60.0 if shift else 50.0},
            },
        }
    return fake


def test_table_puts_shift_beside_mul_with_the_change(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(synth, "synthesize", _fake_synthesize(calls))
    data = synth_formats.requant_comparison(tmp_path, bits=[4, 8])
    assert calls == [(b, r, ("xc7", "xc7-nodsp", "pnr"), "placed") for b in (4, 8) for r in ("mul", "shift")]
    rows = {m["metric"]: m for m in data["entries"][0]["metrics"]}
    assert rows["xc7 LUT"] == {"metric": "xc7 LUT", "mul": 1000, "shift": 800, "delta_pct": -20.0}
    assert rows["xc7 DSP48E1"]["delta_pct"] == -100.0 and rows["Fmax MHz (nextpnr-ecp5)"]["delta_pct"] == 20.0
    assert "ECP5 MULT18X18D" not in rows  # the ecp5 target was not run
    md = (tmp_path / "formats.md").read_text()
    assert "| 4 | xc7 LUT | 1000 | 800 | -20.0 % |" in md
    assert "| 8 | Fmax MHz (nextpnr-ecp5) | 50.0 | 60.0 | +20.0 % |" in md
    assert json.loads((tmp_path / "formats.json").read_text())["entries"][1]["bits"] == 8


def test_bad_input_is_refused_before_any_tool(monkeypatch, tmp_path):
    monkeypatch.setattr(synth, "synthesize", _fake_synthesize(calls := []))
    with pytest.raises(ConfigError, match="bits must be in 2..16, got 17"):
        synth_formats.requant_comparison(tmp_path, bits=[8, 17])
    with pytest.raises(ConfigError, match="protection must be one of none, range; got 'tmr'"):
        synth_formats.requant_comparison(tmp_path, protection="tmr")
    assert calls == []
