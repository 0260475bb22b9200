"""The analysis of one loss matrix: search, frontiers, fits, uncertainty, tables, figures (no I/O here).

A mmc.choices.ChoiceMatrix goes through the same analysis, its losses being errors: what differs (metric names,
labels, when an error rate's frontier is not fitted, its extra tables) is its `measure()` and `summary_tables()`."""
from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field, replace

import numpy as np

from mmc import plots
from mmc.background import Pending
from mmc.ensemble import DATA_KINDS, EnsembleConfig, EnsembleData, OracleEnsemble, SwitchingMixtureEnsemble
from mmc.ensemble.combiners import MinCombiner
from mmc.ensemble.split import split_texts
from mmc.errors import MMCError
from mmc.fit import FitConfig, PowerLawFit, compare_floor, fit_power_law, fit_table
from mmc.losses import LossConfig, LossMatrix, Measure
from mmc.realisable import (applicable_options, ensemble_frontiers, eval_split_summary, granularity_table,
                            realisable_table)
from mmc.search import SearchConfig, SearchResult, run_search, select_families
from mmc.uncertainty import bootstrap_fits, extrapolation_check, floor_reduction, heldout_optimism

log = logging.getLogger(__name__)


@dataclass
class Part:
    """What one part of an analysis adds to it; the parts after the pool's own search compute side by side."""

    fits: dict[str, PowerLawFit] = field(default_factory=dict)
    fit_skipped: dict[str, str] = field(default_factory=dict)  # curve -> why it has no fit
    metrics: dict[str, float] = field(default_factory=dict)
    extras: dict = field(default_factory=dict)  # analysis.json: search stats, floor tests, uncertainty
    figures: dict[str, bytes] = field(default_factory=dict)  # name.png -> the rendered PNG
    # frontier_<name>.csv beyond frontier.csv and single_frontier.csv: the result and, where it differs from
    # the total, the parameters each frontier subset runs per text (active_params)
    frontiers: dict[str, tuple[SearchResult, np.ndarray | None]] = field(default_factory=dict)
    tables: dict[str, list[dict]] = field(default_factory=dict)  # name.csv -> rows (realisable.csv, ...)

    def add(self, other: "Part") -> None:
        for name in ("fits", "fit_skipped", "metrics", "extras", "figures", "frontiers", "tables"):
            getattr(self, name).update(getattr(other, name))


@dataclass(kw_only=True)
class Analysis(Part):
    """The whole analysis of a loss matrix: its parts, added in order (their fits in that order), and its tables."""

    lm: LossMatrix  # the analysed pool (after search.families)
    ensemble: SearchResult
    single: SearchResult
    measure: Measure  # what the losses are: metric names and labels
    single_table: list[dict]
    fit_table: list[dict] = field(default_factory=list)


@dataclass
class Searched:
    """The pool searched and fitted as a whole: what every other part of its analysis starts from."""

    lm: LossMatrix  # after search.families
    loss: LossConfig
    search: SearchConfig
    fit: FitConfig
    measure: Measure
    weighted: np.ndarray  # (M, N) weighted losses
    ensemble: SearchResult  # the oracle frontier
    single: SearchResult
    fits: dict[str, PowerLawFit]  # single and ensemble, where fitted (with_fits)
    fit_skipped: dict[str, str]


def single_models(weighted: np.ndarray, params: np.ndarray, models: np.ndarray) -> SearchResult:
    """Every model alone: the single-model frontier."""
    members = np.eye(len(models), dtype=bool)
    return SearchResult.from_candidates("single", models, members, params, weighted.sum(axis=1))


def oracle_search(weighted: np.ndarray, lm: LossMatrix, search: SearchConfig) -> SearchResult:
    return run_search(MinCombiner(weighted), lm.params, lm.models, search)


def try_fit(name: str, result: SearchResult, fit: FitConfig, skipped: dict, measure: Measure) -> PowerLawFit | None:
    """The curve's fit, or None with the reason kept in `skipped` (too few points, no decline, a saturated or flat
    error rate, ...)."""
    try:
        reason = measure.unfit_reason(result.frontier_params, result.frontier_loss)
        if reason is not None:
            raise MMCError(reason)
        return fit_power_law(result.frontier_params, result.frontier_loss, fit.residuals, fit.robust)
    except MMCError as e:
        log.warning("no %s fit: %s", name, e)
        skipped[name] = str(e)
        return None


def fitted(curves: dict[str, SearchResult], fit: FitConfig, measure: Measure) -> Part:
    """The curves' fits, their metrics (fit.<curve>.<constant>, family pairs aside) and why any is not fitted."""
    part = Part()
    part.fits = {name: f for name, result in curves.items()
                 if (f := try_fit(name, result, fit, part.fit_skipped, measure)) is not None}
    part.metrics = fit_metrics(part.fits)
    return part


