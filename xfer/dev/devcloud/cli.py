"""``xfer devcloud up|down|env``: the local cloud from a shell.

xfer devcloud up [--state-dir D] [--max-file-size REGION=BYTES ...] [--no-database]
                 [--no-openstack] [--file-store-api REGION ...]
eval "$(xfer devcloud env [--user alice|bob|carol|xfer|admin] [--region RegionTwo]
                         [--serve RegionTwo])"
xfer devcloud down
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from xfer.dev.devcloud.cloud import DEFAULT_CLUSTERS, default_state_dir, down, load, up
from xfer.dev.devcloud.keystone_server import DATABASE as KEYSTONE_DATABASE
from xfer.dev.devcloud.loopback import DevcloudError
from xfer.dev.devcloud.swift_cluster import ClusterSpec


def register(subparsers: Any) -> None:
    """Add the ``devcloud`` command to the parent parser's ``add_subparsers()`` result."""
    devcloud = subparsers.add_parser("devcloud", help="local Swift clusters and Postgres")
    commands = devcloud.add_subparsers(dest="devcloud_command", required=True)

    start = commands.add_parser("up", help="start a fresh local cloud")
    _add_state_dir(start)
    start.add_argument(
        "--max-file-size",
        action="append",
        default=[],
        metavar="REGION=BYTES",
        help="Swift's max_file_size for one region (repeatable)",
    )
    start.add_argument("--no-database", action="store_true",
                       help="no database for xfer (Postgres still runs for Keystone and Glance)")
    start.add_argument("--no-openstack", action="store_true",
                       help="Swift with tempauth only: no Keystone, no Glance")
    start.add_argument("--file-store-api", action="append", default=[], metavar="REGION",
                       help="also a Glance API whose uploads land in the file store (repeatable)")
    start.set_defaults(func=run_up)

    stop = commands.add_parser("down", help="stop the local cloud (data and logs stay)")
    _add_state_dir(stop)
    stop.set_defaults(func=run_down)

    environ = commands.add_parser("env", help="print export lines for the running cloud")
    _add_state_dir(environ)
    environ.add_argument("--user", default="alice", help="the Keystone user of the OS_* lines")
    environ.add_argument("--region", default="", help="OS_REGION_NAME (default: the first)")
    environ.add_argument("--serve", default="", metavar="REGION",
                         help="XFER_* for the xfer of REGION: Keystone, its catalog port")
    environ.set_defaults(func=run_env)


def _add_state_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where the cloud keeps its files (default: $XFER_DEVCLOUD_DIR or <repo>/.devcloud)",
    )


def run_up(args: argparse.Namespace) -> int:
    state_dir = args.state_dir or default_state_dir()
    try:
        clusters = cluster_specs(args.max_file_size)
        started = time.monotonic()
        cloud = up(state_dir, clusters, database=not args.no_database,
                   openstack=not args.no_openstack, file_store_regions=args.file_store_api)
    except (DevcloudError, ValueError) as exc:
        print(f"xfer devcloud up: {exc}", file=sys.stderr)
        return 1
    print(f"local cloud ready in {time.monotonic() - started:.1f} s, state in {cloud.state_dir}")
    for cluster in cloud.clusters.values():
        print(f"  {cluster.region}: Swift tempauth {cluster.auth_url}  user {cluster.user} "
              f"key {cluster.key}")
        glance = cloud.glances.get(cluster.region)
        if glance is not None:
            print(f"  {cluster.region}: Glance {glance.url}, "
                  f"Swift for Keystone tokens {cluster.keystone_storage_url}")
        if glance is not None and glance.file_store_url:
            print(f"  {cluster.region}: Glance file-store API {glance.file_store_url}")
    if cloud.keystone is not None:
        users = ", ".join(f"{u.name} ({u.role} in {u.project})" for u in cloud.keystone.users.values())
        print(f"  Keystone: {cloud.keystone.auth_url}; users {users}; "
              "passwords: xfer devcloud env --user NAME")
    if cloud.database_url:
        print(f"  database: {cloud.database_url}")
    if cloud.postgres is not None and cloud.keystone is not None:
        names = [KEYSTONE_DATABASE, *(glance.database for glance in cloud.glances.values())]
        print(f"  Keystone's and Glance's databases: {', '.join(names)} "
              f"(e.g. psql '{cloud.postgres.url(KEYSTONE_DATABASE)}')")
    state_option = f" --state-dir {shlex.quote(str(cloud.state_dir))}" if args.state_dir else ""
    print(f'use it with: eval "$(xfer devcloud env{state_option})"')
    return 0


def run_down(args: argparse.Namespace) -> int:
    try:
        down(args.state_dir or default_state_dir())
    except DevcloudError as exc:
        print(f"xfer devcloud down: {exc}", file=sys.stderr)
        return 1
    return 0


def run_env(args: argparse.Namespace) -> int:
    try:
        cloud = load(args.state_dir or default_state_dir())
    except DevcloudError as exc:
        print(f"xfer devcloud env: {exc}", file=sys.stderr)
        return 1
    if cloud.keystone is not None and args.user not in cloud.keystone.users:
        print(f"xfer devcloud env: no user {args.user!r}; have {sorted(cloud.keystone.users)}",
              file=sys.stderr)
        return 1
    if args.serve and (cloud.keystone is None or args.serve not in cloud.xfer_urls):
        print(f"xfer devcloud env: no xfer endpoint for {args.serve!r} (the cloud runs "
              f"{'without Keystone' if cloud.keystone is None else sorted(cloud.xfer_urls)})",
              file=sys.stderr)
        return 1
    if args.region and args.region not in cloud.clusters:
        print(f"xfer devcloud env: no region {args.region!r}; have {sorted(cloud.clusters)}",
              file=sys.stderr)
        return 1
    sys.stdout.write(cloud.shell_exports(user=args.user, region=args.region, serve=args.serve))
    return 0


def cluster_specs(max_file_sizes: list[str]) -> list[ClusterSpec]:
    """The default regions, with ``REGION=BYTES`` limits applied."""
    limits: dict[str, int] = {}
    for item in max_file_sizes:
        region, _, size = item.partition("=")
        if not size.isdigit():
            raise ValueError(f"--max-file-size {item!r}: expected REGION=BYTES")
        limits[region] = int(size)
    regions = [spec.region for spec in DEFAULT_CLUSTERS]
    unknown = set(limits) - set(regions)
    if unknown:
        raise ValueError(f"--max-file-size: unknown region(s) {sorted(unknown)}; have {regions}")
    return [ClusterSpec(region, max_file_size=limits.get(region)) for region in regions]
