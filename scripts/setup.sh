#!/usr/bin/env bash
# Set up everything wattline's demo and tests need, and say what it does.
#
#   1. Debian packages the tests start as real components (mosquitto, victoria-metrics,
#      prometheus, promtool, prometheus-alertmanager, influxdb) and chromium (the browser the
#      energy report's page is opened in), and nodejs and npm (the Node-RED peer of `wattline
#      bench ingest --peer node-red`, installed from npm into ~/.cache/wattline/node-red on
#      first use): installed with apt-get when run as root and any is
#      missing; otherwise the command to run is printed and the tests that
#      need them skip (CI runs as root, so there they are always installed).
#   2. A virtual environment in .venv (Python >= 3.11) with wattline installed editable,
#      with its test extras; reinstalled only when pyproject.toml changed. For the tests
#      only: pysparkplug, a second Sparkplug B implementation to check wattline's against
#      (in .venv without its dependencies, for its payload classes; and in a venv of its
#      own, .venv/peers/pysparkplug, with the old paho-mqtt its MQTT client needs). wattline
#      itself does not need it: `pip install wattline` is enough for --sparkplug.
#   3. `wattline warmup`: every kernel compiled into Numba's cache (a second when it is warm).
#
# Safe to run again and again; `make setup`, `make test` and `make demo` call it.
set -euo pipefail

cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=.venv
APT_PACKAGES=(mosquitto mosquitto-clients victoria-metrics prometheus prometheus-alertmanager influxdb nats-server chromium nodejs npm)
PROGRAMS=(mosquitto victoria-metrics prometheus promtool prometheus-alertmanager influxd chromium node npm)

say() { printf 'setup: %s\n' "$*"; }

have_program() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/local/sbin/$1" ]
}

# --- 1. Python and Debian packages ---------------------------------------------------------
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    say "error: $PYTHON not found; install Python 3.11 or newer (or set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    say "error: wattline needs Python >= 3.11, but $PYTHON is $("$PYTHON" -V 2>&1);" \
        "set PYTHON=/path/to/python3.11 (or newer)" >&2
    exit 1
fi

missing=()
for program in "${PROGRAMS[@]}"; do
    have_program "$program" || missing+=("$program")
done
extra_packages=()
if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    extra_packages+=(python3-venv)
fi

if [ ${#missing[@]} -eq 0 ] && [ ${#extra_packages[@]} -eq 0 ]; then
    say "system programs present: ${PROGRAMS[*]}"
elif [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "missing: $(echo ${missing[*]:-} ${extra_packages[*]:-}); installing with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" "${extra_packages[@]}" >/dev/null
    say "installed $(echo ${APT_PACKAGES[*]} ${extra_packages[*]:-}) (the tests start their own instances on free ports)"
else
    say "missing: $(echo ${missing[*]:-} ${extra_packages[*]:-})"
    say "to install them, run:"
    say "    sudo apt-get update && sudo apt-get install -y --no-install-recommends $(echo ${APT_PACKAGES[*]} ${extra_packages[*]:-})"
    say "until then the tests that need them are skipped (with that reason); the demo does not need them"
    if [ ${#extra_packages[@]} -gt 0 ]; then
        say "error: $PYTHON cannot create virtual environments without python3-venv" >&2
        exit 1
    fi
fi

# --- 2. Virtual environment --------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV with $("$PYTHON" -V 2>&1)"
    "$PYTHON" -m venv "$VENV"
elif ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    say "error: $VENV holds $("$VENV/bin/python" -V 2>&1), wattline needs >= 3.11: remove $VENV and rerun" >&2
    exit 1
fi

stamp="$VENV/.wattline-installed"
SPARKPLUG="pysparkplug==0.6.1"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] \
        || ! "$VENV/bin/python" -c 'import wattline.ingest, pysparkplug' 2>/dev/null; then
    say "installing wattline (editable) with its test extras into $VENV"
    # pip here warns "Location ... is ignored" for configured indexes it skips: harmless noise.
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test]' 2>&1 \
        | { grep -v -E 'Location .* is ignored|^\s*$' || true; }
    # Test-only: pysparkplug's payload classes, to compare payloads and decoding speed
    # with. It pins paho-mqtt<2 for its MQTT client, which these tests do not use here,
    # so it goes in without its dependencies (protobuf is already there).
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
        "$SPARKPLUG" 2>&1 | { grep -v -E 'Location .* is ignored|^\s*$' || true; }
    touch "$stamp"
else
    say "$VENV is up to date with pyproject.toml"
fi

# Test-only: pysparkplug with its own dependencies (paho-mqtt 1.x), the edge node of the
# Sparkplug B interoperability test (tests/e2e/test_sparkplug_interop.py).
PEER="$VENV/peers/pysparkplug"
if ! "$PEER/bin/python" -c 'import pysparkplug' 2>/dev/null; then
    say "creating $PEER: $SPARKPLUG and its paho-mqtt 1.x, for the Sparkplug B interop test"
    "$PYTHON" -m venv --clear "$PEER"
    "$PEER/bin/python" -m pip install --quiet --disable-pip-version-check "$SPARKPLUG" 2>&1 \
        | { grep -v -E 'Location .* is ignored|^\s*$' || true; }
fi
# The kernels into Numba's cache now (`wattline warmup`), not in the first test or demo
# that needs them: tens of seconds the first time on a small machine, a second after.
say "loading or compiling the kernels into Numba's cache (wattline warmup) ..."
"$VENV/bin/wattline" warmup | sed 's/^/setup: /'
say "ready: $VENV/bin/wattline"
