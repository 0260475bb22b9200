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
