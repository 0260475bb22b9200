"""The analysis of one loss matrix: search, frontiers, fits, uncertainty, tables, figures (no I/O here)."""
from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field

import numpy as np

from mmc import plots
from mmc.ensemble import EnsembleConfig, EnsembleData, OracleEnsemble
from mmc.ensemble.combiners import MinCombiner
from mmc.ensemble.split import split_texts
from mmc.errors import MMCError
from mmc.fit import FitConfig, PowerLawFit, compare_floor, fit_power_law, fit_table
from mmc.losses import LossConfig, LossMatrix
from mmc.realisable import applicable_options, ensemble_frontiers, eval_split_summary, realisable_table
from mmc.search import SearchConfig, SearchResult, run_search, select_families
from mmc.uncertainty import bootstrap_fits, extrapolation_check, floor_reduction, heldout_optimism

log = logging.getLogger(__name__)


@dataclass
class Analysis:
    lm: LossMatrix  # the analysed pool (after search.families)
    ensemble: SearchResult
    single: SearchResult
    fits: dict[str, PowerLawFit]
    fit_table: list[dict]
    single_table: list[dict]
    metrics: dict[str, float]
    extras: dict = field(default_factory=dict)  # analysis.json: search stats, floor tests, uncertainty
    figures: dict = field(default_factory=dict)  # name.png -> matplotlib Figure
    # frontier_<name>.csv beyond frontier.csv and single_frontier.csv: the result and, where it differs from
    # the total, the parameters each frontier subset runs per text (active_params)
    frontiers: dict[str, tuple[SearchResult, np.ndarray | None]] = field(default_factory=dict)
    tables: dict[str, list[dict]] = field(default_factory=dict)  # name.csv -> rows (realisable.csv, ...)


def single_models(weighted: np.ndarray, params: np.ndarray, models: np.ndarray) -> SearchResult:
    """Every model alone: the single-model frontier."""
    members = np.eye(len(models), dtype=bool)
    return SearchResult.from_candidates("single", models, members, params, weighted.sum(axis=1))


def oracle_search(weighted: np.ndarray, lm: LossMatrix, search: SearchConfig) -> SearchResult:
    return run_search(MinCombiner(weighted), lm.params, lm.models, search)


def try_fit(name: str, result: SearchResult, fit: FitConfig, skipped: dict) -> PowerLawFit | None:
    """The curve's fit, or None with the reason kept in `skipped` (too few points, no decline, ...)."""
    try:
        return fit_power_law(result.frontier_params, result.frontier_loss, fit.residuals, fit.robust)
    except MMCError as e:
        log.warning("no %s fit: %s", name, e)
        skipped[name] = str(e)
        return None


def group_searches(lm: LossMatrix, loss: LossConfig, search: SearchConfig) -> dict[str, SearchResult]:
    """Each family alone (homogeneous, named by the family) and each pair ('a+b'), searched alike."""
    families = sorted(set(lm.families.tolist()))
    groups = {f: [f] for f in families}
    groups.update({f"{a}+{b}": [a, b] for a, b in itertools.combinations(families, 2)})
    out = {}
    for name, members in groups.items():
        sub = select_families(lm, members)
        out[name] = oracle_search(sub.weighted_losses(loss), sub, search)
    return out


