"""mmc entry point: compose and check the config, then run the job (mmc.job): inputs -> score -> analyse -> log.

    python launch.py                          # the offline default study (zoo pool, built-in corpus)
    python launch.py experiment=smoke         # a named configuration
    python launch.py -m search=pareto_prune,greedy     # a sweep: one MLflow parent run, a child per job
    python launch.py rerun=<MLFLOW_RUN_ID>    # re-launch a logged run with its config (overrides go on top)
"""
from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from mmc import cli
from mmc.config import Config, Stage, from_container, register_configs, validate
from mmc.errors import MMCError

log = logging.getLogger("mmc")
register_configs()


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
        from mmc import job  # the analysis and its libraries: loaded by jobs, never at start-up

        return job.run(config, job_tags(config), parent_id)
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
    cli.run_then_exit(main)
