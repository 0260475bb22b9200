"""One pure computation started now and collected later: in a forked process on Linux, in place elsewhere.

A run of a loss-matrix pool spends seconds loading MLflow and opening its store before its MLflow run starts,
and its analysis needs neither: forked, the analysis computes on the second core meanwhile. Only pure work
goes there (no MLflow, no files): its result, or its exception, comes back pickled when asked for. A child
may start Pendings of its own (the analysis forks its independent parts), and every child is killed with
the process that started it, so a killed launch leaves none computing. Where fork is not the safe default
(macOS, Windows), or in a daemonic worker (which may not fork children), the work runs when its result is
asked for, as if called then.
"""
from __future__ import annotations

import atexit
import gc
import multiprocessing
import os
import sys
from typing import Callable

from threadpoolctl import threadpool_limits

from mmc.errors import MMCError
from mmc.workers import exit_with_parent

FORK = sys.platform == "linux"  # False: every Pending runs in place (bench/paper_scale.py profiles it so)


def _child(parent_pid: int, conn, fn: Callable, args: tuple) -> None:
    exit_with_parent(parent_pid)  # a killed launch, or a Pending closed before its own children, takes it along
    threadpool_limits(1, user_api="blas")  # its siblings and parent compute on the other cores: no oversubscription
    try:
        outcome = (True, fn(*args))
    except BaseException as e:  # noqa: BLE001 - every failure goes back to the parent, which raises it
        outcome = (False, e)
    try:
        conn.send(outcome)
    except Exception as e:  # an unpicklable result or exception: its text at least
        conn.send((False, MMCError(f"{fn.__name__} in a forked process: {type(e).__name__}: {e}")))
    conn.close()


class Pending:
    """fn(*args), computing in a forked child from now on; `result()` waits for it, `close()` drops it.

    The child is forked, not spawned: it needs no pickling of fn and starts with this process's modules. It is
    not daemonic, so that it may fork Pendings of its own; `close()` runs at exit for one never asked for.
    A Pending is a context manager that closes on exit."""

    def __init__(self, fn: Callable, *args):
        self._call, self._process, self._conn = (fn, args), None, None
        if FORK and not multiprocessing.current_process().daemon:
            context = multiprocessing.get_context("fork")
            self._conn, child_end = context.Pipe(duplex=False)
            self._process = context.Process(target=_child, args=(os.getpid(), child_end, fn, args),
                                            daemon=False)
            gc.freeze()  # the child's collector leaves this process's objects alone: their pages stay shared
            self._process.start()
            gc.unfreeze()
            child_end.close()
            atexit.register(self.close)

    def result(self):
        """fn's return value, or its exception raised here."""
        fn, args = self._call
        if self._process is None:
            return fn(*args)
        try:
            ok, value = self._conn.recv()
        except EOFError:  # the child died without an answer (killed, out of memory)
            self._process.join()
            raise MMCError(f"the forked {fn.__name__} died without an answer (exit code "
                           f"{self._process.exitcode}, e.g. out of memory); rerun the job") from None
        finally:
            self.close()
        if not ok:
            raise value
        return value

    def close(self) -> None:
        """Stop the child (a no-op once the result is in): an error elsewhere does not wait for it."""
        if self._process is not None:
            self._process.terminate()
            self._process.join()
            self._conn.close()
            self._process = None
            atexit.unregister(self.close)

    def __enter__(self) -> "Pending":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
