"""Choice scoring throughput: mmc's context-sharing engine vs the same engine without sharing vs lm-eval's
HFLM.loglikelihood, on the same items, model and window, alternated in one process.

    python bench/choices.py [--repeats 3] [--items 300] [--threads 1]

Two sets of 4-choice items: the built-in tasks (`dataset=choices_builtin`: contexts of at most 80 characters,
choices of 4 words) and long contexts (synthetic passages of ~600 characters with four ~50-character choices,
lm-eval's HellaSwag shape). Without sharing: the same engine (mmc.scoring.continuations) given every
(context, choice) pair as an item of its own, so each context runs once per choice (the sets fit the window: nothing is truncated). lm-eval: HFLM loads the
saved model from its directory, add_bos_token=True (our prefix convention), batch size 16 (and 1). Every method
tokenises its own pairs inside the timing. Each repetition runs every method once, in turn; the table gives
medians and each method's median ratio to lm-eval bs=16 over the repetitions.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch

from mmc.models import ModelSpec, load_model
from mmc.scoring.config import ScoringConfig
from mmc.scoring.choices import score_pairs
from mmc.scoring.continuations import score_continuations
from mmc.scoring.windows import encode_pairs
from mmc.synthetic import synthetic_texts
from mmc.tasks import ChoicesBuiltinDataset, load_items
from scoring import WINDOW, cpu_model  # bench/scoring.py: the same 4M-parameter GPT-2-config bench model


def builtin_items(n: int) -> list[list[tuple[str, str]]]:
    items = load_items(ChoicesBuiltinDataset(max_items=n // 3))
    return [[(c, items.delimiter + k) for k in ks] for c, ks in zip(items.contexts, items.choices)]


def long_context_items(n: int) -> list[list[tuple[str, str]]]:
    passages = synthetic_texts(n, seed=2, min_words=120, max_words=140)
    endings = synthetic_texts(4 * n, seed=3, min_words=8, max_words=10)
    return [[(p[:600].rsplit(" ", 1)[0], " " + e[:50]) for e in endings[4 * i:4 * i + 4]]
            for i, p in enumerate(passages)]


def shared(model, tokenizer, items):
    pairs = [pair for item in items for pair in item]
    return score_pairs(model, tokenizer, pairs, WINDOW, ScoringConfig())[0]


def unshared(model, tokenizer, items):
    pairs = [pair for item in items for pair in item]
    contexts, continuations = encode_pairs(tokenizer, pairs)
    assert max(len(c) + len(k) - 1 for c, k in zip(contexts, continuations)) <= WINDOW  # no truncation here
    return np.concatenate(score_continuations(model, contexts, [[k] for k in continuations], None))


def lm_eval(lm, items):
    from lm_eval.api.instance import Instance

    requests = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(p for item in items for p in item)]
    return -np.array([ll for ll, _ in lm.loglikelihood(requests, disable_tqdm=True)])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--items", type=int, default=300, help="items per set")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's); 1 is steadier while other jobs load the cores")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from lm_eval.models.huggingface import HFLM

    source = cpu_model()
    model, tokenizer = load_model(ModelSpec("bench", "bench", source), dtype=torch.float32)
    lms = {bs: HFLM(pretrained=source, batch_size=bs, add_bos_token=True, device="cpu") for bs in (16, 1)}
    methods = {"mmc, context shared": lambda items: shared(model, tokenizer, items),
               "mmc, no sharing (a pair per item)": lambda items: unshared(model, tokenizer, items),
               "lm-eval bs=16": lambda items: lm_eval(lms[16], items),
               "lm-eval bs=1": lambda items: lm_eval(lms[1], items)}
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; load average at start {os.getloadavg()}")
    for name, items in (("built-in tasks", builtin_items(args.items)), ("long contexts", long_context_items(args.items))):
        contexts, continuations = encode_pairs(tokenizer, [p for item in items for p in item])
        print(f"\n{name}: {len(items)} items, {sum(map(len, items))} pairs, context tokens (with prefix) median "
              f"{np.median([len(c) for c in contexts]):.0f}, choice tokens median "
              f"{np.median([len(k) for k in continuations]):.0f}")
        for method in methods.values():  # warm-up, untimed
            method(items[:8])
        seconds = {label: [] for label in methods}
        results = {}
        for r in range(args.repeats):
            for label, method in methods.items():
                t0 = time.perf_counter()
                results[label] = method(items)
                seconds[label].append(time.perf_counter() - t0)
            print(f"  repetition {r + 1}: " + ", ".join(f"{l} {s[-1]:.2f} s" for l, s in seconds.items())
                  + f" (load average {os.getloadavg()[0]:.1f})", flush=True)
        reference = results["lm-eval bs=16"]
        print("\n| method | median s | items/s | vs lm-eval bs=16 (median of per-repetition ratios) | max rel. diff "
              "vs lm-eval |")
        print("|---|---|---|---|---|")
        for label, s in seconds.items():
            ratio = statistics.median(b / a for a, b in zip(s, seconds["lm-eval bs=16"]))
            diff = np.abs(results[label] / reference - 1).max()
            print(f"| {label} | {statistics.median(s):.2f} | {len(items) / statistics.median(s):.1f} | {ratio:.2f}x | "
                  f"{diff:.1e} |")
    print(f"\nload average at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
