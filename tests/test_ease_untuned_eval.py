"""`evaluate` when EASE's lambda cannot be tuned on the validation part.

In a click log where nearly every user appears once (Scenario-Wise-Rec's MIND sample: 8000
impressions of 7892 users, 4.5 % clicks), the validation part holds no click of a user who has
a training row on an item that user did not see in training: the validation clicks are of new
users (dropped from the index), the rest are non-clicks. ``evaluate`` died there with
``ValueError: the validation matrix has no user with unseen items`` (from
``tune_ease_lambda``); now EASE takes its default lambda, untuned, and says so.
"""

import types

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from tfrs_multiscene import config as C
from tfrs_multiscene.data.schema import Tables
from tfrs_multiscene.data.splits import Split
from tfrs_multiscene.evaluation import baselines as B
from tfrs_multiscene.evaluation.protocol import HeldOutProtocol

COLUMNS = ["user_id", "item_id", "scenario", "click"]


def click_log_split(valid_rows) -> Split:
    """Four known users over six items; the validation part is ``valid_rows``."""
    items = pd.DataFrame({"item_id": [f"i{j}" for j in range(6)],
                          "title": [f"news item {j} topic{j % 2}" for j in range(6)]})
    train = [("u0", "i0", "news", 1), ("u0", "i1", "news", 0), ("u1", "i1", "sports", 1),
             ("u1", "i2", "sports", 1), ("u2", "i0", "news", 1), ("u2", "i3", "news", 0),
             ("u3", "i2", "sports", 1), ("u3", "i4", "sports", 1)]
    test = [("u0", "i2", "news", 1), ("u1", "i0", "sports", 1), ("u2", "i4", "news", 1),
            ("new_t", "i5", "news", 1)]
    base = Tables(pd.DataFrame(train, columns=COLUMNS), items)

    def part(rows):
        return base.with_interactions(pd.DataFrame(rows, columns=COLUMNS))

    return Split(base, part(valid_rows), part(test),
                 {"kind": "random", "test_fraction": 0.2, "valid_fraction": 0.1, "seed": 0,
                  "counts": {"train": len(train), "valid": len(valid_rows), "test": len(test)}})


# every validation click is by a user new to the data; the known users' rows are non-clicks,
# or a click on an item the user already had in training
UNTUNABLE = [("new_a", "i3", "news", 1), ("new_b", "i5", "sports", 1),
             ("u0", "i4", "news", 0), ("u1", "i2", "sports", 1)]
TUNABLE = UNTUNABLE + [("u3", "i3", "sports", 1)]


def test_the_fixture_leaves_nothing_to_tune_on():
    split = click_log_split(UNTUNABLE)
    protocol = HeldOutProtocol(split, "click")
    valid = protocol.index.matrix(split.valid, "binary", "click", unknown_users="drop")
    assert not B.can_tune_ease_lambda(protocol.train_matrix, valid)
    with pytest.raises(ValueError, match="no user with unseen items"):  # tune_ease_lambda itself still refuses
        B.tune_ease_lambda(protocol.train_matrix, valid, (10.0, 300.0))
    valid = protocol.index.matrix(click_log_split(TUNABLE).valid, "binary", "click", unknown_users="drop")
    assert B.can_tune_ease_lambda(protocol.train_matrix, valid)


def test_fit_baselines_falls_back_to_the_default_lambda():
    train = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 0]], dtype=float))
    seen_only = sp.csr_matrix(np.array([[1, 0, 0], [0, 1, 0]], dtype=float))  # only items seen in training
    fitted = B.fit_baselines(train, None, seen_only, ["ease"], ease_lambdas=(1.0, 10.0))
    assert fitted["ease"].lam == B.EASE_DEFAULT_LAMBDA and fitted["ease"].lambda_scores == {}
    empty = sp.csr_matrix((2, 3))
    assert B.fit_baselines(train, None, empty, ["ease"])["ease"].lambda_scores == {}
    unseen = sp.csr_matrix(np.array([[0, 0, 1], [0, 0, 0]], dtype=float))
    fitted = B.fit_baselines(train, None, unseen, ["ease"], ease_lambdas=(1.0, 10.0))
    assert set(fitted["ease"].lambda_scores) == {1.0, 10.0} and fitted["ease"].lam in (1.0, 10.0)


def test_protocol_fits_and_evaluates_without_a_tunable_validation_part():
    split = click_log_split(UNTUNABLE)
    protocol = HeldOutProtocol(split, "click")
    fitted = protocol.fit_baselines(["popularity", "ease"], ease_lambdas=[10.0, 300.0])  # raised ValueError before
    assert fitted["ease"].lam == B.EASE_DEFAULT_LAMBDA and fitted["ease"].lambda_scores == {}
    out = protocol.evaluate(fitted, ks=(1, 2))
    assert out["retrieval"]["standard"]["ease"]["users"] == 3  # new_t has no training row
    assert out["split"]["users_without_history"] == 1


class _StubModel:
    """Stands in for the trained two-tower: scores items by their column (no training)."""

    cfg = C.RetrievalConfig()
    spec = types.SimpleNamespace(item_text=None, item_table_ids=None)

    def score_fn(self, known, item_ids, user_ids):
        n = len(item_ids)
        return lambda rows, scenario=None: np.tile(np.arange(n, dtype=np.float32), (len(rows), 1))


@pytest.mark.parametrize("valid_rows, tuned", [(UNTUNABLE, False), (TUNABLE, True)])
def test_evaluate_retrieval_run_records_whether_ease_was_tuned(monkeypatch, valid_rows, tuned):
    import tfrs_multiscene.retrieval.checkpoints as ckpt
    from tfrs_multiscene.evaluation.run_evaluation import evaluate_retrieval_run

    monkeypatch.setattr(ckpt, "load_retrieval", lambda path: _StubModel())
    ecfg = C.EvaluateConfig(ks=[1, 2], baselines=["popularity", "ease"], ease_lambdas=[10.0, 300.0],
                            cold_start=False)
    logged = []
    results = evaluate_retrieval_run(types.SimpleNamespace(path="unused"), C.RunConfig(), ecfg,
                                     click_log_split(valid_rows), log=logged.append)
    assert results["split"]["ease_lambda_tuned"] is tuned
    assert "ease" in results["retrieval"]["standard"]
    untuned_lines = [line for line in logged if "untuned" in line]
    if tuned:
        assert not untuned_lines and results["split"]["ease_lambda"] in (10.0, 300.0)
    else:
        assert results["split"]["ease_lambda"] == B.EASE_DEFAULT_LAMBDA
        assert untuned_lines and "no validation user with training history" in untuned_lines[0]
