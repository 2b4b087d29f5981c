"""The multi-scenario ranking model (tf-keras) and its losses.

``RankingModel(inputs) -> {task: prediction [B]}`` for each example's own scenario:
probabilities for binary tasks, a real value for ``rating``. With both ``click`` and
``conversion`` tasks the model has a click head (pCTR) and a conversion-given-click head
(pCVR), and outputs ``conversion = pCTR * pCVR`` (P(click and convert | impression), the
ESMM decomposition) plus ``conversion_given_click = pCVR``. ``score(inputs, scenario)``
scores every example as if it came from ``scenario``; ``score_all_scenarios(inputs)``
returns ``[B, S]`` per task.

With ``cfg.wide`` the logits are ``wide(inputs) + architecture(encoder(inputs))``: a
per-scenario logistic model on the one-hot and numeric features
(:class:`~tfrs_multiscene.ranking.wide.WideLogits`), fitted first and then frozen, plus the
deep architecture, which learns what the wide part misses.

Losses (:func:`ranking_loss`): per task a weighted mean over the examples whose mask is 1,
``sum(w * m * l) / sum(w * m)``, with ``l`` binary cross-entropy for binary tasks and squared
error for ``rating``; the total is ``sum_t task_weight_t * loss_t``. Conversion is trained
as ``BCE(click*convert, pCTR*pCVR)`` on all impressions (``conversion_mode="esmm"``) or as
``BCE(convert, pCVR)`` on clicked impressions only (``"clicks_only"``, the mask does it).
"""

from __future__ import annotations

import tensorflow as tf

from tfrs_multiscene.data import schema
from tfrs_multiscene.ranking.architectures import build_architecture
from tfrs_multiscene.ranking.data import RATING_TASK
from tfrs_multiscene.ranking.features import FeatureEncoder, FeatureSpec, build_feature_spec
from tfrs_multiscene.ranking.wide import WideLogits, own_scenario_logits

EPS = 1e-7
CVR = "conversion_given_click"
POOLED_SCENARIO = "__all__"


def has_esmm_pair(tasks) -> bool:
    return "click" in tasks and "conversion" in tasks


def loss_output_key(task: str, tasks, conversion_mode: str) -> str:
    """The model output a task's loss compares its label with (``conversion_given_click`` for
    conversion trained on clicks only, else the task's own output)."""
    return CVR if (task == "conversion" and conversion_mode == "clicks_only" and has_esmm_pair(tasks)) else task


def ranking_loss(targets: dict, outputs: dict, tasks, task_weights=None, conversion_mode="esmm"):
    """Total loss and ``{task: loss}`` (see the module docstring).

    ``targets`` holds ``label/<task>``, ``mask/<task>`` and ``weight`` tensors ``[B]``;
    ``outputs`` the model's output dict.
    """
    if conversion_mode not in ("esmm", "clicks_only"):
        raise ValueError(f"conversion_mode must be 'esmm' or 'clicks_only', got {conversion_mode!r}")
    task_weights = task_weights or {}
    unknown = set(task_weights) - set(tasks)
    if unknown:
        raise ValueError(f"task_weights name unknown task(s) {sorted(unknown)}; tasks are {list(tasks)}")
    w = tf.cast(targets["weight"], tf.float32)
    total = tf.constant(0.0)
    per_task = {}
    for task in tasks:
        y = tf.cast(targets[f"label/{task}"], tf.float32)
        m = tf.cast(targets[f"mask/{task}"], tf.float32) * w
        if task == RATING_TASK:
            loss = tf.square(outputs[task] - y)
        else:
            p = tf.clip_by_value(outputs[loss_output_key(task, tasks, conversion_mode)], EPS, 1.0 - EPS)
            loss = -(y * tf.math.log(p) + (1.0 - y) * tf.math.log(1.0 - p))
        per_task[task] = tf.math.divide_no_nan(tf.reduce_sum(m * loss), tf.reduce_sum(m))
        total = total + float(task_weights.get(task, 1.0)) * per_task[task]
    return total, per_task


