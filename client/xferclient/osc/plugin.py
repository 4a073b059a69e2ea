"""What python-openstackclient asks of a plugin module: its API name and versions, a client
factory given OSC's ClientManager (auth, region and interface as the user chose them:
clouds.yaml, --os-cloud, OS_*), and its global options."""

from __future__ import annotations

import argparse
import os
from typing import Any

from xferclient.client import Client

API_NAME = "xfer"  # `openstack xfer ...`: a noun neither OSC nor another plugin uses
API_VERSION_OPTION = "os_xfer_api_version"
API_VERSIONS = ("1",)
DEFAULT_API_VERSION = "1"


def make_client(instance: Any) -> Client:
    """The Client of the xfer in the region chosen with --os-region-name (the copy's target)."""
    return Client(instance.session, region_name=instance.region_name or None,
                  interface=instance.interface or "public")


def build_option_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--os-xfer-api-version", metavar="<xfer-api-version>",
        default=os.environ.get("OS_XFER_API_VERSION", DEFAULT_API_VERSION),
        help="xfer API version, default 1 (Env: OS_XFER_API_VERSION)")
    return parser
