"""The `xfer` command: serve, worker, migrate, check, config, upload, sweep, devcloud, demo."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from xfer import logs
from xfer.configuration import REFERENCE_PATH, load, reference, sample
from xfer.errors import CopyFailed, XferError
from xfer.settings import Settings


def run_async(settings: Settings, main: Coroutine[Any, Any, Any]) -> Any:
    """Run on the event loop the settings choose (measured, not assumed: see benchmarks/)."""
    if settings.event_loop == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def _serve(args: argparse.Namespace, api_enabled: bool) -> int:
    from xfer.app import serve

    settings = load(args.config_file)
    if args.port is not None:
        settings = settings.with_overrides(listen_port=args.port)
    logs.configure()

    def announce(port: int) -> None:
        # The one line on stdout, for whoever started the process and waits for the port
        # (logs go to stderr): JSON, like every line xfer writes.
        if api_enabled:
            url = f"{settings.listen_scheme}://{settings.listen_host}:{port}"
            print(json.dumps({"listening": url}), flush=True)

    run_async(settings, serve(settings, api_enabled=api_enabled, on_ready=announce))
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from xfer.jobs.db import close_pool, create_pool

    settings = load(args.config_file)

    async def main() -> None:
        pool = await create_pool(settings.database_url)
        await close_pool(pool)

    run_async(settings, main())
    print("xfer: database schema is up to date")
    return 0


def _upload(args: argparse.Namespace) -> int:
    from xfer.upload import Progress, UploadRequest, print_result, upload

    settings = load(args.config_file)
    logs.configure()
    regions = tuple(region.strip() for region in args.region.split(",") if region.strip())
    request = UploadRequest(Path(args.file), regions, args.container,
                            args.object or Path(args.file).name, args.checksum)
    progress = Progress(sys.stderr, show=sys.stderr.isatty() and not args.json)
    outcome = run_async(settings, upload(settings, request, progress))
    return print_result(outcome, args.json)


def _sweep(args: argparse.Namespace) -> int:
    from xfer.jobs.sweep import print_report, run_sweep

    settings = load(args.config_file)
    logs.configure()
    report = run_async(settings, run_sweep(settings, dry_run=args.dry_run,
                                           older_than_hours=args.older_than_hours))
    print_report(report, as_json=args.json)
    return 0


def _check(args: argparse.Namespace) -> int:
    from xfer.check import Preflight, print_outcomes

    settings = load(args.config_file)
    outcomes = run_async(settings, Preflight(settings, args.timeout).run())
    return print_outcomes(outcomes, sys.stdout)


def _config(args: argparse.Namespace) -> int:
    print(reference() if args.what == "reference" else sample(), end="")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from xfer.dev.demo import run_demo

    return run_demo(size_mib=args.size_mib, openstack=args.openstack)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xfer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    configured = argparse.ArgumentParser(add_help=False)
    configured.add_argument(
        "--config-file", metavar="PATH", default=None,
        help="INI file of settings in [DEFAULT] (default: $XFER_CONFIG_FILE, else none); "
             "XFER_* environment variables override it")
    serve = commands.add_parser(
        "serve", parents=[configured], help="run the REST API and a worker",
        epilog=f"Every setting, its meaning, unit and default: {REFERENCE_PATH} (also "
               f"`xfer config reference`); a commented sample file: `xfer config sample`.")
    serve.add_argument("--port", type=int, default=None, help="listen port (0: any free one)")
    serve.set_defaults(func=lambda a: _serve(a, api_enabled=True))
    worker = commands.add_parser("worker", parents=[configured], help="run only a worker",
                                 epilog=f"Settings: {REFERENCE_PATH}.")
    worker.set_defaults(func=lambda a: _serve(a, api_enabled=False), port=None)
    migrate = commands.add_parser("migrate", parents=[configured],
                                  help="apply the database migrations")
    migrate.set_defaults(func=_migrate)
    check = commands.add_parser(
        "check", parents=[configured],
        help="check this configuration against the cloud: database, Keystone, catalog, "
             "Swift, Glance",
        description="Runs each check, prints what it found and the fix for a failure; exits "
                    "1 when any failed. Run it after deploying or changing xfer.")
    check.add_argument("--timeout", type=float, default=10.0,
                       help="seconds each check may take (default 10)")
    check.set_defaults(func=_check)
    config = commands.add_parser("config", help="print the configuration reference or a "
                                                 "sample configuration file")
    config.add_argument("what", choices=("reference", "sample"),
                        help=f"reference: {REFERENCE_PATH} (Markdown); sample: a commented "
                             f"INI file with every default")
    config.set_defaults(func=_config)
    seed = commands.add_parser("upload", parents=[configured],
                               help="upload a local file to one or more regions")
    seed.add_argument("file")
    seed.add_argument("--region", required=True, help="one region, or several: R1,R2")
    seed.add_argument("--container", required=True)
    seed.add_argument("--object", help="default: the file's name")
    seed.add_argument("--checksum", help="the file's expected MD5, checked end to end")
    seed.add_argument("--json", action="store_true", help="print the result as JSON")
    seed.set_defaults(func=_upload)
    sweep = commands.add_parser(
        "sweep", parents=[configured], help="remove what dead copies left in the operator's Swift accounts",
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
    demo.add_argument("--openstack", default="", metavar="PATH",
                      help="an openstack command with python-xferclient: also copy with it")
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
