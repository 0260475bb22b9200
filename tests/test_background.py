"""mmc.background.Pending: a computation started in a forked child (Linux) or run when asked for (elsewhere)."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from mmc import background
from mmc.background import Pending
from mmc.errors import MMCError

LINUX = background.FORK


def pid_and_sum(n: int) -> tuple[int, float]:
    return os.getpid(), float(np.arange(n, dtype=np.float64).sum())


def fails(message: str):
    raise MMCError(message)


def sleeps(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


@pytest.mark.skipif(not LINUX, reason="the forked path is Linux's")
def test_the_result_is_computed_in_another_process():
    pid, total = Pending(pid_and_sum, 1000).result()
    assert pid != os.getpid()
    assert total == 1000 * 999 / 2  # closed form


def test_the_child_error_is_raised_by_result():
    pending = Pending(fails, "pool.path=x.npz does not exist")
    with pytest.raises(MMCError, match="pool.path=x.npz does not exist"):
        pending.result()


@pytest.mark.skipif(not LINUX, reason="the forked path is Linux's")
def test_close_does_not_wait_for_the_child():
    pending = Pending(sleeps, 60)
    start = time.perf_counter()
    pending.close()
    assert time.perf_counter() - start < 10
    pending.close()  # twice is harmless


@pytest.mark.skipif(not LINUX, reason="the forked path is Linux's")
def test_a_child_that_dies_is_an_error_not_a_hang():
    with pytest.raises(MMCError, match="exit code 3"):
        Pending(os._exit, 3).result()


@pytest.mark.skipif(not LINUX, reason="the forked path is Linux's")
def test_a_result_that_cannot_be_pickled_is_an_error():
    with pytest.raises(MMCError, match="forked"):
        Pending(lambda: (lambda: None)).result()  # a lambda does not pickle


def test_without_fork_it_runs_in_place_when_asked(monkeypatch):
    monkeypatch.setattr(background, "FORK", False)
    calls = []
    pending = Pending(lambda x: calls.append(x) or (os.getpid(), x), 3)
    assert calls == []  # nothing ran yet: as if called at result()
    assert pending.result() == (os.getpid(), 3) and calls == [3]


def pid_in_a_grandchild() -> tuple[int, int]:
    return os.getpid(), Pending(pid_and_sum, 10).result()[0]


def sleeps_in_a_grandchild(pid_file: str) -> int:
    return Pending(writes_pid_then_sleeps, pid_file, 60).result()


def writes_pid_then_sleeps(pid_file: str, seconds: float) -> int:
    with open(pid_file + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(pid_file + ".tmp", pid_file)
    return sleeps(seconds)


@pytest.mark.skipif(not LINUX, reason="the forked path is Linux's")
def test_a_child_forks_children_of_its_own():
    child, grandchild = Pending(pid_in_a_grandchild).result()
    assert len({os.getpid(), child, grandchild}) == 3


@pytest.mark.skipif(not LINUX, reason="the forked path is Linux's")
def test_closing_a_child_takes_its_own_children_along(tmp_path):
    psutil = pytest.importorskip("psutil")
    pid_file = tmp_path / "grandchild.pid"
    pending = Pending(sleeps_in_a_grandchild, str(pid_file))
    deadline = time.time() + 30
    while not pid_file.exists() and time.time() < deadline:
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())
    pending.close()

    def alive() -> bool:
        try:
            return psutil.Process(grandchild).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.time() + 10
    while alive() and time.time() < deadline:
        time.sleep(0.05)
    assert not alive()
