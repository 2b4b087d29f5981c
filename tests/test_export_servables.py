"""Servables end to end with small tf-keras towers: signatures, op audit, metadata, load()
in this process and in fresh processes importing only the op libraries each export needs."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import tfrs_multiscene
from tfrs_multiscene.export import index as index_lib
from tfrs_multiscene.export import metadata as metadata_lib
from tfrs_multiscene.export import op_audit, scann_tuning, servables

keras = tf.keras  # tf-keras (Keras 2), as TFRS models are
DIM, N_ITEMS, TASKS = 8, 300, ["click", "conversion"]
ITEMS = np.array([f"item{i}" for i in range(N_ITEMS)])
USERS = [f"user{i}" for i in range(20)]
SCENARIOS = ["home", "search"]
QUERY_SPEC = {
    "user_id": tf.TensorSpec([None], tf.string),
    "scenario": tf.TensorSpec([None], tf.string),
    "history": tf.TensorSpec([None, None], tf.string),
}
REQUEST = {
    "user_id": tf.constant(["user1", "user7", "nobody"]),
    "scenario": tf.constant(["home", "search", "home"]),
    "history": tf.constant([["item3", "item40"], ["item5", ""], ["", ""]]),
}


class QueryTower(keras.Model):
    """Raw strings in (StringLookup inside), [B, DIM] out - the retrieval tower's contract."""

    def __init__(self):
        super().__init__()
        self.users = keras.Sequential([keras.layers.StringLookup(vocabulary=USERS), keras.layers.Embedding(len(USERS) + 1, DIM)])
        self.scenarios = keras.Sequential([keras.layers.StringLookup(vocabulary=SCENARIOS), keras.layers.Embedding(3, DIM)])
        self.items = keras.Sequential([keras.layers.StringLookup(vocabulary=list(ITEMS), mask_token=""), keras.layers.Embedding(N_ITEMS + 2, DIM)])

    def call(self, features):
        hist = tf.reduce_mean(self.items(features["history"]), axis=1)
        return self.users(features["user_id"]) + self.scenarios(features["scenario"]) + hist


class Ranker(keras.Model):
    """(user, scenario, item_ids [B, N]) -> per-task probabilities [B, N]."""

    def __init__(self):
        super().__init__()
        self.users = keras.Sequential([keras.layers.StringLookup(vocabulary=USERS), keras.layers.Embedding(len(USERS) + 1, DIM)])
        self.items = keras.Sequential([keras.layers.StringLookup(vocabulary=list(ITEMS)), keras.layers.Embedding(N_ITEMS + 1, DIM)])
        self.scenario_bias = keras.Sequential([keras.layers.StringLookup(vocabulary=SCENARIOS), keras.layers.Embedding(3, 2)])

    def call(self, features):
        logits = tf.einsum("bd,bnd->bn", self.users(features["user_id"]), self.items(features["item_ids"]))
        bias = self.scenario_bias(features["scenario"])
        return {"click": tf.sigmoid(logits + bias[:, :1]), "conversion": tf.sigmoid(logits - 1.0 + bias[:, 1:])}


@pytest.fixture(scope="module")
def models():
    tf.keras.utils.set_random_seed(0)
    query, ranker = QueryTower(), Ranker()
    query(REQUEST)
    ranker({**REQUEST, "item_ids": tf.constant([["item1"]] * 3)})
    rng = np.random.default_rng(0)
    item_emb = rng.normal(size=(N_ITEMS, DIM)).astype(np.float32)
    text_emb = rng.normal(size=(N_ITEMS, 5)).astype(np.float32)
    return query, ranker, item_emb, text_emb


@pytest.fixture(scope="module")
def exports(models, tmp_path_factory):
    """One export of each kind, plus the expected in-memory answers."""
    query, ranker, item_emb, text_emb = models
    base = tmp_path_factory.mktemp("models")
    tuned = scann_tuning.tune_scann(item_emb, item_emb[:100], k=10, depth=30, latency_queries=20)
    scann = index_lib.build_index("scann", query, ITEMS, item_emb, 30, tuned.params, searcher=tuned.searcher)
    brute = index_lib.build_index("brute_force", query, ITEMS, item_emb, 30)
    ivf_tuned = scann_tuning.tune_ivf(item_emb, item_emb[:100], k=10, depth=30, latency_queries=20)
    ivf = index_lib.build_index("ivf", query, ITEMS, item_emb, 30, ivf_tuned.params, partition=ivf_tuned.searcher)
    meta = {"config": {"export": {"index": "scann"}}, "data_fingerprint": "abc123", "metrics": {"scann_tuning": tuned.to_dict()}}
    paths = {
        "retrieval_scann": servables.export_retrieval(base, query, scann, QUERY_SPEC, metadata=meta),
        "retrieval_brute": servables.export_retrieval(base, query, brute, QUERY_SPEC, name="retrieval_stock"),
        "retrieval_ivf": servables.export_retrieval(base, query, ivf, QUERY_SPEC, name="retrieval_ivf"),
        "ranking": servables.export_ranking(base, ranker, {**QUERY_SPEC, "item_ids": tf.TensorSpec([None, None], tf.string)}, TASKS),
        "recommender": servables.export_recommender(base, query, brute, ranker, QUERY_SPEC, TASKS, ITEMS, text_emb, candidates=25),
    }
    expected = {
        "retrieval_scann": {k: v.numpy() for k, v in zip(("scores", "ids"), scann(REQUEST, 10))},
        "retrieval_brute": {k: v.numpy() for k, v in zip(("scores", "ids"), brute(REQUEST, 10))},
        "retrieval_ivf": {k: v.numpy() for k, v in zip(("scores", "ids"), ivf(REQUEST, 10))},
    }
    return base, paths, expected


