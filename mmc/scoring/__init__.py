"""Exact text-level scoring: the schema (config.py, light), the engine (engine.py, windows.py), the cache
(cache.py) and the pool stage (stage.py: score_pool, cached_loss_matrix). Import the heavy modules directly."""
