"""How a training process tells that its launcher is gone: a pid that no longer exists, a
zombie, or a pid now given to another process (a different start time)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simpo_core.train.watchdog import (
    LAUNCHER_PID_ENV,
    LAUNCHER_START_ENV,
    launcher_environment,
    process_alive,
    process_start_time,
    watch,
    watch_launcher,
)

linux_only = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
NO_SUCH_PID = 2**22 + 1  # above the largest pid Linux hands out


@linux_only
def test_this_process_is_alive_with_its_own_start_time_only():
    start = process_start_time(os.getpid())
    assert isinstance(start, int) and start == process_start_time(os.getpid())
    assert process_alive(os.getpid()) and process_alive(os.getpid(), start)
    assert not process_alive(os.getpid(), start + 1)  # the same pid, started at another time: another process
    assert process_start_time(NO_SUCH_PID) is None and not process_alive(NO_SUCH_PID)


@linux_only
def test_an_exited_process_is_gone_before_and_after_it_is_reaped():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while process_alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not process_alive(child.pid)
    assert Path(f"/proc/{child.pid}").exists(), "not reaped yet: a zombie"
    child.wait()
    assert not process_alive(child.pid)


@linux_only
def test_watch_returns_once_the_process_is_gone():
    gone = []
    watch(os.getpid(), process_start_time(os.getpid()) + 1, gone.append, poll_seconds=0.01)  # a reused pid
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    watch(child.pid, process_start_time(child.pid), gone.append, poll_seconds=0.01)
    assert gone == [os.getpid(), child.pid] and child.wait() == 0


def test_the_launcher_names_itself_and_nothing_is_watched_without_it(monkeypatch):
    values = launcher_environment()
    assert values[LAUNCHER_PID_ENV] == str(os.getpid())
    assert values[LAUNCHER_START_ENV] == str(process_start_time(os.getpid()) or "")
    monkeypatch.delenv(LAUNCHER_PID_ENV, raising=False)
    assert watch_launcher() is None
