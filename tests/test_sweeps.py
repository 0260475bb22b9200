"""Sweeps on Hydra launcher plugins: parallel jobs into one SQLite store, parents, failures."""
from __future__ import annotations

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
