"""Hub models through a Hugging Face cache laid out as the hub leaves it (models--org--name/refs/main,
snapshots/<commit>/...), offline (HF_HUB_OFFLINE=1), loaded by the same from_pretrained call users make:
the run records the commit `main` points to, and when `main` moves, the model is scored again."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from mmc.errors import MMCError
from mmc.models import hub_commit
from mmc.paths import REPO_ROOT

FIRST, SECOND = "1" * 40, "2" * 40


def publish(hub: Path, repo: str, commit: str, model_dir: str) -> None:
    """Put a saved model in the HF cache as snapshot `commit` and point refs/main at it."""
    repo_dir = hub / f"models--{repo.replace('/', '--')}"
    shutil.copytree(model_dir, repo_dir / "snapshots" / commit)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)


def launch(tmp_path: Path, hub: Path, repo: str, run: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home")}
    cmd = [sys.executable, str(REPO_ROOT / "launch.py"), "pool=local", f"pool.models=[{{name: hubbed, path: {repo}, "
           "family: f}]", "stage=score", "dataset.max_texts=6", "dataset.max_chars=300",
           f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"cache_dir={tmp_path}/cache", f"hydra.run.dir={tmp_path}/{run}"]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)


def test_hub_models_are_scored_and_recorded_at_their_commit(tiny_specs, tmp_path):
    hub = tmp_path / "hub"
    (old,), (new,) = tiny_specs(["gpt2"]), tiny_specs(["gpt2"], seed=1)  # same shapes, other weights
    publish(hub, "org/tiny", FIRST, old.source)
    first = launch(tmp_path, hub, "org/tiny", "run1")
    assert first.returncode == 0, first.stderr[-3000:]
    publish(hub, "org/tiny", SECOND, new.source)  # upstream moved main
    second = launch(tmp_path, hub, "org/tiny", "run2")
    assert second.returncode == 0, second.stderr[-3000:]

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("default")
    runs = sorted(client.search_runs([experiment.experiment_id]), key=lambda r: r.info.start_time)
    assert [r.data.tags["model.hubbed.commit"] for r in runs] == [FIRST, SECOND]
    nll = []
    for run in runs:
        out = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / run.info.run_id)))
        record = json.loads((out / "scoring.json").read_text())["hubbed"]
        assert record["identity"] == {"hub_id": "org/tiny", "commit": run.data.tags["model.hubbed.commit"]}
        assert record["revision"] == record["identity"]["commit"]  # loaded at the commit, not at `main`
        with np.load(out / "loss_matrix.npz") as z:
            nll.append(z["nll"][0])
        assert not (out / "token_losses.parquet").exists()  # pool=local: off unless scoring.token_losses=true
    assert not np.allclose(nll[0], nll[1])  # the new weights were scored, not the cached old ones



def test_revisions_resolve_to_the_commit_the_cache_records(tmp_path, monkeypatch):
    """huggingface_hub reads HF_HUB_CACHE and HF_HUB_OFFLINE when it is imported; in this process its constants
    are set directly (the test above goes through the environment, as users do)."""
    import huggingface_hub.constants

    hub = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    (snapshot / "config.json").write_text("{}")
    publish(hub, "org/tiny", FIRST, str(snapshot))
    assert hub_commit("org/tiny", "main") == hub_commit("org/tiny", None) == FIRST
    publish(hub, "org/tiny", SECOND, str(snapshot))
    assert hub_commit("org/tiny", "main") == SECOND
    assert hub_commit("org/tiny", FIRST) == FIRST  # a commit is its own answer
    with pytest.raises(MMCError) as error:
        hub_commit("org/not-in-the-cache", "main")
    message = str(error.value)
    assert "\n" not in message and message.startswith("cannot resolve revision main of hub model org/not-in-the-cache")
    assert message.endswith("pin the model's revision to a commit hash")
