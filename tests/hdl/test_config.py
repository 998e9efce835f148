"""ArrayConfig validation and derived widths, generate() outputs, the gen-rtl command."""

from __future__ import annotations

import json
import re

import pytest
import typer
from typer.testing import CliRunner

from hdl_gen import ArrayConfig, generate
from hdl_gen.cli import register
from hdl_gen.config import DRAIN_STAGE_OF, DRAIN_STAGES
from quasar.errors import ConfigError


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rows": 0}, "rows must be in 1..64, got 0"),
        ({"cols": 65}, "cols must be in 1..64, got 65"),
        ({"act_bits": 1}, "act_bits must be in 2..16, got 1"),
        ({"weight_bits": 17}, "weight_bits must be in 2..16, got 17"),
        ({"act_bits": 17}, "act_bits must be in 2..16, got 17"),
        ({"k_max": 0}, "k_max must be in 1..16384, got 0"),
        ({"k_max": 16385}, "k_max must be in 1..16384, got 16385"),
        ({"rows": "eight"}, "rows must be an integer in 1..64, got 'eight'"),
        ({"protection": "tmr"}, "protection must be one of none, range; got 'tmr'"),
        ({"per_channel_bounds": "yes"}, "per_channel_bounds must be true or false, got 'yes'"),
        ({"requant": "lut"}, "requant must be one of mul, shift; got 'lut'"),
    ],
)
def test_bad_values_name_the_value_and_the_range(kwargs, message) -> None:
    with pytest.raises(ConfigError) as err:
        ArrayConfig(**kwargs)
    assert str(err.value) == message


def test_derived_widths() -> None:
    cfg = ArrayConfig()  # 8x8, 8-bit, k_max 1024
    assert (cfg.acc_bits, cfg.v_bits, cfg.k_bits, cfg.M_BITS, cfg.S_BITS) == (26, 27, 11, 16, 6)
    assert ArrayConfig(act_bits=16, weight_bits=16, k_max=16384).acc_bits == 46
    assert ArrayConfig(act_bits=2, weight_bits=2, k_max=1).acc_bits == 4
    assert ArrayConfig(k_max=1024).k_bits == 11 and ArrayConfig(k_max=1023).k_bits == 10
    assert ArrayConfig(cols=3, per_channel_bounds=True).bound_lanes == 3 and ArrayConfig(cols=3).bound_lanes == 1


def test_tile_cycles_formula() -> None:
    cfg = ArrayConfig(rows=8, cols=3, k_max=64)
    # K + R + C + 9: two cycles of operand lag, the PE's operand and product registers, one per drain stage
    # after v (post-processing input, partial products, product, shift, clamp, output)
    assert [cfg.tile_cycles(k) for k in (1, 13, 64)] == [1 + 20, 13 + 20, 64 + 20]
    stages = ("v", "input", "partial", "product", "shifted", "oact", "out")
    assert DRAIN_STAGES == stages and set(DRAIN_STAGE_OF.values()) <= set(stages) - {"out"}
    assert [cfg.stage_edge(13, s, 0) for s in stages] == [20, 21, 22, 23, 24, 25, 26]
    # acc(i, j) takes the product of operand n at edge n + 5 + i + j
    assert [cfg.products_in(13, e, 1, 2) for e in (0, 7, 8, 20, 21, 40)] == [0, 0, 1, 13, 13, 13]
    assert cfg.stage_edge(13, "out", cfg.rows - 1) == cfg.tile_cycles(13)  # done rises with the last row
    with pytest.raises(ConfigError, match=r"row must be in 0..7, got 8"):
        cfg.stage_edge(13, "v", 8)
    with pytest.raises(ConfigError, match=r"drain stage must be one of v, input, partial, product, shifted, oact, out; "
                                          r"got 'acc'"):
        cfg.stage_edge(13, "acc", 0)
    with pytest.raises(ConfigError, match=r"k must be in 1..64, got 65"):
        cfg.tile_cycles(65)
    with pytest.raises(ConfigError, match=r"k must be in 1..64, got 0"):
        cfg.tile_cycles(0)


def test_key_is_stable_and_distinguishes_configs() -> None:
    # build caches are named by it: a change must be deliberate
    assert ArrayConfig().key() == "8x8_a8w8_k1024_none_1ee3c59b"
    keys = {
        ArrayConfig().key(),
        ArrayConfig(protection="range").key(),
        ArrayConfig(protection="range", per_channel_bounds=True).key(),
        ArrayConfig(act_bits=4).key(),
        ArrayConfig(k_max=64).key(),
    }
    assert len(keys) == 5
    assert all(re.fullmatch(r"[0-9a-z_]+", k) for k in keys)


