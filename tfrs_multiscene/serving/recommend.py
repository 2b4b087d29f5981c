"""Asking a `recommender` servable for recommendations, over REST or gRPC.

The servable's `recommend` signature takes raw values: the user id, the scenario, the
user's recent history (item ids), user features such as ``age_bucket``, a request
``timestamp``, ``k`` and ``exclude_ids``. Its `recommend_user` signature takes only the user
id, the scenario and ``k``: the export fills the user's history and features from what it
knows and excludes that history. :func:`recommend` uses `recommend_user` when the caller
gives nothing but the user (and the servable has it); otherwise :func:`recommend_request`
reads the full signature's inputs from the server's metadata and fills what the caller did
not give with neutral values: "" for unknown strings (the towers map it to their
out-of-vocabulary row), the current time for ``timestamp``.
"""

from __future__ import annotations

import time
from typing import Mapping, Optional, Sequence

SIGNATURE = "recommend"
MINIMAL_SIGNATURE = "recommend_user"


def _signatures(client, model: str) -> dict:
    return client.metadata(model)["metadata"]["signature_def"]["signature_def"]


def signature_inputs(client, model: str, signature: str = SIGNATURE, signatures: Optional[dict] = None) -> dict:
    """``{input name: dtype string}`` of ``signature`` from the server's model metadata."""
    sigs = signatures if signatures is not None else _signatures(client, model)
    if signature not in sigs:
        raise KeyError(f"model {model!r} has no signature {signature!r}; it has {sorted(sigs)}")
    return {name: info.get("dtype", "DT_STRING") for name, info in sigs[signature]["inputs"].items()}


def recommend_request(inputs: Mapping[str, str], user: str, scenario: str, k: int,
                      exclude: Sequence[str] = (), history: Sequence[str] = (),
                      features: Optional[Mapping[str, object]] = None, now: Optional[float] = None) -> dict:
    """Columnar inputs (batch of one) for a signature with input dtypes ``inputs``."""
    features = dict(features or {})
    values = {"user_id": [user], "scenario": [scenario], "k": [int(k)],
              "exclude_ids": [list(exclude) or [""]], "history": [list(history) or [""]],
              "timestamp": [int(now if now is not None else time.time())]}
    request = {}
    for name, dtype in inputs.items():
        if name in features:
            request[name] = [features[name]]
        elif name in values:
            request[name] = values[name]
        elif dtype == "DT_STRING":
            request[name] = [""]
        elif dtype.startswith(("DT_FLOAT", "DT_DOUBLE")):
            request[name] = [0.0]
        else:
            request[name] = [0]
    return request


def recommend(client, model: str, user: str, scenario: str, k: int = 10, exclude: Sequence[str] = (),
              history: Sequence[str] = (), features: Optional[Mapping[str, object]] = None) -> dict:
    """Top-``k`` item ids with scores (and a 'because you liked' item each) as plain lists."""
    sigs = _signatures(client, model)
    if MINIMAL_SIGNATURE in sigs and not (exclude or history or features):
        signature, request = MINIMAL_SIGNATURE, {"user_id": [user], "scenario": [scenario], "k": [int(k)]}
    else:
        signature = SIGNATURE
        request = recommend_request(signature_inputs(client, model, signatures=sigs), user, scenario, k, exclude, history, features)
    out = client.predict(model, request, signature_name=signature)
    ids = [_text(v) for v in out["ids"][0]]
    keep = [i for i, item in enumerate(ids) if item][:k]
    result = {"ids": [ids[i] for i in keep], "scores": [float(out["scores"][0][i]) for i in keep]}
    if "because_ids" in out:
        result["because"] = [_text(out["because_ids"][0][i]) for i in keep]
    for task in ("click", "conversion", "liked"):
        if task in out:
            result[task] = [float(out[task][0][i]) for i in keep]
    return result


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