def fit_metrics(fits: dict[str, PowerLawFit], constants: tuple[str, ...] = ("alpha", "L_inf", "A")) -> dict:
    """fit.<curve>.<constant> of each curve but family pairs (many: they stay in fits.json and fit_table.csv)."""
    return {f"fit.{name}.{c}": getattr(f, c) for name, f in fits.items() if "+" not in name for c in constants}


def searched(lm: LossMatrix, loss: LossConfig, search: SearchConfig, fit: FitConfig) -> Searched:
    """The pool's oracle frontier and single models (`fits` still empty: see with_fits)."""
    lm = select_families(lm, search.families)
    measure, weighted = lm.measure(loss), lm.weighted_losses(loss)
    ensemble = oracle_search(weighted, lm, search)
    single = single_models(weighted, lm.params, lm.models)
    return Searched(lm, loss, search, fit, measure, weighted, ensemble, single, {}, {})


def with_fits(pool: Searched) -> Searched:
    """The pool with its single and ensemble fits."""
    part = fitted({"single": pool.single, "ensemble": pool.ensemble}, pool.fit, pool.measure)
    return replace(pool, fits=part.fits, fit_skipped=part.fit_skipped)


def analyze(lm: LossMatrix, loss: LossConfig, search: SearchConfig, fit: FitConfig,
            ensemble: EnsembleConfig | None = None, texts: list[str] | None = None, tokens=None) -> Analysis:
    """The whole analysis of a loss matrix; `texts` (aligned with lm.text_ids) and `tokens` (its TokenLosses)
    where the ensemble options need them.

    Each part computes in a forked child (mmc.background) as soon as what it needs is in, so an analysis keeps
    every core busy: the realisable ensembles once the pool is searched, the family groups and the uncertainty
    once it is fitted too, while this process draws the pool's own figures."""
    ensemble = ensemble or OracleEnsemble()
    pool = searched(lm, loss, search, fit)
    lm = pool.lm
    if tokens is not None and search.families is not None:
        tokens = tokens.select_models(np.flatnonzero(np.isin(tokens.models, lm.models)))
    data = EnsembleData(lm, loss, split_texts(lm.domains, ensemble.train_fraction, ensemble.seed), texts, tokens)
    with Pending(realisable_part, pool, ensemble, data) as realised:
        pool = with_fits(pool)
        with Pending(group_part, pool) as groups, Pending(uncertainty_part, pool) as spread:
            out = Analysis(lm=lm, ensemble=pool.ensemble, single=pool.single, measure=pool.measure,
                           single_table=single_model_table(lm, loss), tables=lm.summary_tables())
            out.add(pool_part(pool))
            for part in (groups, realised, spread):
                out.add(part.result())
    out.fit_table = fit_table(out.fits) if "single" in out.fits else []
    return out


def pool_part(pool: Searched) -> Part:
    """The pool's own curves: headline metrics, single and ensemble fits with their floor tests, and figures."""
    single, ensemble, fit, weighted, lm = pool.single, pool.ensemble, pool.fit, pool.weighted, pool.lm
    part = Part(fits=dict(pool.fits), fit_skipped=dict(pool.fit_skipped), metrics={
        **pool.measure.headline("best_single", float(single.frontier_loss.min())),
        **pool.measure.headline("oracle_all", float(weighted.min(axis=0).sum())),
        **{f"search.{k}": v for k, v in ensemble.stats.items() if isinstance(v, (int, float))},
        **fit_metrics(pool.fits),
    }, extras={"search_stats": ensemble.stats})
    for name, result in (("single", single), ("ensemble", ensemble)):
        if name in pool.fits:
            part.extras[f"floor_test.{name}"] = _or_reason(compare_floor, result.frontier_params,
                                                           result.frontier_loss, fit.residuals, fit.robust)
    part.figures["frontier.png"] = plots.png(plots.plot_frontier(ensemble, lm.params, single.explored_loss,
                                                                 lm.families, pool.fits, pool.measure.label))
    if not pool.measure.accuracy:  # on 0/1 errors the oracle has no pick of its own: every solving member ties
        part.figures["oracle_choice_by_domain.png"] = plots.png(
            plots.plot_oracle_choice(weighted, lm.models, lm.domains, lm.params))
    return part


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


def group_part(pool: Searched) -> Part:
    """Each family and family pair searched and fitted, drawn beside the whole pool's frontier and fit
    (homogeneous vs heterogeneous); nothing with fit.groups=false or a pool of one family."""
    if not pool.fit.groups or len(set(pool.lm.families.tolist())) < 2:
        return Part()
    curves = group_searches(pool.lm, pool.loss, pool.search)
    part = fitted(curves, pool.fit, pool.measure)
    part.extras["group_search_stats"] = {name: result.stats for name, result in curves.items()}
    frontiers = {name: (r.frontier_params, r.frontier_loss) for name, r in curves.items()}
    frontiers["all"] = (pool.ensemble.frontier_params, pool.ensemble.frontier_loss)
    fits = {**part.fits, **({"all": pool.fits["ensemble"]} if "ensemble" in pool.fits else {})}
    part.figures["homo_vs_hetero.png"] = plots.png(plots.plot_groups(frontiers, fits, pool.measure.label))
    return part


