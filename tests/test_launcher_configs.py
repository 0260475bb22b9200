"""conf/hydra/launcher/: each launcher composes as `hydra/launcher=NAME` on top of its plugin's config."""
from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.plugins.launcher import Launcher
from hydra.utils import get_class

from mmc.config import register_configs
from mmc.paths import CONF_DIR

LAUNCHERS = {
    "local_parallel": ("hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", {"n_jobs": 4}),
    "slurm": ("hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
              {"gpus_per_node": 1, "array_parallelism": 16, "signal_delay_s": 120}),  # the last from the plugin
    "local_submitit": ("hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher", {"gpus_per_node": 1}),
}


def test_every_launcher_file_is_tested():
    assert {p.stem for p in (CONF_DIR / "hydra" / "launcher").glob("*.yaml")} == set(LAUNCHERS)


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_launcher_composes_with_its_plugin_target(name):
    target, fields = LAUNCHERS[name]
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={name}", "pool=base71"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == target
    assert issubclass(get_class(target), Launcher)
    for key, value in fields.items():
        assert launcher[key] == value, key
