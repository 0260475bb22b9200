"""Shared fixtures. Tiny random models are built once per session in a temp dir (never in ~/.cache)."""
from __future__ import annotations

import os

# One torch thread per test process (and the launch.py processes tests start, which inherit it): pytest -n 2 on
# two cores with torch's default of a thread per core oversubscribes them, and tiny models then score ~100x slower
# (OpenMP threads wait for descheduled peers at every op).
os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

from mmc.models import load_model  # noqa: E402
from mmc.tiny_random import TinyRandomConfig, build_tiny_random  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    """Every test gets its own mmc cache, so nothing leaks into the user's cache or between tests."""
    monkeypatch.setenv("MMC_CACHE_DIR", str(tmp_path / "mmc_cache"))


@pytest.fixture(scope="session")
def tiny_specs(tmp_path_factory):
    """tiny_specs(architectures, bos="token", **config) -> list[ModelSpec] of tiny random models (context 64)."""
    root = tmp_path_factory.mktemp("tiny_random")

    def build(architectures=("gpt2",), bos="token", **overrides):
        cfg = TinyRandomConfig(architectures=list(architectures), widths=[32], n_layers=2, context=64,
                               vocab_size=320, bos=bos, **overrides)
        return build_tiny_random(cfg, root)

    return build


@pytest.fixture(scope="session")
def tiny_model(tiny_specs):
    """tiny_model(architecture, bos="token") -> (model, tokenizer), float32 on CPU, loaded with from_pretrained."""
    loaded = {}

    def get(architecture="gpt2", bos="token"):
        if (architecture, bos) not in loaded:
            (spec,) = tiny_specs([architecture], bos)
            loaded[architecture, bos] = load_model(spec)
        return loaded[architecture, bos]

    return get
