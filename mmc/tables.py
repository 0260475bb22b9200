"""The single-model table: one row per model, for MLflow (single_model_table.csv) and the README."""
from __future__ import annotations

import numpy as np

from mmc.losses import LossMatrix


def single_model_table(lm: LossMatrix, unit: str = "bits_per_byte", aggregate: str = "mean",
                       ref_bytes_per_token: float = 4.0) -> list[dict]:
    """Rows {name, family, params, loss_<domain> for each domain, loss}, sorted by family then params.

    A domain's loss aggregates over its texts only, the same way (`aggregate`) as the overall loss.
    """
    loss = lm.weighted_losses(unit, aggregate, ref_bytes_per_token)
    columns = {"loss": loss.sum(axis=1)}
    for domain in np.unique(lm.domains):
        mask = lm.domains == domain
        columns[f"loss_{domain}"] = loss[:, mask].sum(axis=1) / lm.text_weights(aggregate)[mask].sum()
    domains = sorted(k for k in columns if k != "loss")
    rows = [{"name": str(lm.models[i]), "family": str(lm.families[i]), "params": int(lm.params[i]),
             **{k: float(columns[k][i]) for k in domains + ["loss"]}} for i in range(lm.n_models)]
    return sorted(rows, key=lambda r: (r["family"], r["params"], r["name"]))
