"""Smoke test of benchmarks/bench_soak.py at a tiny size: 4 clients of good and bad requests
against the real recommender with a version swap; no good request fails, every bad one gets
its 4xx / INVALID_ARGUMENT with a message, the server ends on version 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # ~40 s: a tiny world trained and exported, a server subprocess, 6 s of load
def test_bench_soak_tiny(tmp_path):
    out = tmp_path / "soak.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_soak.py"), "--quick", "--items", "300", "--users", "120",
           "--impressions", "3000", "--clients", "4", "--seconds", "6", "--idle-seconds", "0",
           "--work", str(tmp_path / "work"), "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    soak = result["soak"]
    assert soak["good_requests"] > 0 and soak["good_failed"] == 0, soak["good_failures"]
    assert soak["bad_requests"] > 0 and not soak["bad_unexpected"], soak["bad_unexpected"]
    rest_kinds = {kind for kind, seen in soak["bad_by_kind"].items() if any(v.startswith("4") for v in seen)}
    assert {"malformed_json", "body_over_the_limit", "k_zero", "unknown_scenario"} <= rest_kinds
    assert result["server_alive"] and result["versions_after"] == {"1": "END", "2": "AVAILABLE"}
    assert result["verdict"]["swapped_to_version_2"] and result["rss_end_over_start"] > 0
