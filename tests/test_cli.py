"""The real `openstack` command (python-openstackclient from PyPI, in .cli-venv with
python-xferclient from client/, made by `make deps`) against the local cloud: alice and bob each
have a cloud in a clouds.yaml this test writes, and the xfer of RegionTwo listens on the port
the catalog lists for it, so the command finds it as any user's would."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from keystoneauth1 import session as ksa_session

from tests.conftest import MiB, Service, keystone_settings, md5, running_service, unique
from tests.sources import put_plain, read_back
from tests.test_cloud_keystone_glance import upload, user_session
from tests.test_image_copy import container_gone, glance_image, no_image
from xfer.clients.swift import SwiftClient
from xfer.dev import devcloud
from xfer.settings import Settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
CLI_VENV = REPO / ".cli-venv"
OPENSTACK = CLI_VENV / "bin" / "openstack"
SOURCE, TARGET = "RegionOne", "RegionTwo"
EXIT_FAILED, EXIT_CANCELLED, EXIT_TIMEOUT, EXIT_INTERRUPTED = 3, 4, 5, 130
COMMAND_DEADLINE_S = 240.0


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> dict:
        document: dict = json.loads(self.out)
        return document


@pytest.fixture(scope="module")
def clouds_yaml(cloud: devcloud.CloudInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """alice, bob and admin as clouds of their own, RegionTwo (the copies' target) their
    region."""
    assert cloud.keystone is not None
    clouds = {}
    for name in ("alice", "bob", "admin"):
        user = cloud.keystone.user(name)
        clouds[name] = {"auth": {"auth_url": cloud.keystone.auth_url, "username": user.name,
                                 "password": user.password, "project_name": user.project,
                                 "user_domain_name": "Default",
                                 "project_domain_name": "Default"},
                        "region_name": TARGET, "interface": "public",
                        "identity_api_version": 3}
    path = tmp_path_factory.mktemp("openstack") / "clouds.yaml"
    path.touch(mode=0o600)
    path.write_text(json.dumps({"clouds": clouds}, indent=2))  # JSON is YAML
    return path


def cli_environ(clouds: Path) -> dict[str, str]:
    """Only what the command needs: none of this process's OS_* or XFER_* variables."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
            "HOME": str(clouds.parent), "OS_CLIENT_CONFIG_FILE": str(clouds)}


async def start(clouds: Path, user: str, *args: str, stderr: int | None = None
                ) -> asyncio.subprocess.Process:
    if not OPENSTACK.exists():
        pytest.fail(f"{OPENSTACK} is missing: `make deps` makes it")
    return await asyncio.create_subprocess_exec(
        str(OPENSTACK), "--os-cloud", user, *args, env=cli_environ(clouds),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE if stderr is None else stderr)


async def finish(process: asyncio.subprocess.Process) -> Ran:
    async with asyncio.timeout(COMMAND_DEADLINE_S):
        out, err = await process.communicate()
    assert process.returncode is not None
    ran = Ran(process.returncode, out.decode(), (err or b"").decode())
    assert "Traceback" not in ran.err, ran.err
    return ran


async def openstack(clouds: Path, user: str, *args: str) -> Ran:
    """Run asynchronously: the xfer it talks to runs in this test's event loop."""
    return await finish(await start(clouds, user, *args))


@pytest.fixture(scope="module")
def sessions(cloud: devcloud.CloudInfo) -> Iterator[dict[str, ksa_session.Session]]:
    made = {name: user_session(cloud, name) for name in ("alice", "bob")}
    yield made
    for session in made.values():
        session.session.close()


def catalog_port(cloud: devcloud.CloudInfo) -> int:
    return int(cloud.xfer_urls[TARGET].rsplit(":", 1)[1])


# xfer's default read timeout, not the tests' 5 s: these tests are about the command, and at a
# load of 19 Glance once took over 5 s to answer the add-location (the copy failed
# glance_failed, and the command said so with exit 3, as it should).
READ_TIMEOUT_S = 30.0


@pytest.fixture
async def xfer(settings: Settings, cloud: devcloud.CloudInfo) -> AsyncIterator[Service]:
    """The xfer of RegionTwo where the catalog says it is."""
    running_settings = keystone_settings(settings, cloud, TARGET, listen_port=catalog_port(cloud),
                                         read_timeout=READ_TIMEOUT_S)
    async with running_service(running_settings) as running:
        yield running


