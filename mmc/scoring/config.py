"""The scoring schema and the names it accepts (light: read at start-up, before torch loads)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from mmc.errors import MMCError
from mmc.registry import choices

DEVICES = ("auto", "cpu", "cuda", "mps")  # auto: cuda, else mps, else cpu
DTYPES = ("auto", "float32", "bfloat16", "float16")  # auto: bfloat16 on GPUs that support it, else float32


@dataclass
class ScoringConfig:
    """Exact text-level NLL of every text, cached per (model, dtype, attention, window, stride, prefix token, text)."""

    device: str = field(default="auto", metadata=choices(DEVICES))
    dtype: str = field(default="auto", metadata=choices(DTYPES))
    batch_tokens: Optional[int] = None  # padded tokens per forward pass; null: 1024 on CPU, 16384 on GPUs; halved on OOM
    window: Optional[int] = None  # tokens per forward pass; null: the model's context length
    # tokens the window advances by; null: window // 2 (each window sees window - stride tokens of context);
    # = window: lm-evaluation-harness's disjoint windows
    stride: Optional[int] = None
    prefix_token: Optional[str] = None  # only for tokenizers with neither BOS nor EOS
    force: bool = False  # rescore even what the cache holds
    cache_dir: Optional[str] = None  # null: <mmc cache>/scores
    chunk_texts: int = 256  # texts per cache file: a killed run loses at most one chunk
    device_map: Optional[str] = None  # e.g. auto (accelerate) for models larger than one GPU
    attn_implementation: str = "sdpa"  # where the architecture has none, transformers' default (recorded per model)
    # keep every token's NLL and byte span too (token_losses.parquet); null: on for the zoo and tiny_random
    # pools, off for the others (mmc.pool.token_losses)
    token_losses: Optional[bool] = None
    compile: bool = False  # torch.compile the model (dynamic shapes)
    # torch CPU threads while scoring; null: torch's default, one per core. Several CPU jobs on one machine (a
    # local_parallel sweep, two runs at once): give each cores // jobs, since oversubscribed cores score tiny
    # models 25-60x slower (bench/threads.py, docs/benchmarks.md)
    threads: Optional[int] = None

    def check(self, path: str) -> None:
        for key in ("batch_tokens", "window", "stride", "chunk_texts", "threads"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise MMCError(f"{path}.{key}={value}; use a positive number" + ("" if key == "chunk_texts" else
                                                                                   " or null for the default"))
