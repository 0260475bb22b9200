"""Start-up: `launch.py --help`, `--cfg job` and a bad override against a minimal @hydra.main app.

The minimal app composes the same conf/ tree (so it registers the same schemas, which the tree's
options extend) and does nothing else; both run in fresh processes, alternating, in the same run.
Goal: launch.py answers in at most twice the minimal app's time.

    python bench/startup.py [--repeats 7] [--baseline 0f3a7d0]   # also an older launch.py, same run
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

from mmc.paths import CONF_DIR, REPO_ROOT

MINIMAL_APP = f'''
import hydra
from mmc.config import register_configs

register_configs()


@hydra.main(config_path={str(CONF_DIR)!r}, config_name="config", version_base="1.3")
def main(cfg):
    pass


main()
'''
CASES = {"--help": ["--help"], "--cfg job": ["--cfg", "job"], "bad override": ["search.strategyy=greedy"]}


def wall(cmd: list[str], repo: Path = REPO_ROOT) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, capture_output=True, cwd=tempfile.gettempdir(), env={**os.environ, "PYTHONPATH": str(repo)})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--baseline", help="a git revision whose launch.py is timed too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        minimal = Path(tmp) / "minimal_app.py"
        minimal.write_text(MINIMAL_APP)
        old = Path(tmp) / "baseline"
        if args.baseline:
            subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", str(old), args.baseline],
                           check=True, capture_output=True)
        try:
            print(f"load average {os.getloadavg()[0]:.1f}; medians of {args.repeats} runs, alternating")
            print("| case | launch.py (s) | minimal @hydra.main app (s) | ratio |"
                  + (f" launch.py at {args.baseline} (s) | ratio |" if args.baseline else ""))
            print("|---|---|---|---|" + ("---|---|" if args.baseline else ""))
            for case, argv in CASES.items():
                ours, base, older = [], [], []
                for _ in range(args.repeats):  # alternate, so all see the same load
                    ours.append(wall([sys.executable, str(REPO_ROOT / "launch.py"), *argv]))
                    base.append(wall([sys.executable, str(minimal), *argv]))
                    if args.baseline:
                        older.append(wall([sys.executable, str(old / "launch.py"), *argv], old))
                a, b = statistics.median(ours), statistics.median(base)
                extra = f" {statistics.median(older):.2f} | {statistics.median(older) / b:.2f}x |" if older else ""
                print(f"| {case} | {a:.2f} | {b:.2f} | {a / b:.2f}x |{extra}")
        finally:
            if args.baseline:
                subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(old)], check=False)


if __name__ == "__main__":
    main()