@pytest.fixture
async def slow_xfer(settings: Settings, cloud: devcloud.CloudInfo) -> AsyncIterator[Service]:
    """The same, reading sources at 0.5 MB/s: a copy that runs long enough to be interrupted,
    timed out and cancelled, each by a command that may take 15 s to start on a busy machine."""
    running_settings = keystone_settings(settings, cloud, TARGET, listen_port=catalog_port(cloud),
                                         max_rate_mb=0.5, read_timeout=READ_TIMEOUT_S)
    async with running_service(running_settings) as running:
        yield running


def test_the_cli_venv_has_the_client_and_none_of_xfers_server_packages() -> None:
    script = (
        "import importlib.metadata as m, importlib.util as u, json\n"
        "print(json.dumps({'absent': [n for n in ('asyncpg', 'uvloop', 'pgserver', 'aiohttp',"
        " 'xfer') if u.find_spec(n) is None], 'present': u.find_spec('xferclient') is not None,"
        " 'versions': {n: m.version(n) for n in ('python-openstackclient', 'osc-lib',"
        " 'keystoneauth1')}}))")
    ran = subprocess.run([str(CLI_VENV / "bin" / "python"), "-I", "-c", script], capture_output=True,
                         text=True, check=True, timeout=60)
    found = json.loads(ran.stdout)
    assert found["absent"] == ["asyncpg", "uvloop", "pgserver", "aiohttp", "xfer"]
    assert found["present"]
    pinned = dict(line.split("==") for line in (REPO / "cli-requirements.txt").read_text()
                  .splitlines() if "==" in line and not line.startswith("#"))
    assert found["versions"] == pinned


EVENTS_SCRIPT = r"""
import json, sys
from xferclient.events import EventParser
stream = (b'event: progress\ndata: {"id": "j", "state": "running", "name": "\xc3\xa9"}\n\n'
          b': keep-alive\n\nevent: end\r\ndata: {"reason":\r\ndata: "finished"}\r\n\r\n')
seen = set()
for size in range(1, len(stream) + 1):  # every piece size, the last piece shorter
    parser = EventParser()
    events = [(e.name, e.data) for start in range(0, len(stream), size)
              for e in parser.feed_bytes(stream[start:start + size])]
    seen.add(json.dumps(events))
print(json.dumps(sorted(seen)))
"""


def test_the_events_parser_reads_the_stream_in_pieces_of_any_size() -> None:
    """xferclient.events in the CLI's venv (the client is not installed in xfer's)."""
    ran = subprocess.run([str(CLI_VENV / "bin" / "python"), "-c", EVENTS_SCRIPT],
                         capture_output=True, text=True, check=True, timeout=60)
    assert [json.loads(events) for events in json.loads(ran.stdout)] == [[
        ["progress", {"id": "j", "state": "running", "name": "é"}],
        ["end", {"reason": "finished"}]]]


