"""The command line: config mapping, generate/validate, the Keras guard and the demo end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tfrs_multiscene import cli
from tfrs_multiscene import config as C

ROOT = Path(__file__).resolve().parent.parent


def test_every_flag_maps_to_one_config_field():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, (_, sections) in cli.COMMANDS.items():
        dests = {a.dest for a in sub.choices[name]._actions if a.dest not in ("help", "help_all", "config_file", "args")}
        fields = {f"{s}.{f.name}" for s, cls in sections.items() for f in C.dataclasses.fields(cls)
                  if "flag" in f.metadata}
        assert dests == fields, name


def test_config_file_then_flags_override(tmp_path):
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text("retrieval:\n  epochs: 7\n  temperature: 0.2\nsplit:\n  split: temporal\n")
    args = cli.build_parser().parse_args(["train", "--config", str(cfg_file), "--epochs", "3", "--no-logq-correction"])
    configs = cli.build_configs(args)
    assert configs["retrieval"].epochs == 3            # the flag wins over the file
    assert configs["retrieval"].temperature == 0.2     # the file wins over the default
    assert configs["retrieval"].logq_correction is False
    assert configs["split"].split == "temporal"
    assert configs["ranking"] == C.RankingConfig()


def test_config_file_with_unknown_field_names_it(tmp_path):
    cfg_file = tmp_path / "run.json"
    cfg_file.write_text(json.dumps({"retrieval": {"epochz": 3}}))
    args = cli.build_parser().parse_args(["train", "--config", str(cfg_file)])
    with pytest.raises(SystemExit, match="epochz"):
        cli.build_configs(args)


def test_generate_then_validate(tmp_path, capsys):
    out = tmp_path / "data"
    assert cli.main(["generate", "--out", str(out), "--users", "120", "--items", "80",
                     "--impressions", "2000", "--out-format", "parquet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["interactions.parquet", "items.parquet", "users.parquet"]
    assert cli.main(["validate", "--data", str(out), "--strict"]) == 0
    text = capsys.readouterr().out
    assert "read = used + quarantined: " in text and "OK" in text


def test_validate_strict_fails_on_quarantined_rows(tmp_path, capsys):
    src = ROOT / "tests" / "fixtures" / "movielens-100k-corrupted"
    code = cli.main(["validate", "--data", str(src), "--format", "movielens-100k", "--strict",
                     "--quarantine-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "u.data:301 [rating]" in out
    assert (tmp_path / "quarantine_interactions.csv").exists()


def test_train_without_data_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["train", "--run", str(tmp_path / "run")]) == 2
    assert "train needs --data" in capsys.readouterr().err


def test_recommend_against_no_server_is_a_clear_error(capsys):
    code = cli.main(["recommend", "--server", "http://127.0.0.1:9", "--user", "u1", "--scenario", "search",
                     "--timeout", "1"])
    assert code == 2
    assert "127.0.0.1:9" in capsys.readouterr().err


def test_import_after_keras3_tensorflow_says_what_to_do():
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    code = "import tensorflow as tf; tf.keras.layers; import tfrs_multiscene"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "TF_USE_LEGACY_KERAS=1" in proc.stderr and "import tfrs_multiscene before tensorflow" in proc.stderr


def test_import_first_makes_tfrs_usable():
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    code = ("import tfrs_multiscene, tensorflow as tf, tensorflow_recommenders as tfrs; "
            "print(tf.keras.__name__)")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().startswith("tf_keras")


@pytest.mark.slow
def test_demo_quick_end_to_end(quick_demo):
    """`tfrs-multiscene demo --quick`: every stage runs and the outputs are where a user looks."""
    out, proc = quick_demo
    result = json.loads((out / "demo_result.json").read_text())
    assert result["rest"]["ids"] and result["rest"]["ids"] == result["grpc"]["ids"]
    standard = result["evaluation"]["retrieval"]["standard"]
    assert {"model", "popularity", "item_knn", "ease", "tfidf", "tfrs_tutorial"} <= set(standard)
    assert set(result["evaluation"]["ranking"]["click"]["overall"]) >= {"model", "pooled", "separate", "oracle"}
    assert (out / "models" / "recommender" / "1" / "saved_model.pb").exists()
    assert (out / "models" / "serving_config" / "models.config").exists()
    report = (out / "run" / "report" / "report.md").read_text()
    assert "Retrieval evaluation" in report and ".png" in report
    summary = json.loads((out / "run" / "train_summary.json").read_text())
    assert summary["ranking"]["history_affinity"]["log_size"] > 0, "the ranking reads the user-history affinity"
    assert "user-history affinity from" in report
    assert "REST and gRPC agree: True" in proc.stdout
    assert "share of the pooled-oracle gap the model closes on" in proc.stdout  # with its interval


@pytest.mark.slow
def test_demo_exports_serve_unknown_users_and_items(quick_demo):
    """A user and items the model never saw still get answers (from features/OOV rows), not errors."""
    out, _ = quick_demo
    code = f"""
