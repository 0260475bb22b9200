import numpy as np
import pytest
from matplotlib.figure import Figure

from mmc.errors import MMCError
from mmc.fit import fit_power_law
from mmc.plots import plot_frontier, plot_groups, plot_oracle_choice
from mmc.search.result import SearchResult

UNIT = "bits per byte"


def curve_points(alpha, L_inf, lo=1e6, hi=1e9, n=12):
    params = np.geomspace(lo, hi, n)
    return params, 400 * params ** -alpha + L_inf


def legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_plot_frontier_labels_and_legend(tmp_path):
    params, loss = curve_points(0.35, 1.0)
    members = np.eye(12, dtype=bool)
    search = SearchResult.from_candidates("test", [f"m{i}" for i in range(12)], members, params, loss,
                                          explored_params=params, explored_loss=loss + 0.1)
    single_params, single_loss = curve_points(0.35, 1.4, n=6)
    families = np.array(["gpt2", "gpt2", "opt", "opt", "pythia", "pythia"])
    fits = {"single": fit_power_law(single_params, single_loss), "ensemble": fit_power_law(params, loss)}
    fig = plot_frontier(search, single_params, single_loss, families, fits, UNIT)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert "parameters" in ax.get_xlabel() and UNIT in ax.get_ylabel() and ax.get_xscale() == "log"
    texts = legend_texts(ax)
    for expected in ("gpt2 (single models)", "opt (single models)", "pythia (single models)",
                     "explored subsets (12)", "ensemble frontier (12 subsets)"):
        assert expected in texts
    assert any(t.startswith("single fit: α=0.350") for t in texts)
    assert any(t.startswith("ensemble fit: α=0.350, L∞=1.000") for t in texts)
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert sorted(line.get_ydata()[0] for line in dashed) == pytest.approx([1.0, 1.4], rel=1e-3)  # the floors
    fig.savefig(tmp_path / "frontier.png")
    assert (tmp_path / "frontier.png").stat().st_size > 0


def test_plot_frontier_rejects_mismatched_singles():
    params, loss = curve_points(0.35, 1.0)
    search = SearchResult.from_candidates("test", [f"m{i}" for i in range(12)], np.eye(12, dtype=bool), params, loss)
    with pytest.raises(MMCError, match="differ in length"):
        plot_frontier(search, params, loss, ["gpt2"], {}, UNIT)


def test_plot_groups_panels_and_legends():
    frontiers = {"gpt2": curve_points(0.3, 1.5), "opt": curve_points(0.3, 1.4),
                 "gpt2+opt": curve_points(0.3, 1.2, hi=2e9), "all": curve_points(0.3, 1.0, hi=5e9)}
    fits = {name: fit_power_law(*points) for name, points in frontiers.items() if name != "opt"}
    fig = plot_groups(frontiers, fits, UNIT)
    assert len(fig.axes) == 2
    single_ax, pair_ax = fig.axes
    for ax in fig.axes:
        assert "parameters" in ax.get_xlabel() and ax.get_xscale() == "log"
    assert UNIT in single_ax.get_ylabel()
    single_texts, pair_texts = legend_texts(single_ax), legend_texts(pair_ax)
    assert any(t.startswith("gpt2 fit") for t in single_texts) and "opt (frontier, no fit)" in single_texts
    assert any(t.startswith("gpt2+opt fit") for t in pair_texts)
    assert any(t.startswith("all fit") for t in single_texts) and any(t.startswith("all fit") for t in pair_texts)
    with pytest.raises(MMCError, match="no group frontiers"):
        plot_groups({}, {}, UNIT)


def test_plot_oracle_choice_shares_match_counting():
    rng = np.random.default_rng(0)
    loss = rng.random((5, 50))
    loss[4] += 10  # model m4 never wins: left out
    domains = np.array(["web", "code"])[rng.integers(0, 2, 50)]
    models = np.array([f"m{i}" for i in range(5)])
    params = np.array([5, 4, 3, 2, 1]) * 1e6
    fig = plot_oracle_choice(loss, models, domains, params)
    ax = fig.axes[0]
    shown = ax.images[0].get_array()
    rows = [t.get_text() for t in ax.get_yticklabels()]
    cols = [t.get_text() for t in ax.get_xticklabels()]
    assert rows == ["m3", "m2", "m1", "m0"] and cols == ["code", "web"]
    for i, model in enumerate(rows):
        for j, domain in enumerate(cols):
            texts = [x for x in range(50) if domains[x] == domain]
            wins = sum(1 for x in texts if np.argmin(loss[:, x]) == int(model[1:]))
            assert shown[i, j] == pytest.approx(wins / len(texts))
    assert ax.get_xlabel() == "domain" and "model" in ax.get_ylabel()
    assert "share" in fig.axes[1].get_ylabel()  # the colour bar says what the colour means
    with pytest.raises(MMCError, match="does not match"):
        plot_oracle_choice(loss[:, :10], models, domains, params)


def test_plot_groups_draws_many_pairs_faintly_under_one_entry():
    families = [f"f{i}" for i in range(7)]
    frontiers = {f"{a}+{b}": curve_points(0.3, 1.2 + 0.01 * i) for i, (a, b) in
                 enumerate((a, b) for j, a in enumerate(families) for b in families[j + 1:])}  # 21 pairs
    frontiers["all"] = curve_points(0.3, 1.0, hi=5e9)
    fits = {name: fit_power_law(*points) for name, points in frontiers.items()}
    (ax,) = plot_groups(frontiers, fits, UNIT).axes
    texts = legend_texts(ax)
    assert "family pairs: 21 frontiers (fits in fit_table.csv)" in texts
    assert not any(t.startswith("f0+f1") for t in texts) and any(t.startswith("all fit") for t in texts)
    faint = [line for line in ax.get_lines() if line.get_color() == "0.6" and len(line.get_xdata())]
    assert len(faint) == 21


def test_plot_frontier_draws_an_even_subsample_of_a_large_cloud():
    rng = np.random.default_rng(1)
    params, loss = curve_points(0.35, 1.0)
    explored_params, explored_loss = rng.uniform(1e6, 1e9, 50_000), rng.uniform(1, 3, 50_000)
    search = SearchResult.from_candidates("test", [f"m{i}" for i in range(12)], np.eye(12, dtype=bool), params, loss,
                                          explored_params=explored_params, explored_loss=explored_loss)
    ax = plot_frontier(search, params[:3], loss[:3], ["a", "a", "b"], {}, UNIT).axes[0]
    cloud = ax.collections[0]
    assert len(cloud.get_offsets()) == 16_667 and "explored subsets (50,000)" in legend_texts(ax)  # every 3rd
    np.testing.assert_array_equal(cloud.get_offsets()[:, 0], explored_params[::3])
