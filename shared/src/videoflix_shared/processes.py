"""Stopping processes we started: SIGTERM, a grace period, then SIGKILL.

One routine for the native launcher (deploy/devstack), the benchmarks and every test that
runs a server of its own, so each stops its children the same way: politely first (servers
shut down cleanly and release their ports), by force only when one hangs, and always
reaped, so no zombie or orphan outlives the run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from typing import Any

STOP_TIMEOUT = 15.0  # seconds a process gets to exit after SIGTERM before SIGKILL


def stop_process(
    process: subprocess.Popen[Any], *, timeout: float = STOP_TIMEOUT, group: bool = False
) -> int:
    """Stop `process` (SIGTERM, then SIGKILL after `timeout` seconds) and return its exit
    code. With `group` the signals go to its whole process group: for a process started with
    `start_new_session=True` whose children (workers, a shell's program) must stop too."""
    stop_processes([process], timeout=timeout, group=group)
    return process.returncode


def stop_processes(
    processes: Iterable[subprocess.Popen[Any]],
    *,
    timeout: float = STOP_TIMEOUT,
    group: bool = False,
) -> None:
    """Stop several processes at once: all get SIGTERM first, so they shut down in parallel
    within one `timeout`; whichever is still running then gets SIGKILL."""
    running = list(processes)
    for process in running:
        _signal(process, signal.SIGTERM, group=group)
    deadline = time.monotonic() + timeout
    for process in running:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal(process, signal.SIGKILL, group=group)
            process.wait()


def _signal(process: subprocess.Popen[Any], signum: int, *, group: bool) -> None:
    if group:  # the leader may be gone while its group still runs: signal it regardless
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signum)
    elif process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)


def stop_pid(pid: int, *, timeout: float = STOP_TIMEOUT) -> None:
    """`stop_process` for a process known only by its pid (a daemon's pid file): it may be
    our child (reaped here) or one a previous launcher left behind."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_gone(pid, timeout=timeout):
        return
    with contextlib.suppress(ProcessLookupError, ChildProcessError):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def wait_gone(pid: int, *, timeout: float) -> bool:
    """Whether `pid` exited within `timeout` seconds (polling; sends no signal)."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def pid_alive(pid: int) -> bool:
    """Whether `pid` still runs. Reaps it when it is our child: a zombie still answers kill 0."""
    with contextlib.suppress(ChildProcessError):  # not our child: only kill 0 can tell
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True
