"""Settings derived from the data: each rule on a tiny table, user values always win."""

import json

import numpy as np
import pandas as pd

from tfrs_multiscene import cli
from tfrs_multiscene import config as C
from tfrs_multiscene import settings_from_data as SD
from tfrs_multiscene.data.schema import Tables


def log(users=10, per_user=5, scenarios=("feed",), shares=None, impressions=False, seed=0):
    """``users`` x ``per_user`` interactions over 50 items; ``impressions`` adds a click label with zeros."""
    rng = np.random.default_rng(seed)
    n = users * per_user
    shares = shares or [1 / len(scenarios)] * len(scenarios)
    inter = pd.DataFrame({
        "user_id": np.repeat([f"u{i}" for i in range(users)], per_user),
        "item_id": [f"i{x}" for x in rng.integers(0, 50, n)],
        "scenario": rng.choice(np.array(scenarios, dtype=object), n, p=shares),
    })
    if impressions:
        inter["click"] = (rng.random(n) < 0.3).astype(int)
    else:
        inter["rating"] = rng.integers(1, 6, n).astype(float)
        inter["liked"] = (inter["rating"] >= 4).astype(int)
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(50)], "title": [f"item {i}" for i in range(50)]})
    return Tables(inter, items, None)


def chosen(tables, explicit=(), cfg=None, positive_task="all"):
    cfg = cfg or C.RunConfig()
    effective, choices = SD.derive_settings(cfg, SD.DataProfile.of(tables, positive_task), explicit)
    return effective, {c.field: c for c in choices}


def test_profile_counts_what_the_rules_read():
    profile = SD.DataProfile.of(log(users=4, per_user=25, scenarios=("a", "b"), shares=[0.75, 0.25]), "all")
    assert profile.interactions == 100 and profile.positives == 100 and profile.users == 4
    assert profile.median_user_positives == 25 and not profile.impression_log and profile.has_rating
    assert profile.ranking_examples == 100 * (1 + 4)  # each positive and its 4 sampled negatives
    assert set(profile.scenario_shares) == {"a", "b"}
    liked_only = SD.DataProfile.of(log(users=4, per_user=25), None)  # the default positives: liked
    assert liked_only.positives < 100


def test_sparse_users_get_a_softer_softmax_and_dense_users_read_their_whole_history():
    effective, sparse = chosen(log(users=20, per_user=5, impressions=True))
    assert set(f for f in sparse if f.startswith("retrieval.")) == {"retrieval.temperature", "retrieval.epochs"}
    assert effective.retrieval.temperature == 0.2 and "sparse users (median 5" in sparse["retrieval.temperature"].reason
    _, between = chosen(log(users=20, per_user=12, impressions=True))  # neither sparse nor dense
    assert not any(f.startswith("retrieval.") for f in between)
    effective, dense = chosen(log(users=5, per_user=120, impressions=True))
    assert effective.retrieval.use_user_id is True and effective.retrieval.share_item_embeddings is False
    assert effective.retrieval.history_length == 120  # the p90 history, within [default 50, 200]
    assert "dense users" in dense["retrieval.use_user_id"].reason


def test_many_positives_get_the_large_batch_and_weight_average():
    effective, choices = chosen(log(users=400, per_user=80, impressions=True))
    assert effective.retrieval.batch_size == 1024 and effective.retrieval.ema_momentum == 0.998
    assert effective.retrieval.learning_rate == 0.008 and effective.retrieval.epochs == 60
    assert "32000 training positives" in choices["retrieval.ema_momentum"].reason
    _, few = chosen(log(users=40, per_user=12, impressions=True))
    assert "retrieval.ema_momentum" not in few
    profile = SD.DataProfile.of(log(users=8000, per_user=4, impressions=True), "all")  # both rules set epochs
    many_sparse, choices = SD.derive_settings(C.RunConfig(), profile)
    assert many_sparse.retrieval.epochs == 60 and [c.field for c in choices].count("retrieval.epochs") == 1


def test_positive_only_log_trains_the_ranking_without_the_wide_part():
    effective, choices = chosen(log(users=20, per_user=5))
    assert effective.ranking.wide is False and "positives-only" in choices["ranking.wide"].reason
    assert effective.ranking.learning_rate == 0.002 and effective.ranking.epochs == 8
    impressions, kept = chosen(log(users=20, per_user=5, impressions=True))
    assert impressions.ranking.wide is True and "ranking.wide" not in kept


def test_an_impression_log_too_large_for_full_batch_fits_drops_the_wide_part(monkeypatch):
    monkeypatch.setattr(SD, "WIDE_MAX_EXAMPLES", 99)
    effective, choices = chosen(log(users=20, per_user=5, impressions=True))
    assert effective.ranking.wide is False and "100 ranking examples" in choices["ranking.wide"].reason
    assert effective.ranking.learning_rate == C.RankingConfig().learning_rate  # impression logs keep it


def test_scenario_balancing_only_where_a_scenario_is_small():
    even, choices = chosen(log(users=20, per_user=10, scenarios=("a", "b"), impressions=True))
    assert even.ranking.balance_scenarios is False and "smallest" in choices["ranking.balance_scenarios"].reason
    skewed, _ = chosen(log(users=20, per_user=10, scenarios=("a", "b"), shares=[0.95, 0.05], impressions=True))
    assert skewed.ranking.balance_scenarios is True


def test_a_value_the_user_set_is_kept_and_reported_as_kept():
    cfg = C.RunConfig(ranking=C.RankingConfig(wide=True, learning_rate=0.001))
    effective, choices = chosen(log(users=20, per_user=5), explicit={"ranking.wide", "ranking.learning_rate"},
                                cfg=cfg)
    assert effective.ranking.wide is True and effective.ranking.learning_rate == 0.001
    assert choices["ranking.wide"].kept_user_value
    assert "ranking.learning_rate" not in choices  # the rule for "no wide part" no longer applies
    assert "kept your value" in SD.format_choices(list(choices.values()))


def test_cli_knows_which_settings_the_user_gave(tmp_path):
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text("ranking:\n  wide: true\n")
    args = cli.build_parser().parse_args(["train", "--config", str(cfg_file), "--batch-size", "64", "--data", "d"])
    assert {"ranking.wide", "retrieval.batch_size", "data.data"} <= C.explicit_fields(args)
    assert "retrieval.learning_rate" not in C.explicit_fields(args)


def test_train_records_the_choices_in_the_run(tmp_path):
    from tfrs_multiscene.training import settings_from_data
    from tfrs_multiscene.report import Report
    from tfrs_multiscene.run import RunDir

    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    split = type("S", (), {"train": log(users=20, per_user=5)})()
    lines = []
    effective, recorded = settings_from_data(run, C.RunConfig(), split, set(), Report(run.path), lines.append)
    saved = json.loads((run.path / "settings_from_data.json").read_text())
    assert saved["choices"] == recorded and saved["profile"]["interactions"] == 100
    assert effective.ranking.wide is False and "ranking.wide = False" in lines[0]
