"""Start-up: `launch.py --help`, `--cfg job` and a bad override against a minimal @hydra.main app.

The minimal app composes the same conf/ tree (so it registers the same schemas, which the tree's
options extend) and does nothing else; both run in fresh processes, alternating, in the same run.
Goal: launch.py answers in at most twice the minimal app's time.

    python bench/startup.py [--repeats 7]
"""
from __future__ import annotations

import argparse
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


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, capture_output=True, cwd=tempfile.gettempdir())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        minimal = Path(tmp) / "minimal_app.py"
        minimal.write_text(MINIMAL_APP)
        print("| case | launch.py (median s) | minimal @hydra.main app (median s) | ratio |")
        print("|---|---|---|---|")
        for case, argv in CASES.items():
            ours, base = [], []
            for _ in range(args.repeats):  # alternate, so both see the same load
                ours.append(wall([sys.executable, str(REPO_ROOT / "launch.py"), *argv]))
                base.append(wall([sys.executable, str(minimal), *argv]))
            a, b = statistics.median(ours), statistics.median(base)
            print(f"| {case} | {a:.2f} | {b:.2f} | {a / b:.2f}x |")


if __name__ == "__main__":
    main()
