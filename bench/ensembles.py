"""Realisable ensembles at the paper's scale: `launch.py pool=synthetic pool.n_models=71 pool.n_texts=10000
search=pareto_prune ensemble=<option>` for every option, alternating, each in a fresh process with its own
MLflow store (created by an untimed first run), in the same run; goal: knn_router within 2x of oracle.
Then the knn router's text comparison alone (hashed byte n-gram TF-IDF, nearest training texts) against
scikit-learn's HashingVectorizer + TfidfTransformer + NearestNeighbors on the same texts, when installed.

    python bench/ensembles.py [--repeats 3] [--options oracle knn_router mixture domain_router]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mmc.ensemble.routers import NGRAMS, nearest_training_texts
from mmc.ensemble.split import split_texts
from mmc.paths import REPO_ROOT
from mmc.synthetic import synthetic_domain_texts, synthetic_loss_matrix

RUN = ["pool=synthetic", "pool.n_models=71", "pool.n_texts=10000", "search=pareto_prune"]


def timed_run(store: Path, option: str) -> float:
    cmd = [sys.executable, str(REPO_ROOT / "launch.py"), *RUN, f"ensemble={option}",
           f"tracking.uri=sqlite:///{store}/mlflow.db", f"hydra.run.dir={store}/run"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=store)
    if proc.returncode != 0:
        raise SystemExit(f"ensemble={option}: launch.py failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def sklearn_neighbours(texts, train, evaluation, k):
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
    from sklearn.neighbors import NearestNeighbors

    as_bytes = [t.encode("utf-8").decode("latin-1") for t in texts]  # one character per byte: byte n-grams
    counts = HashingVectorizer(analyzer="char", ngram_range=(min(NGRAMS), max(NGRAMS)), n_features=2**18,
                               alternate_sign=False, norm=None, lowercase=False).transform(as_bytes)
    vectors = TfidfTransformer().fit(counts[train]).transform(counts)
    index = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(vectors[train])
    return index.kneighbors(vectors[evaluation], return_distance=False)


def text_comparison(k: int = 10) -> None:
    lm = synthetic_loss_matrix(71, 10000)
    texts = synthetic_domain_texts(lm.domains)
    split = split_texts(lm.domains, 0.5, 0)
    start = time.perf_counter()
    ours = nearest_training_texts(texts, split.train, split.evaluation, k)
    ours_s = time.perf_counter() - start
    same = lambda nb: (lm.domains[split.train][nb] == lm.domains[split.evaluation][:, None]).mean()
    print(f"\n| knn text comparison (10,000 texts, k={k}) | s | neighbours of the same domain |\n|---|---|---|")
    print(f"| mmc: {len(NGRAMS)} n-gram lengths hashed into dense buckets, BLAS similarities | {ours_s:.2f} | "
          f"{same(ours):.3f} |")
    try:
        start = time.perf_counter()
        theirs = sklearn_neighbours(texts, split.train, split.evaluation, k)
        print(f"| scikit-learn HashingVectorizer(char {min(NGRAMS)}-{max(NGRAMS)}, 2^18) + TfidfTransformer + "
              f"NearestNeighbors(cosine, brute) | {time.perf_counter() - start:.2f} | {same(theirs):.3f} |")
        overlap = np.mean([len(set(a) & set(b)) / k for a, b in zip(ours, theirs)])
        print(f"shared neighbours, ours vs scikit-learn's: {overlap:.3f}")
    except ImportError:
        print("(scikit-learn not installed: no comparison)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--options", nargs="+", default=["oracle", "knn_router", "mixture", "domain_router"])
    args = parser.parse_args()
    times = {option: [] for option in args.options}
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp)
        timed_run(store, args.options[0])  # untimed: a fresh SQLite store's migrations are a one-off cost
        for _ in range(args.repeats):
            for option in args.options:  # alternate: every option sees the same load
                times[option].append(timed_run(store, option))
    base = statistics.median(times[args.options[0]])
    print(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}; {args.repeats} runs each; "
          f"`python launch.py {' '.join(RUN)} ensemble=<option>`")
    print(f"| ensemble | median s | all runs | vs {args.options[0]} |\n|---|---|---|---|")
    for option, values in times.items():
        median = statistics.median(values)
        print(f"| {option} | {median:.1f} | {', '.join(f'{t:.1f}' for t in values)} | {median / base:.2f}x |")
    text_comparison()


if __name__ == "__main__":
    main()
