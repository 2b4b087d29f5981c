"""Multi-worker training: two processes on 127.0.0.1 train one model together."""

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tfrs_multiscene import distribute

WORKER = Path(__file__).with_name("multiworker_worker.py")
TIMEOUT = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(out: Path, run: Path, tf_config=None) -> subprocess.Popen:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_USE_LEGACY_KERAS="1")
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    with open(out.with_suffix(".log"), "w") as log:  # the child keeps its own handle
        return subprocess.Popen([sys.executable, str(WORKER), "--out", str(out), "--run", str(run)],
                                env=env, stdout=log, stderr=subprocess.STDOUT)


def _worker_module():
    spec = importlib.util.spec_from_file_location("multiworker_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _finish(procs: dict) -> None:
    try:
        for name, p in procs.items():
            code = p.wait(timeout=TIMEOUT)
            assert code == 0, f"{name} exited {code}"
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


def test_tf_config_parsing_and_chief():
    two = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 1}}
    assert distribute.worker_count(two) == 2 and not distribute.is_chief(two)
    assert distribute.is_chief({**two, "task": {"type": "worker", "index": 0}})
    with_chief = {"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "worker", "index": 0}}
    assert not distribute.is_chief(with_chief) and distribute.worker_index(with_chief) == 1
    assert distribute.is_chief({}) and distribute.worker_count({}) == 1
    assert distribute.checkpoint_dir("r", two).name.startswith(".tmp_checkpoints_worker_1")
    with pytest.raises(ValueError, match="not valid JSON"):
        distribute.tf_config({"TF_CONFIG": "{oops"})
    with pytest.raises(ValueError, match="ParameterServerStrategy"):
        distribute.strategy_from_env({"TF_CONFIG": json.dumps({"cluster": {"ps": ["a:1"], "worker": ["b:1"]},
                                                                "task": {"type": "worker", "index": 0}})})
    assert type(distribute.strategy_from_env({})).__name__ == "_DefaultDistributionStrategy"


@pytest.mark.slow
def test_two_workers_train_one_model_like_a_single_worker(tmp_path):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    run = tmp_path / "run2"
    procs = {f"worker{i}": _start(tmp_path / f"w{i}.json", run, {"cluster": cluster, "task": {"type": "worker", "index": i}})
             for i in range(2)}
    try:  # the single-worker reference trains in this process meanwhile (no TF_CONFIG here)
        assert _worker_module().main(["--out", str(tmp_path / "single.json"), "--run", str(tmp_path / "run1")]) == 0
    finally:
        _finish(procs)
    w0, w1, single = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("w0", "w1", "single"))

    assert w0["strategy"] == "CollectiveAllReduceStrategy" and w0["replicas"] == 2
    assert single["replicas"] == 1
    # one model: identical weights on both workers after the first step and at the end
    assert w0["first_step_checksum"] == w1["first_step_checksum"]
    assert w0["final_checksum"] == w1["final_checksum"]
    assert w0["first_step_checksum"] != w0["final_checksum"]
    # only the chief keeps checkpoints
    assert w0["chief"] and not w1["chief"] and w1["checkpoint"] is None
    assert Path(w0["checkpoint"] + ".index").exists()
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints"]
    # it learns, and evaluates like the single-worker run on the same data
    for r in (w0, single):
        assert r["loss"][-1] < r["loss"][0]
        assert r["eval"]["recall_at_10"] > 0.15  # 100 items: random is ~0.1
    assert abs(w0["eval"]["recall_at_10"] - single["eval"]["recall_at_10"]) < 0.1
    print(f"\nstep time: 1 worker {single['median_step_seconds'] * 1e3:.1f} ms, "
          f"2 workers {w0['median_step_seconds'] * 1e3:.1f} ms; recall@10 "
          f"{single['eval']['recall_at_10']:.3f} vs {w0['eval']['recall_at_10']:.3f}")


def _train_cli(run: Path, examples: Path, log: Path, tf_config=None) -> subprocess.Popen:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_USE_LEGACY_KERAS="1")
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    cmd = [sys.executable, "-m", "tfrs_multiscene.cli", "train", "--run", str(run), "--examples", str(examples),
           "--stages", "retrieval", "--epochs", "8", "--batch-size", "128", "--text-encoder", "none",
           "--learning-rate", "0.02", "--id-dropout", "0",
           "--embedding-dim", "16", "--feature-dim", "16", "--history-length", "5"]
    with open(log, "w") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                cwd=str(Path(__file__).resolve().parent.parent))


@pytest.mark.slow
def test_train_examples_command_runs_on_two_workers(tmp_path):
    """`tfrs-multiscene train --examples` with TF_CONFIG naming two workers: one MWMS model,
    the chief alone writes the run (config, split, checkpoint), and it evaluates."""
    from tfrs_multiscene import cli
    from tfrs_multiscene.config import EvaluateConfig, GenerateConfig
    from tfrs_multiscene.data.formats import write_tables
    from tfrs_multiscene.data.synthetic import generate
    from tfrs_multiscene.evaluation.run_evaluation import evaluate_run

    write_tables(generate(GenerateConfig(users=200, items=100, impressions=6000, seed=5)), tmp_path / "data", "csv")
    pre = tmp_path / "pre"
    assert cli.main(["preprocess", "--data", str(tmp_path / "data"), "--out", str(pre), "--shards", "4"]) == 0
    run = tmp_path / "run"
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = {f"w{i}": _train_cli(run, pre, tmp_path / f"w{i}.log",
                                 {"cluster": cluster, "task": {"type": "worker", "index": i}}) for i in range(2)}
    try:
        _finish(procs)
    except AssertionError:
        print("\n".join((tmp_path / f"w{i}.log").read_text()[-3000:] for i in range(2)))
        raise
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["retrieval"]["strategy"] == "CollectiveAllReduceStrategy"
    assert summary["retrieval"]["replicas"] == 2 and summary["retrieval"]["chief"]
    assert (run / "split" / "test.parquet").exists() and (run / "config.json").exists()
    checkpoints = sorted(p.name for p in (run / "retrieval" / "checkpoints").iterdir())
    assert "checkpoint" in checkpoints and not list(run.glob(".tmp_checkpoints_*"))
    loss = json.loads((run / "retrieval" / "history.json").read_text())["loss"]
    assert len(loss) == 8 and loss[-1] < loss[0]
    result = evaluate_run(EvaluateConfig(run_dir=str(run), ks=[10], baselines=["popularity"], cold_start=False,
                                         ranking=False), log=lambda *a: None)
    standard = result["retrieval"]["standard"]
    print(f"\ntwo-worker `train --examples`: recall@10 {standard['model']['recall@10']:.3f}, "
          f"popularity {standard['popularity']['recall@10']:.3f}")
    assert standard["model"]["recall@10"] > 0.15  # 100 items: random is ~0.1
    assert standard["model"]["recall@10"] > standard["popularity"]["recall@10"]
