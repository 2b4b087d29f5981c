"""Scenario-Wise-Rec's multi-domain CTR models on exactly the train / valid / test rows of one of our runs.

Scenario-Wise-Rec (Li et al. 2024, arXiv:2412.17374, PyTorch, MIT) is the peer benchmark of
multi-scenario ranking models. This script trains *their* models with *their* trainer
(``CTRTrainer``: Adam + BCE, validation AUC early stopping) and *their* per-domain evaluation
(``CTRTrainer.evaluate_multi_domain_loss``) on the saved split of a run directory
(``RUN/split/{train,valid,test,items,users}.parquet``, written by ``train`` or by
``scripts/save_split.py``), so their per-domain test AUC / log loss can be read next to ours.
Their code is not part of this repository: ``--swr-dir`` points at a copy of their repository
and their modules are imported from there.

Getting their code (the ``fetch`` tool of this workplace, or ``git clone``; ``scripts/data``
holds sample CSVs whose largest blobs are absent from the mirror, so it is left out):

    # fetch github:Xiaopengli1/Scenario-Wise-Rec -> /work/.mirror/Xiaopengli1+Scenario-Wise-Rec/repo
    G=/work/.mirror/Xiaopengli1+Scenario-Wise-Rec/repo
    mkdir -p data/peers/Scenario-Wise-Rec
    git --git-dir=$G archive HEAD -- ':(exclude)scripts/data' | tar -x -C data/peers/Scenario-Wise-Rec
    git --git-dir=$G rev-parse HEAD > data/peers/Scenario-Wise-Rec/COMMIT   # recorded in the JSON
    # (or: git clone https://github.com/Xiaopengli1/Scenario-Wise-Rec data/peers/Scenario-Wise-Rec)

Environment: PyTorch lives in its own virtualenv so the pinned TensorFlow stack of ``.venv`` is
untouched (``make swr-env`` builds ``.venv-swr``); this script never imports TensorFlow.

    make swr-env
    .venv/bin/python scripts/save_split.py --data data/movielens-100k --format recbole \\
        --scenario-from age_group --run runs/swr-ml100k
    .venv-swr/bin/python benchmarks/peers_swr.py --run runs/swr-ml100k \\
        --swr-dir data/peers/Scenario-Wise-Rec --out benchmarks/out/swr-ml100k.json

Data, as their MovieLens example (``scripts/run_movielens_rank_multi_domain.py``,
``get_movielens_data_rank_multidomain``) builds it, from our columns:

* label: our ``liked`` (= rating >= 4, their ``convert_target``: rating > 3), rated rows only;
* domain: our ``scenario`` -> ``domain_indicator`` 0..K-1 (scenario names sorted);
* sparse features (embed_dim 16, ``LabelEncoder`` fitted on all rows of the three parts, as
  they fit it on the whole data set before splitting): ``user_id``, ``item_id`` (their
  ``movie_id``), ``gender``, ``occupation``, ``zip`` / ``zip_code``, ``genre`` (their
  ``cate_id``: the first genre) -- whichever of these our users / items tables have;
* dense feature: ``age`` (``MinMaxScaler`` over all rows, as theirs), when present;
* scenario feature (AdaSparse, EPNet, M2M, AdaptDHM, PPNet): ``domain_indicator``, embed_dim 16.

Settings (their MovieLens script and ``CTRTrainer``): Adam, lr 1e-3, weight decay 1e-5,
batch size 4096, BCE loss, early stopping on validation AUC with patience 4 (their
``EarlyStopper``: the best weights are restored when it stops; if the epoch limit comes first
the last epoch's weights are kept, as theirs), ``torch.manual_seed(2022)`` before each model.
Their script passes ``scheduler_params={"step_size": 2, "gamma": 0.85}`` without a
``scheduler_fn``, so no learning-rate schedule runs; the same call is made here. Model
hyper-parameters are their script's, per model (``build_model``). Where this differs from
their published run: the split is ours (not their ``random_split`` 8:1:1), ``--epochs`` is the
epoch limit (their script's default is 1 and their README says "maximum epoch"; 50 here so
that early stopping decides), DataLoaders use ``num_workers=0`` (theirs 8) and torch uses
``--threads`` threads (1 by default: the machine's 2 cores are shared).

Models: the default six (SharedBottom, MMoE, PLE, STAR, AdaSparse, EPNet) take 20-40 s each on
ML-100K with 1 thread; the other six of their script are accepted by ``--models`` (each ran one
epoch here) but M2M (~570 s per epoch, 1 thread) and HAMUR (~75 s per epoch) are slow.

Output: a Markdown table (per domain AUC / log loss) on stdout and, with ``--out``, JSON
``{"data", "models": {NAME: {"domains": {SCENARIO: {"auc", "logloss", "n"}}, "overall",
"train_seconds", "examples_per_second", "epochs", ...}}, "settings"}``. ``train_seconds`` is the
wall time of their ``fit`` (training and the per-epoch validation); ``examples_per_second`` is
training examples per second of the training passes alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_MODELS = ("sharedbottom", "mmoe", "ple", "star", "adasparse", "epnet")
ALL_MODELS = DEFAULT_MODELS + ("sarnet", "m2m", "adaptdhm", "ppnet", "m3oe", "hamur")
DOMAIN = "domain_indicator"  # the input their models read the domain from
LABEL = "liked"
# Their MovieLens feature set -> the column of our tables that carries it (first present wins).
SPARSE_COLUMNS = {
    "user_id": ("user_id",),
    "movie_id": ("item_id",),
    "gender": ("gender",),
    "occupation": ("occupation",),
    "zip": ("zip", "zip_code"),
    "cate_id": ("genre",),
}
DENSE_COLUMNS = {"age": ("age",)}
ID_FEATURES = ("user_id", "item_id")  # PPNet's id_features
EMBED_DIM = 16
TRAINER = {"learning_rate": 1e-3, "weight_decay": 1e-5, "batch_size": 4096, "earlystop_patience": 4,
           "scheduler_params": {"step_size": 2, "gamma": 0.85}, "optimizer": "Adam", "loss": "BCE"}


def read_split(run: Path) -> tuple[dict, list, list, list]:
    """The rated rows of train / valid / test joined with user and item features.

    Returns ``(frames, sparse, dense, domains)``: the three frames (feature columns named by
    our column names, ``domain_indicator`` and ``liked``), the sparse and dense columns used,
    and the scenario names in domain-id order.
    """
    d = run / "split"
    if not (d / "info.json").exists():
        raise SystemExit(f"{d}: no saved split (run `train` or scripts/save_split.py into {run})")
    items = pd.read_parquet(d / "items.parquet")
    users = pd.read_parquet(d / "users.parquet") if (d / "users.parquet").exists() else None
    parts = {}
    for name in ("train", "valid", "test"):
        p = d / f"{name}.parquet"
        if not p.exists():
            raise SystemExit(f"{p}: missing (their early stopping needs a validation part)")
        parts[name] = pd.read_parquet(p)
    first = parts["train"]
    if "scenario" not in first.columns:
        raise SystemExit("the split has no scenario column")
    if LABEL not in first.columns and "rating" not in first.columns:
        raise SystemExit(f"the split has neither {LABEL!r} nor rating")

    def present(spec, tables):
        out = []
        for candidates in spec.values():
            col = next((c for c in candidates if any(c in t.columns for t in tables)), None)
            if col is not None:
                out.append(col)
        return out

    tables = [first] + [t for t in (users, items) if t is not None]
    sparse = present(SPARSE_COLUMNS, tables)
    dense = present(DENSE_COLUMNS, tables)
    user_cols = [c for c in sparse + dense if users is not None and c in users.columns and c != "user_id" and c not in first.columns]
    item_cols = [c for c in sparse + dense if c in items.columns and c != "item_id" and c not in first.columns and c not in user_cols]
    frames = {}
    for name, f in parts.items():
        if "rating" in f.columns:
            f = f[f["rating"].notna()]
        if LABEL not in f.columns:  # derive as our loader does (liked_threshold 4)
            f = f.assign(**{LABEL: (f["rating"] >= 4).astype(int)})
        f = f[f[LABEL].notna()]
        f = f[["user_id", "item_id", "scenario", LABEL]].reset_index(drop=True)
        if user_cols:
            f = f.merge(users[["user_id"] + user_cols].drop_duplicates("user_id"), on="user_id", how="left")
        if item_cols:
            f = f.merge(items[["item_id"] + item_cols].drop_duplicates("item_id"), on="item_id", how="left")
        frames[name] = f
    domains = sorted(set().union(*(set(f["scenario"].astype(str)) for f in frames.values())))
    return frames, sparse, dense, domains


def encode(frames: dict, sparse: list, dense: list, domains: list) -> tuple[dict, dict]:
    """Their preprocessing: LabelEncoder per sparse column, MinMaxScaler for dense, fitted on all rows."""
    from sklearn.preprocessing import LabelEncoder, MinMaxScaler

    order = list(frames)
    both = pd.concat([frames[n] for n in order], keys=order, names=["part", "row"])
    encoded = {}
    vocab = {}
    for col in sparse:
        values = both[col].astype("string").fillna("<missing>").astype(str)
        encoded[col] = LabelEncoder().fit_transform(values).astype(np.int64)
        vocab[col] = int(values.nunique())
    for col in dense:
        values = pd.to_numeric(both[col], errors="coerce")
        values = values.fillna(values.median()).to_numpy(dtype=np.float64).reshape(-1, 1)
        encoded[col] = MinMaxScaler().fit_transform(values).ravel().astype(np.float32)
    domain_id = {name: i for i, name in enumerate(domains)}
    encoded[DOMAIN] = both["scenario"].astype(str).map(domain_id).to_numpy(dtype=np.int64)
    label = both[LABEL].to_numpy(dtype=np.int64)
    out = {}
    start = 0
    for n in order:
        stop = start + len(frames[n])
        out[n] = ({k: v[start:stop] for k, v in encoded.items()}, label[start:stop])
        start = stop
    vocab[DOMAIN] = len(domains)
    return out, vocab


def feature_lists(sparse: list, dense: list, vocab: dict):
    """Their Feature objects: (dense_feas, sparse_feas, scenario_feas, id_feas, sparse_wo_ids)."""
    from scenario_wise_rec.basic.features import DenseFeature, SparseFeature

    dense_feas = [DenseFeature(c) for c in dense]
    sparse_feas = [SparseFeature(c, vocab_size=vocab[c], embed_dim=EMBED_DIM) for c in sparse]
    scenario_feas = [SparseFeature(DOMAIN, vocab_size=vocab[DOMAIN], embed_dim=EMBED_DIM)]
    id_feas = [f for f in sparse_feas if f.name in ID_FEATURES]
    other_feas = [f for f in sparse_feas if f.name not in ID_FEATURES]
    return dense_feas, sparse_feas, scenario_feas, id_feas, other_feas


def build_model(name: str, sparse: list, dense: list, vocab: dict, domain_num: int, device: str):
    """Each model exactly as their ``run_movielens_rank_multi_domain.py`` builds it."""
    from scenario_wise_rec.models import multi_domain as M

    # Fresh Feature objects per model: SparseFeature caches its nn.Embedding on itself.
    dense_feas, sparse_feas, scenario_feas, id_feas, other_feas = feature_lists(sparse, dense, vocab)
    if name == "star":
        return M.Star(dense_feas + sparse_feas, domain_num, fcn_dims=[128, 64, 32], aux_dims=[32])
    if name == "sharedbottom":
        return M.SharedBottom(dense_feas + sparse_feas, domain_num, bottom_params={"dims": [128]}, tower_params={"dims": [8]})
    if name == "mmoe":
        return M.MMOE(dense_feas + sparse_feas, domain_num, n_expert=domain_num, expert_params={"dims": [16]}, tower_params={"dims": [8]})
    if name == "ple":
        return M.PLE(dense_feas + sparse_feas, domain_num, n_level=1, n_expert_specific=2, n_expert_shared=1,
                     expert_params={"dims": [16]}, tower_params={"dims": [8]})
    if name == "adasparse":
        return M.AdaSparse(sce_features=scenario_feas, agn_features=sparse_feas, form="Fusion", epsilon=1e-2, alpha=1.0,
                           delta_alpha=1e-4, mlp_params={"dims": [32, 32], "dropout": 0.2, "activation": "relu"})
    if name == "sarnet":
        return M.Sarnet(features=sparse_feas, domain_num=domain_num, domain_shared_expert_num=8, domain_specific_expert_num=2)
    if name == "m2m":
        return M.M2M(features=sparse_feas + scenario_feas, domain_feature=scenario_feas, domain_num=domain_num, num_experts=4,
                     expert_output_size=16, transformer_dims={"num_encoder_layers": 2, "num_decoder_layers": 2, "dim_feedforward": 16})
    if name == "adaptdhm":
        return M.AdaptDHM(features=sparse_feas + scenario_feas, fcn_dims=[64, 64], cluster_num=3, beta=0.9, device=device)
    if name == "epnet":
        return M.EPNet(sce_features=scenario_feas, agn_features=sparse_feas + dense_feas, fcn_dims=[128, 64, 32])
    if name == "ppnet":  # their _ppnet loader: ids apart from the other sparse features
        return M.PPNet(id_features=id_feas, agn_features=other_feas + dense_feas + scenario_feas, domain_num=domain_num,
                       fcn_dims=[128, 64, 32])
    if name == "m3oe":
        return M.M3oE(features=dense_feas + sparse_feas, domain_num=domain_num, fcn_dims=[128, 64, 64, 32], expert_num=4,
                      exp_d=1, exp_t=1, bal_d=1, bal_t=1, device=device)
    if name == "hamur":
        return M.HamurSmall(dense_feas + sparse_feas, domain_num=domain_num, fcn_dims=[256, 128], hyper_dims=[64], k=35)
    raise SystemExit(f"unknown model {name!r}; choose from {', '.join(ALL_MODELS)}")


def _metric(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def run_model(name: str, data: dict, sparse: list, dense: list, vocab: dict, domains: list, a) -> dict:
    import torch
    from scenario_wise_rec.trainers import CTRTrainer
    from scenario_wise_rec.utils.data import DataGenerator

    torch.manual_seed(a.seed)  # their main(): once per process, i.e. per model
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = data["train"], data["valid"], data["test"]
    dg = DataGenerator(x_tr, y_tr)
    train_dl, val_dl, test_dl = dg.generate_dataloader(x_val=x_va, y_val=y_va, x_test=x_te, y_test=y_te,
                                                       batch_size=TRAINER["batch_size"], num_workers=0)
    domain_num = len(domains)
    model = build_model(name, sparse, dense, vocab, domain_num, a.device)
    n_params = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory(prefix="swr-") as tmp:
        trainer = CTRTrainer(model, "ours", optimizer_params={"lr": TRAINER["learning_rate"], "weight_decay": TRAINER["weight_decay"]},
                             n_epoch=a.epochs, earlystop_patience=TRAINER["earlystop_patience"], device=a.device, model_path=tmp,
                             scheduler_params=TRAINER["scheduler_params"])
        # Instrument (not change) their loop: time the training passes, record validation AUCs.
        train_pass, evaluate = trainer.train_one_epoch, trainer.evaluate
        pass_seconds, val_history = [], []

        def timed_pass(loader, *args, **kw):
            t = time.perf_counter()
            out = train_pass(loader, *args, **kw)
            pass_seconds.append(time.perf_counter() - t)
            return out

        def recorded_eval(model_, loader, *args, **kw):
            auc, ll = evaluate(model_, loader, *args, **kw)
            val_history.append({"auc": float(auc), "logloss": float(ll)})
            return auc, ll

        trainer.train_one_epoch, trainer.evaluate = timed_pass, recorded_eval
        with contextlib.redirect_stdout(sys.stderr):  # their progress prints; stdout keeps the table
            t0 = time.perf_counter()
            trainer.fit(train_dl, val_dl)
            fit_seconds = time.perf_counter() - t0
            domain_ll, domain_auc, ll, auc = trainer.evaluate_multi_domain_loss(trainer.model, test_dl, domain_num)
    counts = np.bincount(x_te[DOMAIN], minlength=domain_num)
    epochs = len(pass_seconds)
    best = int(np.argmax([v["auc"] for v in val_history])) + 1 if val_history else None
    stopped = epochs < a.epochs
    return {
        "domains": {domains[d]: {"auc": _metric(domain_auc[d]), "logloss": _metric(domain_ll[d]), "n": int(counts[d])}
                    for d in range(domain_num)},
        "overall": {"auc": _metric(auc), "logloss": _metric(ll), "n": int(len(y_te))},
        "train_seconds": round(fit_seconds, 3),
        "examples_per_second": round(epochs * len(y_tr) / max(sum(pass_seconds), 1e-9), 1),
        "epochs": epochs,
        "stopped_early": stopped,
        # their EarlyStopper restores the best weights only when it stops the run
        "weights_from_epoch": best if stopped else epochs,
        "best_valid_epoch": best,
        "best_valid_auc": val_history[best - 1]["auc"] if best else None,
        "valid_history": val_history,
        "parameters": int(n_params),
    }


def markdown(results: dict, domains: list) -> str:
    head = ["model"] + [f"{d} AUC / logloss" for d in domains] + ["overall AUC / logloss", "epochs", "train s", "ex/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(m):
        if m.get("auc") is None:
            return "-"
        return f"{m['auc']:.4f} / {m['logloss']:.4f}"

    for name, r in results.items():
        if "error" in r:
            lines.append("| " + " | ".join([name, f"failed: {r['error']}"] + [""] * (len(head) - 2)) + " |")
            continue
        row = [name] + [cell(r["domains"][d]) for d in domains] + [cell(r["overall"]), str(r["epochs"]),
                                                                  f"{r['train_seconds']:.1f}", f"{r['examples_per_second']:.0f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--run", required=True, type=Path, help="run directory with a saved split (RUN/split)")
    p.add_argument("--swr-dir", required=True, type=Path, help="a work tree of Scenario-Wise-Rec (see the top of this file)")
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), help=f"of {', '.join(ALL_MODELS)}")
    p.add_argument("--out", type=Path, help="write the JSON here")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: shared 2-core machine)")
    p.add_argument("--seed", type=int, default=2022, help="torch.manual_seed before each model (their default 2022)")
    p.add_argument("--epochs", type=int, default=50, help="epoch limit; their early stopping (patience 4) ends runs sooner")
    p.add_argument("--device", default="cpu", help="cpu or cuda:0 (their --device)")
    p.add_argument("--progress", action="store_true", help="keep their tqdm progress bars")
    a = p.parse_args(argv)
    unknown = [m for m in a.models if m not in ALL_MODELS]
    if unknown:
        p.error(f"unknown model(s) {unknown}; choose from {', '.join(ALL_MODELS)}")
    pkg = a.swr_dir / "scenario_wise_rec"
    if not pkg.is_dir():
        p.error(f"{a.swr_dir}: no scenario_wise_rec/ package; fetch their repository first (see the top of this file)")
    if not a.progress:
        os.environ["TQDM_DISABLE"] = "1"
    sys.path.insert(0, str(a.swr_dir.resolve()))

    import torch

    torch.set_num_threads(a.threads)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(a.threads)

    frames, sparse, dense, domains = read_split(a.run)
    data, vocab = encode(frames, sparse, dense, domains)
    sizes = {n: int(len(y)) for n, (_, y) in data.items()}
    print(f"split {a.run}: " + ", ".join(f"{n} {s}" for n, s in sizes.items()) + f"; domains {domains}; "
          f"sparse {sparse}; dense {dense}", file=sys.stderr)

    results = {}
    for name in a.models:
        print(f"== {name}", file=sys.stderr)
        try:
            results[name] = run_model(name, data, sparse, dense, vocab, domains, a)
        except Exception as e:  # one model's failure should not lose the others
            results[name] = {"error": f"{type(e).__name__}: {e}"}
        r = results[name]
        if "error" not in r:
            print(f"{name}: test AUC {r['overall']['auc']:.4f}, {r['epochs']} epochs, {r['train_seconds']:.1f} s", file=sys.stderr)
        else:
            print(f"{name}: {r['error']}", file=sys.stderr)

    commit_file = a.swr_dir / "COMMIT"
    settings = {
        "trainer": TRAINER, "embed_dim": EMBED_DIM, "epochs_limit": a.epochs, "seed": a.seed, "threads": a.threads,
        "device": a.device, "num_workers": 0, "sparse_features": sparse, "dense_features": dense,
        "scenario_feature": DOMAIN, "label": f"{LABEL} (rating >= 4), rated rows", "domains": domains,
        "rows": sizes, "vocab_sizes": vocab,
        "swr_dir": str(a.swr_dir), "swr_commit": commit_file.read_text().strip() if commit_file.exists() else None,
        "torch": torch.__version__, "python": platform.python_version(),
        "scheduler_note": "their script passes scheduler_params without scheduler_fn: no lr schedule runs",
    }
    report = {"data": str(a.run), "models": results, "settings": settings}
    table = markdown(results, domains)
    print(table)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(report, indent=2, allow_nan=False))
        print(f"wrote {a.out}", file=sys.stderr)
    assert "tensorflow" not in sys.modules, "TensorFlow was imported"
    return 0 if all("error" not in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
