"""The wide part of the ranking model: a per-scenario logistic model on one-hot features,
fitted first, that the deep part then refines.

For scenario s and head h, :class:`WideLogits` computes

    w_{s,h}(x) = c_{s,h}
               + sum_{item-side column k} (a_k[v_k, h] + d_k[v_k, s, h])
               + sum_{user-side column k} d_k[v_k, s, h]
               + sum_{numeric column k} g_k[s, h] * z_k
               + sum_{scalar extra feature k} q_k[s, h] * x_k

where ``v_k`` is the example's value of categorical column k (user_id, item_id, category,
brand, age bucket, ...; one row per vocabulary value plus OOV), ``z_k`` the standardised
numeric column (the encoder's transform, log scale where the spec says so), ``x_k`` a dense
extra feature of width 1 (e.g. ``history_affinity``) as given, ``a`` shared tables, ``d``
per-scenario tables and ``c``, ``g``, ``q`` per-scenario intercepts and slopes.
Item-side values (the item id and item table columns) get a bias shared by every scenario
plus a per-scenario deviation: an item's appeal carries across surfaces and is estimated from
all of them, while a scenario can still weigh a category or a price its own way. User-side
values get only per-scenario biases: how much a user clicks is surface-specific (on the
synthetic worlds a shared user bias, learnt mostly from the feed, lowered the ads AUC).
Output ``[B, S, H]``; every weight starts at zero. :meth:`WideLogits.penalty` is the L2
penalty ``sum(w^2)`` over every weight but the intercepts (:func:`fit_wide` scales it).

Why fit it first (:func:`fit_wide`): the deep part overfits within one or two epochs on
small scenarios, and early stopping then cuts training off long before per-value effects
(an item's quality, a scenario's category effect; several logits wide) have been learnt
at the deep part's learning rate. Fitted alone to convergence at a high learning rate and
then frozen, the wide logit is an offset the deep part only has to correct (measured on a
synthetic dev world: ads validation AUC under the true probabilities 0.852 -> 0.859, the
other scenarios up too; an offline logistic fit run to convergence as the offset reached
0.862).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrs_multiscene.ranking.features import FeatureSpec, numeric_feature, string_feature


PATIENCE = 5  # epochs in a row without improvement before the wide fit stops


class WideLogits(tf.keras.layers.Layer):
    """Per-scenario logistic model on the categorical and numeric inputs (module docstring).

    Args:
      spec: the FeatureSpec (columns, vocabularies, which columns are user-side).
      num_scenarios: S.
      num_heads: H.
    Call: ``(raw inputs) -> [B, S, H]``.
    """

    def __init__(self, spec: FeatureSpec, num_scenarios: int, num_heads: int, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        self.num_scenarios, self.num_heads = int(num_scenarios), int(num_heads)
        user_side = set(spec.user_columns)
        self.lookups, self.shared, self.per_scenario = {}, {}, {}
        for col in spec.categorical:
            size = len(spec.vocabularies[col]) + 1
            self.lookups[col] = tf.keras.layers.StringLookup(vocabulary=list(spec.vocabularies[col]),
                                                             num_oov_indices=1, name=f"wide_lookup_{col}")
            self.per_scenario[col] = tf.keras.layers.Embedding(
                size, self.num_scenarios * self.num_heads, embeddings_initializer="zeros",
                name=f"wide_{col}_by_scenario")
            if col not in user_side:
                self.shared[col] = tf.keras.layers.Embedding(size, self.num_heads, embeddings_initializer="zeros",
                                                             name=f"wide_{col}")
        self.intercept = self.add_weight("intercept", [self.num_scenarios, self.num_heads], initializer="zeros")
        self.slopes = self.add_weight("slopes", [len(spec.numeric), self.num_scenarios, self.num_heads],
                                      initializer="zeros")
        self.scalar_extras = [name for name, dim in spec.extra.items() if int(dim) == 1]
        if self.scalar_extras:  # only then (older saved models have no such weight)
            self.extra_slopes = self.add_weight("extra_slopes", [len(self.scalar_extras), self.num_scenarios,
                                                                 self.num_heads], initializer="zeros")

    def call(self, inputs: dict) -> tf.Tensor:
        shape = [-1, self.num_scenarios, self.num_heads]
        out = self.intercept[None]
        for col, lookup in self.lookups.items():
            idx = lookup(string_feature(inputs[col]))
            out = out + tf.reshape(self.per_scenario[col](idx), shape)
            if col in self.shared:
                out = out + self.shared[col](idx)[:, None, :]
        if self.spec.numeric:
            z = tf.concat([numeric_feature(inputs[col], stats) for col, stats in self.spec.numeric.items()], axis=-1)
            out = out + tf.einsum("bk,ksh->bsh", z, self.slopes)
        if self.scalar_extras:
            x = tf.concat([tf.reshape(tf.cast(inputs[name], tf.float32), [-1, 1]) for name in self.scalar_extras], -1)
            out = out + tf.einsum("bk,ksh->bsh", x, self.extra_slopes)
        return out

    @property
    def fitted_weights(self) -> list:
        """The weights :func:`fit_wide` learns: intercepts, bias tables, slopes."""
        return [v for v in self.weights if v.dtype.is_floating]

    def penalty(self) -> tf.Tensor:
        """``sum(w^2)`` over the bias tables and slopes (not the intercepts)."""
        return tf.add_n([tf.reduce_sum(tf.square(v)) for v in self.fitted_weights if v is not self.intercept])


def fit_wide(model, train, valid, cfg, *, seed: int = 0, log=None) -> dict:
    """Fit ``model.wide`` alone (the deep part is not used) and leave it frozen.

    Minibatch Adam at ``cfg.wide_learning_rate`` on the model's own loss and example weights
    plus ``cfg.wide_l2 / n_train * penalty`` (each weight is pulled to zero as if by
    ``wide_l2`` examples' worth of evidence, whatever the data size),
    ``cfg.wide_epochs`` epochs with the learning rate on a cosine decay to zero (noisy
    constant-rate steps at this rate kept the validation loss from settling; plateau-based
    step cuts stopped too early), stopping after ``PATIENCE`` epochs in a row without a
    better validation loss (without validation data: training loss), and keeping the best
    epoch's weights.
    ``train`` / ``valid`` are PreparedExamples. Returns ``{"epochs": n, "best_epoch": k,
    "train_loss": [...], "val_loss": [...]}``.
    """
    from tfrs_multiscene.ranking import data as D

    wide = model.wide
    variables = wide.fitted_weights
    strength = float(cfg.wide_l2) / max(len(train.frame), 1)
    optimizer = tf.keras.optimizers.Adam(tf.Variable(float(cfg.wide_learning_rate), trainable=False))
    batch = max(int(cfg.batch_size), 4096)
    ds = D.make_dataset(train.inputs, train.targets, train.weights, batch, shuffle=True, seed=seed)
    vds = D.make_dataset(valid.inputs, valid.targets, valid.weights, 4 * batch) if valid is not None else None

    def loss_of(inputs, targets):
        total, _ = model.loss_of_outputs(targets, model.outputs_of_logits(model.wide_only_logits(inputs)))
        return total

    @tf.function
    def step(inputs, targets):
        with tf.GradientTape() as tape:
            tape.watch(variables)
            total = loss_of(inputs, targets) + strength * wide.penalty()
        optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
        return total

    @tf.function
    def evaluate(inputs, targets):
        return loss_of(inputs, targets)

    def mean_loss(dataset, fn):
        losses = [float(fn(x, y)) for x, y in dataset]
        return float(np.mean(losses))

    history = {"train_loss": [], "val_loss": []}
    epochs = int(cfg.wide_epochs)
    best, best_weights, since_best = np.inf, None, 0
    for epoch in range(epochs):
        optimizer.learning_rate.assign(float(cfg.wide_learning_rate) * 0.5 * (1.0 + np.cos(np.pi * epoch / epochs)))
        history["train_loss"].append(mean_loss(ds, step))
        if vds is not None:
            history["val_loss"].append(mean_loss(vds, evaluate))
        current = (history["val_loss"] or history["train_loss"])[-1]
        if log:
            log(f"wide epoch {epoch + 1}/{epochs}: loss {history['train_loss'][-1]:.4f}"
                + (f", val_loss {current:.4f}" if vds is not None else "")
                + f", learning rate {float(optimizer.learning_rate):.4g}")
        if current < best:
            best, best_weights, since_best = current, [v.numpy() for v in variables], 0
        else:
            since_best += 1
            if since_best >= PATIENCE:
                break
    if best_weights is not None:
        for v, w in zip(variables, best_weights):
            v.assign(w)
    series = history["val_loss"] or history["train_loss"]
    return {"epochs": len(history["train_loss"]), "best_epoch": int(np.argmin(series)) + 1,
            **{k: [round(x, 5) for x in v] for k, v in history.items()}}
