"""Scoring throughput and agreement: mmc's engine vs a per-text loop vs lm-eval's loglikelihood_rolling.

    python bench/scoring.py [--quick]          # CPU: GPT-2-config model (~4M params), mixed-length texts
    python bench/scoring.py --device cuda      # GPU: Llama-config ~1B params, bf16, 128k vocab, ~2000 texts
    python bench/scoring.py --token-losses     # CPU: the scoring stage with and without token losses, alternated

Every method runs in its own spawned process (peak memory is per method) on the same model and texts,
with the same window; lm-eval's disjoint windows are the engine's stride = window.
"""
from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mmc.data import Corpus, text_id
from mmc.paths import cache_root
from mmc.models import ModelSpec, count_params, load_model
from mmc.scoring.config import ScoringConfig
from mmc.scoring.engine import CPU_BATCH_TOKENS, GPU_BATCH_TOKENS, padding_fraction, score_sequences
from mmc.scoring.windows import plan_windows, tokenise, tokenise_with_spans
from mmc.synthetic import synthetic_texts
from mmc.tiny_random import TinyRandomConfig, build_tiny_random

WINDOW = 256


def cpu_model() -> str:
    cfg = TinyRandomConfig(architectures=["gpt2"], widths=[256], n_layers=4, context=WINDOW, vocab_size=4096)
    return build_tiny_random(cfg, cache_root() / "bench")[0].source


def gpu_model(device):
    """Random Llama-config model of ~1.2B parameters with a 128k vocabulary, in bf16 (built in memory)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from mmc.tokenizer import train_tokenizer

    tokenizer = train_tokenizer(synthetic_texts(2000), 8192, "bpe")
    config = AutoConfig.for_model("llama", vocab_size=128256, hidden_size=2048, intermediate_size=8192,
                                  num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                                  max_position_embeddings=2048, tie_word_embeddings=True,
                                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16, attn_implementation="sdpa")
    return model.to(device).eval(), tokenizer


def per_text_loop(model, tokenizer, texts, window):
    """The straightforward baseline: one text at a time, one model(input_ids) per window (lm-eval's windows)."""
    seqs = tokenise(tokenizer, texts)
    nll = np.zeros(len(texts))
    with torch.inference_mode():
        for i, seq in enumerate(seqs):
            w = plan_windows(np.array([len(seq) - 1]), window, window)
            for begin, end, n in zip(w.begin, w.end, w.n_scored):
                ids = torch.from_numpy(seq[begin:end + 1]).to(model.device)
                logp = torch.log_softmax(model(ids[None, :-1]).logits[0, -n:].float(), -1)
                nll[i] -= logp.gather(1, ids[-n:, None]).sum().item()
    return nll


def lm_eval_rolling(model, tokenizer, texts, window, batch_size):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, max_length=window,
              device=str(model.device))
    requests = [Instance("loglikelihood_rolling", {}, (t,), i) for i, t in enumerate(texts)]
    return -np.array(lm.loglikelihood_rolling(requests, disable_tqdm=True))


def engine(model, tokenizer, texts, window, stride, batch_tokens, compile=False):
    seqs = tokenise(tokenizer, texts)
    return score_sequences(model, seqs, window, stride, batch_tokens, compile=compile).nll


def stage(model, tokenizer, texts, window, token_losses, source):
    """The whole scoring stage on an empty cache: load, tokenise (with offsets and byte spans for token losses),
    score, write the cache; with token losses, also every token's NLL and span read back from it."""
    from mmc.scoring.stage import score_pool

    corpus = Corpus(ids=[text_id(t) for t in texts], texts=texts, domains=["all"] * len(texts))
    with tempfile.TemporaryDirectory() as cache:
        cfg = ScoringConfig(device="cpu", window=window, stride=window, cache_dir=cache, token_losses=token_losses)
        scores = score_pool([ModelSpec("bench", "bench", source)], corpus, cfg)
        if token_losses:
            scores.token_losses.model(0)
        return scores.matrix.nll[0]


