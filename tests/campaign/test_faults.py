"""Fault planning: uniform, exhaustive decoding, seeded, sized by Leveugle."""

import json
from collections import Counter

import numpy as np
import pytest

from fault_campaigns.planning import faults as F
from quasar.errors import ConfigError

SITES = [F.Site("pe_0_0.a_reg", 4, "pe_activation", 0, 0), F.Site("oact_0", 3, "output_activation", None, 0)]


def test_space_decodes_every_fault_exactly_once():
    fs = F.FaultSpace(F.LayerSpace(layer=0, tiles=2, cycles=5), images=3, sites=SITES, model="flip")
    assert fs.size == 3 * 2 * (4 + 3) * 5
    seen = {(f.image, f.tile, f.site, f.bits, f.cycle) for f in (fs.decode(i, i) for i in range(fs.size))}
    assert len(seen) == fs.size
    assert all(0 <= b < 4 for (_, _, s, bits, _) in seen if s == "pe_0_0.a_reg" for b in bits)
    assert max(b for (_, _, s, bits, _) in seen if s == "oact_0" for b in bits) == 2


def test_multi_bit_upsets_are_adjacent_and_inside_the_register():
    fs = F.FaultSpace(F.LayerSpace(0, 1, 2), 1, SITES, "mbu3")
    assert fs.size == (2 + 1) * 2
    for i in range(fs.size):
        f = fs.decode(i, i)
        width = 4 if f.site.startswith("pe") else 3
        assert len(f.bits) == 3 and f.bits == tuple(range(f.bits[0], f.bits[0] + 3)) and f.bits[-1] < width


def test_stuck_at_has_no_cycle_dimension():
    fs = F.FaultSpace(F.LayerSpace(0, 2, 50), 1, SITES, "stuck1")
    assert fs.size == 2 * 7
    assert {fs.decode(i, i).cycle for i in range(fs.size)} == {0}


def test_plan_is_deterministic_and_independent_per_layer():
    layers = [F.LayerSpace(0, 4, 100), F.LayerSpace(1, 2, 60)]
    a = F.plan(layers, images=5, sites=SITES, seed=7, faults_per_layer=50)
    b = F.plan(layers, images=5, sites=SITES, seed=7, faults_per_layer=50)
    c = F.plan(layers[1:], images=5, sites=SITES, seed=7, faults_per_layer=50)
    assert a == b
    assert [(f.tile, f.site, f.bits, f.cycle) for f in a if f.layer == 1] == [
        (f.tile, f.site, f.bits, f.cycle) for f in c
    ]
    assert F.plan(layers, 5, SITES, seed=8, faults_per_layer=50) != a
    assert [f.fault_id for f in a] == list(range(100))
    assert len({(f.layer, f.image, f.tile, f.site, f.bits, f.cycle) for f in a}) == 100  # no duplicates


def test_plan_uses_leveugle_by_default_and_caps_at_population():
    big = F.plan([F.LayerSpace(0, 100, 1000)], images=10, sites=SITES, margin=0.05, confidence=0.95)
    assert len(big) == F.leveugle_sample_size(10 * 100 * 7 * 1000, 0.05, 0.95)
    tiny = F.plan([F.LayerSpace(0, 1, 2)], images=1, sites=SITES, faults_per_layer=10**6)
    assert len(tiny) == 14


def test_sampling_is_uniform_over_bits_and_cycles():
    fs = F.FaultSpace(F.LayerSpace(0, 1, 10), 1, SITES[:1], "flip")
    rng = np.random.default_rng(0)
    # the whole space once: every bit and every cycle equally often
    got = [fs.decode(i, 0) for i in fs.sample(fs.size, rng)]
    assert set(Counter(f.bits[0] for f in got).values()) == {10}
    assert set(Counter(f.cycle for f in got).values()) == {4}


def test_load_sites_filters_by_kind(tmp_path):
    path = tmp_path / "fault_sites.json"
    path.write_text(json.dumps({"sites": [s.__dict__ for s in SITES] + [
        {"name": "pe_0_0.acc", "width": 20, "kind": "accumulator", "row": 0, "col": 0}]}))
    assert [s.name for s in F.load_sites(str(path))] == ["pe_0_0.a_reg", "oact_0"]
    assert [s.name for s in F.load_sites(str(path), ["accumulator"])] == ["pe_0_0.acc"]
    with pytest.raises(ConfigError, match="'bogus'"):
        F.load_sites(str(path), ["bogus"])
    with pytest.raises(ConfigError, match="control"):
        F.load_sites(str(path), ["control"])


def test_bad_fault_model_is_named():
    with pytest.raises(ConfigError, match="'flop'"):
        F.FaultSpace(F.LayerSpace(0, 1, 1), 1, SITES, "flop")


def test_pipeline_kind_selects_the_post_processing_registers(tmp_path):
    """`--targets pipeline` plans faults in the post-processing's input, partial-product, product and shift
    registers of a generated design, every bit of each, and nothing else."""
    from hdl_gen import ArrayConfig, generate

    cfg = ArrayConfig(rows=2, cols=3, act_bits=4, weight_bits=4, k_max=16, protection="range")
    sites = F.load_sites(str(generate(cfg, tmp_path).sites_path), ["pipeline"])
    p_bits, lo = cfg.v_bits + cfg.M_BITS, min(17, cfg.v_bits - 1)
    widths = {"v_reg": cfg.v_bits, "pl_reg": lo + 16, "ph_reg": p_bits - lo, "p_reg": p_bits, "t_reg": p_bits + 1}
    assert [(s.name, s.width, s.col) for s in sites] == [
        (f"pp_{j}.{reg}", width, j) for j in range(3) for reg, width in widths.items()
    ]
    fs = F.FaultSpace(F.LayerSpace(0, 1, cfg.tile_cycles(5)), 1, sites, "flip")
    assert fs.size == 3 * (cfg.v_bits + 16 + 3 * p_bits + 1) * cfg.tile_cycles(5)
