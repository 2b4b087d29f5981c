"""Fitting the wide part (:class:`~tfrs_multiscene.ranking.wide.WideLogits`) alone, before
the deep part: :func:`fit_wide`.

How hard each bias table is pulled to zero (:class:`TablePriors`, ``wide_prior``): every
column of a table (a head; a scenario and head for the per-scenario tables) has a Gaussian
prior ``N(0, sigma^2)`` on its values, a penalty ``w^2 / (2 sigma^2)`` next to the summed log
loss. ``fixed`` uses ``sigma^2 = 1 / (2 * wide_l2)`` for all. ``empirical_bayes`` fits with
that, then ``PRIOR_ROUNDS`` times re-estimates each column's ``sigma^2`` by MacKay's evidence
update for a Gaussian prior and refits:

    sigma^2 = sum_v w_v^2 / sum_v gamma_v,   gamma_v = I_v / (I_v + 1 / sigma^2)

with ``I_v`` the Fisher information the training examples carry about value ``v``'s weight
(the loss's curvature in the head logit, summed over the examples with that value), so
``gamma_v`` is how far the data rather than the prior fixed ``w_v`` (the EM update,
``mean(w_v^2 + 1 / (I_v + 1 / sigma^2))``, needed ~8 refits where this needs ~3). A column of
a few well-measured large effects (a scenario's category effect) is then barely shrunk, one
of many small noisy ones (a small scenario's per-item deviation) is shrunk hard. Slopes keep
``wide_l2``.

The update needs the weights at the penalised optimum, so the default solver
(``wide_solver="lbfgs"``) is full-batch L-BFGS to that optimum, and the fit ignores the
example weights (see :func:`fit_wide`). Measured on world 5 (the wide part alone, ads AUC
expected under the true probabilities; one strength / empirical Bayes):

  =========================================  ==============  ===============
  solver                                     fixed           empirical Bayes
  =========================================  ==============  ===============
  minibatch Adam, early stopping (polished)  0.8167          0.8163
  L-BFGS, example weights                    0.8179          0.8137
  L-BFGS, unweighted (the default)           0.8185          0.8224
  =========================================  ==============  ===============

scipy's exact fit of this form reached 0.8192 / 0.8224, a fit given the generator's own
prior scales 0.8227. With the example weights the small scenario's weighted examples
overstate its evidence and its columns' priors come out too wide (ads user std 0.57 vs
0.18). The conversion head's ESMM term does not matter here (clicks alone: 0.8227).

Why fit it first (:func:`fit_wide`): the deep part overfits within one or two epochs on
small scenarios, and early stopping then cuts training off long before per-value effects
(an item's quality, a scenario's category effect; several logits wide) have been learnt
at the deep part's learning rate. Fitted alone to convergence and then frozen, the wide
logit is an offset the deep part only has to correct (measured on a synthetic dev world:
ads validation AUC under the true probabilities 0.852 -> 0.859, the other scenarios up too;
an offline logistic fit run to convergence as the offset reached 0.862).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrs_multiscene.ranking import data as D
from tfrs_multiscene.ranking.model import EPS, loss_output_key
from tfrs_multiscene.ranking.wide import WideLogits, own_scenario_logits


PATIENCE = 5  # adam: epochs in a row without improvement before the wide fit stops
PRIOR_ROUNDS = 3  # empirical Bayes: prior re-estimations, each followed by a refit
MIN_PRIOR_STD = 0.01  # a column's prior std never goes below this (its penalty stays finite)
LBFGS_CHUNK = 16384  # examples per chunk of the L-BFGS objective's pass over the training set


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

    wide = model.wide
    S, H = wide.num_scenarios, wide.num_heads

    @tf.function
    def batch_information(inputs, targets):
        encoded, scenario = wide.encode(inputs), model.own_scenario_index(inputs)
        logits = own_scenario_logits(wide, encoded, scenario)
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
        out = {}
        for col, rows in encoded["rows"].items():
            idx, size = tf.cast(rows, tf.int32), wide.lookups[col].vocabulary_size()
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

    The objective is the model's own loss on the wide logits plus ``penalty / n_train``: the
    tables' prior penalty (:class:`TablePriors`) and ``cfg.wide_l2 * sum(slope^2)`` (each
    weight pulled to zero as if by ``wide_l2`` examples' worth of evidence, whatever the data
    size). Examples are not weighted (``balance_scenarios`` is for the deep part): the wide
    part is a penalised likelihood whose per-scenario columns already keep a small scenario
    from being drowned, and weighted examples overstate a small scenario's evidence, which the
    empirical-Bayes update turns into too wide a prior (world 5: ads AUC 0.8137 weighted vs
    0.8224 unweighted, wide part alone, exact fits). The pooled baseline is the exception
    (:func:`fit_weights`): it has one column for all scenarios, so it keeps the weights.

    ``cfg.wide_solver``:
      ``lbfgs`` (default): full-batch L-BFGS (scipy) on the exact objective, summed over the
        training set in chunks, for at most ``cfg.wide_max_iterations`` iterations per fit;
        no early stopping, the prior is the only regulariser. One iteration is one pass.
      ``adam``: minibatch Adam at ``cfg.wide_learning_rate``, ``cfg.wide_epochs`` epochs with
        the rate on a cosine decay to zero, stopping after ``PATIENCE`` epochs without a better
        validation loss (without validation data: training loss) and keeping the best epoch;
        empirical-Bayes rounds then polish at a fifth of the rate without early stopping.
        It stops short of the optimum (world 5: objective 0.3891 vs 0.3855, ads 0.8167 vs
        0.8179 with one prior strength).
    With ``cfg.wide_prior == "empirical_bayes"`` the bias tables' priors are then re-estimated
    and the fit repeated, ``PRIOR_ROUNDS`` times (:class:`TablePriors`).
    ``train`` / ``valid`` are PreparedExamples. Returns ``{"solver": .., "epochs": n (Adam
    epochs or L-BFGS iterations, over all rounds), "best_epoch": k, "train_loss": [...],
    "val_loss": [...], "rounds": [epochs or iterations per round], "prior_std": {table: [per
    column]}}``; one loss per epoch or iteration (L-BFGS: the data term, the model's loss;
    Adam's training loss also holds the penalty).
    """

    if cfg.wide_prior not in ("fixed", "empirical_bayes"):
        raise ValueError(f"wide_prior must be 'fixed' or 'empirical_bayes', got {cfg.wide_prior!r}")
    solver = cfg.wide_solver
    if solver not in ("lbfgs", "adam"):
        raise ValueError(f"wide_solver must be 'lbfgs' or 'adam', got {solver!r}")
    wide = model.wide
    variables = wide.fitted_weights
    n_train = max(len(train.frame), 1)
    priors = TablePriors(wide, 2.0 * float(cfg.wide_l2))
    tables = {id(t) for t in priors.tables.values()}
    slopes = [v for v in variables if v is not wide.intercept and id(v) not in tables]
    batch = max(int(cfg.batch_size), 4096)
    ds = D.make_dataset(train.inputs, train.targets, fit_weights(model, train), batch, shuffle=True, seed=seed)
    vds = (D.make_dataset(valid.inputs, valid.targets, fit_weights(model, valid), 4 * batch)
           if valid is not None else None)

    def loss_of(inputs, targets):
        return model.loss_of_outputs(targets, model.outputs_of_logits(model.wide_only_logits(inputs)))[0]

    def penalty():  # per example: the summed-loss penalty spread over the n_train examples
        slope_penalty = float(cfg.wide_l2) * tf.add_n([tf.reduce_sum(tf.square(v)) for v in slopes]) if slopes else 0.0
        return (priors.penalty() + slope_penalty) / n_train

    @tf.function
    def evaluate(inputs, targets):
        return loss_of(inputs, targets)

    def mean_loss(dataset):
        return float(np.mean([float(evaluate(x, y)) for x, y in dataset]))

    history = {"train_loss": [], "val_loss": []}
    task_weight = {t: float((cfg.task_weights or {}).get(t, 1.0)) for t in model.tasks}
    if solver == "lbfgs":
        fit_round = _lbfgs_rounds(model, train, valid, cfg, task_weight, variables, penalty, history, log)
    else:
        fit_round = _adam_rounds(model, cfg, variables, loss_of, penalty, ds, vds, mean_loss, history, log)

    rounds = [fit_round("", first=True)]
    if cfg.wide_prior == "empirical_bayes":
        # the loss is a per-task weighted mean; in summed-loss units an example's term counts
        # task_weight * n_train / (the task's total mask times weight)
        totals = task_totals(model, train)
        scale = {t: task_weight[t] * n_train / totals[t] for t in model.tasks}
        information = table_information(model, scale)
        if solver == "adam":
            # the prior update needs the weights at the penalised optimum, not an early-stopped
            # step of a fast schedule (noise there inflates the rarely seen rows' weights): each
            # round first polishes at a fifth of the rate down to zero
            rounds.append(fit_round(f" (polish 1/{PRIOR_ROUNDS + 1})"))
        for r in range(PRIOR_ROUNDS):
            priors.update(information(ds))
            label = f" (polish {r + 2}/{PRIOR_ROUNDS + 1})" if solver == "adam" else f" (prior round {r + 1}/{PRIOR_ROUNDS})"
            rounds.append(fit_round(label))
    series = history["val_loss"] or history["train_loss"]
    return {"solver": solver, "epochs": len(history["train_loss"]), "best_epoch": int(np.argmin(series)) + 1,
            **{k: [round(x, 5) for x in v] for k, v in history.items()}, "rounds": rounds,
            "prior_std": priors.stds()}


