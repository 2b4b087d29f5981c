"""`train` run again into a run directory, and `train --strict`, as a user meets them: a finished
run is reused as it is, other settings are refused before anything is written (never two
splits, never a config.json that describes another model), dirty data under --strict trains
nothing and says where the rejected rows are."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TRAIN = ["--text-encoder", "none", "--epochs", "2", "--ranking-epochs", "2", "--early-stopping", "0",
         "--ranking-early-stopping", "0", "--no-history-affinity"]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def _cli(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tfrs_multiscene.cli", *args], capture_output=True, text=True,
                          env=ENV, timeout=timeout)


def _digest(run: Path) -> dict:
    """md5 of every file a trained model lives in (checkpoints and final weights, both stages)."""
    files = sorted(p for stage in ("retrieval", "ranking") for p in (run / stage).rglob("*")
                   if p.is_file() and p.suffix in (".index", ".data-00000-of-00001") or p.name == "checkpoint")
    return {str(p.relative_to(run)): hashlib.md5(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data dir, run dir, the train command's arguments) of one finished tiny run, both stages."""
    root = tmp_path_factory.mktemp("rerun")
    data, run = root / "data", root / "run"
    done = _cli("generate", "--out", str(data), "--users", "120", "--items", "150", "--impressions", "5000")
    assert done.returncode == 0, done.stderr[-2000:]
    command = ["train", "--data", str(data), "--run", str(run), *TRAIN]
    done = _cli(*command)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return data, run, command


def test_a_finished_run_trained_again_is_reused_not_retrained(trained):
    _, run, command = trained
    before = _digest(run)
    assert any("ranking" in k for k in before) and any("retrieval" in k for k in before)
    again = _cli(*command)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "reusing the split saved in" in again.stdout
    assert _digest(run) == before, "the finished models were trained again"


@pytest.mark.parametrize("change, needle", [
    (["--test-fraction", "0.3"], "split.test_fraction: saved 0.2, now 0.3"),
    (["--split", "temporal"], "split.split: saved 'random', now 'temporal'"),
    (["--learning-rate", "0.01"], "holds a retrieval model trained with other settings (learning_rate: saved 0.001, now 0.01)"),
    (["--ranking-dropout", "0.4"], "holds a ranking model trained with other settings (dropout: saved"),
])
def test_other_settings_are_refused_before_anything_is_written(trained, change, needle):
    """A re-run that would make another split, or go on training a model with other settings,
    stops with a message naming each difference and how to start fresh; config.json and the
    models are untouched."""
    _, run, command = trained
    config, models = (run / "config.json").read_bytes(), _digest(run)
    refused = _cli(*command, *change)
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    assert needle in refused.stderr and "train into a new --run" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert (run / "config.json").read_bytes() == config and _digest(run) == models


def test_more_epochs_resume_the_finished_run(trained, tmp_path):
    """Epochs may change on a re-run: the copy of a finished run trains one more retrieval epoch
    from where it stopped, on the same split."""
    import json
    import shutil

    _, run, command = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    command = [a if a != str(run) else str(copy) for a in command]
    more = _cli(*command, "--epochs", "3", "--stages", "retrieval")
    assert more.returncode == 0, more.stdout[-2000:] + more.stderr[-2000:]
    summary = json.loads((copy / "train_summary.json").read_text())
    assert summary["retrieval"]["resumed_from_epoch"] == 2 and summary["retrieval"]["epochs"] == 3


def test_strict_training_on_dirty_data_trains_nothing_and_names_the_rejected_rows(trained, tmp_path):
    data, _, _ = trained
    dirty = tmp_path / "dirty"
    dirty.mkdir()
    for table in data.iterdir():
        (dirty / table.name).write_bytes(table.read_bytes())
    with open(dirty / "interactions.csv", "a") as f:  # an unknown item and a timestamp that is not a number
        f.write("u001,no-such-item,search,1700000000,1,0,0.5,0.1\nu001,i001,search,noon,1,0,0.5,0.1\n")
    run = tmp_path / "run"
    refused = _cli("train", "--data", str(dirty), "--run", str(run), "--strict", *TRAIN)
    assert refused.returncode == 1, refused.stdout[-2000:] + refused.stderr[-2000:]
    assert f"--strict: 2 row(s) quarantined, nothing trained); the rows and their reasons are in {run / 'data'}" \
        in refused.stderr, refused.stderr
    assert not (run / "retrieval").exists() and not (run / "ranking").exists() and not (run / "config.json").exists()
    assert any((run / "data").glob("*quarantine*")) or any((run / "data").iterdir())
    lenient = _cli("train", "--data", str(dirty), "--run", str(tmp_path / "lenient"), *TRAIN, "--stages", "retrieval")
    assert lenient.returncode == 0, lenient.stdout[-2000:] + lenient.stderr[-2000:]