def analyze(lm: LossMatrix, loss: LossConfig, search: SearchConfig, fit: FitConfig,
            ensemble: EnsembleConfig | None = None, texts: list[str] | None = None) -> Analysis:
    """The whole analysis of a loss matrix; `texts` (aligned with lm.text_ids) where the ensemble option needs them."""
    ensemble = ensemble or OracleEnsemble()
    lm = select_families(lm, search.families)
    weighted = lm.weighted_losses(loss)
    ensemble_result = oracle_search(weighted, lm, search)
    single = single_models(weighted, lm.params, lm.models)
    curves = {"single": single, "ensemble": ensemble_result}
    if fit.groups and len(set(lm.families.tolist())) > 1:
        curves.update(group_searches(lm, loss, search))

    skipped: dict[str, str] = {}
    fits = {name: f for name, result in curves.items() if (f := try_fit(name, result, fit, skipped)) is not None}
    metrics = {
        "loss.best_single": float(single.frontier_loss.min()),
        "loss.oracle_all": float(weighted.min(axis=0).sum()),
        **{f"search.{k}": v for k, v in ensemble_result.stats.items() if isinstance(v, (int, float))},
    }
    for name, f in fits.items():
        if "+" not in name:  # family pairs are many: they stay in fits.json and fit_table.csv
            metrics.update({f"fit.{name}.alpha": f.alpha, f"fit.{name}.L_inf": f.L_inf, f"fit.{name}.A": f.A})
    groups = {n: r for n, r in curves.items() if n not in ("single", "ensemble")}
    extras = {"search_stats": ensemble_result.stats, "fit_skipped": skipped,
              "group_search_stats": {n: r.stats for n, r in groups.items()}}
    for name in ("single", "ensemble"):
        if name in fits:
            extras[f"floor_test.{name}"] = _or_reason(compare_floor, curves[name].frontier_params,
                                                      curves[name].frontier_loss, fit.residuals, fit.robust)
    table = fit_table(fits) if "single" in fits else []
    extras.update(uncertainty(lm, weighted, ensemble_result, loss, search, fit, metrics, fits))

    unit_label = loss.unit.replace("_", " ")
    figures = {
        "frontier.png": plots.plot_frontier(ensemble_result, lm.params, single.explored_loss, lm.families,
                                            {n: fits[n] for n in ("single", "ensemble") if n in fits}, unit_label),
        "oracle_choice_by_domain.png": plots.plot_oracle_choice(weighted, lm.models, lm.domains, lm.params),
    }
    if groups:
        frontiers = {n: (r.frontier_params, r.frontier_loss) for n, r in groups.items()}
        frontiers["all"] = (ensemble_result.frontier_params, ensemble_result.frontier_loss)
        group_fits = {("all" if n == "ensemble" else n): f for n, f in fits.items() if n != "single"}
        figures["homo_vs_hetero.png"] = plots.plot_groups(frontiers, group_fits, unit_label)
    singles = single_model_table(lm, loss)
    out = Analysis(lm, ensemble_result, single, fits, table, singles, metrics, extras, figures)
    realisable(out, ensemble, EnsembleData(lm, loss, split_texts(lm.domains, ensemble.train_fraction, ensemble.seed),
                                           texts), search, fit, unit_label)
    return out


def realisable(out: Analysis, ensemble: EnsembleConfig, data: EnsembleData, search: SearchConfig, fit: FitConfig,
               unit_label: str) -> None:
    """Add to `out` the realisable ensembles on the evaluation texts: realisable.csv and its figure for every
    option that applies, and for a chosen option other than the oracle its frontier, fit, loss and gap beside
    the oracle's on the same texts."""
    combiners, skipped = applicable_options(ensemble, data)
    if ensemble.kind not in combiners:
        raise MMCError(skipped[ensemble.kind])
    lm = data.lm
    rows = realisable_table(combiners, out.ensemble.frontier_members, lm.params, lm.models)
    out.tables["realisable.csv"] = rows
    split = np.full(lm.n_texts, "evaluation", dtype=object)
    split[data.split.train] = "train"
    out.tables["text_split.csv"] = [{"text_id": t, "domain": d, "split": s}
                                    for t, d, s in zip(lm.text_ids.tolist(), lm.domains.tolist(), split)]
    out.figures["realisable.png"] = plots.plot_realisable(rows, list(combiners), unit_label)
    out.extras["realisable"] = {"split": eval_split_summary(data), "not_applicable": skipped}
    name = ensemble.kind
    if name == "oracle":
        return
    result, active, heldout = ensemble_frontiers(combiners[name], combiners["oracle"], lm.params, lm.models, search)
    out.frontiers[f"frontier_{name}.csv"] = (result, active)
    out.frontiers["frontier_oracle_heldout.csv"] = (heldout, None)
    curves = {name: result, "oracle_heldout": heldout}
    skipped_fits = out.extras.setdefault("fit_skipped", {})
    new_fits = {n: f for n, r in curves.items() if (f := try_fit(n, r, fit, skipped_fits)) is not None}
    out.fits.update(new_fits)
    out.fit_table = fit_table(out.fits) if "single" in out.fits else out.fit_table
    out.extras[f"search_stats.{name}"] = result.stats
    pool = rows[0]
    out.metrics.update({f"loss.{name}_all": pool[f"loss_{name}"], "loss.oracle_heldout_all": pool["loss_oracle"],
                        f"gap.{name}": pool[f"loss_{name}"] - pool["loss_oracle"]})
    for curve, f in new_fits.items():
        out.metrics.update({f"fit.{curve}.alpha": f.alpha, f"fit.{curve}.L_inf": f.L_inf, f"fit.{curve}.A": f.A})
    single_losses = combiners[name].single_losses
    out.figures[f"frontier_{name}.png"] = plots.plot_frontier(
        result, lm.params, single_losses, lm.families, new_fits, unit_label,
        title=f"ensemble={name} on the {len(data.split.evaluation)} evaluation texts, beside the oracle's fit there",
        frontier_label=f"{name} frontier")


