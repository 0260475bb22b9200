"""mmc.cli.run_then_exit: the exit status and everything atexit handlers and logging write are kept; only the
interpreter's teardown (objects freed one by one) is skipped."""
from __future__ import annotations

import subprocess
import sys

import pytest

from mmc.paths import REPO_ROOT

SCRIPT = """
import atexit, logging, os, sys
from mmc import cli

logging.basicConfig(filename=sys.argv[1] + "/job.log", level=logging.INFO)

class Torn:  # freed in the interpreter's teardown: its __del__ marks that a teardown ran
    def __del__(self, mark=os.open, path=sys.argv[1] + "/torn_down"):
        mark(path, os.O_CREAT | os.O_WRONLY)

kept = Torn()

def main():
    atexit.register(lambda: open(sys.argv[1] + "/handler_ran", "w").close())  # like MLflow's or multiprocessing's
    logging.getLogger("job").info("the job's last line")
    print("to stdout", end="")  # unflushed: no newline
    {ending}

cli.run_then_exit(main)
"""


def run_script(tmp_path, ending: str) -> subprocess.CompletedProcess:
    script = tmp_path / "entry.py"
    script.write_text(SCRIPT.format(ending=ending))
    return subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True,
                          cwd=REPO_ROOT, env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("ending, status", [("pass", 0), ("sys.exit(2)", 2), ("sys.exit(None)", 0),
                                            ("sys.exit('error: a message')", 1)])
def test_the_status_output_handlers_and_logs_are_kept_and_the_teardown_skipped(tmp_path, ending, status):
    proc = run_script(tmp_path, ending)
    assert proc.returncode == status, proc.stderr
    assert proc.stdout == "to stdout"
    assert (tmp_path / "handler_ran").exists()
    assert "the job's last line" in (tmp_path / "job.log").read_text()
    assert not (tmp_path / "torn_down").exists()
    if "message" in ending:
        assert "error: a message" in proc.stderr


def test_an_uncaught_exception_tears_down_as_usual(tmp_path):
    proc = run_script(tmp_path, "raise ValueError('boom')")
    assert proc.returncode == 1
    assert "ValueError: boom" in proc.stderr
    assert (tmp_path / "handler_ran").exists() and (tmp_path / "torn_down").exists()