def test_dict_round_trip_and_normalisation() -> None:
    cfg = ArrayConfig(rows=4, cols=3, act_bits=5, weight_bits=6, k_max=99, protection="range", per_channel_bounds=True)
    assert ArrayConfig.from_dict(cfg.to_dict()) == cfg
    assert ArrayConfig.from_dict({"rows": "4"}).rows == 4
    with pytest.raises(ConfigError, match="unknown array config key"):
        ArrayConfig.from_dict({"rows": 4, "bits": 8})


def test_generate_writes_sources_sites_and_config(tmp_path) -> None:
    cfg = ArrayConfig(rows=3, cols=2, act_bits=4, weight_bits=6, k_max=32, protection="range")
    design = generate(cfg, tmp_path / "a")
    assert design.top == "quasar_array" and design.sources[-1].name == "quasar_array.v"
    assert [p.name for p in design.sources[:-1]] == [
        "quasar_pe_a4w6acc15.v", "quasar_requant_mul_v16.v", "quasar_postproc_v16a4.v", "quasar_protect_c2a4.v"
    ]
    assert ArrayConfig.from_dict(json.loads(design.config_path.read_text())) == cfg
    # every module sits in its own file under its own name
    for src in design.sources:
        assert re.findall(r"^module (\w+)", src.read_text(), re.M) == [src.stem]
    # the localparams of the top are verilog_params()
    top = design.sources[-1].read_text()
    params = {k: int(v) for k, v in re.findall(r"localparam (\w+) = (\d+);", top)}
    assert params == cfg.verilog_params()
    # deterministic: a second generation is byte-identical
    again = generate(cfg, tmp_path / "b")
    for a, b in zip(design.sources + [design.sites_path], again.sources + [again.sites_path], strict=True):
        assert a.read_bytes() == b.read_bytes()
    unprotected = generate(ArrayConfig(protection="none"), tmp_path / "c")
    assert "quasar_protect" not in "".join(p.name for p in unprotected.sources)


def test_fault_site_map(tmp_path) -> None:
    cfg = ArrayConfig(rows=3, cols=2, act_bits=4, weight_bits=6, k_max=32)
    sites = json.loads(generate(cfg, tmp_path).sites_path.read_text())
    assert sites["design"]["key"] == cfg.key() and sites["design"]["acc_bits"] == cfg.acc_bits
    entries = sites["sites"]
    names = [s["name"] for s in entries]
    assert len(names) == len(set(names))
    by_kind = {}
    for s in entries:
        by_kind.setdefault(s["kind"], []).append(s)
    assert sorted(by_kind) == [
        "accumulator", "control", "output_activation", "pe_act_operand", "pe_activation", "pe_product",
        "pe_weight_operand", "pipeline", "weight"
    ]
    assert [(s["name"], s["width"]) for s in by_kind["pe_act_operand"]][:2] == [("pe_0_0.a_op", 4),
                                                                                 ("pe_0_1.a_op", 4)]
    assert [(s["name"], s["width"]) for s in by_kind["pe_weight_operand"]][-1] == ("pe_2_1.w_op", 6)
    assert len(by_kind["pe_act_operand"]) == len(by_kind["pe_weight_operand"]) == 6
    assert [(s["name"], s["width"], s["row"], s["col"]) for s in by_kind["pe_product"]][:2] == [
        ("pe_0_0.p_reg", 4 + 6, 0, 0), ("pe_0_1.p_reg", 4 + 6, 0, 1)
    ]
    assert len(by_kind["pe_product"]) == 6
    assert [(s["name"], s["width"], s["row"], s["col"]) for s in by_kind["pe_activation"]][:3] == [
        ("pe_0_0.a_reg", 4, 0, 0), ("pe_0_1.a_reg", 4, 0, 1), ("pe_1_0.a_reg", 4, 1, 0)
    ]
    assert len(by_kind["pe_activation"]) == len(by_kind["weight"]) == 6
    assert [(s["name"], s["width"], s["row"], s["col"]) for s in by_kind["output_activation"]] == [
        ("oact_0", 4, None, 0), ("oact_1", 4, None, 1)
    ]
    assert {s["width"] for s in by_kind["weight"]} == {6}
    assert {s["width"] for s in by_kind["accumulator"] if s["row"] is not None} == {cfg.acc_bits}
    p_bits, lo = cfg.v_bits + cfg.M_BITS, min(17, cfg.v_bits - 1)
    assert (cfg.lo_bits, cfg.pl_bits, cfg.ph_bits) == (lo, lo + 16, p_bits - lo)
    assert [(s["name"], s["width"], s["row"], s["col"]) for s in by_kind["pipeline"]] == [
        (f"pp_{j}.{reg}", width, None, j) for j in range(2)
        for reg, width in (("v_reg", cfg.v_bits), ("pl_reg", lo + 16), ("ph_reg", p_bits - lo), ("p_reg", p_bits),
                           ("t_reg", p_bits + 1))
    ]
    assert {s["name"] for s in by_kind["control"]} == {
        "busy_r", "done_r", "cyc", "k_reg", "drain_at", "pe_clr", "drain_r", "d_row", "dsel_0", "dsel_1",
        *(f"{p}_{r}" for p in "vqmpto" for r in ("valid", "row")), "lrow_we", "orow_we", "rst_o"
    }


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command("noop")  # a second command keeps typer from collapsing the app into gen-rtl itself
    def _noop() -> None:
        pass

    return app