def _run(method, kwargs, source, texts, device, queue):
    """Child process: load, time one method, report NLL, seconds and peak memory."""
    if device == "cpu":
        model, tokenizer = load_model(ModelSpec("bench", "bench", source), dtype=kwargs.pop("dtype", torch.float32))
    else:
        model, tokenizer = gpu_model(device)
    if kwargs.get("compile"):
        globals()[method](model, tokenizer, texts[:32], **kwargs)  # warm-up: compilation is not timed
    t0, cpu0 = time.perf_counter(), time.process_time()
    nll = globals()[method](model, tokenizer, texts, **kwargs)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - cpu0
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    queue.put((np.asarray(nll, dtype=np.float64), seconds, peak, count_params(model), cpu_seconds))


def measure(method, kwargs, source, texts, device):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=_run, args=(method, dict(kwargs), source, texts, device, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def lm_eval_padding(window_lengths: np.ndarray, batch_size: int) -> float:
    """lm-eval batches windows in request order, `batch_size` at a time, padded to the longest."""
    padded = sum(window_lengths[i:i + batch_size].max() * len(window_lengths[i:i + batch_size])
                 for i in range(0, len(window_lengths), batch_size))
    return 1 - window_lengths.sum() / padded


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer texts")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="GPU peak dense bf16 (H100 SXM: 989)")
    parser.add_argument("--token-losses", action="store_true", help="only the stage with and without token losses")
    args = parser.parse_args()
    if args.token_losses:
        return token_losses_overhead(args.quick)

    if args.device == "cpu":
        source = cpu_model()
        _, tokenizer = load_model(ModelSpec("bench", "bench", source))
        texts = synthetic_texts(60 if args.quick else 200, seed=1, min_words=3, max_words=250)
        window = WINDOW
        methods = [
            ("per-text loop", "per_text_loop", {}),
            ("lm-eval bs=1", "lm_eval_rolling", {"batch_size": 1}),
            ("lm-eval bs=16", "lm_eval_rolling", {"batch_size": 16}),
            ("mmc stride=window, 1 window/batch", "engine", {"stride": window, "batch_tokens": 1}),
            ("mmc stride=window, batch_tokens=16*window", "engine", {"stride": window, "batch_tokens": 16 * window}),
            ("mmc stride=window, batch_tokens=16384 (GPU default)", "engine", {"stride": window, "batch_tokens": 16384}),
            ("mmc stride=window, default (1024 on CPU)", "engine", {"stride": window, "batch_tokens": None}),
            ("mmc stride=window, bf16", "engine", {"stride": window, "batch_tokens": None, "dtype": torch.bfloat16}),
            ("mmc stride=window, torch.compile", "engine", {"stride": window, "batch_tokens": None, "compile": True}),
            ("mmc default stride=window//2", "engine", {"stride": window // 2, "batch_tokens": None}),
        ]
    else:
        source, window = None, 2048
        model, tokenizer = gpu_model("cpu")
        del model
        texts = synthetic_texts(2000, seed=1, min_words=50, max_words=2000)
        methods = [
            ("lm-eval bs=auto", "lm_eval_rolling", {"batch_size": "auto"}),
            ("mmc stride=window", "engine", {"stride": window, "batch_tokens": 65536}),
            ("mmc default stride=window//2", "engine", {"stride": window // 2, "batch_tokens": 65536}),
        ]

    n_tokens = np.array([len(s) - 1 for s in tokenise(tokenizer, texts)])
    disjoint = plan_windows(n_tokens, window, window)
    one_window = n_tokens <= window
    print(f"{len(texts)} texts, {n_tokens.sum()} tokens, {(~one_window).sum()} longer than the window ({window})")
    results = {}
    for label, method, kwargs in methods:
        kwargs = {**kwargs, "window": window}
        results[label] = measure(method, kwargs, source, texts, args.device)
        print(f"  {label}: {results[label][1]:.1f} s", flush=True)

    reference_label = "lm-eval bs=1" if args.device == "cpu" else "lm-eval bs=auto"
    reference = results[reference_label][0]
    loop_seconds = results.get("per-text loop", results[reference_label])[1]
    lm16_seconds = results.get("lm-eval bs=16", results[reference_label])[1]
    print("\n| method | s | texts/s | tokens/s | GFLOP/s | padding | peak MiB | vs loop | vs lm-eval bs=16 "
          "| max rel. diff vs lm-eval (1 window / longer) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, (nll, seconds, peak, params, _) in results.items():
        stride = next(k for l, _, k in methods if l == label).get("stride", window)
        if label.startswith("lm-eval"):
            padding = lm_eval_padding(disjoint.length, 1 if label.endswith("bs=1") else 16) if "auto" not in label else math.nan
        elif label.startswith("mmc"):
            budget = next(k for l, _, k in methods if l == label)["batch_tokens"]
            default = CPU_BATCH_TOKENS if args.device == "cpu" else GPU_BATCH_TOKENS
            padding = padding_fraction(plan_windows(n_tokens, window, stride).length, budget or default)
        else:
            padding = 0.0
        forwarded = plan_windows(n_tokens, window, stride).length.sum()
        rel = np.abs(nll / reference - 1)
        flops = 2 * params * forwarded / seconds / 1e9
        mfu = f" (MFU {flops / 1e3 / args.peak_tflops:.1%})" if args.device == "cuda" else ""
        print(f"| {label} | {seconds:.1f} | {len(texts) / seconds:.1f} | {n_tokens.sum() / seconds:,.0f} | "
              f"{flops:.1f}{mfu} | {padding:.1%} | {peak / 2**20:,.0f} | {loop_seconds / seconds:.2f}x | "
              f"{lm16_seconds / seconds:.2f}x | {rel[one_window].max():.1e} / "
              f"{rel[~one_window].max() if (~one_window).any() else 0:.1e} |")
    print(f"\nparams: {results[reference_label][3]:,}; torch threads: {torch.get_num_threads()}; "
          f"GFLOP/s = 2 x params x forwarded tokens / s")


def token_losses_overhead(quick: bool, repeats: int = 5):
    """The scoring stage with token losses against without, alternated in fresh processes, same texts and model:
    wall and CPU seconds (the process's user + system time, steadier than wall time on a shared machine)."""
    source = cpu_model()
    texts = synthetic_texts(60 if quick else 200, seed=1, min_words=3, max_words=250)
    times = {False: [], True: []}
    for _ in range(repeats):
        for token_losses in (False, True):
            _, wall, _, _, cpu = measure("stage", {"window": WINDOW, "token_losses": token_losses, "source": source},
                                         source, texts, "cpu")
            times[token_losses].append((wall, cpu))
            print(f"  token_losses={token_losses}: {wall:.2f} s wall, {cpu:.2f} s CPU "
                  f"(load average {os.getloadavg()[0]:.1f})", flush=True)
    for k, what in enumerate(("wall", "CPU")):
        without, with_tokens = (np.array([t[k] for t in times[on]]) for on in (False, True))
        print(f"{what}: median without {np.median(without):.2f} s, with token losses {np.median(with_tokens):.2f} s, "
              f"ratio of medians {np.median(with_tokens) / np.median(without):.3f}x, median of the pairs' ratios "
              f"{np.median(with_tokens / without):.3f}x (pairs: {', '.join(f'{r:.2f}' for r in with_tokens / without)})")
    # What token losses add, timed alone (best of 5, steady even on a loaded machine): offsets and byte spans at
    # tokenisation; the token NLLs themselves are computed either way.
    _, tokenizer = load_model(ModelSpec("bench", "bench", source))
    best = lambda f: min(_seconds(f) for _ in range(5))
    plain, spans = best(lambda: tokenise(tokenizer, texts)), best(lambda: tokenise_with_spans(tokenizer, texts))
    print(f"tokenise {plain:.3f} s, with byte spans {spans:.3f} s: {spans - plain:.3f} s more, "
          f"{(spans - plain) / np.median([t[1] for t in times[False]]):.1%} of the stage's median CPU time")


def _seconds(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
