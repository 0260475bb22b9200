"""What a run logs to MLflow: the DESIGN contract's artifacts, tables, metrics and figures, in its names and shapes."""
from __future__ import annotations

import math
import tempfile
from collections import Counter
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from mmc import tracking
from mmc.analysis import Analysis
from mmc.data import Corpus
from mmc.losses import LossMatrix
from mmc.search.result import SearchResult


def log_metrics(metrics: dict[str, float]) -> None:
    """One batched call for every finite value (MLflow has no NaN or missing metrics)."""
    mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))})


def log_table(rows: list[dict] | pd.DataFrame, name: str) -> None:
    tracking.log_text_artifact(pd.DataFrame(rows).to_csv(index=False), name)


def log_corpus(corpus: Corpus) -> None:
    domains = Counter(corpus.domains)
    mlflow.log_params({"corpus.hash": corpus.hash, "corpus.n_texts": len(corpus),
                       "corpus.n_bytes": int(corpus.n_bytes.sum())})
    mlflow.set_tags({f"corpus.domain.{d}": n for d, n in sorted(domains.items())})
    log_metrics({f"corpus.n_texts.{d}": n for d, n in domains.items()})


def log_loss_matrix(lm: LossMatrix) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "loss_matrix.npz"
        lm.save(path)
        mlflow.log_artifact(str(path))
    mlflow.log_params({"matrix.n_models": lm.n_models, "matrix.n_texts": lm.n_texts,
                       "matrix.families": ",".join(sorted(set(lm.families.tolist())))[:6000]})


def log_scoring(scores) -> None:
    """What scoring adds to the loss matrix (mmc.scoring.stage.Scores): each model's record (scoring.json: source,
    commit or files hash, dtype, attention, window, stride, library versions), hub commits as tags
    `model.<name>.commit`, and token_losses.parquet when token losses were kept."""
    records = dict(zip(scores.matrix.models.tolist(), scores.records))
    tracking.log_json(records, "scoring.json")
    mlflow.set_tags({f"model.{name}.commit": r["identity"]["commit"] for name, r in records.items()
                     if "commit" in r["identity"]})
    if scores.token_losses is not None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "token_losses.parquet"
            scores.token_losses.to_parquet(path)
            mlflow.log_artifact(str(path))


def frontier_rows(result: SearchResult) -> pd.DataFrame:
    """frontier.csv: members ('+'-joined, sorted), k, params, loss; one row per Pareto-optimal subset."""
    return pd.DataFrame({
        "members": result.frontier_names(),
        "k": result.frontier_members.sum(axis=1).astype(int),
        "params": np.asarray(result.frontier_params, dtype=np.int64),
        "loss": result.frontier_loss,
    })


def log_analysis(analysis: Analysis) -> None:
    """Artifacts, tables, metrics and figures of an analysed loss matrix."""
    mlflow.log_param("analysis.families", ",".join(sorted(set(analysis.lm.families.tolist())))[:6000])
    log_table(frontier_rows(analysis.ensemble), "frontier.csv")
    log_table(frontier_rows(analysis.single), "single_frontier.csv")
    tracking.log_json({name: fit.to_dict() for name, fit in analysis.fits.items()}, "fits.json")
    log_table(analysis.fit_table, "fit_table.csv")
    log_table(analysis.single_table, "single_model_table.csv")
    tracking.log_json(analysis.extras, "analysis.json")
    log_metrics(analysis.metrics)
    for name, figure in analysis.figures.items():
        tracking.log_figure(figure, name)
