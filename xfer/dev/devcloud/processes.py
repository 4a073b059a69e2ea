"""Starting, watching and stopping the local cloud's processes, always by their recorded PID.

A ``ProcessRecord`` keeps the kernel start time of its process next to the PID, so a PID that was
reused by some other program is never signalled. Long-running processes are started in their own
session (they outlive the ``xfer devcloud up`` that started them); one-shot steps (ring
building, database set-up) are children that ``up`` waits for.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from xfer.dev.devcloud.loopback import LaunchSpec, OneShot

STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ProcessRecord:
    name: str  # "RegionOne/proxy-server", "postgres", "keystone"
    pid: int
    start_ticks: int  # field 22 of /proc/<pid>/stat: tells our process from a reused PID
    stop_signal: int
    log_path: Path


def spawn(launch: LaunchSpec) -> ProcessRecord:
    """Start one process in its own session, so it outlives the command that started it.

    posix_spawn rather than Popen: a Popen object whose child outlives it warns (ResourceWarning,
    an error under pytest), and these children are meant to outlive this process.
    """
    log_fd = os.open(launch.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        pid = os.posix_spawn(
            launch.argv[0],
            launch.argv,
            child_environ() | dict(launch.environ),
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log_fd, 1),
                (os.POSIX_SPAWN_DUP2, log_fd, 2),
            ],
            setsid=True,
        )
    finally:
        os.close(log_fd)
    return process_record(launch.name, pid, launch.stop_signal, launch.log_path)


def start_step(step: OneShot) -> subprocess.Popen[bytes]:
    """A one-shot step as a child of this process, its output in its log file."""
    with step.log_path.open("ab") as log_file:
        return subprocess.Popen(
            step.argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            env=child_environ(),
        )


def child_environ() -> dict[str, str]:
    # Keep xfer's venv (or any PYTHONPATH) out of the cloud venv's interpreter.
    hidden = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    return {name: value for name, value in os.environ.items() if name not in hidden}


def process_record(name: str, pid: int, stop_signal: int, log_path: Path) -> ProcessRecord:
    status = proc_status(pid)
    ticks = -1 if status is None else status[1]  # -1: gone already; its log is still reported
    return ProcessRecord(name, pid, ticks, stop_signal, log_path)


def stop(processes: Sequence[ProcessRecord]) -> list[str]:
    """Signal all, wait, SIGKILL the stragglers; returns the names of any survivors."""
    for process in processes:
        _signal(process, process.stop_signal)
    if _wait_dead(processes, time.monotonic() + STOP_TIMEOUT_S):
        return []
    for process in processes:
        _signal(process, signal.SIGKILL)
    _wait_dead(processes, time.monotonic() + 3.0)
    return [p.name for p in processes if is_alive(p)]


def _signal(process: ProcessRecord, signum: int) -> None:
    if is_alive(process):
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signum)


def _wait_dead(processes: Sequence[ProcessRecord], deadline: float) -> bool:
    while any(is_alive(p) for p in processes):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def is_alive(process: ProcessRecord) -> bool:
    status = proc_status(process.pid)
    if status is None or status[1] != process.start_ticks:
        return False  # gone, or the PID now belongs to another process
    if status[0] in ("Z", "X"):
        # Dead; reap it if it is our own child (up and down in one process, as in tests).
        with contextlib.suppress(ChildProcessError):
            os.waitpid(process.pid, os.WNOHANG)
        return False
    return True


def proc_status(pid: int) -> tuple[str, int] | None:
    """State letter and start time (clock ticks after boot) of a process, from /proc/<pid>/stat.

    A zombie ("Z") is dead even though ``kill -0`` succeeds; our processes are orphans once the
    ``up`` that started them exits, and this machine's PID 1 reaps orphans only lazily.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0], int(fields[19])
