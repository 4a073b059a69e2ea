"""The web view (/ui/) in Debian's headless Chromium, driven over the DevTools protocol
(tests/cdp.py), against the local cloud: alice signs in with her Keystone password, starts a
copy from the form, and watches its segment map fill while it runs (the xfer here reads at
1 MB/s); a POST without the session's CSRF token is refused; bob, of another project, sees
nothing of alice's copy. Screenshots go to tests/artifacts/web/ (printed)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from keystoneauth1 import session as ksa_session

from tests.cdp import Browser, Page, chromium, chromium_binary
from tests.conftest import MiB, Service, keystone_settings, running_service
from tests.test_cloud_keystone_glance import upload, user_session
from tests.test_image_copy import container_gone, glance_image, no_image
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
async def web_xfer(settings: Settings, cloud: devcloud.CloudInfo) -> AsyncIterator[Service]:
    """The xfer of RegionTwo, reading at 1 MB/s in 1 MiB segments: a copy slow enough to be
    watched."""
    running = keystone_settings(settings, cloud, TARGET, max_rate_mb=1.0, segment_size=MiB,
                                chunk_size=256 * 1024, read_timeout=30.0)
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


CELLS = "Array.from(document.querySelectorAll('#segments .cell')).map((c) => c.className.slice(5)).join('')"


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
            && cells + '|' + document.getElementById('rate').textContent; }})()""",
                                 COPY_DEADLINE_S)
    cells, rate = str(during).split("|")
    assert len(cells) == IMAGE_BYTES // MiB and "MB/s" in rate, during
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
        alice: ksa_session.Session, shots: Path) -> None:
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


async def test_sign_in_with_an_application_credential_and_refusals(
        web_xfer: Service, browser: Browser, cloud: devcloud.CloudInfo,
        alice: ksa_session.Session, shots: Path) -> None:
    """alice's application credential (made through Keystone's API with her own token) signs
    her in; a wrong password does not, and says so on the page."""
    identity = alice.get_endpoint(service_type="identity", interface="public")
    made = alice.post(f"{identity}/users/{alice.get_user_id()}/application_credentials",
                      json={"application_credential": {"name": f"web-{os.getpid()}"}})
    assert made.status_code == 201, made.text
    credential = made.json()["application_credential"]
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

    await page.eval(f"""(() => {{
        document.getElementById('credential_id').value = {json.dumps(credential['id'])};
        document.getElementById('secret').value = {json.dumps(credential['secret'])};
        document.getElementById('credential-form').submit(); }})()""")
    who = await page.wait_for("location.pathname === '/ui/' && "
                              "document.getElementById('who')?.textContent", PAGE_DEADLINE_S)
    assert str(who).startswith("alice · project alpha"), who
    deleted = alice.delete(f"{identity}/users/{alice.get_user_id()}/application_credentials/"
                           f"{credential['id']}")
    assert deleted.status_code == 204, deleted.text
