"""On-disk cache of frozen text embeddings, keyed by sha1(text) and the encoder fingerprint.

Layout: ``<cache_dir>/<encoder fingerprint>/<shard>.npz``; each shard holds ``keys``
(sha1 hex digests of UTF-8 texts, [n]) and ``embeddings`` (float32 [n, D]). A shard is
written to a temporary file and renamed into place, so readers never see a partial
shard; several processes may fill the same cache at once (at worst they both compute a
text, and either copy is valid). Unreadable shards are skipped with a warning.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)


def text_key(text: str) -> str:
    """sha1 hex digest of the UTF-8 text: the cache key of one text."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Embeddings of texts computed once per encoder and reused across runs.

    ``get_or_compute(encoder, texts)`` returns float32 [len(texts), encoder.dim] and only
    runs ``encoder.embed`` on texts not yet cached for ``encoder.fingerprint``.
    """

    def __init__(self, cache_dir):
        self.cache_dir = Path(cache_dir).expanduser()
        # fingerprint -> (key -> row, list of embedding arrays, shard names already read)
        self._loaded: dict[str, tuple[dict, list, set]] = {}

    def _dir(self, fingerprint: str) -> Path:
        return self.cache_dir / fingerprint

    def _refresh(self, fingerprint: str):
        """Read shards of ``fingerprint`` not read before; return (index, blocks)."""
        index, blocks, seen = self._loaded.setdefault(fingerprint, ({}, [], set()))
        directory = self._dir(fingerprint)
        if not directory.is_dir():
            return index, blocks
        offset = sum(len(b) for b in blocks)
        for shard in sorted(directory.glob("*.npz")):
            if shard.name in seen:
                continue
            seen.add(shard.name)
            try:
                with np.load(shard, allow_pickle=False) as data:
                    keys, embeddings = data["keys"], data["embeddings"]
            except Exception as error:  # corrupted or foreign file: ignore it
                log.warning("text cache: skipping unreadable shard %s (%s)", shard, error)
                continue
            if len(keys) != len(embeddings):
                log.warning("text cache: skipping inconsistent shard %s", shard)
                continue
            blocks.append(embeddings.astype(np.float32, copy=False))
            for row, key in enumerate(keys.tolist()):
                index.setdefault(key, offset + row)
            offset += len(keys)
        return index, blocks

    def __len__(self) -> int:
        return sum(len(self._refresh(fp)[0]) for fp in self._loaded)

    def count(self, fingerprint: str) -> int:
        """Number of texts cached for an encoder fingerprint."""
        return len(self._refresh(fingerprint)[0])

    def get_or_compute(self, encoder, texts: Sequence[str], batch_size: int = 256,
                       progress: bool = True) -> np.ndarray:
        """Embeddings of ``texts`` (float32 [N, D]), computing and storing only missing ones."""
        texts = list(texts)
        fingerprint = encoder.fingerprint
        keys = [text_key(t) if isinstance(t, str) else _bad_text(t) for t in texts]
        index, blocks = self._refresh(fingerprint)
        missing = {}
        for key, text in zip(keys, texts):
            if key not in index and key not in missing:
                missing[key] = text
        if missing:
            new_keys = list(missing)
            new = np.asarray(encoder.embed(list(missing.values()), batch_size=batch_size,
                                           progress=progress), np.float32)
            self._write_shard(fingerprint, new_keys, new)
            offset = sum(len(b) for b in blocks)
            blocks.append(new)
            for row, key in enumerate(new_keys):
                index.setdefault(key, offset + row)
        dim = encoder.dim
        if not texts:
            return np.zeros((0, dim), np.float32)
        table = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
        if len(blocks) > 1:  # keep one block: later lookups need no concatenation
            blocks[:] = [table]
        return table[[index[k] for k in keys]]

    def _write_shard(self, fingerprint: str, keys: list, embeddings: np.ndarray) -> Path:
        directory = self._dir(fingerprint)
        directory.mkdir(parents=True, exist_ok=True)
        name = f"{uuid.uuid4().hex}.npz"
        final = directory / name
        temp = directory / f".{name}.{os.getpid()}.tmp"
        with open(temp, "wb") as handle:
            np.savez(handle, keys=np.asarray(keys, dtype="U40"), embeddings=embeddings)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, final)
        self._loaded[fingerprint][2].add(name)
        return final


def _bad_text(value):
    raise TypeError(f"text cache: expected str texts, got {type(value).__name__} "
                    "(replace missing texts with '' first)")