async def test_create_by_name_with_wait_makes_an_active_copy_and_json_parses(
        xfer: Service, clouds_yaml: Path, sessions: dict[str, ksa_session.Session]) -> None:
    alice = sessions["alice"]
    source = upload(alice, SOURCE, os.urandom(3 * MiB + 17))

    ran = await openstack(clouds_yaml, "alice", "xfer", "copy", "create", source["name"],
                          "--source-region", SOURCE, "--property", "copied_by=cli",
                          "--name", "cli copy", "--wait", "300", "-f", "json")

    assert ran.code == 0, ran.err
    job = ran.json()
    assert job["state"] == "succeeded" and job["error"] is None
    assert (job["source_image_id"], job["source_region"], job["target_region"]) == (
        source["id"], SOURCE, TARGET)
    assert uuid.UUID(job["idempotency_key"])  # made by this invocation, shown
    assert f"Idempotency-Key {job['idempotency_key']}" in ran.err
    # not a terminal: a plain line per state, never a bar drawn with carriage returns
    assert re.search(rf"copy {job['id']}: succeeded, step registered", ran.err), ran.err
    assert "\r" not in ran.err
    target = glance_image(alice, TARGET, job["target_image_id"])
    assert (target["status"], target["checksum"], target["os_hash_value"]) == (
        "active", source["checksum"], source["os_hash_value"])
    assert (target["name"], target["copied_by"]) == ("cli copy", "cli")

    shown = await openstack(clouds_yaml, "alice", "xfer", "copy", "show", job["id"], "-f", "json")
    assert shown.code == 0 and shown.json()["target_image_id"] == job["target_image_id"]
    listed = await openstack(clouds_yaml, "alice", "xfer", "copy", "list", "-f", "json")
    assert [row["ID"] for row in json.loads(listed.out)] == [job["id"]]
    found = await openstack(clouds_yaml, "alice", "xfer", "image", "find", "--checksum",
                            source["checksum"], "-f", "json")
    assert {(row["Region"], row["ID"]) for row in json.loads(found.out)} == {
        (SOURCE, source["id"]), (TARGET, job["target_image_id"])}
    regions = await openstack(clouds_yaml, "alice", "xfer", "region", "list", "-f", "json")
    assert {(row["Name"], row["Home"]) for row in json.loads(regions.out)} == {
        (SOURCE, False), (TARGET, True)}


async def test_failures_exit_with_xfers_code_and_sentence(
        xfer: Service, clouds_yaml: Path) -> None:
    missing = str(uuid.uuid4())
    ran = await openstack(clouds_yaml, "alice", "xfer", "copy", "create", missing,
                          "--source-region", SOURCE, "--wait", "-f", "json")
    assert ran.code == EXIT_FAILED, ran.err
    assert ran.json()["state"] == "failed"
    assert ran.json()["error"].startswith("source_image_not_found: ")
    assert re.search(r"failed: source_image_not_found: .*" + missing, ran.err), ran.err

    unnamed = await openstack(clouds_yaml, "alice", "xfer", "copy", "create", "no-such-image",
                              "--source-region", SOURCE)
    assert unnamed.code == 1
    assert "no image named 'no-such-image' in RegionOne" in unnamed.err

    refused = await openstack(clouds_yaml, "alice", "xfer", "copy", "create", missing,
                              "--source-region", TARGET)  # the target's own region
    assert refused.code == 1
    assert "invalid_request: " in refused.err and "source_region" in refused.err, refused.err

    usage = await openstack(clouds_yaml, "alice", "xfer", "copy", "create", missing,
                            "--source-region", SOURCE, "--wait", "soon")
    assert usage.code == 2 and "is no duration" in usage.err


async def test_another_projects_copy_is_invisible(
        xfer: Service, clouds_yaml: Path, sessions: dict[str, ksa_session.Session]) -> None:
    source = upload(sessions["alice"], SOURCE, os.urandom(MiB + 3))
    created = await openstack(clouds_yaml, "alice", "xfer", "copy", "create", source["id"],
                              "--source-region", SOURCE, "-f", "json")
    assert created.code == 0, created.err
    job_id = created.json()["id"]

    for command in (("show", job_id), ("show", job_id, "--wait"), ("cancel", job_id)):
        ran = await openstack(clouds_yaml, "bob", "xfer", "copy", *command)
        assert ran.code == 1 and "not_found: " in ran.err, (command, ran)
        assert job_id not in ran.out
    listed = await openstack(clouds_yaml, "bob", "xfer", "copy", "list", "-f", "json")
    assert listed.code == 0 and json.loads(listed.out) == []

    waited = await openstack(clouds_yaml, "alice", "xfer", "copy", "show", job_id, "--wait=120",
                             "-f", "json")
    assert waited.code == 0 and waited.json()["state"] == "succeeded", waited.err


async def read_until(master: int, pattern: str, deadline: float = 120.0) -> str:
    """What a terminal shows, read until `pattern` appears in it (or its program has ended:
    then Linux answers EIO once the rest is read)."""
    seen = b""
    async with asyncio.timeout(deadline):
        while re.search(pattern, seen.decode(errors="replace")) is None:
            try:
                seen += os.read(master, 65536)
            except BlockingIOError:
                await asyncio.sleep(0.05)
            except OSError:
                break
    return seen.decode(errors="replace")


