"""The run directory: everything one `train` produced, so later commands need only ``--run``.

Layout::

    <run>/config.json            effective RunConfig (defaults < file < flags)
    <run>/data/                  validation report, quarantine files
    <run>/split/                 items / users / train / valid / test tables (Parquet) + info.json
    <run>/retrieval/             retrieval checkpoints, vocabularies, history, TensorBoard logs
    <run>/ranking/               ranking checkpoints, history, TensorBoard logs
    <run>/evaluation.json        written by `evaluate`
    <run>/report/report.md       plots and tables of every stage

Saving the split (rather than re-deriving it) keeps `evaluate` honest when the input data
changes after training.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tfrs_multiscene import config as C
from tfrs_multiscene.data.schema import Tables


class RunDir:
    """Paths and persistence of one run directory."""

    def __init__(self, path):
        self.path = Path(path)

    # paths ---------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def data_dir(self) -> Path:
        return self.path / "data"

    @property
    def split_dir(self) -> Path:
        return self.path / "split"

    @property
    def retrieval_dir(self) -> Path:
        return self.path / "retrieval"

    @property
    def ranking_dir(self) -> Path:
        return self.path / "ranking"

    @property
    def evaluation_path(self) -> Path:
        return self.path / "evaluation.json"

    def exists(self) -> bool:
        return self.config_path.exists()

    # config --------------------------------------------------------------------------
    def save_config(self, run_config: C.RunConfig) -> None:
        C.save_config(run_config, self.config_path)

    def load_config(self) -> C.RunConfig:
        if not self.config_path.exists():
            raise FileNotFoundError(
                f"{self.path}: not a run directory (no config.json); create one with "
                "`tfrs-multiscene train --run DIR ...`")
        return C.from_dict(C.RunConfig, json.loads(self.config_path.read_text()), str(self.config_path))

    # split ---------------------------------------------------------------------------
    def save_split(self, split) -> None:
        d = self.split_dir
        d.mkdir(parents=True, exist_ok=True)
        tables = split.train
        tables.items.to_parquet(d / "items.parquet", index=False)
        if tables.users is not None:
            tables.users.to_parquet(d / "users.parquet", index=False)
        for part in ("train", "valid", "test"):
            t = getattr(split, part)
            if t is not None:
                t.interactions.to_parquet(d / f"{part}.parquet", index=False)
        meta = {"info": split.info, "tasks": list(tables.tasks), "name": tables.name}
        (d / "info.json").write_text(json.dumps(meta, indent=2, default=str))

    def load_split(self):
        from tfrs_multiscene.data.splits import Split

        d = self.split_dir
        if not (d / "info.json").exists():
            raise FileNotFoundError(f"{d}: no saved split; was `train` run into {self.path}?")
        meta = json.loads((d / "info.json").read_text())
        items = pd.read_parquet(d / "items.parquet")
        users = pd.read_parquet(d / "users.parquet") if (d / "users.parquet").exists() else None

        def part(name):
            p = d / f"{name}.parquet"
            if not p.exists():
                return None
            return Tables(pd.read_parquet(p), items, users, tuple(meta["tasks"]), meta.get("name", ""))

        return Split(train=part("train"), valid=part("valid"), test=part("test"), info=meta["info"])
