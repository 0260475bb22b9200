"""The zoo's schema: families of tiny causal LMs, their sizes and the training settings.

A family's and a size's keys have no defaults: each family in conf/pool/zoo*.yaml states them all.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from omegaconf import MISSING

from mmc.data import DOMAINS
from mmc.errors import MMCError
from mmc.registry import choices
from mmc.tokenizer import KINDS as TOKENIZER_KINDS


@dataclass
class ZooSizeConfig:
    """One size of a zoo family: the model is named <family>-<name>."""

    name: str = MISSING
    hidden: int = MISSING
    layers: int = MISSING
    heads: int = MISSING
    lr: float = MISSING  # peak learning rate (warm-up, then cosine decay): wider models need lower ones
    intermediate: Optional[int] = None  # MLP width; null: 4 * hidden


@dataclass
class ZooFamilyConfig:
    """A family: one architecture, one tokenizer, one training mixture, several sizes."""

    name: str = MISSING
    arch: str = MISSING  # a transformers model_type: gpt2 | llama | gpt_neox | qwen2 | mistral | ...
    tokenizer: str = field(default=MISSING, metadata=choices(TOKENIZER_KINDS))  # trained on the mixture
    vocab_size: int = MISSING  # byte: 259 (256 bytes and 3 special tokens)
    mixture: dict[str, float] = MISSING  # weight of each builtin domain in its training data
    sizes: list[ZooSizeConfig] = MISSING
    kv_heads: Optional[int] = None  # grouped-query attention (llama, qwen2, ...); null: as many as heads


@dataclass
class ZooConfig:
    """Tiny causal LMs trained here on the builtin corpus's training split (mmc.zoo.build.build_zoo)."""

    families: list[ZooFamilyConfig] = field(default_factory=list)
    steps: int = 300  # optimiser steps per model
    batch_size: int = 8  # sequences per step
    context: int = 128  # tokens per sequence, and the models' max_position_embeddings
    tokenizer_chars: int = 400_000  # characters of its mixture each family's tokenizer trains on
    seed: int = 0
    threads: int = 1  # torch threads per model (part of the cache key: results depend on it)
    workers: Optional[int] = None  # models trained at once in separate processes; null: one per CPU core

    def check(self, path: str) -> None:
        if not self.families:
            raise MMCError(f"the zoo has no families; add some under {path}.families (see conf/pool/zoo.yaml)")
        names = [f"{f.name}-{s.name}" for f in self.families for s in f.sizes]
        if len(set(names)) != len(names):
            raise MMCError(f"duplicate zoo model names in {names}; give families and their sizes unique names")
        if min(self.steps, self.batch_size, self.context, self.threads) < 1:
            raise MMCError(f"{path}.steps, batch_size, context and threads must all be positive")
        for f in self.families:
            where = f"zoo family {f.name!r}"
            if not f.sizes:
                raise MMCError(f"{where} has no sizes; list at least one under its `sizes`")
            bad = sorted(set(f.mixture) - set(DOMAINS))
            if bad or not f.mixture or min(f.mixture.values()) < 0 or sum(f.mixture.values()) <= 0:
                raise MMCError(f"{where}: mixture {dict(f.mixture)} needs non-negative weights over "
                               f"{', '.join(DOMAINS)}, not all zero")
            for s in f.sizes:
                if s.hidden % s.heads or s.heads % (f.kv_heads or s.heads):
                    raise MMCError(f"{where} size {s.name!r}: heads ({s.heads}) must divide hidden ({s.hidden}) "
                                   f"and be a multiple of kv_heads ({f.kv_heads})")
