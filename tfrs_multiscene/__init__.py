"""tfrs_multiscene: multi-scenario recommendation with TFRS and KerasHub text features.

Importing this package makes TensorFlow Recommenders usable: TFRS needs Keras 2
(``tf-keras``) behind ``tf.keras``, which TensorFlow only provides when
``TF_USE_LEGACY_KERAS=1`` is set before TensorFlow is first imported. We set it
here. If TensorFlow was already imported with Keras 3 behind ``tf.keras`` we
cannot repair that in-process and raise an error that says what to do.

KerasHub (the text encoder) always uses Keras 3 (``import keras``); both live in
one process, see ``tfrs_multiscene.text.bridge``.
"""

from __future__ import annotations

import os
import sys

__version__ = "0.1.0"

_LEGACY_KERAS_HELP = (
    "tfrs_multiscene needs Keras 2 (tf-keras) behind tf.keras for TensorFlow "
    "Recommenders, but TensorFlow was already imported with Keras 3 as tf.keras. "
    "Either import tfrs_multiscene before tensorflow, or set the environment "
    "variable TF_USE_LEGACY_KERAS=1 before starting Python "
    "(e.g. `TF_USE_LEGACY_KERAS=1 python your_script.py`)."
)


class KerasVersionError(ImportError):
    """TensorFlow was imported with Keras 3 as tf.keras before this package."""


def _ensure_legacy_keras() -> None:
    if "tensorflow" not in sys.modules:
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        return
    # TensorFlow is already imported: tf.keras was decided at that time.
    if os.environ.get("TF_USE_LEGACY_KERAS", "").lower() in ("1", "true", "yes"):
        return
    tf = sys.modules["tensorflow"]
    try:
        keras_module = tf.keras.__name__  # resolves TensorFlow's lazy loader
    except Exception:  # pragma: no cover - exotic partial imports
        keras_module = "unknown"
    if not keras_module.startswith("tf_keras"):
        raise KerasVersionError(_LEGACY_KERAS_HELP + f" (tf.keras is {keras_module})")


_ensure_legacy_keras()


def load(path):
    """Load an exported servable (see ``tfrs_multiscene.export.loading.load``)."""
    from tfrs_multiscene.export.loading import load as _load

    return _load(path)


__all__ = ["__version__", "KerasVersionError", "load"]
