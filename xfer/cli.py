"""The `xfer` command: serve, worker, migrate, upload, sweep, devcloud, demo."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from xfer import logs
from xfer.errors import CopyFailed, XferError
from xfer.settings import Settings, from_environ


def run_async(settings: Settings, main: Coroutine[Any, Any, Any]) -> Any:
    """Run on the event loop the settings choose (measured, not assumed: see benchmarks/)."""
    if settings.event_loop == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def _serve(args: argparse.Namespace, api_enabled: bool) -> int:
    from xfer.app import serve

    settings = from_environ()
    if args.port is not None:
        settings = settings.with_overrides(listen_port=args.port)
    logs.configure()

    def announce(port: int) -> None:
        # The one line on stdout, for whoever started the process and waits for the port
        # (logs go to stderr): JSON, like every line xfer writes.
        if api_enabled:
            url = f"http://{settings.listen_host}:{port}"
            print(json.dumps({"listening": url}), flush=True)

    run_async(settings, serve(settings, api_enabled=api_enabled, on_ready=announce))
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from xfer.jobs.db import close_pool, create_pool

    settings = from_environ()

    async def main() -> None:
        pool = await create_pool(settings.database_url)
        await close_pool(pool)

    run_async(settings, main())
    print("xfer: database schema is up to date")
    return 0


def _upload(args: argparse.Namespace) -> int:
    from xfer.upload import Progress, UploadRequest, print_result, upload

    settings = from_environ()
    logs.configure()
    regions = tuple(region.strip() for region in args.region.split(",") if region.strip())
    request = UploadRequest(Path(args.file), regions, args.container,
                            args.object or Path(args.file).name, args.checksum)
    progress = Progress(sys.stderr, show=sys.stderr.isatty() and not args.json)
    outcome = run_async(settings, upload(settings, request, progress))
    return print_result(outcome, args.json)


def _sweep(args: argparse.Namespace) -> int:
    from xfer.jobs.sweep import print_report, run_sweep

    settings = from_environ()
    logs.configure()
    report = run_async(settings, run_sweep(settings, dry_run=args.dry_run,
                                           older_than_hours=args.older_than_hours))
    print_report(report, as_json=args.json)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from xfer.dev.demo import run_demo

    return run_demo(size_mib=args.size_mib)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xfer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the REST API and a worker")
    serve.add_argument("--port", type=int, default=None, help="listen port (0: any free one)")
    serve.set_defaults(func=lambda a: _serve(a, api_enabled=True))
    worker = commands.add_parser("worker", help="run only a worker")
    worker.set_defaults(func=lambda a: _serve(a, api_enabled=False), port=None)
    migrate = commands.add_parser("migrate", help="apply the database migrations")
    migrate.set_defaults(func=_migrate)
    seed = commands.add_parser("upload", help="upload a local file to one or more regions")
    seed.add_argument("file")
    seed.add_argument("--region", required=True, help="one region, or several: R1,R2")
    seed.add_argument("--container", required=True)
    seed.add_argument("--object", help="default: the file's name")
    seed.add_argument("--checksum", help="the file's expected MD5, checked end to end")
    seed.add_argument("--json", action="store_true", help="print the result as JSON")
    seed.set_defaults(func=_upload)
    sweep = commands.add_parser(
        "sweep", help="remove what dead copies left in the operator's Swift accounts",
        description="Segments of jobs that ended without publishing them, or of jobs this "
                    "database does not know that no manifest uses; also lists what cleanups "
                    "could not remove in users' accounts.")
    sweep.add_argument("--dry-run", action="store_true", help="say what would go; remove none")
    sweep.add_argument("--older-than-hours", type=float, default=24.0,
                       help="segments of jobs unknown to the database must be this old "
                            "(default 24)")
    sweep.add_argument("--json", action="store_true", help="print the report as JSON")
    sweep.set_defaults(func=_sweep)
    demo = commands.add_parser("demo", help="copy a sample image between two local regions")
    demo.add_argument("--size-mib", type=int, default=200)
    demo.set_defaults(func=_demo)
    try:
        from xfer.dev.devcloud.cli import register
    except ImportError:
        pass  # the local cloud is a development tool; a production install may leave it out
    else:
        register(commands)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CopyFailed as failure:
        print(f"xfer: {failure.code}: {failure.message}", file=sys.stderr)
        return 1
    except XferError as exc:
        print(f"xfer: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
