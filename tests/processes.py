"""Real components as child processes on free ports: Mosquitto, VictoriaMetrics, InfluxDB 1.x,
the daemon.

Each runner starts its program as a plain child of the test process, bound to
127.0.0.1 on a port picked by ``free_port()``, with its output in a log file,
and waits (with a deadline) until it answers. ``stop()`` asks it to exit
(SIGTERM), waits, then kills; every started process is also killed at
interpreter exit, so a crashed test run leaves nothing behind.

Lifecycle, the same for all three: ``start()`` once (the constructor does not
start), then any number of ``stop()``/``start()`` (or ``restart()``) pairs on
the same port and data directory, then ``stop()``. Calls must not overlap.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "ChildProcess",
    "ComponentFailed",
    "ComponentMissing",
    "InfluxDB1",
    "Mosquitto",
    "Stack",
    "VictoriaMetrics",
    "Wattline",
    "find_binary",
    "free_port",
    "wait_until",
]

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0

_live: set[ChildProcess] = set()


class ComponentMissing(RuntimeError):
    """A program the tests need is not installed; ``make setup`` as root installs it."""

    def __init__(self, program: str) -> None:
        super().__init__(
            f"{program} is not installed: run `make setup` as root (it apt-get installs "
            "mosquitto, victoria-metrics, prometheus, prometheus-alertmanager, influxdb and "
            "chromium)"
        )
        self.program = program


class ComponentFailed(RuntimeError):
    """A child process did not come up, or died; the message carries the tail of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_binary(name: str, extra_dirs: Sequence[str] = ("/usr/sbin", "/usr/local/sbin")) -> str:
    """The program's path from PATH or the sbin folders (not on a non-root PATH), else raise."""
    found = shutil.which(name)
    if found:
        return found
    for folder in extra_dirs:
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise ComponentMissing(name)


def wait_until(
    condition: Callable[[], Any], timeout_s: float, interval_s: float = 0.1, what: str = ""
) -> Any:
    """Poll ``condition`` until it returns something truthy; raise TimeoutError at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what or condition}")
        time.sleep(interval_s)


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a TCP connection to the port succeeds now."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_get(url: str, timeout_s: float = 5.0) -> tuple[int, bytes]:
    """Status and body of a GET; HTTP errors are returned, connection errors raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read()


class ChildProcess:
    """One program run as a child, logging to a file, stopped by its PID."""

    name = "process"

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    # subclasses say what to run and when it is up
    def command(self) -> list[str]:
        raise NotImplementedError

    def is_ready(self) -> bool:
        raise NotImplementedError

    def environment(self) -> Mapping[str, str] | None:
        return None

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the program and return once it answers; raise ComponentFailed otherwise."""
        self._spawn()
        try:
            self.wait_ready(timeout_s)
        except BaseException:
            self.kill()
            raise

    def _spawn(self) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self._log_file = self.log_path.open("ab")
        self._log_file.write(f"--- start {' '.join(self.command())}\n".encode())
        self._log_file.flush()
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=self.environment(),
            start_new_session=True,  # a Ctrl-C in the terminal reaches pytest, not the child
        )
        _live.add(self)

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Wait until the program answers; fail early, with its log, if it exits."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise ComponentFailed(f"{self.name} exited with {code}:\n{self.log_tail()}")
            try:
                if self.is_ready():
                    return
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise ComponentFailed(
                    f"{self.name} did not answer within {timeout_s:.0f} s:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL; the exit code (None: never started)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_S)
        return self._reap()

    def kill(self) -> int | None:
        """SIGKILL, as a crash or power cut would."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_S)
        return self._reap()

    def _reap(self) -> int | None:
        _live.discard(self)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return None if self.process is None else self.process.returncode

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


@atexit.register
def _kill_leftovers() -> None:
    """Never leave a broker, database or daemon behind, whatever happened to the tests."""
    for child in list(_live):
        with contextlib.suppress(Exception):  # best effort at exit
            child.kill()


