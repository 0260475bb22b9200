"""Train one zoo model: a transformers causal LM from a config, on random windows of a domain mixture."""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import trange

from mmc.models import count_params
from mmc.zoo.config import ZooConfig, ZooFamilyConfig, ZooSizeConfig

INFO_FILE = "mmc_zoo.json"  # written last: a model directory without it is incomplete


def model_config(family: ZooFamilyConfig, size: ZooSizeConfig, context: int, tokenizer):
    from transformers import AutoConfig

    return AutoConfig.for_model(
        family.arch, vocab_size=len(tokenizer), hidden_size=size.hidden, num_hidden_layers=size.layers,
        num_attention_heads=size.heads, num_key_value_heads=family.kv_heads or size.heads,
        head_dim=size.hidden // size.heads, intermediate_size=size.intermediate or 4 * size.hidden,
        max_position_embeddings=context, tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )


def batches(streams: dict[str, np.ndarray], mixture: dict[str, float], cfg: ZooConfig):
    """`cfg.steps` batches (batch_size, context + 1) of token windows; each row's domain drawn from the mixture."""
    g = torch.Generator().manual_seed(cfg.seed)
    domains = sorted(mixture)
    weights = torch.tensor([mixture[d] for d in domains], dtype=torch.float64)
    tokens = {d: torch.from_numpy(streams[d]) for d in domains}
    offsets = torch.arange(cfg.context + 1)
    for _ in range(cfg.steps):
        rows = torch.multinomial(weights, cfg.batch_size, replacement=True, generator=g)
        batch = torch.empty(cfg.batch_size, cfg.context + 1, dtype=torch.long)
        for i, d in enumerate(domains):
            where = (rows == i).nonzero().squeeze(1)
            starts = torch.randint(0, len(tokens[d]) - cfg.context - 1, (len(where),), generator=g)
            batch[where] = tokens[d][starts[:, None] + offsets]
        yield batch


def lr_at(step: int, steps: int, peak: float) -> float:
    """Linear warm-up over the first 10 % of steps, then cosine decay to 10 % of the peak."""
    warmup = max(1, steps // 10)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


def train_model(family: ZooFamilyConfig, size: ZooSizeConfig, cfg: ZooConfig, streams: dict[str, np.ndarray],
                tokenizer_dir: Path, out: Path, show_progress: bool = True) -> None:
    """Train one model and save it (with its tokenizer) to `out` atomically: temp dir, then rename."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        torch.manual_seed(cfg.seed)
        model = AutoModelForCausalLM.from_config(model_config(family, size, cfg.context, tokenizer))
        optimizer = torch.optim.AdamW(model.parameters(), lr=size.lr, betas=(0.9, 0.95), weight_decay=0.1)
        model.train()
        start, recent = time.time(), []
        steps = trange(cfg.steps, desc=f"{family.name}-{size.name}", leave=False, disable=not show_progress)
        for step, batch in zip(steps, batches(streams, family.mixture, cfg)):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, cfg.steps, size.lr)
            logits = model(input_ids=batch[:, :-1]).logits
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            recent = (recent + [loss.item()])[-20:]
            steps.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        info = {"params": count_params(model), "train_loss_last20": float(np.mean(recent)),
                "train_seconds": round(time.time() - start, 2), "steps": cfg.steps}
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / INFO_FILE).write_text(json.dumps(info))
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(tmp, out)
        except OSError:  # another process finished the same model first: identical, keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        torch.set_num_threads(threads)
