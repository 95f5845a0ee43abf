"""A torchrun job lives and dies with the process that launched it (`launch`).

The launcher holds the folder's training lock; torchrun and its processes do not. If the
launcher alone died (SIGKILL, the out-of-memory killer) and the job went on, its processes
would keep writing checkpoints while a rerun took the lock and trained beside them. So:

- torchrun runs in its own session and process group (`start_new_session`): a signal aimed
  at the launcher's group (a terminal's Ctrl-C, a supervisor stopping the launcher) does not
  reach half of the job, and the whole job can be stopped as one group.
- `die_with_parent`: on Linux the kernel sends torchrun SIGTERM the moment the launcher dies
  (`PR_SET_PDEATHSIG`); torchrun then stops its processes itself. No polling, no delay.
- `watch_launcher`: each training process also polls the launcher's pid (given in
  `SIMPO_LAUNCHER_PID`, with its start time against pid reuse) every second and, once it is
  gone, SIGKILLs the job's whole process group, torchrun included. This backstop needs no
  cooperation from torchrun, works where `PR_SET_PDEATHSIG` does not (another OS, a launcher
  killed before torchrun asked for the signal), and also catches anything the processes started.
- `stop_job`: a launcher that returns or raises (Ctrl-C, a task timeout) stops its job first.

Checkpoints are written to a temporary folder and renamed when complete, so a process killed
mid-write leaves nothing a rerun would resume from; `--resume` takes the newest complete one.
"""

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

LAUNCHER_PID_ENV = "SIMPO_LAUNCHER_PID"
LAUNCHER_START_ENV = "SIMPO_LAUNCHER_START"  # the launcher's start time, in clock ticks after boot
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
STOP_GRACE_SECONDS = 10.0


def process_start_time(pid: int) -> int | None:
    """When process `pid` started, in clock ticks after boot (/proc/<pid>/stat field 22).

    Returns:
        The start time, or None where /proc is unavailable or holds no such process.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from its closing one.
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def process_alive(pid: int, start_time: int | None = None) -> bool:
    """Process `pid` exists and is not a zombie (an exited process not yet reaped).

    Args:
        pid: the process id.
        start_time: the start time it had (`process_start_time`); a different one means the
            process is gone and its pid was given to another one.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (not Linux): ask the kernel whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # exists, owned by another user
            return True
        return True
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return False
    return start_time is None or int(fields[19]) == start_time


def launcher_environment() -> dict[str, str]:
    """What the launcher adds to the job's environment so that its processes can watch it."""
    start = process_start_time(os.getpid())
    return {LAUNCHER_PID_ENV: str(os.getpid()), LAUNCHER_START_ENV: "" if start is None else str(start)}


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` for `subprocess.Popen` that has the kernel SIGTERM the child when the
    thread that started it ends (Linux `PR_SET_PDEATHSIG`); None where that is unavailable.

    The launcher waits for the job in the thread that started it, so that thread ends only
    with the launcher process or after `stop_job`.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork, not in the child
    except (OSError, AttributeError):
        return None
    parent, sigterm = os.getpid(), int(signal.SIGTERM)

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, sigterm)
        if os.getppid() != parent:  # the launcher died before the request: stop now
            os.kill(os.getpid(), sigterm)

    return preexec


def wait(process: subprocess.Popen) -> int:
    """Wait for `process` in short polls, so that an exception raised into this thread (a task
    timeout, Ctrl-C) arrives while it runs instead of after it ends; return its exit status."""
    while True:
        try:
            return process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            continue


def stop_job(process: subprocess.Popen, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
    """Stop a job started in its own process group, if it still runs: SIGTERM to the group
    (torchrun stops its processes), then SIGKILL after `grace_seconds`.

    The group is signalled only while its leader is not yet reaped, so its id cannot have
    been given to another group.
    """
    if process.poll() is not None:
        return
    logger.warning("stopping the training job (process group %d)", process.pid)
    _signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        _signal_group(process.pid, signal.SIGKILL)
        process.wait()


def watch_launcher(poll_seconds: float = 1.0) -> threading.Thread | None:
    """In a process of a job that `launch` started: watch the launcher in a daemon thread and
    kill the job's process group once it is gone.

    Returns:
        The thread, or None when no launcher is named in the environment (a torchrun
        started by hand, or no torchrun).
    """
    pid = os.environ.get(LAUNCHER_PID_ENV)
    if not pid:
        return None
    start = os.environ.get(LAUNCHER_START_ENV)
    thread = threading.Thread(
        target=watch,
        args=(int(pid), int(start) if start else None, _kill_own_group, poll_seconds),
        name="launcher-watchdog",
        daemon=True,
    )
    thread.start()
    return thread


def watch(pid: int, start_time: int | None, on_gone: Callable[[int], None], poll_seconds: float = 1.0) -> None:
    """Return after calling `on_gone(pid)` once process `pid` (started at `start_time`) is gone."""
    while process_alive(pid, start_time):
        time.sleep(poll_seconds)
    on_gone(pid)


def _kill_own_group(launcher: int) -> None:
    logger.error("the launcher (pid %d) is gone: stopping this training job", launcher)
    os.killpg(os.getpgrp(), signal.SIGKILL)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:  # every process of the group has exited
        pass
