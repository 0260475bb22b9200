"""Exact text-level scoring: the engine (score_texts) and the cached pool stage (score_pool, cached_loss_matrix)."""
from mmc.scoring.engine import score_texts
from mmc.scoring.stage import cached_loss_matrix, score_pool

__all__ = ["score_texts", "score_pool", "cached_loss_matrix"]
