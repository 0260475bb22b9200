"""Realisable ensembles through `python launch.py`: what a run logs, recomputed from its loss matrix; the sweep over
ensemble options; every bad ensemble input in one line, before any scoring."""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmc.losses import LossMatrix
from test_launch import launch, runs

SMALL = ["pool=synthetic", "pool.n_models=8", "pool.n_texts=200", "fit.bootstrap=0", "fit.groups=false"]


def artifacts(client, run, tmp_path: Path) -> Path:
    return Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / run.info.run_id)))


def mixture_bits_per_byte(nll, n_bytes):
    """Mean over texts of -log2 of the mean of exp(-NLL) over models, per byte (shifted by the lowest NLL)."""
    low = nll.min(axis=0)
    nats = low - np.log(np.exp(-(nll - low)).mean(axis=0))
    return (nats / n_bytes / np.log(2)).mean()


def test_a_mixture_run_logs_its_frontier_and_gap_beside_the_heldout_oracle(tmp_path):
    launch(tmp_path, "experiment=smoke", "fit.bootstrap=0", "ensemble=mixture")
    client, (run,) = runs(tmp_path, "smoke")
    out = artifacts(client, run, tmp_path)
    with np.load(out / "loss_matrix.npz") as z:
        nll, n_bytes, text_ids, models, params = z["nll"], z["n_bytes"], z["text_ids"], z["models"], z["params"]
    split = pd.read_csv(out / "text_split.csv")
    assert split.text_id.tolist() == text_ids.tolist()
    evaluation = (split.split == "evaluation").to_numpy()
    assert 0 < evaluation.sum() < len(evaluation)
    for domain, rows in split.groupby("domain"):  # stratified: half of each domain's texts train
        assert abs((rows.split == "train").sum() - len(rows) / 2) <= 1

    bits = nll[:, evaluation] / n_bytes[evaluation] / np.log(2)
    oracle = bits.min(axis=0).mean()
    mixture = mixture_bits_per_byte(nll[:, evaluation], n_bytes[evaluation])
    metrics = run.data.metrics
    assert metrics["loss.oracle_heldout_all"] == pytest.approx(oracle, rel=1e-12)
    assert metrics["loss.mixture_all"] == pytest.approx(mixture, rel=1e-12)
    assert metrics["gap.mixture"] == pytest.approx(mixture - oracle, rel=1e-9)

    front = pd.read_csv(out / "frontier_mixture.csv")
    assert list(front.columns) == ["members", "k", "params", "loss", "active_params"]
    assert (front.active_params == front.params).all()  # a mixture runs every member
    for row in front.itertuples():
        members = np.isin(models, row.members.split("+"))
        assert row.loss == pytest.approx(mixture_bits_per_byte(nll[members][:, evaluation], n_bytes[evaluation]))
    heldout = pd.read_csv(out / "frontier_oracle_heldout.csv")
    assert list(heldout.columns) == ["members", "k", "params", "loss"]
    points = [(sum(params[i] for i in subset), bits[list(subset)].min(axis=0).mean())  # the held-out oracle
              for k in range(1, len(models) + 1) for subset in itertools.combinations(range(len(models)), k)]
    frontier = sorted((p, l) for p, l in points  # ... frontier from scratch: every subset, no dominated one
                      if not any(p2 <= p and l2 <= l and (p2 < p or l2 < l) for p2, l2 in points))
    assert [(int(p), pytest.approx(l)) for p, l in frontier] == list(zip(heldout.params, heldout.loss))

    table = pd.read_csv(out / "realisable.csv")
    assert table.subset.iloc[0] == "pool" and (table.subset.iloc[1:] == "frontier").all()
    assert table.loss_mixture.iloc[0] == pytest.approx(mixture, rel=1e-12)
    assert len(table) == 1 + len(pd.read_csv(out / "frontier.csv"))
    for name in ("realisable.png", "frontier_mixture.png", "granularity.png"):
        assert (out / name).is_file()

    # the zoo keeps token losses, so the run also measures collaboration finer than a text
    grain = pd.read_csv(out / "granularity.csv")
    pool = grain[grain.subset == "pool"].set_index("granularity")
    assert list(pool.index) == ["text", "paragraph", "line", "word"]
    assert pool.loss_segment_oracle["text"] == pytest.approx(oracle, rel=1e-12)  # a text-level cut is the oracle
    assert (np.diff(pool.loss_segment_oracle) <= 1e-12).all()  # nested cuts: the segment oracle only falls
    assert (pool.loss_switching_mixture >= pool.loss_segment_oracle - 1e-12).all()


