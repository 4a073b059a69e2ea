"""The local cloud's start, measured: `devcloud.up` (two regions, Keystone, Glance, Postgres)
from nothing to ready, the CPU seconds and the RSS of every process of the cloud at that moment,
and when Postgres accepted clients; then `down`. Not a test: times depend on the machine's load,
which is printed beside each run.

    .venv/bin/python -m benchmarks.devcloud_startup --runs 3
    .venv/bin/python -m benchmarks.devcloud_startup --runs 3 --state-dir .devcloud-startup

Each run starts from nothing, in a new temporary directory removed after `down` (untimed); with
``--state-dir``, in that directory, as `xfer devcloud up` does in `.devcloud`: from the second
run on, `up` also moves the previous cloud's files aside and removes them meanwhile.

CPU seconds: the cloud's long-running processes (each started in its own session; gunicorn's
workers and Postgres's backends are in their parent's), their reaped children included, plus
this process's reaped children: the one-shot steps (rings, keystone-setup, glance-db-sync),
initdb and psql.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from xfer.dev import devcloud

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def cloud_usage(cloud: devcloud.CloudInfo) -> tuple[float, int, int]:
    """(CPU seconds, RSS bytes, process count) of every process in the cloud's sessions."""
    sessions = {process.pid for process in cloud.processes}
    cpu, rss, count = 0.0, 0, 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            resident_pages = int((entry / "statm").read_text().split()[1])
        except OSError:
            continue  # gone meanwhile
        if int(fields[3]) in sessions:  # field 6, the session
            cpu += sum(int(ticks) for ticks in fields[11:15]) / CLOCK_TICKS  # utime..cstime
            rss += resident_pages * PAGE_SIZE
            count += 1
    return cpu, rss, count


def postgres_ready_at(cloud: devcloud.CloudInfo) -> float | None:
    """When the server first logged that it accepts connections (wall clock, epoch seconds)."""
    if cloud.postgres is None:
        return None
    for line in cloud.postgres.log_path.read_text(errors="replace").splitlines():
        if "ready to accept connections" in line:
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
            return stamp.timestamp()
    return None


def one_run(state_dir: Path) -> str:
    load = os.getloadavg()[0]
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started_wall, started = time.time(), time.monotonic()
    cloud = devcloud.up(state_dir)
    try:
        ready = time.monotonic() - started
        cpu, rss, count = cloud_usage(cloud)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        steps = (children.ru_utime - children_before.ru_utime
                 + children.ru_stime - children_before.ru_stime)
        postgres = postgres_ready_at(cloud)
    finally:
        devcloud.down(state_dir)
    postgres_at = "-" if postgres is None else f"{postgres - started_wall:.1f} s"
    return (f"ready in {ready:.1f} s (Postgres at {postgres_at}), load {load:.1f}; CPU-s: "
            f"services {cpu:.1f} + steps {steps:.1f} = {cpu + steps:.1f}; "
            f"RSS {rss / 2**20:.0f} MiB in {count} processes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--state-dir", type=Path, default=None)
    args = parser.parse_args()
    for run in range(1, args.runs + 1):
        state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="xfer-startup-"))
        state_dir.mkdir(parents=True, exist_ok=True)
        state_dir.chmod(0o755)  # Postgres runs as its own user and traverses it
        try:
            print(f"run {run}: {one_run(state_dir)}", flush=True)
        finally:
            if args.state_dir is None:
                shutil.rmtree(state_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
