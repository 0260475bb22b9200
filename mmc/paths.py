"""Absolute locations, independent of the working directory."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = REPO_ROOT / "conf"
MLRUNS_DIR = REPO_ROOT / "mlruns"


def cache_root(override: str | None = None) -> Path:
    """The mmc cache: `override`, else $MMC_CACHE_DIR, else the user's cache dir."""
    base = override or os.environ.get("MMC_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "mmc"
    return Path(base).expanduser().resolve()


def file_provenance(path: str) -> tuple[str, str]:
    """(name, source) of data read from a file or directory, as a run's MLflow dataset input shows them."""
    resolved = Path(path).expanduser().resolve()
    return resolved.name, str(resolved)
