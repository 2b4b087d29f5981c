"""``build_text_encoder``: the :class:`~tfrs_multiscene.text.encoder.TextEncoder` a
:class:`~tfrs_multiscene.config.TextConfig` names (pretrained MiniLM, a from-scratch encoder,
a local model directory, or none). It sits above the encoders it chooses between.

>>> encoder = build_text_encoder(TextConfig(text_encoder="minilm"))
>>> encoder.embed(["a red shoe"]).shape
(1, 384)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

from tfrs_multiscene.text.encoder import TextEncoder
from tfrs_multiscene.text.minilm import load_minilm, load_pretrained_dir
from tfrs_multiscene.text.scratch import build_scratch_encoder

log = logging.getLogger(__name__)


def build_text_encoder(cfg, train_texts: Optional[Sequence[str]] = None) -> Optional[TextEncoder]:
    """The encoder a :class:`~tfrs_multiscene.config.TextConfig` asks for.

    ``cfg.text_encoder``: ``"none"`` -> None; ``"minilm"`` -> the offline pretrained
    all-MiniLM-L6-v2 (sha256-checked); ``"scratch"`` -> a small untrained encoder whose
    WordPiece vocabulary is computed on ``train_texts`` (required); anything else is a
    path to a local Hugging Face BERT-family or KerasHub preset directory.
    """
    kind = (cfg.text_encoder or "none").strip()
    if kind.lower() == "none":
        return None
    if kind.lower() == "minilm":
        return load_minilm(max_length=cfg.max_length)
    if kind.lower() == "scratch":
        if train_texts is None:
            raise ValueError("text_encoder='scratch' needs train_texts to compute its WordPiece vocabulary")
        if cfg.text_mode == "frozen":
            log.warning("text_encoder='scratch' in frozen mode: the encoder never trains, "
                        "its embeddings are random features; use --text-mode finetune")
        return build_scratch_encoder(
            train_texts, vocab_size=cfg.scratch_vocab_size, dim=cfg.scratch_dim,
            num_layers=cfg.scratch_layers, max_length=cfg.max_length, seed=cfg.scratch_seed)
    path = Path(kind).expanduser()
    if not path.is_dir():
        raise ValueError(f"--text-encoder {kind!r}: not 'minilm', 'scratch', 'none' "
                         "or an existing model directory")
    return load_pretrained_dir(path, max_length=cfg.max_length,
                               expected_sha256=cfg.text_weights_sha256)
