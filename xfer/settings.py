"""One frozen Settings object, read from XFER_* environment variables and validated once.

Memory bound of one copy (it does not depend on the segment size):

    buffered bytes <= segments_in_flight * (chunks_ahead + 1) * chunk_size

A target segment is written by one streaming PUT, fed in order by ranged GETs of
`chunk_size` bytes; at most `chunks_ahead` of a segment's chunks are fetched and not yet both
sent (to every target) and hashed, plus the one the hasher may still hold from an attempt
that failed. At most `segments_in_flight` segments are in flight. Each segment in flight
takes its share from one process-wide budget of `max_inflight_bytes` first, in segment order,
and a process runs at most `max_concurrent_copies` copies, so its data buffers stay below

    min(max_inflight_bytes, max_concurrent_copies * segments_in_flight * (chunks_ahead + 1)
                                                   * chunk_size)

plus what each connection holds: on a copy's connections (clients/bulk_http.py) at most the
1 MiB slice of a chunk it was last given (CPython 3.11's transport copies what it could not
send at once; a later one, or uvloop's, keeps a view and the chunk waits until it is sent) and
64 KiB of scratch for reply heads; on a Glance-front stream's, the 1 MiB copy its transport
was last given (clients/transport.detached_slices) and aiohttp's 64 KiB. A source of 1 GiB
segments keeps its boundaries within the same bound as one of 16 MiB segments.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, get_type_hints

from xfer.errors import ConfigError

MiB = 1024 * 1024


@dataclass(frozen=True)
class RegionConfig:
    """How to reach one region's object store (Swift v1/tempauth credentials for now)."""

    name: str
    auth_url: str
    user: str
    key: str = field(repr=False)


