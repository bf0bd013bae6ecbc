"""Headless Chromium driven through chromedriver's W3C WebDriver HTTP API.

The pages tinyconv writes (``report``, ``explore``) are tested in a real
browser. This module speaks the few WebDriver commands the tests need over
HTTP with urllib (no Selenium): open a page, run a script in it, click, press
keys, read the console and the network log, take a screenshot. The
``browser`` fixture of ``conftest.py`` hands out one; under CI (``CI=true``)
a missing Chromium fails the test, on a developer's machine it is skipped.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
#: The W3C name of an element reference in WebDriver's answers.
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
#: WebDriver's codes for the keys the tests press.
KEYS = {"Tab": "\ue004", "Enter": "\ue007", "Space": " ", "ArrowLeft": "\ue012",
        "ArrowUp": "\ue013", "ArrowRight": "\ue014", "ArrowDown": "\ue015",
        "PageDown": "\ue00f", "PageUp": "\ue00e", "Backspace": "\ue003"}


def require_browser() -> None:
    """Fail the test under CI, skip it elsewhere, when Chromium or chromedriver is missing."""
    from conftest import running_in_ci

    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if shutil.which(path) is None]
    if missing:
        message = (f"{' and '.join(missing)} not found: install the Debian packages "
                   f"chromium and chromium-driver")
        if running_in_ci():
            pytest.fail(f"{message} (CI=true: the browser test must run)", pytrace=False)
        pytest.skip(message)


class WebDriver:
    """A headless Chromium with a fresh profile in ``profile_dir``, and its chromedriver."""

    def __init__(self, profile_dir, width: int = 1200, height: int = 900):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen([CHROMEDRIVER, f"--port={port}"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.session = None
        try:
            self._wait_until_ready()
            # Chromium run as root needs --no-sandbox; the rest keeps it from
            # reaching out to the network on its own account.
            options = {"binary": CHROMIUM, "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", f"--window-size={width},{height}",
                f"--user-data-dir={profile_dir}"]}
            capabilities = {"browserName": "chrome", "goog:chromeOptions": options,
                            "goog:loggingPrefs": {"browser": "ALL", "performance": "ALL"}}
            self.session = self.call("POST", "/session",
                                     {"capabilities": {"alwaysMatch": capabilities}})["sessionId"]
        except BaseException:
            self.close()
            raise

    def _wait_until_ready(self):
        for _ in range(300):
            try:
                if self.call("GET", "/status")["ready"]:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("chromedriver did not start within 30 s")

    def call(self, method: str, path: str, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())["value"]

    def command(self, method: str, path: str, body=None):
        return self.call(method, f"/session/{self.session}{path}", body)

    def open(self, path) -> None:
        """Load the file at ``path`` (a pathlib.Path) and wait for it to finish loading."""
        self.command("POST", "/url", {"url": path.as_uri()})

    def execute(self, script: str, *args):
        """Run ``script`` (a function body; ``arguments`` holds ``args``) in the page."""
        return self.command("POST", "/execute/sync", {"script": script, "args": list(args)})

    def wait_for(self, script: str, seconds: float = 30) -> None:
        """Wait until ``script`` (a function body) returns something true."""
        deadline = time.monotonic() + seconds
        while not self.execute(script):
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {seconds} s in vain for: {script}")
            time.sleep(0.05)

    def find(self, css: str) -> dict:
        """The first element that matches the CSS selector ``css``."""
        return self.command("POST", "/element", {"using": "css selector", "value": css})

    def click(self, element: dict) -> None:
        """Click ``element`` as a user would: scrolled into view, in its middle."""
        self.command("POST", f"/element/{element[ELEMENT]}/click", {})

    def press(self, *keys: str) -> None:
        """Press and release each key of ``keys`` (names of :data:`KEYS`) in turn."""
        actions = []
        for key in keys:
            value = KEYS.get(key, key)
            actions += [{"type": "keyDown", "value": value}, {"type": "keyUp", "value": value}]
        self.command("POST", "/actions",
                     {"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})

    def console(self) -> list:
        """What the page wrote to the console since the last call."""
        return self.command("POST", "/se/log", {"type": "browser"})

    def requests(self) -> list[tuple[str, str]]:
        """(URL, URL of the document that asked) of every request the browser sent
        since the last call. Chromium's own pages (chrome://) ask too."""
        sent = []
        for entry in self.command("POST", "/se/log", {"type": "performance"}):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                params = message["params"]
                sent.append((params["request"]["url"], params.get("documentURL", "")))
        return sent

    def screenshot(self) -> bytes:
        """The visible part of the page as PNG bytes."""
        return base64.b64decode(self.command("GET", "/screenshot"))

    def close(self):
        if self.session is not None:
            try:
                self.call("DELETE", f"/session/{self.session}")
            except OSError:
                pass
        self.process.terminate()
        self.process.wait(timeout=30)
