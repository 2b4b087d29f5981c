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
