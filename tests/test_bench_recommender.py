"""Smoke test of benchmarks/bench_recommender.py at a tiny size (world -> train -> export ->
server subprocess -> REST load -> profile -> JSON)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # ~40 s of CPU (train + export + server); minutes of wall time when the cores are shared
def test_bench_recommender_tiny(tmp_path):
    out = tmp_path / "recommender.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_recommender.py"), "--quick", "--items", "300",
           "--users", "120", "--impressions", "3000", "--candidates", "50", "--index", "brute_force",
           "--clients", "1", "2", "--seconds", "0.5", "--load-seconds", "1", "--requests", "20",
           "--work", str(tmp_path / "work"), "--json", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["items"] == 300 and result["candidates"] == 50
    for clients in ("1", "2"):
        run = result["rest"][clients]
        assert run["requests"] > 0 and run["failed"] == 0 and run["p99_ms"] >= run["p50_ms"] > 0
    load = result["load"]
    assert load["failed"] == 0 and load["server_alive"] and load["server_rss_kb_start"] > 0 and load["server_rss_kb_end"] > 0
    assert {"recommend_graph", "rest_handler_incl_json", "retrieval_top_candidates", "ranking_candidates"} <= set(result["profile"])
    assert len([i for i in result["example"]["ids"] if i]) > 0
    assert set(result["verdict"]) == {"p99_one_client_under_50ms", "load_zero_failed"}
