"""Where the settings come from, and what an operator reads about them.

A deployment's settings come from an INI file in the form OpenStack operators already know
from oslo.config (`/etc/xfer/xfer.conf`, every setting in `[DEFAULT]`, `key = value`, `#`
comments), named by `--config-file` or XFER_CONFIG_FILE, and from XFER_* environment
variables, which override the file setting by setting (a container's or a test's way). INI
rather than TOML or YAML: it is what the rest of the cloud's services are configured with, so
config management (Ansible's ini_file, Kolla, puppet-openstack) already writes it. No file is
read unless one is named: a setting never comes from a place the operator did not point at.

The configuration reference (docs/configuration.md, `xfer config reference`) and the sample
file (`xfer config sample`) are both made from the fields' metadata in xfer/settings.py.
"""

from __future__ import annotations

import configparser
import difflib
import json
import os
import textwrap
from collections.abc import Mapping
from dataclasses import MISSING, Field, fields
from pathlib import Path
from typing import Any, get_type_hints

from xfer.errors import ConfigError
from xfer.settings import MiB, Settings, env_name, environ_values, parse_setting

CONFIG_FILE_VARIABLE = "XFER_CONFIG_FILE"
DEFAULT_CONFIG_PATH = "/etc/xfer/xfer.conf"
REFERENCE_PATH = "docs/configuration.md"
REFERENCE_COMMAND = f"xfer config reference > {REFERENCE_PATH}"

# Sections of the reference and the sample, each from its first field on (declaration order).
GROUPS = (
    ("Database, regions, listening", "database_url"),
    ("One copy's pipeline and memory", "segment_size"),
    ("Requests to Swift, Glance and Keystone", "ca_file"),
    ("Jobs in PostgreSQL", "lease_seconds"),
    ("What one client may hold of the API", "max_body_bytes"),
    ("Keystone and Glance (image copies)", "keystone_url"),
    ("The Glance-compatible read endpoint", "front_region"),
)
_TYPE_NAMES: dict[object, str] = {
    int: "integer", float: "number", bool: "boolean", str: "string", str | None: "string",
    tuple[str, ...]: "list (comma-separated)",
}

PREAMBLE = """\
# Configuration

From a configuration file and from `XFER_*` environment variables, validated at start; an
unknown name or a bad value stops start-up with a message naming it (and the file). The file is
INI, as OpenStack services have it: every setting in `[DEFAULT]`, named as in the table below
(`chunk_size = 8388608`), read from `--config-file PATH` or `XFER_CONFIG_FILE` (none is read
unless named; `/etc/xfer/xfer.conf` is the usual place); an environment variable overrides the
file's value of the same setting. `xfer config sample` prints a commented file with every
default.

Segments are streamed: each target segment is one PUT fed in order by ranged GETs of
`XFER_CHUNK_SIZE` bytes, so the memory bound of a copy does not depend on the segment size:
`(XFER_SEGMENTS_IN_FLIGHT + XFER_SEGMENTS_AHEAD) × (XFER_CHUNKS_AHEAD + 1) × XFER_CHUNK_SIZE`,
default (6 + 3) × 5 × 4 MiB (segments fetched ahead wait for one of the 6 PUTs);
of a process, `XFER_MAX_INFLIGHT_BYTES`, default 192 MiB, which each image stream of the
Glance-compatible endpoint also draws from (`XFER_STREAM_READS × XFER_STREAM_CHUNK_SIZE`,
64 MiB), before it sends its headers; a reader that takes no bytes for
`XFER_STREAM_WRITE_TIMEOUT` (60 s) is cut off (`reader_stalled`) and gives its share back.
What one client may hold of the API (`xfer/web/server.py`): a connection that has not sent a
whole request head within `XFER_HEADER_TIMEOUT` (20 s) of its opening or of its previous reply
is closed unanswered (an idle keep-alive connection too); a body the API reads must arrive
within `XFER_BODY_TIMEOUT` (30 s), or `408 body_timeout` and the connection is closed; one
client address holds at most `XFER_MAX_CLIENT_CONNECTIONS` (64; 0: no limit, for a deployment
behind a proxy) connections at once, and more are closed as they are accepted. A reply being
sent, a slow image stream or server-sent events, is bounded only by its own rules.
Numbers are decimal ASCII (`nan`, `inf`, `1_000` are refused). Logs are JSON lines on stderr, with
`job_id` on every line about a job, `request_id` on every line about an API request, one line
per client error, and never a token. `xfer serve` writes one line on stdout once it listens,
also JSON: `{"listening": "http://127.0.0.1:8660"}` (what `make demo` and `make bench` wait
for).
"""  # noqa: RUF001 (the prose multiplies with U+00D7)