def test_layout_signatures_and_metadata(exports):
    base, paths, _ = exports
    assert paths["retrieval_scann"] == base / "retrieval" / "1"
    for path in paths.values():
        assert (path / "saved_model.pb").is_file() and (path / "variables").is_dir()
    record = metadata_lib.read_metadata(paths["retrieval_scann"])
    assert record["data_fingerprint"] == "abc123" and record["servable"] == "retrieval"
    assert record["metrics"]["scann_tuning"]["recall"] >= 0.95
    assert record["index"]["kind"] == "scann" and record["index"]["depth"] == 30
    sigs = record["signatures"]
    assert set(sigs) == {"serving_default", "retrieve", "classify"}
    assert set(sigs["retrieve"]["inputs"]) == {"user_id", "scenario", "history", "k", "exclude_ids"}
    assert set(sigs["serving_default"]["outputs"]) == {"ids", "scores"}
    assert sigs["classify"]["method"] == servables.CLASSIFY_METHOD
    assert set(sigs["classify"]["outputs"]) == {"classes", "scores"}
    ranking = metadata_lib.read_metadata(paths["ranking"])["signatures"]
    assert set(ranking["serving_default"]["outputs"]) == set(TASKS)
    assert ranking["regress_click"]["method"] == servables.REGRESS_METHOD
    rec = metadata_lib.read_metadata(paths["recommender"])["signatures"]["recommend"]["outputs"]
    assert set(rec) == {"ids", "scores", "because_ids", "because_scores", *TASKS}


def test_op_audit_separates_scann_from_stock(exports):
    _, paths, _ = exports
    scann = op_audit.audit(paths["retrieval_scann"])
    assert scann["needs_scann"] and not scann["stock_servable"] and "scann" in scann["libraries"]
    assert any(op.startswith("Scann>") for op in scann["ops"])
    assert "MatMul" in op_audit.audit(paths["retrieval_brute"])["ops"]  # found inside library functions
    for key in ("retrieval_brute", "retrieval_ivf", "ranking", "recommender"):
        audit = op_audit.audit(paths[key])
        assert audit["stock_servable"] and not audit["needs_scann"] and audit["libraries"] == []
        assert metadata_lib.read_metadata(paths[key])["op_audit"] == audit


def test_loaded_retrieval_matches_in_memory_and_honours_k_and_exclusions(exports):
    base, paths, expected = exports
    model = tfrs_multiscene.load(base / "retrieval")  # a model directory resolves to its latest version
    assert model.path == paths["retrieval_scann"]
    out = model("serving_default", **REQUEST)
    np.testing.assert_array_equal(out["ids"].numpy(), expected["retrieval_scann"]["ids"])
    top3 = model("retrieve", **REQUEST, k=tf.constant([3]), exclude_ids=tf.constant([[""]] * 3))
    np.testing.assert_array_equal(top3["ids"].numpy(), expected["retrieval_scann"]["ids"][:, :3])
    banned = expected["retrieval_scann"]["ids"][:, :2]
    out = model("retrieve", **REQUEST, k=tf.constant([5, 5, 5]), exclude_ids=tf.constant(banned))
    np.testing.assert_array_equal(out["ids"].numpy(), expected["retrieval_scann"]["ids"][:, 2:7])
    per_row = model("retrieve", **REQUEST, k=tf.constant([1, 3, 2]), exclude_ids=tf.constant([[""]] * 3))["ids"].numpy()
    assert per_row.shape == (3, 3) and [int((row != b"").sum()) for row in per_row] == [1, 3, 2]
    np.testing.assert_array_equal(per_row[1], expected["retrieval_scann"]["ids"][1, :3])
    with pytest.raises(tf.errors.InvalidArgumentError, match="index depth 30"):
        model("retrieve", **REQUEST, k=tf.constant([31]), exclude_ids=tf.constant([[""]] * 3))


def test_classify_signature_takes_tf_examples(exports):
    _, paths, expected = exports
    model = tfrs_multiscene.load(paths["retrieval_brute"])
    rows = [{"user_id": "user1", "scenario": "home", "history": ["item3", "item40"]}, {"user_id": "user7", "scenario": "search", "history": ["item5"]}]
    out = model("classify", inputs=tf.constant(servables.make_examples(rows)))
    np.testing.assert_array_equal(out["classes"].numpy(), expected["retrieval_brute"]["ids"][:2])


