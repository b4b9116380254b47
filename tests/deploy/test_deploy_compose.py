"""deploy/compose: the central stack's compose file, its configs and the daemon's image.

There is no Docker daemon in the test environment, so the compose file is read as
YAML and checked for what would break it at `docker compose up`: missing mounted
files, flags `wattline run` does not take, a scrape target that is not the collector,
settings that disagree between services. The pieces that run without Docker are run
for real: Mosquitto with the stack's config, promtool on its Prometheus config, the
Numba warm-up of the image, and the daemon with the compose command and the image's
health check.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from click.testing import CliRunner

from tests.conftest import missing_component
from tests.processes import ComponentMissing, Mosquitto, find_binary, free_port
from wattline.ingest.app.cli import main

REPO = Path(__file__).resolve().parents[2]
COMPOSE_DIR = REPO / "deploy" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
DOCKERFILE = COMPOSE_DIR / "Dockerfile"
GRAFANA_DIR = REPO / "deploy" / "grafana"


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def service(name: str) -> dict[str, Any]:
    return compose()["services"][name]


def option(command: list[str], flag: str) -> str:
    """The value after ``flag`` in a command list."""
    assert flag in command, f"{flag} missing from {command}"
    return command[command.index(flag) + 1]


def default_of(value: str) -> str:
    """A compose value with its ${VAR:-default} interpolations replaced by the defaults."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def bind_mounts(svc: dict[str, Any]) -> list[tuple[Path, str]]:
    """(host path, container path) of a service's bind mounts (short syntax)."""
    mounts = []
    for volume in svc.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append(((COMPOSE_DIR / source).resolve(), target))
    return mounts


def host_path(svc: dict[str, Any], inside: str) -> Path | None:
    """The host file or folder behind a path inside a service's container, if mounted."""
    for host, target in bind_mounts(svc):
        if inside == target:
            return host
        if Path(target) in Path(inside).parents:
            return host / Path(inside).relative_to(target)
    return None


def container_port(svc: dict[str, Any]) -> set[int]:
    return {int(str(p).split(":")[-1].split("/")[0]) for p in svc.get("ports", [])}


def yaml_strings(node: Any) -> list[str]:
    """Every string value in a parsed YAML document."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in yaml_strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in yaml_strings(value)]
    return []


def run_flags() -> set[str]:
    """Every option `wattline run --help` lists."""
    result = CliRunner().invoke(main, ["run", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", result.output))


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def runtime_stage() -> list[tuple[str, str]]:
    """The instructions of the Dockerfile's last stage: what the image is."""
    instructions = dockerfile_instructions()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def image_env() -> dict[str, str]:
    env = {}
    for word, rest in runtime_stage():
        if word == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
    return env


def healthcheck_command() -> list[str]:
    (rest,) = [rest for word, rest in runtime_stage() if word == "HEALTHCHECK"]
    return json.loads(rest[rest.index("CMD") + 3:])