def load(config_file: str | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """The settings of this process: the file (`config_file`, else XFER_CONFIG_FILE, else
    none), then XFER_* variables over it."""
    environ = os.environ if environ is None else environ
    path = config_file or environ.get(CONFIG_FILE_VARIABLE) or None
    values = file_values(Path(path)) if path else {}
    values |= environ_values(environ)
    return Settings(**values)


def file_values(path: Path) -> dict[str, Any]:
    """Setting name -> value from an INI file's [DEFAULT]; any other section, an unknown key
    or a bad value is a ConfigError naming the file and the key."""
    parser = configparser.ConfigParser(interpolation=None, strict=True,
                                       default_section="DEFAULT")
    try:
        with path.open(encoding="utf-8") as file:
            parser.read_file(file)
    except OSError as exc:
        raise ConfigError(f"cannot read the configuration file {path}: {exc.strerror}") from None
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise ConfigError(f"configuration file {path} is not valid INI: {exc}") from None
    if parser.sections():
        raise ConfigError(f"configuration file {path}: unknown section "
                          f"[{parser.sections()[0]}]; every setting goes in [DEFAULT]")
    known = [f.name for f in fields(Settings)]
    values: dict[str, Any] = {}
    for key, text in parser.defaults().items():
        if key not in known:
            raise ConfigError(f"configuration file {path}: unknown setting {key!r}"
                              f"{_did_you_mean(key, known)}")
        try:
            values[key] = parse_setting(key, text)
        except ValueError as exc:
            raise ConfigError(f"configuration file {path}: invalid value for {key}: {exc}"
                              ) from None
    return values


def _did_you_mean(key: str, known: list[str]) -> str:
    bare = key.removeprefix("xfer_")  # an environment variable's name, lowercased by INI
    close = difflib.get_close_matches(bare, known, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f"; known: {', '.join(known)}"


def _grouped() -> list[tuple[str, list[Field[Any]]]]:
    starts = {first: title for title, first in GROUPS}
    groups: list[tuple[str, list[Field[Any]]]] = []
    for setting in fields(Settings):
        if setting.name in starts:
            groups.append((starts[setting.name], []))
        groups[-1][1].append(setting)
    return groups


def _default(setting: Field[Any]) -> Any:
    if setting.default_factory is not MISSING:
        return setting.default_factory()
    return setting.default


def _as_written(value: Any) -> str:
    """A value as the file and the environment write it (parse_setting reads it back)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ", ".join(value)
    if isinstance(value, Mapping):
        return json.dumps(value)
    return "" if value is None else str(value)


def _shown_default(setting: Field[Any]) -> str:
    """The default in the reference: a value in code, or words where there is none."""
    if setting.metadata["shown"] is not None:
        return str(setting.metadata["shown"])
    value = _default(setting)
    if value == "":
        return "empty"
    if setting.metadata["unit"] == "bytes" and value >= 1024:
        size = f"{value // MiB} MiB" if value % MiB == 0 else f"{value // 1024} KiB"
        return f"`{value}` ({size})"
    return f"`{_as_written(value)}`"


def _type_name(setting: Field[Any]) -> str:
    return _TYPE_NAMES.get(get_type_hints(Settings)[setting.name], "JSON object")


def reference() -> str:
    """docs/configuration.md: the preamble, then every setting by group."""
    out = [PREAMBLE, "## Settings", "",
           f"Generated from `xfer/settings.py` by `{REFERENCE_COMMAND}`; a test fails when",
           "this file is stale. Each setting is the environment variable, or the file key in",
           "`[DEFAULT]`.", ""]
    for title, group in _grouped():
        out += [f"### {title}", "", "| Variable / file key | Type | Default | Unit | Meaning |",
                "|---|---|---|---|---|"]
        for setting in group:
            cells = [f"`{env_name(setting.name)}` / `{setting.name}`", _type_name(setting),
                     _shown_default(setting), setting.metadata["unit"],
                     setting.metadata["meaning"]]
            out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
        out.append("")
    return "\n".join(out)


def sample() -> str:
    """A configuration file with every setting commented out at its default."""
    out = ["# xfer's configuration file, e.g. /etc/xfer/xfer.conf, read with",
           "# `xfer serve --config-file PATH` or XFER_CONFIG_FILE=PATH. Every setting goes in",
           "# [DEFAULT]; an XFER_* environment variable overrides the same setting here.",
           "# Generated by `xfer config sample`; docs/configuration.md has more.", "",
           "[DEFAULT]"]
    for title, group in _grouped():
        out += ["", f"# --- {title}"]
        for setting in group:
            unit = f"; {setting.metadata['unit']}" if setting.metadata["unit"] else ""
            about = (f"{setting.metadata['meaning']} ({env_name(setting.name)}, "
                     f"{_type_name(setting)}{unit})")
            out += ["", *textwrap.wrap(about, 78, initial_indent="# ", subsequent_indent="# ")]
            if setting.metadata["shown"] is not None:
                out.append(f"# default: {setting.metadata['shown']}")
                out.append(f"#{setting.name} =")
            else:
                out.append(f"#{setting.name} = {_as_written(_default(setting))}".rstrip())
    return "\n".join(out) + "\n"
