"""CPU seconds and peak RSS of processes: /proc for processes we do not wait for, wait4 for
the ones we do."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (all its threads); 0.0 if it is gone."""
    return _stat_cpu(Path(f"/proc/{pid}/stat"))


def main_thread_cpu_seconds(pid: int) -> float:
    """utime + stime of a live process's main thread alone (xfer's event loop: everything but
    the hashes and the spill file, which run in worker threads); 0.0 if it is gone."""
    return _stat_cpu(Path(f"/proc/{pid}/task/{pid}/stat"))


def _stat_cpu(path: Path) -> float:
    try:
        stat = path.read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # the name (field 2) may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15


def peak_rss_bytes(pid: int) -> int:
    """VmHWM: the process's resident set high-water mark; 0 if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def machine_cpu_seconds() -> tuple[float, float, float]:
    """(busy, softirq, steal) CPU seconds of the whole machine since boot, all cores.
    busy excludes steal; softirq (loopback TCP is processed there) is in no process's
    /proc/<pid>/stat, so it is reported on its own."""
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (
            int(v) for v in stat.readline().split()[1:9])
    busy = user + nice + system + irq + softirq
    return busy / CLOCK_TICKS, softirq / CLOCK_TICKS, steal / CLOCK_TICKS


class CpuMeter:
    """CPU seconds that a fixed set of named processes spend between `start` and `stop`."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self._before: dict[str, float] = {}

    def start(self) -> None:
        self._before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        return {name: round(cpu_seconds(pid) - self._before[name], 3)
                for name, pid in self.pids.items()}


@dataclass(frozen=True)
class ChildUsage:
    returncode: int
    wall_seconds: float
    cpu_seconds: float  # user + system of the child (and any children it waited for)
    peak_rss_bytes: int
    output_tail: str
    read_chars: int  # rchar of /proc/<pid>/io at its exit: bytes its read() calls returned


def read_chars(pid: int) -> int:
    """Bytes a process got from read()-family calls on files and pipes (not from recv() on
    sockets); readable until the process is reaped, also as a zombie."""
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_measured(argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None,
                 log_path: Path, stdout_path: Path | None = None) -> ChildUsage:
    """Run a command to its end (killed after `timeout` s); its rusage comes from wait4.
    Its output goes to `log_path`, or only its stderr when `stdout_path` takes its stdout."""
    started = time.monotonic()
    with open(log_path, "wb") as log, open(stdout_path or os.devnull, "wb") as out:
        process = subprocess.Popen(list(argv), env=dict(env) if env is not None else None,
                                   stdin=subprocess.DEVNULL, stdout=out if stdout_path else log,
                                   stderr=log if stdout_path else subprocess.STDOUT,
                                   start_new_session=True)
    deadline = started + timeout
    # Not wait4's ru_maxrss: exec keeps the high-water mark of the harness that forked the
    # child. VmHWM of the exec'd image, read until it exits, is the child's own.
    peak_rss, exited, chars = 0, False, 0
    try:
        while not exited and time.monotonic() <= deadline:
            # WNOWAIT: an exited child stays a zombie, whose /proc/<pid>/io is still there
            exited = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
            if exited:
                chars = read_chars(process.pid)
            else:
                peak_rss = peak_rss_bytes(process.pid) or peak_rss
                time.sleep(0.02)
    finally:
        if not exited:  # the timeout, or the harness is being stopped
            os.killpg(process.pid, signal.SIGKILL)  # its own session: it and its children only
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)  # tell Popen it was reaped
    tail = log_path.read_text(errors="replace")[-2000:]
    if wall > timeout:
        tail += f"\n(killed after {timeout:.0f} s)"
    return ChildUsage(process.returncode, wall, usage.ru_utime + usage.ru_stime, peak_rss, tail,
                      chars)