async def test_ctrl_c_timeout_and_cancel_on_a_running_copy(
        slow_xfer: Service, clouds_yaml: Path, sessions: dict[str, ksa_session.Session]) -> None:
    alice = sessions["alice"]
    source = upload(alice, SOURCE, os.urandom(40 * MiB))  # 84 s at 0.5 MB/s

    master, terminal = pty.openpty()
    os.set_blocking(master, False)
    try:
        waiting = await start(clouds_yaml, "alice", "xfer", "copy", "create", source["id"],
                              "--source-region", SOURCE, "--wait", "-f", "json", stderr=terminal)
        os.close(terminal)
        # on a terminal: a bar with the rate and ETA, drawn again in place
        shown = await read_until(master, r"\r\[#*\.*\] +[0-9.]+% .* MiB/s ETA (\d+m)?\d+s")
        job_id = re.search(r"copy ([0-9a-f-]{36}) of image", shown)[1]  # type: ignore[index]
        waiting.send_signal(signal.SIGINT)
        interrupted = await finish(waiting)
        shown += await read_until(master, "goes on")
    finally:
        os.close(master)
    assert interrupted.code == EXIT_INTERRUPTED, shown
    assert re.search(r"\r\[#*\.*\] +[0-9.]+% .* MiB/s ETA (\d+m)?\d+s", shown), shown
    assert f"openstack xfer copy cancel {job_id}" in shown
    assert interrupted.json()["state"] in ("queued", "running")

    timed_out = await openstack(clouds_yaml, "alice", "xfer", "copy", "show", job_id,
                                "--wait", "1", "-f", "json")
    assert timed_out.code == EXIT_TIMEOUT, timed_out.err
    assert f"gave up waiting after 1 s; copy {job_id} goes on" in timed_out.err

    follower = await start(clouds_yaml, "alice", "xfer", "copy", "show", job_id, "--wait", "-f",
                           "json")
    cancelled = await openstack(clouds_yaml, "alice", "xfer", "copy", "cancel", job_id)
    assert cancelled.code == 0, cancelled.err
    followed = await finish(follower)
    assert followed.code == EXIT_CANCELLED, followed.err
    assert followed.json()["state"] == "cancelled"
    assert f"copy {job_id} was cancelled" in followed.err

    cleanup = await slow_xfer.cleaned_up(job_id, headers={"X-Auth-Token": alice.get_token()})
    assert all(duty["state"] == "done" for duty in cleanup), cleanup
    target_id = followed.json()["target_image_id"]
    if target_id is not None:  # nothing left in alice's project: checked in Glance and Swift
        assert no_image(alice, TARGET, target_id) and container_gone(alice, TARGET, target_id)

    again = await openstack(clouds_yaml, "alice", "xfer", "copy", "cancel", job_id)
    assert again.code == 1 and "not_cancellable: " in again.err


async def test_an_admin_copies_a_swift_object_and_a_member_may_not(
        xfer: Service, clouds_yaml: Path, regions: dict[str, SwiftClient]) -> None:
    container, data = unique("cli-objects"), os.urandom(2 * MiB + 5)
    await put_plain(regions[SOURCE], container, "disk.raw", data)
    where = ("--source-region", SOURCE, "--source-container", container,
             "--source-object", "disk.raw")

    refused = await openstack(clouds_yaml, "alice", "xfer", "object", "copy", *where)
    assert refused.code == 1 and "forbidden: " in refused.err, refused.err

    copied = await openstack(clouds_yaml, "admin", "xfer", "object", "copy", *where,
                             "--checksum", md5(data), "--wait", "300", "-f", "json")
    assert copied.code == 0, copied.err
    job = copied.json()
    assert (job["state"], job["md5"], job["verification"]) == (
        "succeeded", md5(data), "end_to_end")
    assert job["targets"] == [f"{TARGET}:{container}/disk.raw succeeded"]
    assert await read_back(regions[TARGET], container, "disk.raw") == data

    found = await openstack(clouds_yaml, "admin", "xfer", "object", "find", "--checksum",
                            md5(data), "-f", "json")
    assert [(row["Region"], row["Object"], row["Job"]) for row in json.loads(found.out)] == [
        (TARGET, "disk.raw", job["id"])]
