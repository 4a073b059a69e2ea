"""Debian's headless Chromium, driven over the Chrome DevTools Protocol on its websocket with
aiohttp (already xfer's HTTP library): no browser-automation package, none that downloads its
own browser. What the web view's tests need only: open a page, run an expression in it, wait
for one to be true, take a screenshot. Every wait is bounded."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

START_DEADLINE_S = 60.0
CALL_DEADLINE_S = 30.0


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Page:
    """One tab, attached in flat mode: its commands go on the browser's websocket with its
    session id."""

    def __init__(self, browser: Browser, session_id: str) -> None:
        self.browser = browser
        self.session_id = session_id

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        return await self.browser.send(method, session_id=self.session_id, **params)

    async def eval(self, expression: str) -> Any:
        reply = await self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                                awaitPromise=True)
        if "exceptionDetails" in reply:
            raise AssertionError(f"{expression!r} threw: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    async def wait_for(self, expression: str, deadline: float = 30.0,
                       interval: float = 0.1) -> Any:
        """The expression's value once it is truthy; AssertionError after `deadline` s."""
        async with asyncio.timeout(deadline):
            while True:
                with contextlib.suppress(AssertionError):  # a page between two documents
                    value = await self.eval(expression)
                    if value:
                        return value
                await asyncio.sleep(interval)

    async def goto(self, url: str, deadline: float = 30.0) -> None:
        await self.send("Page.navigate", url=url)
        await self.loaded(url.split("?", 1)[0], deadline)

    async def loaded(self, path_prefix: str = "", deadline: float = 30.0) -> None:
        """Wait until the document at a location starting with `path_prefix` has loaded."""
        await self.wait_for(f"document.readyState === 'complete' && "
                            f"location.href.startsWith({json.dumps(path_prefix)})", deadline)

    async def screenshot(self, path: Path) -> Path:
        data = (await self.send("Page.captureScreenshot", format="png"))["data"]
        await asyncio.to_thread(path.write_bytes, base64.b64decode(data))
        print(f"screenshot: {path}")
        return path


class Browser:
    def __init__(self, process: asyncio.subprocess.Process, ws: aiohttp.ClientWebSocketResponse
                 ) -> None:
        self.process = process
        self.ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}

    async def read_replies(self) -> None:
        async for message in self.ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            document = json.loads(message.data)
            waiting = self._waiting.pop(document.get("id", -1), None)
            if waiting is not None and not waiting.done():
                waiting.set_result(document)
        for waiting in self._waiting.values():
            waiting.cancel()

    async def send(self, method: str, session_id: str | None = None, **params: Any
                   ) -> dict[str, Any]:
        call_id = next(self._ids)
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = reply
        message: dict[str, Any] = {"id": call_id, "method": method, "params": params}
        if session_id is not None:
            message["sessionId"] = session_id
        await self.ws.send_str(json.dumps(message))
        async with asyncio.timeout(CALL_DEADLINE_S):
            document = await reply
        if "error" in document:
            raise AssertionError(f"{method}: {document['error']}")
        result: dict[str, Any] = document["result"]
        return result

    async def new_page(self, width: int = 1280, height: int = 900) -> Page:
        """A tab of its own browser context: its own cookies, as another browser's."""
        context = (await self.send("Target.createBrowserContext"))["browserContextId"]
        target = (await self.send("Target.createTarget", url="about:blank",
                                  browserContextId=context))["targetId"]
        session = (await self.send("Target.attachToTarget", targetId=target,
                                   flatten=True))["sessionId"]
        page = Page(self, session)
        await page.send("Page.enable")
        await page.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                        deviceScaleFactor=1, mobile=False)
        return page


async def _devtools_url(process: asyncio.subprocess.Process) -> str:
    assert process.stderr is not None
    async with asyncio.timeout(START_DEADLINE_S):
        while line := await process.stderr.readline():
            found = re.search(rb"DevTools listening on (ws://\S+)", line)
            if found:
                return found.group(1).decode()
    raise AssertionError(f"chromium exited ({await process.wait()}) without a DevTools URL")


async def _drain(stream: asyncio.StreamReader | None) -> None:
    """Chromium's later stderr lines, read so that its pipe never fills."""
    if stream is not None:
        while await stream.readline():
            pass


@contextlib.asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[Browser]:
    """Headless Chromium with a profile in `profile`, stopped (by its PID) on the way out."""
    binary = chromium_binary()
    assert binary is not None, "Debian's chromium is missing: `make deps` installs it"
    process = await asyncio.create_subprocess_exec(
        binary, "--headless=new", "--remote-debugging-port=0", f"--user-data-dir={profile}",
        "--no-first-run", "--no-default-browser-check", "--disable-gpu", "--disable-extensions",
        "--disable-background-networking", "--disable-dev-shm-usage", "--mute-audio",
        # root in a container has no user namespace for the sandbox; the pages are our own
        *(["--no-sandbox"] if os.geteuid() == 0 else []), "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        url = await _devtools_url(process)
        async with aiohttp.ClientSession() as http, http.ws_connect(
                url, max_msg_size=64 * 1024 * 1024) as ws, asyncio.TaskGroup() as group:
            browser = Browser(process, ws)
            reading = group.create_task(browser.read_replies())
            draining = group.create_task(_drain(process.stderr))
            try:
                yield browser
            finally:
                with contextlib.suppress(AssertionError, TimeoutError, ConnectionError):
                    await browser.send("Browser.close")
                await ws.close()
                reading.cancel()
                draining.cancel()
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(10):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
