"""Power-law fits L(P) = A * P^(-alpha) + L_inf of loss against total parameters (lmfit).

`A` is reported for P in raw parameters (a count, not billions), but the optimiser sees
x = P / P_scale with P_scale the geometric mean of the fitted P, so A, alpha and L_inf are all of
order one inside it. For a fixed alpha the model is linear in (A, L_inf): the start point comes from
a scan of alpha with a bounded linear solve at each value, and lmfit (scipy least_squares) refines it.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from mmc.errors import MMCError
from mmc.registry import Option, Registry, choices

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Residual:
    """How a fitted curve's misfit is measured at each point, f(model, data), and its derivative in the model
    value, df/dmodel (the solver's analytic Jacobian: exact, and a quarter of the evaluations of 2-point
    differences)."""

    value: Callable[[np.ndarray, np.ndarray], np.ndarray]
    slope: Callable[[np.ndarray, np.ndarray], np.ndarray]

    def __call__(self, model, y):
        return self.value(model, y)


RESIDUALS = Registry("residuals", [
    Option("log", Residual(lambda model, y: np.log(model) - np.log(y), lambda model, y: 1.0 / model)),
    Option("relative", Residual(lambda model, y: model / y - 1.0, lambda model, y: np.broadcast_to(1.0 / y, model.shape))),
])
ROBUST = ("linear", "soft_l1", "huber", "cauchy", "arctan")  # scipy least_squares losses; linear: plain squares
CONFIDENCE = 0.95
ALPHA_GRID = np.geomspace(0.01, 5.0, 120)
# scipy least_squares settings, given to lmfit and to refit alike (lmfit's defaults but the Jacobian, stated so that
# both solve the same problem the same way); lmfit's budget for 3 varying constants is 2 * 2000 * (3 + 1) evaluations
SOLVER = dict(ftol=1e-8, xtol=1e-8, gtol=1e-8, x_scale=1.0)  # scipy: method trf
LMFIT_MAX_NFEV = 2 * 2000 * (3 + 1)


@dataclass
class FitConfig:
    """Power-law fits and their uncertainty (mmc.fit, mmc.uncertainty)."""

    residuals: str = field(default="log", metadata=choices(RESIDUALS))
    robust: str = field(default="linear", metadata=choices(ROBUST))  # soft_l1 ... damp outliers
    bootstrap: int = 200  # resamples over texts; 0 to skip
    heldout: bool = True  # choose the frontier on half the texts, score it on the other half
    extrapolation: bool = True  # fit below the top decade(s) of params, predict them
    extrapolation_decades: float = 1.0
    groups: bool = True  # also fit each family alone, family pairs and all families
    seed: int = 0

    def check(self, path: str) -> None:
        if self.bootstrap < 0:
            raise MMCError(f"{path}.bootstrap={self.bootstrap}; use 0 (no bootstrap) or a number of resamples")
        if self.extrapolation_decades <= 0:
            raise MMCError(f"{path}.extrapolation_decades={self.extrapolation_decades}; hold out a positive number")


@dataclass
class PowerLawFit:
    """A fitted curve. `A` is for P in raw parameters; `*_ci` are 95 % intervals (NaN: unavailable).

    With floor=False the floor is fixed at 0 (L_inf = 0, stderr 0). `notes` say why a fit may be
    unreliable (a parameter at its bound, no degrees of freedom); fit_power_law logs them as warnings.
    """

    A: float
    alpha: float
    L_inf: float
    A_stderr: float
    alpha_stderr: float
    L_inf_stderr: float
    A_ci: tuple[float, float]
    alpha_ci: tuple[float, float]
    L_inf_ci: tuple[float, float]
    residuals: np.ndarray  # (n,), in the order of the input points
    n_points: int
    params_range: tuple[float, float]  # smallest and largest fitted P
    aic: float
    bic: float
    floor: bool
    residual_kind: str
    robust: str
    notes: list[str] = field(default_factory=list)

    def predict(self, params) -> np.ndarray:
        """Loss at total parameters `params` (raw counts)."""
        return self.A * np.asarray(params, dtype=np.float64) ** -self.alpha + self.L_inf

    def to_dict(self) -> dict:
        """JSON-ready (NaN becomes None): the fits.json entry of one curve."""
        def num(v):
            return None if not math.isfinite(v) else float(v)

        out = {"param_unit": "parameters (raw count)", "n_points": self.n_points, "floor": self.floor,
               "params_range": [float(v) for v in self.params_range],
               "residuals": self.residual_kind, "robust": self.robust,
               "aic": num(self.aic), "bic": num(self.bic), "notes": list(self.notes)}
        for name in ("A", "alpha", "L_inf"):
            out[name] = num(getattr(self, name))
            out[f"{name}_stderr"] = num(getattr(self, f"{name}_stderr"))
            out[f"{name}_ci"] = [num(v) for v in getattr(self, f"{name}_ci")]
        return out


def _check_points(params, losses, n_fitted: int) -> tuple[np.ndarray, np.ndarray]:
    params = np.asarray(params, dtype=np.float64).ravel()
    losses = np.asarray(losses, dtype=np.float64).ravel()
    if params.shape != losses.shape:
        raise MMCError(f"params ({params.size}) and losses ({losses.size}) differ in length; pass one loss per point")
    if not (np.isfinite(params).all() and np.isfinite(losses).all()):
        raise MMCError("non-finite params or losses; drop those points before fitting")
    if (params <= 0).any():
        raise MMCError(f"{int((params <= 0).sum())} points with non-positive params; every point needs P > 0")
    if (losses <= 0).any():
        raise MMCError(f"{int((losses <= 0).sum())} points with non-positive loss; a power law needs losses > 0")
    if len(np.unique(params)) < n_fitted:
        raise MMCError(f"{len(np.unique(params))} distinct param counts for {n_fitted} fitted constants; "
                       "fit a frontier with more points")
    if np.ptp(losses) <= 1e-12 * losses.max():
        raise MMCError(f"all {len(losses)} losses are equal; a flat curve has no scaling law to fit")
    slope = np.polyfit(np.log(params), np.log(losses), 1)[0]
    if slope >= 0:
        raise MMCError(f"losses do not fall as params grow (log-log slope {slope:+.3g}); a power law with "
                       "alpha > 0 cannot describe them: check that these are frontier points")
    return params, losses


def _scan_start(x: np.ndarray, y: np.ndarray, floor: bool, residual) -> tuple[float, float, float]:
    """Best (A, alpha, L_inf) over ALPHA_GRID, with (A, L_inf) from a bounded linear solve at each alpha.

    The linear solve minimises sum((A x^-alpha + L_inf) / y - 1)^2 (relative error, which matches
    both residual kinds to first order) over the box A >= 0, 0 <= L_inf <= min(y): a convex
    quadratic in two variables, so its optimum is the interior solution when feasible, else on an
    edge L_inf = 0 or L_inf = min(y). All alphas are solved at once; the final choice among them
    uses the true residuals.
    """
    g = x[None, :] ** -ALPHA_GRID[:, None] / y  # (n_alpha, n): the A column, weighted by 1/y
    h = 1.0 / y  # the L_inf column
    gg, gh, hh, g1, h1 = (g * g).sum(1), (g * h).sum(1), (h * h).sum(), g.sum(1), h.sum()

    def edge(l_inf):  # best A >= 0 with L_inf fixed
        return np.maximum((g1 - l_inf * gh) / gg, 0.0), np.full_like(gg, l_inf)

    candidates = [edge(0.0)]
    if floor:
        det = gg * hh - gh ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            a_in, l_in = (hh * g1 - gh * h1) / det, (gg * h1 - gh * g1) / det
        inside = (a_in >= 0) & (l_in >= 0) & (l_in <= y.min())
        candidates += [edge(float(y.min())), (np.where(inside, a_in, np.nan), np.where(inside, l_in, np.nan))]
    best, best_cost = None, np.inf
    for a, l_inf in candidates:
        model = a[:, None] * g * y + l_inf[:, None]  # (n_alpha, n)
        with np.errstate(divide="ignore", invalid="ignore"):
            cost = np.sum(residual(model, y[None, :]) ** 2, axis=1)
        cost[~np.isfinite(cost) | (a <= 0)] = np.inf
        i = int(np.argmin(cost))
        if cost[i] < best_cost:
            best, best_cost = (float(a[i]), float(ALPHA_GRID[i]), float(l_inf[i])), cost[i]
    if best is None:
        raise MMCError("no power law with A > 0 fits these points; check that losses fall with params")
    return best


def fit_power_law(params, losses, residuals: str = "log", robust: str = "linear", floor: bool = True,
                  start: PowerLawFit | None = None, warn: bool = True) -> PowerLawFit:
    """Fit L(P) = A * P^(-alpha) + L_inf (floor=False: L_inf = 0) to points (params, losses).

    Bounds: A >= 0, alpha >= 0 (a fit at 0 is flagged), 0 <= L_inf <= min(losses). `residuals`:
    "log" (log model - log data) or "relative" (model / data - 1); `robust`: a scipy least_squares
    loss ("linear" is plain least squares; "soft_l1", "huber", "cauchy", "arctan" damp outliers).
    `start`: a previous fit to start from instead of the alpha scan (the bootstrap's warm start).
    Intervals are Wald intervals with Student-t quantiles (n - k degrees of freedom); A's is
    symmetric in log A. AIC/BIC use the sum of squared residuals: n log(RSS / n) + k (2 or log n).

    Raises MMCError: lengths differ, non-finite values, params <= 0, losses <= 0, fewer distinct
    params than fitted constants (3, or 2 without floor), losses all equal or rising with params,
    unknown `residuals`/`robust`. Warns (logging; recorded in `notes` either way, logged only when
    `warn`): as many points as constants (no uncertainties), a singular covariance, alpha or L_inf
    at a bound, no convergence.
    """
    import lmfit  # with scipy.stats: slow to import, so not at start-up
    from scipy import stats

    k = 3 if floor else 2
    params, losses, x, scale, residual, (a0, alpha0, l0) = _problem(params, losses, residuals, robust, floor, start)
    n, l_max = len(losses), float(losses.min())
    pars = lmfit.Parameters()
    pars.add("A", value=a0, min=0.0)
    pars.add("alpha", value=alpha0, min=0.0)
    pars.add("L_inf", value=l0, min=0.0, max=l_max, vary=floor)

    def objective(p):
        return _residuals(p["A"].value, p["alpha"].value, p["L_inf"].value, x, losses, residual)

    def jacobian(p):  # columns of the varying constants only
        return _jacobian(p["A"].value, p["alpha"].value, p["L_inf"].value, x, losses, residual)[:, :k]

    result = lmfit.minimize(objective, pars, method="least_squares", loss=robust, jac=jacobian, **SOLVER)
    a_s, alpha, l_inf = (float(result.params[name].value) for name in ("A", "alpha", "L_inf"))
    rss = float(np.sum(result.residual ** 2))
    notes = []

    # Standard errors from lmfit's covariance (scaled by the reduced chi-square), A moved to raw P
    # by the delta method: A = A_s * scale^alpha.
    names = list(result.var_names)
    cov = result.covar if result.covar is not None else np.full((k, k), np.nan)
    if result.covar is None:
        notes.append("covariance unavailable (singular Jacobian): no standard errors")
    if n == k:
        notes.append(f"{n} points for {k} constants: an exact fit, no uncertainties")
        cov = np.full((k, k), np.nan)
    a_raw = a_s * scale ** alpha
    grad = np.array([scale ** alpha, a_raw * math.log(scale)] + [0.0] * (k - 2))
    var = {"A": float(grad @ cov @ grad), "alpha": float(cov[names.index("alpha"), names.index("alpha")])}
    var["L_inf"] = float(cov[names.index("L_inf"), names.index("L_inf")]) if floor else 0.0
    err = {name: math.sqrt(v) if v >= 0 else math.nan for name, v in var.items()}

    t = float(stats.t.ppf(0.5 + CONFIDENCE / 2, max(n - k, 1)))
    # A > 0: its interval is symmetric in log A, so it never goes negative; a poorly identified A
    # (relative error in the hundreds) gets the interval (0, inf) rather than an overflow
    with np.errstate(over="ignore"):
        a_spread = float(np.exp(t * err["A"] / a_raw)) if a_raw > 0 else math.nan
    a_ci = (a_raw / a_spread, a_raw * a_spread)
    # intervals cut to the constraints the fit imposes (alpha >= 0, 0 <= L_inf <= min(losses)):
    # the truth lies inside them, so coverage is unchanged
    alpha_ci = (max(alpha - t * err["alpha"], 0.0), alpha + t * err["alpha"])
    l_ci = (max(l_inf - t * err["L_inf"], 0.0), min(l_inf + t * err["L_inf"], l_max))

    notes += _bound_notes(a_s, alpha, l_inf, l_max, floor, result.success, result.message)

    if warn:
        for note in notes:
            log.warning("power-law fit on %d points: %s", n, note)
    misfit = n * math.log(rss / n) if rss > 0 else -math.inf
    return PowerLawFit(
        A=a_raw, alpha=alpha, L_inf=l_inf, A_stderr=err["A"], alpha_stderr=err["alpha"], L_inf_stderr=err["L_inf"],
        A_ci=a_ci, alpha_ci=alpha_ci, L_inf_ci=l_ci, residuals=np.asarray(result.residual, dtype=np.float64),
        n_points=n, params_range=(float(params.min()), float(params.max())),
        aic=misfit + 2 * k, bic=misfit + k * math.log(n),
        floor=floor, residual_kind=residuals, robust=robust, notes=notes,
    )


def refit(params, losses, start: PowerLawFit, residuals: str = "log", robust: str = "linear"
          ) -> tuple[tuple[float, float, float], list[str]]:
    """(A, alpha, L_inf) of fit_power_law(params, losses, residuals, robust, start=start) and its notes on
    bounds and convergence, without uncertainties: the same least-squares problem handed to the same scipy
    solver with the same settings, so the constants agree to the last bit (tests/test_fit.py) at a third of
    the cost, since lmfit's per-evaluation bookkeeping is skipped. The bootstrap's loop: hundreds of refits."""
    from scipy.optimize import least_squares

    params, losses, x, scale, residual, first = _problem(params, losses, residuals, robust, True, start)
    l_max = float(losses.min())
    result = least_squares(lambda v: _residuals(*v, x, losses, residual), first, loss=robust,
                           jac=lambda v: _jacobian(*v, x, losses, residual),
                           bounds=([0.0, 0.0, 0.0], [np.inf, np.inf, l_max]), max_nfev=LMFIT_MAX_NFEV, **SOLVER)
    a_s, alpha, l_inf = (float(v) for v in result.x)
    notes = _bound_notes(a_s, alpha, l_inf, l_max, True, result.status > 0, result.message)
    return (a_s * scale ** alpha, alpha, l_inf), notes


def _problem(params, losses, residuals: str, robust: str, floor: bool, start: PowerLawFit | None):
    """Checked points, P rescaled to x = P / P_scale, the residual function and the start (A_s, alpha, L_inf)."""
    if robust not in ROBUST:
        raise MMCError(f"unknown robust loss {robust!r}; use one of {', '.join(ROBUST)}")
    residual = RESIDUALS.run(residuals)
    params, losses = _check_points(params, losses, 3 if floor else 2)
    scale = float(np.exp(np.log(params).mean()))
    x = params / scale
    if start is None:
        first = _scan_start(x, losses, floor, residual)
    else:  # warm start: the same curve expressed in this fit's scale
        first = (start.A * scale ** -start.alpha, start.alpha, min(start.L_inf, 0.99 * float(losses.min())) if floor
                 else 0.0)
    return params, losses, x, scale, residual, first


def _residuals(a_s: float, alpha: float, l_inf: float, x: np.ndarray, losses: np.ndarray, residual) -> np.ndarray:
    return residual(np.maximum(a_s * x ** -alpha + l_inf, 1e-300), losses)


def _jacobian(a_s: float, alpha: float, l_inf: float, x: np.ndarray, losses: np.ndarray, residual: Residual
              ) -> np.ndarray:
    """(n, 3) derivatives of _residuals in (A_s, alpha, L_inf): the residual's slope times those of the model."""
    power = x ** -alpha
    slope = residual.slope(np.maximum(a_s * power + l_inf, 1e-300), losses)
    return slope[:, None] * np.stack([power, -a_s * power * np.log(x), np.ones_like(x)], axis=1)


def _bound_notes(a_s, alpha, l_inf, l_max, floor: bool, converged: bool, message: str) -> list[str]:
    notes = []
    if alpha < 1e-4 or a_s < 1e-12:
        notes.append("A or alpha at its bound 0: the fitted curve is flat, the losses barely fall with params")
    if floor and l_inf < 1e-6 * l_max:
        notes.append("L_inf at its bound 0: the data support no floor (see compare_floor)")
    if floor and l_inf > (1 - 1e-6) * l_max:
        notes.append("L_inf at its bound min(losses): the floor is not identified by these points")
    if not converged:
        notes.append(f"optimiser did not converge: {message}")
    return notes


def compare_floor(params, losses, residuals: str = "log", robust: str = "linear") -> dict:
    """Fit with and without a floor; AIC/BIC say whether the data support L_inf > 0.

    `delta_aic` = AIC(no floor) - AIC(floor): positive favours the floor (above ~2 clearly).
    """
    with_floor = fit_power_law(params, losses, residuals, robust, floor=True)
    no_floor = fit_power_law(params, losses, residuals, robust, floor=False)
    delta_aic = no_floor.aic - with_floor.aic
    return {
        "floor": with_floor.to_dict(), "no_floor": no_floor.to_dict(),
        "aic_floor": with_floor.aic, "aic_no_floor": no_floor.aic,
        "bic_floor": with_floor.bic, "bic_no_floor": no_floor.bic,
        "delta_aic": delta_aic, "delta_bic": no_floor.bic - with_floor.bic,
        "preferred": "floor" if delta_aic > 0 else "no_floor",
    }


def fit_table(fits: dict[str, PowerLawFit], reference: str = "single") -> list[dict]:
    """One plain row per curve (the paper's Table 1): alpha and L_inf with intervals, and the floor
    reduction versus `reference`, 100 * (1 - L_inf / L_inf[reference]) in % (None for the reference)."""
    if reference not in fits:
        raise MMCError(f"reference curve {reference!r} is not among the fits {sorted(fits)}; fit it first")
    ref_floor = fits[reference].L_inf
    rows = []
    for name, fit in fits.items():
        reduction = None if name == reference or ref_floor <= 0 else 100.0 * (1.0 - fit.L_inf / ref_floor)
        rows.append({
            "setting": name, "alpha": fit.alpha, "alpha_lo": fit.alpha_ci[0], "alpha_hi": fit.alpha_ci[1],
            "L_inf": fit.L_inf, "L_inf_lo": fit.L_inf_ci[0], "L_inf_hi": fit.L_inf_ci[1], "A": fit.A,
            "floor_reduction_pct": reduction, "n_points": fit.n_points,
        })
    return rows
