"""Hydra callback for multirun sweeps: one MLflow parent run, created before any job starts.

Jobs (in this process or in launcher workers, local or on SLURM) find the parent's id in a file in
the sweep directory and open their runs as its children. At the end, the parent gets a comparison
table of its children and a figure overlaying their frontiers and fitted laws (a panel per measure: a loss, or an
error rate on multiple-choice items), and records which children failed.
"""
from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)
PARENT_FILE = "mlflow_parent_run_id"
COMPARED_METRICS = ("fit.single.alpha", "fit.single.L_inf", "fit.ensemble.alpha", "fit.ensemble.L_inf",
                    "loss.best_single", "loss.oracle_all", "acc.best_single", "acc.oracle_all", "time.total_s")


def parent_run_id(sweep_dir: str | Path) -> str | None:
    path = Path(sweep_dir) / PARENT_FILE
    return path.read_text().strip() if path.is_file() else None


class MlflowSweepCallback(Callback):
    """Hydra instantiates it for every run, sweep or not: mlflow and pandas load only in its sweep hooks."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        from mlflow.tracking import MlflowClient

        from mmc import tracking

        tracking.connect(config.tracking.uri)
        experiment_id = tracking.ensure_experiment(config.tracking.experiment_name or config.name)
        overrides = " ".join(config.hydra.overrides.task)
        parent = MlflowClient().create_run(
            experiment_id, run_name=f"sweep {config.name}",
            tags={"sweep": "true", "experiment": config.name, "hydra.overrides": overrides},
        )
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / PARENT_FILE).write_text(parent.info.run_id)
        self._started = time.time()

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        from mmc import plots, tracking

        run_id = parent_run_id(config.hydra.sweep.dir)
        client = MlflowClient()
        parent = client.get_run(run_id)
        children = client.search_runs([parent.info.experiment_id],
                                      filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'")
        table = comparison_table(children)
        failed = table.loc[table.status != "FINISHED", "run_name"].tolist()
        with mlflow.start_run(run_id=run_id):
            tracking.log_file(table.to_csv(index=False), "sweep_comparison.csv")
            mlflow.log_table(table, "tables/sweep_comparison.json")  # the same rows, as the UI renders tables
            summary = pool_summary(table)
            if summary["pool"].nunique() == 2:  # a homogeneous-vs-heterogeneous sweep
                tracking.log_file(summary.to_csv(index=False), "homo_vs_hetero.csv")
                for row in summary.itertuples():
                    mlflow.log_metric(f"sweep.{row.pool}.best_L_inf", row.best_L_inf)
                    mlflow.log_metric(f"sweep.{row.pool}.best_oracle_loss", row.best_oracle_loss)
            mlflow.log_metric("sweep.n_jobs", len(table))
            mlflow.log_metric("sweep.n_failed", len(failed))
            mlflow.set_tag("failed_children", ",".join(failed) or "none")
            figure = overlay_frontiers(client, children)
            if figure is not None:
                tracking.log_file(plots.png(figure), "sweep_frontiers.png")
        log.info("MLflow UI (after `mlflow ui`): %s", tracking.ui_url(parent.info.experiment_id, run_id))
        if failed:
            print(f"error: {len(failed)} of {len(table)} sweep jobs failed ({', '.join(failed)}); "
                  f"see their FAILED runs under parent run {run_id}", file=sys.stderr)
            sys.exit(1)


def ensemble_curve(run) -> tuple[str, str, str]:
    """(ensemble option, its frontier artifact, its fit's metric prefix) of a child run: the oracle's all-text
    frontier, or a realisable option's own frontier on the evaluation texts."""
    kind = run.data.params.get("ensemble.kind", "oracle")
    if kind == "oracle":
        return kind, "frontier.csv", "fit.ensemble"
    return kind, f"frontier_{kind}.csv", f"fit.{kind}"


def comparison_table(children) -> pd.DataFrame:
    """One row per child run: overrides, status, ensemble option, its frontier's fitted alpha and L_inf and its
    gap to the oracle (on the same evaluation texts), the compared metrics."""
    import pandas as pd

    rows = []
    for run in sorted(children, key=lambda r: r.info.start_time):
        families = run.data.params.get("analysis.families", "")
        kind, _, fit = ensemble_curve(run)
        metrics = run.data.metrics
        row = {"run_name": run.info.run_name, "run_id": run.info.run_id, "status": run.info.status,
               "overrides": run.data.tags.get("hydra.overrides", ""), "families": families,
               "pool": "heterogeneous" if "," in families else "homogeneous" if families else "",
               "ensemble": kind, "ensemble.alpha": metrics.get(f"{fit}.alpha"),
               "ensemble.L_inf": metrics.get(f"{fit}.L_inf"), "ensemble.gap": metrics.get(f"gap.{kind}", 0.0)}
        row.update({m: metrics.get(m) for m in COMPARED_METRICS})
        rows.append(row)
    return pd.DataFrame(rows, columns=["run_name", "run_id", "status", "overrides", "families", "pool", "ensemble",
                                       "ensemble.alpha", "ensemble.L_inf", "ensemble.gap", *COMPARED_METRICS])


def pool_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Homogeneous vs heterogeneous jobs: how many, and the best and mean ensemble floor and exponent."""
    done = table[(table.status == "FINISHED") & (table["pool"] != "")]
    return done.groupby("pool").agg(
        jobs=("run_id", "size"), best_L_inf=("fit.ensemble.L_inf", "min"), mean_L_inf=("fit.ensemble.L_inf", "mean"),
        mean_alpha=("fit.ensemble.alpha", "mean"), best_oracle_loss=("loss.oracle_all", "min"),
    ).reset_index()


def overlay_frontiers(client: MlflowClient, children):
    """Every finished child's frontier and fitted law on log-x axes, named by its overrides and ensemble option: the
    oracle's (all texts) or the realisable option's own (evaluation texts). One panel per measure (the children's
    `analysis.measure` tag: a loss unit, or error rate), so a sweep over a corpus of texts and a task corpus shows the
    loss law and the accuracy law of the same pool side by side. None when no child has a frontier."""
    import mlflow
    import numpy as np
    import pandas as pd
    from matplotlib.figure import Figure

    panels: dict[str, list] = {}  # measure -> [(label, frontier, (A, alpha, L_inf) or None)]
    with tempfile.TemporaryDirectory() as tmp:
        for run in children:
            if run.info.status != "FINISHED":
                continue
            kind, artifact, fit = ensemble_curve(run)
            try:
                path = client.download_artifacts(run.info.run_id, artifact, tmp)
            except mlflow.exceptions.MlflowException:
                continue  # a stage=score job logs no frontier
            texts = "all" if kind == "oracle" else "evaluation"
            overrides = [o for o in run.data.tags.get("hydra.overrides", "").split()
                         if not o.startswith(("tracking.", "hydra.", "cache_dir="))]  # where, not what
            measure = run.data.tags.get("analysis.measure", run.data.params.get("loss.unit", "loss"))
            constants = tuple(run.data.metrics.get(f"{fit}.{c}") for c in ("A", "alpha", "L_inf"))
            panels.setdefault(measure, []).append((f"{' '.join(overrides) or run.info.run_name} [{kind}, {texts}]",
                                                   pd.read_csv(path), None if None in constants else constants))
    if not panels:
        return None
    fig = Figure(figsize=(8 * len(panels), 4.8))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (measure, curves) in zip(axes[0], panels.items()):
        for i, (label, front, constants) in enumerate(curves):
            colour = f"C{i % 10}"
            ax.step(front["params"], front["loss"], where="post", marker="o", ms=3, color=colour, label=label)
            if constants is not None:
                a, alpha, floor = constants
                grid = np.geomspace(front["params"].min(), front["params"].max(), 100)
                ax.plot(grid, a * grid ** -alpha + floor, color=colour, ls="--", lw=1,
                        label=f"  fit: α={alpha:.3f}, L∞={floor:.4g}")
        ax.set_xscale("log")
        ax.set_xlabel("total parameters P(S)")
        ax.set_ylabel(f"ensemble loss ({measure})")
        ax.set_title(f"Frontiers of the sweep's jobs: {measure}")
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig
