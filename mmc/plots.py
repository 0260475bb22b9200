"""Figures; each function returns a matplotlib Figure, which `png` renders for the caller to log.

Figures are built with the object-oriented API (matplotlib.figure.Figure, no pyplot): nothing is
registered globally and `fig.savefig` renders with Agg whatever backend the session uses.
"""
from __future__ import annotations

import io

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from mmc.errors import MMCError
from mmc.fit import PowerLawFit
from mmc.search.result import SearchResult

MAX_EXPLORED_SHOWN = 20_000  # explored subsets drawn in the frontier plot (an even subsample beyond: same cloud)
MAX_LABELLED = 12  # curves in a panel beyond which they are drawn faintly, without fits or legend entries


def png(fig: Figure) -> bytes:
    """The figure rendered as PNG, as mlflow.log_figure would save it: rendering takes about half a second a
    figure, so the analysis renders where it computes (a forked child) rather than where it logs."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _colours(n: int) -> list:
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _fit_label(name: str, fit: PowerLawFit) -> str:
    return f"{name} fit: α={fit.alpha:.3f}, L∞={fit.L_inf:.3f}"


def _draw_fit(ax, fit: PowerLawFit, colour, label: str, width: float = 1.8) -> None:
    """The fitted curve over the range it was fitted on, and its floor as a dashed line of the same colour."""
    grid = np.geomspace(*fit.params_range, 200)
    ax.plot(grid, fit.predict(grid), color=colour, lw=width, label=label)
    if fit.floor:
        ax.axhline(fit.L_inf, color=colour, lw=1.0, ls="--", alpha=0.7)


def _finish(ax, unit: str) -> None:
    ax.set_xscale("log")
    ax.set_xlabel("total parameters P (sum over the subset's models)")
    ax.set_ylabel(f"loss ({unit})")
    ax.grid(True, which="major", alpha=0.3)


def plot_frontier(search: SearchResult, single_params, single_loss, single_families, fits: dict[str, PowerLawFit],
                  unit: str, title: str = "Loss vs total parameters", frontier_label: str = "ensemble frontier") -> Figure:
    """Every explored subset (faint), the ensemble frontier, single models coloured by family, and the
    fitted curves (`fits`, e.g. {"single": ..., "ensemble": ...}) with their floors dashed."""
    single_params = np.asarray(single_params, dtype=np.float64)
    single_loss = np.asarray(single_loss, dtype=np.float64)
    single_families = np.asarray(single_families, dtype=str)
    if not (single_params.shape == single_loss.shape == single_families.shape):
        raise MMCError("single_params, single_loss and single_families differ in length; pass one value per model")
    fig = Figure(figsize=(10, 6), layout="constrained")
    ax = fig.add_subplot()
    every = -(-search.n_explored // MAX_EXPLORED_SHOWN)
    ax.scatter(search.explored_params[::every], search.explored_loss[::every], s=3, color="0.5", alpha=0.25, lw=0,
               rasterized=True, label=f"explored subsets ({search.n_explored:,})")
    ax.plot(search.frontier_params, search.frontier_loss, color="black", lw=1.2, marker=".", ms=4,
            label=f"{frontier_label} ({search.n_frontier:,} subsets)")
    families = sorted(set(single_families.tolist()))
    for family, colour in zip(families, _colours(len(families))):
        pick = single_families == family
        ax.scatter(single_params[pick], single_loss[pick], s=30, color=colour, edgecolor="black", lw=0.4,
                   zorder=3, label=f"{family} (single models)")
    fit_colours = ["tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange"]
    for i, (name, fit) in enumerate(fits.items()):
        _draw_fit(ax, fit, fit_colours[i % len(fit_colours)], _fit_label(name, fit) + " (floor dashed)")
    _finish(ax, unit)
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return fig


def plot_groups(frontiers: dict[str, tuple[np.ndarray, np.ndarray]], fits: dict[str, PowerLawFit], unit: str,
                title: str = "Homogeneous vs heterogeneous ensembles") -> Figure:
    """Frontier and fit of each group of families: `frontiers[name] = (params, losses)`.

    A name with "+" is a family pair, "all" every family, anything else one family. Single-family
    groups and pairs get a panel each (when both exist), and "all" appears in both for reference. A panel of
    more than MAX_LABELLED groups (10 families have 45 pairs) draws their frontiers faintly, under one legend
    entry, without fits: the fits are in fit_table.csv, and 45 labelled curves would hide "all".
    """
    if not frontiers:
        raise MMCError("no group frontiers to plot; run the search per family group (fit.groups=true)")
    singles = [g for g in frontiers if "+" not in g and g != "all"]
    pairs = [g for g in frontiers if "+" in g]
    panels = [(p, t) for p, t in ((singles, "one family"), (pairs, "family pairs")) if p] or [([], "all families")]
    fig = Figure(figsize=(7 * len(panels), 6), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, (groups, panel_title) in zip(axes, panels):
        names = groups + (["all"] if "all" in frontiers else [])
        faint = len(groups) > MAX_LABELLED
        if faint:
            ax.plot([], [], color="0.6", lw=0.8, label=f"{panel_title}: {len(groups)} frontiers (fits in fit_table.csv)")
        for name, colour in zip(names, _colours(len(groups)) + ["black"]):
            params, losses = (np.asarray(v, dtype=np.float64) for v in frontiers[name])
            if faint and name != "all":
                ax.plot(params, losses, color="0.6", lw=0.8, alpha=0.6)
                continue
            ax.scatter(params, losses, s=10, color=colour, alpha=0.6, lw=0)
            if name in fits:
                _draw_fit(ax, fits[name], colour, _fit_label(name, fits[name]), width=2.5 if name == "all" else 1.4)
            else:
                ax.plot(params, losses, color=colour, lw=1.0, label=f"{name} (frontier, no fit)")
        _finish(ax, unit)
        ax.set_title(f"{panel_title}: frontier points, fits, floors dashed")
        ax.legend(fontsize=7, ncol=1 if len(names) <= 12 else 2, loc="upper right", frameon=False)
    fig.suptitle(title)
    return fig


def plot_oracle_choice(per_text_loss, models, domains, params=None,
                       title: str = "Which model the all-models oracle picks, by domain") -> Figure:
    """Heatmap: for each domain (column), the share of its texts on which each model (row) is the best
    of the whole pool. Models that win no text are left out (counted in the title); rows are sorted by
    `params` when given. The argmin does not depend on the unit, so any per-text loss (M, N) works."""
    per_text_loss = np.asarray(per_text_loss, dtype=np.float64)
    models, domains = np.asarray(models, dtype=str), np.asarray(domains, dtype=str)
    if per_text_loss.ndim != 2 or per_text_loss.shape != (len(models), len(domains)):
        raise MMCError(f"per-text loss {per_text_loss.shape} does not match {len(models)} models x "
                       f"{len(domains)} texts; pass LossMatrix.per_text_loss() with its models and domains")
    winner = per_text_loss.argmin(axis=0)
    domain_names = sorted(set(domains.tolist()))
    share = np.zeros((len(models), len(domain_names)))
    for j, domain in enumerate(domain_names):
        in_domain = domains == domain
        share[:, j] = np.bincount(winner[in_domain], minlength=len(models)) / in_domain.sum()
    rows = np.flatnonzero(share.sum(axis=1) > 0)
    if params is not None:
        rows = rows[np.argsort(np.asarray(params)[rows], kind="stable")]

    fig = Figure(figsize=(1.2 * len(domain_names) + 4, 0.3 * len(rows) + 2.0), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(share[rows], aspect="auto", cmap="viridis", vmin=0.0, vmax=max(share.max(), 1e-9))
    ax.set_xticks(range(len(domain_names)), domain_names, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), models[rows], fontsize=8 if len(rows) <= 40 else 6)
    if len(rows) * len(domain_names) <= 300:
        for i, j in zip(*np.nonzero(share[rows])):
            value = share[rows][i, j]
            ax.text(j, i, f"{100 * value:.0f}%" if value >= 0.005 else "<1%", ha="center", va="center", fontsize=7,
                    color="black" if value > 0.6 * share.max() else "white")
    ax.set_xlabel("domain")
    ax.set_ylabel("model" + (" (sorted by parameters)" if params is not None else ""))
    fig.colorbar(image, ax=ax, label="share of the domain's texts the model wins")
    ax.set_title(f"{title}\n({len(rows)} of {len(models)} models win at least one text)", fontsize=10)
    return fig


def plot_realisable(rows: list[dict], options: list[str], unit: str,
                    title: str = "Realisable ensembles beside the oracle (evaluation texts)") -> Figure:
    """Left: the loss of every ensemble option over the oracle frontier's subsets (realisable.csv's rows with
    subset "frontier") against their total parameters, the whole pool as stars. Right: each option's excess
    over the oracle on the same subsets, where the curves part."""
    frontier = sorted((r for r in rows if r["subset"] == "frontier"), key=lambda r: r["params"])
    pool = next(r for r in rows if r["subset"] == "pool")
    fig = Figure(figsize=(13, 5.5), layout="constrained")
    loss_ax, gap_ax = fig.subplots(1, 2)
    params = [r["params"] for r in frontier]
    oracle = np.array([r["loss_oracle"] for r in frontier])
    for name, colour in zip(options, _colours(len(options))):
        is_oracle = name == "oracle"
        colour = "black" if is_oracle else colour
        losses = np.array([r[f"loss_{name}"] for r in frontier])
        loss_ax.plot(params, losses, marker=".", ms=4, color=colour, lw=1.0 if is_oracle else 1.4,
                     ls="--" if is_oracle else "-", zorder=4 if is_oracle else 2,
                     label=f"{name} (pool: {pool[f'loss_{name}']:.4g})")
        loss_ax.scatter([pool["params"]], [pool[f"loss_{name}"]], marker="*", s=120, zorder=5, color=colour,
                        edgecolor="black", lw=0.5)
        gap_ax.plot(params, losses - oracle, marker=".", ms=4, color=colour, ls="--" if is_oracle else "-",
                    label=f"{name} (pool: {pool[f'loss_{name}'] - pool['loss_oracle']:+.3g})")
    _finish(loss_ax, unit)
    loss_ax.set_title("loss; lines: the oracle frontier's subsets, stars: the whole pool", fontsize=10)
    loss_ax.legend(loc="upper right", fontsize=8, frameon=False)
    _finish(gap_ax, unit)
    gap_ax.set_ylabel(f"loss minus the oracle's on the same subset ({unit})")
    gap_ax.set_title("excess over the oracle", fontsize=10)
    gap_ax.legend(loc="upper left", fontsize=8, frameon=False)
    fig.suptitle(title)
    return fig


def plot_granularity(frontiers: dict[str, SearchResult], fits: dict[str, PowerLawFit], rows: list[dict], unit: str,
                     title: str = "Collaboration finer than a text (evaluation texts)") -> Figure:
    """Left: the segment oracle's frontier and fit at each granularity (text is the paper's oracle). Right: the
    whole pool's loss under the segment oracle and the switching mixture, granularity by granularity."""
    fig = Figure(figsize=(13, 5.5), layout="constrained")
    frontier_ax, pool_ax = fig.subplots(1, 2)
    names = list(frontiers)
    for name, colour in zip(names, _colours(len(names))):
        result = frontiers[name]
        frontier_ax.scatter(result.frontier_params, result.frontier_loss, s=10, color=colour, alpha=0.7, lw=0)
        if name in fits:
            _draw_fit(frontier_ax, fits[name], colour, f"{name}: " + _fit_label("segment oracle", fits[name]))
        else:
            frontier_ax.plot(result.frontier_params, result.frontier_loss, color=colour, lw=1.0,
                             label=f"{name}: segment oracle frontier (no fit)")
    _finish(frontier_ax, unit)
    frontier_ax.set_title("segment oracle: frontier points, fits, floors dashed", fontsize=10)
    frontier_ax.legend(fontsize=7, loc="upper right", frameon=False)
    pool = [r for r in rows if r["subset"] == "pool"]
    positions = np.arange(len(pool))
    for key, label, marker in (("loss_segment_oracle", "segment oracle (a lower bound)", "o"),
                               ("loss_switching_mixture", "switching mixture (realisable)", "s")):
        pool_ax.plot(positions, [r[key] for r in pool], marker=marker, label=label)
    pool_ax.set_xticks(positions, [f"{r['granularity']}\n(rate {r['switching_rate']:g})" for r in pool])
    pool_ax.set_xlabel("granularity (the switching mixture's rate, chosen on the training texts)")
    pool_ax.set_ylabel(f"whole pool's loss ({unit})")
    pool_ax.grid(True, alpha=0.3)
    pool_ax.set_title("the whole pool, coarse to fine", fontsize=10)
    pool_ax.legend(fontsize=8, frameon=False)
    fig.suptitle(title)
    return fig
