"""Entry point for the local cloud's Keystone and Glance processes; runs under the cloud venv.

Executed as a script with ``python -P`` (``.cloud-venv/bin/python -P /abs/path/openstack_main.py
...``), never imported by xfer: it may import only the standard library and the cloud venv's
packages. ``-P`` keeps this script's directory off ``sys.path``, so xfer's modules next to it
(cli.py, cloud.py, ...) can never shadow a package that OpenStack imports.

    openstack_main.py keystone-setup KEYSTONE_CONF SEED_JSON
    openstack_main.py glance-db-sync GLANCE_API_CONF
    openstack_main.py serve keystone|glance CONFIG_DIR GUNICORN_OPTION...

The two set-up commands start while PostgreSQL is still initialising: each imports its service
first (about 3 CPU-s, most of its cost) and then waits until its ``[database] connection``
accepts a connection (the database exists once the server is up).

Why not the OpenStack scripts:
- ``keystone-manage`` would take two processes (db_sync, bootstrap) at ~1.5 s of imports each,
  and users, projects and the catalog would still need another client; ``keystone-setup`` does
  all of it in one process, with Keystone's own code.
- ``glance-manage db sync`` would import Glance only once the database is there;
  ``glance-db-sync`` runs the same code (``glance.cmd.manage``) after waiting for it.
- Keystone parses ``sys.argv`` when its WSGI module is imported, so under gunicorn it would read
  gunicorn's options as its own and the worker would crash-loop. ``serve`` hides them while the
  application is imported. Keystone has no ``keystone-wsgi-public`` any more and ``glance-api``
  no longer runs standalone: both are WSGI applications for a server of our choice.
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

# The WSGI application of each service and the variable its config directory is read from.
APPLICATIONS = {
    "keystone": ("keystone.wsgi.api:application", "OS_KEYSTONE_CONFIG_DIR"),
    "glance": ("glance.wsgi.api:application", "OS_GLANCE_CONFIG_DIR"),
}
# How long a set-up command waits for its database (`xfer devcloud up` stops it sooner if the
# start fails: cloud.py READY_TIMEOUT_S).
DATABASE_WAIT_S = 180.0
DATABASE_POLL_S = 0.1


def keystone_setup(conf_file: str, seed_file: str) -> None:
    """Schema, bootstrap (admin, default domain, the standard roles), then the seed's regions,
    catalog, projects and users. The key repositories are already there (keystone_server.py)."""
    seed = json.loads(Path(seed_file).read_text())
    import keystone.conf
    from keystone.cmd import bootstrap
    from keystone.common import sql
    from keystone.common.sql import upgrades

    conf = keystone.conf.CONF
    wait_for_database(conf_file)
    # What keystone-manage does before its sub-commands, in its order.
    keystone.conf.configure()
    sql.initialize()
    keystone.conf.set_default_for_default_log_levels()  # also registers oslo.log's options
    conf(args=[], project="keystone", default_config_files=[conf_file])
    keystone.conf.setup_logging()

    upgrades.offline_sync_database_to_version()

    bootstrapper = bootstrap.Bootstrapper()  # also loads Keystone's backends (PROVIDERS)
    bootstrapper.admin_username = seed["admin"]["name"]
    bootstrapper.admin_password = seed["admin"]["password"]
    bootstrapper.project_name = seed["admin"]["project"]
    bootstrapper.admin_role_name = "admin"
    bootstrapper.immutable_roles = True
    bootstrapper.bootstrap()
    roles = {
        "admin": bootstrapper.admin_role_id,
        "member": bootstrapper.member_role_id,
        "reader": bootstrapper.reader_role_id,
        "service": bootstrapper.service_role_id,
    }
    _seed_catalog(seed)
    _seed_users(seed, bootstrapper.default_domain_id, roles)


def glance_db_sync(conf_file: str) -> None:
    """``glance-manage --config-file CONF db sync``, once the database accepts connections."""
    from glance.cmd import manage

    wait_for_database(conf_file)
    sys.argv = ["glance-manage", "--config-file", conf_file, "db", "sync"]
    manage.main()


def wait_for_database(conf_file: str) -> None:
    """Return once the ``[database] connection`` of ``conf_file`` accepts a connection: until
    then the server is still initialising, or has not created the database yet."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    config = configparser.ConfigParser(interpolation=None)
    config.read(conf_file)
    engine = sqlalchemy.create_engine(config["database"]["connection"], poolclass=NullPool)
    deadline = time.monotonic() + DATABASE_WAIT_S
    try:
        while True:
            try:
                engine.connect().close()
                return
            except sqlalchemy.exc.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise SystemExit(f"no database after {DATABASE_WAIT_S:.0f} s: {exc}") from exc
                time.sleep(DATABASE_POLL_S)
    finally:
        engine.dispose()


