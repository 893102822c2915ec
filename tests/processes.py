"""Kill a child process without warning at a chosen moment (the crash tests of resume)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable

import pytest


def kill_when(process: subprocess.Popen, ready: Callable[[], bool], timeout: float, poll: float = 0.1) -> None:
    """Wait until ``ready()``, then ``kill -9`` the process; fail the test if it ends first or
    ``timeout`` seconds pass."""
    deadline = time.time() + timeout
    while not ready():
        if process.poll() is not None:
            pytest.fail("the process ended before it could be killed")
        if time.time() > deadline:
            process.kill()
            pytest.fail(f"not ready to be killed within {timeout:.0f} s")
        time.sleep(poll)
    process.send_signal(signal.SIGKILL)
    process.wait()
