"""mmc entry point: compose the config, then load corpus -> build pool -> score -> search -> fit -> log.

    python launch.py                          # the offline default study (zoo pool, built-in corpus)
    python launch.py experiment=smoke         # a named configuration
    python launch.py -m search=pareto_prune,greedy     # a sweep: one MLflow parent run, a child per job
    python launch.py rerun=<MLFLOW_RUN_ID>    # re-launch a logged run with its config (overrides go on top)
"""
from __future__ import annotations

import logging
import sys
import time
from dataclasses import replace

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mmc import cli
from mmc.config import Config, Stage, from_container, register_configs, validate
from mmc.errors import MMCError

log = logging.getLogger("mmc")
register_configs()


def run(config: Config, tags: dict, parent_id: str | None) -> dict:
    """One job: every input is checked (tracking, corpus, pool) before scoring starts."""
    from mmc.background import Pending
    from mmc.pool import is_scored

    started = time.time()
    # a loss-matrix pool's analysis needs neither MLflow nor torch: it computes (forked) while they load
    matrix_analysis = None if is_scored(config.pool) or config.stage == Stage.score else Pending(analyze_matrix, config)
    try:
        return tracked_job(config, tags, parent_id, started, matrix_analysis)
    finally:
        if matrix_analysis is not None:
            matrix_analysis.close()


def analyze_matrix(config: Config):
    """The analysis of a loss-matrix pool (the same matrix the job logs, built again: it is cheap)."""
    from mmc.analysis import analyze
    from mmc.pool import matrix_pool

    lm, texts = matrix_pool(config.pool)
    return analyze(lm, config.loss, config.search, config.fit, config.ensemble, texts)


def tracked_job(config: Config, tags: dict, parent_id: str | None, started: float, matrix_analysis) -> dict:
    """The job's MLflow run: its inputs, the loss matrix, the analysis (matrix_analysis's, when given)."""
    # mlflow, matplotlib and (for scored pools) torch load here: --help, --cfg and a bad config never wait for them
    from mmc import artifacts, tracking
    from mmc.analysis import analyze
    from mmc.data import load_corpus
    from mmc.paths import cache_root
    from mmc.pool import build_pool, is_scored, matrix_pool, token_losses
    from mmc.tasks import is_task_corpus, load_items

    tracking.connect(config.tracking.uri)
    experiment_id = tracking.ensure_experiment(config.tracking.experiment_name or config.name)
    container = OmegaConf.to_container(OmegaConf.structured(config), resolve=True, enum_to_str=True)
    with tracking.tracked_run(experiment_id, tags.get("hydra.overrides") or config.name, container, tags,
                              parent_id, system_metrics(config)) as active:
        if not is_scored(config.pool):
            if config.stage == Stage.score:
                raise MMCError(f"pool={config.pool.kind} holds precomputed losses, nothing to score; use stage=analyze")
            lm, texts = matrix_pool(config.pool)
            check_ensemble(config.ensemble, lm.domains, texts, False, lm.data_kind)
            artifacts.log_texts(*config.pool.provenance(), lm.text_ids, lm.domains, lm.n_bytes)
        else:
            cache = cache_root(config.cache_dir)
            items = is_task_corpus(config.dataset)  # multiple-choice items: scored choice by choice
            corpus = load_items(config.dataset) if items else load_corpus(config.dataset)
            texts = None if items else corpus.texts
            # e.g. domain_router on one domain: before scoring
            check_ensemble(config.ensemble, corpus.domains, texts, False, "choices" if items else "texts")
            specs = build_pool(config.pool, cache)
            config.search.check_pool(len(specs))  # e.g. too many models for exhaustive: say so before scoring
            artifacts.log_corpus(corpus, *config.dataset.provenance())
            # items keep no token losses (scoring them asks for one, refused there)
            keep = bool(config.scoring.token_losses) if items else token_losses(config.pool, config.scoring.token_losses)
            scoring = replace(config.scoring, cache_dir=config.scoring.cache_dir or str(cache / "scores"),
                              token_losses=keep)
            if items:
                from mmc.scoring.choices import cached_choice_matrix as cached, score_choices as fresh  # torch
            else:
                from mmc.scoring.stage import cached_loss_matrix as cached, score_pool as fresh  # torch
            scores = (cached if config.stage == Stage.analyze else fresh)(specs, corpus, scoring,
                                                                          config.pool.param_count)
            artifacts.log_scoring(scores)
            lm = scores.matrix
        artifacts.log_matrix(lm)
        if config.stage != Stage.score:
            artifacts.log_analysis(matrix_analysis.result() if matrix_analysis else
                                   analyze(lm, config.loss, config.search, config.fit, config.ensemble, texts))
        artifacts.log_metrics({"time.total_s": time.time() - started})
        log.info("MLflow UI (after `mlflow ui`): %s", tracking.ui_url(experiment_id, active.info.run_id))
        return {"run_id": active.info.run_id}


def check_ensemble(ensemble, domains, texts, tokens: bool, data_kind: str) -> None:
    """The ensemble option can run on these texts or items (MMCError in one line if not), before any scoring."""
    from mmc.ensemble.split import split_texts

    ensemble.check_data(split_texts(domains, ensemble.train_fraction, ensemble.seed), texts is not None, tokens,
                        data_kind)


def system_metrics(config: Config) -> bool | None:
    """tracking.system_metrics; null: on when this job scores on a GPU, else MLflow's default (off)."""
    if config.tracking.system_metrics is not None:
        return config.tracking.system_metrics
    from mmc.pool import is_scored

    if is_scored(config.pool) and config.stage != Stage.analyze:
        from mmc.scoring.engine import resolve_device  # torch: loaded by scored jobs anyway

        if resolve_device(config.scoring.device).type == "cuda":
            return True
    return None


def job_tags(config: Config) -> dict:
    hydra_cfg = HydraConfig.get()
    tags = {"experiment": config.name, "stage": config.stage.value, "pool.kind": config.pool.kind,
            "hydra.overrides": " ".join(hydra_cfg.overrides.task)}
    if config.pool.kind == "tiny_random":
        tags["random_weights"] = "true"  # random models say nothing about science
    if config.pool.kind == "synthetic":
        tags["synthetic"] = "true"
    if config.rerun:
        tags["rerun_of"] = config.rerun
        tags["rerun_overrides"] = " ".join(o.lstrip("+") for o in hydra_cfg.overrides.task
                                           if not o.startswith("rerun="))
    return tags


def rerun_config(run_id: str, uri: str | None) -> Config:
    """The typed config a logged run was launched with, this command line's overrides applied on top."""
    from mmc import rerun, tracking

    tracking.connect(uri)
    logged = tracking.logged_config(run_id)
    logged["rerun"] = run_id
    return validate(rerun.apply(from_container(logged), list(HydraConfig.get().overrides.task)))


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> dict | None:
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        config = rerun_config(cfg.rerun, cfg.tracking.uri) if cfg.rerun else validate(cfg)
        parent_id = None
        if multirun:
            from mmc.sweep import parent_run_id  # mlflow: loaded by jobs, never at start-up

            parent_id = parent_run_id(HydraConfig.get().sweep.dir)
        return run(config, job_tags(config), parent_id)
    except MMCError as e:
        print(f"error: {e}", file=sys.stderr)
        if not multirun:
            sys.exit(2)
    except Exception:
        if not multirun:
            raise
        log.exception("job failed; its MLflow run is FAILED and the sweep goes on")
    return None  # a failed sweep job: the sweep callback reports it and sets the exit code


if __name__ == "__main__":
    sys.argv[1:] = cli.preflight(sys.argv[1:])
    main()
