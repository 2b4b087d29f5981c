"""Text features with KerasHub: pretrained MiniLM, from-scratch encoder, cache, tf-keras bridge.

- ``build_text_encoder(cfg, train_texts=None) -> TextEncoder | None``  (factory.py)
- ``TextEncoder.embed(texts) -> float32 [N, D]``, ``.tokenize``, ``.keras_backbone``, ``.fingerprint``
- ``EmbeddingCache(cache_dir).get_or_compute(encoder, texts)``  (cache.py, frozen mode)
- ``KerasHubLayer(encoder)``: the encoder inside a tf-keras model (bridge.py, finetune mode)

Names are imported lazily so that ``import tfrs_multiscene.text`` stays cheap.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "TextEncoder": "encoder",
    "build_text_encoder": "factory",
    "MaskedMeanPooling": "encoder",
    "EmbeddingCache": "cache",
    "KerasHubLayer": "bridge",
    "text_layer_for_mode": "bridge",
    "load_minilm": "minilm",
    "load_pretrained_dir": "minilm",
    "WeightsHashError": "minilm",
    "MINILM_SHA256": "minilm",
    "build_scratch_encoder": "scratch",
}


def __getattr__(name):
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
