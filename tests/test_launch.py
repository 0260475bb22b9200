"""End to end through `python launch.py`: config composition, the MLflow contract, sweeps, reruns, bad input."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

from mmc.config import register_configs, validate
from mmc.paths import CONF_DIR, REPO_ROOT

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
CONTRACT_METRICS = ("loss.best_single", "loss.oracle_all", "fit.single.alpha", "fit.single.L_inf",
                    "fit.ensemble.alpha", "fit.ensemble.L_inf")


SHARED_CACHE = Path(tempfile.mkdtemp(prefix="mmc-launch-cache-"))  # the micro zoo trains once per test process


def launch(tmp_path: Path, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run launch.py in a fresh process with its own MLflow store under tmp_path (zoo and scores shared);
    `env`: extra environment variables."""
    flags = [a for a in args if a.startswith("-")]  # Hydra takes -m before the overrides
    cmd = [sys.executable, str(REPO_ROOT / "launch.py"), *flags, f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
           f"cache_dir={SHARED_CACHE}", f"hydra.run.dir={tmp_path}/run", f"hydra.sweep.dir={tmp_path}/sweep",
           *(a for a in args if not a.startswith("-"))]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600,
                          env={**os.environ, **(env or {})})
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

    # MLflow's own features: a machine-learning experiment, the corpus as a dataset input, tables the UI renders
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    (corpus,) = run.inputs.dataset_inputs
    with np.load(out / "loss_matrix.npz") as z:
        text_ids = z["text_ids"].tolist()
    assert corpus.dataset.digest == hashlib.sha256("\n".join(text_ids).encode()).hexdigest()[:16]
    assert corpus.dataset.digest == run.data.params["corpus.hash"]
    assert corpus.dataset.name == "builtin-eval" and json.loads(corpus.dataset.profile)["num_rows"] == len(text_ids)
    tags = {t.key: t.value for t in corpus.tags}
    domains = {k.split(".")[-1]: v for k, v in run.data.tags.items() if k.startswith("corpus.domain.")}
    assert tags["domains"] == ", ".join(f"{d} ({n})" for d, n in sorted(domains.items()))
    assert tags["mlflow.data.context"] == "eval"
    for name in ("frontier", "single_model_table", "fit_table"):
        shown = json.loads((out / "tables" / f"{name}.json").read_text())  # mlflow.log_table's split layout
        table = pd.read_csv(out / f"{name}.csv")
        assert shown["columns"] == list(table.columns) and len(shown["data"]) == len(table)
        pd.testing.assert_frame_equal(pd.DataFrame(shown["data"], columns=shown["columns"]), table,
                                      check_dtype=False, rtol=1e-9)  # the JSON keeps 10 significant digits
    logged = json.loads(run.data.tags["mlflow.loggedArtifacts"])
    assert {a["path"] for a in logged if a["type"] == "table"} == {
        "tables/frontier.json", "tables/single_model_table.json", "tables/fit_table.json", "tables/realisable.json"}
    assert not [m for m in run.data.metrics if m.startswith("system/")]  # auto: off when scoring on a CPU


def test_system_metrics_on_request(tmp_path):
    """tracking.system_metrics=true samples CPU and memory through MLflow's monitor (every 0.2 s here)."""
    launch(tmp_path, "pool=synthetic", "pool.n_models=8", "pool.n_texts=200", "fit.bootstrap=0",
           "tracking.system_metrics=true", env={"MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "0.2"})
    client, (run,) = runs(tmp_path, "default")
    history = client.get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")
    assert len(history) >= 1 and all(0 <= m.value <= 100 for m in history)
    memory = run.data.metrics["system/system_memory_usage_megabytes"]
    assert 0 < memory <= psutil.virtual_memory().total / 1e6
    (texts,) = run.inputs.dataset_inputs  # a matrix pool's texts are a dataset input too
    assert texts.dataset.name == "synthetic-8x200-seed0" and texts.dataset.source_type == "code"


def composed_config(*overrides: str):
    """The typed config launch.py would run with these overrides."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return validate(compose("config", overrides=list(overrides)))


def test_a_forked_matrix_analysis_equals_one_in_place(monkeypatch):
    """What a loss-matrix job gets back from its forked analysis (itself forking its family groups and uncertainty;
    pickled: fits, tables, figures) is what the same analysis computes with no fork at all, in this process."""
    from mmc import background
    from mmc.analysis import analyze
    from mmc.background import Pending
    from mmc.job import load_inputs

    config = composed_config("pool=synthetic", "pool.n_models=8", "pool.n_texts=200", "fit.bootstrap=20")
    inputs = load_inputs(config)
    args = (inputs.lm, config.loss, config.search, config.fit, config.ensemble, inputs.texts)
    forked = Pending(analyze, *args).result()
    monkeypatch.setattr(background, "FORK", False)
    in_place = analyze(*args)
    drop_wall = lambda metrics: {k: v for k, v in metrics.items() if k != "search.wall_s"}  # noqa: E731
    assert drop_wall(forked.metrics) == drop_wall(in_place.metrics)
    for table in ("fit_table", "single_table"):  # DataFrame.equals: NaN (no interval) equals NaN
        assert pd.DataFrame(getattr(forked, table)).equals(pd.DataFrame(getattr(in_place, table))), table
    assert (forked.ensemble.frontier_members == in_place.ensemble.frontier_members).all()
    assert list(forked.fits) == list(in_place.fits) and forked.extras.keys() == in_place.extras.keys()
    assert forked.fit_skipped == in_place.fit_skipped
    assert forked.extras["bootstrap"] == in_place.extras["bootstrap"]
    assert forked.figures.keys() == in_place.figures.keys()
    for name, png in in_place.figures.items():
        assert forked.figures[name] == png, name


def test_system_metrics_default_follows_the_scoring_device(monkeypatch):
    """null: on exactly when this job scores and its device resolves to cuda; true/false force it."""
    import torch

    import mmc.scoring.engine
    from mmc import job

    config = composed_config

    for device, expected in (("cuda", True), ("cpu", None)):
        monkeypatch.setattr(mmc.scoring.engine, "resolve_device", lambda name, d=device: torch.device(d))
        assert job.system_metrics(config()) is expected
        assert job.system_metrics(config("stage=score")) is expected
        assert job.system_metrics(config("stage=analyze")) is None  # cached scores: no device used
        assert job.system_metrics(config("pool=synthetic")) is None
        assert job.system_metrics(config("tracking.system_metrics=false")) is False
        assert job.system_metrics(config("pool=synthetic", "tracking.system_metrics=true")) is True


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
    shown = json.loads(Path(client.download_artifacts(parents[0].info.run_id, "tables/sweep_comparison.json",
                                                      str(tmp_path))).read_text())
    assert shown["columns"] == list(table.columns) and [r[1] for r in shown["data"]] == table.run_id.tolist()
    assert client.get_experiment(parents[0].info.experiment_id).tags["mlflow.experimentKind"] == \
        "custom_model_development"  # the sweep's parent creates the experiment


@pytest.mark.parametrize("override, expected", [
    ("pool=nonexistent", "pool"),
    ("search.strategyy=greedy", "strategyy"),
    ("search.max_k=abc", "max_k"),
    ("stage=everything", "stage"),
    ("pool.only=gpt*,llama*", "quote the value"),  # a sweep value without -m
    ("tracking.system_metrics=maybe", "system_metrics"),
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