def test_ranking_and_regress_signatures(exports, models):
    _, paths, _ = exports
    _, ranker, _, _ = models
    model = tfrs_multiscene.load(paths["ranking"])
    items = tf.constant([["item1", "item2", "item9"]] * 3)
    out = model("serving_default", **REQUEST, item_ids=items)
    direct = ranker({**REQUEST, "item_ids": items})
    for task in TASKS:
        np.testing.assert_allclose(out[task].numpy(), direct[task].numpy(), rtol=1e-5)
    examples = servables.make_examples([{"user_id": "user1", "scenario": "home", "history": ["item3"], "item_id": "item2"}])
    reg = model("regress_conversion", inputs=tf.constant(examples))["outputs"].numpy()
    np.testing.assert_allclose(reg, direct["conversion"].numpy()[0, 1:2], rtol=1e-5)


def test_recommender_ranks_retrieved_items_and_explains(exports, models):
    _, paths, _ = exports
    _, ranker, _, text_emb = models
    model = tfrs_multiscene.load(paths["recommender"])
    out = model("recommend", **REQUEST, k=tf.constant([5]), exclude_ids=tf.constant([["item3"], ["item5"], [""]]))
    ids = out["ids"].numpy().astype(str)
    assert ids.shape == (3, 5) and "item3" not in ids[0] and "item5" not in ids[1]
    clicks = out["click"].numpy()
    assert (np.diff(clicks, axis=1) <= 1e-6).all(), "ranked by click probability, best first"
    np.testing.assert_allclose(out["scores"].numpy(), clicks)
    direct = ranker({**REQUEST, "item_ids": tf.constant(ids)})["click"].numpy()
    np.testing.assert_allclose(clicks, direct, rtol=1e-5)
    because = out["because_ids"].numpy().astype(str)
    assert set(because[0]) <= {"item3", "item40"} and set(because[1]) == {"item5"} and set(because[2]) == {""}
    unit = text_emb / np.linalg.norm(text_emb, axis=1, keepdims=True)
    first = int(ids[0, 0][4:])
    sims = {h: unit[first] @ unit[int(h[4:])] for h in ("item3", "item40")}
    assert because[0, 0] == max(sims, key=sims.get)
    np.testing.assert_allclose(out["because_scores"].numpy()[0, 0], max(sims.values()), rtol=1e-5)


def _fresh_process(paths, imports, load="tf.saved_model.load"):
    """Load each of ``paths`` in one new interpreter that ran only ``imports``; return the
    top-K ids of each and which of the interesting modules ended up imported."""
    script = textwrap.dedent(f"""
        import sys, json
        {imports}
        import tensorflow as tf
        request = {{k: tf.constant(v) for k, v in json.loads(sys.argv[1]).items()}}
        ids = [{load}(p).signatures["serving_default"](**request)["ids"].numpy().astype(str).tolist() for p in sys.argv[2:]]
        print(json.dumps({{"ids": ids,
                          "modules": sorted(n for n in ("scann", "tensorflow_text", "tfrs_multiscene", "tf_keras") if n in sys.modules)}}))
    """)
    request = {k: v.numpy().astype(str).tolist() for k, v in REQUEST.items()}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_USE_LEGACY_KERAS", None)
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(request), *map(str, paths)],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["ids"], result["modules"]


def test_fresh_process_loads_stock_exports_with_only_tensorflow_and_text(exports):
    _, paths, expected = exports
    keys = ["retrieval_brute", "retrieval_ivf"]
    ids, modules = _fresh_process([paths[k] for k in keys], "import tensorflow_text")
    for key, got in zip(keys, ids):
        assert got == expected[key]["ids"].astype(str).tolist(), key
    assert modules == ["tensorflow_text"]


def test_fresh_process_loads_scann_export_after_import_scann(exports):
    _, paths, expected = exports
    ids, modules = _fresh_process([paths["retrieval_scann"]], "import scann")
    assert ids[0] == expected["retrieval_scann"]["ids"].astype(str).tolist()
    assert "scann" in modules and "tfrs_multiscene" not in modules


@pytest.mark.slow
def test_fresh_process_tfrs_multiscene_load_imports_the_ops_it_needs(exports):
    _, paths, expected = exports
    ids, modules = _fresh_process([paths["retrieval_scann"]], "import tfrs_multiscene", load="tfrs_multiscene.load")
    assert ids[0] == expected["retrieval_scann"]["ids"].astype(str).tolist()
    assert "scann" in modules, "load() must import scann for a ScaNN export"


@pytest.mark.slow
def test_scann_export_without_scann_ops_fails_clearly(exports):
    """The failure load() prevents: a plain load without `import scann` cannot find the op."""
    _, paths, _ = exports
    script = f"import tensorflow as tf; tf.saved_model.load({str(paths['retrieval_scann'])!r})"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=180, check=False)
    assert proc.returncode != 0 and "Scann>" in proc.stderr
