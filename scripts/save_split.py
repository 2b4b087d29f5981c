"""Write a run directory's saved split (``RUN/split/``) without training anything.

It does what ``train`` does before it trains (``tfrs_multiscene.training.prepare_split``):
``load_tables`` (validation, quarantine files into ``RUN/data``), ``make_split``, then
``RunDir.save_split``: ``RUN/split/{train,valid,test,items,users}.parquet`` + ``info.json``.
Peer benchmarks (``benchmarks/peers_swr.py``) then train on exactly these rows.

    .venv/bin/python scripts/save_split.py --data data/movielens-100k --format recbole \\
        --scenario-from age_group --run runs/swr-ml100k

The split is ``--split`` (default random) with ``--test-fraction`` (0.2) of the interactions
as test and ``--valid-fraction`` (0.1) of the rest as validation, seeded by ``--seed`` (42):
the same defaults as ``tfrs-multiscene train``.
"""

from __future__ import annotations

import argparse
import json
import sys

import tfrs_multiscene  # noqa: F401  (first: the Keras 2 guard)
from tfrs_multiscene.config import DataConfig, SplitConfig
from tfrs_multiscene.data.loading import load_tables
from tfrs_multiscene.data.splits import make_split
from tfrs_multiscene.run import RunDir


def main(argv=None) -> int:
    split_defaults = SplitConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--data", required=True, help="data directory (as `train --data`)")
    p.add_argument("--format", default=None, help="input format (as `train --format`), e.g. recbole")
    p.add_argument("--scenario-from", default=None, help="adapters: user/item column for scenarios, e.g. age_group")
    p.add_argument("--run", required=True, help="run directory to write RUN/split into")
    p.add_argument("--split", default=split_defaults.split, choices=("random", "temporal", "leave_last_out", "cold_item"))
    p.add_argument("--test-fraction", type=float, default=split_defaults.test_fraction)
    p.add_argument("--valid-fraction", type=float, default=split_defaults.valid_fraction)
    p.add_argument("--seed", type=int, default=split_defaults.seed)
    p.add_argument("--force", action="store_true", help="overwrite an existing RUN/split")
    a = p.parse_args(argv)

    run = RunDir(a.run)
    if (run.split_dir / "info.json").exists() and not a.force:
        print(f"{run.split_dir} already holds a split (use --force to overwrite)", file=sys.stderr)
        return 1
    data_cfg = DataConfig(data=a.data, format=a.format, scenario_from=a.scenario_from)
    split_cfg = SplitConfig(split=a.split, test_fraction=a.test_fraction, valid_fraction=a.valid_fraction, seed=a.seed)
    tables, validation = load_tables(data_cfg, quarantine_dir=run.data_dir)
    run.data_dir.mkdir(parents=True, exist_ok=True)
    (run.data_dir / "validation.json").write_text(json.dumps(validation.to_dict(), indent=2, default=str))
    print(validation.format_summary())
    split = make_split(tables, split_cfg)
    run.save_split(split)
    counts = {name: (len(getattr(split, name).interactions) if getattr(split, name) is not None else 0)
              for name in ("train", "valid", "test")}
    print(f"split {a.split} (seed {a.seed}) -> {run.split_dir}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
