"""The real servables of a `demo --quick` export behind the local server, as an operator meets
them: the minimal-input signatures, the limits in the metadata, and the bad-input suite (every
rejection a 4xx / INVALID_ARGUMENT or NOT_FOUND that says why, on REST and gRPC alike, and the
server answering the next good request on the same client)."""

from __future__ import annotations

import http.client
import json
import time

import numpy as np
import pytest

from tfrs_multiscene.config import ServeConfig
from tfrs_multiscene.serving.client import GrpcClient, RestClient, ServingClientError
from tfrs_multiscene.serving.server import ModelServer

pytestmark = [pytest.mark.slow, pytest.mark.serving]

MAX_BATCH, MAX_LIST = 64, 100
USER, SCENARIO, ITEMS = "u006", "search", ["i072", "i217", "i111"]
SCENARIOS = "['ads', 'home_feed', 'search', 'social']"


@pytest.fixture(scope="module")
def served(quick_demo):
    out, _ = quick_demo
    server = ModelServer(ServeConfig(model_base=str(out / "models"), rest_port=0, grpc_port=0, poll_seconds=0,
                                     max_batch=MAX_BATCH, max_list_length=MAX_LIST))
    ports = server.start()
    clients = {"rest": RestClient(f"http://127.0.0.1:{ports['rest']}", retries=0),
               "grpc": GrpcClient(f"127.0.0.1:{ports['grpc']}", retries=0)}
    yield out, ports, clients
    server.stop()


def _known_user(out, user: str) -> dict:
    """The user's history (most recent training positives) and age bucket, computed from the
    run's saved split with the retrieval package's own function."""
    from tfrs_multiscene.retrieval.features import query_features_for
    from tfrs_multiscene.run import RunDir

    run = RunDir(out / "run")
    cfg = json.loads(run.config_path.read_text())["retrieval"]
    features = query_features_for([user], SCENARIO, run.load_split().train, cfg["history_length"], ["age_bucket"],
                                  cfg.get("positive_task"))
    return {"history": [list(features["history"][0])], "age_bucket": [features["age_bucket"][0]]}


def test_minimal_signatures_serve_a_user_from_its_id_and_scenario(served):
    """`recommend_user` / `rank_user` need only user_id + scenario (+ k / item_ids): the export
    fills the user's history and columns; the answer is the full signature's answer for the
    same values, with the user's history excluded; an unknown user is served too."""
    out, _, clients = served
    known = _known_user(out, USER)
    assert any(known["history"][0]), "the demo user has training positives"
    for protocol, client in clients.items():
        minimal = client.predict("recommender", {"user_id": [USER], "scenario": [SCENARIO], "k": [5]},
                                 signature_name="recommend_user")
        full = client.predict("recommender", {"user_id": [USER], "scenario": [SCENARIO], "k": [5],
                                              "exclude_ids": known["history"], "timestamp": [int(time.time())], **known},
                              signature_name="recommend")
        assert minimal["ids"].tolist() == full["ids"].tolist(), protocol
        np.testing.assert_allclose(minimal["scores"], full["scores"], rtol=1e-4, err_msg=protocol)
        assert not set(minimal["ids"][0]) & set(known["history"][0]), "seen items are excluded"
        assert any(minimal["because_ids"][0]), "'because you liked' comes from the looked-up history"

        ranked = client.predict("ranking", {"user_id": [USER], "scenario": [SCENARIO], "item_ids": [ITEMS]},
                                signature_name="rank_user")
        expected = client.predict("ranking", {"user_id": [USER], "scenario": [SCENARIO], "item_ids": [ITEMS],
                                              "timestamp": [int(time.time())], **known})
        for task in ("click", "conversion"):
            np.testing.assert_allclose(ranked[task], expected[task], rtol=1e-4, err_msg=f"{protocol} {task}")

        stranger = client.predict("recommender", {"user_id": ["nobody"], "scenario": ["ads"], "k": [3]},
                                  signature_name="recommend_user")
        assert len([i for i in stranger["ids"][0] if i]) == 3 and np.isfinite(stranger["scores"]).all()
        unknown_item = client.predict("ranking", {"user_id": [USER], "scenario": [SCENARIO], "item_ids": [["new-item"]]},
                                      signature_name="rank_user")
        assert np.isfinite(unknown_item["click"]).all(), "an item the export does not know gets a finite score"