class Mosquitto(ChildProcess):
    """A Mosquitto broker on 127.0.0.1 with anonymous access and a deep per-client queue.

    With ``persistence=True`` it keeps retained messages and persistent sessions in
    ``workdir/db`` across ``restart()``; when the tests run as root Mosquitto drops
    to the ``mosquitto`` user, so that folder is handed over to it.

    ``allow_anonymous=False`` refuses clients without a username; ``extra_config``
    lines follow the ``listener`` line, so listener options (``cafile``,
    ``certfile``, ``require_certificate``...) apply to it; global ones (``password_file``)
    may go there too. Files they name must be readable by the ``mosquitto`` user.
    """

    name = "mosquitto"

    def __init__(
        self,
        workdir: Path,
        *,
        persistence: bool = False,
        port: int | None = None,
        allow_anonymous: bool = True,
        extra_config: Sequence[str] = (),
    ) -> None:
        super().__init__(workdir)
        self.binary = find_binary("mosquitto")
        self.port = port or free_port()
        self.persistence = persistence
        self.allow_anonymous = allow_anonymous
        self.extra_config = list(extra_config)
        self.config_path = self.workdir / "mosquitto.conf"
        self.config_path.write_text(self._config())

    def _config(self) -> str:
        lines = [
            f"listener {self.port} 127.0.0.1",
            *self.extra_config,
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            "max_queued_messages 100000",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
        ]
        if self.persistence:
            lines += [
                "persistence true",
                f"persistence_location {self._database_dir()}/",
                "autosave_interval 1",
            ]
        else:
            lines.append("persistence false")
        return "\n".join(lines) + "\n"

    def _database_dir(self) -> Path:
        """Where Mosquitto keeps its database; one the ``mosquitto`` user can reach when root.

        As root Mosquitto drops to the ``mosquitto`` user, which cannot enter pytest's
        private (0700) temporary folders, so the database lives in its own folder
        under the system temporary directory, handed over to that user and removed
        at exit.
        """
        if os.geteuid() != 0:
            db = self.workdir / "db"
            db.mkdir(exist_ok=True)
            return db
        db = Path(tempfile.mkdtemp(prefix="wattline-test-mosquitto-"))
        shutil.chown(db, user="mosquitto", group="mosquitto")
        atexit.register(shutil.rmtree, db, ignore_errors=True)
        (self.workdir / "db").symlink_to(db)
        return db

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [self.binary, "-c", str(self.config_path)]

    def is_ready(self) -> bool:
        return port_accepts(self.port)

    def restart(self) -> None:
        """Stop cleanly (Mosquitto saves its database) and start again on the same port."""
        self.stop()
        self.start()


class NatsServer(ChildProcess):
    """A NATS server on 127.0.0.1 with JetStream (in ``workdir/js``) and an MQTT listener,
    both on free ports; ``mappings`` (subject -> subject) go in its config file, as the
    NATS source's partitioning does (``wattline nats setup`` prints them)."""

    name = "nats-server"

    def __init__(self, workdir: Path, *, mappings: Mapping[str, str] | None = None,
                 cluster_port: int | None = None, routes: Sequence[int] = ()) -> None:
        """``cluster_port`` and ``routes`` (the cluster ports of every member) make it one
        server of a cluster named ``wattline-test``."""
        super().__init__(workdir)
        self.binary = find_binary("nats-server")
        self.port = free_port()
        self.mqtt_port = free_port()
        cluster = ""
        if cluster_port is not None:
            urls = ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes)
            cluster = (f"cluster {{ name: wattline-test, listen: 127.0.0.1:{cluster_port}, "
                       f"routes: [{urls}] }}\n")
        self.config_path = self.workdir / "nats.conf"
        rows = "".join(f'  "{src}": "{dst}"\n' for src, dst in (mappings or {}).items())
        self.config_path.write_text(
            f"server_name: wattline-test-{self.port}\n"
            f"listen: 127.0.0.1:{self.port}\n"
            f"jetstream {{ store_dir: {json.dumps(str(self.workdir / 'js'))} }}\n"
            f"mqtt {{ listen: 127.0.0.1:{self.mqtt_port} }}\n"
            + cluster
            + (f"mappings = {{\n{rows}}}\n" if rows else ""))

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [self.binary, "-c", str(self.config_path)]

    def is_ready(self) -> bool:
        return port_accepts(self.port) and port_accepts(self.mqtt_port)