def test_a_sweep_over_ensemble_options_overlays_and_tabulates_them(tmp_path):
    options = ["oracle", "mixture", "domain_router", "knn_router"]
    launch(tmp_path, "-m", *SMALL, "name=ensembles", f"ensemble={','.join(options)}")
    client, found = runs(tmp_path, "ensembles")
    (parent,) = [r for r in found if r.data.tags.get("sweep") == "true"]
    children = {r.data.params["ensemble.kind"]: r for r in found if "mlflow.parentRunId" in r.data.tags}
    assert sorted(children) == sorted(options)
    table = pd.read_csv(client.download_artifacts(parent.info.run_id, "sweep_comparison.csv", str(tmp_path)))
    assert sorted(table.ensemble) == sorted(options)
    for _, row in table.iterrows():
        metrics = children[row["ensemble"]].data.metrics
        prefix = "fit.ensemble" if row["ensemble"] == "oracle" else f"fit.{row['ensemble']}"
        assert row["ensemble.alpha"] == metrics[f"{prefix}.alpha"]
        assert row["ensemble.L_inf"] == metrics[f"{prefix}.L_inf"]
    assert "sweep_frontiers.png" in [a.path for a in client.list_artifacts(parent.info.run_id)]
    # a realisable option is never better than the oracle on the same evaluation texts
    for kind in options[1:]:
        assert children[kind].data.metrics[f"gap.{kind}"] >= 0


def one_line_error(proc, expected: str) -> None:
    """Exit 2 and our one line last (a fresh MLflow store logs its migrations first)."""
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and expected in last, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("overrides, expected", [
    (["ensemble=nonexistent"], "ensemble"),
    (["ensemble.train_fraction=1.5"], "ensemble.train_fraction=1.5"),
    (["ensemble=knn_router", "ensemble.k=0"], "ensemble.k=0"),
    (["ensemble=knn_router", "ensemble.k=ten"], "ensemble.k"),
    (["ensemble=mixture", "search=exact"], "search=exact bounds assume the oracle"),
    (["ensemble=domain_router", "search=milp"], "search=milp bounds assume the oracle"),
    (["ensemble=oracle", "ensemble.k=3"], "ensemble.k"),  # k belongs to knn_router only
    (["ensemble=segment_oracle", "ensemble.granularity=sentence"], "ensemble.granularity='sentence'"),
    (["ensemble=switching_mixture", "ensemble.rates=[0.1,1.5]"], "ensemble.rates=[0.1, 1.5]"),
    (["ensemble=prefix_router", "ensemble.prefix_bytes=-1"], "ensemble.prefix_bytes=-1"),
])
def test_bad_ensemble_config_fails_in_one_line(tmp_path, overrides, expected):
    one_line_error(launch(tmp_path, *overrides, check=False), expected)


def test_bad_ensemble_data_fails_before_any_scoring(tmp_path):
    cache = tmp_path / "cache"
    smoke = ["experiment=smoke", f"cache_dir={cache}"]
    one_line_error(launch(tmp_path, *smoke, "ensemble=knn_router", "ensemble.k=1000", check=False),
                   "ensemble.k=1000 is larger than the 30 training texts")
    one_files = tmp_path / "one"
    one_files.mkdir()
    for i in range(4):
        (one_files / f"{i}.txt").write_text(f"text number {i} " * 20)
    one_line_error(launch(tmp_path, *smoke, "dataset=files", f"dataset.path={one_files}", "ensemble=domain_router",
                          check=False), "needs texts of several domains")
    lopsided = tmp_path / "lopsided"
    for domain, n in (("a", 6), ("b", 1)):
        (lopsided / domain).mkdir(parents=True)
        for i in range(n):
            (lopsided / domain / f"{i}.txt").write_text(f"{domain} text {i} " * 20)
    one_line_error(launch(tmp_path, *smoke, "dataset=files", f"dataset.path={lopsided}", "ensemble=domain_router",
                          check=False), "leaves domains ['b'] without training texts")
    assert not (cache / "zoo").exists()  # every check ran before the zoo was built


def test_text_and_token_options_on_a_matrix_without_them_fail_in_one_line(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "loss_matrix.npz"
    LossMatrix(models=["a", "b"], families=["f", "g"], params=[10, 20], text_ids=["x", "y", "z"],
               nll=rng.uniform(1, 2, (2, 3)), n_tokens=np.ones((2, 3), dtype=int), n_bytes=[5, 6, 7],
               n_chars=[5, 6, 7]).save(path)
    one_line_error(launch(tmp_path, "pool=matrix", f"pool.path={path}", "ensemble=knn_router", check=False),
                   "comes without them")
    one_line_error(launch(tmp_path, "pool=matrix", f"pool.path={path}", "ensemble=segment_oracle", check=False),
                   "needs per-token losses, and this loss matrix has none; score a pool")
    assert not (tmp_path / "mlflow.db").exists()  # data checks come before the MLflow store is touched
