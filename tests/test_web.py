"""The web view (/ui/) in Debian's headless Chromium, driven over the DevTools protocol
(tests/cdp.py), against the local cloud: alice signs in with her Keystone password, starts a
copy from the form, and watches its segment map fill while it runs (the xfer here reads at
1 MB/s), the segments in flight marked from the worker's record; a POST without the session's
CSRF token is refused; bob, of another project, sees nothing of alice's copy; an operator's
object copy whose segment 1 was refused once (a fault proxy in front of RegionTwo's Swift)
shows that segment's two attempts; an application credential signs in, and a copy it asks
for is refused with what to do instead. Screenshots go to tests/artifacts/web/ (printed)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from keystoneauth1 import session as ksa_session
from keystoneauth1.identity import v3

from tests.cdp import Browser, Page, chromium, chromium_binary
from tests.conftest import MiB, Service, keystone_settings, running_service, unique
from tests.fault_proxy import FaultProxy, status
from tests.keystone_users import live_trusts
from tests.sources import put_plain
from tests.test_cloud_keystone_glance import image_api, upload, user_session
from tests.test_faults import SEGMENT_PUT, proxy_for, routed_through
from tests.test_image_copy import call, container_gone, glance_image, no_image
from xfer.clients.swift import SwiftClient
from xfer.dev import devcloud
from xfer.settings import Settings

pytestmark = pytest.mark.integration

SOURCE, TARGET = "RegionOne", "RegionTwo"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "web"
IMAGE_BYTES = 12 * MiB  # 12 segments of 1 MiB, read at 1 MB/s: about 13 s of copying
PAGE_DEADLINE_S = 60.0
COPY_DEADLINE_S = 240.0


@pytest.fixture(scope="module")
def shots() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def alice(cloud: devcloud.CloudInfo) -> Iterator[ksa_session.Session]:
    session = user_session(cloud, "alice")
    yield session
    session.session.close()


@pytest.fixture
async def target_proxy(settings: Settings) -> AsyncIterator[FaultProxy]:
    """A fault proxy in front of RegionTwo's Swift, for the operator's object copies (image
    copies reach Swift through the catalog, not through it)."""
    async with proxy_for(settings.regions[TARGET]) as proxy:
        yield proxy


@pytest.fixture
async def web_xfer(settings: Settings, cloud: devcloud.CloudInfo,
                   target_proxy: FaultProxy) -> AsyncIterator[Service]:
    """The xfer of RegionTwo, reading at 1 MB/s in 1 MiB segments: a copy slow enough to be
    watched."""
    regions = {**settings.regions,
               TARGET: routed_through(settings.regions[TARGET], target_proxy)}
    running = keystone_settings(settings, cloud, TARGET, max_rate_mb=1.0, segment_size=MiB,
                                chunk_size=256 * 1024, read_timeout=30.0, regions=regions,
                                backoff_base=0.05, backoff_max=0.2)
    async with running_service(running) as service:
        yield service


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    if chromium_binary() is None:
        pytest.fail("Debian's chromium is missing: `make deps` installs it")
    async with chromium(tmp_path / "chromium-profile") as running:
        yield running


async def sign_in(page: Page, url: str, cloud: devcloud.CloudInfo, name: str) -> None:
    assert cloud.keystone is not None
    user = cloud.keystone.user(name)
    await page.goto(f"{url}/ui/login")
    await page.eval(f"""(() => {{
        document.getElementById('user').value = {json.dumps(user.name)};
        document.getElementById('password').value = {json.dumps(user.password)};
        document.getElementById('project').value = {json.dumps(user.project)};
        document.getElementById('sign-in').click(); }})()""")
    await page.wait_for("location.pathname === '/ui/' && document.readyState === 'complete'"
                        " && !!document.getElementById('who')", PAGE_DEADLINE_S)


async def post_status(page: Page, path: str, fields: dict[str, str]) -> int:
    """A POST sent by the page's own script (its cookie goes with it): the status."""
    status = await page.eval(f"""fetch({json.dumps(path)}, {{method: 'POST',
        body: new URLSearchParams({json.dumps(fields)}), redirect: 'manual'}})
        .then((r) => r.status)""")
    assert isinstance(status, int)
    return status


