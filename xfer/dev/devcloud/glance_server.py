"""One region's Glance API: gunicorn serving ``glance.wsgi.api:application`` on the region's own
database of the cloud's PostgreSQL (``glance_<region>``, postgres.py), storing image data in that
region's Swift as a multi-tenant store.

Config choices, and why (measured facts in shared/notes/real-keystone-glance-on-loopback.md):
- Legacy single-store config (``[glance_store] stores``, ``default_store = swift``) with
  ``swift_store_multi_tenant``: data lands in the image owner's own account, container
  ``glance_<image id>``, and locations are ``swift+http://...`` URLs that API 2.17's add-location
  accepts. Multi-store (``enabled_backends``) with a multi-tenant Swift store is broken in
  glance_store 5.7 ("Invalid location uri"), and a single-tenant store's ``swift+config://``
  locations are refused by the API.
- ``file`` stays in ``stores`` (under ``images/``), so images stored there are served too. In
  single-store mode the API offers no way to choose a store: ``X-Image-Meta-Store`` on an upload
  and ``stores`` on an import are read only with ``enabled_backends``, and add-location refuses
  ``file://``. So a region may get a second API, the *file-store API*, on the same database and
  directories whose only difference is ``default_store = file``: what is uploaded through it
  lands in the file store (location ``file://<glance dir>/images/<id>``) and is an ordinary
  image of the region's Glance.
- Likewise a region may get a *no-secure-hash API*: the same again with ``do_secure_hash =
  False``, so that an image whose location is added through it is activated without Glance
  reading the data back (its checksum stays None), as in a deployment that sets it.
- Imports on loopback need ``[import_filtering_opts]`` to allow 127.0.0.1 and the cloud's ports
  (Glance's SSRF guard allows 80/443 only), as bracketed lists: the bare form passes start-up
  and fails only at import time. Location imports need ``[oslo_concurrency] lock_path``,
  without it the task fails and the image silently stays ``queued``.

    <glance dir>/glance-api.conf   (OS_GLANCE_CONFIG_DIR is this directory; mode 0600)
    <glance dir>/file-store-api/glance-api.conf   the file-store API's, when there is one
    <glance dir>/no-secure-hash-api/glance-api.conf   the no-secure-hash API's, when there is one
    <glance dir>/{images,staging,tasks,locks}/
    <glance dir>/glance-api.log    gunicorn's and Glance's stderr
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from xfer.dev.devcloud import postgres
from xfer.dev.devcloud.keystone_server import KeystoneInfo
from xfer.dev.devcloud.loopback import (
    LOOPBACK,
    PROBE_TIMEOUT_S,
    Conf,
    DevcloudError,
    LaunchSpec,
    OneShot,
    gunicorn_argv,
    http_request,
    write_conf,
)

OPENSTACK_MAIN = Path(__file__).with_name("openstack_main.py")
# Uploads of large images stream through one request: gunicorn's 30 s default would kill them.
REQUEST_TIMEOUT_S = 300
# glance-download copies only properties with these prefixes (Glance's defaults, made explicit).
DOWNLOAD_PROPERTY_PREFIXES = ("hw_", "trait:", "os_distro", "os_secure_boot", "os_type")


@dataclass(frozen=True)
class GlanceInfo:
    region: str
    port: int
    url: str  # http://127.0.0.1:PORT, the region's image endpoint
    directory: Path
    file_store_port: int = 0  # 0: no file-store API
    file_store_url: str = ""  # its URL: uploads through it land in the file store
    database: str = ""  # its database in the cloud's PostgreSQL, shared by all its APIs
    ca_file: str = ""  # the cloud's CA (tls.py), trusted for https Swift and glance-download
    no_secure_hash_port: int = 0  # 0: no no-secure-hash API (do_secure_hash = False)
    no_secure_hash_url: str = ""

    @property
    def log_path(self) -> Path:
        return self.directory / "glance-api.log"

    @property
    def file_store_api_dir(self) -> Path:
        return self.directory / "file-store-api"

    @property
    def no_secure_hash_api_dir(self) -> Path:
        return self.directory / "no-secure-hash-api"

    @property
    def file_store_dir(self) -> Path:
        return self.directory / "images"


def prepare_glance(
    region: str,
    directory: Path,
    port: int,
    keystone: KeystoneInfo,
    import_ports: Iterable[int],
    python: Path,
    server: postgres.PostgresInfo,
    file_store_port: int = 0,
    defaults: Sequence[tuple[str, str]] = (),
    ca_file: str = "",
    no_secure_hash_port: int = 0,
) -> GlanceInfo:
    """Directories and glance-api.conf; ``import_ports`` are the ports imports may fetch from.
    With ``file_store_port``, also the config of the region's file-store API on that port;
    with ``no_secure_hash_port``, of its no-secure-hash API;
    ``defaults``: more [DEFAULT] options (option, value); ``ca_file``: the CA to trust.
    The database (``database_name(region)``) is made by cloud.py: created and synced, or cloned."""
    paste_ini = python.parent.parent / "etc" / "glance" / "glance-api-paste.ini"
    if not paste_ini.is_file():
        raise DevcloudError(f"no {paste_ini}: is glance installed in the cloud venv?")
    directory = directory.resolve()
    file_store_url = f"http://{LOOPBACK}:{file_store_port}" if file_store_port else ""
    no_secure_hash_url = f"http://{LOOPBACK}:{no_secure_hash_port}" if no_secure_hash_port else ""
    info = GlanceInfo(region, port, f"http://{LOOPBACK}:{port}", directory, file_store_port,
                      file_store_url, database_name(region), ca_file, no_secure_hash_port,
                      no_secure_hash_url)
    for name in ("images", "staging", "tasks", "locks"):
        (directory / name).mkdir(parents=True, exist_ok=True)
    conf = _glance_conf(info, keystone, import_ports, paste_ini)
    conf["database"] = postgres.oslo_db_section(server, info.database)
    conf["DEFAULT"].update(defaults)
    if ca_file:  # the Swift locations it reads may be https (an xfer copy's, through tls.py)
        conf["glance_store"]["swift_store_cacert"] = ca_file
    write_conf(directory / "glance-api.conf", conf, secret=True)
    if no_secure_hash_port:
        info.no_secure_hash_api_dir.mkdir()
        trusting = {**conf, "DEFAULT": {**conf["DEFAULT"], "do_secure_hash": "false",
                                        "worker_self_reference_url": no_secure_hash_url}}
        write_conf(info.no_secure_hash_api_dir / "glance-api.conf", trusting, secret=True)
    if file_store_port:
        info.file_store_api_dir.mkdir()
        conf["glance_store"]["default_store"] = "file"
        conf["DEFAULT"]["worker_self_reference_url"] = file_store_url
        write_conf(info.file_store_api_dir / "glance-api.conf", conf, secret=True)
    return info


def db_sync_step(info: GlanceInfo, python: Path) -> OneShot:
    """``glance-manage db sync``, waiting for its database (openstack_main.py glance-db-sync)."""
    argv = (str(python), "-P", str(OPENSTACK_MAIN), "glance-db-sync",
            str(info.directory / "glance-api.conf"))
    return OneShot(f"{info.region}/glance-db-sync", argv, info.directory / "glance-manage.log")


def database_name(region: str) -> str:
    """``glance_regionone`` for RegionOne: a Postgres identifier that needs no quoting."""
    return "glance_" + re.sub(r"[^a-z0-9_]", "_", region.lower())


def copy_database(synced: GlanceInfo, other: GlanceInfo, server: postgres.PostgresInfo) -> None:
    """A freshly synced database holds nothing but the schema: one db sync serves every region
    (glance-manage costs ~4 CPU-s a run, a copy of its database 0.2-0.4 s)."""
    postgres.clone_database(server, synced.database, other.database)


def launch_specs(info: GlanceInfo, python: Path) -> list[LaunchSpec]:
    """The region's API and, if it has one, its file-store API (after the same db sync)."""
    apis = [("glance-api", info.directory, info.port)]
    if info.file_store_port:
        apis.append(("glance-file-store-api", info.file_store_api_dir, info.file_store_port))
    if info.no_secure_hash_port:
        apis.append(("glance-no-secure-hash-api", info.no_secure_hash_api_dir,
                     info.no_secure_hash_port))
    specs = []
    for name, config_dir, port in apis:
        argv = (str(python), "-P", str(OPENSTACK_MAIN), "serve", "glance", str(config_dir),
                *gunicorn_argv(port, config_dir / "gunicorn.pid", timeout_s=REQUEST_TIMEOUT_S))
        # glance-download's urllib opener reads only OpenSSL's default CA paths: no option
        environ = (("SSL_CERT_FILE", info.ca_file),) if info.ca_file else ()
        specs.append(LaunchSpec(f"{info.region}/{name}", argv, config_dir / f"{name}.log",
                                environ=environ))
    return specs


