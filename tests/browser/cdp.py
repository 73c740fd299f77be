"""A small headless-Chromium driver over the DevTools protocol on a pipe (`--remote-debugging-pipe`): open a
page, evaluate JavaScript, wait for a condition, take a screenshot. No dependency beyond the browser itself."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync", "--mute-audio",
    "--remote-debugging-pipe",
]  # fmt: skip


def find_chromium() -> str | None:
    """$SCHOLA_CHROMIUM, or Debian's chromium (or a Chrome) on the PATH."""
    if os.environ.get("SCHOLA_CHROMIUM"):
        return shutil.which(os.environ["SCHOLA_CHROMIUM"])
    names = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
    return next((p for n in names if (p := shutil.which(n))), None)


class BrowserError(RuntimeError):
    pass


class Chromium:
    """One headless Chromium with one page.

    Args:
        executable: the browser binary.
        profile: an empty folder for its user data.
    """

    def __init__(self, executable: str, profile: Path, *, width: int = 1280, height: int = 900) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire() -> None:  # the browser reads commands on fd 3 and writes replies on fd 4
            a = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 100)
            b = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 100)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=wire, pass_fds=(3, 4),
        )  # fmt: skip
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.page(f"{domain}.enable")
        self.page("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    # -- protocol ----------------------------------------------------------------------------
    def _send(self, message: dict[str, Any]) -> None:
        os.write(self._to_child, json.dumps(message).encode() + b"\0")

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_child], [], [], left)[0]:
                raise BrowserError("Chromium did not answer in time")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise BrowserError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)  # type: ignore[no-any-return]

    def call(self, method: str, *, session: str | None = None, timeout: float = 30, **params: Any) -> Any:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self._send(message)
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def page(self, method: str, **params: Any) -> Any:
        return self.call(method, session=self.session, **params)

    # -- what tests use ----------------------------------------------------------------------
    def open(self, path: Path, *, fragment: str = "", timeout: float = 30) -> float:
        """Load a file and wait until the page says it is ready; returns the seconds that took."""
        self.page("Page.navigate", url="about:blank")
        self.events.clear()
        start = time.monotonic()
        self.page("Page.navigate", url=path.resolve().as_uri() + (f"#{fragment}" if fragment else ""))
        self.wait_for(
            "document.body && document.body.dataset.ready === '1' && !document.body.dataset.busy", timeout=timeout
        )
        return time.monotonic() - start

    def eval(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises awaited)."""
        result = self.page("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise BrowserError(
                f"{expression!r} raised: {result['exceptionDetails'].get('exception', result['exceptionDetails'])}"
            )
        return result["result"].get("value")

    def wait_for(self, expression: str, *, timeout: float = 15) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.eval(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out waiting for {expression!r}")
            time.sleep(0.05)

    def idle(self, *, timeout: float = 30) -> None:
        """Wait until the page has rendered (no asynchronous work in flight)."""
        time.sleep(0.05)
        self.wait_for("!document.body.dataset.busy", timeout=timeout)

    def click(self, selector: str) -> None:
        """Click the first element matching a CSS selector and wait for the page to settle."""
        if not self.eval(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (e) e.click(); return !!e; }})()"
        ):
            raise BrowserError(f"nothing matches {selector!r}")
        self.idle()

    def fill(self, selector: str, value: str) -> None:
        """Type `value` into an input (as the user would: an input or change event follows) and wait."""
        script = (f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.value = {json.dumps(value)}; "
                  "e.dispatchEvent(new Event(e.type === 'search' ? 'input' : 'change')); })()")  # fmt: skip
        self.eval(script)
        self.idle()

    def texts(self, selector: str) -> list[str]:
        """The text of every element matching a CSS selector."""
        return self.eval(f"[...document.querySelectorAll({json.dumps(selector)})].map((e) => e.textContent)")  # type: ignore[no-any-return]

    def screenshot(self, path: Path, *, full_page: bool = False) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
        path.write_bytes(base64.b64decode(self.page("Page.captureScreenshot", **params)["data"]))
        return path

    def errors(self) -> list[str]:
        """Exceptions the page threw and errors it logged (CSP violations among them) since it was opened."""
        out = []
        for e in self.events:
            if e.get("method") == "Runtime.exceptionThrown":
                out.append(str(e["params"]["exceptionDetails"].get("exception", {}).get("description")))
            elif e.get("method") == "Log.entryAdded" and e["params"]["entry"].get("level") == "error":
                out.append(str(e["params"]["entry"].get("text")))
        return out

    def close(self) -> None:
        with contextlib.suppress(BrowserError, OSError):
            self.call("Browser.close", timeout=5)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        for fd in (self._to_child, self._from_child):
            os.close(fd)