def test_the_limits_are_in_the_metadata_on_both_protocols(served):
    _, _, clients = served
    for protocol, client in clients.items():
        recommender = client.limits("recommender")
        assert recommender["k"] == {"min": 1, "max": 200, "bounded_by": "the ranked candidates"}, protocol
        assert recommender["max_batch"] == MAX_BATCH and recommender["max_list_length"] == MAX_LIST
        assert recommender["list_inputs"] == ["exclude_ids", "history"]
        ranking = client.limits("ranking")
        assert "k" not in ranking and ranking["list_inputs"] == ["history", "item_ids"], protocol


GOOD = {
    "recommend": {"user_id": [USER], "scenario": [SCENARIO], "k": [5], "age_bucket": [""], "timestamp": [1700000000],
                  "history": [["i072"]], "exclude_ids": [[""]]},
    "recommend_user": {"user_id": [USER], "scenario": [SCENARIO], "k": [5]},
    "serving_default": {"user_id": [USER], "scenario": [SCENARIO], "age_bucket": [""], "timestamp": [1700000000],
                        "history": [["i072"]], "item_ids": [ITEMS]},
    "rank_user": {"user_id": [USER], "scenario": [SCENARIO], "item_ids": [ITEMS]},
}
SERVABLE = {"recommend": "recommender", "recommend_user": "recommender", "serving_default": "ranking", "rank_user": "ranking"}
K_RANGE = "input 'k' must be between 1 and 200 (the ranked candidates)"

# (signature, what changes in its good request (None: input left out), what the error must say)
BAD_REQUESTS = [
    ("recommend", {"k": [0]}, f"{K_RANGE}; got 0"),
    ("recommend", {"k": [-5]}, f"{K_RANGE}; got -5"),
    ("recommend", {"k": [10 ** 9]}, f"{K_RANGE}; got 1000000000"),
    ("recommend", {"k": [5, 201]}, "inputs disagree on the batch size"),
    ("recommend", {"k": ["ten"]}, "input 'k' expects int32 values"),
    ("recommend", {"k": [2.5]}, "input 'k' expects int32 values"),
    ("recommend", {"k": [2 ** 40]}, "input 'k': value out of range for int32"),
    ("recommend", {"scenario": ["tv"]}, f"unknown scenario; the ranking model knows {SCENARIOS}; got tv"),
    ("recommend", {"user_id": ["u1", "u2"]}, "inputs disagree on the batch size"),
    ("recommend", {"user_id": [7]}, "input 'user_id' expects string values"),
    ("recommend", {"history": ["i1"]}, "input 'history' expects shape [?, ?]"),
    ("recommend", {"history": [[["i1"]]]}, "input 'history' expects shape [?, ?]"),
    ("recommend", {"history": [["a"], ["b", "c"]]}, "input 'history'"),
    ("recommend", {"history": [["i072"] * (MAX_LIST + 1)]}, f"input 'history' has {MAX_LIST + 1} values per row, more than the maximum {MAX_LIST}"),
    ("recommend", {"exclude_ids": [["i072"] * (MAX_LIST + 1)]}, "input 'exclude_ids' has 101 values per row"),
    ("recommend", {"timestamp": ["noon"]}, "input 'timestamp' expects int64 values"),
    ("recommend", {"timestamp": [1.5]}, "input 'timestamp' expects int64 values"),
    ("recommend", {"scenario": None}, "missing input(s) ['scenario']"),
    ("recommend", {"colour": ["red"]}, "unknown input(s) ['colour']"),
    ("recommend", {"user_id": [], "scenario": [], "k": []}, "inputs disagree on the batch size"),
    ("recommend", {key: [v[0]] * (MAX_BATCH + 1) for key, v in GOOD["recommend"].items()},
     f"has batch size {MAX_BATCH + 1}, more than the maximum {MAX_BATCH}"),
    ("recommend_user", {"k": [0]}, f"{K_RANGE}; got 0"),
    ("recommend_user", {"scenario": ["tv"]}, "unknown scenario; the ranking model knows"),
    ("recommend_user", {"user_id": None}, "missing input(s) ['user_id']"),
    ("recommend_user", {"history": [["i072"]]}, "unknown input(s) ['history']"),
    ("serving_default", {"item_ids": ITEMS}, "input 'item_ids' expects shape [?, ?]"),
    ("serving_default", {"item_ids": None}, "missing input(s) ['item_ids']"),
    ("serving_default", {"item_ids": [["i072"] * (MAX_LIST + 1)]}, "input 'item_ids' has 101 values per row"),
    ("serving_default", {"scenario": ["tv"]}, "unknown scenario; the ranking model knows"),
    ("serving_default", {"user_id": ["a", "b"]}, "inputs disagree on the batch size"),
    ("rank_user", {"scenario": ["tv"]}, "unknown scenario; the ranking model knows"),
    ("rank_user", {"item_ids": [[1, 2]]}, "input 'item_ids' expects string values"),
    ("rank_user", {"k": [3]}, "unknown input(s) ['k']"),
]


