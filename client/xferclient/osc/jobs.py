"""What the copy commands share: a job as one record of columns (`-f table|json|yaml` through
cliff), and a ShowOne whose exit code says how a waited-for copy ended."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from osc_lib.cli import format_columns
from osc_lib.command import command

from xferclient.client import Client
from xferclient.osc import waiting


def _error_text(error: dict[str, Any] | None) -> str | None:
    return None if error is None else f"{error['code']}: {error['message']}"


def _object_text(ref: dict[str, Any]) -> str:
    return f"{ref['region']}:{ref['container']}/{ref['object']}"


def _image_columns(job: dict[str, Any]) -> dict[str, Any]:
    image = job["image"]
    return {"step": image["step"], "source_region": image["source_region"],
            "source_image_id": image["source_image_id"], "target_region": image["target_region"],
            "target_image_id": image["target_image_id"], "name": image["name"],
            "properties": format_columns.DictColumn(image["properties"]),
            "force": image["force"], "project_id": image["project_id"]}


def _object_columns(job: dict[str, Any]) -> dict[str, Any]:
    return {"source": _object_text(job["source"]),
            "targets": format_columns.ListColumn(
                [f"{_object_text(target)} {target['state']}" for target in job["targets"]]),
            "checksum": job["checksum"], "max_rate_mb": job["max_rate_mb"],
            "deduplicated": job["deduplicated"]}


def job_record(job: dict[str, Any], **extra: Any) -> tuple[Sequence[str], Sequence[Any]]:
    """A job's columns, the same for an image copy and an object copy where they share them."""
    kind_columns = _image_columns(job) if job.get("image") else _object_columns(job)
    record = {"id": job["id"], "kind": job["kind"], "state": job["state"], **kind_columns,
              "bytes_total": job["bytes_total"], "bytes_done": job["bytes_done"],
              "rate": job["rate"], "eta": job["eta"], "md5": job["md5"],
              "sha512": job["sha512"], "verification": job["verification"],
              "error": _error_text(job["error"]), "attempts": job["attempts"],
              "created_at": job["created_at"], "started_at": job["started_at"],
              "finished_at": job["finished_at"], **extra}
    if "cleanup" in job:  # GET /v1/jobs/{id} only: what became of what a failed copy made
        record["cleanup"] = format_columns.ListColumn(
            [f"{duty['duty']} {duty['state']}" for duty in job["cleanup"]])
    return tuple(record), tuple(record.values())


def xfer_of(command_: command.Command) -> Client:
    """The Client OSC made with plugin.make_client (a ClientManager attribute per plugin)."""
    client: Client = getattr(command_.app.client_manager, "xfer")  # noqa: B009 (added at run time)
    return client


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class JobShowOne(command.ShowOne):
    """A ShowOne that may wait for its job; run() returns the waiting's exit code, after the
    job was shown as it was last seen."""

    exit_code = 0

    def run(self, parsed_args: argparse.Namespace) -> int:
        shown = super().run(parsed_args)
        return self.exit_code or shown

    @property
    def xfer(self) -> Client:
        return xfer_of(self)

    def wait(self, job: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Follow the job, say how it ended, keep the exit code; the job as last seen."""
        job_id = job["id"]
        outcome = waiting.wait_for_job(self.xfer, job, timeout)
        self.exit_code = outcome.exit_code
        error = outcome.job.get("error") or {}
        if outcome.exit_code == waiting.EXIT_FAILED:
            say(f"copy {job_id} failed: {error.get('code')}: {error.get('message')}")
        elif outcome.exit_code == waiting.EXIT_CANCELLED:
            say(f"copy {job_id} was cancelled")
        elif outcome.exit_code in (waiting.EXIT_TIMEOUT, waiting.EXIT_INTERRUPTED):
            why = ("stopped waiting (Ctrl-C)" if outcome.exit_code == waiting.EXIT_INTERRUPTED
                   else f"gave up waiting after {timeout:g} s")
            say(f"{why}; copy {job_id} goes on. Follow it with: openstack xfer copy show "
                f"{job_id} --wait; cancel it with: openstack xfer copy cancel {job_id}")
        return outcome.job
