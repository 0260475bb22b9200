"""What the MLflow UI shows of a run, read over the REST API of a real `mlflow server` (the browser check of
the same pages, with screenshots, is docs/ui/; it stays out of CI)."""
from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pandas as pd
import pytest

from test_launch import launch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A synthetic run in a fresh store, served by `mlflow server` as the README starts it: its base URL."""
    tmp_path = tmp_path_factory.mktemp("ui")
    launch(tmp_path, "pool=synthetic", "pool.n_models=8", "pool.n_texts=200", "fit.bootstrap=0")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                             f"sqlite:///{tmp_path}/mlflow.db", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})  # no GenAI job workers
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise AssertionError("mlflow server did not start")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def get(url: str, endpoint: str, **query) -> bytes:
    return urllib.request.urlopen(f"{url}{endpoint}?{urllib.parse.urlencode(query)}", timeout=30).read()


def post(url: str, endpoint: str, body: dict) -> dict:
    request = urllib.request.Request(url + endpoint, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(request, timeout=30).read())


def test_the_ui_sees_a_machine_learning_experiment_with_datasets_and_tables(server):
    experiment = json.loads(get(server, "/api/2.0/mlflow/experiments/get-by-name", experiment_name="default"))
    experiment = experiment["experiment"]
    tags = {t["key"]: t["value"] for t in experiment["tags"]}
    assert tags["mlflow.experimentKind"] == "custom_model_development"  # the UI's "Machine learning" kind

    # the runs table's Datasets column, and its search by dataset
    found = post(server, "/api/2.0/mlflow/runs/search", {
        "experiment_ids": [experiment["experiment_id"]], "filter": "dataset.name = 'synthetic-8x200-seed0'"})
    (run,) = found["runs"]
    (dataset,) = run["inputs"]["dataset_inputs"]
    assert dataset["dataset"]["name"] == "synthetic-8x200-seed0" and len(dataset["dataset"]["digest"]) == 16
    assert json.loads(dataset["dataset"]["profile"])["num_rows"] == 200

    # the tables the artifact viewer renders, beside the contract's CSVs
    run_id = run["info"]["run_id"]
    logged = json.loads({t["key"]: t["value"] for t in run["data"]["tags"]}["mlflow.loggedArtifacts"])
    assert {"path": "tables/frontier.json", "type": "table"} in logged
    shown = json.loads(get(server, "/get-artifact", path="tables/frontier.json", run_uuid=run_id))
    csv = get(server, "/get-artifact", path="frontier.csv", run_uuid=run_id).decode()
    frontier = pd.read_csv(io.StringIO(csv))
    assert shown["columns"] == ["members", "k", "params", "loss"] == list(frontier.columns)
    assert [row[0] for row in shown["data"]] == frontier["members"].tolist()
    assert b"<html" in get(server, "/").lower()  # the UI itself is served
