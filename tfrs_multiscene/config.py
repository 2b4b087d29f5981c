"""Typed configuration: dataclasses loadable from YAML/JSON, one CLI flag per field.

Every field that a command line can set carries ``metadata={"flag": "--name", "help": ...}``
via :func:`option`. The CLI builds its flags from these, so a flag always maps to exactly one
config field, and ``--config FILE`` (YAML or JSON) fills the same fields. Precedence:
defaults < config file < command-line flags. The effective configuration is written into
each run directory as ``config.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, Optional


def option(default, flag: str, help: str, choices=None, item_type=None, advanced: bool = False, **kwargs):
    """A dataclass field that the CLI exposes as ``flag`` (``item_type``: of a list's items).

    ``advanced``: a setting most users leave alone; ``--help`` leaves its flag out (it still
    works, ``--help-all`` lists it) and docs/CONFIG.md describes it with the others."""
    meta = {"flag": flag, "help": help, "advanced": advanced}
    if item_type is not None:
        meta["item_type"] = item_type
    if choices is not None:
        meta["choices"] = tuple(choices)
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta, **kwargs)
    return dataclasses.field(default=default, metadata=meta, **kwargs)


# --------------------------------------------------------------------------- sections

RANKING_ARCHITECTURES = ("shared_bottom", "star", "mmoe", "ple")


@dataclasses.dataclass
class DataConfig:
    """Where the three tables come from and how strictly they are checked."""

    data: Optional[str] = option(None, "--data", "Data directory (interactions.*, items.*, users.*) or a public data set's download directory.")
    format: Optional[str] = option(None, "--format", "Input format: csv, tsv, parquet, jsonl, tfrecord, movielens-100k, movielens-1m, mind, amazon. Default: from the files.")
    scenario_from: Optional[str] = option(None, "--scenario-from", "Adapters: derive scenarios from a user or item column (e.g. age_group, genre), or 'none' for a single scenario.")
    strict: bool = option(False, "--strict", "Exit non-zero if any row is quarantined.")
    quarantine_dir: Optional[str] = option(None, "--quarantine-dir", "Where quarantined rows go (default: the run directory, else the data directory).", advanced=True)
    scenarios: list = option([], "--scenarios", "Allowed scenario names (others are quarantined). Default: any.", advanced=True)
    tasks: list = option([], "--tasks", "Label columns that are tasks. Default: the known label columns present.")
    liked_threshold: float = option(4.0, "--liked-threshold", "Ratings at or above this make the derived 'liked' label 1.", advanced=True)
    chunk_rows: int = option(200_000, "--chunk-rows", "Rows per chunk when streaming CSV/Parquet/TFRecord.", advanced=True)
    hash_user_ids: Optional[str] = option(None, "--hash-user-ids", "SALT: replace every user id by its salted hash (HMAC-SHA256) as the data is read, so the models and exports hold no raw user id; clients send the hash (data/privacy.py: hash_user_id). The salt is not written into exports.", advanced=True)
    id_only_items: bool = option(True, "--id-only-items", "Amazon: keep reviews of items without metadata (no meta_* file, or not in it) with id-only items (empty title), counted in the validation report; --no-id-only-items quarantines them.", advanced=True)


@dataclasses.dataclass
class GenerateConfig:
    """The synthetic multi-scenario world (see tfrs_multiscene.data.synthetic)."""

    out: str = option("data/synthetic", "--out", "Output directory for the generated tables.")
    out_format: str = option("csv", "--out-format", "File format of the written tables.", choices=("csv", "tsv", "parquet", "jsonl", "tfrecord"))
    users: int = option(600, "--users", "Number of users (few, so each has enough impressions to learn from).")
    items: int = option(1000, "--items", "Number of items (including cold items).")
    topics: int = option(12, "--topics", "Number of latent topics.")
    impressions: int = option(120_000, "--impressions", "Number of impressions across all scenarios.")
    cold_item_fraction: float = option(0.05, "--cold-item-fraction", "Fraction of items introduced only in the test period.")
    cold_period: float = option(0.1, "--cold-period", "Cold items appear only in this last fraction of the time span (keep it below the temporal split's test fraction).")
    days: int = option(90, "--days", "Length of the simulated time span in days.")
    seed: int = option(42, "--seed", "Random seed; the same seed gives the same tables.")


@dataclasses.dataclass
class SplitConfig:
    """How interactions are divided into train / validation / test."""

    split: str = option("random", "--split", "Split kind.", choices=("random", "temporal", "leave_last_out", "cold_item"))
    test_fraction: float = option(0.2, "--test-fraction", "Fraction of interactions (or items, for cold_item) held out for test.")
    valid_fraction: float = option(0.1, "--valid-fraction", "Fraction of the training part held out for validation / tuning.")
    seed: int = option(42, "--seed", "Random seed of the split.")


@dataclasses.dataclass
class TextConfig:
    """The KerasHub text encoder."""

    text_encoder: str = option("minilm", "--text-encoder", "'minilm' (pretrained all-MiniLM-L6-v2), 'scratch', 'none', or a path to a Hugging Face/KerasHub BERT directory.")
    text_mode: str = option("frozen", "--text-mode", "frozen: cached embeddings + trainable projection; finetune: the encoder trains in the tower.", choices=("frozen", "finetune"))
    max_length: int = option(32, "--max-length", "Token sequence length.", advanced=True)
    cache_dir: str = option("~/.cache/tfrs_multiscene/text", "--text-cache-dir", "Cache of frozen text embeddings, keyed by text hash and encoder hash.", advanced=True)
    scratch_vocab_size: int = option(8000, "--scratch-vocab-size", "WordPiece vocabulary size of the from-scratch encoder.", advanced=True)
    scratch_dim: int = option(128, "--scratch-dim", "Width of the from-scratch encoder.", advanced=True)
    scratch_layers: int = option(2, "--scratch-layers", "Transformer layers of the from-scratch encoder.", advanced=True)
    embed_batch_size: int = option(256, "--embed-batch-size", "Texts per batch when embedding.", advanced=True)
    scratch_seed: int = option(42, "--scratch-seed", "Seed of the from-scratch encoder's initial weights.", advanced=True)
    text_weights_sha256: Optional[str] = option(None, "--text-weights-sha256", "Expected sha256 of the weights file of a --text-encoder PATH directory; refused if it differs.", advanced=True)


@dataclasses.dataclass
class RetrievalConfig:
    """The TFRS two-tower retrieval model."""

    embedding_dim: int = option(64, "--embedding-dim", "Output dimension of both towers.")
    epochs: int = option(10, "--epochs", "Training epochs.")
    batch_size: int = option(256, "--batch-size", "Training batch size (in-batch negatives).")
    learning_rate: float = option(0.001, "--learning-rate", "Adam learning rate.")
    temperature: float = option(0.1, "--temperature", "Softmax temperature of the retrieval task.", advanced=True)
    logq_correction: bool = option(True, "--logq-correction", "Sampling-bias (log-Q) correction from item frequencies.", advanced=True)
    hard_negatives: int = option(0, "--hard-negatives", "Number of hard negatives per query (0: off).", advanced=True)
    remove_accidental_hits: bool = option(True, "--remove-accidental-hits", "Mask in-batch negatives that are the positive item.", advanced=True)
    l2_normalize: bool = option(True, "--l2-normalize", "L2-normalise tower outputs.", advanced=True)
    id_dropout: float = option(0.1, "--id-dropout", "Probability of dropping an id during training (robustness to unseen ids).", advanced=True)
    history_length: int = option(50, "--history-length", "Recent items pooled into the query tower.", advanced=True)
    warm_start: Optional[str] = option(None, "--warm-start", "Run directory whose model continues training on new data.")
    feature_dim: int = option(64, "--feature-dim", "Width of each tower part (id, history, category and text embeddings) before the head.", advanced=True)
    hidden_units: list = option([], "--hidden-units", "Hidden ReLU layer widths of each tower's head (empty: a linear head).", item_type=int, advanced=True)
    use_user_id: bool = option(False, "--use-user-id", "Include the user id embedding in the query tower (off by default: on sparse users it overfits; history carries the user).", advanced=True)
    share_item_embeddings: bool = option(True, "--share-item-embeddings", "History items use the candidate tower's item id (and text) embeddings.", advanced=True)
    history_sampling: str = option("recent", "--history-sampling", "Training history per example: the user's most recent other positives, or a random subset of them each epoch.", choices=("recent", "random"), advanced=True)
    history_dropout: float = option(0.0, "--history-dropout", "Training only: drop each history item of an example with this probability, re-drawn every batch (denoising, as in Mult-DAE; the query then learns from partial histories).", advanced=True)
    positive_task: Optional[str] = option(None, "--positive-task", "Label column marking a positive (default: click/liked/... when present, else every interaction; 'all': every interaction even when label columns exist).", advanced=True)
    validate_every: int = option(1, "--validate-every", "Compute validation Recall@K every N epochs (0: never).", advanced=True)
    restore_best: bool = option(True, "--restore-best", "End with the weights of the epoch with the best validation selection score (when validating).", advanced=True)
    selection_ks: list = option([10, 20, 50], "--selection-ks", "Cut-offs K whose validation Recall@K and NDCG@K are averaged into the selection score that picks the best epoch and drives early stopping (one K alone is too noisy on a small validation split).", item_type=int, advanced=True)
    ema_momentum: float = option(0.0, "--ema-momentum", "Keep an exponential moving average of the weights with this momentum (e.g. 0.99) and make it the model at every epoch end, so validation, checkpoints and the export see the averaged weights (0: off).", advanced=True)
    plateau_lr_factor: float = option(0.0, "--plateau-lr-factor", "Multiply the learning rate by this factor after each validated epoch without a better selection score (e.g. 0.5; 0: keep it constant).", advanced=True)
    early_stopping: int = option(3, "--early-stopping", "Stop after this many validated epochs without a better selection score (0: train every epoch).", advanced=True)
    mixed_negatives: int = option(4096, "--mixed-negatives", "Items drawn uniformly from the item table per batch and added to the in-batch negatives (mixed negative sampling; corrects in-batch popularity bias; a catalogue no larger than this joins whole, each item once; 0: in-batch only).", advanced=True)
    ensemble: int = option(1, "--ensemble", "Two-tower members, each trained on its own (a whole training with seed S+k, under <run>/retrieval/members/; the streamed --examples trainer trains them side by side on the same batches) and served as one two-tower: the towers output the members' embeddings concatenated and scaled by 1/sqrt(N), so the score is the mean of the members' scores, still one dot product for the same index (N x the training time and embedding width).", advanced=True)
    mask_known_positives: bool = option(False, "--mask-known-positives", "Training only: a query's other training positives (its history pool) are not negatives in its softmax (in-batch or mixed). Recommendations exclude them anyway; pushing them down works against the history that predicts the target (false negatives).", advanced=True)
    new_item_warm_cost: float = option(0.02, "--new-item-warm-cost", "Relative share of the warm validation selection score that the new-item score offset may cost: the offset for items without an id embedding is the one that serves simulated new items best within this price (0: no offset; see retrieval/new_items.py).")


@dataclasses.dataclass
class RankingConfig:
    """The multi-scenario ranking model."""

    architecture: str = option("shared_bottom", "--architecture", "Ranking architecture.", choices=RANKING_ARCHITECTURES)
    bottom_units: list = option([256, 128], "--bottom-units", "Shared bottom layer widths.", advanced=True)
    tower_units: list = option([64], "--tower-units", "Per-scenario tower layer widths.", advanced=True)
    num_experts: int = option(4, "--num-experts", "Experts (MMoE / PLE).", advanced=True)
    use_cross: bool = option(False, "--use-cross", "Add a deep-cross layer (tfrs.layers.dcn.Cross) to the bottom.", advanced=True)
    scenario_film: bool = option(True, "--scenario-film", "shared_bottom: condition the bottom on the scenario (per-scenario FiLM scale and shift of every hidden layer).", advanced=True)
    scenario_wide: bool = option(True, "--scenario-wide", "shared_bottom: add a per-scenario linear logit on the encoded input to each tower's output (wide & deep per scenario).", advanced=True)
    shared_tower: bool = option(False, "--shared-tower", "shared_bottom: add a tower shared by all scenarios and make each scenario's tower a residual on it (starts at zero), so alike scenarios share one tower.", advanced=True)
    wide: bool = option(True, "--wide", "Add a per-scenario logistic model on the one-hot and numeric features (item-side values: shared plus per-scenario biases; user-side: per-scenario) to the logits, fitted alone first and then frozen while the deep part trains on top of it (ranking/wide.py).")
    wide_solver: str = option("lbfgs", "--wide-solver", "With --wide: how the wide part is fitted: 'lbfgs' (full-batch L-BFGS to the exact optimum of the penalised likelihood, in chunks of the training set) or 'adam' (minibatch Adam with early stopping; for data too large for a pass per iteration).", choices=("lbfgs", "adam"), advanced=True)
    wide_max_iterations: int = option(500, "--wide-max-iterations", "With --wide-solver lbfgs: most L-BFGS iterations of each wide fit (it stops earlier when the objective stops falling).", advanced=True)
    wide_epochs: int = option(30, "--wide-epochs", "With --wide-solver adam: most epochs of the wide fit (it stops when validation loss stops improving).", advanced=True)
    wide_learning_rate: float = option(0.05, "--wide-learning-rate", "With --wide-solver adam: Adam learning rate of the wide fit.", advanced=True)
    wide_l2: float = option(10.0, "--wide-l2", "With --wide: L2 penalty of the wide weights, in examples' worth of evidence (penalty = wide_l2 / n_train * sum(w^2)); with --wide-prior empirical_bayes only the first fit's, for the bias tables.", advanced=True)
    wide_prior: str = option("empirical_bayes", "--wide-prior", "With --wide: how hard each bias table (item, user, category... and their per-scenario deviations) is shrunk: 'fixed' (wide_l2 for all) or 'empirical_bayes' (each table column's prior variance re-estimated from the fitted weights, then the fit repeated).", choices=("fixed", "empirical_bayes"), advanced=True)
    tower_l2: float = option(0.0, "--tower-l2", "shared_bottom: L2 penalty on the scenario towers' (and wide weights') kernels.", advanced=True)
    conversion_mode: str = option("esmm", "--conversion-mode", "Conversion trained on all impressions (esmm) or on clicks only.", choices=("esmm", "clicks_only"), advanced=True)
    task_weights: dict = option({}, "--task-weights", "Per-task loss weights as JSON, e.g. '{\"click\": 1, \"conversion\": 0.5}'.", advanced=True)
    balance_scenarios: bool = option(True, "--balance-scenarios", "Weight examples so small scenarios are not drowned.", advanced=True)
    negatives_per_positive: int = option(4, "--negatives-per-positive", "Sampled negatives for positive-only logs.", advanced=True)
    epochs: int = option(12, "--ranking-epochs", "Ranking training epochs.")
    batch_size: int = option(1024, "--ranking-batch-size", "Ranking training batch size.")
    learning_rate: float = option(0.0005, "--ranking-learning-rate", "Ranking Adam learning rate.")
    ema_momentum: float = option(0.0, "--ranking-ema-momentum", "Keep an exponential moving average of the ranking weights with this momentum and make it the model at every epoch end (validation loss, early stopping and checkpoints see the average; pooled and separate baselines train the same way; 0: off).", advanced=True)
    embedding_dim: int = option(16, "--ranking-embedding-dim", "Width of id, categorical, scenario, context and text-token embeddings.", advanced=True)
    dropout: float = option(0.3, "--ranking-dropout", "Dropout after each hidden layer.", advanced=True)
    log_numeric: bool = option(True, "--log-numeric", "Standardise strictly positive, right-skewed numeric features (e.g. price) on the log scale (the wide part's per-scenario slopes are then slopes in log price).", advanced=True)
    history_affinity: bool = option(True, "--history-affinity", "Add the user-history affinity feature: cosine between the item's text embedding and the mean text embedding of what the user was shown before (needs a pretrained --text-encoder; ranking/history.py).", advanced=True)
    history_affinity_dims: int = option(16, "--history-affinity-dims", "With --history-affinity: text directions kept by the exposure projection, the ones along which a user's impressions agree most (also the width of the servable's user and item tables).", advanced=True)
    dot_interactions: bool = option(True, "--dot-interactions", "Add the pairwise dot products of the embedding fields (DLRM-style) to the bottom's input.", advanced=True)
    scenario_weight_power: float = option(0.5, "--scenario-weight-power", "With --balance-scenarios, example weight ~ n_scenario^-power (1: equal total weight per scenario, 0.5: square-root tempered).", advanced=True)
    negative_source: str = option("catalogue", "--ranking-negatives", "Where negatives come from for positive-only logs.", choices=("catalogue", "retrieval"), advanced=True)
    liked_threshold: float = option(4.0, "--ranking-liked-threshold", "Ratings at or above this make the 'liked' label 1 when the data has ratings but no label.", advanced=True)
    rating_task: bool = option(True, "--rating-task", "Add an MSE 'rating' task when the interactions have a rating column.", advanced=True)
    early_stopping: int = option(2, "--ranking-early-stopping", "Stop after this many epochs without validation-loss improvement and keep the best weights (0: off).", advanced=True)
    scenario_finetune_epochs: int = option(0, "--scenario-finetune-epochs", "After joint training, fine-tune each scenario's own weights (tower, wide, FiLM rows; shared weights frozen) on its own examples for at most this many epochs, early-stopping on its own validation loss (0: off). Multi-scenario model only.", advanced=True)
    scenario_finetune_lr: float = option(0.0, "--scenario-finetune-lr", "Adam learning rate of the per-scenario fine-tuning (0: the ranking learning rate).", advanced=True)
    warm_start: Optional[str] = option(None, "--ranking-warm-start", "Run directory whose ranking model (weights and vocabularies) continues training.")


@dataclasses.dataclass
class TrainConfig:
    """What `train` runs and where it writes."""

    run_dir: str = option("runs/latest", "--run", "Run directory (checkpoints, logs, report, config).")
    stages: str = option("both", "--stages", "Which models to train.", choices=("both", "retrieval", "ranking"))
    examples: Optional[str] = option(None, "--examples", "Train from preprocessed TFRecords (tfrs-multiscene preprocess) instead of tables.")
    seed: int = option(42, "--train-seed", "Seed for model initialisation and shuffling.")


@dataclasses.dataclass
class ExportConfig:
    """SavedModels in TF Serving's layout."""

    run_dir: str = option("runs/latest", "--run", "Run directory written by `train`.")
    name_prefix: str = option("", "--name-prefix", "Prefix of the servable names (e.g. 'shop_').")
    model_base: str = option("models", "--out", "Model base path: <base>/<name>/<version>/.")
    index: str = option("scann", "--index", "Retrieval index inside the graph (ivf: approximate, stock TF ops).", choices=("scann", "brute_force", "ivf"))
    stock_index: str = option("ivf", "--stock-index", "With --index scann, also export <name>_stock servables with this stock-op index (stock TF Serving lacks ScaNN ops); 'none' to skip.", choices=("ivf", "brute_force", "none"))
    default_k: int = option(10, "--default-k", "Results returned by the serving_default signatures (other signatures take k per request).")
    tuning_queries: int = option(1000, "--tuning-queries", "Sample queries for tuning the approximate index against exact search.")
    top_k: int = option(100, "--top-k", "Depth the index is built for.")
    target_recall: float = option(0.95, "--target-recall", "Recall@10 against exact search the tuned ScaNN / IVF index must reach.")
    candidates: int = option(200, "--candidates", "Retrieval candidates ranked by the recommender servable.")


@dataclasses.dataclass
class ServeConfig:
    """The local TF Serving-protocol server and the client."""

    model_base: str = option("models", "--model-base", "Model base path to serve.")
    host: str = option("127.0.0.1", "--host", "Address to bind.")
    rest_port: int = option(8501, "--rest-port", "REST port (TF Serving's default 8501).")
    grpc_port: int = option(8500, "--grpc-port", "gRPC port (TF Serving's default 8500).")
    poll_seconds: float = option(2.0, "--poll-seconds", "How often to look for new versions.")
    max_batch: int = option(1024, "--max-batch", "Largest number of instances accepted in one request.")
    max_request_bytes: int = option(8 << 20, "--max-request-bytes", "Largest request body accepted.")
    max_list_length: int = option(1000, "--max-list-length", "Most values one row of a list input (history, exclude_ids, item_ids) may hold.")
    request_timeout: float = option(60.0, "--request-timeout", "Seconds a REST request body may take to arrive (then HTTP 408), and an idle connection stays open.")
    model_config_file: Optional[str] = option(None, "--model-config-file", "TF Serving models.config (model_config_list: version policy, labels); relative base paths are under --model-base. Default: every model under --model-base, latest version.")
    grpc_workers: int = option(8, "--grpc-workers", "Threads answering gRPC requests.")


@dataclasses.dataclass
class EvaluateConfig:
    """What `evaluate` computes and where it writes."""

    run_dir: str = option("runs/latest", "--run", "Run directory written by `train`.")
    json_out: Optional[str] = option(None, "--json", "Write the evaluation JSON here (also written as <run>/evaluation.json).")
    ks: list = option([10, 20, 50, 100], "--ks", "Cut-offs K for Recall/NDCG/HitRate/coverage.")
    baselines: list = option(["popularity", "item_knn", "ease", "tfidf", "tfrs_tutorial"], "--baselines", "Baselines computed in the same run.")
    ease_lambdas: list = option([50.0, 100.0, 300.0, 1000.0], "--ease-lambdas", "EASE lambdas tried on the validation split.")
    cold_start: bool = option(True, "--cold-start", "Also evaluate on a cold-item split (trains a model on it).")
    ranking: bool = option(True, "--evaluate-ranking", "Evaluate the ranking model against pooled / separate / oracle.")
    compare_architectures: list = option([], "--compare-architectures", "Also train these ranking architectures (shared_bottom, star, mmoe, ple) on the run's split with its settings and report them beside the model (JSON under ranking.architectures).", choices=RANKING_ARCHITECTURES)


@dataclasses.dataclass
class RecommendConfig:
    """A request to a running server (`recommend --server URL`)."""

    server: str = option("http://127.0.0.1:8501", "--server", "Server URL: http://host:8501 (REST) or grpc://host:8500.")
    model: str = option("recommender", "--model-name", "Servable name.")
    user: str = option("", "--user", "User id.")
    hash_user_ids: Optional[str] = option(None, "--hash-user-ids", "SALT the model was trained with: --user is sent as its salted hash.")
    scenario: str = option("", "--scenario", "Scenario of the request.")
    k: int = option(10, "--k", "How many items to return.")
    exclude: list = option([], "--exclude", "Item ids not to recommend (e.g. already seen).")
    history: list = option([], "--history", "The user's recent item ids, oldest first.")
    features: dict = option({}, "--features", "Other request features as JSON, e.g. '{\"age_bucket\": \"25-34\"}'.")
    timeout: float = option(10.0, "--timeout", "Seconds per attempt.")


@dataclasses.dataclass
class DemoConfig:
    """`demo`: the whole product on an embedded synthetic world."""

    out: str = option("runs/demo", "--out", "Directory of the demo (data, run, models, report).")
    quick: bool = option(False, "--quick", "A smaller world and fewer epochs (for tests and a first look).")
    index: str = option("scann", "--demo-index", "Index of the exported retrieval servables.", choices=("scann", "brute_force", "ivf"))


@dataclasses.dataclass
class RunConfig:
    """Everything `train` needs; written to <run>/config.json."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    generate: GenerateConfig = dataclasses.field(default_factory=GenerateConfig)
    split: SplitConfig = dataclasses.field(default_factory=SplitConfig)
    text: TextConfig = dataclasses.field(default_factory=TextConfig)
    retrieval: RetrievalConfig = dataclasses.field(default_factory=RetrievalConfig)
    ranking: RankingConfig = dataclasses.field(default_factory=RankingConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)


# --------------------------------------------------------------------------- loading


def load_config_file(path) -> dict:
    """Read a YAML or JSON config file into a dict (sections as nested dicts)."""
    path = Path(path)
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must hold a mapping, got {type(data).__name__}")
    return data


#: Fields that measurements showed useless and that were deleted, with the value that
#: meant "off": a run directory or config file that holds one at that value still loads.
RETIRED_FIELDS = {"RetrievalConfig": {"l2_regularization": 0.0, "text_only_loss_weight": 0.0,
                                      "item_id_dropout": None, "bag_of_words": False}}


def from_dict(cls, data: dict, where: str = "config"):
    """Build dataclass ``cls`` from ``data``, refusing unknown keys with a clear message."""
    if data is None:
        return cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    data = dict(data)
    for name, off in RETIRED_FIELDS.get(cls.__name__, {}).items():
        if name in data and name not in fields:
            value = data.pop(name)
            if value != off:
                raise ValueError(f"{where}: {name} = {value!r} is no longer a setting (it did not help in "
                                 f"measurements and was removed; docs/CONFIG.md lists the settings): "
                                 f"remove it (its off value was {off!r})")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = from_dict(hint, value, f"{where}.{name}")
        else:
            kwargs[name] = value
    return cls(**kwargs)


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


def differing_fields(saved: dict, current, ignore=()) -> list[str]:
    """``"field: saved X, now Y"`` for each field of ``current`` (a dataclass) whose value
    differs from ``saved`` (the same section as written to a run's JSON; a field it lacks came
    later, so the run used its default), fields in ``ignore`` aside."""
    as_json = json.loads(json.dumps(to_dict(current), default=str))
    retired = RETIRED_FIELDS.get(type(current).__name__, {})
    saved = {k: v for k, v in saved.items() if not (k in retired and v == retired[k])}
    saved = {**json.loads(json.dumps(to_dict(type(current)()), default=str)), **saved}
    return [f"{k}: saved {saved.get(k, '<absent>')!r}, now {as_json.get(k, '<absent>')!r}"
            for k in sorted(set(saved) | set(as_json))
            if k not in ignore and saved.get(k, "<absent>") != as_json.get(k, "<absent>")]


def save_config(obj, path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(to_dict(obj), indent=2, sort_keys=True, default=str) + "\n")


# --------------------------------------------------------------------------- CLI mapping


def _parse_bool(text: str) -> bool:
    low = str(text).lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def explicit_fields(args: argparse.Namespace) -> set:
    """``"section.field"`` of every setting the user gave (a flag or a --config file value)."""
    names = {k for k in vars(args) if "." in k}
    if getattr(args, "config_file", None):
        for section, values in load_config_file(args.config_file).items():
            names |= {f"{section}.{k}" for k in (values or {})}
    return names


def run_config_from(configs: dict) -> RunConfig:
    """Assemble a RunConfig from the `train` sections."""
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    return RunConfig(**{k: v for k, v in configs.items() if k in fields})


def add_arguments(parser: argparse.ArgumentParser, cls, dest_prefix: str, show_advanced: bool = True) -> int:
    """Add one flag per field of dataclass ``cls``; dest is ``<dest_prefix>.<field>``.

    Advanced fields' flags are accepted but left out of the help unless ``show_advanced``;
    returns how many advanced fields ``cls`` has."""
    advanced = 0
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if "flag" not in meta:
            continue
        dest = f"{dest_prefix}.{f.name}"
        hint = hints[f.name]
        kwargs: dict[str, Any] = {"dest": dest, "default": argparse.SUPPRESS, "help": meta["help"]}
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if "choices" in meta:
            kwargs["choices"] = meta["choices"]
        if hint is bool:
            kwargs.update(nargs="?", const=True, type=_parse_bool)
        elif hint is list or typing.get_origin(hint) is list:
            kwargs.update(nargs="+", type=meta.get("item_type") or _list_item_type(default))
        elif hint is dict:
            kwargs["type"] = json.loads
        elif hint in (int, float, str):
            kwargs["type"] = hint
        else:  # Optional[...]
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            kwargs["type"] = args[0] if args else str
        kwargs["help"] += f" (default: {default})"
        if meta.get("advanced"):
            advanced += 1
            if not show_advanced:
                kwargs["help"] = argparse.SUPPRESS
        parser.add_argument(meta["flag"], **kwargs)
        if hint is bool:  # --x / --x false / --no-x all set the same field
            parser.add_argument("--no-" + meta["flag"][2:], dest=dest, action="store_const", const=False,
                                default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return advanced


def _list_item_type(default):
    if default and isinstance(default[0], int):
        return int
    if default and isinstance(default[0], float):
        return float
    return str


def apply_arguments(obj, namespace: argparse.Namespace, dest_prefix: str):
    """Return ``obj`` with every field set on the command line replaced."""
    changes = {}
    for key, value in vars(namespace).items():
        if key.startswith(dest_prefix + "."):
            changes[key[len(dest_prefix) + 1:]] = value
    return dataclasses.replace(obj, **changes) if changes else obj