class RankingModel(tf.keras.Model):
    """Raw inputs -> per-task predictions for each example's scenario (see module docs).

    Args:
      spec: the FeatureSpec (vocabularies, tasks, scenarios).
      cfg: RankingConfig.
      pooled: ignore the scenario entirely (no scenario feature, one tower for all).
    """

    def __init__(self, spec: FeatureSpec, cfg, pooled: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.spec, self.cfg, self.pooled = spec, cfg, pooled
        self.tasks = list(spec.tasks)
        self.encoder = FeatureEncoder(spec, cfg.embedding_dim, use_scenario=not pooled,
                                      dot_interactions=cfg.dot_interactions, name="features")
        self.num_scenarios = 1 if pooled else len(spec.scenarios)
        self.scenario_lookup = tf.keras.layers.StringLookup(
            vocabulary=list(spec.scenarios), num_oov_indices=1, name="scenario_index")
        self.architecture = build_architecture(cfg.architecture, self.num_scenarios, len(self.tasks), cfg)
        self.wide = None
        if getattr(cfg, "wide", False):
            self.wide = WideLogits(spec, self.num_scenarios, len(self.tasks), name="wide")
            self.wide.trainable = False  # fitted on its own first (ranking.wide_fit.fit_wide), then an offset
        # Each task's loss is the epoch's masked mean: batches are weighted by their mask totals
        # (a validation batch of sampled items has no liked or rating rows and counts for nothing).
        self.loss_tracker = {t: tf.keras.metrics.Mean(name=f"loss_{t}") for t in self.tasks}

    # ------------------------------------------------------------------ inference
    def scenario_index(self, scenario: tf.Tensor) -> tf.Tensor:
        """Scenario strings ``[B]`` -> tower index ``[B]``; unknown scenarios are an error."""
        scenario = tf.reshape(scenario, [-1])
        if self.pooled:
            return tf.zeros_like(scenario, dtype=tf.int32)
        idx = tf.cast(self.scenario_lookup(scenario), tf.int32) - 1
        known = ", ".join(repr(s) for s in self.spec.scenarios)
        check = tf.debugging.Assert(tf.reduce_all(idx >= 0), [
            f"unknown scenario; the ranking model knows [{known}]; got", tf.unique(tf.boolean_mask(scenario, idx < 0)).y],
            summarize=5)
        with tf.control_dependencies([check]):
            return tf.identity(idx)

    def all_logits(self, inputs: dict, training=False, scenario_index=None):
        """Logits of every scenario ``[B, S, H]`` and the examples' own scenario index ``[B]``."""
        x = self.encoder(inputs)
        if scenario_index is None:
            scenario_index = self.own_scenario_index(inputs)
        logits = self.architecture(x, scenario_index, training=training)
        if self.wide is not None:
            logits = logits + self.wide(inputs)
        return logits, scenario_index

    def own_scenario_index(self, inputs: dict) -> tf.Tensor:
        """Each example's tower index ``[B]``: its scenario's, or 0 for the pooled model."""
        if self.pooled:
            return tf.zeros(tf.shape(tf.reshape(inputs[schema.ITEM_ID], [-1]))[:1], tf.int32)
        return self.scenario_index(inputs[schema.SCENARIO])

    def wide_only_logits(self, inputs: dict) -> tf.Tensor:
        """The wide part's logits for each example's own scenario ``[B, H]`` (no deep part)."""
        return own_scenario_logits(self.wide, self.wide.encode(inputs), self.own_scenario_index(inputs))

    def outputs_of_logits(self, logits: tf.Tensor) -> dict:
        """Head logits ``[..., H]`` -> output dict of ``[...]`` tensors."""
        out = {}
        for h, task in enumerate(self.tasks):
            z = logits[..., h]
            out[task] = z if task == RATING_TASK else tf.sigmoid(z)
        if has_esmm_pair(self.tasks):
            out[CVR] = out["conversion"]
            out["conversion"] = out["click"] * out[CVR]
        return out

    def call(self, inputs, training=False):
        logits, idx = self.all_logits(inputs, training=training)
        own = tf.gather(logits, idx, axis=1, batch_dims=1)  # [B, H]
        return self.outputs_of_logits(own)

    def score(self, inputs: dict, scenario) -> dict:
        """Predictions as if every example came from ``scenario`` (a name)."""
        inputs = dict(inputs)
        b = tf.shape(tf.reshape(inputs[schema.ITEM_ID], [-1]))[0]
        inputs[schema.SCENARIO] = tf.fill([b], tf.constant(scenario, tf.string))
        return self(inputs, training=False)

    def score_all_scenarios(self, inputs: dict) -> dict:
        """``{task: [B, S]}``: every example scored in every scenario's tower (own features)."""
        logits, _ = self.all_logits(inputs)
        return self.outputs_of_logits(logits)

    def serving_function(self):
        """A ``tf.function`` over :meth:`FeatureSpec.input_signature` (raw inputs) returning
        the output dict: the signature to export (``tf.saved_model.save(model, path,
        signatures={"serving_default": model.serving_function()})``)."""

        @tf.function(input_signature=[self.spec.input_signature()])
        def serve(inputs):
            return self(inputs, training=False)

        return serve

    # ------------------------------------------------------------------ training
    @property
    def metrics(self):
        return list(self.loss_tracker.values())

    def loss_of_outputs(self, targets, outputs):
        """``(total, {task: loss})`` of an output dict (:func:`ranking_loss` with this model's
        tasks and config)."""
        return ranking_loss(targets, outputs, self.tasks, self.cfg.task_weights, self.cfg.conversion_mode)

    def train_step(self, data):
        inputs, targets = data
        with tf.GradientTape() as tape:
            outputs = self(inputs, training=True)
            total, per_task = self.loss_of_outputs(targets, outputs)
            total = total + tf.add_n(self.losses) if self.losses else total
        grads = tape.gradient(total, self.trainable_variables)
        self.optimizer.apply_gradients(
            [(g, v) for g, v in zip(grads, self.trainable_variables) if g is not None])
        return self._track(targets, per_task)

    def test_step(self, data):
        inputs, targets = data
        _, per_task = self.loss_of_outputs(targets, self(inputs, training=False))
        return self._track(targets, per_task)

    def _track(self, targets, per_task):
        """Epoch logs: each task's masked mean so far and ``loss``, their task-weighted sum."""
        weight = tf.cast(targets["weight"], tf.float32)
        for t, v in per_task.items():
            rows = tf.reduce_sum(tf.cast(targets[f"mask/{t}"], tf.float32) * weight)
            self.loss_tracker[t].update_state(v, sample_weight=rows)
        logs = {m.name: m.result() for m in self.metrics}
        task_weights = self.cfg.task_weights or {}
        logs["loss"] = tf.add_n([float(task_weights.get(t, 1.0)) * self.loss_tracker[t].result() for t in self.tasks])
        return logs

    def parameter_count(self) -> int:
        """Learnt weights, the frozen wide part's included."""
        frozen = self.wide.fitted_weights if self.wide is not None else []
        return int(sum(int(tf.size(v)) for v in [*self.trainable_variables, *frozen]))


def build_ranking_model(train: schema.Tables, cfg, extra_features=None, *, tasks=None,
                        pooled: bool = False, spec: FeatureSpec = None) -> RankingModel:
    """A RankingModel whose vocabularies come from ``train``.

    With ``cfg.wide`` the wide part starts at zero and is frozen: fit it with
    :func:`tfrs_multiscene.ranking.wide_fit.fit_wide` before fitting the rest
    (:func:`~tfrs_multiscene.ranking.train.train_ranking` does both).
    ``extra_features`` maps extra dense input names (e.g. ``query_embedding``,
    ``candidate_embedding``) to their widths. ``tasks`` defaults to
    :func:`~tfrs_multiscene.ranking.data.ranking_tasks`. ``pooled`` builds the
    scenario-blind baseline. A given ``spec`` (e.g. a warm start's) is used as is.
    """
    from tfrs_multiscene.ranking.data import ranking_tasks

    if spec is None:
        tasks = list(tasks) if tasks is not None else ranking_tasks(train, cfg.rating_task)
        if not tasks:
            raise ValueError("no tasks: the interactions have no label column the ranking model can learn")
        spec = build_feature_spec(train, tasks, extra_features,
                                  scenarios=[POOLED_SCENARIO] if pooled else None, log_skewed=cfg.log_numeric)
    return RankingModel(spec, cfg, pooled=pooled, name="ranking")