def fit_weights(model, examples):
    """The example weights the wide fit uses: none, except for the pooled baseline, whose one
    column per value has no other way to keep a small scenario from being drowned."""
    return examples.weights if model.pooled else None


def task_totals(model, examples) -> dict:
    """``{task: sum over examples of mask * fit weight}``, the denominators of the loss's means."""
    weights = fit_weights(model, examples)
    weight = np.ones(len(examples.frame)) if weights is None else np.asarray(weights, np.float64)
    return {t: max(float(np.sum(np.asarray(examples.targets[f"mask/{t}"], np.float64) * weight)), 1e-12)
            for t in model.tasks}


def _lbfgs_rounds(model, train, valid, cfg, task_weight, variables, penalty, history, log):
    """``fit_round(label, first=False) -> iterations``: full-batch L-BFGS from the current
    weights to the optimum of ``loss + penalty`` over all of ``train``. The examples are
    encoded once (table rows, standardised numbers) and the objective summed over chunks of
    them; each iteration also records the validation loss."""
    from scipy.optimize import minimize


    wide = model.wide

    def encoded_chunks(examples):
        chunks = [(wide.encode(x), model.own_scenario_index(x), y) for x, y in
                  D.make_dataset(examples.inputs, examples.targets, fit_weights(model, examples), LBFGS_CHUNK)]
        return chunks, task_totals(model, examples)

    def data_term(encoded, scenario, targets, totals):
        # this chunk's share of each task's mean loss over all the examples
        logits = own_scenario_logits(wide, encoded, scenario)
        _, per_task = model.loss_of_outputs(targets, model.outputs_of_logits(logits))
        weight = tf.cast(targets["weight"], tf.float32)
        return tf.add_n([task_weight[t] * per_task[t] * tf.reduce_sum(tf.cast(targets[f"mask/{t}"], tf.float32) * weight)
                         / totals[t] for t in model.tasks])

    def dense(gradients):  # embedding gradients come as IndexedSlices, unused weights as None
        return [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g) for g, v in zip(gradients, variables)]

    train_chunks, train_totals = encoded_chunks(train)
    valid_chunks, valid_totals = encoded_chunks(valid) if valid is not None else ([], {})

    @tf.function
    def chunk_value_and_gradient(encoded, scenario, targets):
        with tf.GradientTape() as tape:
            tape.watch(variables)  # the wide part is not trainable (frozen for the deep part)
            value = data_term(encoded, scenario, targets, train_totals)
        return value, dense(tape.gradient(value, variables))

    @tf.function
    def chunk_validation_loss(encoded, scenario, targets):
        return data_term(encoded, scenario, targets, valid_totals)

    @tf.function
    def penalty_value_and_gradient():
        with tf.GradientTape() as tape:
            tape.watch(variables)
            value = penalty()
        return value, dense(tape.gradient(value, variables))

    def flat(tensors):
        return np.concatenate([np.asarray(t, np.float64).ravel() for t in tensors])

    shapes = [tuple(v.shape) for v in variables]
    sizes = [int(np.prod(s)) for s in shapes]

    def assign(x):
        for v, part, shape in zip(variables, np.split(x, np.cumsum(sizes)[:-1]), shapes):
            v.assign(part.reshape(shape).astype(np.float32))

    last = {}

    def objective(x):
        assign(x)
        data, grad = 0.0, np.zeros_like(x)
        for chunk in train_chunks:
            value, gradient = chunk_value_and_gradient(*chunk)
            data, grad = data + float(value), grad + flat(gradient)
        value, gradient = penalty_value_and_gradient()
        last["data"] = data
        return data + float(value), grad + flat(gradient)

    def record(_x):  # after each iteration (the last evaluation was at the accepted point)
        history["train_loss"].append(last["data"])
        if valid_chunks:
            history["val_loss"].append(sum(float(chunk_validation_loss(*chunk)) for chunk in valid_chunks))

    def fit_round(label, first=False):
        result = minimize(objective, flat([v.numpy() for v in variables]), jac=True, method="L-BFGS-B",
                          callback=record, options={"maxiter": int(cfg.wide_max_iterations), "ftol": 1e-12,
                                                    "gtol": 1e-9})
        assign(result.x)
        if log:
            log(f"wide{label}: {result.nit} L-BFGS iterations, objective {float(result.fun):.5f}, loss "
                f"{last['data']:.4f}" + (f", val_loss {history['val_loss'][-1]:.4f}" if history["val_loss"] else ""))
        return int(result.nit)

    return fit_round


