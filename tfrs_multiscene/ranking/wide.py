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
Output ``[B, S, H]``; every weight starts at zero. :func:`fit_wide` penalises every weight
but the intercepts.

How hard each bias table is pulled to zero (:class:`TablePriors`, ``wide_prior``): every
column of a table (a head; a scenario and head for the per-scenario tables) has a Gaussian
prior ``N(0, sigma^2)`` on its values, a penalty ``w^2 / (2 sigma^2)`` next to the summed log
loss. ``fixed`` uses ``sigma^2 = 1 / (2 * wide_l2)`` for all. ``empirical_bayes`` fits with
that, then ``PRIOR_ROUNDS`` times polishes the fit (a fifth of the learning rate, decayed to
zero, no early stopping: the update needs the penalised optimum, and an early-stopped step
of the fast schedule leaves rarely seen rows noisy, which inflated their priors) and
re-estimates each column's ``sigma^2`` by MacKay's evidence update for a Gaussian prior:

    sigma^2 = sum_v w_v^2 / sum_v gamma_v,   gamma_v = I_v / (I_v + 1 / sigma^2)

with ``I_v`` the Fisher information the training examples carry about value ``v``'s weight
(the loss's curvature in the head logit, summed over the examples with that value), so
``gamma_v`` is how far the data rather than the prior fixed ``w_v`` (the EM update,
``mean(w_v^2 + 1 / (I_v + 1 / sigma^2))``, needed ~8 refits where this needs ~3). A column of
a few well-measured large effects (a scenario's category effect) is then barely shrunk, one
of many small noisy ones (a small scenario's per-item deviation) is shrunk hard. Slopes keep
``wide_l2``, and a last polish follows the last update. Offline (scipy L-BFGS to the exact
optimum, world 5's training split, the package's wide form) this took the ads AUC expected
under the true probabilities from 0.8192 (one strength) to 0.8224 after 3 rounds, the same
as a fit given the generator's own prior scales (0.8227). In the package (minibatch Adam,
both stages, seven worlds) the ads AUC did not move (-0.0009 to +0.0019; the wide part
alone stays ~0.0025 below the exact fit of its own form on world 5, polished or not, a gap
not yet explained) while search rose on six worlds (+0.0014 to +0.0048) and overall on six,
and the model came out above the pooled and separate baselines on every scenario of all
seven worlds (one strength: five). It costs ~1.8x the ranking stage's time (40 more wide
epochs); ``--wide-prior fixed`` is the faster choice.

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
PRIOR_ROUNDS = 3  # empirical Bayes: prior re-estimations, each followed by a refit
MIN_PRIOR_STD = 0.01  # a column's prior std never goes below this (its penalty stays finite)


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


class TablePriors:
    """The prior precision ``1 / sigma^2`` of every column of each bias table of a WideLogits
    (module docstring) and the penalty it implies.

    Args:
      wide: the WideLogits.
      precision: the starting precision of every column (``2 * wide_l2``).
    ``penalty()`` is ``sum over tables of sum(precision * w^2) / 2`` (in the units of a summed
    log loss); ``update(information)`` re-estimates each column's precision from the table's
    current weights and ``information[name]`` (same shape as the table: the Fisher information
    of the training examples about each weight).
    """

    def __init__(self, wide: WideLogits, precision: float):
        self.tables = {col: layer.embeddings for col, layer in wide.shared.items()}
        self.tables.update({f"{col}_by_scenario": layer.embeddings for col, layer in wide.per_scenario.items()})
        self.precision = {name: tf.Variable(tf.fill([int(table.shape[1])], float(precision)), trainable=False,
                                            name=f"prior_precision_{name}") for name, table in self.tables.items()}

    def penalty(self) -> tf.Tensor:
        return 0.5 * tf.add_n([tf.reduce_sum(self.precision[name] * tf.square(table))
                               for name, table in self.tables.items()])

    def update(self, information: dict) -> None:
        for name, table in self.tables.items():
            w, info = table.numpy().astype(np.float64), np.asarray(information[name], np.float64)
            precision = self.precision[name].numpy().astype(np.float64)
            measured = np.sum(info / (info + precision), axis=0)  # effective number of values the data fixed
            variance = np.sum(w ** 2, axis=0) / np.maximum(measured, 1e-12)
            updated = 1.0 / np.maximum(variance, MIN_PRIOR_STD ** 2)
            self.precision[name].assign(np.where(measured > 1e-6, updated, precision).astype(np.float32))

    def stds(self) -> dict:
        """``{table: [prior std per column]}`` (per-scenario tables: columns scenario * H + head)."""
        return {name: [round(float(x), 4) for x in 1.0 / np.sqrt(p.numpy())] for name, p in self.precision.items()}


def table_information(model, scale: dict):
    """A function ``dataset -> {table name: [rows, cols]}``: per bias table of ``model.wide``,
    the Fisher information the examples of ``dataset`` carry about each weight. An example's
    information about its head logits ``[H]`` is ``sum_t scale_t * m_t * (d out_t / d logit)^2
    * c_t`` (``m_t`` its mask times weight, ``c_t = 1 / (p (1 - p))`` for a binary task, 2 for
    rating: the curvature of its loss term); it adds to the rows its values select."""
    from tfrs_multiscene.ranking import data as D
    from tfrs_multiscene.ranking.model import EPS, loss_output_key

    wide = model.wide
    S, H = wide.num_scenarios, wide.num_heads

    @tf.function
    def batch_information(inputs, targets):
        logits = model.wide_only_logits(inputs)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(logits)
            outputs = model.outputs_of_logits(logits)
        weight = tf.cast(targets["weight"], tf.float32)
        info = tf.zeros_like(logits)
        for task in model.tasks:
            out = outputs[loss_output_key(task, model.tasks, model.cfg.conversion_mode)]
            slope = tape.gradient(out, logits)  # examples are independent: row b is d out_b / d logits_b
            p = tf.clip_by_value(out, EPS, 1.0 - EPS)
            curvature = 2.0 * tf.ones_like(p) if task == D.RATING_TASK else 1.0 / (p * (1.0 - p))
            m = tf.cast(targets[f"mask/{task}"], tf.float32) * weight
            info += (scale[task] * m * curvature)[:, None] * tf.square(slope)
        scenario = model.own_scenario_index(inputs)
        out = {}
        for col, lookup in wide.lookups.items():
            idx = tf.cast(lookup(string_feature(inputs[col])), tf.int32)
            size = lookup.vocabulary_size()
            if col in wide.shared:
                out[col] = tf.math.unsorted_segment_sum(info, idx, size)
            by_scenario = tf.math.unsorted_segment_sum(info, idx * S + scenario, size * S)
            out[f"{col}_by_scenario"] = tf.reshape(by_scenario, [size, S * H])
        return out

    def information(dataset) -> dict:
        total = None
        for inputs, targets in dataset:
            part = {k: v.numpy() for k, v in batch_information(inputs, targets).items()}
            total = part if total is None else {k: total[k] + v for k, v in part.items()}
        return total

    return information


def fit_wide(model, train, valid, cfg, *, seed: int = 0, log=None) -> dict:
    """Fit ``model.wide`` alone (the deep part is not used) and leave it frozen.

    Minibatch Adam at ``cfg.wide_learning_rate`` on the model's own loss and example weights
    plus ``cfg.wide_l2 / n_train * penalty`` (each weight is pulled to zero as if by
    ``wide_l2`` examples' worth of evidence, whatever the data size),
    ``cfg.wide_epochs`` epochs with the learning rate on a cosine decay to zero (noisy
    constant-rate steps at this rate kept the validation loss from settling; plateau-based
    step cuts stopped too early), stopping after ``PATIENCE`` epochs in a row without a
    better validation loss (without validation data: training loss), and keeping the best
    epoch's weights. With ``cfg.wide_prior == "empirical_bayes"`` the bias tables' priors are
    then re-estimated and the fit repeated, ``PRIOR_ROUNDS`` times (:class:`TablePriors`).
    ``train`` / ``valid`` are PreparedExamples. Returns ``{"epochs": n, "best_epoch": k,
    "train_loss": [...], "val_loss": [...], "rounds": [epochs per round], "prior_std":
    {table: [per column]}}`` (epochs and losses over all rounds).
    """
    from tfrs_multiscene.ranking import data as D

    if cfg.wide_prior not in ("fixed", "empirical_bayes"):
        raise ValueError(f"wide_prior must be 'fixed' or 'empirical_bayes', got {cfg.wide_prior!r}")
    wide = model.wide
    variables = wide.fitted_weights
    n_train = max(len(train.frame), 1)
    priors = TablePriors(wide, 2.0 * float(cfg.wide_l2))
    tables = {id(t) for t in priors.tables.values()}
    slopes = [v for v in variables if v is not wide.intercept and id(v) not in tables]
    optimizer = tf.keras.optimizers.Adam(tf.Variable(float(cfg.wide_learning_rate), trainable=False))
    batch = max(int(cfg.batch_size), 4096)
    ds = D.make_dataset(train.inputs, train.targets, train.weights, batch, shuffle=True, seed=seed)
    vds = D.make_dataset(valid.inputs, valid.targets, valid.weights, 4 * batch) if valid is not None else None

    def loss_of(inputs, targets):
        total, _ = model.loss_of_outputs(targets, model.outputs_of_logits(model.wide_only_logits(inputs)))
        return total

    def penalty():  # per example: the summed-loss penalty spread over the n_train examples
        slope_penalty = float(cfg.wide_l2) * tf.add_n([tf.reduce_sum(tf.square(v)) for v in slopes]) if slopes else 0.0
        return (priors.penalty() + slope_penalty) / n_train

    @tf.function
    def step(inputs, targets):
        with tf.GradientTape() as tape:
            tape.watch(variables)
            total = loss_of(inputs, targets) + penalty()
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

    def fit_round(label, rate, n_epochs, early_stopping=True):
        """A cosine schedule from ``rate`` to zero over ``n_epochs``; with early stopping it
        stops after ``PATIENCE`` epochs without a better validation loss and leaves the best
        epoch's weights, without it the last (converged) ones. Returns the epochs run."""
        best, best_weights, since_best, done = np.inf, None, 0, 0
        for epoch in range(n_epochs):
            optimizer.learning_rate.assign(rate * 0.5 * (1.0 + np.cos(np.pi * epoch / n_epochs)))
            history["train_loss"].append(mean_loss(ds, step))
            if vds is not None:
                history["val_loss"].append(mean_loss(vds, evaluate))
            current, done = (history["val_loss"] or history["train_loss"])[-1], epoch + 1
            if log:
                log(f"wide{label} epoch {epoch + 1}/{n_epochs}: loss {history['train_loss'][-1]:.4f}"
                    + (f", val_loss {current:.4f}" if vds is not None else "")
                    + f", learning rate {float(optimizer.learning_rate):.4g}")
            if not early_stopping:
                continue
            if current < best:
                best, best_weights, since_best = current, [v.numpy() for v in variables], 0
            else:
                since_best += 1
                if since_best >= PATIENCE:
                    break
        if best_weights is not None:
            for v, w in zip(variables, best_weights):
                v.assign(w)
        return done

    rate = float(cfg.wide_learning_rate)
    rounds = [fit_round("", rate, epochs)]
    if cfg.wide_prior == "empirical_bayes":
        # the loss is a per-task weighted mean; in summed-loss units an example's term
        # counts task_weight * n_train / (the task's total mask times weight)
        weight = np.ones(n_train) if train.weights is None else np.asarray(train.weights, np.float64)
        scale = {t: float((cfg.task_weights or {}).get(t, 1.0)) * n_train
                 / max(float(np.sum(np.asarray(train.targets[f"mask/{t}"], np.float64) * weight)), 1e-12)
                 for t in model.tasks}
        information = table_information(model, scale)
        # the prior update needs the weights at the penalised optimum, not an early-stopped
        # step of a fast schedule (noise there inflates the rarely seen rows' weights): each
        # round polishes at a fifth of the rate down to zero, then re-estimates the priors
        polish = max(PATIENCE, epochs // 3)
        for r in range(PRIOR_ROUNDS):
            rounds.append(fit_round(f" (polish {r + 1}/{PRIOR_ROUNDS + 1})", rate / 5, polish, early_stopping=False))
            priors.update(information(ds))
        rounds.append(fit_round(f" (polish {PRIOR_ROUNDS + 1}/{PRIOR_ROUNDS + 1})", rate / 5, polish, early_stopping=False))
    series = history["val_loss"] or history["train_loss"]
    return {"epochs": len(history["train_loss"]), "best_epoch": int(np.argmin(series)) + 1,
            **{k: [round(x, 5) for x in v] for k, v in history.items()}, "rounds": rounds,
            "prior_std": priors.stds()}
