"""Smoke test of benchmarks/bench_soak.py at a tiny size: 4 clients of good and bad requests
against the real recommender with a version swap; no good request fails, every bad kind is
sent and each gets its expected 4xx / INVALID_ARGUMENT and message, the server ends on version 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # ~45 s of CPU: a tiny world trained and exported, a server subprocess, 2 + 5 s of load
def test_bench_soak_tiny(tmp_path):
    out = tmp_path / "soak.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_soak.py"), "--quick", "--items", "300", "--users", "120",
           "--impressions", "3000", "--clients", "4", "--seconds", "5", "--idle-seconds", "0",
           "--work", str(tmp_path / "work"), "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    soak = result["soak"]
    assert soak["good_requests"] > 0 and soak["good_failed"] == 0 and soak["good_failed_in_warmup"] == 0, soak["good_failures_first"]
    assert not soak["client_crashes"] and soak["client_threads_alive_after"] == 0
    assert soak["bad_requests"] > 0 and not soak["bad_unexpected"] and not soak["bad_kinds_never_sent"], soak["bad_by_kind"]
    for kind, entry in soak["bad_by_kind"].items():
        assert entry["sent"] == entry["as_expected"] > 0, (kind, entry)
        assert all(label.split()[1].startswith("4") or label.split()[1] == "INVALID_ARGUMENT" for label in entry["seen"]), (kind, entry)
    assert soak["bad_by_kind"]["body_over_the_limit"]["seen"] == {"rest 413": soak["bad_by_kind"]["body_over_the_limit"]["sent"]}
    assert {"rest", "grpc"} == set(soak["latency"]) and soak["latency"]["rest"]["p99_ms"] >= soak["latency"]["rest"]["p50_ms"] > 0
    assert result["server_alive"] and result["versions_after"] == {"1": "END", "2": "AVAILABLE"}
    assert soak["swap"]["version_2_available_at_s"] > soak["swap"]["renamed_at_s"] > 0
    assert result["verdict"]["swapped_to_version_2"] and result["rss_end_over_start"] > 0