import json, tensorflow as tf, tfrs_multiscene
rec = tfrs_multiscene.load({str(out / 'models' / 'recommender')!r})
inputs = {{name: spec for name, spec in rec.signatures['recommend'].structured_input_signature[1].items()}}
feed = {{}}
for name, spec in inputs.items():
    if name == 'k':
        feed[name] = tf.constant([5], spec.dtype)
    elif name == 'timestamp':
        feed[name] = tf.constant([1_700_000_000], spec.dtype)
    elif spec.shape.rank == 2:
        feed[name] = tf.constant([['never-seen-item']], spec.dtype)
    elif spec.dtype == tf.string:
        feed[name] = tf.constant(['search' if name == 'scenario' else 'never-seen-user'])
    else:
        feed[name] = tf.zeros([1], spec.dtype)
out = rec('recommend', **feed)
ids = [i.decode() for i in out['ids'].numpy()[0] if i]
print(json.dumps({{'ids': ids, 'finite': bool(tf.reduce_all(tf.math.is_finite(out['scores'][:, :5])))}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(answer["ids"]) == 5 and answer["finite"]


def test_shipped_config_presets_load_into_typed_sections():
    presets = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))
    assert presets, "configs/ holds the data-set presets"
    for preset in presets:
        args = cli.build_parser().parse_args(["train", "--config", str(preset)])
        configs = cli.build_configs(args)
        data = C.load_config_file(preset)
        for section, fields in data.items():
            for name, value in fields.items():
                assert getattr(configs[section], name) == value, f"{preset.name}: {section}.{name}"


@pytest.mark.slow
def test_export_names_a_missing_history_file(quick_demo, tmp_path):
    """A run whose ranking reads the user-history affinity cannot be exported without the
    saved feature: the error names the file and the command that rebuilds it."""
    import shutil

    from tfrs_multiscene.errors import UserError
    from tfrs_multiscene.export.run_export import export_run

    out, _ = quick_demo
    run = tmp_path / "run"
    shutil.copytree(out / "run", run)
    (run / "ranking" / "history.npz").unlink()
    with pytest.raises(UserError, match=r"history\.npz is missing.*--stages ranking"):
        export_run(C.ExportConfig(run_dir=str(run), model_base=str(tmp_path / "models")), log=lambda *_: None)
    assert not (tmp_path / "models").exists()


def test_train_help_shows_the_common_flags_and_help_all_every_one(capsys):
    """`train --help` stays readable (at most 30 flags) and names where the rest are; an
    advanced flag still works; `--help-all` lists every flag."""
    def flags(argv):
        with pytest.raises(SystemExit):
            cli.main(argv)
        out = capsys.readouterr().out
        return out, {w.rstrip(",") for line in out.splitlines() for w in line.split()[:2] if w.startswith("-")}

    short, shown = flags(["train", "--help"])
    assert len(shown) <= 31 and {"--data", "--run", "--epochs", "--architecture", "--text-encoder"} <= shown
    assert "--temperature" not in shown and "--help-all" in short and "docs/CONFIG.md" in short
    _, every = flags(["train", "--help-all"])
    assert {"--temperature", "--mixed-negatives", "--wide-prior"} <= every and len(every) > 90
    args = cli.build_parser().parse_args(["train", "--temperature", "0.3"])
    assert cli.build_configs(args)["retrieval"].temperature == 0.3


def test_the_settings_reference_page_matches_the_config_dataclasses():
    """docs/CONFIG.md is generated from the dataclasses (scripts/config_reference.py): a new
    or changed setting without a regenerated page fails here."""
    page = (ROOT / "docs" / "CONFIG.md").read_text()
    assert page == cli.config_reference() + "\n", "run .venv/bin/python scripts/config_reference.py"
    assert "| `new_item_warm_cost` | `--new-item-warm-cost` | `0.02` |" in page


def test_every_command_answers_help_without_a_traceback(capsys):
    """`--help` of every command exits 0; `benchmark --help` lists the benchmarks of benchmarks/
    and an unknown one is named with the known ones (exit 2, no traceback)."""
    for name in cli.COMMANDS:
        if name in cli.PASS_THROUGH:
            continue
        with pytest.raises(SystemExit) as exit_:
            cli.main([name, "--help"])
        assert exit_.value.code == 0, name
    assert cli.main(["benchmark", "--help"]) == 0
    listed = capsys.readouterr().out
    assert "real " in listed and "serving " in listed and "index " in listed
    assert cli.main(["benchmark", "nope"]) == 2
    assert "unknown benchmark 'nope'; kinds: " in capsys.readouterr().err
