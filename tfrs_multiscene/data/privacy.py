"""User ids that never leave the training machine: salted hashes in their place.

With ``--hash-user-ids SALT`` every user id is replaced, as soon as the tables are read, by

    hash_user_id(id, SALT) = "h" + HMAC-SHA256(key=SALT, msg=id).hexdigest()[:32]

so the split, both models, their vocabularies and every exported servable (the towers'
lookups, the known-user histories of ``recommend_user``, the ranking's user table, the
warm-up requests) hold only hashes; a client sends the hash of its user's id. The salt is
written nowhere in the export (its metadata records that the ids are hashed, not the salt),
so a servable cannot be turned back into raw ids by hashing every candidate id. 128 bits of
the digest are kept: ids stay distinct for any real user base.

Example::

    hash_user_id("42", "s3cret")           # 'h3f1c...' (33 characters)
    tables = hash_user_ids(tables, "s3cret")
"""

from __future__ import annotations

import hashlib
import hmac

import pandas as pd

from tfrs_multiscene.data.schema import USER_ID, Tables

#: What an export's metadata says about its user ids when they are hashed.
HASHED = "HMAC-SHA256 of the raw id with the training salt, 32 hex digits after 'h' (the salt is not in the export)"


def hash_user_id(user_id, salt: str) -> str:
    """The salted hash that stands for ``user_id`` (any value; its ``str`` is hashed)."""
    digest = hmac.new(str(salt).encode("utf-8"), str(user_id).encode("utf-8"), hashlib.sha256).hexdigest()
    return "h" + digest[:32]


def hash_user_ids(tables: Tables, salt: str) -> Tables:
    """``tables`` with every user id (interactions and the user table) replaced by its hash."""
    if not salt:
        raise ValueError("hash_user_ids needs a non-empty salt")
    cache: dict = {}

    def hashed(column: pd.Series) -> pd.Series:
        values = column.astype(str)
        for value in pd.unique(values):
            if value not in cache:
                cache[value] = hash_user_id(value, salt)
        return values.map(cache).astype(object)

    interactions = tables.interactions.copy()
    interactions[USER_ID] = hashed(interactions[USER_ID])
    users = None
    if tables.users is not None:
        users = tables.users.copy()
        users[USER_ID] = hashed(users[USER_ID])
    return Tables(interactions, tables.items, users, tables.tasks, tables.name)


def salt_free(config: dict) -> dict:
    """A run's configuration (``RunConfig`` as JSON) with the salt replaced by a note, for
    anything that leaves the training machine (an export's metadata)."""
    data = dict(config.get("data") or {})
    if data.get("hash_user_ids"):
        data["hash_user_ids"] = "<set: user ids are salted hashes; the salt is not in the export>"
    return {**config, "data": data} if "data" in config else config


__all__ = ["HASHED", "hash_user_id", "hash_user_ids", "salt_free"]