async def start_copy(page: Page, url: str, image_id: str) -> str:
    """The copy form: region, then the image; the job's id from the page it leads to."""
    await page.goto(f"{url}/ui/copies/new")
    await page.eval(f"""(() => {{ document.getElementById('source-region').value = '{SOURCE}';
        document.getElementById('list-images').click(); }})()""")
    await page.wait_for("!!document.getElementById('image')", PAGE_DEADLINE_S)
    await page.eval(f"""(() => {{ document.getElementById('image').value = '{image_id}';
        document.getElementById('name').value = 'web copy';
        document.getElementById('start-copy').click(); }})()""")
    path = await page.wait_for("location.pathname.startsWith('/ui/jobs/') && "
                               "document.readyState === 'complete' && location.pathname",
                               PAGE_DEADLINE_S)
    return str(path).rsplit("/", 1)[1]


CELLS = "Array.from(document.querySelectorAll('#segments .cell')).map((c) => c.className[5]).join('')"
# The segments drawn in flight, each with the attempt the worker recorded it started (a cell
# drawn in flight without a record has no data-attempts): "attempts,attempts,..."
IN_FLIGHT = ("Array.from(document.querySelectorAll('#segments .cell.i'))"
             ".map((c) => c.dataset.attempts).join(',')")


async def test_sign_in_copy_watch_the_map_fill_csrf_and_tenancy(
        web_xfer: Service, browser: Browser, cloud: devcloud.CloudInfo,
        alice: ksa_session.Session, shots: Path) -> None:
    data = os.urandom(IMAGE_BYTES)
    source = upload(alice, SOURCE, data)
    page = await browser.new_page()

    await sign_in(page, web_xfer.url, cloud, "alice")
    cookie = (await page.send("Network.getCookies", urls=[f"{web_xfer.url}/ui/"]))["cookies"]
    assert [(c["name"], c["httpOnly"], c["sameSite"], c["path"]) for c in cookie] == [
        ("xfer_ui", True, "Strict", "/ui/")]
    assert await page.eval("document.cookie") == ""  # no script of the page reads it
    await page.screenshot(shots / "1-signed-in.png")

    job_id = await start_copy(page, web_xfer.url, source["id"])

    # While it runs: some segments written, not all, the state running, the rate shown.
    during = await page.wait_for(f"""(() => {{ const cells = {CELLS};
        const state = document.getElementById('state').textContent;
        return state === 'running' && cells.includes('w') && cells.includes('i')
            && cells + '|' + document.getElementById('rate').textContent + '|' + {IN_FLIGHT};
        }})()""", COPY_DEADLINE_S)
    cells, rate, in_flight = str(during).split("|")
    assert len(cells) == IMAGE_BYTES // MiB and "MB/s" in rate, during
    # in flight from the worker's record: each such cell carries its recorded attempt
    assert in_flight and all(attempt.isdigit() and int(attempt) >= 1
                             for attempt in in_flight.split(",")), during
    await page.screenshot(shots / "2-copy-running.png")

    # A POST without the session's CSRF token, or with another, changes nothing.
    assert await post_status(page, f"/ui/jobs/{job_id}/cancel", {}) == 403
    assert await post_status(page, f"/ui/jobs/{job_id}/cancel", {"csrf": "x" * 43}) == 403
    assert await page.eval("document.getElementById('state').textContent") in (
        "running", "verifying", "succeeded")

    # Its end, on the same page, without a reload: every segment verified, the hashes shown.
    await page.wait_for("document.getElementById('state').textContent === 'succeeded' && "
                        "document.getElementById('step').textContent === 'registered'",
                        COPY_DEADLINE_S)
    assert await page.eval(CELLS) == "v" * (IMAGE_BYTES // MiB)
    assert await page.eval("document.getElementById('md5').textContent") == source["checksum"]
    assert await page.eval("document.getElementById('sha512').textContent") == hashlib.sha512(
        data).hexdigest()
    target_id = await page.eval("document.getElementById('target-image').textContent")
    await page.screenshot(shots / "3-copy-done.png")
    target = glance_image(alice, TARGET, target_id)
    assert (target["status"], target["checksum"], target["name"]) == (
        "active", source["checksum"], "web copy")

    await page.goto(f"{web_xfer.url}/ui/?state=succeeded")
    assert await page.eval(f"!!document.querySelector('[data-job=\"{job_id}\"]')")
    await page.goto(f"{web_xfer.url}/ui/?state=failed")
    assert await page.eval(f"!document.querySelector('[data-job=\"{job_id}\"]')")

    # bob, of another project, in a browser context of his own: no trace of alice's copy.
    other = await browser.new_page()
    await sign_in(other, web_xfer.url, cloud, "bob")
    assert await other.eval(f"!document.body.innerHTML.includes('{job_id}')")
    await other.screenshot(shots / "4-bob-sees-nothing.png")
    status = await other.eval(f"fetch('/ui/jobs/{job_id}').then((r) => r.status)")
    events = await other.eval(f"fetch('/ui/jobs/{job_id}/events').then((r) => r.status)")
    assert (status, events) == (404, 404)

    # Sign-out needs the token too; then the session is over.
    assert await post_status(page, "/ui/logout", {}) == 403
    await page.eval("document.getElementById('logout').click()")
    await page.loaded(f"{web_xfer.url}/ui/login", PAGE_DEADLINE_S)
    async with aiohttp.ClientSession() as http, http.get(
            f"{web_xfer.url}/ui/jobs/{job_id}/events") as response:
        assert response.status == 401  # no session, no events


async def test_cancel_from_the_copys_page_leaves_nothing_behind(
        web_xfer: Service, browser: Browser, cloud: devcloud.CloudInfo,
        alice: ksa_session.Session, shots: Path, target_proxy: FaultProxy,
        regions: dict[str, SwiftClient]) -> None:
    source = upload(alice, SOURCE, os.urandom(2 * IMAGE_BYTES))  # ~25 s: time to look
    page = await browser.new_page()
    await sign_in(page, web_xfer.url, cloud, "alice")
    job_id = await start_copy(page, web_xfer.url, source["id"])
    await page.wait_for(f"{CELLS}.includes('w')", COPY_DEADLINE_S)

    # An operator (admin: every project) sees the running copy, with its worker's lease.
    admin = await browser.new_page()
    await sign_in(admin, web_xfer.url, cloud, "admin")
    assert await admin.eval(f"!!document.querySelector('[data-job=\"{job_id}\"]')")
    await admin.goto(f"{web_xfer.url}/ui/jobs/{job_id}")
    lease = await admin.eval("document.getElementById('lease')?.textContent")
    assert lease is not None and "last heartbeat" in lease, lease
    assert await page.eval("document.getElementById('lease') === null")  # alice: no lease

    await page.eval("document.getElementById('cancel').click()")
    flash = await page.wait_for("document.readyState === 'complete' && "
                                "document.getElementById('flash')?.textContent", PAGE_DEADLINE_S)
    assert str(flash).startswith("cancel asked"), flash
    await page.wait_for("document.getElementById('state').textContent === 'cancelled'",
                        COPY_DEADLINE_S)
    cells = await page.eval(CELLS)
    assert "i" not in cells and "v" not in cells, cells
    target_id = await page.eval("document.getElementById('target-image').textContent")
    await page.screenshot(shots / "5-cancelled.png")

    # What the copy made is removed (after the job ends): checked in Glance and Swift.
    token = {"X-Auth-Token": alice.get_token()}
    cleanup = await web_xfer.cleaned_up(job_id, COPY_DEADLINE_S, headers=token)
    assert all(duty["state"] == "done" for duty in cleanup), cleanup
    if target_id != "-":
        assert no_image(alice, TARGET, target_id)
        assert container_gone(alice, TARGET, target_id)

    await watch_a_retried_segment(web_xfer, admin, cloud, target_proxy, regions, shots)


async def watch_a_retried_segment(web_xfer: Service, page: Page, cloud: devcloud.CloudInfo,
                                  target_proxy: FaultProxy, regions: dict[str, SwiftClient],
                                  shots: Path) -> None:
    """An operator's object copy of 4 segments whose segment 1 is refused once (503): its
    page shows the segments in flight as recorded, then segment 1 with its 2 attempts, in
    flight and once written, and every segment verified at the end (on an operator's page
    already signed in: no second browser)."""
    container, name = unique("web-retried"), "object.raw"
    await put_plain(regions[SOURCE], container, name, os.urandom(4 * MiB))
    refused = target_proxy.add(status("PUT", SEGMENT_PUT + r".*/00000001$", 503))
    operator = user_session(cloud, "admin")
    try:
        code, job = await call(web_xfer, "POST", "/v1/jobs", operator, {
            "source": {"region": SOURCE, "container": container, "object": name},
            "target": {"region": TARGET}, "segment_size": MiB})
    finally:
        operator.session.close()
    assert code == 201, job
    await page.goto(f"{web_xfer.url}/ui/jobs/{job['id']}")
    retried = "document.querySelectorAll('#segments .cell')[1]"
    seen = await page.wait_for(f"""(() => {{ const cell = {retried};
        return cell && cell.classList.contains('retried') && cell.textContent === '2'
            && cell.dataset.failures === '1'
            && document.getElementById('attempts').textContent.endsWith('(retries 1)')
            && document.getElementById('state').textContent + '|' + {CELLS} + '|' + {IN_FLIGHT};
        }})()""", COPY_DEADLINE_S)
    state, cells, in_flight = str(seen).split("|")
    assert refused.fired == 1 and len(cells) == 4, seen
    if state == "running":  # what is drawn in flight carries the attempt it was recorded with
        assert all(attempt in ("1", "2") for attempt in in_flight.split(",") if attempt), seen
    await page.screenshot(shots / "7-retried-segment.png")
    await page.wait_for("document.getElementById('state').textContent === 'succeeded'",
                        COPY_DEADLINE_S)
    assert await page.eval(CELLS) == "vvvv"
    assert await page.eval(f"{retried}.textContent + '|' + {retried}.title") == (
        "2|segment 1: verified (attempt 2, 1 failed, last: target_unavailable)")
    await page.screenshot(shots / "8-retried-segment-verified.png")


async def test_an_application_credential_signs_in_and_its_copy_is_refused_saying_why(
        web_xfer: Service, browser: Browser, cloud: devcloud.CloudInfo,
        alice: ksa_session.Session, shots: Path) -> None:
    """alice's application credentials (made through Keystone's API with her own token), one
    restricted (Keystone's default) and one unrestricted, each sign her in; a wrong password
    does not, and says so on the page. A copy either asks for is refused by Keystone (a trust
    from an application credential's token: 403, restricted or not, as measured here), in the
    web view and the API: 403 trust_refused saying to use a password, and nothing is left: no
    job, no trust, no image in the target region."""
    identity = alice.get_endpoint(service_type="identity", interface="public")
    credentials = [application_credential(alice, identity, unrestricted)
                   for unrestricted in (False, True)]
    source = upload(alice, SOURCE, os.urandom(MiB))
    jobs_before = await alice_jobs(web_xfer, alice)
    trusts_before = {trust["id"] for trust in live_trusts(cloud, alice)}
    page = await browser.new_page()

    await page.goto(f"{web_xfer.url}/ui/login")
    await page.eval("""(() => { document.getElementById('user').value = 'alice';
        document.getElementById('password').value = 'not her password';
        document.getElementById('project').value = 'alpha';
        document.getElementById('sign-in').click(); })()""")
    error = await page.wait_for("document.readyState === 'complete' && "
                                "document.getElementById('error')?.textContent", PAGE_DEADLINE_S)
    assert error == "Keystone refused these credentials"
    await page.screenshot(shots / "6-refused.png")

    for credential in credentials:
        await page.goto(f"{web_xfer.url}/ui/login")
        await page.eval(f"""(() => {{
            document.getElementById('credential_id').value = {json.dumps(credential['id'])};
            document.getElementById('secret').value = {json.dumps(credential['secret'])};
            document.getElementById('credential-form').submit(); }})()""")
        who = await page.wait_for("location.pathname === '/ui/' && "
                                  "document.getElementById('who')?.textContent", PAGE_DEADLINE_S)
        assert str(who).startswith("alice · project alpha"), who
        refused = await refused_copy(page, web_xfer.url, source["id"])
        assert refused.startswith("trust_refused: ") and "application credential" in refused \
            and "with your password" in refused, refused
        if credential["unrestricted"]:
            await page.screenshot(shots / "9-application-credential-copy-refused.png")
        status, answer = await call(web_xfer, "POST", f"/v1/images/{source['id']}/copies",
                                    credential_session(identity, credential),
                                    {"source_region": SOURCE})
        assert status == 403 and answer["error"]["code"] == "trust_refused", answer
        assert "with your password" in answer["error"]["message"], answer
        await page.eval("document.getElementById('logout').click()")
        await page.loaded(f"{web_xfer.url}/ui/login", PAGE_DEADLINE_S)

    # nothing left behind: no job, no trust, no image in the target region
    assert await alice_jobs(web_xfer, alice) == jobs_before
    assert {trust["id"] for trust in live_trusts(cloud, alice)} <= trusts_before
    images = alice.get(f"{image_api(alice, TARGET)}/v2/images",
                       params={"name": COPY_NAME}).json()["images"]
    assert images == [], images
    for credential in credentials:
        deleted = alice.delete(f"{identity}/users/{alice.get_user_id()}/"
                               f"application_credentials/{credential['id']}")
        assert deleted.status_code == 204, deleted.text


COPY_NAME = "refused copy"


def application_credential(user: ksa_session.Session, identity: str,
                           unrestricted: bool) -> dict[str, Any]:
    made = user.post(f"{identity}/users/{user.get_user_id()}/application_credentials",
                     json={"application_credential": {"name": unique("web"),
                                                      "unrestricted": unrestricted}})
    assert made.status_code == 201, made.text
    credential: dict[str, Any] = made.json()["application_credential"]
    assert credential["unrestricted"] is unrestricted
    return credential


def credential_session(identity: str, credential: dict[str, Any]) -> ksa_session.Session:
    return ksa_session.Session(auth=v3.ApplicationCredential(
        auth_url=identity, application_credential_id=credential["id"],
        application_credential_secret=credential["secret"]))


async def alice_jobs(service: Service, alice: ksa_session.Session) -> list[str]:
    status, page = await call(service, "GET", "/v1/jobs?limit=500", alice)
    assert status == 200, page
    return sorted(job["id"] for job in page["jobs"])


async def refused_copy(page: Page, url: str, image_id: str) -> str:
    """The copy form, as in start_copy, for a copy that is refused: the page's error, after
    checking that the same POST is answered with a 403."""
    await page.goto(f"{url}/ui/copies/new?source_region={SOURCE}")
    await page.wait_for("!!document.getElementById('image')", PAGE_DEADLINE_S)
    form = await page.eval(f"""(() => {{ const form = document.getElementById('copy-form');
        document.getElementById('image').value = '{image_id}';
        document.getElementById('name').value = {json.dumps(COPY_NAME)};
        return Object.fromEntries(new FormData(form)); }})()""")
    assert isinstance(form, dict)
    assert await post_status(page, "/ui/copies", form) == 403
    await page.eval("document.getElementById('start-copy').click()")
    error = await page.wait_for("document.readyState === 'complete' && "
                                "location.pathname === '/ui/copies' && "
                                "document.getElementById('error')?.textContent", PAGE_DEADLINE_S)
    return str(error)
