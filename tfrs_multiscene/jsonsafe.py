"""JSON that strict parsers accept: NaN/inf become null, numpy scalars and arrays plain."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np


def json_safe(obj):
    """A copy of ``obj`` with NaN/inf -> None, numpy values -> Python, paths -> str."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dump_json(obj, path) -> Path:
    """Write ``obj`` as strict, indented JSON (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(obj), indent=2, default=str, allow_nan=False) + "\n")
    return path