@dataclass(frozen=True)
class Settings:
    database_url: str = field(default="", repr=False)
    regions: Mapping[str, RegionConfig] = field(default_factory=dict)
    listen_host: str = "127.0.0.1"
    listen_port: int = 8660
    segment_size: int = 16 * MiB  # when xfer cuts the segments itself
    chunk_size: int = 4 * MiB  # one ranged GET
    chunks_ahead: int = 4  # a segment's chunks fetched ahead of its PUT and the hasher
    segments_in_flight: int = 6
    # where chunks wait for the hasher when they are ahead of it (engine/spill.py); at most
    # about (segments_in_flight - 1) segments' worth; default: the system's temporary directory
    spill_dir: str | None = None
    # MB/s (10**6 bytes) all of this process's copies together may read; 0: no cap. Shared
    # max-min fairly between the copies running (engine/rate.py); a job may ask for less.
    max_rate_mb: float = 0.0
    max_concurrent_copies: int = 2
    max_inflight_bytes: int = 192 * MiB
    verify_sha512: bool = True
    event_loop: str = "asyncio"
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    request_attempts: int = 5
    retry_budget: int = 50
    backoff_base: float = 0.2
    backoff_max: float = 5.0
    lease_seconds: float = 30.0
    poll_interval: float = 2.0
    # How long a worker keeps retrying to record how a copy ended (succeeded, failed,
    # cancelled) while PostgreSQL is unreachable, backing off like a Swift retry
    # (`backoff_base`..`backoff_max`). A copy that verified stays published meanwhile; after
    # this the job is left to its expired lease and a later claim runs it again, resuming from
    # its recorded segments. Claims wait for the database however long it takes; lease
    # renewals (and with them the copy) only while a third of the lease remains.
    database_retry_seconds: float = 300.0
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    # --- what one client may hold of the API (web/server.py, web/api.read_body)
    max_body_bytes: int = 64 * 1024
    # Seconds a connection may take to send a whole request head (request line and headers),
    # from its opening or from the end of the previous reply: past it, it is closed unanswered.
    # Also how long a keep-alive connection may stay idle (one timer does both); above the
    # 15 s for which aiohttp's client keeps an idle connection, so a pooled connection is not
    # closed under a client that is just reusing it.
    header_timeout: float = 20.0
    # Seconds a request's body (at most max_body_bytes) may take to arrive once the API reads
    # it: past it, 408 `body_timeout` and the connection is closed.
    body_timeout: float = 30.0
    # Connections one client address may hold open at once; more are closed as they are
    # accepted, unanswered. 0: no limit (behind a proxy every client has the proxy's address:
    # limit there instead).
    max_client_connections: int = 64
    # GET /v1/jobs/{id}/events: how often it reads the job, and how long one stream may last
    events_poll_interval: float = 0.5
    events_max_seconds: float = 600.0
    # GET /readyz: how long each check (database, each region's /info) may take
    ready_timeout: float = 2.0
    # --- Keystone and Glance (the image copy flow). Without keystone_url the API is open and
    # serves object copies only: the local benchmark and tempauth-only deployments.
    keystone_url: str = ""  # http://HOST:PORT/v3
    keystone_user: str = "xfer"  # xfer's service user: validates tokens, is the trustee
    keystone_password: str = field(default="", repr=False)
    keystone_project: str = "service"
    keystone_domain: str = "Default"
    # The region whose catalog lists this xfer: image copies asked here land here (pull model).
    home_region: str = ""
    # The web view (/ui/, with Keystone only): the Fernet key (32 url-safe base64 bytes, e.g.
    # from `python -c "import cryptography.fernet as f; print(f.Fernet.generate_key().decode())"`)
    # that encrypts and signs its session cookie, the same for every xfer behind one address;
    # empty: a key made at start-up (said in the log), so sessions end with the process.
    ui_session_key: str = field(default="", repr=False)
    ui_session_hours: float = 8.0  # a session's cookie lasts this long (the token may end first)
    ui_cookie_secure: bool = False  # the cookie's Secure flag: set it when served over https
    # Who may do what: rule name -> "role:a or role:b" ("@": any valid token, "!": nobody);
    # what is given replaces that rule's default (web/policy.py lists the defaults).
    policy: Mapping[str, str] = field(default_factory=dict)
    # Image properties copied to the target: fnmatch patterns kept, then patterns dropped
    # (Glance's own and per-image fields are never copied; see images/properties.py).
    property_allow: tuple[str, ...] = ("*",)
    property_deny: tuple[str, ...] = ("os_glance_*",)
    # An image in a store xfer cannot read (file, RBD, single-tenant Swift): read its bytes
    # through the source Glance's ranged /file instead (still verified end to end); False:
    # fail such copies with unsupported_store.
    read_through_glance: bool = True
    # A copy acts as its user through a Keystone trust, deleted once the job has ended
    # (jobs/trusts.py); it expires after this long in any case, should xfer be unable to
    # delete it (its database lost, Keystone refusing): the longest a copy may wait and run.
    trust_hours: float = 24.0
    # A job recorded but still without its trust after this long (the process recording it
    # died while Keystone created the trust) gets it found and attached, or fails, saying so.
    # Longer than a trust creation can take, retries and timeouts included.
    trust_adopt_seconds: float = 600.0
    # What remains to be done for jobs that ended (deleting their trusts), in every process:
    # looked for this often (at once when this process ended a job), so many at a time, each
    # held this long by the process doing it; a failed attempt is tried again after
    # duty_backoff_base doubled per attempt, at most duty_backoff_max, seconds.
    duty_poll_seconds: float = 10.0
    duty_batch: int = 8
    duty_lease_seconds: float = 120.0
    duty_backoff_base: float = 5.0
    duty_backoff_max: float = 600.0
    # `xfer serve` sweeps the operator's Swift accounts for what dead copies left (as
    # `xfer sweep` does) this often, in hours; 0: never (run `xfer sweep` from cron instead).
    # Segments of jobs unknown to the database must be this many hours old to go.
    sweep_interval_hours: float = 0.0
    sweep_older_than_hours: float = 24.0
    # How often a running image copy checks that its target image still exists (a user who
    # deletes it stops the copy within this long: target_image_gone).
    image_watch_seconds: float = 5.0
    # Glance's import of a verified copy failing (a database lock, a store hiccup; its revert
    # deletes the data) is tried this many times in all, the data copied anew each time.
    registration_attempts: int = 3
    # Glance's import task and the image not changing for this long, plus the time to read the
    # image at registration_min_rate_mb (MB/s), is a stalled registration: Glance lost it.
    registration_stall_seconds: float = 120.0
    registration_min_rate_mb: float = 20.0
    # How long the target Glance may take to read the copy back and make the image active.
    image_active_timeout: float = 900.0
    token_cache_size: int = 1024
    # --- the Glance-compatible read endpoint (GET /v2/images/{id}[/file], web/glance_front.py)
    # The region whose Glance and Swift it fronts; "": home_region.
    front_region: str = ""
    # Ranged reads in flight for one stream, of stream_chunk_size each; a stream holds that
    # many chunks, from the same process-wide budget of buffered bytes as copies. Larger reads
    # than a copy's: a stream has one consumer, and each ranged GET of a DLO costs Swift a
    # container listing (measured, 1 GiB DLO, 2 cores: 4 MiB x 8 150 MB/s, 16 MiB x 4
    # 245 MB/s, 32 MiB x 2 316 MB/s, 32 MiB x 4 281 MB/s; Glance's own /file 285-318 MB/s).
    stream_reads: int = 2
    stream_chunk_size: int = 32 * MiB
    # A reader that takes no bytes for this long is cut off: its stream holds its chunks out
    # of the budget copies share (glance-download writes to its staging disk at once).
    stream_write_timeout: float = 60.0

    def __post_init__(self) -> None:
        positive = (
            "segment_size", "chunk_size", "chunks_ahead", "segments_in_flight",
            "max_concurrent_copies", "max_inflight_bytes",
            "connect_timeout", "read_timeout", "request_attempts", "lease_seconds",
            "poll_interval", "database_retry_seconds", "max_body_bytes", "header_timeout",
            "body_timeout",
            "events_poll_interval", "events_max_seconds", "ready_timeout",
            "trust_hours", "trust_adopt_seconds", "duty_poll_seconds", "duty_batch",
            "duty_lease_seconds", "duty_backoff_base", "duty_backoff_max",
            "image_active_timeout", "image_watch_seconds", "registration_attempts",
            "registration_stall_seconds", "registration_min_rate_mb", "token_cache_size",
            "stream_reads",
            "stream_chunk_size", "stream_write_timeout",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{_env_name(name)} must be positive, got {getattr(self, name)}")
        if not 0 <= self.listen_port <= 65535:
            raise ConfigError(f"XFER_LISTEN_PORT must be 0..65535 (0: any free port), got {self.listen_port}")
        if self.sweep_interval_hours < 0 or self.sweep_older_than_hours < 0:
            raise ConfigError("XFER_SWEEP_INTERVAL_HOURS and XFER_SWEEP_OLDER_THAN_HOURS must "
                              "not be negative")
        if self.max_client_connections < 0:
            raise ConfigError("XFER_MAX_CLIENT_CONNECTIONS must be 0 (no limit) or positive, "
                              f"got {self.max_client_connections}")
        if self.max_rate_mb < 0:
            raise ConfigError(f"XFER_MAX_RATE_MB must be 0 (no cap) or positive, got {self.max_rate_mb}")
        if self.retry_budget < 0 or self.backoff_base < 0 or self.backoff_max < self.backoff_base:
            raise ConfigError("XFER_RETRY_BUDGET/XFER_BACKOFF_BASE/XFER_BACKOFF_MAX are inconsistent")
        if self.keystone_url and not (self.keystone_password and self.home_region):
            raise ConfigError("XFER_KEYSTONE_URL needs XFER_KEYSTONE_PASSWORD (xfer's service "
                              "user) and XFER_HOME_REGION (the region this xfer serves)")
        if self.ui_session_hours <= 0:
            raise ConfigError(f"XFER_UI_SESSION_HOURS must be positive, got {self.ui_session_hours}")
        if self.event_loop not in ("asyncio", "uvloop"):
            raise ConfigError(f"XFER_EVENT_LOOP must be 'asyncio' or 'uvloop', got {self.event_loop!r}")

    @property
    def keystone_enabled(self) -> bool:
        return bool(self.keystone_url)

    @property
    def fronted_region(self) -> str:
        """The region the Glance-compatible read endpoint answers for."""
        return self.front_region or self.home_region

    @property
    def segment_memory_bound(self) -> int:
        """The bytes one segment in flight may hold (see the module docstring)."""
        return (self.chunks_ahead + 1) * self.chunk_size

    @property
    def copy_memory_bound(self) -> int:
        return self.segments_in_flight * self.segment_memory_bound

    def region(self, name: str) -> RegionConfig:
        try:
            return self.regions[name]
        except KeyError:
            raise ConfigError(f"region {name!r} is not configured (XFER_REGIONS)") from None

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def _env_name(field_name: str) -> str:
    return "XFER_" + field_name.upper()


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _parse_regions(text: str) -> dict[str, RegionConfig]:
    raw = json.loads(text)
    if not isinstance(raw, dict):
        raise ValueError("must be a JSON object of region name -> {auth_url, user, key}")
    regions = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict) or not {"auth_url", "user", "key"} <= entry.keys():
            raise ValueError(f"region {name!r} needs auth_url, user and key")
        regions[name] = RegionConfig(name, entry["auth_url"], entry["user"], entry["key"])
    return regions


