"""The Adam optimizer both models train with, optionally with a per-epoch weight average.

``adam(lr, ema_momentum, steps_per_epoch)``: plain Adam, or Adam that keeps an exponential
moving average of the weights (momentum ``ema_momentum``) and writes it into the model after
each epoch's last step. Validation, early stopping, checkpoints and the export then all see
the averaged weights, and training continues from them (fast noisy steps, averaged: it acts
like Lookahead). On MovieLens-100K this with a 4x learning rate is what brought the two-tower
to EASE (docs/experiments/movielens-100k-preset.md).
"""

from __future__ import annotations

import tensorflow as tf


def adam(learning_rate: float, ema_momentum: float = 0.0, steps_per_epoch: int = 1) -> tf.keras.optimizers.Optimizer:
    """Adam at ``learning_rate``; with ``ema_momentum`` > 0 the averaged weights become the
    model every ``steps_per_epoch`` steps (every step when an epoch is one step)."""
    if not ema_momentum:
        return tf.keras.optimizers.Adam(learning_rate)
    if not 0.0 < ema_momentum < 1.0:
        raise ValueError(f"ema_momentum must be in (0, 1), got {ema_momentum}")
    steps = max(1, int(steps_per_epoch))
    return tf.keras.optimizers.Adam(learning_rate, use_ema=True, ema_momentum=float(ema_momentum),
                                    ema_overwrite_frequency=steps if steps > 1 else None)


def steps_per_epoch(examples: int, batch_size: int) -> int:
    """Batches in one pass over ``examples`` (the last one partial)."""
    return max(1, -(-int(examples) // int(batch_size)))
