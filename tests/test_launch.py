"""End to end through `python launch.py`: config composition, the MLflow contract, sweeps, reruns, bad input."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

from mmc.config import register_configs
from mmc.paths import CONF_DIR, REPO_ROOT

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
CONTRACT_METRICS = ("loss.best_single", "loss.oracle_all", "fit.single.alpha", "fit.single.L_inf",
                    "fit.ensemble.alpha", "fit.ensemble.L_inf")


SHARED_CACHE = Path(tempfile.mkdtemp(prefix="mmc-launch-cache-"))  # the micro zoo trains once per test process


def launch(tmp_path: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run launch.py in a fresh process with its own MLflow store under tmp_path (zoo and scores shared)."""
    flags = [a for a in args if a.startswith("-")]  # Hydra takes -m before the overrides
    cmd = [sys.executable, str(REPO_ROOT / "launch.py"), *flags, f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
           f"cache_dir={SHARED_CACHE}", f"hydra.run.dir={tmp_path}/run", f"hydra.sweep.dir={tmp_path}/sweep",
           *(a for a in args if not a.startswith("-"))]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"launch.py failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def runs(tmp_path: Path, name: str):
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name(name)
    return client, client.search_runs([experiment.experiment_id])


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(experiment):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={experiment}"])
    assert cfg.name


def test_smoke_run_logs_the_contract(tmp_path):
    launch(tmp_path, "experiment=smoke")
    client, found = runs(tmp_path, "smoke")
    (run,) = found
    assert run.info.status == "FINISHED"
    assert run.data.tags["experiment"] == "smoke"
    assert "git_commit" in run.data.tags and "version.torch" in run.data.tags
    assert run.data.params["loss.unit"] == "bits_per_byte"
    for metric in CONTRACT_METRICS:
        assert np.isfinite(run.data.metrics[metric]), metric

    out = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "art")))
    with np.load(out / "loss_matrix.npz") as z:
        m, n = z["nll"].shape
        assert z["nll"].dtype == np.float64 and z["n_tokens"].dtype == np.int64 and z["params"].dtype == np.int64
        assert z["models"].shape == z["families"].shape == z["params"].shape == (m,)
        assert z["text_ids"].shape == z["n_bytes"].shape == z["n_chars"].shape == (n,)
        assert z["n_tokens"].shape == (m, n) and (z["n_tokens"] > 0).all()
        bits_per_byte = [[z["nll"][i, x] / z["n_bytes"][x] / np.log(2) for x in range(n)] for i in range(m)]
        best_single = min(sum(row) / n for row in bits_per_byte)
        oracle_all = sum(min(bits_per_byte[i][x] for i in range(m)) for x in range(n)) / n  # best model per text
        assert run.data.metrics["loss.best_single"] == pytest.approx(best_single, rel=1e-12)
        assert run.data.metrics["loss.oracle_all"] == pytest.approx(oracle_all, rel=1e-12)
    for name in ("frontier.csv", "single_frontier.csv"):
        table = pd.read_csv(out / name)
        assert list(table.columns) == ["members", "k", "params", "loss"] and len(table) > 0
        assert (np.diff(table["params"]) >= 0).all() and (np.diff(table["loss"]) < 0).all()
    fits = json.loads((out / "fits.json").read_text())
    for curve in ("single", "ensemble"):
        for key in ("A", "alpha", "L_inf", "A_stderr", "alpha_stderr", "L_inf_stderr", "A_ci", "alpha_ci",
                    "L_inf_ci", "n_points"):
            assert key in fits[curve], (curve, key)
        assert fits[curve]["alpha"] == pytest.approx(run.data.metrics[f"fit.{curve}.alpha"])
    assert (out / "config.yaml").is_file()


def test_rerun_reproduces_the_numbers_and_takes_overrides(tmp_path):
    launch(tmp_path, "experiment=smoke", "fit.bootstrap=0")
    client, (first,) = runs(tmp_path, "smoke")
    launch(tmp_path, f"rerun={first.info.run_id}")
    _, found = runs(tmp_path, "smoke")
    (second,) = [r for r in found if r.info.run_id != first.info.run_id]
    assert second.data.tags["rerun_of"] == first.info.run_id
    assert second.data.params == first.data.params | {"rerun": first.info.run_id}
    for metric in CONTRACT_METRICS:
        assert second.data.metrics[metric] == pytest.approx(first.data.metrics[metric], rel=1e-9)

    # overrides go on top of the logged config: a group option replaces the logged group (smoke: exhaustive) ...
    launch(tmp_path, f"rerun={first.info.run_id}", "search=greedy")
    # ... and a key of the logged option that the default option (pareto_prune) lacks is set on it
    launch(tmp_path, f"rerun={first.info.run_id}", "search.max_subsets=4096", "fit.bootstrap=3")
    _, found = runs(tmp_path, "smoke")
    greedy, keyed = sorted((r for r in found if r.info.run_id not in (first.info.run_id, second.info.run_id)),
                           key=lambda r: r.info.start_time)
    logged = {k: v for k, v in first.data.params.items() if not k.startswith("search.")}
    assert {k: v for k, v in greedy.data.params.items() if not k.startswith("search.")} == logged | {
        "rerun": first.info.run_id}
    assert greedy.data.params["search.strategy"] == "greedy" and "search.max_subsets" not in greedy.data.params
    assert "search=greedy" in greedy.data.tags["rerun_overrides"].split()
    assert keyed.data.params == first.data.params | {"rerun": first.info.run_id, "search.max_subsets": "4096",
                                                      "fit.bootstrap": "3"}
    assert {"search.max_subsets=4096", "fit.bootstrap=3"} <= set(keyed.data.tags["rerun_overrides"].split())
    for run in (greedy, keyed):  # the same scores: the matrix's numbers are the logged run's
        for metric in ("loss.best_single", "loss.oracle_all"):
            assert run.data.metrics[metric] == pytest.approx(first.data.metrics[metric], rel=1e-12)

    bad = launch(tmp_path, f"rerun={first.info.run_id}", "search.max_subsetz=1", check=False)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("error: unknown key search.max_subsetz: ExhaustiveSearch has")