class VictoriaMetrics(ChildProcess):
    """VictoriaMetrics as the InfluxDB line-protocol server (``/api/v2/write``) of the tests.

    Each line-protocol field becomes a series ``<measurement>_<field>`` whose labels
    are the tags; timestamps come back in milliseconds.
    """

    name = "victoria-metrics"

    def __init__(self, workdir: Path, *, port: int | None = None,
                 extra_args: Sequence[str] = ()) -> None:
        super().__init__(workdir)
        self.binary = find_binary("victoria-metrics")
        self.port = port or free_port()
        self.data_dir = self.workdir / "data"
        self.extra_args = list(extra_args)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            self.binary,
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={self.data_dir}",
            "-retentionPeriod=100y",
            "-search.latencyOffset=0s",
            *self.extra_args,
        ]

    def is_ready(self) -> bool:
        status, body = http_get(f"{self.url}/health", timeout_s=1.0)
        return status == 200 and body.strip() == b"OK"

    def flush(self) -> None:
        """Make just-written samples searchable (VictoriaMetrics 1.79 buffers them ~1 s)."""
        status, body = http_get(f"{self.url}/internal/force_flush")
        if status != 200:
            raise ComponentFailed(f"force_flush answered {status}: {body[:200]!r}")

    def export(self, match: str) -> list[dict[str, Any]]:
        """Every series matching the selector, as ``{"metric", "values", "timestamps"}`` dicts."""
        self.flush()
        query = urllib.parse.urlencode({"match[]": match})
        status, body = http_get(f"{self.url}/api/v1/export?{query}")
        if status != 200:
            raise ComponentFailed(f"export of {match} answered {status}: {body[:300]!r}")
        return [json.loads(line) for line in body.splitlines() if line.strip()]

    def samples(self, match: str) -> dict[int, list[float]]:
        """Values by timestamp (ms) over all series matching ``match``, in time order.

        Meant for a selector that names one series: a point written twice (a replay)
        shows up as two values at one timestamp, which the caller can judge.
        """
        by_time: dict[int, list[float]] = {}
        for series in self.export(match):
            for ts, value in zip(series["timestamps"], series["values"], strict=True):
                by_time.setdefault(int(ts), []).append(float(value))
        return dict(sorted(by_time.items()))


