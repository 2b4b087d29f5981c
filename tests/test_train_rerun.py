"""`train` run again into a run directory, and `train --strict`, as a user meets them: a finished
run is reused as it is (and says so), other settings are refused before anything is written
(never two splits, never a config.json that describes another model), dirty data under --strict
trains nothing and says how many rows were rejected and where they are."""

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TRAIN = ["--text-encoder", "none", "--epochs", "2", "--ranking-epochs", "2", "--early-stopping", "0",
         "--ranking-early-stopping", "0", "--no-history-affinity"]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
#: an unknown item and a timestamp that is not a number
BAD_ROWS = "u001,no-such-item,search,1700000000,1,0,0.5,0.1\nu001,i001,search,noon,1,0,0.5,0.1\n"


def _cli(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tfrs_multiscene.cli", *args], capture_output=True, text=True,
                          env=ENV, timeout=timeout)


def _files(root: Path, models_only: bool = False) -> dict:
    """``{path: (md5, mtime_ns)}`` of every file under ``root`` (``models_only``: the checkpoints
    and weights of both stages), so that a rewrite shows even when it writes the same bytes."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    if models_only:
        files = [p for p in files if p.relative_to(root).parts[0] in ("retrieval", "ranking")
                 and (p.suffix in (".index", ".data-00000-of-00001") or p.name == "checkpoint")]
    return {str(p.relative_to(root)): (hashlib.md5(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in files}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rerun") / "data"
    done = _cli("generate", "--out", str(out), "--users", "120", "--items", "150", "--impressions", "5000")
    assert done.returncode == 0, done.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def dirty(data) -> Path:
    """A copy of ``data`` with two bad interaction rows."""
    out = data.parent / "dirty"
    shutil.copytree(data, out)
    with open(out / "interactions.csv", "a") as f:
        f.write(BAD_ROWS)
    return out


@pytest.fixture(scope="module")
def trained(data):
    """(data dir, run dir, the train command's arguments) of one finished tiny run, both stages."""
    run = data.parent / "run"
    command = ["train", "--data", str(data), "--run", str(run), *TRAIN]
    done = _cli(*command)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return data, run, command


@pytest.mark.slow
def test_a_finished_run_trained_again_is_reused_not_retrained(trained):
    _, run, command = trained
    before = _files(run, models_only=True)
    assert any(k.startswith("ranking") for k in before) and any(k.startswith("retrieval") for k in before)
    again = _cli(*command)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert f"reusing the split saved in {run / 'split'}" in again.stdout
    assert f"retrieval: reusing the finished model in {run / 'retrieval'} (2 epochs), nothing trained" in again.stdout
    assert f"ranking: reusing the finished model in {run / 'ranking'} (2 epochs), nothing trained" in again.stdout
    assert _files(run, models_only=True) == before, "the finished models were trained (or written) again"
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["retrieval"]["reused_finished_model"] and summary["ranking"]["reused_finished_model"]


@pytest.mark.slow
@pytest.mark.parametrize("change, needle", [
    (["--test-fraction", "0.3"], "split.test_fraction: saved 0.2, now 0.3"),
    (["--split", "temporal"], "split.split: saved 'random', now 'temporal'"),
    (["--seed", "7"], "split.seed: saved 42, now 7"),
    (["--learning-rate", "0.01"], "holds a retrieval model trained with other settings (learning_rate: saved 0.001, now 0.01)"),
    (["--ranking-dropout", "0.4"], "holds a ranking model trained with other settings (dropout: saved"),
    (["--text-encoder", "scratch"], "trained on other text features (text.text_encoder: saved 'none', now 'scratch')"),
    (["--hash-user-ids", "salt"], "data.hash_user_ids: saved None, now 'salt'"),
])
def test_other_settings_are_refused_before_anything_is_written(trained, change, needle):
    """A re-run that would make another split, or go on training a model with other settings,
    stops with a message naming each difference and how to start fresh; no file of the run
    (config.json, settings_from_data.json, the report, the models) is written."""
    _, run, command = trained
    before = _files(run)
    refused = _cli(*command, *change)
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    assert needle in refused.stderr and "train into a new --run" in refused.stderr, refused.stderr
    assert f"delete {run}" in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
    assert _files(run) == before


@pytest.mark.slow
def test_the_report_plots_the_new_item_offset_it_chose(trained):
    """The generated world has items without a training interaction: training chooses their
    score offset on validation and the run's report shows the curve it was read from."""
    _, run, _ = trained
    choice = json.loads((run / "retrieval" / "new_items.json").read_text())
    assert choice["warm_cost"] == 0.02 and len(choice["curve"]) > 10
    report = (run / "report" / "report.md").read_text()
    assert "## New items" in report and f"score offset {choice['offset']:g}" in report
    assert (run / "report" / "new_item_offset.png").stat().st_size > 1000


@pytest.mark.slow
def test_training_one_stage_keeps_the_other_stages_settings_in_config_json(trained):
    """`--stages ranking` with a retrieval flag trains no retrieval, so config.json keeps
    the retrieval settings its model was trained with (and says so)."""
    _, run, command = trained
    before = json.loads((run / "config.json").read_text())["retrieval"]
    again = _cli(*command, "--stages", "ranking", "--temperature", "0.33")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "retrieval: not trained in this call; config.json keeps the settings" in again.stdout
    assert json.loads((run / "config.json").read_text())["retrieval"] == before


@pytest.mark.slow
def test_more_epochs_resume_the_finished_run(trained, tmp_path):
    """Epochs may change on a re-run: the copy of a finished run trains one more retrieval epoch
    from where it stopped, on the same split."""
    _, run, command = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    command = [a if a != str(run) else str(copy) for a in command]
    more = _cli(*command, "--epochs", "3", "--stages", "retrieval")
    assert more.returncode == 0, more.stdout[-2000:] + more.stderr[-2000:]
    summary = json.loads((copy / "train_summary.json").read_text())
    assert summary["retrieval"]["resumed_from_epoch"] == 2 and summary["retrieval"]["epochs"] == 3
    assert not summary["retrieval"]["reused_finished_model"] and "reusing the finished model" not in more.stdout


def test_a_split_saved_before_config_json_still_refuses_another_split(data, tmp_path):
    """A first run stopped between saving its split and writing config.json: the split's own
    info.json still says what it was made with."""
    from tfrs_multiscene import config as C
    from tfrs_multiscene.data.loading import load_tables
    from tfrs_multiscene.data.splits import make_split
    from tfrs_multiscene.errors import RunConflict
    from tfrs_multiscene.run import RunDir
    from tfrs_multiscene.training import check_same_split_settings

    cfg = C.RunConfig(data=C.DataConfig(data=str(data)))
    run = RunDir(tmp_path / "run")
    run.save_split(make_split(load_tables(cfg.data)[0], cfg.split))
    assert not run.config_path.exists()
    check_same_split_settings(run, cfg)  # the same command resumes
    other = dataclasses.replace(cfg, split=dataclasses.replace(cfg.split, test_fraction=0.3, seed=7))
    with pytest.raises(RunConflict, match=r"split\.test_fraction: saved 0\.2, now 0\.3; split\.seed: saved 42, now 7"):
        check_same_split_settings(run, other)


def test_strict_names_the_quarantine_dir_the_rows_went_to(dirty, tmp_path):
    from tfrs_multiscene import config as C
    from tfrs_multiscene.errors import DataRejected
    from tfrs_multiscene.report import Report
    from tfrs_multiscene.run import RunDir
    from tfrs_multiscene.training import prepare_split

    elsewhere = tmp_path / "rejected"
    cfg = C.RunConfig(data=C.DataConfig(data=str(dirty), strict=True, quarantine_dir=str(elsewhere)))
    run = RunDir(tmp_path / "run")
    with pytest.raises(DataRejected) as refused:
        prepare_split(run, cfg, Report(run.path), log=lambda *a: None)
    assert str(refused.value).endswith(f"2 row(s) quarantined, nothing trained); the rows and their reasons are in "
                                       f"{elsewhere}")
    assert (elsewhere / "quarantine_interactions.csv").exists() and not run.split_dir.exists()


@pytest.mark.slow
def test_strict_training_on_dirty_data_trains_nothing_and_names_the_rejected_rows(dirty, tmp_path):
    run = tmp_path / "run"
    refused = _cli("train", "--data", str(dirty), "--run", str(run), "--strict", *TRAIN)
    assert refused.returncode == 1, refused.stdout[-2000:] + refused.stderr[-2000:]
    message = "error: data rejected (--strict: 2 row(s) quarantined, nothing trained); the rows and their reasons are in "
    assert refused.stderr.strip().splitlines() == [message + str(run / "data")], refused.stderr
    assert not (run / "retrieval").exists() and not (run / "ranking").exists() and not (run / "split").exists()
    assert (run / "data" / "quarantine_interactions.csv").exists()

    lenient_run = tmp_path / "lenient"
    lenient = _cli("train", "--data", str(dirty), "--run", str(lenient_run), *TRAIN, "--stages", "retrieval")
    assert lenient.returncode == 0, lenient.stdout[-2000:] + lenient.stderr[-2000:]
    trained = _files(lenient_run, models_only=True)
    # --strict again into that run: its saved split was made from the same rejected rows
    strict_again = _cli("train", "--data", str(dirty), "--run", str(lenient_run), "--strict", *TRAIN)
    assert strict_again.returncode == 1, strict_again.stdout[-2000:] + strict_again.stderr[-2000:]
    assert strict_again.stderr.strip().splitlines() == [message + str(lenient_run / "data")], strict_again.stderr
    assert _files(lenient_run, models_only=True) == trained and not (lenient_run / "ranking").exists()
