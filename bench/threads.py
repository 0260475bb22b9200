"""Scoring with torch's default threads vs `scoring.threads=1`, on the machine as it is and beside a busy process.

    python bench/threads.py [--repeats 3]

A tiny model (the smoke zoo's size: width 32, 2 layers) and a GPT-2-config ~4M-parameter one score the same
synthetic texts on CPU; each measurement runs in a fresh spawned process with `torch.set_num_threads(n)`. The
competitor is a process busy on one core (pure Python), as a second job or a test worker is; the ratios are
against the default threads in the same condition, in the same run.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time

import torch

from mmc.models import ModelSpec, load_model
from mmc.paths import cache_root
from mmc.scoring.config import ScoringConfig
from mmc.scoring.engine import score_texts
from mmc.synthetic import synthetic_texts
from mmc.tiny_random import TinyRandomConfig, build_tiny_random

MODELS = {"tiny (width 32, 2 layers)": dict(widths=[32], n_layers=2, context=64, vocab_size=320),
          "gpt2 ~4M (width 256, 4 layers)": dict(widths=[256], n_layers=4, context=256, vocab_size=4096)}


def timed_scoring(source: str, threads: int, texts: list[str], out: mp.Queue) -> None:
    torch.set_num_threads(threads)
    model, tokenizer = load_model(ModelSpec(name="bench", family="bench", source=source))
    start = time.perf_counter()
    scored = score_texts(model, tokenizer, texts, ScoringConfig(device="cpu"), progress=False)
    out.put((time.perf_counter() - start, int(scored.n_tokens.sum())))


def busy() -> None:
    while True:
        pass


def measure(source: str, threads: int, texts: list[str]) -> tuple[float, int]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=timed_scoring, args=(source, threads, texts, out))
    proc.start()
    result = out.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--texts", type=int, default=60)
    args = parser.parse_args()
    texts = synthetic_texts(args.texts, seed=1)
    default = torch.get_num_threads()
    print(f"cores: {os.cpu_count()}, torch default threads: {default}, load average: {os.getloadavg()}")
    print("| model | condition | threads | median s | tokens/s | vs default threads |")
    print("|---|---|---|---|---|---|")
    for label, config in MODELS.items():
        source = build_tiny_random(TinyRandomConfig(architectures=["gpt2"], **config), cache_root() / "bench")[0].source
        for condition in ("as the machine is", "plus a busy process"):
            competitor = None
            if condition != "as the machine is":
                competitor = mp.get_context("spawn").Process(target=busy, daemon=True)
                competitor.start()
            medians = {}
            for threads in sorted({default, 1}, reverse=True):
                runs = [measure(source, threads, texts) for _ in range(args.repeats)]
                medians[threads] = statistics.median(s for s, _ in runs)
                tokens = runs[0][1]
                print(f"| {label} | {condition} | {threads} | {medians[threads]:.2f} | {tokens / medians[threads]:,.0f} "
                      f"| {medians[threads] / medians[default]:.2f}x |", flush=True)
            if competitor is not None:
                competitor.terminate()


if __name__ == "__main__":
    main()
