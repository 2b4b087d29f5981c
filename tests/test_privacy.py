"""--hash-user-ids SALT: models and exports hold salted hashes of the user ids, never the
raw ids nor the salt; a client that hashes its user's id is served as before."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tfrs_multiscene.data.privacy import HASHED, hash_user_id, hash_user_ids
from tfrs_multiscene.data.schema import Tables

SALT = "pepper-7f3a"
TRAIN = ["--text-encoder", "none", "--epochs", "2", "--ranking-epochs", "2", "--early-stopping", "0",
         "--ranking-early-stopping", "0", "--no-history-affinity"]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def _cli(*args, timeout=900):
    done = subprocess.run([sys.executable, "-m", "tfrs_multiscene.cli", *args], capture_output=True, text=True,
                          env=ENV, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_the_hash_is_keyed_by_the_salt_and_replaces_every_user_id():
    assert hash_user_id("42", SALT) == hash_user_id(42, SALT) != hash_user_id("42", "other salt")
    assert len(hash_user_id("42", SALT)) == 33 and hash_user_id("42", SALT).startswith("h")
    inter = pd.DataFrame({"user_id": ["a", "b", "a"], "item_id": ["i1", "i2", "i2"], "scenario": "s"})
    users = pd.DataFrame({"user_id": ["a", "b", "c"], "age": [1, 2, 3]})
    out = hash_user_ids(Tables(inter, pd.DataFrame({"item_id": ["i1", "i2"], "title": ["x", "y"]}), users), SALT)
    assert out.interactions["user_id"].tolist() == [hash_user_id(u, SALT) for u in ("a", "b", "a")]
    assert out.users["user_id"].tolist() == [hash_user_id(u, SALT) for u in ("a", "b", "c")]
    assert inter["user_id"].tolist() == ["a", "b", "a"]  # the caller's tables are left as they were
    with pytest.raises(ValueError, match="non-empty salt"):
        hash_user_ids(out, "")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("privacy")
    data, run, models = root / "data", root / "run", root / "models"
    _cli("generate", "--out", str(data), "--users", "120", "--items", "150", "--impressions", "5000")
    _cli("train", "--data", str(data), "--run", str(run), "--hash-user-ids", SALT, *TRAIN)
    _cli("export", "--run", str(run), "--out", str(models), "--index", "brute_force", "--stock-index", "none")
    raw = pd.read_csv(data / "interactions.csv", dtype=str)["user_id"].unique().tolist()
    return run, models, raw


def test_no_exported_file_holds_a_raw_user_id_or_the_salt(exported):
    run, models, raw = exported
    files = [p for p in Path(models).rglob("*") if p.is_file()]
    assert len(files) > 10
    blob = b"".join(p.read_bytes() for p in files)
    assert SALT.encode() not in blob
    leaked = [u for u in raw if u.encode() in blob]
    assert not leaked, f"raw user ids in the export: {leaked[:5]}"
    # the run's own split holds hashes too (only the run directory's config keeps the salt)
    from tfrs_multiscene.run import RunDir

    split = RunDir(run).load_split()
    assert set(split.train.interactions["user_id"]) <= {hash_user_id(u, SALT) for u in raw}


def test_a_client_that_hashes_its_user_id_is_served(exported):
    import tensorflow as tf

    import tfrs_multiscene

    _, models, raw = exported
    recommender = tfrs_multiscene.load(next((Path(models) / "recommender").iterdir()))
    record = json.loads(next(Path(models).glob("recommender/*/assets.extra/tfrs_multiscene.json")).read_text())
    assert record["user_ids"] == HASHED
    assert record["config"]["data"]["hash_user_ids"].startswith("<set")
    def top(user):
        out = recommender("recommend_user", user_id=tf.constant([user]), scenario=tf.constant(["home_feed"]),
                          k=tf.constant([10]))  # home_feed: a scenario of the generated world
        ids = out["ids"].numpy().astype(str)[0]
        assert len(ids) == 10 and np.all(ids != "")
        return ids.tolist()

    # the raw id is an unknown user (the same answer as any stranger's); the hash is the known
    # user, with their history
    stranger = top("nobody-at-all")
    assert top(raw[0]) == stranger
    assert any(top(hash_user_id(u, SALT)) != stranger for u in raw[:3])
