"""`--wait [TIMEOUT]`: follow a job through its events stream until it ends, showing progress
on stderr (a bar with rate and ETA on a terminal, a plain line per change of state or step
otherwise), and say how it ended as an exit code:

    0   EXIT_SUCCEEDED   the copy succeeded
    1   (OSC)            an error before or while waiting (xfer's code and sentence printed)
    2   (argparse)       bad arguments
    3   EXIT_FAILED      the copy failed (its error code and sentence printed)
    4   EXIT_CANCELLED   the copy was cancelled
    5   EXIT_TIMEOUT     TIMEOUT passed first; the copy goes on
    130 EXIT_INTERRUPTED Ctrl-C stopped the waiting; the copy goes on
"""

from __future__ import annotations

import argparse
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from xferclient.client import TERMINAL_STATES, Client
from xferclient.exceptions import ClientError

EXIT_SUCCEEDED, EXIT_FAILED, EXIT_CANCELLED, EXIT_TIMEOUT, EXIT_INTERRUPTED = 0, 3, 4, 5, 130
EXIT_BY_STATE = {"succeeded": EXIT_SUCCEEDED, "failed": EXIT_FAILED, "cancelled": EXIT_CANCELLED}
REDRAW_SECONDS = 0.5  # how often a terminal's bar is drawn again while nothing arrives
MiB = 1 << 20
DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smh]?)$")
UNIT_SECONDS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def timeout_value(text: str) -> float:
    """`--wait`'s TIMEOUT: seconds, or with a unit: 90, 90s, 15m, 2h."""
    found = DURATION.match(text.strip())
    if found is None:
        raise argparse.ArgumentTypeError(f"{text!r} is no duration (e.g. 600, 90s, 15m, 2h)")
    return float(found[1]) * UNIT_SECONDS[found[2]]


def add_wait_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--wait", nargs="?", const=float("inf"), default=None, type=timeout_value,
        metavar="TIMEOUT",
        help=f"wait until {what} has ended, at most TIMEOUT (seconds, or 15m, 2h; default: no "
             f"limit), showing its progress on stderr; exit 0 succeeded, 3 failed, 4 "
             f"cancelled, 5 timeout, 130 Ctrl-C (the copy goes on). Give it after the "
             f"positional arguments or as --wait=TIMEOUT")


@dataclass(frozen=True)
class Outcome:
    job: dict[str, Any]  # as last seen
    exit_code: int


def _progress_numbers(job: dict[str, Any]) -> tuple[float, float, float]:
    total, done = job.get("bytes_total") or 0, job.get("bytes_done") or 0
    return done / MiB, total / MiB, (100.0 * done / total if total else 0.0)


def _step(job: dict[str, Any]) -> str:
    image = job.get("image") or {}
    return str(image.get("step") or "-")


class PlainLines:
    """A line per change of state or step, for logs and pipes."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._last: tuple[str, str] | None = None

    def show(self, job: dict[str, Any]) -> None:
        seen = (job["state"], _step(job))
        if seen == self._last:
            return
        self._last = seen
        done, total, percent = _progress_numbers(job)
        print(f"{time.strftime('%H:%M:%S')} copy {job['id']}: {job['state']}, step {seen[1]}, "
              f"{done:.1f} of {total:.1f} MiB ({percent:.0f}%)", file=self.stream, flush=True)

    def tick(self) -> None:
        pass

    def close(self) -> None:
        pass


class ProgressBar:
    """One line drawn again in place: bar, MiB, rate and ETA (as xfer computes them), state."""

    WIDTH = 28

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._job: dict[str, Any] | None = None
        self._drawn = False

    def show(self, job: dict[str, Any]) -> None:
        self._job = job
        self.tick()

    def tick(self) -> None:
        if self._job is None:
            return
        job = self._job
        done, total, percent = _progress_numbers(job)
        filled = int(self.WIDTH * percent / 100)
        rate = job.get("rate")
        rate_text = f"{rate / MiB:6.1f} MiB/s" if rate else "     - MiB/s"
        eta = job.get("eta")
        eta_text = f"ETA {_duration(eta)}" if eta is not None else "ETA -"
        line = (f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {percent:5.1f}% "
                f"{done:8.1f}/{total:.1f} MiB {rate_text} {eta_text:<10} "
                f"{job['state']} ({_step(job)})")
        self.stream.write("\r" + line + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def display_for(stream: TextIO) -> PlainLines | ProgressBar:
    return ProgressBar(stream) if stream.isatty() else PlainLines(stream)


class _Follower(threading.Thread):
    """Reads the events stream in its own thread, so that the waiting keeps its deadline and
    Ctrl-C however long a read blocks; what it reads goes through a small bounded queue."""

    def __init__(self, follow: Callable[[], Iterator[dict[str, Any]]]) -> None:
        super().__init__(name="xfer-events", daemon=True)
        self._follow = follow
        self.found: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=16)
        self.stopping = threading.Event()  # the waiting is over: close the stream at the next event

    def run(self) -> None:
        try:
            for job in self._follow():  # leaving the loop closes the generator and its stream
                if self.stopping.is_set():
                    return
                self._put(("job", job))
            self._put(("end", None))
        except Exception as exc:  # given to the waiting thread, which raises it
            self._put(("error", exc))

    def _put(self, item: tuple[str, Any]) -> None:
        while not self.stopping.is_set():
            try:
                self.found.put(item, timeout=REDRAW_SECONDS)
                return
            except queue.Full:
                continue


def wait_for_job(client: Client, job: dict[str, Any], timeout: float,
                 stream: TextIO | None = None) -> Outcome:
    """Follow `job` until it has ended, `timeout` seconds have passed or Ctrl-C; the job as
    last seen and the exit code that says which."""
    display = display_for(stream or sys.stderr)
    deadline = time.monotonic() + timeout
    follower = _Follower(lambda: client.follow(job["id"]))
    display.show(job)
    try:
        if job["state"] not in TERMINAL_STATES:
            follower.start()
        while job["state"] not in TERMINAL_STATES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return Outcome(job, EXIT_TIMEOUT)
            try:
                kind, found = follower.found.get(timeout=min(remaining, REDRAW_SECONDS))
            except queue.Empty:
                display.tick()
                continue
            if kind == "error":
                raise found
            if kind == "end":  # follow() ends only after a final state, which ended the loop
                raise ClientError(f"the events stream of copy {job['id']} ended before it did")
            job = found
            display.show(job)
    except KeyboardInterrupt:
        return Outcome(job, EXIT_INTERRUPTED)
    finally:
        follower.stopping.set()
        display.close()
    return Outcome(job, EXIT_BY_STATE[job["state"]])
