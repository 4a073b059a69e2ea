"""What the reply models cost: a job's JSON made by web/replies.py (built, checked, dumped)
against the hand-built dicts of web/api.py before them (commit 71f66a9, read with `git show`),
both written with json.dumps as aiohttp's json_response does. Not a test: times depend on the
machine's load, which is printed beside them.

    .venv/bin/python -m benchmarks.reply_models --number 2000
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.test_replies import image_job_detail, running_job
from xfer.web import replies

BEFORE = "71f66a9"


def module_before() -> ModuleType:
    """web/api.py as it was: its imports still resolve against today's tree."""
    source = subprocess.check_output(["git", "show", f"{BEFORE}:xfer/web/api.py"])
    path = Path(tempfile.mkdtemp()) / "api_before.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("api_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def best_microseconds(make: Callable[[], Any], number: int) -> float:
    return min(timeit.repeat(lambda: json.dumps(make()), number=number, repeat=5)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--number", type=int, default=2000)
    number = parser.parse_args().number
    before = module_before()
    job, detail = running_job(), image_job_detail()
    cases = {
        "job (GET /v1/jobs, per job)": (lambda: before.job_json(job),
                                        lambda: replies.Job.of(job).wire()),
        "job detail (GET /v1/jobs/{id})": (lambda: before.job_detail_json(detail),
                                           lambda: replies.JobDetail.of_detail(detail).wire()),
    }
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    for name, (hand_built, modelled) in cases.items():
        assert hand_built() == modelled()
        old = best_microseconds(hand_built, number)
        new = best_microseconds(modelled, number)
        print(f"{name}: hand-built {old:.1f} us, models {new:.1f} us, ratio {new / old:.2f}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
