"""Entry point for one Swift process of the local cloud; runs under the cloud venv's Python.

Executed as a script (``.cloud-venv/bin/python /abs/path/swift_main.py ...``), never imported by
xfer: it may import only the standard library and Swift.

    swift_main.py server SWIFT_DIR CONF_FILE SERVER_NAME
    swift_main.py rings SWIFT_DIR --ip IP --account-port N --container-port N --object-port N

Why not Swift's own ``swift-*-server`` scripts:
- Swift reads storage policies and ``[swift-constraints]`` once, at import, from the hard-coded
  ``/etc/swift/swift.conf``; ``swift_dir`` in a server config comes too late for that. Each cluster
  has its own swift.conf, so this script points ``SWIFT_CONF_FILE`` at it before anything imports
  ``swift.common.constraints`` or ``swift.common.storage_policy``.
- ``eventlet.listen`` sets SO_REUSEPORT, so two servers given the same port would silently share
  it and the kernel would split requests between two clusters. Binding without it makes a clash a
  loud EADDRINUSE instead.
- Building rings with ``RingBuilder`` in one process takes a fraction of a second; the
  ``swift-ring-builder`` CLI costs about as much per call and exits 1 when nothing moves.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

# Swift modules that read swift.conf at import time; none may be loaded before we redirect it.
_CONF_READING_MODULES = ("swift.common.constraints", "swift.common.storage_policy")

SERVER_NAMES = ("proxy-server", "account-server", "container-server", "object-server")
RING_NAMES = ("account", "container", "object")
PART_POWER = 10
DEVICE_NAME = "d1"


def use_swift_dir(swift_dir: str) -> None:
    """Make every Swift module read ``<swift_dir>/swift.conf`` instead of /etc/swift's."""
    import swift.common.utils as swift_utils

    already_loaded = [name for name in _CONF_READING_MODULES if name in sys.modules]
    if already_loaded:
        raise RuntimeError(f"{already_loaded} imported before swift.conf was redirected")
    # set_swift_dir also re-reads the hash path prefix/suffix from the new file.
    swift_utils.set_swift_dir(os.path.abspath(swift_dir))


def listen_without_reuse_port() -> None:
    """Make Swift's listening sockets fail on a taken port instead of sharing it."""
    import swift.common.wsgi as swift_wsgi

    if not hasattr(swift_wsgi, "listen"):
        # A newer Swift binds some other way; the launcher's free-port check still stands.
        print("swift_main: cannot turn off SO_REUSEPORT in this Swift", file=sys.stderr)
        return
    swift_wsgi.listen = functools.partial(swift_wsgi.listen, reuse_port=False)


def run_server(conf_file: str, server_name: str) -> int:
    from swift.common.wsgi import run_wsgi

    listen_without_reuse_port()
    extra: dict[str, object] = {}
    if server_name == "object-server":
        # What swift-object-server passes too: the replication semaphore.
        from swift.obj.server import global_conf_callback

        extra["global_conf_callback"] = global_conf_callback
    # verbose: log to stderr, which the launcher sends to a log file (there is no /dev/log).
    status: int = run_wsgi(conf_file, server_name, verbose=True, **extra)
    return status


def build_rings(swift_dir: str, ip: str, ports: dict[str, int]) -> None:
    """One device, one replica: a part power 10 ring per server type, written as <name>.ring.gz."""
    from swift.common.ring import RingBuilder

    for ring_name in RING_NAMES:
        builder = RingBuilder(PART_POWER, 1, 1)
        builder.add_dev(
            {
                "id": 0,
                "region": 1,
                "zone": 1,
                "ip": ip,
                "port": ports[ring_name],
                "device": DEVICE_NAME,
                "weight": 100.0,
            }
        )
        builder.rebalance()
        builder.get_ring().save(os.path.join(swift_dir, f"{ring_name}.ring.gz"))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="swift_main.py")
    commands = parser.add_subparsers(dest="command", required=True)

    server = commands.add_parser("server", help="run one Swift WSGI server in the foreground")
    server.add_argument("swift_dir")
    server.add_argument("conf_file")
    server.add_argument("server_name", choices=SERVER_NAMES)

    rings = commands.add_parser("rings", help="build the account, container and object rings")
    rings.add_argument("swift_dir")
    rings.add_argument("--ip", required=True)
    for ring_name in RING_NAMES:
        rings.add_argument(f"--{ring_name}-port", type=int, required=True)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    use_swift_dir(args.swift_dir)
    if args.command == "rings":
        ports = {name: getattr(args, f"{name}_port") for name in RING_NAMES}
        build_rings(args.swift_dir, args.ip, ports)
        return 0
    return run_server(args.conf_file, args.server_name)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
