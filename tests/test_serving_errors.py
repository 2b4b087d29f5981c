"""What a client reads when a graph op rejects its request: the op's message, not TF's trace."""

import tensorflow as tf

from tfrs_multiscene.export.servables import checked_k
from tfrs_multiscene.serving.signatures import op_message


@tf.function(input_signature=[tf.TensorSpec([None], tf.int32)])
def _recommend_k(k):
    return checked_k(k, 100, "the index depth")[0]


@tf.function(input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.string)])
def _join(a, b):
    return tf.strings.join([a, b])


def _error(fn, *args) -> tf.errors.OpError:
    try:
        fn(*args)
    except tf.errors.OpError as exc:
        return exc
    raise AssertionError("the graph accepted the input")


def test_an_assertion_says_what_was_expected_and_what_came():
    assert op_message(_error(_recommend_k, tf.constant([0]))) == "k must be >= 1 (got 0)"
    assert op_message(_error(_recommend_k, tf.constant([5, 1000]))) == "k must be <= the index depth 100 (got 1000)"


def test_an_op_error_gives_the_op_message_and_node():
    message = op_message(_error(_join, tf.constant(["x", "y"]), tf.constant(["z"])))
    assert message == "Input shapes do not match: [2] vs. [1] (at node StringJoin)"
    assert "Graph execution error" not in message


def test_an_unknown_scenario_names_itself_and_the_known_ones(tmp_path):
    from test_ranking_fixtures import tiny_tables
    from tfrs_multiscene.config import RankingConfig
    from tfrs_multiscene.ranking.model import build_ranking_model

    model = build_ranking_model(tiny_tables(n=60), RankingConfig(wide=False, bottom_units=[4], tower_units=[4]))
    serve = model.serving_function()
    inputs = {name: tf.zeros([1], spec.dtype) if spec.dtype != tf.string else tf.constant(["a"])
              for name, spec in model.spec.input_signature().items()}
    inputs["scenario"] = tf.constant(["tv"])
    message = op_message(_error(serve, inputs))
    assert message == "unknown scenario; the ranking model knows ['a', 'b', 'c']; got tv"
