"""One frozen Settings object, read from XFER_* environment variables and validated once.

Memory bound of one copy (it does not depend on the segment size):

    buffered bytes <= (segments_in_flight + segments_ahead) * (chunks_ahead + 1) * chunk_size

A target segment is written by one streaming PUT, fed in order by ranged GETs of
`chunk_size` bytes; at most `chunks_ahead` of a segment's chunks are fetched and not yet both
sent (to every target) and hashed, plus the one the hasher may still hold from an attempt
that failed. At most `segments_in_flight` segments have their PUTs open, and up to
`segments_ahead` more are fetched ahead of a free PUT; a copy has at most `reads_in_flight`
ranged GETs at once, the lowest offset first. Each segment in flight
takes its share from one process-wide budget of `max_inflight_bytes` first, in segment order,
and a process runs at most `max_concurrent_copies` copies, so its data buffers stay below

    min(max_inflight_bytes, max_concurrent_copies * (segments_in_flight + segments_ahead)
                                                   * (chunks_ahead + 1) * chunk_size)

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
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any, get_type_hints
from urllib.parse import urlsplit

from xfer.errors import ConfigError

MiB = 1024 * 1024


@dataclass(frozen=True)
class RegionConfig:
    """How to reach one region's object store (Swift v1/tempauth credentials for now)."""

    name: str
    auth_url: str
    user: str
    key: str = field(repr=False)


def setting(default: Any = MISSING, meaning: str = "", unit: str = "", *,
            factory: Callable[[], Any] | None = None, shown: str | None = None,
            secret: bool = False) -> Any:
    """A Settings field with what it means and its unit, in the one place the configuration
    reference (`xfer config reference`) and the sample file (`xfer config sample`) are made
    from; `shown`: how to show a default computed at start (a factory's)."""
    metadata = {"meaning": " ".join(meaning.split()), "unit": unit, "shown": shown}
    if factory is not None:
        return field(default_factory=factory, repr=not secret, metadata=metadata)
    return field(default=default, repr=not secret, metadata=metadata)


SECONDS, HOURS, BYTES, MB_PER_S = "seconds", "hours", "bytes", "MB/s (10**6 bytes)"


