"""A gate at one step of the image flow, for tests that interrupt a copy exactly there: the first
job to record the step waits right after recording it (created: the target image; copying: a
first segment; copied and registered: the image steps), as if the process had stopped there.

In the test's own process (`tests.test_image_faults.paused_at`), and in an `xfer serve` of its
own, to be signalled while held:

    TEST_STEP_GATE_HELD_FILE=/tmp/held python -m tests.step_gate copied serve --port 0

writes the job's id to that file once held, and holds until the process is signalled (SIGTERM
stops it as `xfer serve` stops; SIGKILL kills it there).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from xfer.images.types import ImageStep
from xfer.jobs.job_progress import JobProgress

STEPS = ("created", "copying", "copied", "registered")
_GATES: dict[str, tuple[str, Callable[..., bool]]] = {
    "created": ("image_step", lambda step: step is ImageStep.CREATED),
    "copying": ("segment_written", lambda *_: True),
    "copied": ("image_step", lambda step: step is ImageStep.COPIED),
    "registered": ("image_step", lambda step: step is ImageStep.REGISTERED),
}


def gated(step: str, held: Callable[[JobProgress], Awaitable[None]]
          ) -> tuple[str, Callable[..., Any]]:
    """(name of the JobProgress method, its replacement): the replacement records as the
    original does, then, the first time `step` is recorded, awaits `held(progress)`."""
    name, matches = _GATES[step]
    original = getattr(JobProgress, name)
    reached = False

    async def recorded_then_held(self: JobProgress, *args: Any) -> Any:
        nonlocal reached
        result = await original(self, *args)
        if matches(*args) and not reached:
            reached = True
            await held(self)
        return result
    return name, recorded_then_held


def main(step: str, argv: list[str]) -> int:
    held_file = Path(os.environ["TEST_STEP_GATE_HELD_FILE"])

    async def held(progress: JobProgress) -> None:
        await asyncio.to_thread(held_file.write_text, str(progress.job_id))
        await asyncio.Event().wait()  # until the process is stopped

    name, replacement = gated(step, held)
    setattr(JobProgress, name, replacement)
    from xfer.cli import main as xfer_main
    return xfer_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