# --- the compose file -----------------------------------------------------------------------


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    """`docker compose config`, where the compose plugin is installed."""
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"],
                                        capture_output=True).returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    copy = tmp_path / "deploy"
    shutil.copytree(REPO / "deploy", copy)
    for name in compose()["secrets"]:
        (copy / "compose" / "secrets" / name).write_text("not-a-secret\n")
    done = subprocess.run([docker, "compose", "-f", str(copy / "compose" / "compose.yaml"),
                           "config", "--quiet"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_stack_has_the_central_services() -> None:
    assert set(compose()["services"]) == {
        "mosquitto", "influxdb", "prometheus", "alertmanager", "grafana", "wattline"
    }


def test_every_mounted_host_path_exists_in_the_repository() -> None:
    for name, svc in compose()["services"].items():
        for host, _ in bind_mounts(svc):
            assert host.exists(), f"{name} mounts {host}, which does not exist"
            assert REPO in host.parents, f"{name} mounts {host}, outside the repository"


def test_secret_files_have_a_folder_that_keeps_them_out_of_git() -> None:
    secrets = compose()["secrets"]
    assert secrets
    for spec in secrets.values():
        folder = (COMPOSE_DIR / spec["file"]).parent
        assert folder.is_dir()
        assert "*" in (folder / ".gitignore").read_text().split()


def test_the_image_is_built_from_the_repository_with_the_dockerfile() -> None:
    build = service("wattline")["build"]
    context = (COMPOSE_DIR / build["context"]).resolve()
    assert context == REPO
    assert (context / build["dockerfile"]).resolve() == DOCKERFILE


def test_no_two_services_publish_the_same_host_port() -> None:
    host_ports = [str(p).split(":")[0] for svc in compose()["services"].values()
                  for p in svc.get("ports", [])]
    assert len(host_ports) == len(set(host_ports)), host_ports


def test_wattline_command_uses_only_flags_that_run_accepts() -> None:
    command = service("wattline")["command"]
    assert command[0] == "run"
    used = {arg for arg in command if arg.startswith("--")}
    assert used, "the compose command passes no flags"
    assert used <= run_flags(), f"not options of `wattline run`: {sorted(used - run_flags())}"


def test_wattline_reads_the_influxdb_token_from_a_compose_secret() -> None:
    svc = service("wattline")
    command = svc["command"]
    token_file = option(command, "--influx-token-file")
    assert token_file.startswith("/run/secrets/")
    assert token_file.removeprefix("/run/secrets/") in svc["secrets"]
    assert "--influx-token" not in command
    assert not any("TOKEN" in key for key in svc.get("environment", {}))


def test_wattline_loses_nothing_across_restarts() -> None:
    """A state folder on the volume, a persistent session under a fixed client id (not
    {host}: a container's host name changes when it is made anew), no share group."""
    command = service("wattline")["command"]
    assert "--persistent-session" in command
    assert option(command, "--state-dir").startswith("/var/lib/wattline/")
    client_id = option(command, "--client-id")
    assert client_id and "{host}" not in client_id
    assert "--mqtt-share-group" not in command and "--clean-session" not in command


def test_wattline_talks_to_the_stack_services_on_their_ports() -> None:
    command = service("wattline")["command"]
    broker = urlsplit(option(command, "--mqtt-url"))
    assert broker.hostname == "mosquitto"
    assert broker.port in container_port(service("mosquitto"))
    listener = re.search(r"^listener\s+(\d+)", (COMPOSE_DIR / "mosquitto.conf").read_text(),
                         re.M)
    assert listener and int(listener.group(1)) == broker.port
    influx = urlsplit(option(command, "--influx-url"))
    assert influx.hostname == "influxdb"
    assert influx.port in container_port(service("influxdb"))


def test_prometheus_scrapes_the_wattline_service_on_its_metrics_port() -> None:
    command = service("wattline")["command"]
    port = int(option(command, "--metrics-port"))
    assert option(command, "--metrics-host") == "0.0.0.0", "other containers must reach /metrics"
    assert port in container_port(service("wattline"))
    assert image_env()["WATTLINE_METRICS_PORT"] == str(port), "the health check port differs"
    config = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "wattline"]
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == [f"wattline:{port}"]
    alertmanagers = [t for am in config["alerting"]["alertmanagers"]
                     for sc in am["static_configs"] for t in sc["targets"]]
    host, am_port = alertmanagers[0].split(":")
    assert host == "alertmanager" and int(am_port) in container_port(service("alertmanager"))


def test_prometheus_and_alertmanager_load_configs_that_are_mounted() -> None:
    for name in ("prometheus", "alertmanager"):
        svc = service(name)
        (config,) = [arg.removeprefix("--config.file=") for arg in svc["command"]
                     if arg.startswith("--config.file=")]
        host = host_path(svc, config)
        assert host is not None and host.is_file(), f"{name} loads {config}: nothing mounted"


def test_prometheus_finds_the_rule_files_in_its_container() -> None:
    svc = service("prometheus")
    (config,) = [arg.removeprefix("--config.file=") for arg in svc["command"]
                 if arg.startswith("--config.file=")]
    rule_files = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())["rule_files"]
    assert rule_files
    for rules in rule_files:
        inside = os.path.normpath(os.path.join(os.path.dirname(config), rules))
        host = host_path(svc, inside)
        assert host is not None and host.is_file(), f"{inside} is not mounted"
        assert host == REPO / "deploy" / "prometheus" / "wattline.rules.yml"