@dataclass(frozen=True)
class Settings:
    # --- where the jobs are, where the bytes are, where the API listens
    database_url: str = setting(
        "", "PostgreSQL URL of xfer's database (postgresql://USER:PASSWORD@HOST:PORT/DB), "
        "shared by every xfer process of a deployment; needed by serve, worker, migrate.",
        secret=True)
    regions: Mapping[str, RegionConfig] = setting(
        meaning="The operator's Swift accounts per region, as JSON: "
        '{"REGION": {"auth_url": ..., "user": ..., "key": ...}} (tempauth v1): object copies, '
        "`xfer upload` and `xfer sweep` use them; image copies act as the user instead.",
        factory=dict)
    listen_host: str = setting(
        "127.0.0.1", "Address the API listens on (0.0.0.0 or :: for every interface); the "
        "catalog's image-transfer endpoint of the home region must reach it.")
    listen_port: int = setting(
        8660, "Port the API listens on (0: any free port); the one in the home region's "
        "catalog endpoint.", "TCP port")
    tls_cert_file: str = setting(
        "", "PEM certificate chain `xfer serve` listens with over https (the catalog's "
        "image-transfer endpoint is then https://...); empty: plain http, e.g. behind a "
        "TLS-terminating proxy (docs/operations.md, HTTPS).")
    tls_key_file: str = setting(
        "", "PEM private key of tls_cert_file; empty: in tls_cert_file itself.")
    public_url: str = setting(
        "", "Where clients reach this xfer when a TLS-terminating proxy or load balancer "
        "stands in front of it (https://xfer.example.org): the home region's image-transfer "
        "endpoint, which `xfer check` compares with it; empty: listen_host:listen_port.")
    # --- one copy's pipeline and its memory (the module docstring's bound)
    segment_size: int = setting(
        16 * MiB, "Size of the target's segments when xfer cuts them itself (a source that is "
        "an SLO keeps its own segments).", BYTES)
    chunk_size: int = setting(4 * MiB, "Bytes one ranged GET on the source reads.", BYTES)
    chunks_ahead: int = setting(
        4, "A segment's chunks fetched ahead of its PUT and of the hasher.", "chunks")
    segments_in_flight: int = setting(
        6, "Target segments one copy writes at once (its PUTs open).", "segments")
    segments_ahead: int = setting(
        3, "Segments one copy fetches ahead of a free PUT, so that a PUT starts with its "
        "first bytes in (0: none). Measured with reads_in_flight on a capped 40 ms link "
        "(docs/benchmarks.md): 68-72 -> 78-85% of the link; peak RSS +48 MiB.", "segments")
    reads_in_flight: int = setting(
        8, "Ranged GETs one copy has in flight at once, the lowest offset first, so the "
        "bytes the oldest PUT needs next are not slowed by those of later segments.", "reads")
    spill_dir: str | None = setting(
        None, "Where chunks wait for the hasher when they are ahead of it (engine/spill.py), "
        "at most about (segments_in_flight + segments_ahead - 1) segments' worth.",
        shown="the system's temporary directory")
    max_rate_mb: float = setting(
        0.0, "What all this process's copies together may read; 0: no cap. Shared max-min "
        "fairly between the copies running (engine/rate.py); a job may ask for less.",
        MB_PER_S)
    max_concurrent_copies: int = setting(2, "Copies one process runs at once.", "copies")
    max_inflight_bytes: int = setting(
        192 * MiB, "Process-wide budget of buffered bytes, shared by copies (each segment in "
        "flight takes its share first, in segment order) and image streams.", BYTES)
    verify_sha512: bool = setting(
        True, "Compute the SHA-512 of every copy besides its MD5, and check it against the "
        "source image's os_hash_value; false: MD5 only, less CPU.")
    event_loop: str = setting(
        "uvloop", "The event loop: uvloop or asyncio (uvloop's loop thread costs 0.04-0.30 "
        "CPU-s per GiB copied less, measured in docs/benchmarks.md).")
    # --- requests to Swift, Glance and Keystone
    ca_file: str = setting(
        "", "PEM bundle of the CAs whose certificates xfer trusts on every https endpoint it "
        "calls (Keystone, Swift, Glance; the bulk data path too), in place of the system's; "
        "empty: the system's CAs. Certificates and hostnames are always verified.")
    connect_timeout: float = setting(10.0, "Longest a connection may take to open.", SECONDS)
    read_timeout: float = setting(
        30.0, "Longest a reply may stay silent (between two reads on its socket).", SECONDS)
    request_attempts: int = setting(
        5, "Times one request is tried in all when it fails in a way worth retrying "
        "(connection reset, 5xx, 408, 429).", "attempts")
    retry_budget: int = setting(
        50, "Retries one copy may spend in all, across its requests; then it fails with "
        "retry_budget_exhausted.", "retries")
    backoff_base: float = setting(
        0.2, "A retry waits a random time up to this, doubled per attempt (full jitter), at "
        "most backoff_max; retries towards the database back off the same way.", SECONDS)
    backoff_max: float = setting(5.0, "Ceiling of the random wait before a retry.", SECONDS)
    # --- jobs in PostgreSQL
    lease_seconds: float = setting(
        30.0, "How long a claimed job stays this worker's without a renewal: a worker that "
        "died has its jobs taken over this long after; a stopping process hands its jobs "
        "back within a third of it.", SECONDS)
    poll_interval: float = setting(
        2.0, "How often an idle worker looks for jobs when no NOTIFY woke it.", SECONDS)
    database_retry_seconds: float = setting(
        300.0, "How long a worker keeps retrying to record how a copy ended while PostgreSQL "
        "is unreachable (backing off like a Swift retry); a copy that verified stays "
        "published meanwhile, and after this the job is left to its expired lease and "
        "resumed by a later claim. Claims wait for the database however long it takes.",
        SECONDS)
    worker_id: str = setting(
        meaning="This process's name in the jobs it holds (leases, logs).",
        factory=lambda: f"{socket.gethostname()}-{os.getpid()}", shown="HOSTNAME-PID")
    # --- what one client may hold of the API (web/server.py, web/api.read_body)
    max_body_bytes: int = setting(64 * 1024, "Largest request body the API reads.", BYTES)
    header_timeout: float = setting(
        20.0, "Time a connection may take to send a whole request head, from its opening or "
        "the end of the previous reply; past it, it is closed unanswered. Also how long a "
        "keep-alive connection may stay idle (above the 15 s for which aiohttp's client keeps "
        "an idle connection).", SECONDS)
    body_timeout: float = setting(
        30.0, "Time a request's body may take to arrive once the API reads it; past it, 408 "
        "body_timeout and the connection is closed.", SECONDS)
    max_client_connections: int = setting(
        64, "Connections one client address may hold open at once; more are closed as they "
        "are accepted. 0: no limit (behind a proxy every client has the proxy's address: "
        "limit there instead).", "connections")
    events_poll_interval: float = setting(
        0.5, "How often GET /v1/jobs/{id}/events reads the job.", SECONDS)
    events_max_seconds: float = setting(
        600.0, "How long one GET /v1/jobs/{id}/events stream may last.", SECONDS)
    ready_timeout: float = setting(
        2.0, "How long each check of GET /readyz (database, Keystone, each region's Swift) "
        "may take.", SECONDS)
    # --- Keystone and Glance (the image copy flow). Without keystone_url the API is open and
    # serves object copies only: the local benchmark and tempauth-only deployments.
    keystone_url: str = setting(
        "", "Keystone's v3 identity endpoint (http://HOST:PORT/v3); empty: no Keystone, the "
        "API is open and serves object copies only (local benchmark, tempauth deployments).")
    keystone_user: str = setting(
        "xfer", "xfer's service user: validates callers' tokens (needs the `service` role) "
        "and is the trustee of copies.")
    keystone_password: str = setting("", "The service user's password.", secret=True)
    keystone_project: str = setting(
        "service", "The project the service user's token is scoped to (where it holds "
        "`service`).")
    keystone_domain: str = setting(
        "Default", "Domain (name) of the service user and of its project.")
    home_region: str = setting(
        "", "The region whose catalog lists this xfer (service type image-transfer): image "
        "copies asked here land here (pull model). Needed with keystone_url.")
    ui_session_key: str = setting(
        "", "The web view's (/ui/, with Keystone only) Fernet key (32 url-safe base64 bytes, "
        "e.g. from `python -c \"import cryptography.fernet as f; "
        "print(f.Fernet.generate_key().decode())\"`) that encrypts and signs its session "
        "cookie, the same for every xfer behind one address; empty: a key made at start-up "
        "(said in the log), so sessions end with the process.", secret=True)
    ui_session_hours: float = setting(
        8.0, "How long a web view session's cookie lasts (the Keystone token may end first).",
        HOURS)
    ui_cookie_secure: bool = setting(
        False, "The web view cookie's Secure flag: set it when a TLS proxy serves xfer over "
        "https (always set when xfer listens with tls_cert_file).")
    policy: Mapping[str, str] = setting(
        meaning='Who may do what, as JSON: rule name -> "role:a or role:b" ("@": any valid '
        'token, "!": nobody); what is given replaces that rule\'s default (web/policy.py lists '
        "the defaults).", factory=dict)
    property_allow: tuple[str, ...] = setting(
        ("*",), "Image properties copied to the target: fnmatch patterns kept, "
        "comma-separated (Glance's own and per-image fields are never copied).")
    property_deny: tuple[str, ...] = setting(
        ("os_glance_*",), "Image properties not copied: fnmatch patterns dropped after "
        "property_allow, comma-separated.")
    read_through_glance: bool = setting(
        True, "An image in a store xfer cannot read (file, RBD, single-tenant Swift): read its "
        "bytes through the source Glance's ranged /file instead (still verified end to end); "
        "false: fail such copies with unsupported_store.")
    trust_hours: float = setting(
        24.0, "Life of the Keystone trust a copy acts through (deleted once the job ends; "
        "expires after this should xfer be unable to delete it): the longest a copy may wait "
        "and run.", HOURS)
    trust_adopt_seconds: float = setting(
        600.0, "A job recorded but still without its trust after this long (its process died "
        "while Keystone created the trust) gets it found and attached, or fails, saying so.",
        SECONDS)
    duty_poll_seconds: float = setting(
        10.0, "How often every process looks for what remains to be done for jobs that ended "
        "(deleting trusts, cleanups); at once when it ended a job itself.", SECONDS)
    duty_batch: int = setting(8, "Duties one process claims at a time.", "duties")
    duty_lease_seconds: float = setting(
        120.0, "How long a claimed duty stays the claiming process's.", SECONDS)
    duty_backoff_base: float = setting(
        5.0, "Wait before a failed duty is tried again, doubled per attempt.", SECONDS)
    duty_backoff_max: float = setting(600.0, "Longest wait before a duty is tried again.",
                                      SECONDS)
    sweep_interval_hours: float = setting(
        0.0, "How often `xfer serve` sweeps the operator's Swift accounts for what dead copies "
        "left (as `xfer sweep` does); 0: never (run `xfer sweep` from cron instead).", HOURS)
    sweep_older_than_hours: float = setting(
        24.0, "Age a segment of a job unknown to the database must have to be swept.", HOURS)
    image_watch_seconds: float = setting(
        5.0, "How often a running image copy checks that its target image still exists (a "
        "user who deletes it stops the copy within this long: target_image_gone).", SECONDS)
    registration_attempts: int = setting(
        3, "Times Glance's import of a verified copy is tried in all (a database lock, a "
        "store hiccup; its revert deletes the data), the data copied anew each time.",
        "attempts")
    registration_stall_seconds: float = setting(
        120.0, "Glance's import task and the image not changing for this long, plus the time "
        "to read the image at registration_min_rate_mb, is a stalled registration.", SECONDS)
    registration_min_rate_mb: float = setting(
        20.0, "The slowest Glance is expected to read a copy back while registering it.",
        MB_PER_S)
    image_active_timeout: float = setting(
        900.0, "How long the target Glance may take to read the copy back and make the image "
        "active.", SECONDS)
    token_cache_size: int = setting(
        1024, "Callers' tokens whose validation is cached (each for at most 5 minutes, least "
        "recently used out).", "tokens")
    # --- the Glance-compatible read endpoint (GET /v2/images/{id}[/file], web/glance_front.py)
    front_region: str = setting(
        "", "The region whose Glance and Swift the Glance-compatible read endpoint fronts.",
        shown="home_region")
    # Larger reads than a copy's: a stream has one consumer, and each ranged GET of a DLO
    # costs Swift a container listing (measured, 1 GiB DLO, 2 cores: 4 MiB x 8 150 MB/s,
    # 16 MiB x 4 245 MB/s, 32 MiB x 2 316 MB/s, 32 MiB x 4 281 MB/s; Glance's own /file
    # 285-318 MB/s).
    stream_reads: int = setting(
        2, "Ranged reads in flight for one image stream, of stream_chunk_size each, from the "
        "budget of max_inflight_bytes.", "reads")
    stream_chunk_size: int = setting(32 * MiB, "Bytes one ranged read of a stream asks for.",
                                     BYTES)
    stream_write_timeout: float = setting(
        60.0, "A reader that takes no bytes for this long is cut off (reader_stalled): its "
        "stream holds its chunks out of the budget copies share.", SECONDS)

    def __post_init__(self) -> None:
        positive = (
            "segment_size", "chunk_size", "chunks_ahead", "segments_in_flight",
            "reads_in_flight", "max_concurrent_copies", "max_inflight_bytes",
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
                raise ConfigError(f"{env_name(name)} must be positive, got {getattr(self, name)}")
        if not 0 <= self.listen_port <= 65535:
            raise ConfigError(f"XFER_LISTEN_PORT must be 0..65535 (0: any free port), got {self.listen_port}")
        if self.sweep_interval_hours < 0 or self.sweep_older_than_hours < 0:
            raise ConfigError("XFER_SWEEP_INTERVAL_HOURS and XFER_SWEEP_OLDER_THAN_HOURS must "
                              "not be negative")
        if self.segments_ahead < 0:
            raise ConfigError(f"XFER_SEGMENTS_AHEAD must be 0 (none) or positive, got "
                              f"{self.segments_ahead}")
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
        if not self.worker_id.strip():
            raise ConfigError("XFER_WORKER_ID must not be empty (default: HOSTNAME-PID)")
        if self.ui_session_hours <= 0:
            raise ConfigError(f"XFER_UI_SESSION_HOURS must be positive, got {self.ui_session_hours}")
        if self.public_url and not _is_http_url(self.public_url):
            raise ConfigError(f"XFER_PUBLIC_URL must be an http(s):// URL with a host, got "
                              f"{self.public_url!r}")
        if self.tls_key_file and not self.tls_cert_file:
            raise ConfigError("XFER_TLS_KEY_FILE is set without XFER_TLS_CERT_FILE")
        if self.event_loop not in ("asyncio", "uvloop"):
            raise ConfigError(f"XFER_EVENT_LOOP must be 'asyncio' or 'uvloop', got {self.event_loop!r}")

    @property
    def keystone_enabled(self) -> bool:
        return bool(self.keystone_url)

    @property
    def listen_scheme(self) -> str:
        """How clients reach `xfer serve` directly: https when it terminates TLS itself."""
        return "https" if self.tls_cert_file else "http"

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
        return (self.segments_in_flight + self.segments_ahead) * self.segment_memory_bound

    def region(self, name: str) -> RegionConfig:
        try:
            return self.regions[name]
        except KeyError:
            raise ConfigError(f"region {name!r} is not configured (XFER_REGIONS)") from None

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def env_name(field_name: str) -> str:
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
    int: _parse_int, float: _parse_float, bool: _parse_bool, str: str,
    str | None: lambda text: text or None,  # empty: the default (XFER_SPILL_DIR=)
    tuple[str, ...]: _parse_patterns, Mapping[str, str]: _parse_policy,
    Mapping[str, RegionConfig]: _parse_regions,
}
_PARSER_BY_FIELD: dict[str, Callable[[str], Any]] = {
    name: _PARSERS[hint] for name, hint in get_type_hints(Settings).items()}