_as_sent = {"rest": {}, "grpc": {"cast": False}}


def test_bad_requests_are_refused_with_reasons_and_the_server_keeps_serving(served):
    """Every bad request to the real `recommend`, `recommend_user`, `ranking` and `rank_user`
    signatures gets INVALID_ARGUMENT (HTTP 400) and a message that names the input, what was
    expected and what came (never TF's "Graph execution error"); the good request after it
    is answered, on both protocols."""
    _, _, clients = served
    assert len({(sig, json.dumps(change, sort_keys=True)) for sig, change, _ in BAD_REQUESTS}) == len(BAD_REQUESTS) >= 30
    for signature, change, needle in BAD_REQUESTS:
        good = GOOD[signature]
        request = {k: v for k, v in {**good, **change}.items() if v is not None}
        for protocol, client in clients.items():
            with pytest.raises(ServingClientError) as err:  # gRPC: sent as they are, checked by the server
                client.predict(SERVABLE[signature], request, signature_name=signature, **_as_sent[protocol])
            where = (protocol, signature, change)
            assert err.value.code == "INVALID_ARGUMENT", (where, err.value)
            assert err.value.http_status in (400, None) and needle in err.value.message, (where, err.value.message)
            assert "Graph execution error" not in err.value.message
            answer = client.predict(SERVABLE[signature], good, signature_name=signature)
            assert np.isfinite(answer["click"]).all(), where


def test_requests_for_what_is_not_there_are_not_found_or_invalid(served):
    _, _, clients = served
    cases = [  # (model, version, signature, code, needle)
        ("recommenders", None, "recommend", "NOT_FOUND", "recommenders"),
        ("recommender", 99, "recommend", "NOT_FOUND", "99"),
        ("recommender", None, "recommend_all", "INVALID_ARGUMENT", "\"recommend_all\" not found in signature def; model "
                                                                   "recommender version 1 has ['classify', 'recommend', "
                                                                   "'recommend_user', 'serving_default']"),
    ]
    for model, version, signature, code, needle in cases:
        for protocol, client in clients.items():
            with pytest.raises(ServingClientError) as err:
                client.predict(model, GOOD["recommend"], signature_name=signature, version=version, **_as_sent[protocol])
            assert err.value.code == code and needle in err.value.message, (protocol, model, err.value)


