"""A headless Chromium driven over the DevTools protocol, for the dashboard's live tests.

`Browser` starts Chromium with `--remote-debugging-port=0` (it writes the port it took to
`DevToolsActivePort` in its profile directory), opens pages as tabs, evaluates
JavaScript in them and collects what their consoles said: console errors, uncaught
exceptions, and the browser's own log (refused scripts, failed loads, CSP violations).
Unlike `--dump-dom` (one load, then the page is gone), a tab stays open, so a test can
change the cluster and watch the same page follow it. The WebSocket client is tornado's
(a test dependency through `distributed`).
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def not_blank(png: bytes) -> float:
    """The share of a screenshot's pixels that differ from its most common colour (the
    background): a page whose charts drew nothing is close to 0."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB").resize((250, 225))
    colours = img.getcolors(250 * 225)
    return 1 - max(n for n, _ in colours) / (250 * 225)


class Tab:
    def __init__(self, browser: Browser, target: str, session: str, url: str):
        self.browser, self.target, self.session, self.url = browser, target, session, url
        #: console errors, uncaught exceptions and browser log errors of this tab
        self.errors: list[str] = []

    async def call(self, method: str, **params: Any) -> dict:
        return await self.browser.call(method, session=self.session, **params)

    async def js(self, expression: str) -> Any:
        """The value of `expression` in the page (awaited if it is a promise)."""
        r = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise AssertionError(f"{expression!r} failed in {self.url}: {r['exceptionDetails']}")
        return r["result"].get("value")

    async def until(self, expression: str, timeout: float = 60.0, interval: float = 0.2) -> Any:
        """Poll `expression` until it is truthy; its value."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = await self.js(expression)
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{self.url}: {expression!r} still {value!r} after {timeout} s; errors {self.errors}")
            await asyncio.sleep(interval)

    async def close(self) -> None:
        await self.browser.call("Target.closeTarget", targetId=self.target)
        self.browser._tabs.pop(self.session, None)

    async def screenshot(self, path: Path) -> bytes:
        import base64

        await self.call("Page.bringToFront")  # a background tab may not paint
        data = base64.b64decode((await self.call("Page.captureScreenshot", format="png"))["data"])
        path.write_bytes(data)
        return data


class Browser:
    def __init__(self, profile_dir: Path, width: int = 1280, height: int = 900):
        self.profile_dir, self.width, self.height = profile_dir, width, height
        self.proc: subprocess.Popen | None = None
        self.ws: Any = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future] = {}
        self._tabs: dict[str, Tab] = {}
        self._reader: asyncio.Task | None = None

    async def __aenter__(self) -> Browser:
        from tornado.websocket import websocket_connect

        self.profile_dir.mkdir(parents=True, exist_ok=True)
        port_file = self.profile_dir / "DevToolsActivePort"
        port_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-default-apps",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--remote-debugging-port=0", f"--user-data-dir={self.profile_dir}",
             f"--window-size={self.width},{self.height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(300):
            if port_file.exists() and len(port_file.read_text().splitlines()) >= 2:
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}")
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError("chromium did not open its debugging port in 30 s")
        port, path = port_file.read_text().splitlines()[:2]
        self.ws = await websocket_connect(f"ws://127.0.0.1:{port}{path}", max_message_size=256 * 1024 * 1024)
        self._reader = asyncio.ensure_future(self._read())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.ws is not None:
            self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    async def _read(self) -> None:
        while True:
            text = await self.ws.read_message()
            if text is None:
                for f in self._waiting.values():
                    if not f.done():
                        f.set_exception(ConnectionError("chromium closed the DevTools connection"))
                return
            msg = json.loads(text)
            if "id" in msg:
                f = self._waiting.pop(msg["id"], None)
                if f is not None and not f.done():
                    if "error" in msg:
                        f.set_exception(RuntimeError(f"DevTools: {msg['error']}"))
                    else:
                        f.set_result(msg.get("result", {}))
                continue
            tab = self._tabs.get(msg.get("sessionId", ""))
            if tab is not None:
                self._event(tab, msg["method"], msg.get("params", {}))

    @staticmethod
    def _event(tab: Tab, method: str, p: dict) -> None:
        if method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            tab.errors.append(f"uncaught: {d.get('text')} {d.get('exception', {}).get('description', '')}")
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            tab.errors.append("console.error: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
        elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
            tab.errors.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")

    async def call(self, method: str, session: str | None = None, **params: Any) -> dict:
        i = next(self._ids)
        msg: dict[str, Any] = {"id": i, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        f = self._waiting[i] = asyncio.get_running_loop().create_future()
        await self.ws.write_message(json.dumps(msg))
        return await asyncio.wait_for(f, 60)

    async def open(self, url: str) -> Tab:
        """A new tab on `url`, its console watched from before the page loads."""
        target = (await self.call("Target.createTarget", url="about:blank"))["targetId"]
        session = (await self.call("Target.attachToTarget", targetId=target, flatten=True))["sessionId"]
        tab = self._tabs[session] = Tab(self, target, session, url)
        for domain in ("Runtime", "Log", "Page"):
            await tab.call(f"{domain}.enable")
        await tab.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                       deviceScaleFactor=1, mobile=False)  # fmt: skip
        await tab.call("Page.navigate", url=url)
        await tab.until("document.readyState === 'complete'", timeout=30)
        return tab
