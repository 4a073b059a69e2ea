"""``xfer devcloud``: a local cloud of real OpenStack services and Postgres on loopback.

Two Swift clusters (RegionOne, RegionTwo), one Keystone for both, a Glance API per region whose
images live in that region's Swift (multi-tenant: in the owner's account), and one embedded
PostgreSQL holding xfer's database, Keystone's and each region's Glance's. Used by the demo, the
integration tests and the benchmarks::

    cloud = up(state_dir, (ClusterSpec("RegionOne", max_file_size=1 << 20), ClusterSpec("RegionTwo")))
    os.environ.update(cloud.environ())
    ...
    down(state_dir)

The OpenStack services run under their own venv's interpreter (``cloud_python()``), never in
xfer's process.
"""

from xfer.dev.devcloud.cloud import (
    DEFAULT_CLUSTERS,
    cloud_python,
    default_state_dir,
    down,
    load,
    up,
)
from xfer.dev.devcloud.glance_server import GlanceInfo
from xfer.dev.devcloud.keystone_server import IssuedToken, KeystoneInfo, OpenStackUser, issue_token
from xfer.dev.devcloud.loopback import DevcloudError
from xfer.dev.devcloud.postgres import PostgresInfo
from xfer.dev.devcloud.processes import ProcessRecord
from xfer.dev.devcloud.state import CloudInfo
from xfer.dev.devcloud.swift_cluster import ClusterInfo, ClusterPorts, ClusterSpec

__all__ = [
    "DEFAULT_CLUSTERS",
    "CloudInfo",
    "ClusterInfo",
    "ClusterPorts",
    "ClusterSpec",
    "DevcloudError",
    "GlanceInfo",
    "IssuedToken",
    "KeystoneInfo",
    "OpenStackUser",
    "PostgresInfo",
    "ProcessRecord",
    "cloud_python",
    "default_state_dir",
    "down",
    "issue_token",
    "load",
    "up",
]
