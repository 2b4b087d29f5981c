"""Multi-scenario ranking: shared-bottom (default), STAR, MMoE and PLE behind one model.

Public API::

    build_ranking_model(train: Tables, cfg: RankingConfig, extra_features=None) -> RankingModel
    train_ranking(split, cfg, run_dir, feature_hook=None, ...) -> RankingResult(model, history, info)
    evaluate_ranking(split, cfg, run_dir, feature_hook=None, ...) -> dict
    format_ranking_table(results) -> str
    plot_ranking(results, out_dir) -> list[Path]
    load_ranking(run_dir) -> RankingModel
    retrieval_feature_hook(retrieval_model, train) / text_embedding_hook(encoder)  -> feature_hook
    UserHistoryAffinity / build_history_affinity(split, text_cfg)  -> feature_hook (history.py)
    combined_hook(*hooks) -> feature_hook
"""

from tfrs_multiscene.ranking.evaluate import evaluate_ranking, format_ranking_table, plot_ranking  # noqa: F401
from tfrs_multiscene.ranking.features import combined_hook, retrieval_feature_hook, text_embedding_hook  # noqa: F401
from tfrs_multiscene.ranking.history import UserHistoryAffinity, build_history_affinity  # noqa: F401
from tfrs_multiscene.ranking.model import RankingModel, build_ranking_model, ranking_loss  # noqa: F401
from tfrs_multiscene.ranking.train import RankingResult, load_ranking, train_ranking  # noqa: F401

__all__ = ["RankingModel", "RankingResult", "UserHistoryAffinity", "build_history_affinity", "build_ranking_model",
           "combined_hook", "evaluate_ranking", "format_ranking_table", "load_ranking", "plot_ranking", "ranking_loss",
           "retrieval_feature_hook", "text_embedding_hook", "train_ranking"]
