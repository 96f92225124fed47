"""Running a training command as a subprocess and killing it once it has saved resume state (resume tests)."""

import os
import signal
import subprocess
import time
from pathlib import Path

# Quiet, single-threaded children: the kill must land mid-training, not while BLAS threads spin up.
CHILD_ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def kill_after_first_checkpoint(command: list[str], resume_dir: Path, timeout_s: float) -> Path:
    """Start `command`, SIGKILL it as soon as `resume_dir/checkpoints/last.ckpt` exists; return that file.

    Fails the calling test when the command ends before writing it or none appears within `timeout_s` seconds.
    """
    checkpoint = resume_dir / "checkpoints" / "last.ckpt"
    job = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=CHILD_ENV)
    deadline = time.monotonic() + timeout_s
    while not checkpoint.exists():
        assert job.poll() is None, "training ended before writing a resume checkpoint"
        assert time.monotonic() < deadline, "no resume checkpoint appeared"
        time.sleep(0.05)
    job.send_signal(signal.SIGKILL)
    job.wait()
    return checkpoint


def rerun_to_completion(command: list[str], timeout_s: float = 300) -> str:
    """Run `command` again to its end and return its stdout (fails the test with its stderr tail otherwise)."""
    rerun = subprocess.run(command, capture_output=True, text=True, env=CHILD_ENV, timeout=timeout_s)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    return rerun.stdout
