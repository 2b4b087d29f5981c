"""Shared test set-up: TF quiet, Keras 2 for tf.keras before anything imports TensorFlow."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import tfrs_multiscene  # noqa: E402,F401  (sets up Keras 2 for TFRS)


import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory):
    """One `tfrs-multiscene demo --quick` run (brute-force index) shared by the tests that read
    its outputs: ``(out dir, completed process)``; the exports are under ``out/models``."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    proc = subprocess.run([sys.executable, "-m", "tfrs_multiscene.cli", "demo", "--quick", "--out", str(out),
                           "--demo-index", "brute_force"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc
