"""Sweeps on Hydra launcher plugins: parallel jobs into one SQLite store, parents, failures."""
from __future__ import annotations

import numpy as np
import pandas as pd

from test_launch import launch, runs

SMALL = ["pool=synthetic", "pool.n_models=8", "pool.n_texts=200", "fit.bootstrap=0", "fit.groups=false",
         "name=sweep_test"]


def sweep_runs(tmp_path):
    client, found = runs(tmp_path, "sweep_test")
    parents = [r for r in found if r.data.tags.get("sweep") == "true"]
    children = [r for r in found if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def test_four_parallel_joblib_jobs_lose_no_run(tmp_path):
    launch(tmp_path, "-m", *SMALL, "hydra/launcher=local_parallel", "pool.seed=0,1,2,3")
    client, parents, children = sweep_runs(tmp_path)
    assert len(parents) == 1 and len(children) == 4
    assert sorted(c.data.params["pool.seed"] for c in children) == ["0", "1", "2", "3"]
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        for metric in ("loss.best_single", "loss.oracle_all", "fit.ensemble.alpha", "time.total_s"):
            assert metric in child.data.metrics, (child.data.params["pool.seed"], metric)
    table = pd.read_csv(client.download_artifacts(parents[0].info.run_id, "sweep_comparison.csv", str(tmp_path)))
    assert sorted(table.run_id) == sorted(c.info.run_id for c in children)
    # the table carries each child's own numbers
    floors = table.set_index("run_id")["fit.ensemble.L_inf"]
    for child in children:
        assert floors[child.info.run_id] == child.data.metrics["fit.ensemble.L_inf"]


def test_submitit_local_sweep(tmp_path):
    launch(tmp_path, "-m", *SMALL, "hydra/launcher=local_submitit", "hydra.launcher.gpus_per_node=0",
           "search=pareto_prune,greedy")
    _, parents, children = sweep_runs(tmp_path)
    assert len(parents) == 1 and len(children) == 2
    assert {c.data.params["search.strategy"] for c in children} == {"pareto_prune", "greedy"}
    assert all(c.info.status == "FINISHED" for c in children)


def test_a_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path):
    proc = launch(tmp_path, "-m", *SMALL, "search.families=null,[no_such_family]", check=False)
    assert proc.returncode == 1
    assert "1 of 2 sweep jobs failed" in proc.stderr
    _, parents, children = sweep_runs(tmp_path)
    statuses = sorted(c.info.status for c in children)
    assert statuses == ["FAILED", "FINISHED"]
    failed = next(c for c in children if c.info.status == "FAILED")
    assert parents[0].data.tags["failed_children"] == failed.info.run_name


def loss_matrix_of(client, run, tmp_path):
    with np.load(client.download_artifacts(run.info.run_id, "loss_matrix.npz", str(tmp_path / run.info.run_id))) as z:
        return {k: z[k] for k in z.files}


def test_per_model_scoring_jobs_then_analyze_equal_one_full_run(tmp_path):
    smoke = ["experiment=smoke", "fit.bootstrap=0", f"scoring.cache_dir={tmp_path}/scores"]
    missing = launch(tmp_path, *smoke, "stage=analyze", check=False)
    assert missing.returncode == 2
    assert "python launch.py stage=score pool.only=" in missing.stderr.strip().splitlines()[-1]

    launch(tmp_path, "-m", *smoke, "stage=score", "pool.only=gpt-*,llama-*")
    launch(tmp_path, *smoke, "stage=analyze")
    launch(tmp_path, "experiment=smoke", "fit.bootstrap=0", f"scoring.cache_dir={tmp_path}/fresh_scores")
    client, found = runs(tmp_path, "smoke")
    score_jobs = [r for r in found if r.data.params.get("stage") == "score"]
    (analyzed,) = [r for r in found if r.data.params.get("stage") == "analyze" and r.info.status == "FINISHED"]
    (full,) = [r for r in found if r.data.params.get("stage") == "all"]
    assert len(score_jobs) == 2 and all(r.info.status == "FINISHED" for r in score_jobs)
    assert sorted(r.data.params["matrix.n_models"] for r in score_jobs) == ["2", "2"]
    a, b = loss_matrix_of(client, analyzed, tmp_path), loss_matrix_of(client, full, tmp_path)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert analyzed.data.metrics["fit.ensemble.L_inf"] == full.data.metrics["fit.ensemble.L_inf"]
