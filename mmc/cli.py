"""The command line around Hydra: a preflight that composes the config once before Hydra runs, so a bad override
fails in one line, and an exit that skips the interpreter's teardown."""
from __future__ import annotations

import atexit
import logging
import os
import sys
from typing import Callable

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from mmc import rerun
from mmc.config import validate
from mmc.errors import MMCError
from mmc.paths import CONF_DIR

HYDRA_FLAGS_WITH_VALUE = {"--config-name", "-cn", "--config-path", "-cp", "--config-dir", "-cd",
                          "--info", "-i", "--experimental-rerun"}


def first_of_sweeps(overrides: list[str]) -> list[str]:
    """Each sweep override (`a=1,2`) reduced to its first value, so one composition checks them all."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    out = []
    for text, override in zip(overrides, parsed):
        if override.is_sweep_override():
            value = next(iter(override.sweep_string_iterator()))
            out.append(f"{override.get_key_element()}={value}")
        else:
            out.append(text)
    return out


def user_overrides(argv: list[str]) -> list[str] | None:
    """The key=value overrides of argv; None when Hydra is asked for something other than a run."""
    overrides, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in HYDRA_FLAGS_WITH_VALUE:
            skip = True
        elif arg in ("--help", "-h", "--hydra-help", "--version", "--cfg", "-c", "--resolve", "--shell-completion",
                     "-sc", "--package", "-p"):
            return None
        elif not arg.startswith("-"):
            overrides.append(arg)
    return overrides


def one_line(error: BaseException) -> str:
    """Hydra's message and its cause (the OmegaConf error naming key and type) on one line."""
    if isinstance(error, MissingMandatoryValue):
        return f"{error.full_key} has no value and needs one: add {error.full_key}=<value>"
    lines = [line.strip() for line in str(error).split("Config search path")[0].splitlines()]
    text = " ".join(line for line in lines if line and not line.startswith("To append to your config"))
    if error.__cause__ is not None and str(error.__cause__).strip():
        text = text.rstrip(".") + ": " + str(error.__cause__).splitlines()[0]
    return text


def preflight(argv: list[str]) -> list[str]:
    """The argv to hand Hydra; exit 2 with one line when the overrides do not compose against the schemas
    (types, keys, options). A rerun's overrides apply to its logged config, checked when it is fetched
    (mmc.rerun): here they only have to compose, with `++` before keys the defaults lack.

    The schemas must be registered (mmc.config.register_configs) before this runs."""
    overrides = user_overrides(argv)
    if overrides is None:
        return argv
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            multirun = "-m" in argv or "--multirun" in argv  # without it, Hydra refuses sweep values
            plain = first_of_sweeps(overrides) if multirun else overrides
            if rerun.is_rerun(plain):
                defaults = compose("config", overrides=[o.input_line for o in rerun.parse(plain)
                                                         if rerun.is_group_choice(o)])
                forced = rerun.lacking(overrides, defaults)
                argv, overrides = ([f"++{a}" if a in forced else a for a in args] for args in (argv, overrides))
                compose("config", overrides=first_of_sweeps(overrides) if multirun else overrides)
            else:
                validate(compose("config", overrides=plain))
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        print(f"error: bad config: {one_line(e)} (`python launch.py --cfg job` prints every key)", file=sys.stderr)
        sys.exit(2)
    except MMCError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    return argv


def run_then_exit(main: Callable[[], object]) -> None:
    """main(), then exit with its status (0, or sys.exit's) once every atexit handler has run (multiprocessing's,
    MLflow's, logging's: output and logs are complete), skipping the interpreter's teardown, which frees the
    objects of MLflow, SQLAlchemy and pandas one by one: about 0.7 s of every run. An uncaught exception
    tears down as usual.

    Called from the entry point, so that its handler runs after those registered while main() runs."""
    status = 0

    def exit_now() -> None:
        logging.shutdown()  # registered before this handler (at `import logging`), so it would run after it
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)

    atexit.register(exit_now)
    try:
        main()
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)  # a message: printed, then 1
        raise
    except BaseException:
        atexit.unregister(exit_now)
        raise
