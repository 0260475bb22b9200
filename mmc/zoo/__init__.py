"""The offline default pool: families of tiny causal LMs trained here on the builtin corpus (see build.py)."""
from mmc.zoo.build import build_zoo, config_hash

__all__ = ["build_zoo", "config_hash"]
