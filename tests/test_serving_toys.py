"""Toy SavedModels in TF Serving's layout, shared by the serving tests, and tests of the core.

``toy_models`` (session fixture) builds two versions of a toy "recommender" once:
``serving_default`` maps ``user_id`` (string) to top-3 ``item_ids`` / ``scores`` and returns
the ``model_version`` that answered; ``score`` takes float ``x[?, 2]`` and int64 ``n[?]``;
``echo`` returns raw bytes (``text_bytes``) and their length; ``classify`` / ``regress``
read serialized tf.Examples with a float feature ``x``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfrs_multiscene.serving.signatures import (
    INVALID_ARGUMENT,
    LoadedModel,
    RequestLimits,
    ServingError,
)

USERS = ["u1", "u2", "u3"]
ITEMS = [f"i{n}" for n in range(10)]


class _Toy(tf.Module):
    def __init__(self, version: int):
        super().__init__()
        init = tf.lookup.KeyValueTensorInitializer(tf.constant(USERS), tf.constant([0, 1, 2], tf.int64))
        self.table = tf.lookup.StaticHashTable(init, default_value=-1)
        self.items = tf.constant(ITEMS)
        self.version = tf.constant(version, tf.int64)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id")])
    def recommend(self, user_id):
        start = tf.maximum(self.table.lookup(user_id), 0) + self.version
        idx = (start[:, None] + tf.range(3, dtype=tf.int64)[None, :]) % len(ITEMS)
        scores = tf.ones_like(idx, tf.float32) / tf.cast(1 + tf.range(3), tf.float32)[None, :]
        return {"item_ids": tf.gather(self.items, idx), "scores": scores,
                "model_version": tf.fill(tf.shape(user_id), self.version)}

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x"),
                                  tf.TensorSpec([None], tf.int64, name="n")])
    def score(self, x, n):
        return {"y": tf.reduce_sum(x, axis=1) * tf.cast(n, tf.float32)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def echo(self, text):
        return {"length": tf.strings.length(text), "text_bytes": text}

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.string, name="history")])
    def count(self, history):
        return {"n": tf.reduce_sum(tf.cast(tf.not_equal(history, ""), tf.int32), axis=1)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs):
        x = tf.io.parse_example(inputs, {"x": tf.io.FixedLenFeature([], tf.float32)})["x"]
        p = tf.sigmoid(x)
        classes = tf.tile(tf.constant([["neg", "pos"]]), [tf.shape(inputs)[0], 1])
        return {"classes": classes, "scores": tf.stack([1 - p, p], axis=1)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, inputs):
        spec = {"x": tf.io.FixedLenFeature([], tf.float32),
                "w": tf.io.FixedLenFeature([], tf.float32, default_value=1.0)}
        f = tf.io.parse_example(inputs, spec)
        return {"outputs": 2 * f["x"] + f["w"]}


def build_toy(export_dir, version: int) -> Path:
    toy = _Toy(version)
    sigs = {"serving_default": toy.recommend, "score": toy.score, "echo": toy.echo, "count": toy.count,
            "classify": toy.classify, "regress": toy.regress}
    tf.saved_model.save(toy, str(export_dir), signatures=sigs)
    return Path(export_dir)


@pytest.fixture(scope="session")
def toy_models(tmp_path_factory) -> dict[int, Path]:
    """{1: dir, 2: dir}: two built versions to copy into model bases."""
    root = tmp_path_factory.mktemp("toy_build")
    return {v: build_toy(root / str(v), v) for v in (1, 2)}


def install_version(model_base, name: str, version: int, source: Path) -> Path:
    """Copy ``source`` to ``model_base/name/version`` atomically (copy aside, then rename)."""
    dest = Path(model_base) / name / str(version)
    tmp = Path(model_base) / name / f".tmp-{version}"
    shutil.copytree(source, tmp)
    os.rename(tmp, dest)
    return dest


def install_corrupt_version(model_base, name: str, version: int) -> Path:
    dest = Path(model_base) / name / str(version)
    dest.mkdir(parents=True)
    (dest / "saved_model.pb").write_bytes(b"\xff\xfe this is not a SavedModel")
    return dest


# --------------------------------------------------------------------------- tests of the core


@pytest.fixture(scope="module")
def loaded(toy_models):
    return LoadedModel("toy", 1, toy_models[1], limits=RequestLimits(max_batch=4, max_list_length=6))


def test_signatures_are_described_from_saved_model(loaded):
    assert set(loaded.signatures) == {"serving_default", "score", "echo", "count", "classify", "regress"}
    sig = loaded.signatures["serving_default"]
    assert {k: v.dtype.name for k, v in sig.inputs.items()} == {"user_id": "string"}
    assert set(sig.outputs) == {"item_ids", "scores", "model_version"}
    assert sig.outputs["scores"].shape == [None, 3]
    assert loaded.signatures["classify"].can_classify and not loaded.signatures["classify"].can_regress
    assert loaded.signatures["regress"].can_regress and not loaded.signatures["score"].can_classify
    assert "serving_default" in loaded.signature_def_map().signature_def


def test_predict_casts_json_like_values(loaded):
    _, out = loaded.predict("score", {"x": [[1, 2], [0.5, 0.5]], "n": [2, 3]})
    np.testing.assert_allclose(out["y"], [6.0, 3.0])
    _, out = loaded.predict(None, {"user_id": ["u1", b"u2", ""]})
    assert out["item_ids"].shape == (3, 3) and out["model_version"].tolist() == [1, 1, 1]


@pytest.mark.parametrize("signature,inputs,needle", [
    ("score", {"x": [[1, 2]]}, "missing input(s) ['n']"),
    ("score", {"x": [["a", "b"]], "n": [1]}, "input 'x' expects float"),
    ("score", {"x": [[1.0, 2.0]], "n": [1.5]}, "input 'n' expects int64"),
    ("score", {"x": [1.0, 2.0], "n": [1]}, "input 'x' expects shape [?, 2]"),
    ("score", {"x": [[1.0], [1.0, 2.0]], "n": [1, 2]}, "input 'x'"),
    ("nope", {"x": [1]}, "\"nope\" not found"),
    (None, {"user_id": ["u"] * 5}, "batch size 5, more than the maximum 4"),
    ("count", {"history": [["i1"] * 7]}, "input 'history' has 7 values per row, more than the maximum 6"),
])
def test_predict_errors_name_the_problem(loaded, signature, inputs, needle):
    with pytest.raises(ServingError) as err:
        loaded.predict(signature, inputs)
    assert err.value.code == INVALID_ARGUMENT
    assert needle in err.value.message


def test_classify_and_regress_signatures_refuse_the_wrong_kind(loaded):
    ex = tf.train.Example()
    ex.features.feature["x"].float_list.value.append(0.0)
    classes, scores = loaded.classify("classify", [ex.SerializeToString()])
    assert classes[0].tolist() == [b"neg", b"pos"] and np.allclose(scores, [[0.5, 0.5]])
    np.testing.assert_allclose(loaded.regress("regress", [ex.SerializeToString()]), [1.0])
    with pytest.raises(ServingError, match="not a classification signature"):
        loaded.classify("score", [ex.SerializeToString()])
    with pytest.raises(ServingError, match="rejected the input"):
        loaded.regress("regress", [b"\x01garbage"])


def test_the_limits_a_client_must_keep_are_described(loaded):
    """What one request may ask: the server's limits and which inputs are lists; a row of
    exactly the maximum list length is served."""
    limits = loaded.limits_json()
    assert limits == {"max_batch": 4, "max_list_length": 6, "max_request_bytes": 8 << 20, "list_inputs": ["history"]}
    _, out = loaded.predict("count", {"history": [["i1"] * 6, ["i2", ""] + [""] * 4]})
    assert out["n"].tolist() == [6, 1]


def test_warm_up_runs_every_signature_once_even_those_that_refuse_neutral_values(toy_models):
    """The store warms a version before it serves it: every signature runs once on neutral
    inputs ("" / 1, one row); one that rejects them (regress needs a feature) does not stop it."""
    model = LoadedModel("toy", 1, toy_models[1])
    calls = []

    def counted(name, fn):
        def call(**inputs):
            calls.append(name)
            return fn(**inputs)
        return call

    model._functions = {name: counted(name, fn) for name, fn in model._functions.items()}
    assert model.warm_up() >= 0
    assert sorted(calls) == sorted(model.signatures)
    _, out = model.predict("count", {"history": [["i1", ""]]})
    assert out["n"].tolist() == [1]