REST_BAD = [  # (raw body, HTTP status, what the error says): what only the REST wire can carry
    (b"{not json", 400, "JSON parse error"),
    (b'["recommend"]', 400, "must be a JSON object"),
    (json.dumps({"signature_name": "recommend", "inputs": GOOD["recommend"], "instances": []}).encode(), 400, "exactly one of"),
    (json.dumps({"signature_name": "recommend_user", "instances": [{"user_id": USER, "scenario": SCENARIO, "k": 5},
                                                                   {"user_id": USER, "k": 5}]}).encode(), 400,
     "every instance needs the same inputs"),
    (json.dumps({"signature_name": "recommend_user", "inputs": {**GOOD["recommend_user"], "user_id": [None]}}).encode(), 400,
     "null is not a tensor value"),
    (json.dumps({"signature_name": "recommend_user", "inputs": {**GOOD["recommend_user"], "user_id": [{"b64": "%%"}]}}).encode(),
     400, "invalid base64"),
    (json.dumps({"signature_name": "recommend_user", "inputs": {**GOOD["recommend_user"], "user_id": [{"id": 1}]}}).encode(),
     400, "unexpected object"),
    (b"x" * (9 << 20), 413, "exceeds the limit"),
]


def test_rest_wire_errors_on_the_real_recommender(served):
    _, ports, _ = served
    conn = http.client.HTTPConnection("127.0.0.1", ports["rest"], timeout=30)
    good = json.dumps({"signature_name": "recommend_user", "inputs": GOOD["recommend_user"]}).encode()
    for body, status, needle in REST_BAD:
        conn.request("POST", "/v1/models/recommender:predict", body=body)
        resp = conn.getresponse()
        answer = json.loads(resp.read())
        assert resp.status == status and needle in answer["error"], (body[:80], resp.status, answer)
        if resp.getheader("Connection") == "close":
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", ports["rest"], timeout=30)
        conn.request("POST", "/v1/models/recommender:predict", body=good)
        resp = conn.getresponse()
        assert resp.status == 200 and len(json.loads(resp.read())["outputs"]["ids"][0]) == 5
    conn.close()


def test_recommend_asks_the_minimal_signature_when_given_only_the_user(served):
    """`tfrs-multiscene recommend --user U --scenario S` (serving.recommend.recommend) gets what
    `recommend_user` answers; given a history it asks the full signature with that history."""
    from tfrs_multiscene.serving.recommend import recommend

    _, _, clients = served
    for protocol, client in clients.items():
        minimal = client.predict("recommender", GOOD["recommend_user"], signature_name="recommend_user")
        assert recommend(client, "recommender", USER, SCENARIO, 5)["ids"] == [i.decode() for i in minimal["ids"][0]]
        with_history = recommend(client, "recommender", USER, SCENARIO, 5, history=["i072"])
        assert len(with_history["ids"]) == 5 and with_history["because"] == ["i072"] * 5, protocol


def test_every_export_carries_tf_servings_warm_up_requests_and_they_are_answered(served):
    """Each servable version holds ``assets.extra/tf_serving_warmup_requests`` (PredictionLog
    records, the file TF Serving replays on load): one real request per predict signature, for
    that model name, which the server answers."""
    from tfrs_multiscene.serving.signatures import LoadedModel

    out, _, clients = served
    for name in ("recommender", "ranking", "retrieval"):
        model = LoadedModel(name, 1, out / "models" / name / "1")
        recorded = model._recorded_warmup()
        predict_signatures = {s for s, info in model.signatures.items() if info.method_name.endswith("/predict")}
        assert {sig for sig, _ in recorded} == predict_signatures, name
        for signature, inputs in recorded:
            answer = clients["grpc"].predict(name, inputs, signature_name=signature, cast=False)
            assert all(np.isfinite(v).all() for v in answer.values() if v.dtype.kind == "f"), (name, signature)
