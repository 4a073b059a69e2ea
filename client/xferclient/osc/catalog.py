"""`openstack xfer region list` and `openstack xfer image find`: where copies can come from, and
"the same image" in every region of the user's catalog."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from typing import Any

from osc_lib.command import command

from xferclient.osc.jobs import say, xfer_of


class ListRegions(command.Lister):
    """List the regions of your catalog xfer can copy between (image and object-store there)"""

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        reply = xfer_of(self).regions()
        return ("Name", "Home", "Copy From"), [
            (region["name"], region["home"], region["copy_from"]) for region in reply["regions"]]


class FindImage(command.Lister):
    """Find an image by its content in every region of your catalog (the oldest active one you
    can see per region, and how many there are)"""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--checksum", metavar="<md5>", help="Glance's checksum (MD5)")
        which.add_argument("--os-hash-value", metavar="<sha512>",
                           help="Glance's os_hash_value (SHA-512)")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        reply = xfer_of(self).find_images(
            checksum=parsed_args.checksum, os_hash_value=parsed_args.os_hash_value)
        for region in reply["unavailable"]:
            say(f"{region['region']} could not be searched: {region['error']}")
        columns = ("Region", "ID", "Name", "Status", "Visibility", "Size", "Count", "Created At")
        return columns, [(match["region"], match["image"]["id"], match["image"]["name"],
                          match["image"]["status"], match["image"]["visibility"],
                          match["image"]["size"], match["count"], match["image"]["created_at"])
                         for match in reply["images"]]
