"""The campaign report's headroom section (docs/arithmetic.md, "Headroom"), from an export's bounds."""

from types import SimpleNamespace

import numpy as np

from fault_campaigns.analysis.report import headroom_lines, headroom_summary
from models.synthetic import random_export


def test_headroom_section_lists_every_hidden_layer_in_codes_and_bits():
    export = random_export("tiny", 8, 8, seed=0)
    export.act_format = "pow2"  # only the labels depend on it here
    conv1 = export.layers[0]
    conv1.int_bits, conv1.hi, conv1.hi_ch = 3, 20, np.minimum(conv1.hi_ch, 20)
    summary = {"headroom": headroom_summary(SimpleNamespace(export=export))}
    lines = headroom_lines(summary)
    assert lines[1] == "## Headroom between the bounds and the format's top code"
    n = conv1.out_channels
    assert f"| conv1 | ap_ufixed<8,3> | 20 | 255 | 235 | 3 | {n} of {n} |" in lines
    hidden = [layer for layer in export.layers if not layer.is_last]
    assert sum(line.startswith("| ") for line in lines) == 1 + len(hidden)  # header, one row per layer
    assert headroom_lines({}) == [] and headroom_lines({"headroom": {"layers": []}}) == []
