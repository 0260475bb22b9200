"""The offline default pool: families of tiny causal LMs trained here on the builtin corpus.

config.py is the schema (light, read at start-up); build.py trains and caches the models (torch).
"""
