"""The wheel carries everything xfer reads at run time (sql/ above all): built, installed into a
new venv outside the checkout, and `xfer migrate` run from there against a test database."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import asyncpg

from tests.test_migrations import empty_database
from xfer.dev import devcloud

ROOT = Path(__file__).resolve().parents[1]

SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])


def run(*command: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(part) for part in command], check=True, capture_output=True,
                          text=True, timeout=300, **kwargs)  # type: ignore[call-overload]


async def test_an_installed_wheel_migrates_an_empty_database(
        tmp_path: Path, cloud: devcloud.CloudInfo) -> None:
    database = await empty_database(cloud.database_url)
    # Built from a copy: setuptools leaves build/ behind in the tree it builds.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".cloud-venv", ".cli-venv", ".devcloud*", "build", "*.egg-info",
        "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "results"))
    wheels = tmp_path / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", wheels,
        source)
    (wheel,) = wheels.glob("xfer-*.whl")
    venv = tmp_path / "fresh"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    fresh_python = venv / "bin" / "python"
    fresh_site = Path(run(fresh_python, "-c", "import sysconfig; "
                          "print(sysconfig.get_paths()['purelib'])").stdout.strip())
    run(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", fresh_site,
        wheel)
    # xfer's dependencies come from the test venv, appended *after* the fresh site-packages by
    # a path line (its .pth files, including the editable install's finder, are not read):
    # the wheel's xfer is the one imported, and no package is fetched for this test.
    (fresh_site / "xfer-test-deps.pth").write_text(f"{SITE_PACKAGES}\n")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    environ = {"PATH": os.environ["PATH"], "XFER_DATABASE_URL": database}
    located = run(fresh_python, "-c", "import xfer.jobs.db as db; print(db.__file__, db.SQL_DIR)",
                  cwd=outside, env=environ).stdout
    assert str(fresh_site) in located and str(ROOT) not in located
    run(fresh_python, "-m", "xfer.cli", "migrate", cwd=outside, env=environ)
    connection = await asyncpg.connect(database)
    try:
        applied = [row["name"] for row in
                   await connection.fetch("SELECT name FROM schema_migrations ORDER BY version")]
    finally:
        await connection.close()
    shipped = sorted(path.name for path in (ROOT / "sql" / "migrations").glob("*.sql"))
    assert applied == shipped
