"""`export`: a trained run directory -> servables in TF Serving's layout + TF Serving configs.

Loads the run's two models, its saved split and (when the ranking reads it) the user-history
feature, tunes the index on real query embeddings, exports ``retrieval``, ``ranking`` and
``recommender`` (with their minimal ``*_user`` signatures from what the split knows of each
user) through :func:`~tfrs_multiscene.export.servables.export_from_models`, and writes
``models.config``, batching and monitoring configs beside them.
"""

from __future__ import annotations

import json
from pathlib import Path

from tfrs_multiscene import config as C
from tfrs_multiscene.data.privacy import HASHED, salt_free
from tfrs_multiscene.errors import UserError


def data_fingerprint(split_dir) -> str:
    """sha256 over the run's saved split files: which data a model was trained on."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(Path(split_dir).glob("*")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def warmup_values(retrieval, train, user: str, scenario: str, export: C.ExportConfig) -> dict:
    """One real request (a training user in one of their scenarios, with their history and
    features, ten catalogue items to rank) for the versions' warm-up files."""
    import time

    features = retrieval.query_features([user], [scenario], train)
    values = {key: [list(map(str, v[0]))] if getattr(v, "ndim", 1) == 2 else [str(v[0])] for key, v in features.items()}
    items = train.items["item_id"].astype(str).tolist()[:10]
    return {**values, "k": [int(export.default_k)], "timestamp": [int(time.time())], "exclude_ids": [[""]],
            "item_ids": [items]}


def export_run(export: C.ExportConfig, log=print) -> dict:
    """Export the run's models as servables + TF Serving configs; returns {name: path}."""
    import numpy as np

    from tfrs_multiscene.export.servables import KnownUsers, export_from_models
    from tfrs_multiscene.ranking import load_ranking
    from tfrs_multiscene.ranking.history import HISTORY_AFFINITY, history_path, load_run_history
    from tfrs_multiscene.retrieval.checkpoints import load_retrieval
    from tfrs_multiscene.run import RunDir
    from tfrs_multiscene.serving.tf_serving_config import ServableSpec, write_serving_configs

    run = RunDir(export.run_dir)
    if not run.exists():
        raise UserError(f"--run {export.run_dir}: not a run directory (no config.json); train one first")
    for part, marker in (("retrieval", run.retrieval_dir / "config.json"), ("ranking", run.ranking_dir / "spec.json")):
        if not marker.exists():
            raise UserError(f"--run {export.run_dir}: no trained {part} model ({marker} missing); "
                            f"run `tfrs-multiscene train --run {export.run_dir} --stages both`")
    split = run.load_split()
    run_cfg = run.load_config()
    retrieval = load_retrieval(run.path)
    ranking = load_ranking(run.path)
    history = load_run_history(run.path)
    if HISTORY_AFFINITY in ranking.spec.extra and history is None:
        raise UserError(f"--run {export.run_dir}: the ranking model reads {HISTORY_AFFINITY} but "
                        f"{history_path(run.path)} is missing; train the ranking again "
                        f"(`tfrs-multiscene train --run {export.run_dir} --stages ranking`)")
    train = split.train
    rng = np.random.default_rng(0)
    users = train.interactions["user_id"].astype(str).unique()
    sample = rng.choice(users, size=min(export.tuning_queries, len(users)), replace=False)
    scenarios = rng.choice(np.asarray(train.scenarios, dtype=object), size=len(sample))
    queries = retrieval.query_embeddings(retrieval.query_features(list(sample), list(scenarios), train))
    evaluation = json.loads(run.evaluation_path.read_text()) if run.evaluation_path.exists() else {}
    metadata = {
        "run_dir": str(run.path.resolve()),
        "config": salt_free(json.loads(run.config_path.read_text())),
        # what the servables hold about people: raw user ids, or only salted hashes of them
        "user_ids": HASHED if run_cfg.data.hash_user_ids else "the user ids of the training data, as they are",
        "data_fingerprint": data_fingerprint(run.split_dir),
        # added to the score of items without an id embedding (the index's extra column)
        "new_item_offset": float(retrieval.new_item_offset),
        "metrics": {"retrieval_standard_model": evaluation.get("retrieval", {}).get("standard", {}).get("model", {})},
    }
    log(f"exporting servables to {export.model_base} (index: {export.index})")
    known_users = KnownUsers.from_tables(train, retrieval.spec.history_length, list(retrieval.spec.user_categorical),
                                         retrieval.cfg.positive_task)
    paths = export_from_models(export.model_base, retrieval, ranking, train.items, train.users, export,
                               sample_queries=queries, metadata=metadata, name_prefix=export.name_prefix,
                               history=history, known_users=known_users,
                               warmup=warmup_values(retrieval, train, str(sample[0]), str(scenarios[0]), export))
    specs = [ServableSpec(name=name, base_path=f"/models/{name}", labels={"stable": int(Path(p).name)})
             for name, p in paths.items()]
    config_paths = write_serving_configs(Path(export.model_base) / "serving_config", specs)
    for name, path in paths.items():
        log(f"  {name:<22} {path}")
    log(f"TF Serving configs: {Path(export.model_base) / 'serving_config'}")
    contents = {"user_ids": metadata["user_ids"], "known_users": int(known_users.history_rows.shape[0]),
                "items": int(len(train.items)), "new_item_offset": metadata["new_item_offset"]}
    log(f"the export holds {contents['known_users']} users' histories and {contents['items']} items; "
        f"user ids: {contents['user_ids']}")
    return {"servables": {k: str(v) for k, v in paths.items()},
            "serving_config": {k: str(v) for k, v in config_paths.items()}, "contents": contents}
