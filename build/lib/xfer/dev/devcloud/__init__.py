"""``xfer devcloud``: a local cloud of real OpenStack Swift clusters and Postgres on loopback.

Used by the demo, the integration tests and the benchmarks::

    cloud = up(state_dir, (ClusterSpec("RegionOne", max_file_size=1 << 20), ClusterSpec("RegionTwo")))
    os.environ.update(cloud.environ())
    ...
    down(state_dir)

Swift runs under its own venv's interpreter (``cloud_python()``), never in xfer's process.
"""

from xfer.dev.devcloud.cloud import (
    DEFAULT_CLUSTERS,
    CloudInfo,
    ProcessRecord,
    cloud_python,
    default_state_dir,
    down,
    load,
    up,
)
from xfer.dev.devcloud.swift_cluster import ClusterInfo, ClusterPorts, ClusterSpec, DevcloudError

__all__ = [
    "DEFAULT_CLUSTERS",
    "CloudInfo",
    "ClusterInfo",
    "ClusterPorts",
    "ClusterSpec",
    "DevcloudError",
    "ProcessRecord",
    "cloud_python",
    "default_state_dir",
    "down",
    "load",
    "up",
]
