"""Bad input the way a user types it (`python launch.py ...`): one line naming the problem, exit 2; and a killed
launch leaves nothing running."""
from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmc.paths import REPO_ROOT
from test_launch import launch

STORE = Path(tempfile.mkdtemp(prefix="mmc-bad-input-"))  # one MLflow store per test process: created once


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The error line of a refused launch (exit 2): one line, the last, no traceback (before it, at most the log
    lines of MLflow creating a fresh store)."""
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error")]
    assert proc.returncode == 2 and errors == lines[-1:] and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return lines[-1]


@pytest.mark.parametrize("overrides, expected", [
    (["+scoring.windw=128"], "unknown key scoring.windw: ScoringConfig has"),
    (["scoring.windw=128"], "Key 'windw' not in 'ScoringConfig'"),
    (["+pool.zoo.stepz=3"], "unknown key pool.zoo.stepz: ZooConfig has"),
    (["pool.zoo.stepz=3"], "Key 'stepz' not in 'ZooConfig'"),
    (["+pool.zoo.families.0.sizes.0.hiden=8"], "unknown key pool.zoo.families.0.sizes.0.hiden: ZooSizeConfig has"),
    (["+search.foo=1"], "unknown key search.foo: ParetoPruneSearch has"),
    (["++search.foo=1"], "unknown key search.foo: ParetoPruneSearch has"),
    (["search=greedy", "+search.time_limit=5"], "unknown key search.time_limit: GreedySearch has"),
    (["search=greedy", "search.time_limit=5"], "Key 'time_limit' not in 'GreedySearch'"),
    (["+fit.bootstrapp=0"], "unknown key fit.bootstrapp: FitConfig has"),
    (["+foo=1"], "unknown key foo: Config has"),
    (["experiment=nope"], "Could not find 'experiment/nope'"),
    (["dataset.max_texts=0"], "dataset.max_texts=0"),
    (["search.max_k=0"], "search.max_k=0"),
    (["fit.bootstrap=-1"], "fit.bootstrap=-1"),
    (["scoring.threads=0"], "scoring.threads=0; use a positive number or null for the default"),
    (["scoring.threads=two"], "scoring.threads"),
    (["loss.unit=bits"], "loss.unit='bits' is not one of bits_per_byte"),
    (["pool=matrix"], "pool.path has no value and needs one"),
    (["pool=local", "pool.models=[{name: m, path: /models/m}]"], "pool.models[0].family has no value"),
])
def test_bad_overrides_fail_in_one_line_before_any_work(tmp_path, overrides, expected):
    assert expected in one_line_error(launch(tmp_path, *overrides, check=False))
    assert not (tmp_path / "mlflow.db").exists()  # refused at start-up: not even a run was opened


def corrupt_parquet(path):
    good = pd.DataFrame({"text": ["a text long enough to keep"] * 50}).to_parquet()
    path.write_bytes(good[: len(good) // 2])  # cut short, as a failed copy leaves it


@pytest.mark.parametrize("name, write, expected", [
    ("bad.parquet", corrupt_parquet, "bad.parquet is not a readable parquet file"),
    ("bad.csv", lambda p: p.write_text('text\n"an unterminated quote\n'), "bad.csv is not a readable CSV file"),
    ("photo.txt", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8),
     "photo.txt is not text (it holds NUL bytes"),
])
def test_bad_corpus_file_fails_in_one_line_naming_it(tmp_path, name, write, expected):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.txt").write_text("a good text among the bad one")
    write(corpus / name)
    proc = launch(STORE, "experiment=smoke", "dataset=files", f"dataset.path={corpus}", "dataset.min_chars=1",
                  check=False)
    assert f"error: {corpus / name}" in one_line_error(proc) and expected in proc.stderr


def loss_matrix(**change) -> dict:
    arrays = dict(models=np.array(["a", "b"]), families=np.array(["f", "g"]), params=np.array([10, 20]),
                  text_ids=np.array(["x", "y", "z"]), nll=np.ones((2, 3)), n_tokens=np.ones((2, 3), dtype=np.int64),
                  n_bytes=np.array([5, 6, 7]), n_chars=np.array([5, 6, 7]))
    arrays.update(change)
    return {k: v for k, v in arrays.items() if v is not None}


@pytest.mark.parametrize("arrays, expected", [
    (loss_matrix(nll=None), "lacks fields ['nll']; it is not an mmc loss_matrix.npz"),
    (loss_matrix(nll=np.ones((2, 4))), "field nll has shape (2, 4), expected (2, 3)"),
    (loss_matrix(nll=np.array([[1.0, np.nan, 1.0], [1.0, 1.0, 1.0]])), "non-finite losses for models ['a']"),
    (None, "is not a readable .npz file"),
])
def test_bad_loss_matrix_fails_in_one_line_naming_it(tmp_path, arrays, expected):
    path = tmp_path / "loss_matrix.npz"
    if arrays is None:
        path.write_text("not a zip archive")
    else:
        np.savez(path, **arrays)
    line = one_line_error(launch(STORE, "pool=matrix", f"pool.path={path}", check=False))
    assert line.startswith(f"error: {path}") and expected in line


def still_running(processes, timeout: float) -> list:
    """The processes still running after up to `timeout` seconds (a zombie, dead but not yet reaped, is not)."""
    import psutil

    def running(p):
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.time() + timeout
    while any(running(p) for p in processes) and time.time() < deadline:
        time.sleep(0.1)
    return [p for p in processes if running(p)]


def test_killing_launch_during_the_zoo_build_leaves_no_worker_running(tmp_path):
    """SIGKILL (no clean-up runs) while two spawned workers train: they exit with their parent."""
    psutil = pytest.importorskip("psutil")
    long_training = ["pool.zoo.workers=2", "pool.zoo.steps=100000", "pool.zoo.batch_size=1", "pool.zoo.context=8"]
    proc = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "launch.py"), f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
         f"cache_dir={tmp_path}/cache", f"hydra.run.dir={tmp_path}/run", "experiment=smoke", *long_training],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=(tmp_path / "launch.log").open("w"))
    parent, descendants, workers = psutil.Process(proc.pid), [], []

    def is_training_worker(p) -> bool:  # a spawned pool worker past its imports
        try:
            return "spawn_main" in " ".join(p.cmdline()) and sum(p.cpu_times()[:2]) > 3.0
        except psutil.NoSuchProcess:
            return False

    try:
        deadline = time.time() + 300
        while len(workers) < 2 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
            workers = [p for p in parent.children() if is_training_worker(p)]
        assert len(workers) == 2, (tmp_path / "launch.log").read_text()[-3000:]
        descendants = parent.children(recursive=True)  # the workers and multiprocessing's resource tracker
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        alive = still_running(descendants, timeout=30)
        assert not alive, [p.cmdline() for p in alive]
    finally:
        for p in descendants + [parent]:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass


def test_a_worker_whose_parent_dies_exits_without_the_kernel_signal(tmp_path):
    """The portable fallback (polling the parent pid), where prctl is unavailable: tested here on its own."""
    psutil = pytest.importorskip("psutil")
    child = ("import sys, time; from mmc.workers import watch_parent; print(flush=True); "
             "watch_parent(int(sys.argv[1]), poll_s=0.05)")
    parent = ("import subprocess, sys, os; c = subprocess.Popen([sys.executable, '-c', sys.argv[1], str(os.getpid())], "
              "stdout=subprocess.PIPE); c.stdout.readline(); print(c.pid, flush=True); sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", parent, child], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    watcher = psutil.Process(int(proc.stdout.readline()))
    try:
        assert watcher.is_running()
        proc.kill()
        proc.wait(timeout=30)
        assert not still_running([watcher], timeout=30)
    finally:
        if watcher.is_running():
            watcher.kill()


def test_a_tracking_uri_mlflow_cannot_open_fails_in_one_line(tmp_path):
    line = one_line_error(launch(tmp_path, "pool=synthetic", "tracking.uri=mlruns-folder", check=False))
    assert line.startswith("error: tracking.uri=mlruns-folder is refused by MLflow (")
