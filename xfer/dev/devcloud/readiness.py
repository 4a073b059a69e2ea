"""When is the local cloud ready: every service answers a real, authenticated request.

- Keystone issues alice a project-scoped token (password checked, catalog built).
- Each Swift cluster: its backend servers answer /healthcheck, the proxy /info, a tempauth login
  and a HEAD of its account work; with Keystone, a HEAD of alice's account with her token works
  too (keystonemiddleware validated it with Keystone, keystoneauth let her in).
- Each Glance answers ``GET /v2/images`` to alice's token.
- The TLS proxy (tls.py) relays Keystone's ``GET /v3`` over https, verified with the cloud's CA.
Any process that exits meanwhile stops the wait at once, with the end of its log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from xfer.dev.devcloud import glance_server, keystone_server, swift_cluster, tls
from xfer.dev.devcloud.keystone_server import IssuedToken
from xfer.dev.devcloud.loopback import DevcloudError, log_tail
from xfer.dev.devcloud.processes import is_alive
from xfer.dev.devcloud.state import CloudInfo

POLL_INTERVAL_S = 0.1
# The check that needs a token answers this until Keystone has issued one.
WAITING_FOR_KEYSTONE = "waiting for a token from Keystone"


@dataclass(frozen=True)
class Check:
    name: str  # "RegionOne Swift with a Keystone token"
    problem: Callable[[IssuedToken | None], str | None]  # None once ready; given alice's token
    log_path: Path  # what to show when it never gets ready


def wait_until_ready(cloud: CloudInfo, deadline: float) -> None:
    pending = _checks(cloud)
    alice: IssuedToken | None = None
    while True:
        _fail_if_any_died(cloud)
        problems: dict[str, str | None] = {}
        if cloud.keystone is not None and alice is None:
            issued = keystone_server.issue_token(cloud.keystone, cloud.keystone.user("alice"))
            if isinstance(issued, str):
                problems["Keystone"] = issued
            else:
                alice = issued
        problems |= {check.name: check.problem(alice) for check in pending}
        pending = [check for check in pending if problems[check.name]]
        if not pending and not problems.get("Keystone"):
            return
        if time.monotonic() > deadline:
            name, log_path = ("Keystone", cloud.keystone.log_path) if cloud.keystone and not alice \
                else (pending[0].name, pending[0].log_path)
            raise DevcloudError(f"{name} not ready in time ({problems[name]}); the end of "
                                f"{log_path}:\n{log_tail(log_path)}")
        time.sleep(POLL_INTERVAL_S)


def _checks(cloud: CloudInfo) -> list[Check]:
    """Every check but Keystone's, which wait_until_ready makes itself: its token is the input
    of the others."""
    checks: list[Check] = []
    for region, cluster in cloud.clusters.items():
        proxy_log = cluster.log_dir / "proxy-server.log"
        checks.append(Check(f"{region} Swift with tempauth",
                            _ignoring_token(swift_cluster.readiness_problem, cluster), proxy_log))
        if cloud.keystone is not None:
            checks.append(Check(f"{region} Swift with a Keystone token",
                                _keystone_swift_problem(cluster), proxy_log))
    for region, glance in cloud.glances.items():
        checks.append(Check(f"{region} Glance", _glance_problem(glance), glance.log_path))
    if cloud.tls is not None:
        https = cloud.tls
        checks.append(Check("TLS proxy", lambda _alice: tls.readiness_problem(https),
                            cloud.state_dir / "tls" / "tls-proxy.log"))
    return checks


def _ignoring_token(
    problem: Callable[[swift_cluster.ClusterInfo], str | None], cluster: swift_cluster.ClusterInfo
) -> Callable[[IssuedToken | None], str | None]:
    return lambda _alice: problem(cluster)


def _keystone_swift_problem(
    cluster: swift_cluster.ClusterInfo,
) -> Callable[[IssuedToken | None], str | None]:
    def problem(alice: IssuedToken | None) -> str | None:
        if alice is None:
            return WAITING_FOR_KEYSTONE
        return swift_cluster.keystone_auth_problem(cluster, alice.token, alice.project_id)

    return problem


def _glance_problem(glance: glance_server.GlanceInfo) -> Callable[[IssuedToken | None], str | None]:
    def problem(alice: IssuedToken | None) -> str | None:
        if alice is None:
            return WAITING_FOR_KEYSTONE
        return glance_server.readiness_problem(glance, alice.token)

    return problem


def _fail_if_any_died(cloud: CloudInfo) -> None:
    for process in cloud.processes:
        if not is_alive(process):
            raise DevcloudError(
                f"{process.name} exited during startup; the end of "
                f"{process.log_path}:\n{log_tail(process.log_path)}"
            )
