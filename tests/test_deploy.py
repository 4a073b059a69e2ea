"""The example systemd units in deploy/systemd: valid to systemd itself (`systemd-analyze
verify`), given time to stop gracefully, and configured with settings xfer knows."""

from __future__ import annotations

import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web_runner

from xfer.jobs.db import CLOSE_SECONDS
from xfer.settings import Settings, environ_values

ROOT = Path(__file__).resolve().parents[1]
UNITS = ROOT / "deploy" / "systemd"
INSTALLED_XFER = "/opt/xfer/bin/xfer"


def unit_values(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines()
                if "=" in line and not line.startswith("#"))


@pytest.mark.parametrize("unit", ["xfer-serve.service", "xfer-worker.service"])
def test_systemd_verifies_the_unit(unit: str, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: `make deps` installs Debian's systemd package")
    # verify checks that ExecStart's program exists: this checkout's instead of /opt/xfer's
    xfer = Path(sys.executable).with_name("xfer")
    assert xfer.exists(), xfer
    text = (UNITS / unit).read_text()
    assert INSTALLED_XFER in text
    (tmp_path / unit).write_text(text.replace(INSTALLED_XFER, str(xfer)))
    verified = subprocess.run([analyze, "verify", "--man=no", str(tmp_path / unit)],
                              capture_output=True, text=True, timeout=60)
    # systemd ignores a line it cannot parse with only a warning and exit status 0
    assert (verified.returncode, verified.stderr, verified.stdout) == (0, "", "")


def graceful_stop_bound(api: bool) -> float:
    """The longest `xfer serve`/`xfer worker` takes after SIGTERM with the default settings
    (xfer/app.py serve): running copies handed back, the API's requests finished (aiohttp's
    shutdown timeout), the database pool closed."""
    hand_back = Settings().lease_seconds / 3
    shutdown = inspect.signature(web_runner.BaseRunner.__init__).parameters[
        "shutdown_timeout"].default
    return hand_back + (shutdown if api else 0.0) + CLOSE_SECONDS


@pytest.mark.parametrize("unit, api", [("xfer-serve.service", True),
                                       ("xfer-worker.service", False)])
def test_the_unit_lets_xfer_stop_gracefully_and_restarts_it_on_failure(unit: str,
                                                                        api: bool) -> None:
    values = unit_values(UNITS / unit)
    assert float(values["TimeoutStopSec"]) > graceful_stop_bound(api)
    assert values["KillSignal"] == "SIGTERM" and values["Restart"] == "on-failure"
    command = "serve" if api else "worker"
    assert values["ExecStart"] == f"{INSTALLED_XFER} {command} --config-file /etc/xfer/xfer.conf"
    assert values["EnvironmentFile"] == "-/etc/xfer/xfer.env"


def test_the_environment_file_names_only_settings_xfer_knows() -> None:
    variables = unit_values(UNITS / "xfer.env")
    assert set(environ_values(variables)) == {"database_url", "keystone_password"}