def readiness_problem(info: GlanceInfo, token: str) -> str | None:
    """None once ``GET /v2/images`` answers 200 to a user's token on every API of the region:
    the app is loaded, its keystonemiddleware validates tokens and its database answers."""
    for port in (info.port, info.file_store_port, info.no_secure_hash_port):
        if not port:
            continue
        status, _, _ = http_request(
            port, "GET", "/v2/images", {"X-Auth-Token": token}, timeout=PROBE_TIMEOUT_S
        )
        if status != 200:
            return f"GET /v2/images on port {port} answered {status}"
    return None


def _bracketed(values: Iterable[object]) -> str:
    return "[" + ",".join(str(value) for value in values) + "]"


def _glance_conf(
    info: GlanceInfo, keystone: KeystoneInfo, import_ports: Iterable[int], paste_ini: Path
) -> Conf:
    glance_user = keystone.user("glance")
    return {
        "DEFAULT": {
            "use_stderr": "true",
            "debug": "false",
            "show_image_direct_url": "true",
            "enabled_import_methods": "[glance-direct,web-download,glance-download]",
            "hashing_algorithm": "sha512",
            "node_staging_uri": f"file://{info.directory / 'staging'}",
            # Where other Glance workers reach this one (distributed import); one worker here.
            "worker_self_reference_url": info.url,
        },
        # The paste pipeline shipped in the cloud venv; "keystone" puts authtoken in it.
        "paste_deploy": {"flavor": "keystone", "config_file": str(paste_ini)},
        "keystone_authtoken": {
            "www_authenticate_uri": keystone.auth_url,
            "auth_url": keystone.auth_url,
            "auth_type": "password",
            "username": glance_user.name,
            "password": glance_user.password,
            "project_name": glance_user.project,
            "user_domain_id": "default",
            "project_domain_id": "default",
            "region_name": info.region,
            "service_token_roles": "service",
            "service_token_roles_required": "true",
        },
        "glance_store": {
            "stores": "swift,file,http",
            "default_store": "swift",
            "swift_store_multi_tenant": "true",
            "swift_store_region": info.region,
            "swift_store_endpoint_type": "publicURL",
            "swift_store_create_container_on_put": "true",
            "filesystem_store_datadir": str(info.file_store_dir),
        },
        "os_glance_staging_store": {"filesystem_store_datadir": str(info.directory / "staging")},
        "os_glance_tasks_store": {"filesystem_store_datadir": str(info.directory / "tasks")},
        "oslo_concurrency": {"lock_path": str(info.directory / "locks")},
        "import_filtering_opts": {
            "allowed_hosts": _bracketed([LOOPBACK]),
            "allowed_ports": _bracketed(sorted(set(import_ports))),
        },
        "glance_download_properties": {"extra_properties": _bracketed(DOWNLOAD_PROPERTY_PREFIXES)},
    }
