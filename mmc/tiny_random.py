"""Tiny random-initialised causal LMs of several architectures: for plumbing tests and throughput benchmarks.

Their losses mean nothing (runs using them are tagged random); their shapes, tokenizers and loading path
are those of real models. Built once per config and saved with save_pretrained under the cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mmc.errors import MMCError
from mmc.models import ModelSpec, count_params
from mmc.registry import check_node, choices
from mmc.synthetic import synthetic_texts
from mmc.tokenizer import KINDS as TOKENIZER_KINDS
from mmc.tokenizer import train_tokenizer

ARCHITECTURES = ("gpt2", "llama", "gpt_neox", "qwen2", "mistral", "phi", "gemma")
BOS_MODES = ("token", "none", "template")
_VERSION = 1  # bump when the models built for the same config change


@dataclass
class TinyRandomConfig:
    """Random-initialised tiny causal LMs, one per (architecture, width): plumbing tests and benchmarks."""

    architectures: list[str] = field(default_factory=lambda: ["gpt2", "llama", "gpt_neox", "qwen2"],
                                     metadata=choices(ARCHITECTURES))
    widths: list[int] = field(default_factory=lambda: [32, 64])  # hidden sizes
    n_layers: int = 2
    context: int = 256  # max_position_embeddings
    vocab_size: int = 512
    tokenizer: str = field(default="bpe", metadata=choices(TOKENIZER_KINDS))  # mmc.tokenizer
    # token: a BOS token | none: EOS only | template: the tokenizer prepends BOS itself
    bos: str = field(default="token", metadata=choices(BOS_MODES))
    seed: int = 0

    def check(self, path: str) -> None:
        if any(w < 32 or w % 16 for w in self.widths):
            raise MMCError(f"{path}.widths {self.widths} must be multiples of 16, at least 32")


def _model_config(arch: str, width: int, cfg: TinyRandomConfig, tokenizer):
    from transformers import AutoConfig

    heads = max(2, width // 16)
    return AutoConfig.for_model(
        arch, vocab_size=len(tokenizer), hidden_size=width, num_hidden_layers=cfg.n_layers,
        num_attention_heads=heads, num_key_value_heads=max(1, heads // 2), head_dim=width // heads,
        intermediate_size=4 * width, max_position_embeddings=cfg.context, tie_word_embeddings=arch != "gpt_neox",
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )


def build_tiny_random(cfg: TinyRandomConfig, cache_dir: Path) -> list[ModelSpec]:
    """One model per (architecture, width), saved under cache_dir/tiny_random-<config hash>/<name>, reused."""
    check_node(cfg, "pool.tiny_random")
    key = hashlib.sha256(json.dumps([_VERSION, asdict(cfg)], sort_keys=True).encode()).hexdigest()[:12]
    root = Path(cache_dir) / f"tiny_random-{key}"
    tokenizer = None
    specs = []
    for i, (arch, width) in enumerate((a, w) for a in cfg.architectures for w in cfg.widths):
        name = f"{arch}-w{width}-l{cfg.n_layers}"
        path = root / name
        if not (path / "config.json").is_file():
            if tokenizer is None:  # one tokenizer for the pool, trained only when something is built
                tokenizer = train_tokenizer(synthetic_texts(400, cfg.seed), cfg.vocab_size, cfg.tokenizer,
                                            add_bos=cfg.bos != "none", bos_in_template=cfg.bos == "template")
                tokenizer.model_max_length = cfg.context
            _build(_model_config(arch, width, cfg, tokenizer), tokenizer, cfg.seed + i, path)
        specs.append(ModelSpec(name=name, family=arch, source=str(path), params=_saved_params(path)))
    return specs


def _build(config, tokenizer, seed: int, path: Path) -> None:
    """Initialise, count and save atomically (temp dir + rename), so a concurrent reader never sees half a model."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "mmc_params.json").write_text(json.dumps({"total": count_params(model)}))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, path)
    except OSError:  # another process built the same model first: identical, keep theirs
        shutil.rmtree(tmp, ignore_errors=True)


def _saved_params(path: Path) -> int:
    return int(json.loads((path / "mmc_params.json").read_text())["total"])