def _adam_rounds(model, cfg, variables, loss_of, penalty, ds, vds, mean_loss, history, log):
    """``fit_round(label, first=False) -> epochs``: minibatch Adam; the first round at
    ``cfg.wide_learning_rate`` with early stopping (best epoch kept), later ones polish at a
    fifth of it without (see :func:`fit_wide`)."""
    optimizer = tf.keras.optimizers.Adam(tf.Variable(float(cfg.wide_learning_rate), trainable=False))
    epochs, rate = int(cfg.wide_epochs), float(cfg.wide_learning_rate)

    @tf.function
    def step(inputs, targets):
        with tf.GradientTape() as tape:
            tape.watch(variables)
            total = loss_of(inputs, targets) + penalty()
        optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
        return total

    def fit_round(label, first=False):
        """A cosine schedule to zero; the first round stops after ``PATIENCE`` epochs without a
        better validation loss and keeps the best epoch's weights, a polish runs to the end."""
        n_epochs = epochs if first else max(PATIENCE, epochs // 3)
        start = rate if first else rate / 5
        best, best_weights, since_best, done = np.inf, None, 0, 0
        for epoch in range(n_epochs):
            optimizer.learning_rate.assign(start * 0.5 * (1.0 + np.cos(np.pi * epoch / n_epochs)))
            history["train_loss"].append(float(np.mean([float(step(x, y)) for x, y in ds])))
            if vds is not None:
                history["val_loss"].append(mean_loss(vds))
            current, done = (history["val_loss"] or history["train_loss"])[-1], epoch + 1
            if log:
                log(f"wide{label} epoch {epoch + 1}/{n_epochs}: loss {history['train_loss'][-1]:.4f}"
                    + (f", val_loss {current:.4f}" if vds is not None else "")
                    + f", learning rate {float(optimizer.learning_rate):.4g}")
            if not first:
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

    return fit_round