def _seed_catalog(seed: dict[str, Any]) -> None:
    from keystone.common.provider_api import ProviderAPIs as providers

    for region in seed["regions"]:
        providers.catalog_api.create_region({"id": region})
    for service in seed["services"]:
        service_id = uuid.uuid4().hex
        providers.catalog_api.create_service(service_id, {
            "id": service_id, "type": service["type"], "name": service["name"], "enabled": True,
        })
        for region, url in service["endpoints"].items():
            for interface in ("public", "internal", "admin"):
                endpoint_id = uuid.uuid4().hex
                providers.catalog_api.create_endpoint(endpoint_id, {
                    "id": endpoint_id, "service_id": service_id, "region_id": region,
                    "interface": interface, "url": url, "enabled": True,
                })


def _seed_users(seed: dict[str, Any], domain_id: str, roles: dict[str, str]) -> None:
    from keystone.common.provider_api import ProviderAPIs as providers

    projects: dict[str, str] = {}
    for user in seed["users"]:
        if user["project"] not in projects:
            project_id = uuid.uuid4().hex
            providers.resource_api.create_project(project_id, {
                "id": project_id, "name": user["project"], "domain_id": domain_id,
                "enabled": True, "description": "local cloud project",
            })
            projects[user["project"]] = project_id
        created = providers.identity_api.create_user({
            "name": user["name"], "domain_id": domain_id, "password": user["password"],
            "enabled": True,
        })
        providers.assignment_api.add_role_to_user_and_project(
            created["id"], projects[user["project"]], roles[user["role"]]
        )


def serve(service: str, config_dir: str, gunicorn_options: list[str]) -> None:
    """gunicorn in this process (its master's PID is the one the launcher records)."""
    from gunicorn.app.wsgiapp import WSGIApplication

    application, config_variable = APPLICATIONS[service]
    os.environ[config_variable] = config_dir

    class ArgvHidingApplication(WSGIApplication):  # type: ignore[misc]  # not in xfer's venv
        def load_wsgiapp(self) -> Any:
            options, sys.argv = sys.argv, sys.argv[:1]
            try:
                return super().load_wsgiapp()
            finally:
                sys.argv = options

    sys.argv = [f"gunicorn-{service}", *gunicorn_options, application]
    ArgvHidingApplication("%(prog)s [OPTIONS] [APP_MODULE]", prog=sys.argv[0]).run()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="openstack_main.py")
    commands = parser.add_subparsers(dest="command", required=True)
    setup = commands.add_parser("keystone-setup", help="create and seed Keystone's database")
    setup.add_argument("conf_file")
    setup.add_argument("seed_file")
    sync = commands.add_parser("glance-db-sync", help="create Glance's schema")
    sync.add_argument("conf_file")
    server = commands.add_parser("serve", help="serve Keystone or Glance with gunicorn")
    server.add_argument("service", choices=sorted(APPLICATIONS))
    server.add_argument("config_dir")
    server.add_argument("gunicorn_options", nargs=argparse.REMAINDER)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    if not sys.flags.safe_path:
        print("openstack_main.py: run it with python -P", file=sys.stderr)
        return 2
    args = parse_args(argv)
    if args.command == "keystone-setup":
        keystone_setup(args.conf_file, args.seed_file)
    elif args.command == "glance-db-sync":
        glance_db_sync(args.conf_file)
    else:
        serve(args.service, args.config_dir, args.gunicorn_options)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
