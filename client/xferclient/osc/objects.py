"""`openstack xfer object copy|find`, for admins: raw Swift object copies with xfer's own
credentials (policy `object_copy:create`, `object:find`), and the verified copies it made."""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from osc_lib.command import command

from xferclient.exceptions import ClientError
from xferclient.osc import waiting
from xferclient.osc.jobs import JobShowOne, job_record, say, xfer_of


class CopyObject(JobShowOne):
    """Copy a Swift object between regions (admin), verified by MD5 and SHA-512"""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("--source-region", metavar="<region>", required=True)
        parser.add_argument("--source-container", metavar="<container>", required=True)
        parser.add_argument("--source-object", metavar="<object>", required=True)
        parser.add_argument("--target-region", metavar="<region>",
                            help="default: the region of --os-region-name")
        parser.add_argument("--target-container", metavar="<container>",
                            help="default: the source's")
        parser.add_argument("--target-object", metavar="<object>", help="default: the source's")
        parser.add_argument("--checksum", metavar="<md5>",
                            help="the MD5 the object must have (verifies an SLO or DLO end to "
                                 "end)")
        parser.add_argument("--max-rate", metavar="<MB/s>", type=float,
                            help="read the source at most this fast")
        waiting.add_wait_option(parser, "the copy")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        args = parsed_args
        target_region = args.target_region or self.xfer.region_name
        if not target_region:
            raise ClientError("name the target region: --target-region or "
                                      "--os-region-name")
        source = {"region": args.source_region, "container": args.source_container,
                  "object": args.source_object}
        target = {"region": target_region, **{name: value for name, value in (
            ("container", args.target_container), ("object", args.target_object)) if value}}
        key = str(uuid.uuid4())
        job = self.xfer.copy_object(source, target, checksum=args.checksum,
                                    max_rate_mb=args.max_rate, idempotency_key=key)
        if args.wait is not None:
            say(f"copy {job['id']} (Idempotency-Key {key}); waiting for it, Ctrl-C stops the "
                f"waiting only")
            job = self.wait(job, args.wait)
        return job_record(job, idempotency_key=key)


class FindObject(command.Lister):
    """List the verified copies xfer made of some content (admin), at most one per region and
    project"""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--checksum", metavar="<md5>")
        which.add_argument("--os-hash-value", metavar="<sha512>")
        parser.add_argument("--region", metavar="<region>", help="only in this region")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        reply = xfer_of(self).find_objects(
            checksum=parsed_args.checksum, os_hash_value=parsed_args.os_hash_value,
            region=parsed_args.region)
        columns = ("Region", "Project", "Container", "Object", "Size", "Checksum", "Job",
                   "Verified At")
        return columns, [(o["region"], o["project"], o["container"], o["object"], o["size"],
                          o["checksum"], o["job_id"], o["verified_at"])
                         for o in reply["objects"]]