class InfluxDB1(ChildProcess):
    """A real InfluxDB 1.x (Debian's ``influxd``, 1.6.7): the v1 API only.

    ``/write?db=&rp=&precision=``, ``/query`` with InfluxQL and ``/ping``; it keeps
    its meta, data and WAL folders under ``workdir``, so a ``stop()``/``start()``
    keeps what was written. ``create_database(name)`` makes a database (with its
    default retention policy ``autogen``); ``query(influxql, db)`` returns rows.

    ``admin=(user, password)`` turns authentication on: ``start()`` then creates that
    admin user, and the helpers here use it.
    """

    name = "influxdb"

    def __init__(self, workdir: Path, *, port: int | None = None,
                 admin: tuple[str, str] | None = None) -> None:
        super().__init__(workdir)
        self.binary = find_binary("influxd")
        self.port = port or free_port()
        self.rpc_port = free_port()
        self.admin = admin
        self.config_path = self.workdir / "influxdb.conf"
        self.config_path.write_text(self._config())

    def _config(self) -> str:
        return "\n".join([
            "reporting-disabled = true",
            f'bind-address = "127.0.0.1:{self.rpc_port}"',
            "[meta]",
            f'  dir = "{self.workdir / "meta"}"',
            "[data]",
            f'  dir = "{self.workdir / "data"}"',
            f'  wal-dir = "{self.workdir / "wal"}"',
            '  query-log-enabled = false',
            "[http]",
            f'  bind-address = "127.0.0.1:{self.port}"',
            "  log-enabled = false",
            f"  auth-enabled = {'true' if self.admin else 'false'}",
            "[monitor]",
            "  store-enabled = false",
            "[continuous_queries]",
            "  enabled = false",
            "",
        ])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [self.binary, "-config", str(self.config_path)]

    def is_ready(self) -> bool:
        status, _ = http_get(f"{self.url}/ping", timeout_s=1.0)
        return status == 204

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        super().start(timeout_s)
        if self.admin and not (self.workdir / "admin-created").exists():
            user, password = self.admin
            self._post_query(f"CREATE USER \"{user}\" WITH PASSWORD '{password}' "
                             "WITH ALL PRIVILEGES", None, auth=False)
            (self.workdir / "admin-created").touch()

    def _post_query(self, influxql: str, db: str | None,
                    auth: bool = True) -> list[dict[str, Any]]:
        form = {"q": influxql, "epoch": "ms"}
        if db:
            form["db"] = db
        request = urllib.request.Request(
            f"{self.url}/query", data=urllib.parse.urlencode(form).encode(), method="POST",
            headers=self._auth() if auth else {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as err:
            raise ComponentFailed(f"query {influxql!r} answered {err.code}: "
                                  f"{err.read()[:300]!r}") from err
        results = body.get("results", [])
        for result in results:
            if "error" in result:
                raise ComponentFailed(f"query {influxql!r} failed: {result['error']}")
        return results

    def _auth(self) -> dict[str, str]:
        if not self.admin:
            return {}
        pair = base64.b64encode(":".join(self.admin).encode()).decode()
        return {"Authorization": f"Basic {pair}"}

    def create_database(self, db: str) -> None:
        """``CREATE DATABASE`` (a no-op when it exists)."""
        self._post_query(f'CREATE DATABASE "{db}"', None)

    def query(self, influxql: str, db: str) -> list[dict[str, Any]]:
        """The rows of every series the statement answers, as dicts column -> value.

        Times are epoch milliseconds (column ``time``); rows of a ``GROUP BY`` query
        carry the series' tags as well; the measurement is in ``"_measurement"``.
        """
        rows: list[dict[str, Any]] = []
        for result in self._post_query(influxql, db):
            for series in result.get("series", []):
                extra = {"_measurement": series.get("name"), **series.get("tags", {})}
                for values in series.get("values", []):
                    rows.append({**extra, **dict(zip(series["columns"], values, strict=True))})
        return rows

    def write(self, lines: str, db: str, *, precision: str = "ms",
              rp: str | None = None) -> tuple[int, bytes]:
        """POST line protocol to ``/write``; the status and body (errors are returned)."""
        params = {"db": db, "precision": precision}
        if rp:
            params["rp"] = rp
        request = urllib.request.Request(
            f"{self.url}/write?{urllib.parse.urlencode(params)}", data=lines.encode(),
            method="POST", headers=self._auth())
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as err:
            return int(err.code), err.read()


class Wattline(ChildProcess):
    """The collector daemon, ``python -m wattline.ingest run ...``, with /metrics on a free port."""

    name = "wattline"

    def __init__(
        self,
        workdir: Path,
        args: Sequence[str] = (),
        *,
        metrics_port: int | None = None,
        env: Mapping[str, str] | None = None,
        program: Sequence[str] | None = None,
    ) -> None:
        super().__init__(workdir)
        self.metrics_port = metrics_port or free_port()
        self.args = list(args)
        self.extra_env = dict(env or {})
        self.program = (
            list(program) if program else [sys.executable, "-m", "wattline.ingest", "run"]
        )

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def command(self) -> list[str]:
        return [*self.program, *self.args, "--metrics-port", str(self.metrics_port)]

    def environment(self) -> Mapping[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WATTLINE_")}
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.extra_env)
        return env

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start without waiting: the caller decides how long to give it (``wait_ready``)."""
        self._spawn()

    def is_ready(self) -> bool:
        status, _ = http_get(self.metrics_url, timeout_s=1.0)
        return status == 200

    def scrape(self) -> str:
        status, body = http_get(self.metrics_url)
        if status != 200:
            raise ComponentFailed(f"/metrics answered {status}")
        return body.decode()

    def _samples(self, name: str, labels: Mapping[str, str] | None) -> list[float]:
        wanted = dict(labels or {})
        return [
            float(sample.value)
            for family in text_string_to_metric_families(self.scrape())
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in wanted.items())
        ]

    def metric(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """The value of the one sample ``name`` whose labels include ``labels``; None if absent.

        ``name`` is the sample's exposed name (``wattline_messages_received_total``);
        labels that match several samples are an error (use ``metric_sum``).
        """
        values = self._samples(name, labels)
        if len(values) > 1:
            raise ValueError(f"{len(values)} samples of {name} match {labels}: name more labels")
        return values[0] if values else None

    def metric_sum(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """The sum over samples ``name`` whose labels include ``labels`` (0 when none)."""
        return sum(self._samples(name, labels))

    def wait(self, timeout_s: float) -> int:
        """Wait for the daemon to exit by itself; its exit code."""
        assert self.process is not None, "the daemon was never started"
        code = self.process.wait(timeout_s)
        self._reap()
        return code


@dataclass(frozen=True)
class Stack:
    """A broker, a VictoriaMetrics and a daemon reading the one and writing to the other."""

    broker: Mosquitto
    victoria: VictoriaMetrics
    daemon: Wattline


@contextlib.contextmanager
def small_filesystem(path: Path, size: str = "16k") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path`` (for disk-full tests); needs root.

    Raises ``ComponentMissing`` where it cannot be mounted, so tests skip (or, in CI,
    fail) the way they do for a missing program.
    """
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode:
        raise ComponentMissing(f"a mountable tmpfs ({done.stderr.strip() or 'mount failed'})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
