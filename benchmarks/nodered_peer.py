"""The Node-RED peer of ``wattline bench ingest --peer node-red``: install it, run it, read it.

Node-RED 4 is installed from npm into a cache folder once (``npm install node-red@4``,
about 20 s) and reused. Each run gets a fresh user folder holding our settings (no
editor, warnings only) and the flow of ``nodered_flow``; the bench then reads the
function's counters over HTTP and the process's CPU time and peak RSS from /proc.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

DEFAULT_CACHE = Path.home() / ".cache" / "wattline" / "node-red"
PACKAGE = "node-red@4"
INSTALL_TIMEOUT_S = 600.0
START_TIMEOUT_S = 60.0

_SETTINGS = """module.exports = {
    uiHost: "127.0.0.1",
    httpAdminRoot: false,
    flowFile: "flows.json",
    credentialSecret: false,
    logging: {console: {level: "warn", metrics: false, audit: false}},
};
"""


class PeerMissing(RuntimeError):
    """Node-RED cannot be run here; the message says why, in one line."""


def red_script(cache: Path) -> Path:
    return cache / "node_modules" / "node-red" / "red.js"


def installed_version(cache: Path) -> str | None:
    """The Node-RED version installed in ``cache``, if a 4.x is."""
    try:
        meta = json.loads((cache / "node_modules" / "node-red" / "package.json").read_text())
    except (OSError, ValueError):
        return None
    version = str(meta.get("version", ""))
    return version if version.startswith("4.") and red_script(cache).is_file() else None


def ensure_node_red(cache: Path = DEFAULT_CACHE) -> str:
    """Install Node-RED 4 into ``cache`` unless it is there; its version.

    Raises ``PeerMissing`` when node or npm is not installed or the install fails.
    """
    if shutil.which("node") is None:
        raise PeerMissing("node is not installed (apt-get install nodejs npm)")
    version = installed_version(cache)
    if version:
        return version
    npm = shutil.which("npm")
    if npm is None:
        raise PeerMissing("npm is not installed (apt-get install npm)")
    cache.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run([npm, "install", "--prefix", str(cache), PACKAGE, "--no-audit",
                               "--no-fund", "--omit=dev", "--loglevel=error"],
                              capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise PeerMissing(f"npm install {PACKAGE} took over {INSTALL_TIMEOUT_S:.0f} s") from None
    version = installed_version(cache)
    if done.returncode != 0 or version is None:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise PeerMissing(f"npm install {PACKAGE} into {cache} failed: {last}")
    return version


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds ``pid`` has used so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident set so far (VmHWM in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


class NodeRed:
    """One headless Node-RED running ``flow`` (a list of nodes) on a free port."""

    def __init__(self, cache: Path, flow: list[dict[str, Any]]) -> None:
        self.port = free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="wattline-node-red-"))
        (self._dir / "settings.js").write_text(_SETTINGS)
        (self._dir / "flows.json").write_text(json.dumps(flow))
        self._log = open(self._dir / "node-red.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            ["node", str(red_script(cache)), "--userDir", str(self._dir), "--settings",
             str(self._dir / "settings.js"), "--port", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=self._dir)

    @property
    def pid(self) -> int:
        return self.process.pid

    def get(self, name: str, timeout_s: float = 5.0) -> Any:
        """The JSON answer of ``GET /wattline/{name}``."""
        url = f"http://127.0.0.1:{self.port}/wattline/{name}"
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:
            return json.loads(answer.read())

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Until its HTTP endpoints answer (its MQTT session may still be coming up)."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"Node-RED exited with {self.process.returncode}: "
                                   f"{self.log_tail()}")
            try:
                self.get("counts", timeout_s=1.0)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Node-RED did not answer in {timeout_s:.0f} s: "
                                       f"{self.log_tail()}") from None
                time.sleep(0.1)

    def log_tail(self) -> str:
        try:
            lines = (self._dir / "node-red.log").read_text(errors="replace").splitlines()
        except OSError:
            return "no log"
        return " | ".join(lines[-5:]) or "no log"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()
        shutil.rmtree(self._dir, ignore_errors=True)
