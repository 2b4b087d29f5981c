"""`train` killed with SIGKILL mid-run and started again with the same command completes."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ["--text-encoder", "none", "--epochs", "4", "--ranking-epochs", "3", "--early-stopping", "0",
         "--ranking-early-stopping", "0", "--no-history-affinity"]


def _cli(*args) -> list:
    return [sys.executable, "-m", "tfrs_multiscene.cli", *args]


def _epoch_checkpoints(run: Path) -> int:
    """Epochs checkpointed so far, both stages (the newest checkpoint's number per stage)."""
    done = 0
    for stage in ("retrieval", "ranking"):
        numbers = [int(p.name.split(".")[0].rsplit("-", 1)[1]) for p in (run / stage / "checkpoints").glob("*-*.index")]
        done += max(numbers, default=0)
    return done


@pytest.mark.slow
def test_train_killed_at_a_random_point_resumes_and_completes(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    data, run = tmp_path / "data", tmp_path / "run"
    subprocess.run(_cli("generate", "--out", str(data), "--users", "120", "--items", "150", "--impressions", "5000"),
                   check=True, capture_output=True, env=env, timeout=300)
    command = _cli("train", "--data", str(data), "--run", str(run), *TRAIN)

    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline, target = time.time() + 600, random.Random(os.getpid()).randint(1, 6)  # of 4 + 3 epochs
    while _epoch_checkpoints(run) < target and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(random.Random(target).uniform(0.0, 0.5))  # somewhere inside the next epoch (or checkpoint write)
    assert first.poll() is None, "training finished before it could be killed"
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    assert not (run / "train_summary.json").exists()

    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["retrieval"]["epochs"] == 4 and summary["ranking"]["epochs_done"] == 3
    resumed = summary["retrieval"]["resumed_from_epoch"] or summary["ranking"]["resumed_from_epoch"]
    assert resumed, f"the second run started over instead of resuming (killed after {target} checkpoints)"
    assert "reusing the split saved in" in again.stdout  # the same rows, not a new split