def test_stack_prometheus_config_is_valid_for_promtool() -> None:
    try:
        promtool = find_binary("promtool")
    except ComponentMissing as err:
        missing_component(err)
    done = subprocess.run([promtool, "check", "config", "prometheus.yml"], cwd=COMPOSE_DIR,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "wattline.rules.yml" in done.stdout + done.stderr, "the rules were not loaded"


def test_grafana_gets_every_setting_its_provisioning_reads() -> None:
    svc = service("grafana")
    provided = set(svc["environment"])
    provided |= set(re.findall(r"export (\w+)=", " ".join(svc.get("entrypoint", []))))
    wanted: set[str] = set()
    for path in (GRAFANA_DIR / "provisioning").rglob("*.yml"):
        for value in yaml_strings(yaml.safe_load(path.read_text())):
            wanted |= set(re.findall(r"\$\{?(\w+)\}?", value))
    assert wanted, "the provisioning reads no settings from the environment"
    assert wanted <= provided, f"grafana is not given {sorted(wanted - provided)}"
    env = svc["environment"]
    assert urlsplit(env["INFLUX_URL"]).hostname == "influxdb"
    assert urlsplit(env["PROMETHEUS_URL"]).port in container_port(service("prometheus"))


def test_grafana_loads_the_dashboards_from_where_they_are_mounted() -> None:
    svc = service("grafana")
    providers = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "wattline.yml").read_text()
    )["providers"]
    for provider in providers:
        assert host_path(svc, provider["options"]["path"]) == GRAFANA_DIR / "dashboards"
    for kind in ("datasources", "dashboards"):
        assert host_path(svc, f"/etc/grafana/provisioning/{kind}") == (
            GRAFANA_DIR / "provisioning" / kind
        )
    home = host_path(svc, svc["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert home is not None and home.is_file()


def test_influxdb_bucket_and_org_are_the_ones_wattline_and_grafana_use() -> None:
    influx = service("influxdb")["environment"]
    command = service("wattline")["command"]
    grafana = service("grafana")["environment"]
    bucket = default_of(influx["DOCKER_INFLUXDB_INIT_BUCKET"])
    org = default_of(influx["DOCKER_INFLUXDB_INIT_ORG"])
    assert default_of(option(command, "--influx-bucket")) == bucket
    assert default_of(grafana["INFLUX_BUCKET"]) == bucket
    assert default_of(option(command, "--influx-org")) == org
    token = influx["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN_FILE"].removeprefix("/run/secrets/")
    assert token in service("influxdb")["secrets"]
    assert option(command, "--influx-token-file").removeprefix("/run/secrets/") == token


def test_influxdb_init_script_maps_the_bucket_for_influxql(tmp_path: Path) -> None:
    """The script runs with a stand-in `influx` that records its arguments."""
    fake = tmp_path / "bin" / "influx"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/args\n')
    fake.chmod(0o755)
    script = COMPOSE_DIR / "influxdb-init" / "10-dbrp.sh"
    assert os.access(script, os.X_OK), "the influxdb image runs only executable scripts"
    env = {
        "PATH": f"{fake.parent}:{os.environ['PATH']}",
        "DOCKER_INFLUXDB_INIT_ORG": "plant-x",
        "DOCKER_INFLUXDB_INIT_BUCKET": "energy-x",
        "DOCKER_INFLUXDB_INIT_BUCKET_ID": "0123456789abcdef",
    }
    done = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    args = (tmp_path / "args").read_text().split("\n")
    assert args[:3] == ["v1", "dbrp", "create"]
    assert option(args, "--db") == "energy-x"
    assert option(args, "--bucket-id") == "0123456789abcdef"
    assert option(args, "--rp") == "autogen"
    assert option(args, "--org") == "plant-x"
    datasources = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "wattline.yml").read_text()
    )["datasources"]
    (influxql,) = [d for d in datasources if d["jsonData"].get("version") == "InfluxQL"]
    assert influxql["jsonData"]["dbName"] == "${INFLUX_BUCKET}"


class StackMosquitto(Mosquitto):
    """Mosquitto with the stack's mosquitto.conf, moved to a free port and a temporary
    database folder; every other line is the stack's own."""

    def _config(self) -> str:
        text = (COMPOSE_DIR / "mosquitto.conf").read_text()
        text, listeners = re.subn(r"^listener\s+\d+\s*$", f"listener {self.port} 127.0.0.1",
                                  text, flags=re.M)
        text, locations = re.subn(r"^persistence_location\s+.*$",
                                  f"persistence_location {self._database_dir()}/", text,
                                  flags=re.M)
        assert listeners == 1 and locations == 1
        return text


@pytest.mark.e2e
def test_stack_mosquitto_config_starts_a_real_broker(tmp_path: Path) -> None:
    try:
        broker = StackMosquitto(tmp_path / "mosquitto")
    except ComponentMissing as err:
        missing_component(err)
    broker.start()
    try:
        assert broker.running
    finally:
        broker.stop()


# --- the Dockerfile -------------------------------------------------------------------------


def test_image_is_slim_python_311_and_runs_as_an_unprivileged_user() -> None:
    stage = runtime_stage()
    assert stage[0] == ("FROM", "python:3.11-slim")
    users = [rest for word, rest in stage if word == "USER"]
    assert users and users[-1] not in {"root", "0"}
    created = " ".join(rest for word, rest in stage if word == "RUN")
    assert re.search(rf"useradd\b.*\b{re.escape(users[-1])}\b", created)


