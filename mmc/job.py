"""One job of launch.py: its inputs loaded and checked first, then scored, analysed and logged in an MLflow run.

The inputs (a corpus of texts, a task corpus of multiple-choice items, or a pool's loss or choice matrix) and every
check that needs only them (e.g. ensemble=domain_router on one domain) come before MLflow or torch load, so a bad
input costs a second and leaves no FAILED run. A loss-matrix pool's analysis needs neither MLflow nor torch either:
it computes in a forked process (mmc.background) while they load, and loads its own libraries (matplotlib, lmfit)
there. A scored pool's models are built (the zoo trained) and scored after the tracking store answers, so an
unreachable server never waits for a zoo build.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

from omegaconf import OmegaConf

from mmc.background import Pending
from mmc.config import Config, Stage
from mmc.data import Corpus, load_corpus
from mmc.ensemble.split import split_texts
from mmc.errors import MMCError
from mmc.losses import LossMatrix
from mmc.paths import cache_root
from mmc.pool import build_pool, is_scored, matrix_pool, token_losses
from mmc.tasks import Items, is_task_corpus, load_items, refuse_token_losses

log = logging.getLogger("mmc")


@dataclass
class Inputs:
    """What a job analyses: a corpus or task corpus to score (scored pools) or a loss or choice matrix (matrix
    pools), with its texts."""

    corpus: Corpus | Items | None = None
    lm: LossMatrix | None = None  # a matrix pool's (or a mmc.choices.ChoiceMatrix)
    texts: list[str] | None = None  # aligned with the texts scored or the matrix's text ids; None for items


def load_inputs(config: Config) -> Inputs:
    """The job's corpus or loss matrix, checked against the ensemble option (one-line MMCError), before MLflow."""
    if is_scored(config.pool) and is_task_corpus(config.dataset):  # multiple-choice items, scored choice by choice
        refuse_token_losses(config.scoring.token_losses)
        items = load_items(config.dataset)
        inputs, domains, tokens, kind = Inputs(corpus=items), items.domains, False, "choices"
    elif is_scored(config.pool):
        corpus = load_corpus(config.dataset)
        inputs, kind = Inputs(corpus=corpus, texts=corpus.texts), "texts"
        domains, tokens = corpus.domains, config.stage != Stage.score and token_losses(config.pool,
                                                                                        config.scoring.token_losses)
    else:
        if config.stage == Stage.score:
            raise MMCError(f"pool={config.pool.kind} holds precomputed losses, nothing to score; use stage=analyze")
        lm, texts = matrix_pool(config.pool)
        inputs, domains, tokens, kind = Inputs(lm=lm, texts=texts), lm.domains, False, lm.data_kind
    ensemble = config.ensemble
    ensemble.check_data(split_texts(domains, ensemble.train_fraction, ensemble.seed), inputs.texts is not None, tokens,
                        kind)
    return inputs


def run(config: Config, tags: dict, parent_id: str | None) -> dict:
    """One job: inputs, then (MLflow loading meanwhile) the run that scores, analyses and logs them."""
    started = time.time()
    inputs = load_inputs(config)
    analysis = None
    if inputs.lm is not None:
        analysis = Pending(analyzed, inputs.lm, config.loss, config.search, config.fit, config.ensemble, inputs.texts)
    try:
        return tracked(config, tags, parent_id, inputs, analysis, started)
    finally:
        if analysis is not None:
            analysis.close()


def tracked(config: Config, tags: dict, parent_id: str | None, inputs: Inputs, analysis: Pending | None,
            started: float) -> dict:
    """The job's MLflow run: inputs logged, models scored (scored pools), the analysis logged."""
    from mmc import artifacts, tracking  # mlflow

    tracking.connect(config.tracking.uri)
    experiment_id = tracking.ensure_experiment(config.tracking.experiment_name or config.name)
    container = OmegaConf.to_container(OmegaConf.structured(config), resolve=True, enum_to_str=True)
    with tracking.tracked_run(experiment_id, tags.get("hydra.overrides") or config.name, container, tags,
                              parent_id, system_metrics(config)) as active:
        tokens = None
        if inputs.lm is not None:
            lm = inputs.lm
            artifacts.log_texts(*config.pool.provenance(), lm.text_ids, lm.domains, lm.n_bytes)
        else:
            scores = score(config, inputs.corpus)
            lm, tokens = scores.matrix, scores.token_losses
        artifacts.log_matrix(lm)
        if config.stage != Stage.score:
            artifacts.log_analysis(analysis.result() if analysis is not None else
                                   analyzed(lm, config.loss, config.search, config.fit, config.ensemble, inputs.texts,
                                            tokens))
        artifacts.log_metrics({"time.total_s": time.time() - started})
        log.info("MLflow UI (after `mlflow ui`): %s", tracking.ui_url(experiment_id, active.info.run_id))
        return {"run_id": active.info.run_id}


def analyzed(*args):
    """mmc.analysis.analyze(*args), imported where it runs: a forked analysis loads matplotlib and lmfit on its own
    core, not before the fork."""
    from mmc.analysis import analyze

    return analyze(*args)


def score(config: Config, corpus: Corpus | Items):
    """The pool's models built and scored on the corpus or the task corpus through the cache (stage=analyze: the
    cache alone), logged as the run's corpus and scoring records; mmc.scoring.stage.Scores."""
    from mmc import artifacts

    if isinstance(corpus, Items):
        from mmc.scoring.choices import cached_choice_matrix as cached, score_choices as fresh  # torch
    else:
        from mmc.scoring.stage import cached_loss_matrix as cached, score_pool as fresh  # torch

    cache = cache_root(config.cache_dir)
    specs = build_pool(config.pool, cache)
    config.search.check_pool(len(specs))  # e.g. too many models for exhaustive: say so before scoring
    artifacts.log_corpus(corpus, *config.dataset.provenance())
    scoring = replace(config.scoring, cache_dir=config.scoring.cache_dir or str(cache / "scores"),
                      token_losses=not isinstance(corpus, Items) and token_losses(config.pool,
                                                                                  config.scoring.token_losses))
    scored = cached if config.stage == Stage.analyze else fresh
    scores = scored(specs, corpus, scoring, config.pool.param_count)
    artifacts.log_scoring(scores)
    return scores


def system_metrics(config: Config) -> bool | None:
    """tracking.system_metrics; null: on when this job scores on a GPU, else MLflow's default (off)."""
    if config.tracking.system_metrics is not None:
        return config.tracking.system_metrics
    if is_scored(config.pool) and config.stage != Stage.analyze:
        from mmc.scoring.engine import resolve_device  # torch: loaded by scored jobs anyway

        if resolve_device(config.scoring.device).type == "cuda":
            return True
    return None

