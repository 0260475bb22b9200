"""The paper-scale run, end to end: `python launch.py pool=synthetic pool.n_models=71 pool.n_texts=10000`.

Times this checkout's launch.py against a baseline revision's (checked out into a temporary git
worktree), alternating, each in a fresh process with its own MLflow store (created by an untimed first
run: a fresh store's migrations are a one-off cost), in the same run: wall time and the CPU time of the
run's processes (ours forks its analysis while MLflow loads, and the analysis its parts, so its CPU exceeds its
wall); then breaks our run down by stage with cProfile (analysis in place). Goal: at most 10 s on 2 cores.

    python bench/paper_scale.py [--baseline 0f3a7d0] [--repeats 3] [--profile]
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mmc import background
from mmc.paths import REPO_ROOT

RUN = ["pool=synthetic", "pool.n_models=71", "pool.n_texts=10000"]
STAGES = {  # function -> label, for the breakdown of our run (everything in place: no fork)
    "job.py:run": "the job (after start-up)",
    "analysis.py:analyze": "analysis",
    "analysis.py:searched": "the pool's search",
    "analysis.py:with_fits": "the pool's fits (lmfit's import included)",
    "analysis.py:pool_part": "the pool's floor tests and figures",
    "analysis.py:group_part": "family groups: searches, fits, figure",
    "analysis.py:realisable_part": "realisable ensembles: combiners, table, figure",
    "analysis.py:uncertainty_part": "bootstrap, held-out, extrapolation",
    "plots.py:png": "rendering figures (all, inside the parts above)",
    "artifacts.py:log_analysis": "logging the analysis to MLflow",
}


def timed_run(repo: Path, store: Path) -> tuple[float, float]:
    """(wall s, CPU s of the run's processes, user + system)."""
    cmd = [sys.executable, str(repo / "launch.py"), *RUN, f"tracking.uri=sqlite:///{store}/mlflow.db",
           f"hydra.run.dir={store}/run"]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=store, env=env)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{repo}: launch.py failed:\n{proc.stderr[-3000:]}")
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def profile_ours(store: Path) -> None:
    """Our run in this process under cProfile, its matrix analysis in place (not forked) so that it is seen."""
    background.FORK = False
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
            loads = [os.getloadavg()[0]]
            for _ in range(args.repeats):  # alternate: both see the same load
                for repo, times in ((REPO_ROOT, ours), (base, theirs)):
                    times.append(timed_run(repo, stores[repo]))
                loads.append(os.getloadavg()[0])
            print(f"machine: {os.cpu_count()} cores; load average {min(loads):.1f}-{max(loads):.1f}; "
                  f"{args.repeats} runs each")
            print("| run | median wall s | median CPU s | all runs (wall / CPU) |\n|---|---|---|---|")
            for label, times in (("this checkout", ours), (f"baseline {args.baseline}", theirs)):
                walls, cpus = zip(*times)
                print(f"| {label} | {statistics.median(walls):.1f} | {statistics.median(cpus):.1f} | "
                      f"{', '.join(f'{w:.1f} / {c:.1f}' for w, c in times)} |")
            ratio = statistics.median(w for w, _ in ours) / statistics.median(w for w, _ in theirs)
            print(f"wall ratio: {ratio:.2f}x")
        finally:
            subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(base)], check=False)
        if args.profile:
            store = Path(tmp) / "profile"
            store.mkdir()
            profile_ours(store)


if __name__ == "__main__":
    main()
