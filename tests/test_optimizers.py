"""The shared Adam: plain, or with its weight average written into the model each epoch."""

import pytest

import tfrs_multiscene  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf

from tfrs_multiscene.optimizers import adam, steps_per_epoch


def _steps(optimizer, variable, n):
    for _ in range(n):
        optimizer.apply_gradients([(tf.constant(-1.0), variable)])  # Adam: ~ +lr per step
    return float(variable.numpy())


def test_plain_adam_moves_by_the_learning_rate():
    v = tf.Variable(0.0)
    assert _steps(adam(0.1), v, 3) == pytest.approx(0.3, abs=1e-3)


def test_weight_average_becomes_the_model_at_each_epoch_end():
    v = tf.Variable(0.0)
    opt = adam(0.1, ema_momentum=0.5, steps_per_epoch=3)
    assert _steps(opt, v, 2) == pytest.approx(0.2, abs=1e-3)  # mid-epoch: the raw iterate
    # third step ends the epoch: the average of 0.1, 0.2, 0.3 with momentum 0.5 replaces it
    assert _steps(opt, v, 1) == pytest.approx(0.5 * 0.125 + 0.5 * 0.3, abs=2e-3)


def test_steps_and_bad_momentum():
    assert steps_per_epoch(10, 3) == 4 and steps_per_epoch(0, 3) == 1
    with pytest.raises(ValueError, match="ema_momentum"):
        adam(0.1, ema_momentum=1.5)