def test_image_installs_the_package_with_pip() -> None:
    runs = [rest for word, rest in dockerfile_instructions() if word == "RUN"]
    assert any(re.search(r"\bpip install \.(\s|$)", r) for r in runs)


def test_image_warms_the_numba_cache_as_the_runtime_user_in_a_folder_it_owns() -> None:
    stage = runtime_stage()
    cache = image_env()["NUMBA_CACHE_DIR"]
    user = [rest for word, rest in stage if word == "USER"][-1]
    made = [rest for word, rest in stage if word == "RUN" and cache in rest]
    assert made and re.search(rf"install -d -o {user}\b", made[0])
    warm = [i for i, (word, rest) in enumerate(stage)
            if word == "RUN" and rest.strip() == "wattline warmup"]
    became_user = [i for i, (word, rest) in enumerate(stage) if word == "USER" and rest == user]
    assert warm and became_user and became_user[0] < warm[0]


def test_image_health_check_asks_for_metrics() -> None:
    command = healthcheck_command()
    assert "/metrics" in " ".join(command)


def test_build_context_filter_keeps_what_the_dockerfile_copies() -> None:
    keep = {line[1:].rstrip("/") for line in
            (COMPOSE_DIR / "Dockerfile.dockerignore").read_text().splitlines()
            if line.startswith("!")}
    for word, rest in dockerfile_instructions():
        if word == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"
                assert source.rstrip("/") in keep, f"COPY {source}: left out of the context"


def test_warmup_leaves_every_kernel_of_the_daemon_in_the_cache(tmp_path: Path) -> None:
    """`wattline warmup` as the image runs it (its CPU name, a cache of its own): every
    kernel the daemon calls, batch lines' too, compiled once into the cache."""
    cpu = re.search(r"ARG NUMBA_CPU_NAME=(\S+)", DOCKERFILE.read_text())
    assert cpu
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env.update({"NUMBA_CACHE_DIR": str(tmp_path), "NUMBA_CPU_NAME": cpu.group(1)})
    done = subprocess.run([sys.executable, "-m", "wattline.ingest", "warmup"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"Numba cache: {tmp_path}" in done.stdout
    index = {p.name.split("-")[0] for p in tmp_path.rglob("*.nbi")}
    assert {"intensity._advance", "intensity._ticks_bound", "scanner._scan",
            "periods._advance_periods", "alerts._evaluate", "alerts._evaluate_batches",
            "batches._close"} <= index
    # The large kernels compile one specialisation each (a literal flag at a call site
    # would make another, seconds of a cold start apiece); small helpers such as
    # periods._unroll_rings take arrays of several dtypes and may have more.
    compiled = [p.name.split("-")[0] for p in tmp_path.rglob("*.nbc")]
    for name in ("intensity._advance", "scanner._scan", "scanner._payload", "scanner._object",
                 "scanner._array", "lexer.scan_number", "periods._advance_periods",
                 "periods._walk", "periods._emit", "alerts._evaluate"):
        assert compiled.count(name) == 1, name


@pytest.mark.e2e
def test_compose_command_runs_a_daemon_that_passes_the_image_health_check(
    tmp_path: Path, mosquitto: Mosquitto, victoria: Any, wattline_daemon: Any
) -> None:
    """The wattline service's command, pointed at local components instead of the stack's
    containers, starts a daemon; the image's health check passes against it and fails
    where nothing answers."""
    token = tmp_path / "influx_token"
    token.write_text("test-token\n")
    replace = {
        "mqtt://mosquitto:1883": mosquitto.url,
        "http://influxdb:8086": victoria.url,
        "/run/secrets/influx_token": str(token),
        "/var/lib/wattline": str(tmp_path / "data"),
    }
    args = []
    for arg in service("wattline")["command"][1:]:
        arg = default_of(arg)
        for old, new in replace.items():
            arg = arg.replace(old, new)
        args.append(arg)
    port = free_port()
    args[args.index("--metrics-port") + 1] = str(port)
    daemon = wattline_daemon(args)
    assert daemon.metric("wattline_mqtt_connected") == 1.0

    def health(at: int) -> int:
        env = {**os.environ, "WATTLINE_METRICS_PORT": str(at)}
        command = [sys.executable if c == "python" else c for c in healthcheck_command()]
        return subprocess.run(command, env=env, capture_output=True, timeout=30).returncode

    assert health(daemon.metrics_port) == 0
    assert health(free_port()) != 0