# Variables read by other parts of xfer (the configuration file's path, the local cloud),
# accepted here so that the unknown-variable check does not reject them.
OTHER_KNOWN_VARIABLES = frozenset({"XFER_CONFIG_FILE", "XFER_DEVCLOUD_DIR",
                                   "XFER_DEVCLOUD_PYTHON"})


def parse_setting(name: str, text: str) -> Any:
    """The value of setting `name` written as `text`; ValueError saying why not."""
    return _PARSER_BY_FIELD[name](text)


def environ_values(environ: Mapping[str, str]) -> dict[str, Any]:
    """Setting name -> value from XFER_* variables; an unknown XFER_* name or a bad value is
    a ConfigError naming it."""
    by_env_name = {env_name(f.name): f.name for f in fields(Settings)}
    values: dict[str, Any] = {}
    for name, text in environ.items():
        if not name.startswith("XFER_") or name in OTHER_KNOWN_VARIABLES:
            continue
        setting = by_env_name.get(name)
        if setting is None:
            raise ConfigError(f"unknown setting {name}; known: {', '.join(sorted(by_env_name))}")
        try:
            values[setting] = parse_setting(setting, text)
        except ValueError as exc:
            raise ConfigError(f"invalid value for {name}: {exc}") from None
    return values


def from_environ(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from XFER_* variables alone (xfer.configuration.load adds the file)."""
    return Settings(**environ_values(os.environ if environ is None else environ))


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not one
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)
