"""Runs on multiple-choice items through `python launch.py`: what they log, recomputed from the logged choice matrix."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmc.ensemble.combiners import MinCombiner
from mmc.search import run_search
from mmc.search.exact import ExactSearch
from mmc.search.exhaustive import ExhaustiveSearch
from test_choices import skilled_matrix
from test_launch import launch, runs
from test_realisable_runs import artifacts, one_line_error


def errors_of(loglik: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """(M, I) 1 where a model's most likely choice (NaN: no choice; ties: the first) is not the gold one."""
    return (np.nanargmax(loglik, axis=2) != gold[None, :]).astype(float)


def brute_frontier(errors: np.ndarray, params: np.ndarray) -> list[tuple[int, float]]:
    points = [(int(params[list(s)].sum()), errors[list(s)].min(axis=0).mean())
              for k in range(1, len(params) + 1) for s in itertools.combinations(range(len(params)), k)]
    return sorted((p, e) for p, e in points if not any(p2 <= p and e2 <= e and (p2 < p or e2 < e) for p2, e2 in points))


def test_a_run_on_a_choice_matrix_searches_fits_and_logs_error_rates(tmp_path):
    skilled_matrix(0, n=300).save(tmp_path / "choice_matrix.npz")
    launch(tmp_path, "pool=matrix", f"pool.path={tmp_path / 'choice_matrix.npz'}", "search=exhaustive",
           "ensemble=vote", "fit.bootstrap=10", "name=choices")
    client, (run,) = runs(tmp_path, "choices")
    out = artifacts(client, run, tmp_path)
    assert (out / "choice_matrix.npz").is_file() and not (out / "loss_matrix.npz").exists()
    with np.load(out / "choice_matrix.npz") as z:
        loglik, gold, params = z["loglik"], z["gold"], z["params"]
    errors = errors_of(loglik, gold)
    metrics = run.data.metrics
    assert metrics["acc.best_single"] == pytest.approx(1 - errors.mean(axis=1).min(), abs=1e-12)
    assert metrics["acc.oracle_all"] == pytest.approx(1 - errors.min(axis=0).mean(), abs=1e-12)
    assert not any(k.startswith("loss.") for k in metrics) and run.data.tags["analysis.measure"] == "error rate"
    front = pd.read_csv(out / "frontier.csv")
    assert [(p, pytest.approx(e)) for p, e in brute_frontier(errors, params)] == list(zip(front.params, front.loss))
    fits = json.loads((out / "fits.json").read_text())
    for name in ("single", "ensemble"):
        assert 0 <= fits[name]["L_inf"] <= 1 and metrics[f"fit.{name}.L_inf"] == pytest.approx(fits[name]["L_inf"])
        assert np.isfinite(metrics[f"fit.{name}.alpha"])
    table = pd.read_csv(out / "accuracy_table.csv")
    assert set(table.task) == {"t1", "t2", "all"} and (table.accuracy_lo <= table.accuracy).all()

    # the vote's own frontier and gap on the evaluation items
    split = pd.read_csv(out / "text_split.csv")
    evaluation = (split.split == "evaluation").to_numpy()
    oracle = errors[:, evaluation].min(axis=0).mean()
    assert metrics["acc.oracle_heldout_all"] == pytest.approx(1 - oracle)
    assert metrics["gap.vote"] == pytest.approx(metrics["acc.oracle_heldout_all"] - metrics["acc.vote_all"], abs=1e-12)
    assert metrics["gap.vote"] >= 0
    vote = pd.read_csv(out / "frontier_vote.csv")
    assert list(vote.columns) == ["members", "k", "params", "loss", "active_params"]
    realisable = pd.read_csv(out / "realisable.csv")
    assert {"loss_oracle", "loss_mixture", "loss_domain_router", "loss_oracle_loss", "loss_vote",
            "loss_confidence"} <= set(realisable.columns)
    assert "loss_knn_router" not in realisable.columns
    assert realisable.loss_vote.iloc[0] == pytest.approx(1 - metrics["acc.vote_all"])


def test_exact_search_proves_the_oracle_frontier_on_errors():
    cm = skilled_matrix(1, n=200, m=7)
    weighted = cm.weighted_losses()
    exact = run_search(MinCombiner(weighted), cm.params, cm.models, ExactSearch())
    brute = brute_frontier(cm.per_text_loss(), cm.params)
    assert [(p, pytest.approx(e)) for p, e in brute] == list(zip(exact.frontier_params, exact.frontier_loss))
    exhaustive = run_search(MinCombiner(weighted), cm.params, cm.models, ExhaustiveSearch())
    np.testing.assert_allclose(exhaustive.frontier_loss, exact.frontier_loss)


def test_a_text_only_ensemble_on_a_choice_matrix_fails_in_one_line(tmp_path):
    skilled_matrix(0, n=20).save(tmp_path / "choice_matrix.npz")
    one_line_error(launch(tmp_path, "pool=matrix", f"pool.path={tmp_path / 'choice_matrix.npz'}",
                          "ensemble=knn_router", check=False),
                   "ensemble=knn_router does not apply to multiple-choice items; use one of oracle, mixture")


def test_a_sweep_over_texts_and_items_shows_both_laws_side_by_side(tmp_path):
    from mlflow.tracking import MlflowClient

    from mmc.losses import LossMatrix
    from mmc.sweep import overlay_frontiers

    cm = skilled_matrix(2, n=200)
    cm.save(tmp_path / "choice_matrix.npz")
    rng = np.random.default_rng(0)
    nll = (np.log(cm.params)[::-1, None] * 40 + rng.gamma(4.0, 20.0, (cm.n_models, 100)))
    LossMatrix(cm.models, cm.families, cm.params, [f"t{k}" for k in range(100)], nll, np.ones_like(nll, dtype=int),
               np.full(100, 300), np.full(100, 300), np.where(np.arange(100) % 2, "a", "b")).save(tmp_path / "lm.npz")
    launch(tmp_path, "-m", "pool=matrix", f"pool.path={tmp_path / 'lm.npz'},{tmp_path / 'choice_matrix.npz'}",
           "fit.bootstrap=0", "name=laws")
    client, found = runs(tmp_path, "laws")
    (parent,) = [r for r in found if r.data.tags.get("sweep") == "true"]
    children = [r for r in found if "mlflow.parentRunId" in r.data.tags]
    assert sorted(r.data.tags["analysis.measure"] for r in children) == ["bits per byte", "error rate"]
    table = pd.read_csv(client.download_artifacts(parent.info.run_id, "sweep_comparison.csv", str(tmp_path)))
    assert table["acc.oracle_all"].notna().sum() == 1 and table["loss.oracle_all"].notna().sum() == 1
    assert "sweep_frontiers.png" in [a.path for a in client.list_artifacts(parent.info.run_id)]
    figure = overlay_frontiers(MlflowClient(f"sqlite:///{tmp_path}/mlflow.db"), children)
    labels = sorted(ax.get_ylabel() for ax in figure.axes)
    assert labels == ["ensemble loss (bits per byte)", "ensemble loss (error rate)"]
    for ax in figure.axes:  # each panel: its frontier and its fitted law
        assert any(line.get_label().strip().startswith("fit: α=") for line in ax.get_lines())
