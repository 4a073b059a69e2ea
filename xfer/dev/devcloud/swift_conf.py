"""The config files of a Swift cluster (see swift_cluster.py): swift.conf, the backend servers'
and the two proxies'.

Both proxies follow the order of Swift 2.38's proxy-server.conf-sample; they differ only in the
auth middleware: tempauth in ``proxy-server.conf``, keystonemiddleware's authtoken plus
keystoneauth in ``keystone-proxy-server.conf``. Each owns its own reseller prefix, so even the same
account name could never mean the same account to both.
"""

from __future__ import annotations

import os
import pwd
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xfer.dev.devcloud.loopback import LOOPBACK, Conf

if TYPE_CHECKING:
    from xfer.dev.devcloud.swift_cluster import ClusterInfo

# 1 MiB instead of Swift's 64 KiB: measured +10-15% GET throughput on loopback.
CHUNK_SIZE = 1024 * 1024
SERVER_TYPES = ("account", "container", "object")
# tempauth's accounts are TEMPAUTH_<account>; AUTH_ is Keystone's, as in any real deployment.
TEMPAUTH_PREFIX = "TEMPAUTH"
KEYSTONE_PREFIX = "AUTH_"
PROXY_PIPELINE = (
    "catch_errors gatekeeper healthcheck proxy-logging cache listing_formats container_sync bulk"
    " tempurl ratelimit {auth} copy container-quotas account-quotas slo dlo versioned_writes"
    " symlink proxy-logging proxy-server"
)


@dataclass(frozen=True)
class KeystoneAccess:
    """How the proxy's keystonemiddleware reaches Keystone: its own service user, its region."""

    identity_url: str  # http://127.0.0.1:PORT/v3
    username: str  # has the role "service" in the project "service"
    password: str
    project: str


def swift_conf(info: ClusterInfo) -> Conf:
    # Fresh secrets per cluster: the two clusters must not agree on where objects hash to.
    constraints = {}
    if info.max_file_size is not None:
        constraints["max_file_size"] = str(info.max_file_size)
    return {
        "swift-hash": {
            "swift_hash_path_prefix": secrets.token_hex(8),
            "swift_hash_path_suffix": secrets.token_hex(8),
        },
        "storage-policy:0": {"name": "Policy-0", "default": "yes"},
        "swift-constraints": constraints,
    }


def _server_defaults(info: ClusterInfo, port: int) -> dict[str, str]:
    return {
        "bind_ip": LOOPBACK,
        "bind_port": str(port),
        # Ports were checked free just before: a clash is a race lost to another program, not
        # worth Swift's default 30 s of retries.
        "bind_timeout": "1",
        "workers": "0",  # serve in the launched process itself: its PID is the one we record
        "user": pwd.getpwuid(os.geteuid()).pw_name,
        "swift_dir": str(info.swift_dir),
        "devices": str(info.devices_dir),
        "mount_check": "false",
        "disable_fallocate": "true",
        "recon_cache_path": str(info.directory / "cache"),
    }


def backend_conf(info: ClusterInfo, server_type: str) -> Conf:
    app = {"use": f"egg:swift#{server_type}"}
    if server_type == "object":
        app |= {"network_chunk_size": str(CHUNK_SIZE), "disk_chunk_size": str(CHUNK_SIZE)}
    return {
        "DEFAULT": _server_defaults(info, getattr(info.ports, server_type)),
        "pipeline:main": {"pipeline": f"healthcheck {server_type}-server"},
        f"app:{server_type}-server": app,
        "filter:healthcheck": {"use": "egg:swift#healthcheck"},
    }


def _tempauth_option(user: str) -> str:
    """ "account:name" -> tempauth's "user_account_name" option."""
    account, name = user.split(":")
    return f"user_{account}_{name}"


def tempauth_proxy_conf(info: ClusterInfo) -> Conf:
    conf = _proxy_conf(info, "tempauth", info.ports.proxy)
    conf["filter:tempauth"] = {
        "use": "egg:swift#tempauth",
        "reseller_prefix": TEMPAUTH_PREFIX,
        _tempauth_option(info.user): f"{info.key} .admin",
        _tempauth_option(info.user2): info.key2,
    }
    return conf


def keystone_proxy_conf(info: ClusterInfo, keystone: KeystoneAccess) -> Conf:
    conf = _proxy_conf(info, "authtoken keystoneauth", info.ports.keystone_proxy)
    conf["DEFAULT"]["log_name"] = "keystone-proxy-server"
    return conf | _keystone_filters(info, keystone)


def _proxy_conf(info: ClusterInfo, auth: str, port: int) -> Conf:
    slo = {"use": "egg:swift#slo", "rate_limit_under_size": "0"}  # tiny test segments at speed
    if info.max_manifest_segments is not None:
        slo["max_manifest_segments"] = str(info.max_manifest_segments)
    pipeline = PROXY_PIPELINE.format(auth=auth)
    conf: Conf = {
        "DEFAULT": _server_defaults(info, port),
        "pipeline:main": {"pipeline": pipeline},
        "app:proxy-server": {
            "use": "egg:swift#proxy",
            "expose_info": "true",
            "allow_account_management": "true",
            "account_autocreate": "true",
            "object_chunk_size": str(CHUNK_SIZE),
            "client_chunk_size": str(CHUNK_SIZE),
        },
        # Swift logs the first 16 characters of every token by default: none at all here.
        "filter:proxy-logging": {"use": "egg:swift#proxy_logging", "reveal_sensitive_prefix": "0"},
        "filter:cache": {
            "use": "egg:swift#memcache",
            "memcache_servers": f"{LOOPBACK}:{info.ports.memcached}",
        },
        "filter:slo": slo,
    }
    for name in pipeline.split():
        section = f"filter:{name}"
        if name not in ("proxy-server", "tempauth", "authtoken", "keystoneauth") and (
                section not in conf):
            conf[section] = {"use": f"egg:swift#{name.replace('-', '_')}"}
    return conf


def _keystone_filters(info: ClusterInfo, keystone: KeystoneAccess) -> Conf:
    return {
        "filter:authtoken": {
            "paste.filter_factory": "keystonemiddleware.auth_token:filter_factory",
            "www_authenticate_uri": keystone.identity_url,
            "auth_url": keystone.identity_url,
            "auth_type": "password",
            "username": keystone.username,
            "password": keystone.password,
            "project_name": keystone.project,
            "user_domain_id": "default",
            "project_domain_id": "default",
            # Its own region's endpoints; RegionTwo needs identity endpoints of its own for this.
            "region_name": info.region,
            # Pass requests without a valid token on to keystoneauth, which decides with the
            # account's ACLs (anonymous reads of a public container) or answers 401.
            "delay_auth_decision": "true",
            # A user token that has expired is accepted next to a valid X-Service-Token of a
            # user with the service role: long copies outlive the user's token.
            "service_token_roles": "service",
            "service_token_roles_required": "true",
            "cache": "swift.cache",  # validated tokens in the cluster's memcached
        },
        "filter:keystoneauth": {
            "use": "egg:swift#keystoneauth",
            "reseller_prefix": KEYSTONE_PREFIX,
            "operator_roles": "admin, member",  # bootstrap's roles are lower case
        },
    }