def test_gen_rtl_command(tmp_path) -> None:
    out = tmp_path / "rtl"
    args = ["gen-rtl", "--rows", "8", "--cols", "8", "--bits", "8", "--protection", "range", "--out", str(out)]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert "key 8x8_a8w8_k1024_range_" in result.output
    assert {p.name for p in out.iterdir()} == {
        "quasar_pe_a8w8acc26.v", "quasar_requant_mul_v27.v", "quasar_postproc_v27a8.v", "quasar_protect_c8a8.v",
        "quasar_array.v",
        "fault_sites.json", "config.json",
    }
    cfg = ArrayConfig.from_dict(json.loads((out / "config.json").read_text()))
    assert cfg == ArrayConfig(protection="range")
    mixed = CliRunner().invoke(_app(), ["gen-rtl", "--bits", "8", "--act-bits", "4", "--k-max", "64",
                                        "--per-channel-bounds", "--protection", "range", "--out", str(tmp_path / "m")])
    assert mixed.exit_code == 0, mixed.output
    assert ArrayConfig.from_dict(json.loads((tmp_path / "m" / "config.json").read_text())) == ArrayConfig(
        act_bits=4, weight_bits=8, k_max=64, protection="range", per_channel_bounds=True
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rows", "0"], "rows must be in 1..64, got 0"),
        (["--bits", "1"], "bits must be in 2..16, got 1"),
        (["--bits", "17"], "bits must be in 2..16, got 17"),
        (["--act-bits", "17"], "act_bits must be in 2..16, got 17"),
        (["--weight-bits", "1"], "weight_bits must be in 2..16, got 1"),
        (["--k-max", "0"], "k_max must be in 1..16384, got 0"),
        (["--protection", "tmr"], "protection must be one of none, range; got 'tmr'"),
        (["--requant", "lut"], "requant must be one of mul, shift; got 'lut'"),
    ],
)
def test_gen_rtl_rejects_bad_values(args, message, tmp_path) -> None:
    result = CliRunner().invoke(_app(), ["gen-rtl", *args, "--out", str(tmp_path)])
    assert isinstance(result.exception, ConfigError) and str(result.exception) == message
    assert not any(tmp_path.iterdir())


def test_shift_only_design_has_no_multiplier_and_its_own_key(tmp_path) -> None:
    mul, shift = ArrayConfig(2, 2, 4, 4, k_max=16), ArrayConfig(2, 2, 4, 4, k_max=16, requant="shift")
    assert "requant" not in mul.to_dict()  # keys of multiplier designs made before the option stay valid
    assert shift.key().startswith("2x2_a4w4_k16_none_shift_") and shift.key() != mul.key()
    assert ArrayConfig.from_dict(shift.to_dict()) == shift and ArrayConfig.from_dict(mul.to_dict()) == mul
    design = generate(shift, tmp_path)
    names = sorted(p.name for p in design.sources)
    assert names == ["quasar_array.v", "quasar_pe_a4w4acc12.v", "quasar_postproc_shift_v13a4.v"]
    assert "mult" not in design.ports and "shift" in design.ports
    assert "*" not in (tmp_path / "quasar_postproc_shift_v13a4.v").read_text()  # no product anywhere
    assert json.loads((tmp_path / "config.json").read_text())["requant"] == "shift"
    sites = json.loads((tmp_path / "fault_sites.json").read_text())["sites"]
    pipeline = [(s["name"], s["width"]) for s in sites if s["kind"] == "pipeline"]
    lo = shift.lo_bits  # pl_reg/ph_reg hold v's low and high bits, p_reg holds v
    assert pipeline[:5] == [("pp_0.v_reg", shift.v_bits), ("pp_0.pl_reg", lo), ("pp_0.ph_reg", shift.v_bits - lo),
                            ("pp_0.p_reg", shift.v_bits), ("pp_0.t_reg", shift.v_bits + 1)]
    assert shift.tile_cycles(5) == mul.tile_cycles(5)  # same pipeline stages as the multiplier datapath