def regions_variable(regions: Iterable[RegionConfig]) -> str:
    """The XFER_REGIONS value that `from_environ` reads back as these regions."""
    return json.dumps({r.name: {"auth_url": r.auth_url, "user": r.user, "key": r.key}
                       for r in regions})


def _parse_patterns(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _parse_policy(text: str) -> dict[str, str]:
    raw = json.loads(text)
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise ValueError('must be a JSON object of rule name -> "role:a or role:b"')
    return raw


def _parse_int(text: str) -> int:
    # int() would also take "1_000" and non-ASCII digits ("٣"): a typo should not pass
    if re.fullmatch(r"\s*[+-]?[0-9]+\s*", text) is None:
        raise ValueError(f"not a whole number: {text!r}")
    return int(text)


def _parse_float(text: str) -> float:
    # float() would also take "nan" (which passes every "must be positive" check), "inf",
    # "1_0" and non-ASCII digits
    if re.fullmatch(r"\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*", text) is None:
        raise ValueError(f"not a number: {text!r}")
    value = float(text)
    if not math.isfinite(value):  # 1e400
        raise ValueError(f"not a finite number: {text!r}")
    return value


# One parser per field type, looked up by the type itself (a setting of a type with no parser
# fails at import, in `_PARSER_BY_FIELD`, not when someone first sets it).
_PARSERS: dict[object, Callable[[str], Any]] = {
    int: _parse_int, float: _parse_float, bool: _parse_bool, str: str, str | None: str,
    tuple[str, ...]: _parse_patterns, Mapping[str, str]: _parse_policy,
    Mapping[str, RegionConfig]: _parse_regions,
}
_PARSER_BY_FIELD: dict[str, Callable[[str], Any]] = {
    name: _PARSERS[hint] for name, hint in get_type_hints(Settings).items()}

# Variables read by other parts of xfer (the local cloud), accepted here so that the
# unknown-variable check does not reject them.
OTHER_KNOWN_VARIABLES = frozenset({"XFER_DEVCLOUD_DIR", "XFER_DEVCLOUD_PYTHON"})


def from_environ(environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from XFER_* variables; an unknown XFER_* name or a bad value is an error."""
    environ = os.environ if environ is None else environ
    by_env_name = {_env_name(f.name): f for f in fields(Settings)}
    values: dict[str, Any] = {}
    for name, text in environ.items():
        if not name.startswith("XFER_") or name in OTHER_KNOWN_VARIABLES:
            continue
        setting = by_env_name.get(name)
        if setting is None:
            raise ConfigError(f"unknown setting {name}; known: {', '.join(sorted(by_env_name))}")
        try:
            values[setting.name] = _PARSER_BY_FIELD[setting.name](text)
        except ValueError as exc:
            raise ConfigError(f"invalid value for {name}: {exc}") from None
    return Settings(**values)