def test_two_job_sweep_gives_one_parent_and_two_children(tmp_path):
    launch(tmp_path, "-m", "experiment=smoke", "fit.bootstrap=0", "search=pareto_prune,exhaustive")
    client, found = runs(tmp_path, "smoke")
    parents = [r for r in found if r.data.tags.get("sweep") == "true"]
    children = [r for r in found if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2 and len(found) == 3
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert {c.data.params["search.strategy"] for c in children} == {"pareto_prune", "exhaustive"}
    table = pd.read_csv(client.download_artifacts(parents[0].info.run_id, "sweep_comparison.csv", str(tmp_path)))
    assert len(table) == 2 and (table.status == "FINISHED").all()
    assert parents[0].data.tags["failed_children"] == "none"


@pytest.mark.parametrize("override, expected", [
    ("pool=nonexistent", "pool"),
    ("search.strategyy=greedy", "strategyy"),
    ("search.max_k=abc", "max_k"),
    ("stage=everything", "stage"),
    ("pool.only=gpt*,llama*", "quote the value"),  # a sweep value without -m
])
def test_bad_config_fails_in_one_line(tmp_path, override, expected):
    proc = launch(tmp_path, override, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0]


def test_missing_model_path_fails_before_scoring(tmp_path):
    proc = launch(tmp_path, "pool=local", "pool.models=[{name: m, path: /nonexistent/model, family: f}]",
                  check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: model 'm': path /nonexistent/model")


def test_unreachable_tracking_server_fails_in_one_line(tmp_path):
    proc = launch(tmp_path, "experiment=smoke", "tracking.uri=http://127.0.0.1:9", check=False)
    assert proc.returncode == 2
    assert "unreachable" in proc.stderr.strip().splitlines()[-1]


# launch.py with the score cache's chunk writer wrapped: after the run's first new chunk it touches a marker file
# and blocks, so a signal sent once the marker exists always finds the run mid-scoring
BLOCK_AFTER_FIRST_CHUNK = """
import runpy, sys, time
from pathlib import Path
import mmc.scoring.cache as cache

marker, write_chunk = Path(sys.argv.pop(1)), cache.write_chunk

def write_then_block(*args, **kwargs):
    write_chunk(*args, **kwargs)
    marker.touch()
    time.sleep(600)

cache.write_chunk = write_then_block
sys.argv.pop(0)
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_an_interrupted_run_is_failed_and_keeps_its_scores(tmp_path):
    """SIGTERM mid-scoring (as SLURM pre-emption sends) marks the run FAILED; the relaunch reuses the cache."""
    db = tmp_path / "mlflow.db"
    scores, marker, log = tmp_path / "scores", tmp_path / "scoring_started", tmp_path / "interrupted.log"
    args = ["experiment=smoke", "fit.bootstrap=0", "scoring.chunk_texts=10", f"scoring.cache_dir={scores}"]
    launch(tmp_path, *args, "stage=score", "pool.only=gpt-s")  # the zoo is built and one model is cached
    first = set(scores.rglob("chunk-*.npz"))
    proc = subprocess.Popen(
        [sys.executable, "-c", BLOCK_AFTER_FIRST_CHUNK, str(marker), str(REPO_ROOT / "launch.py"),
         f"tracking.uri=sqlite:///{db}", f"cache_dir={SHARED_CACHE}", f"hydra.run.dir={tmp_path}/run2", *args],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), log.read_text()[-3000:]
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    _, found = runs(tmp_path, "smoke")
    interrupted = max(found, key=lambda r: r.info.start_time)
    assert interrupted.info.status == "FAILED"
    kept = {path: path.stat().st_mtime_ns for path in scores.rglob("chunk-*.npz")}
    assert len(kept) == len(first) + 1  # the second model's first chunk survived the kill
    launch(tmp_path, *args)
    _, found = runs(tmp_path, "smoke")
    assert max(found, key=lambda r: r.info.start_time).info.status == "FINISHED"
    assert {path: path.stat().st_mtime_ns for path in kept} == kept  # reused, not rescored
    assert len(list(scores.rglob("chunk-*.npz"))) == 4 * len(first)  # the rest was scored: 4 models
