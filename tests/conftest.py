"""Shared test set-up: TF quiet, Keras 2 for tf.keras before anything imports TensorFlow."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import tfrs_multiscene  # noqa: E402,F401  (sets up Keras 2 for TFRS)
