"""The paper-scale run, end to end: `python launch.py pool=synthetic pool.n_models=71 pool.n_texts=10000`.

Times this checkout's launch.py against a baseline revision's (checked out into a temporary git
worktree), alternating, each in a fresh process with its own MLflow store (created by an untimed first
run: a fresh store's migrations are a one-off cost), in the same run; then
breaks our run down by stage with cProfile. Goal: at most 10 s on 2 cores.

    python bench/paper_scale.py [--baseline 0f3a7d0] [--repeats 3] [--profile]
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mmc.paths import REPO_ROOT

RUN = ["pool=synthetic", "pool.n_models=71", "pool.n_texts=10000"]
STAGES = {  # function -> label, for the breakdown of our run
    "launch.py:run": "the job (after start-up)",
    "analysis.py:analyze": "analysis",
    "analysis.py:oracle_search": "searches (incl. exact checks)",
    "analysis.py:uncertainty": "bootstrap, held-out, extrapolation",
    "fit.py:fit_power_law": "power-law fits (all)",
    "plots.py:plot_frontier": "figure: frontier",
    "plots.py:plot_groups": "figure: homo vs hetero",
    "artifacts.py:log_analysis": "logging to MLflow (incl. rendering figures)",
}


def timed_run(repo: Path, store: Path) -> float:
    cmd = [sys.executable, str(repo / "launch.py"), *RUN, f"tracking.uri=sqlite:///{store}/mlflow.db",
           f"hydra.run.dir={store}/run"]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=store, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{repo}: launch.py failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def profile_ours(store: Path) -> None:
    sys.argv = [str(REPO_ROOT / "launch.py"), *RUN, f"tracking.uri=sqlite:///{store}/mlflow.db",
                f"hydra.run.dir={store}/run"]
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        exec(compile((REPO_ROOT / "launch.py").read_text(), "launch.py", "exec"), {"__name__": "__main__"})
    except SystemExit:
        pass
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    print("\n| stage (ours, under cProfile) | cumulative s |\n|---|---|")
    for key, label in STAGES.items():
        file, name = key.split(":")
        total = sum(v[3] for (f, _, n), v in stats.items() if f.endswith(file) and n == name)
        print(f"| {label} | {total:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", default="0f3a7d0", help="git revision to compare with")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", str(base), args.baseline],
                       check=True, capture_output=True)
        try:
            ours, theirs = [], []
            stores = {REPO_ROOT: Path(tmp) / "ours", base: Path(tmp) / "theirs"}
            for repo, store in stores.items():  # untimed: a fresh SQLite store's migrations are a one-off cost
                store.mkdir()
                timed_run(repo, store)
            for _ in range(args.repeats):  # alternate: both see the same load
                for repo, times in ((REPO_ROOT, ours), (base, theirs)):
                    times.append(timed_run(repo, stores[repo]))
            a, b = statistics.median(ours), statistics.median(theirs)
            print(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}; {args.repeats} runs each")
            print("| run | median s | all runs |\n|---|---|---|")
            print(f"| this checkout | {a:.1f} | {', '.join(f'{t:.1f}' for t in ours)} |")
            print(f"| baseline {args.baseline} | {b:.1f} | {', '.join(f'{t:.1f}' for t in theirs)} |")
            print(f"ratio: {a / b:.2f}x")
        finally:
            subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(base)], check=False)
        if args.profile:
            store = Path(tmp) / "profile"
            store.mkdir()
            profile_ours(store)


if __name__ == "__main__":
    main()
