"""Drive a headless Chromium over the DevTools protocol: the page's tests, benchmark and screenshot.

Only the system browser is used (nothing downloaded). Every request the page and its workers make
is recorded (Network events of the page and of each auto-attached worker), and host resolution is
mapped away from everything but the loopback address, so a stray request fails instead of leaving.
Needs `websocket-client` (the dev extra).
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
# workers wait for us before their first request, so none goes unrecorded; their own workers attach too
_AUTO_ATTACH = {"autoAttach": True, "waitForDebuggerOnStart": True, "flatten": True}


def find_chromium() -> str | None:
    """The system Chromium's path, or None."""
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


class PageError(RuntimeError):
    """A script evaluated in the page threw."""


class Chromium:
    """One headless browser with one page; `evaluate` runs JavaScript there and returns its JSON value."""

    def __init__(self, binary: str, timeout: float = 30.0) -> None:
        import websocket

        self._profile = tempfile.TemporaryDirectory(prefix="samcell-chromium-")
        self.process = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--remote-debugging-port=0", f"--user-data-dir={self._profile.name}",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-component-update",
             "--disable-background-networking", "--disable-sync", "--disable-default-apps", "--mute-audio",
             "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--window-size=1400,1000", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port = self._devtools_port(timeout)
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout))
        page = next(t for t in targets if t["type"] == "page")
        self._ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=timeout, suppress_origin=True)
        self._ids = itertools.count(1)
        self.requests: list[str] = []  # every URL the page or a worker asked for
        self.console: list[str] = []
        for method in ("Network.enable", "Runtime.enable", "Page.enable"):
            self.send(method)
        self.send("Target.setAutoAttach", _AUTO_ATTACH)

    def _devtools_port(self, timeout: float) -> int:
        marker = Path(self._profile.name) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker.exists() and (lines := marker.read_text().split()):
                return int(lines[0])
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.process.returncode} before DevTools started")
            time.sleep(0.1)
        raise RuntimeError("chromium did not start DevTools in time")

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60.0) -> dict:
        """Send one command and wait for its answer, recording the events that arrive meanwhile."""
        message_id = next(self._ids)
        message = {"id": message_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            self._ws.settimeout(max(0.1, deadline - time.monotonic()))
            reply = json.loads(self._ws.recv())
            if reply.get("id") == message_id and reply.get("sessionId") == session:
                if "error" in reply:
                    raise PageError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._event(reply)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{method} took longer than {timeout} s")

    def _event(self, event: dict) -> None:
        method, params = event.get("method"), event.get("params", {})
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Target.attachedToTarget":  # a worker: record its requests too
            session = params["sessionId"]
            for command, args in (("Network.enable", {}), ("Runtime.enable", {}), ("Target.setAutoAttach", _AUTO_ATTACH),
                                  ("Runtime.runIfWaitingForDebugger", {})):
                self._ws.send(json.dumps({"id": next(self._ids), "method": command, "params": args, "sessionId": session}))
        elif method == "Runtime.consoleAPICalled":
            self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            self.console.append(f"exception: {params['exceptionDetails'].get('exception', {}).get('description')}")

    def goto(self, url: str, timeout: float = 60.0) -> None:
        self.send("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete'", timeout)

    def evaluate(self, expression: str, timeout: float = 600.0):
        """The JSON value of `expression` (awaited when it is a promise); PageError when it throws."""
        result = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True,
                                                "timeout": timeout * 1000}, timeout=timeout + 5)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise PageError(details.get("exception", {}).get("description") or details.get("text"))
        return result["result"].get("value")

    def wait_for(self, condition: str, timeout: float = 60.0, poll: float = 0.2):
        """Wait until the JavaScript `condition` is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if value := self.evaluate(condition, timeout=timeout):
                return value
            time.sleep(poll)
        raise TimeoutError(f"page condition not met in {timeout} s: {condition}")

    def set_files(self, selector: str, paths: list[Path]) -> None:
        """Choose files in an <input type=file>, as a user would."""
        root = self.send("DOM.getDocument")["root"]["nodeId"]
        node = self.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        self.send("DOM.setFileInputFiles", {"nodeId": node, "files": [str(p) for p in paths]})

    def screenshot(self, path: Path, width: int = 1400, height: int = 1000) -> None:
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                          "mobile": False})
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self._ws.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self._profile.cleanup()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
