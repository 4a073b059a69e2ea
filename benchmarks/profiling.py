"""`--profile`: each xfer run sampled by py-spy (native frames included), and a summary of
where its CPU went, small enough to keep in benchmarks/profiles/ and cite.

    py-spy record --native --format raw   one line per distinct stack: frames root first,
                                          separated by ';', then the number of samples
    summary                               samples by area (the first rule matching the stack,
                                          leaf first), and the leaf functions that cost most

py-spy pauses xfer at each sample (native unwinding needs it), so a profiled run's CPU
figures are not comparable with an unprofiled run's; the profile's shares are what counts.
Only threads that were running are sampled (py-spy leaves idle ones out), so the shares are
of CPU time, the event loop's and the hashing threads' together.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PY_SPY = Path(sys.executable).with_name("py-spy")
SAMPLES_PER_SECOND = 200

WAITING = "waiting (idle threads, the GIL): not CPU"
# (area, substrings of a frame), in order: a sample belongs to the first area any frame of its
# stack matches (a send() of the loop's self-pipe is a thread hand-off, not a socket send).
# The first rule picks out the threads that were merely waiting: py-spy counts them as active
# when it samples native frames.
AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (WAITING, ("pthread_cond_timedwait", "pthread_cond_wait", "epoll_wait", "epoll_pwait",
               "sem_wait", "sem_clockwait", "PyThread_acquire_lock_timed")),
    ("MD5", ("MD5_Update", "md5_block")),
    ("SHA-512", ("SHA512_Update", "sha512_block")),
    # Not the data path: job records (Postgres), and the API answering the harness, which
    # polls the job every 0.1 s. Its cost is per second, not per byte: under py-spy a copy is
    # 6-8 times slower, so this share is 6-8 times what it is in an unprofiled run.
    ("job records and API (asyncpg, jobs/, web/)", ("asyncpg/", "xfer/jobs/", "xfer/web/")),
    ("spill file write/read", ("os_pwrite", "os_preadv", "engine/spill.py")),
    ("thread hand-off (to_thread, wake-ups)", (
        "_write_to_self", "run_in_executor", "call_soon_threadsafe", "_read_from_self",
        "concurrent/futures", "_worker (", "to_thread", "UVAsync_send", "uv__async_io")),
    ("new chunk buffers (zeroed pages)", ("BufferPool.take", "hash_in_order;")),
    ("PUT body slices (copies)", ("detached_slices",)),
    ("GET body: aiohttp parser, stream, copy", (
        "_http_parser_cb_on_body", "read_exactly", "aiohttp/streams.py", "StreamReader")),
    ("socket recv (syscall)", ("sock_recv", "uv__read")),  # asyncio's, uvloop's (libuv)
    ("socket send (syscall)", ("sock_send", "UVStream__try_write", "uv__try_write")),
    ("aiohttp read timeout timers", ("_reschedule_timeout",)),
    ("HTTP requests (aiohttp client, connector)", (
        "ClientSession._request", "aiohttp/connector.py", "aiohttp/client_reqrep.py",
        "aiohttp/client.py", "aiohttp/client_proto.py", "aiohttp/http_writer.py",
        "aiohttp/payload.py", "sock_connect")),
    ("bulk HTTP client (xfer's own, GET/PUT bodies)", (
        "xfer/clients/bulk_", "xfer/proto/http1.py")),
    ("xfer engine", ("xfer/engine/",)),
    ("xfer clients", ("xfer/clients/",)),
    ("event loop (selector, callbacks)", ("base_events.py", "selector_events.py",
                                          "asyncio/events.py", "selectors.py",
                                          "(loop.c)", "uv_run", "uv__io_poll")),
)


@contextmanager
def recording(pid: int, raw_path: Path) -> Iterator[None]:
    """Sample the process `pid` while the block runs, into `raw_path` (py-spy's raw format)."""
    raw_path.parent.mkdir(parents=True, exist_ok=True)
    with open(raw_path.with_suffix(".log"), "wb") as log:
        spy = subprocess.Popen(
            [str(PY_SPY), "record", "--pid", str(pid), "--native", "--nolineno",
             "--rate", str(SAMPLES_PER_SECOND), "--format", "raw", "--output", str(raw_path)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file when interrupted
        try:
            spy.wait(timeout=60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()


def record_command(raw_path: Path, argv: list[str]) -> list[str]:
    """`argv` run under py-spy (for a command the harness starts and waits for)."""
    raw_path.parent.mkdir(parents=True, exist_ok=True)
    return [str(PY_SPY), "record", "--native", "--nolineno", "--rate", str(SAMPLES_PER_SECOND),
            "--format", "raw", "--output", str(raw_path), "--", *argv]


def read_stacks(raw_path: Path) -> Counter[tuple[str, ...]]:
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in raw_path.read_text(errors="replace").splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks[tuple(frames.split(";"))] += int(count)
    return stacks


def area_of(stack: tuple[str, ...]) -> str:
    joined = ";".join(stack) + ";"
    for area, needles in AREAS:
        if any(needle in joined for needle in needles):
            return area
    return "other"


def leaf_of(stack: tuple[str, ...]) -> str:
    """The innermost named frame: an address in a library without symbols (libc's memcpy
    and memset variants) is named after its caller."""
    for depth, frame in enumerate(reversed(stack)):
        if not frame.startswith("0x"):
            return frame if depth == 0 else f"{frame} -> {stack[-1].split(' ')[-1]}"
    return stack[-1]


def summary(raw_path: Path, title: str, cpu_s_per_gib: float | None, top: int = 25) -> str:
    """Samples by area and the costliest leaf functions; with the run's CPU-s/GiB (measured
    under the profiler) each share is also given as CPU-s/GiB."""
    stacks = read_stacks(raw_path)
    areas: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for stack, count in stacks.items():
        area = area_of(stack)
        areas[area] += count
        if area != WAITING:
            leaves[leaf_of(stack)] += count
    waiting = areas.pop(WAITING, 0)
    total = sum(areas.values()) or 1
    per_gib = "" if cpu_s_per_gib is None else f"; {cpu_s_per_gib:.2f} CPU-s/GiB under the profiler"
    lines = [f"# {title}",
             f"# {total} samples on CPU at {SAMPLES_PER_SECOND}/s ({waiting} more of threads "
             f"waiting, left out){per_gib}", "",
             f"{'area':<42} {'% samples':>9} {'CPU-s/GiB':>9}"]
    for area, count in areas.most_common():
        lines.append(f"{area:<42} {100 * count / total:>9.1f} {_share(count, total, cpu_s_per_gib)}")
    lines += ["", f"{'innermost function':<76} {'% samples':>9}"]
    for leaf, count in leaves.most_common(top):
        lines.append(f"{leaf[:76]:<76} {100 * count / total:>9.1f}")
    return "\n".join(lines) + "\n"


def _share(count: int, total: int, cpu_s_per_gib: float | None) -> str:
    return f"{'':>9}" if cpu_s_per_gib is None else f"{cpu_s_per_gib * count / total:>9.2f}"


if __name__ == "__main__":  # python -m benchmarks.profiling RAW [TITLE [CPU-S/GIB]]
    raw, *rest = sys.argv[1:]
    print(summary(Path(raw), rest[0] if rest else raw, float(rest[1]) if len(rest) > 1 else None))
