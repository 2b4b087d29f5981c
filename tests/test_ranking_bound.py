"""scripts/ranking_bound.py: the correctly specified click fit on a synthetic world's split."""

import importlib.util
import re
from pathlib import Path

import numpy as np

from tfrs_multiscene.config import GenerateConfig
from tfrs_multiscene.data import synthetic
from tfrs_multiscene.evaluation.ranking_metrics import expected_auc

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ranking_bound.py"


def load_script():
    spec = importlib.util.spec_from_file_location("ranking_bound", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_true_affinity_lifts_the_fit_and_the_rows_are_matched(tmp_path, capsys):
    world = synthetic.simulate(GenerateConfig(seed=3))
    assert world.impressions.shape == (len(world.tables.interactions), 3) and len(world.affinity) == len(world.impressions)
    inter = world.tables.interactions
    draw = np.random.default_rng(0).random(len(inter))
    (tmp_path / "split").mkdir()
    for name, rows in (("train", draw < 0.7), ("valid", (draw >= 0.7) & (draw < 0.8)), ("test", draw >= 0.8)):
        inter[rows].to_parquet(tmp_path / "split" / f"{name}.parquet")
    load_script().main(["--data-seed", "3", "--run", str(tmp_path), "--affinity", "none", "true", "history"])
    out = capsys.readouterr().out
    assert "affinity history: the run has no history.npz; skipped" in out
    ads = {m.group(1): float(m.group(2)) for m in re.finditer(r"affinity (\w+):(?:\n  \w+ .*)*?\n  ads +valid \S+ test (\S+)", out)}
    assert set(ads) == {"none", "true"}, out
    assert ads["true"] > ads["none"] + 0.005, out
    test_ads = inter[(draw >= 0.8) & (inter["scenario"] == "ads").to_numpy()]["true_p_click"]
    assert ads["true"] <= expected_auc(test_ads, test_ads) + 1e-9  # nothing ranks better than the truth


def test_a_run_from_another_world_is_refused(tmp_path):
    other = synthetic.simulate(GenerateConfig(seed=4)).tables.interactions
    (tmp_path / "split").mkdir()
    for name in ("train", "valid", "test"):
        other.to_parquet(tmp_path / "split" / f"{name}.parquet")
    try:
        load_script().main(["--data-seed", "3", "--run", str(tmp_path), "--affinity", "none"])
    except SystemExit as stop:
        assert "do not match world --data-seed 3" in str(stop)
    else:
        raise AssertionError("a run of another world was accepted")
