"""Bridge: a KerasHub (Keras 3) text encoder inside a tf-keras (Keras 2) model.

TFRS models are tf-keras objects; KerasHub models are Keras 3 objects, and a Keras 3
model cannot be a tf-keras sub-layer. :class:`KerasHubLayer` is a tf-keras ``Layer`` that
holds the Keras 3 model as a plain attribute, calls it in ``call()``, and registers the
Keras 3 model's underlying ``tf.Variable``\\ s (``keras_variable.value`` on the TensorFlow
backend) as its own weights. Without that registration tf-keras would not see the encoder's
weights and it would silently never train (nor be checkpointed).
"""

from __future__ import annotations

import tfrs_multiscene  # noqa: F401  (Keras 2 behind tf.keras)
import tensorflow as tf
import tf_keras

from tfrs_multiscene.text.encoder import TextEncoder

MODES = ("frozen", "finetune")


def _tf_variable(keras_variable) -> tf.Variable:
    """The ``tf.Variable`` behind a Keras 3 variable (TensorFlow backend)."""
    value = keras_variable.value
    if not isinstance(value, tf.Variable):
        raise TypeError(
            f"Keras 3 variable {keras_variable.path} is not backed by a tf.Variable "
            f"(got {type(value).__name__}); the bridge needs KERAS_BACKEND=tensorflow")
    return value


class KerasHubLayer(tf_keras.layers.Layer):
    """Raw texts -> sentence embeddings with a :class:`TextEncoder`, as a tf-keras layer.

    Input: ``tf.string`` [B] (or [B, 1]). Output: float32 [B, D], ``D = encoder.dim``.
    Tokenization runs in the graph (TensorFlow Text ops), and each distinct text of the
    batch is encoded once (``tf.unique`` + ``tf.gather``), which matters when a batch
    repeats the same item. ``trainable=True`` (finetune): the encoder's weights are
    trainable weights of this layer and dropout runs during training.
    ``trainable=False`` (frozen): no trainable weights, the encoder always runs in
    inference mode. Saves with ``tf.saved_model.save`` (load in a process that has imported
    ``tensorflow_text``); Keras config serialisation (``get_config``) is not supported.
    """

    def __init__(self, encoder: TextEncoder, trainable: bool = True, dedupe: bool = True, **kwargs):
        kwargs.setdefault("name", "keras_hub_text")
        super().__init__(trainable=trainable, **kwargs)
        self.encoder = encoder
        self.dedupe = dedupe
        model = encoder.keras_backbone
        if encoder.dim <= 0:  # reading dim builds the Keras 3 model: its variables exist now
            raise ValueError(f"{encoder!r} produces empty embeddings")
        # Registering the tf.Variables makes tf-keras track, train and save them.
        self.hub_trainable_variables = [_tf_variable(v) for v in model.trainable_variables]
        self.hub_non_trainable_variables = [_tf_variable(v) for v in model.non_trainable_variables]
        self.hub_model = model

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def call(self, texts, training=None):
        texts = tf.reshape(tf.convert_to_tensor(texts, tf.string), [-1])
        if self.dedupe:
            distinct, index = tf.unique(texts)
        else:
            distinct, index = texts, None
        tokens = self.encoder.tokenize(distinct)
        run_training = bool(training) if isinstance(training, bool) else False
        embeddings = self.hub_model(tokens, training=run_training and self.trainable)
        embeddings = tf.cast(embeddings, tf.float32)
        return embeddings if index is None else tf.gather(embeddings, index)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([input_shape[0], self.encoder.dim])

    def get_config(self):
        raise NotImplementedError(
            "KerasHubLayer holds a Keras 3 model and has no Keras 2 config; save the model "
            "with tf.saved_model.save or tf.train.Checkpoint instead")


def text_layer_for_mode(encoder: TextEncoder, mode: str, **kwargs) -> KerasHubLayer:
    """A :class:`KerasHubLayer` that trains the encoder (``finetune``) or keeps it fixed (``frozen``)."""
    if mode not in MODES:
        raise ValueError(f"text mode must be one of {MODES}, got {mode!r}")
    return KerasHubLayer(encoder, trainable=(mode == "finetune"), **kwargs)
