"""MLflow tracking: the store, one experiment per experiment name, parent/child runs for sweeps."""
from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import subprocess
import tempfile
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from mmc.errors import MMCError, first_line
from mmc.paths import MLRUNS_DIR, REPO_ROOT

# The experiment tag MLflow 3's UI reads for an experiment's kind, and its value for "Machine learning"
# (the other is genai_development): the UI's own experiment-type selector writes this tag
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
PACKAGES = ("mmc", "torch", "transformers", "tokenizers", "mlflow", "hydra-core", "omegaconf", "numpy",
            "scipy", "lmfit")


def resolve_uri(uri: str | None) -> str:
    """The tracking URI: `uri`, else $MLFLOW_TRACKING_URI, else SQLite inside <repo>/mlruns/."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    MLRUNS_DIR.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{MLRUNS_DIR / 'mlflow.db'}"


def connect(uri: str | None) -> str:
    """Point mlflow at the store; fail in one line, before any work, if a server does not answer."""
    uri = resolve_uri(uri)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per file floods sweep logs
    if uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5).read()
        except (urllib.error.URLError, OSError) as e:
            raise MMCError(f"tracking server {uri} is unreachable ({getattr(e, 'reason', e)}); start it "
                           "(`mlflow server ...`) or drop tracking.uri to use the local store") from e
    elif uri.startswith("file:") and os.environ.get("MLFLOW_ALLOW_FILE_STORE") != "true":
        raise MMCError(f"tracking.uri={uri} is a file store, which MLflow 3 refuses; use sqlite:///<path>.db "
                       "or set MLFLOW_ALLOW_FILE_STORE=true")
    mlflow.set_tracking_uri(uri)
    try:
        MlflowClient()  # resolves the store: an unknown scheme or a plain path fails here
    except mlflow.exceptions.MlflowException as e:
        raise MMCError(f"tracking.uri={uri} is refused by MLflow ({first_line(e)}); use sqlite:///<path>.db or "
                       "http(s)://<mlflow server>") from e
    return uri


def ensure_experiment(name: str) -> str:
    """Id of experiment `name`; a new one on a SQLite store keeps its artifacts in artifacts/ beside the db.

    Experiments are tagged as machine-learning ones (EXPERIMENT_KIND_TAG), which the UI's experiment-type
    selector reads; an existing experiment without the tag gets it, one a user re-typed keeps theirs."""
    client = MlflowClient()
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if EXPERIMENT_KIND_TAG not in exp.tags:
            client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return exp.experiment_id
    uri, artifacts = mlflow.get_tracking_uri(), None
    if uri.startswith("sqlite:///"):  # artifacts beside the database, as absolute paths
        artifacts = (Path(uri[len("sqlite:///"):]).resolve().parent / "artifacts" / name).as_uri()
    try:
        return client.create_experiment(name, artifact_location=artifacts,
                                        tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    except mlflow.exceptions.MlflowException:  # created by a concurrent job in the meantime
        return client.get_experiment_by_name(name).experiment_id


def ui_url(experiment_id: str, run_id: str | None = None) -> str:
    """The experiment's runs table (or a run's page) in the MLflow UI: `mlflow ui`'s default address, or the
    tracking server's. MLflow 3.17's UI opens an experiment in its GenAI view unless the URL asks for the
    machine-learning one (workflowType=machine_learning; the experiment tag alone does not decide it)."""
    uri = mlflow.get_tracking_uri()
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    return f"{base}/#/experiments/{experiment_id}/runs{f'/{run_id}' if run_id else ''}?workflowType=machine_learning"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def flatten(tree, prefix: str = "") -> dict[str, str]:
    """{'a.b.0.c': value} for MLflow params (values over MLflow's 6000-char limit are cut)."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree)
    flat = {}
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, (dict, list)) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = str(value)[:6000]
    return flat


class _Terminated(Exception):
    """SIGTERM (e.g. a SLURM pre-emption) as an exception, so the run is marked FAILED."""


def _raise_terminated(signum, frame):
    raise _Terminated(f"terminated by signal {signum}")


@contextmanager
def tracked_run(experiment_id: str, run_name: str, config: dict, tags: dict, parent_run_id: str | None = None,
                system_metrics: bool | None = None):
    """An MLflow run that logs config, params and provenance, and ends FAILED on any exception.

    system_metrics: MLflow's CPU, memory, disk, network and GPU sampling (`system/*` metrics, every 10 s
    or $MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL); None leaves it to $MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING."""
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, parent_run_id=parent_run_id,
                              tags=tags, log_system_metrics=system_metrics) as run:
            mlflow.log_params(flatten(config))
            mlflow.set_tags({"git_commit": git_commit(), **{f"version.{k}": v for k, v in package_versions().items()}})
            log_json(config, "config.json")
            log_file(_yaml(config), "config.yaml")
            yield run
    finally:
        signal.signal(signal.SIGTERM, previous)


def _yaml(config: dict) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(config))


def log_file(content: str | bytes, name: str) -> None:
    """The artifact `name` holding `content` (text, or bytes such as a rendered PNG)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        mlflow.log_artifact(str(path))


def log_json(obj, name: str) -> None:
    log_file(json.dumps(obj, indent=2, default=float), name)


def logged_config(run_id: str) -> dict:
    """The composed config a run logged (its config.yaml artifact)."""
    from omegaconf import OmegaConf

    try:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="config.yaml")
    except mlflow.exceptions.MlflowException as e:
        raise MMCError(f"no logged config for run {run_id!r} in {mlflow.get_tracking_uri()}; "
                       "check the run id (MLflow UI) and tracking.uri") from e
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)
