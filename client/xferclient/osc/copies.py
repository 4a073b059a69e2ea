"""`openstack xfer copy create|show|list|cancel`: image copies into the region chosen with
--os-region-name, from another region of the user's catalog."""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from osc_lib.cli import parseractions
from osc_lib.command import command

from xferclient.exceptions import ClientError
from xferclient.osc import waiting
from xferclient.osc.jobs import JobShowOne, job_record, say, xfer_of


class CreateCopy(JobShowOne):
    """Copy an image of another region into this one (--os-region-name), verified end to end"""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("image", metavar="<image>",
                            help="the image to copy, by id or by name in the source region")
        parser.add_argument("--source-region", metavar="<region>", required=True,
                            help="the region the image is in (a region of your catalog)")
        parser.add_argument("--name", metavar="<name>",
                            help="the copy's name (default: the source image's)")
        parser.add_argument("--property", metavar="<key=value>", dest="properties",
                            action=parseractions.KeyValueAction, default={},
                            help="a property set on the copy over the source's (repeat it)")
        parser.add_argument("--force", action="store_true",
                            help="copy even if your project has an active image with the "
                                 "same data in this region already")
        parser.add_argument("--idempotency-key", metavar="<key>",
                            help="the key of an earlier create to repeat it safely (default: a "
                                 "new key, shown in the output)")
        waiting.add_wait_option(parser, "the copy")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        image_id = self.xfer.resolve_image(parsed_args.image, parsed_args.source_region)
        key = parsed_args.idempotency_key or str(uuid.uuid4())
        job = self.xfer.copy_image(image_id, parsed_args.source_region, name=parsed_args.name,
                                   properties=parsed_args.properties, force=parsed_args.force,
                                   idempotency_key=key)
        if parsed_args.wait is not None:
            say(f"copy {job['id']} of image {image_id} from {parsed_args.source_region} "
                f"(Idempotency-Key {key}); waiting for it, Ctrl-C stops the waiting only")
            job = self.wait(job, parsed_args.wait)
        return job_record(job, idempotency_key=key)


class ShowCopy(JobShowOne):
    """Show a copy (your project's; an admin's: any)"""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("job", metavar="<copy>", help="the copy's id")
        waiting.add_wait_option(parser, "the copy")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        job = self.xfer.get_job(parsed_args.job)
        if parsed_args.wait is not None:
            self.wait(job, parsed_args.wait)
            job = self.xfer.get_job(parsed_args.job)  # with its cleanup and segments
        return job_record(job)


def _progress(job: dict[str, Any]) -> str:
    total, done = job["bytes_total"], job["bytes_done"] or 0
    return f"{100 * done / total:.0f}%" if total else "-"


def _list_row(job: dict[str, Any]) -> tuple[Any, ...]:
    image = job.get("image")
    if image:
        source, target = image["source_image_id"], image["target_image_id"]
    else:
        source = f"{job['source']['container']}/{job['source']['object']}"
        target = f"{job['target']['container']}/{job['target']['object']}"
    step = image["step"] if image else None
    return (job["id"], job["kind"], job["state"], step, job["source"]["region"], source,
            job["target"]["region"], target, _progress(job), job["created_at"])


class ListCopies(command.Lister):
    """List copies, newest first (your project's; an admin's: all)"""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("--state", metavar="<state>",
                            choices=("queued", "running", "verifying", "succeeded", "failed",
                                     "cancelling", "cancelled"),
                            help="only copies in this state")
        parser.add_argument("--region", metavar="<region>",
                            help="only copies from or to this region")
        parser.add_argument("--limit", metavar="<n>", type=int, help="at most this many")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        jobs = xfer_of(self).list_jobs(
            state=parsed_args.state, region=parsed_args.region, limit=parsed_args.limit)
        columns = ("ID", "Kind", "State", "Step", "Source Region", "Source", "Target Region",
                   "Target", "Progress", "Created At")
        return columns, [_list_row(job) for job in jobs]


class CancelCopy(command.Command):
    """Cancel copies: each stops, and what it made is removed (its image, its data)"""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("jobs", metavar="<copy>", nargs="+", help="the copies' ids")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> None:
        failed = 0
        for job_id in parsed_args.jobs:
            try:
                xfer_of(self).cancel_job(job_id)
            except ClientError as exc:
                failed += 1
                say(f"copy {job_id}: {exc}")
        if failed:
            raise ClientError(f"{failed} of {len(parsed_args.jobs)} copies were not cancelled")
