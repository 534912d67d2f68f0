"""Our servers' processes: pidfiles, liveness, stopping, and polling until something holds."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psutil
from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_delay

from devtools.local_services.service import ServiceError

log = logging.getLogger(__name__)

R = TypeVar("R")
KILL_WAIT_S = 10.0
EXIT_POLL_S = 0.2


def poll_until(
    probe: Callable[[], R],
    until: Callable[[R], bool],
    *,
    timeout: float,
    pause: float | Callable[[R], float] = 0.5,
) -> R:
    """Call `probe` until `until(result)` holds or `timeout` seconds have passed, and return its
    last result either way. An exception from `probe` ends the polling at once.

    `pause` is the sleep between calls, or a function of the last result that gives it.
    """

    def last_result(state: RetryCallState) -> R:
        assert state.outcome is not None  # tenacity sets it once an attempt has run
        return state.outcome.result()

    def pause_after(state: RetryCallState) -> float:
        return pause(last_result(state)) if callable(pause) else pause

    retrying = Retrying(
        stop=stop_after_delay(timeout),
        wait=pause_after,
        retry=retry_if_result(lambda result: not until(result)),
        retry_error_callback=last_result,
    )
    return retrying(probe)


def read_pid(pidfile: Path) -> int | None:
    """The pid on the first line of `pidfile`, or None when it is missing or not a pid."""
    try:
        first = pidfile.read_text().split("\n", 1)[0].strip()
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        return None
    return int(first) if first.isdigit() else None


def pid_alive(pid: int, marker: str) -> bool:
    """True when `pid` is a live process, not a zombie, whose command line mentions `marker`.

    The marker guards against a stale pidfile whose pid now belongs to another program.
    """
    if pid <= 0:
        return False
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and marker in "\0".join(process.cmdline())
    except psutil.Error:
        return False


def managed_pid(pidfile: Path, marker: str) -> int | None:
    """The pid in `pidfile` when that process still runs and is ours, else None."""
    pid = read_pid(pidfile)
    return pid if pid is not None and pid_alive(pid, marker) else None


def wait_for_exit(pid: int, marker: str, timeout: float) -> bool:
    """Whether the process is gone within `timeout` seconds.

    Not psutil's wait(): our daemons are reparented to PID 1, and when it does not reap them a
    dead one stays a zombie, which wait() takes for alive.
    """
    alive = poll_until(lambda: pid_alive(pid, marker), lambda still: not still, timeout=timeout, pause=EXIT_POLL_S)
    return not alive


def terminate(pid: int, marker: str, timeout: float, service: str) -> None:
    """SIGTERM, then SIGKILL when the process outlives `timeout` seconds; returns once it is gone."""
    try:
        process = psutil.Process(pid)
        process.terminate()
    except psutil.NoSuchProcess:
        return
    except psutil.AccessDenied:
        raise ServiceError(f"{service}: not allowed to stop process {pid}; run as its owner or as root") from None
    if wait_for_exit(pid, marker, timeout):
        return
    log.warning("%s (pid %d) did not stop within %.0fs after SIGTERM; sending SIGKILL", service, pid, timeout)
    try:
        process.kill()
    except psutil.NoSuchProcess:
        return
    if not wait_for_exit(pid, marker, KILL_WAIT_S):
        raise ServiceError(f"{service}: process {pid} survives SIGKILL")
