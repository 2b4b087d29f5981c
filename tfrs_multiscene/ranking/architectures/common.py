"""The interface every multi-scenario architecture implements, and shared building blocks.

An architecture maps the encoded example ``x [B, D]`` (and each example's scenario index,
for layers that normalise per scenario) to logits for EVERY scenario and head:
``[B, S, H]``. The model then picks row ``scenario`` for each example (or an explicitly
requested scenario). Computing all scenarios keeps routing trivially correct: the logits
of scenario ``s`` are computed only from shared weights and scenario ``s``'s own weights.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs


def mlp(units, dropout: float = 0.0, name: str = None, l2: float = 0.0) -> tf.keras.Sequential:
    """ReLU Dense layers of the given widths, each optionally followed by dropout
    (``[B, D] -> [B, units[-1]]``); ``l2`` > 0 adds an L2 penalty on the kernels."""
    reg = tf.keras.regularizers.l2(l2) if l2 else None
    layers = []
    for u in units:
        layers.append(tf.keras.layers.Dense(int(u), activation="relu", kernel_regularizer=reg))
        if dropout:
            layers.append(tf.keras.layers.Dropout(dropout))
    return tf.keras.Sequential(layers, name=name)


class ScenarioArchitecture(tf.keras.layers.Layer):
    """Base class: optional deep-cross layer on the input, then :meth:`scenario_logits`.

    Args:
      num_scenarios: S, the number of scenario towers / gates.
      num_heads: H, one logit per task.
      cfg: a RankingConfig (bottom_units, tower_units, num_experts, use_cross, dropout).
    Call: ``(x [B, D], scenario_index int32 [B]) -> logits [B, S, H]``.
    """

    def __init__(self, num_scenarios: int, num_heads: int, cfg, **kwargs):
        super().__init__(**kwargs)
        if num_scenarios < 1 or num_heads < 1:
            raise ValueError(f"need at least one scenario and one head, got S={num_scenarios}, H={num_heads}")
        self.num_scenarios = int(num_scenarios)
        self.num_heads = int(num_heads)
        self.cfg = cfg
        self.cross = tfrs.layers.dcn.Cross(name="cross") if cfg.use_cross else None

    def call(self, x, scenario_index, training=False):
        if self.cross is not None:
            x = self.cross(x)
        logits = self.scenario_logits(x, scenario_index, training=training)
        return logits

    def scenario_logits(self, x, scenario_index, training=False):  # pragma: no cover - abstract
        raise NotImplementedError

    def scenario_owned(self, scenario: int) -> list:
        """What belongs to scenario ``scenario`` alone: ``(variable, row)`` pairs, where
        ``row`` is None for a whole variable or an index into its first axis."""
        raise NotImplementedError


def tower_network(units, out: int, dropout: float = 0.0, l2: float = 0.0, zero_output: bool = False,
                  name: str = None) -> tf.keras.Sequential:
    """A tower: :func:`mlp` of ``units`` then a linear layer to ``out`` logits
    (``[B, D] -> [B, out]``). ``zero_output`` starts the output layer at zero, so the tower
    adds nothing until training moves it (a residual on top of another tower)."""
    reg = tf.keras.regularizers.l2(l2) if l2 else None
    init = "zeros" if zero_output else "glorot_uniform"
    return tf.keras.Sequential([mlp(units, dropout, l2=l2),
                                tf.keras.layers.Dense(out, kernel_initializer=init, kernel_regularizer=reg)],
                               name=name)


class ScenarioHeads(tf.keras.layers.Layer):
    """One tower per scenario, each ending in H logits: ``[B, D] -> [B, S, H]``.

    With ``per_head_input=True`` the input is ``[B, S, H, D]`` (one mixture per scenario
    and head, as in MMoE/PLE) and each (scenario, head) has its own tower and 1 logit.
    ``l2`` > 0 adds an L2 penalty on every tower kernel (the model adds ``self.losses``);
    ``zero_output`` starts every tower's output layer at zero (see :func:`tower_network`).
    """

    def __init__(self, num_scenarios, num_heads, units, dropout=0.0, per_head_input=False, l2=0.0,
                 zero_output=False, **kwargs):
        super().__init__(**kwargs)
        self.per_head_input = per_head_input
        self.num_heads = num_heads

        def tower(out, name):
            return tower_network(units, out, dropout, l2, zero_output, name=name)

        if per_head_input:
            self.towers = [[tower(1, f"tower_s{s}_h{h}") for h in range(num_heads)] for s in range(num_scenarios)]
        else:
            self.towers = [tower(num_heads, f"tower_s{s}") for s in range(num_scenarios)]

    def call(self, x, training=False):
        if self.per_head_input:
            per_s = [tf.concat([tower(x[:, s, h], training=training) for h, tower in enumerate(towers)], axis=-1)
                     for s, towers in enumerate(self.towers)]
        else:
            per_s = [tower(x, training=training) for tower in self.towers]
        return tf.stack(per_s, axis=1)

    def tower_variables(self, scenario: int) -> list:
        towers = self.towers[scenario]
        towers = towers if isinstance(towers, list) else [towers]
        return [v for t in towers for v in t.trainable_variables]


#: name -> architecture class, filled by :func:`register` as each module is imported.
REGISTRY = {}


def register(name: str):
    """Class decorator: make an architecture buildable by ``name``."""
    def deco(cls):
        REGISTRY[name] = cls
        return cls
    return deco
