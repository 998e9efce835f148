"""Strict JSON (quasar/jsonio.py): what every result file is written with."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from quasar import jsonio


def strict_loads(text: str):
    """json.loads as a strict parser (JavaScript's JSON.parse) reads: NaN and Infinity are errors."""
    def refuse(name: str):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_floats_become_null_and_numpy_values_plain():
    data = {"a": float("nan"), "b": [1.5, float("inf"), -math.inf], "c": np.float64("nan"), "d": np.int64(3),
            "e": np.array([0.5, np.nan]), "f": (np.float32(0.25), None, "NaN")}
    text = jsonio.dumps(data, indent=2)
    assert strict_loads(text) == {"a": None, "b": [1.5, None, None], "c": None, "d": 3, "e": [0.5, None],
                                  "f": [0.25, None, "NaN"]}


def test_the_strict_parser_of_these_tests_refuses_bare_nan():
    with pytest.raises(ValueError, match="not JSON: NaN"):
        strict_loads(json.dumps({"x": float("nan")}))
