"""How far to trust the fitted constants: bootstrap over texts, held-out selection, extrapolation.

Inputs follow mmc.losses: `weighted` is C (M, N) with C[i, x] = w_x * L_i(x), so the oracle loss of
a subset S is C[S].min(0).sum(); `weights` are the w_x folded into C (LossMatrix.text_weights;
None means uniform, the `mean` aggregate). Resampled or split losses are renormalised by the
weights they keep, so they stay means (or ratios of sums) over the texts they use.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np

from mmc.ensemble.combiners import MinCombiner
from mmc.errors import MMCError
from mmc.fit import CONFIDENCE, PowerLawFit, fit_power_law, refit
from mmc.losses import check_finite
from mmc.pareto import pareto_front
from mmc.progress import bar

log = logging.getLogger(__name__)


def _check_weighted(weighted, weights) -> tuple[np.ndarray, np.ndarray]:
    weighted = np.asarray(weighted, dtype=np.float64)
    if weighted.ndim != 2:
        raise MMCError(f"weighted losses need a (models x texts) matrix, got shape {weighted.shape}; "
                       "pass LossMatrix.weighted_losses(...)")
    check_finite(np.arange(len(weighted)).astype(str), weighted)
    n = weighted.shape[1]
    weights = np.full(n, 1.0 / n) if weights is None else np.asarray(weights, dtype=np.float64)
    if weights.shape != (n,) or (weights <= 0).any():
        raise MMCError(f"text weights need shape ({n},) and positive values; pass LossMatrix.text_weights(...)")
    return weighted, weights


def _check_params(params, n_models: int) -> np.ndarray:
    params = np.asarray(params, dtype=np.float64)
    if params.shape != (n_models,) or (params <= 0).any():
        raise MMCError(f"params {params.shape} need one positive count per model ({n_models}); pass LossMatrix.params")
    return params


def _check_members(members, n_models: int) -> np.ndarray:
    members = np.asarray(members, dtype=bool)
    if members.ndim != 2 or members.shape[1] != n_models or len(members) == 0:
        raise MMCError(f"members has shape {members.shape}; pass a bool (subsets x {n_models}) matrix")
    if not members.any(axis=1).all():
        raise MMCError("some candidate subsets are empty; every row of members needs a model")
    return members


def resampled_losses(weighted, members, counts, weights=None, chunk: int = 256) -> np.ndarray:
    """Oracle loss of every subset under every resample: (S, B).

    counts (N, B) says how often each text is drawn in each resample. Per-subset per-text minima
    are computed once (chunks of `chunk` subsets, float64), then all resamples are one product;
    each column is divided by the weight it holds, sum_x counts[x, b] * w_x.
    """
    weighted, weights = _check_weighted(weighted, weights)
    members = _check_members(members, len(weighted))
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != weighted.shape[1] or (counts < 0).any():
        raise MMCError(f"counts has shape {counts.shape}; pass non-negative draws (texts x resamples)")
    out = np.empty((len(members), counts.shape[1]))
    starts = range(0, len(members), chunk)
    for start in bar(starts, desc="resampled losses"):
        rows = members[start:start + chunk]
        minima = np.stack([weighted[row].min(axis=0) for row in rows])
        out[start:start + chunk] = minima @ counts
    return out / (weights @ counts)


@dataclass
class Bootstrap:
    """Refitted constants of one curve over bootstrap resamples of the texts (NaN: refit failed)."""

    curve: str
    fit: PowerLawFit  # the fit on all texts
    A: np.ndarray  # (B,)
    alpha: np.ndarray  # (B,)
    L_inf: np.ndarray  # (B,)
    n_failed: int  # resamples whose frontier could not be fitted
    n_flagged: int  # resamples whose fit has notes (a constant at a bound, ...)

    def interval(self, name: str, level: float = CONFIDENCE) -> tuple[float, float]:
        """Percentile interval of `name` (A, alpha or L_inf) over the successful resamples."""
        values = getattr(self, name)
        if np.isnan(values).all():
            return (float("nan"), float("nan"))
        lo, hi = np.nanpercentile(values, [50 * (1 - level), 50 * (1 + level)])
        return (float(lo), float(hi))

    def to_dict(self) -> dict:
        out = {"curve": self.curve, "n_resamples": len(self.alpha), "n_failed": self.n_failed,
               "n_flagged": self.n_flagged}
        for name in ("A", "alpha", "L_inf"):
            out[f"{name}_boot_ci"] = [None if np.isnan(v) else v for v in self.interval(name)]
        return out


def bootstrap_fits(weighted, params, members, n_resamples: int = 200, seed: int = 0, weights=None,
                   residuals: str = "log", robust: str = "linear") -> dict[str, Bootstrap]:
    """Resample texts with replacement, recompute the frontier among `members`, refit; per curve.

    members (S, M) bool: the candidate subsets (explored frontier subsets plus the single models).
    Curves: "ensemble" (frontier over all candidates) and "single" (over one-model candidates,
    when there are any). Each resample re-selects its frontier, as the full analysis does, so the
    intervals include that selection (its downward bias too: a min over noisy losses is optimistic,
    so the all-texts estimate can sit near an interval's edge). Each refit starts from the
    all-texts fit. Resample b draws texts
    `np.random.default_rng(seed).multinomial(N, [1/N] * N, size=n_resamples)[b]` times each.
    Raises MMCError on mismatched shapes or n_resamples < 1; resamples whose refit raises are
    counted in `n_failed` (warned); a curve whose all-texts fit raises is left out (warned).
    """
    weighted, weights = _check_weighted(weighted, weights)
    params = _check_params(params, len(weighted))
    members = _check_members(members, len(params))
    if n_resamples < 1:
        raise MMCError(f"n_resamples={n_resamples}; ask for at least 1 bootstrap resample (fit.bootstrap)")
    n_texts = weighted.shape[1]
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n_texts, np.full(n_texts, 1.0 / n_texts), size=n_resamples).T
    counts = np.concatenate([np.ones((n_texts, 1)), draws], axis=1)  # column 0: all texts once
    losses = resampled_losses(weighted, members, counts, weights)
    cost = members @ params

    curves = {"ensemble": np.ones(len(members), dtype=bool)}
    if (members.sum(axis=1) == 1).any():
        curves["single"] = members.sum(axis=1) == 1
    out = {}
    for curve, rows in curves.items():
        front = pareto_front(cost[rows], losses[rows, 0])
        try:
            full = fit_power_law(cost[rows][front], losses[rows, 0][front], residuals, robust)
        except MMCError as err:
            log.warning("bootstrap: no %s curve, its all-texts fit failed: %s", curve, err)
            continue
        constants = np.full((3, n_resamples), np.nan)
        failures, n_flagged = [], 0
        for b in bar(range(n_resamples), desc=f"bootstrap {curve}"):
            front = pareto_front(cost[rows], losses[rows, b + 1])
            try:
                constants[:, b], notes = refit(cost[rows][front], losses[rows, b + 1][front], full, residuals, robust)
            except MMCError as err:
                failures.append(str(err))
                continue
            n_flagged += bool(notes)
        if failures:
            log.warning("bootstrap %s: %d of %d refits failed, e.g. %s", curve, len(failures), n_resamples, failures[0])
        out[curve] = Bootstrap(curve, full, *constants, n_failed=len(failures), n_flagged=n_flagged)
    return out


def floor_reduction(boots: dict[str, Bootstrap], curve: str = "ensemble", reference: str = "single",
                    level: float = CONFIDENCE) -> dict:
    """Floor reduction 100 * (1 - L_inf[curve] / L_inf[reference]) in %, with its bootstrap interval.

    Both curves come from the same resamples, so the interval accounts for their correlation.
    """
    missing = {curve, reference} - set(boots)
    if missing:
        raise MMCError(f"bootstrap curves {sorted(missing)} missing; include single models among the candidates")
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = 100.0 * (1.0 - boots[curve].L_inf / boots[reference].L_inf)
    pct = pct[np.isfinite(pct)]
    estimate = 100.0 * (1.0 - boots[curve].fit.L_inf / boots[reference].fit.L_inf)
    if len(pct) == 0:
        return {"floor_reduction_pct": estimate, "ci": [None, None], "n": 0}
    lo, hi = np.percentile(pct, [50 * (1 - level), 50 * (1 + level)])
    return {"floor_reduction_pct": estimate, "ci": [float(lo), float(hi)], "n": len(pct)}


def heldout_optimism(weighted, params, search_fn: Callable[[np.ndarray], np.ndarray], seed: int = 0,
                     weights=None, residuals: str = "log", robust: str = "linear") -> dict:
    """Optimism of frontier selection: choose subsets on half A of the texts, score them on half B.

    `search_fn(weighted_A) -> members (F, M) bool` runs a search strategy on half A (its columns
    renormalised so losses are means over A). The frontier's in-sample loss on A is optimistic: it
    was picked for being low there. `optimism_*` is loss on B minus loss on A over frontier subsets;
    `single_gap_mean` is the same gap averaged over single models (no selection: the split's noise).
    Curves fitted to the in-sample and held-out losses show how much the constants move.
    """
    weighted, weights = _check_weighted(weighted, weights)
    params = _check_params(params, len(weighted))
    n_texts = weighted.shape[1]
    if n_texts < 2:
        raise MMCError("held-out check needs at least 2 texts; use a larger corpus or fit.heldout=false")
    order = np.random.default_rng(seed).permutation(n_texts)
    half_a, half_b = np.sort(order[: n_texts // 2]), np.sort(order[n_texts // 2:])
    weighted_a = weighted[:, half_a] / weights[half_a].sum()
    weighted_b = weighted[:, half_b] / weights[half_b].sum()
    members = _check_members(search_fn(weighted_a), len(params))
    loss_in, loss_out = MinCombiner(weighted_a).subset_losses(members), MinCombiner(weighted_b).subset_losses(members)
    cost = members @ params
    gap = loss_out - loss_in
    out = {
        "n_frontier": len(members), "n_texts_a": len(half_a), "n_texts_b": len(half_b),
        "params": cost.tolist(), "loss_in": loss_in.tolist(), "loss_out": loss_out.tolist(),
        "optimism_mean": float(gap.mean()), "optimism_max": float(gap.max()),
        "optimism_rel_mean": float((gap / loss_in).mean()),
        "single_gap_mean": float((weighted_b.sum(axis=1) - weighted_a.sum(axis=1)).mean()),
    }
    for name, loss in (("in_sample", loss_in), ("held_out", loss_out)):
        try:
            out[f"fit_{name}"] = fit_power_law(cost, loss, residuals, robust).to_dict()
        except MMCError as err:
            log.warning("held-out check: no %s fit: %s", name, err)
            out[f"fit_{name}"] = None
    return out


def extrapolation_check(params, losses, decades: float = 1.0, residuals: str = "log",
                        robust: str = "linear") -> dict:
    """Fit on points below the top `decades` of params, predict the points above, report the error.

    Relative errors are |predicted / observed - 1|. Raises MMCError when no point lies in the top
    decade(s) or too few lie below it (from fit_power_law).
    """
    params = np.asarray(params, dtype=np.float64)
    losses = np.asarray(losses, dtype=np.float64)
    if decades <= 0:
        raise MMCError(f"decades={decades}; hold out a positive number of decades of params")
    cut = params.max() / 10.0 ** decades
    train, test = params <= cut, params > cut
    if train.sum() == 0:
        raise MMCError(f"params span less than {decades} decade(s); hold out fewer decades (fit.extrapolation_decades)")
    fit = fit_power_law(params[train], losses[train], residuals, robust)
    rel_err = np.abs(fit.predict(params[test]) / losses[test] - 1.0)
    return {
        "decades": decades, "cut_params": float(cut), "n_train": int(train.sum()), "n_test": int(test.sum()),
        "mean_abs_rel_error": float(rel_err.mean()), "max_abs_rel_error": float(rel_err.max()),
        "fit_train": fit.to_dict(),
    }