def realisable_part(pool: Searched, ensemble: EnsembleConfig, data: EnsembleData) -> Part:
    """The realisable ensembles on the evaluation texts: realisable.csv and its figure for every option that
    applies, and for a chosen option other than the oracle its frontier, fit, loss and gap beside the oracle's on
    the same texts; with token losses, the granularities too."""
    combiners, skipped = applicable_options(ensemble, data)
    if ensemble.kind not in combiners:
        raise MMCError(skipped[ensemble.kind])
    lm, measure, name = data.lm, pool.measure, ensemble.kind
    rows = realisable_table(combiners, pool.ensemble.frontier_members, lm.params, lm.models)
    split = np.full(lm.n_texts, "evaluation", dtype=object)
    split[data.split.train] = "train"
    part = Part(extras={"realisable": {"split": eval_split_summary(data), "not_applicable": skipped,
                                       **{f"{n}.rate": c.rate for n, c in combiners.items() if hasattr(c, "rate")}}},
                tables={"realisable.csv": rows,
                        "text_split.csv": [{"text_id": t, "domain": d, "split": s}
                                           for t, d, s in zip(lm.text_ids.tolist(), lm.domains.tolist(), split)]})
    part.figures["realisable.png"] = plots.png(plots.plot_realisable(
        rows, list(combiners), measure.label,
        title=f"Realisable ensembles beside the oracle (evaluation {DATA_KINDS[data.data_kind]})"))
    if name != "oracle":
        result, active, heldout = ensemble_frontiers(combiners[name], combiners["oracle"], lm.params, lm.models,
                                                     pool.search)
        part.frontiers = {f"frontier_{name}.csv": (result, active), "frontier_oracle_heldout.csv": (heldout, None)}
        beside = fitted({name: result, "oracle_heldout": heldout}, pool.fit, measure)
        part.add(beside)
        part.extras[f"search_stats.{name}"] = result.stats
        whole = rows[0]
        part.metrics.update({**measure.headline(f"{name}_all", whole[f"loss_{name}"]),
                             **measure.headline("oracle_heldout_all", whole["loss_oracle"]),
                             f"gap.{name}": whole[f"loss_{name}"] - whole["loss_oracle"]})  # >= 0 is worse
        part.figures[f"frontier_{name}.png"] = plots.png(plots.plot_frontier(
            result, lm.params, combiners[name].single_losses, lm.families, beside.fits, measure.label,
            title=f"ensemble={name} on the {len(data.split.evaluation)} evaluation {DATA_KINDS[data.data_kind]}, "
                  "beside the oracle's fit there",
            frontier_label=f"{name} frontier"))
    if data.tokens is not None and data.texts is not None:
        part.add(granularity_part(pool, ensemble, data))
    return part


def granularity_part(pool: Searched, ensemble: EnsembleConfig, data: EnsembleData) -> Part:
    """granularity.csv, the segment oracle's frontier and fit at each granularity (does the floor fall as
    collaboration gets finer?) and their figure."""
    rates = (ensemble if isinstance(ensemble, SwitchingMixtureEnsemble) else SwitchingMixtureEnsemble()).rates
    lm = data.lm
    rows, frontiers = granularity_table(data, pool.ensemble.frontier_members, lm.params, lm.models, pool.search,
                                        rates)
    part = fitted({f"segment_oracle.{g}": r for g, r in frontiers.items()}, pool.fit, pool.measure)
    part.metrics = fit_metrics(part.fits, ("alpha", "L_inf"))
    part.tables["granularity.csv"] = rows
    for row in rows:
        if row["subset"] == "pool":
            part.metrics[f"loss.segment_oracle.{row['granularity']}_all"] = row["loss_segment_oracle"]
            part.metrics[f"loss.switching_mixture.{row['granularity']}_all"] = row["loss_switching_mixture"]
    fits = {g: part.fits[f"segment_oracle.{g}"] for g in frontiers if f"segment_oracle.{g}" in part.fits}
    part.figures["granularity.png"] = plots.png(plots.plot_granularity(frontiers, fits, rows, pool.measure.label))
    return part


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


def uncertainty_part(pool: Searched) -> Part:
    """Bootstrap intervals, held-out optimism and the extrapolation check, each where it applies."""
    lm, weighted, ensemble, fit, fits, search = pool.lm, pool.weighted, pool.ensemble, pool.fit, pool.fits, pool.search
    part, weights = Part(), lm.text_weights(pool.loss.aggregate)
    out, metrics = part.extras, part.metrics
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
    return part


def _or_reason(fn, *args, **kwargs) -> dict:
    """fn's result, or {'skipped': reason} when its input cannot support it (too few points, ...)."""
    try:
        return fn(*args, **kwargs)
    except MMCError as e:
        log.warning("%s skipped: %s", fn.__name__, e)
        return {"skipped": str(e)}
