"""Worker processes that end with their parent: a killed launch.py (SIGKILL, OOM killer) leaves none running.

A ProcessPoolExecutor's workers outlive a parent that dies without shutting the pool down, and keep
training or scoring for nobody. `exit_with_parent` is their initializer: on Linux the kernel kills the
worker when its parent dies (prctl PR_SET_PDEATHSIG); elsewhere a daemon thread polls the parent pid.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # linux/prctl.h
POLL_S = 1.0


def exit_with_parent(parent_pid: int) -> None:
    """Make this process exit when `parent_pid` (the process that started it) dies."""
    if not (sys.platform.startswith("linux") and set_death_signal()):
        threading.Thread(target=watch_parent, args=(parent_pid,), daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(1)


def set_death_signal() -> bool:
    """Ask the kernel for SIGKILL when the parent dies; False where prctl is unavailable."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL) == 0
    except (OSError, AttributeError):
        return False


def watch_parent(parent_pid: int, poll_s: float = POLL_S) -> None:
    """Exit the whole process once it has been re-parented (its parent died); never returns otherwise."""
    while os.getppid() == parent_pid:
        time.sleep(poll_s)
    os._exit(1)