def single_model_table(lm: LossMatrix, loss: LossConfig | None = None) -> list[dict]:
    """Rows {name, family, params, loss_<domain> for each domain, loss}, sorted by family then params: the
    single_model_table.csv of every run. A domain's loss aggregates over its texts only, as the overall one does."""
    loss = loss or LossConfig()
    weighted = lm.weighted_losses(loss)
    columns = {"loss": weighted.sum(axis=1)}
    weights = lm.text_weights(loss.aggregate)
    for domain in np.unique(lm.domains):
        mask = lm.domains == domain
        columns[f"loss_{domain}"] = weighted[:, mask].sum(axis=1) / weights[mask].sum()
    domains = sorted(k for k in columns if k != "loss")
    rows = [{"name": str(lm.models[i]), "family": str(lm.families[i]), "params": int(lm.params[i]),
             **{k: float(columns[k][i]) for k in domains + ["loss"]}} for i in range(lm.n_models)]
    return sorted(rows, key=lambda r: (r["family"], r["params"], r["name"]))


def uncertainty(lm, weighted, ensemble, loss, search, fit, metrics, fits) -> dict:
    """Bootstrap intervals, held-out optimism and the extrapolation check, each where it applies."""
    out, weights = {}, lm.text_weights(loss.aggregate)
    if fit.bootstrap and {"single", "ensemble"} <= set(fits):
        candidates = np.vstack([ensemble.frontier_members, np.eye(lm.n_models, dtype=bool)])
        boots = bootstrap_fits(weighted, lm.params, candidates, fit.bootstrap, fit.seed, weights,
                               residuals=fit.residuals, robust=fit.robust)
        out["bootstrap"] = {name: b.to_dict() for name, b in boots.items()}
        out["bootstrap"]["floor_reduction"] = floor_reduction(boots)
        for name, b in boots.items():
            for constant in ("alpha", "L_inf"):
                lo, hi = b.interval(constant)
                metrics[f"fit.{name}.{constant}_boot_lo"], metrics[f"fit.{name}.{constant}_boot_hi"] = lo, hi
    if fit.heldout and lm.n_texts >= 4:
        def search_half(weighted_half):
            return oracle_search(weighted_half, lm, search).frontier_members

        out["heldout"] = _or_reason(heldout_optimism, weighted, lm.params, search_half, fit.seed, weights,
                                    residuals=fit.residuals, robust=fit.robust)
        if "optimism_mean" in out["heldout"]:
            metrics["heldout.optimism_mean"] = out["heldout"]["optimism_mean"]
    if fit.extrapolation and "ensemble" in fits:
        out["extrapolation"] = _or_reason(extrapolation_check, ensemble.frontier_params, ensemble.frontier_loss,
                                          fit.extrapolation_decades, fit.residuals, fit.robust)
        if "mean_abs_rel_error" in out["extrapolation"]:
            metrics["extrapolation.mean_abs_rel_error"] = out["extrapolation"]["mean_abs_rel_error"]
    return out


def _or_reason(fn, *args, **kwargs) -> dict:
    """fn's result, or {'skipped': reason} when its input cannot support it (too few points, ...)."""
    try:
        return fn(*args, **kwargs)
    except MMCError as e:
        log.warning("%s skipped: %s", fn.__name__, e)
        return {"skipped": str(e)}
