"""Strict JSON for every result file QuaSAR writes (summary.json, sweep.json, bench.json, synth JSON).

Python's json module writes a float NaN or infinity as the bare words `NaN` / `Infinity`, which are not
JSON: strict parsers (JavaScript's JSON.parse, jq, Python with `parse_constant` refusing them) fail on the
whole file. Here every non-finite float becomes `null`, which in QuaSAR's files always means "no value
can be given" (e.g. a relative reduction when the unprotected design had no event to reduce); numpy
scalars and arrays become plain numbers and lists. The result is checked with `allow_nan=False`.
"""

from __future__ import annotations

import json
import math
from typing import Any


def jsonable(obj: Any) -> Any:
    """`obj` with NaN/infinite floats replaced by None and numpy values by Python ones (recursively)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if type(obj).__module__ == "numpy":
        if hasattr(obj, "tolist"):  # numpy scalar or array
            return jsonable(obj.tolist())
    return obj


def dumps(obj: Any, default: Any = None, **kwargs: Any) -> str:
    """json.dumps of `jsonable(obj)` that can never emit NaN or Infinity."""
    return json.dumps(jsonable(obj), allow_nan=False, default=default, **kwargs)
