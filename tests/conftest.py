"""Fixtures that start real components (Mosquitto, VictoriaMetrics, InfluxDB 1.x, the daemon).

The session-scoped ``mosquitto`` and ``victoria`` are shared: tests keep apart by
using their own site names. Tests that restart, kill or fill a component take a
fresh one from ``make_mosquitto`` / ``make_victoria`` instead. A missing program
skips the test with what to do, except in CI (``CI`` set), where it fails: CI
must never go green by skipping the end-to-end tests.

With ``NUMBA_DISABLE_JIT=1`` (``make test-nojit``) the kernels run as Python; see
tests/no_jit.py.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.no_jit import JIT_DISABLED, replace_prefetch_hints
from tests.processes import (
    ChildProcess,
    ComponentMissing,
    InfluxDB1,
    Mosquitto,
    VictoriaMetrics,
    Wattline,
)

_CHILDREN = pytest.StashKey[list[ChildProcess]]()


def pytest_configure(config: pytest.Config) -> None:
    if JIT_DISABLED:
        replace_prefetch_hints()


def pytest_report_header(config: pytest.Config) -> str | None:
    if JIT_DISABLED:
        return "numba: JIT disabled (NUMBA_DISABLE_JIT), the kernels run as Python"
    return None


def in_ci() -> bool:
    """Whether the tests run in CI, where a missing component is an error, not a skip."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing_component(err: ComponentMissing) -> NoReturn:
    """Skip (on a developer machine) or fail (in CI) because a program is not installed."""
    if in_ci():
        pytest.fail(f"CI needs {err.program}: {err}", pytrace=False)
    pytest.skip(str(err))


def _track(request: pytest.FixtureRequest, child: ChildProcess) -> None:
    """Remember a child on the test item, so a failing test shows the child's log."""
    children = request.node.stash.setdefault(_CHILDREN, [])
    children.append(child)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Append the logs of the test's own components (the daemon first) to a failure report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("setup", "call"):
        children = sorted(item.stash.get(_CHILDREN, []), key=lambda c: c.name != "wattline")
        for child in children:
            lines = 200 if child.name == "wattline" else 40
            report.sections.append((f"{child.name} log ({child.log_path})", child.log_tail(lines)))


@pytest.fixture()
def site() -> str:
    """A site name no other test uses, to keep tests apart on shared components."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One broker for the whole session; do not restart or kill it."""
    try:
        broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    except ComponentMissing as err:
        missing_component(err)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    """One VictoriaMetrics for the whole session; do not restart or kill it."""
    try:
        server = VictoriaMetrics(tmp_path_factory.mktemp("victoria"))
    except ComponentMissing as err:
        missing_component(err)
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def make_mosquitto(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Mosquitto]]:
    """Factory of brokers owned by one test: ``make_mosquitto(persistence=True)``; other
    keywords (``allow_anonymous``, ``extra_config``) go to ``Mosquitto``."""
    started: list[Mosquitto] = []

    def make(*, persistence: bool = False, **options: Any) -> Mosquitto:
        try:
            broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"), persistence=persistence,
                               **options)
        except ComponentMissing as err:
            missing_component(err)
        started.append(broker)
        _track(request, broker)
        broker.start()
        return broker

    yield make
    for broker in started:
        broker.stop()


@pytest.fixture()
def make_victoria(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[], VictoriaMetrics]]:
    """Factory of VictoriaMetrics servers owned by one test."""
    started: list[VictoriaMetrics] = []

    def make() -> VictoriaMetrics:
        try:
            server = VictoriaMetrics(tmp_path_factory.mktemp("victoria"))
        except ComponentMissing as err:
            missing_component(err)
        started.append(server)
        _track(request, server)
        server.start()
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture()
def make_influxdb1(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., InfluxDB1]]:
    """Factory of real InfluxDB 1.x servers owned by one test, each with its databases
    made: ``make_influxdb1()`` (database ``wattline``), ``make_influxdb1(databases=("a",))``;
    ``admin=(user, password)`` turns authentication on. Skips (fails in CI) where
    ``influxd`` is not installed."""
    started: list[InfluxDB1] = []

    def make(*, databases: Sequence[str] = ("wattline",),
             admin: tuple[str, str] | None = None) -> InfluxDB1:
        try:
            server = InfluxDB1(tmp_path_factory.mktemp("influxdb"), admin=admin)
        except ComponentMissing as err:
            missing_component(err)
        started.append(server)
        _track(request, server)
        server.start()
        for db in databases:
            server.create_database(db)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture()
def wattline_daemon(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Wattline]]:
    """Factory of daemons: ``wattline_daemon(["--mqtt-url", url, ...])`` starts one.

    It waits until /metrics answers (``ready_timeout_s=None`` returns at once, for
    tests that expect the daemon to exit), and stops every daemon after the test;
    a failing test shows each daemon's log.
    """
    started: list[Wattline] = []

    def make(
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        ready_timeout_s: float | None = 60.0,
        program: Sequence[str] | None = None,
    ) -> Wattline:
        daemon = Wattline(tmp_path_factory.mktemp("wattline"), args, env=env, program=program)
        started.append(daemon)
        _track(request, daemon)
        daemon.start()
        if ready_timeout_s is not None:
            daemon.wait_ready(ready_timeout_s)
        return daemon

    yield make
    for daemon in started:
        daemon.stop()


@pytest.fixture()
def store_dir(tmp_path: Path) -> Path:
    """An empty folder for a daemon's Parquet store."""
    path = tmp_path / "store"
    path.mkdir()
    return path
