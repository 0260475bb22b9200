"""One pure computation started now and collected later: in a forked process on Linux, in place elsewhere.

A run of a loss-matrix pool spends seconds loading MLflow and opening its store before its MLflow run starts,
and its analysis needs neither: forked, the analysis computes on the second core meanwhile. Only pure work
goes there (no MLflow, no files): its result, or its exception, comes back pickled when asked for. Where
fork is not the safe default (macOS, Windows) the work runs when its result is asked for, as if called then.
"""
from __future__ import annotations

import multiprocessing
import sys
from typing import Callable

FORK = sys.platform == "linux"  # False: every Pending runs in place (bench/paper_scale.py profiles it so)


class Pending:
    """fn(*args), computing in a forked child from now on (Linux); `result()` waits for it, `close()` drops it."""

    def __init__(self, fn: Callable, *args):
        self._call, self._pool, self._async = (fn, args), None, None
        if FORK:
            self._pool = multiprocessing.get_context("fork").Pool(1)
            self._async = self._pool.apply_async(fn, args)

    def result(self):
        """fn's return value, or its exception raised here."""
        if self._pool is None:
            fn, args = self._call
            return fn(*args)
        try:
            return self._async.get()
        finally:
            self.close()

    def close(self) -> None:
        """Stop the child (a no-op once the result is in): an error elsewhere does not wait for it."""
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None
