"""The Node-RED flow of the bench's Node-RED peer, built as the JSON Node-RED loads.

One tab: an ``mqtt in`` node on the bench's broker (QoS 1 or 0, payloads parsed as
JSON) into a function node (``nodered_flow.js``) computing wattline's per-meter deltas
and 15m/1h/24h window sums per line; and two HTTP endpoints on Node-RED's own port:

- ``GET /wattline/counts``: ``{"messages", "readings", "ticks", "dropped"}``, the
  function's running totals, which tell the bench when a flood is done;
- ``GET /wattline/rows``: every emitted (line, tick) row, when built with
  ``keep_rows`` (for the correctness test; the bench keeps none, as the collector
  without sinks writes none).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib.resources import files
from typing import Any

from wattline.kernels.state import KernelConfig

KGCE_PER_KWH = 0.1229
"""The contract's electricity factor: what an energy meter's kWh count in kgce."""

_COUNTS_CODE = ('const s = flow.get("wattline");\n'
                'msg.payload = s === undefined ? {messages: 0, readings: 0, ticks: 0, dropped: {}}'
                ' : {messages: s.messages, readings: s.readings, ticks: s.ticks,'
                ' dropped: s.dropped};\nreturn msg;')
_ROWS_CODE = ('const s = flow.get("wattline");\n'
              'msg.payload = s === undefined ? [] : s.rows;\nreturn msg;')


def function_code(config: KernelConfig, rollover: Mapping[str, float] | None = None,
                  keep_rows: bool = False) -> str:
    """The function node's JavaScript: ``nodered_flow.js`` after its ``CONFIG`` line.

    ``rollover`` maps ``site/line/kind/meter`` to the value a meter's register wraps at.
    """
    settings = {"emitEveryMs": config.emit_every_ms, "windowsMs": list(config.windows_ms),
                "allowedLatenessMs": config.allowed_lateness_ms, "kgcePerKwh": KGCE_PER_KWH,
                "rollover": dict(rollover or {}), "keepRows": keep_rows}
    body = files("wattline.benchmarks").joinpath("nodered_flow.js").read_text()
    return f"const CONFIG = {json.dumps(settings)};\n{body}"


def build_flow(host: str, port: int, topic: str, qos: int, client_id: str,
               config: KernelConfig | None = None, rollover: Mapping[str, float] | None = None,
               keep_rows: bool = False) -> list[dict[str, Any]]:
    """The flow file's nodes: broker config, ``mqtt in`` -> function, and the endpoints."""
    config = config or KernelConfig()
    tab = "wattline-tab"

    def endpoint(name: str, code: str, y: int) -> list[dict[str, Any]]:
        return [
            {"id": f"http-{name}", "type": "http in", "z": tab, "name": name,
             "url": f"/wattline/{name}", "method": "get", "upload": False,
             "x": 100, "y": y, "wires": [[f"read-{name}"]]},
            {"id": f"read-{name}", "type": "function", "z": tab, "name": f"read {name}",
             "func": code, "outputs": 1, "x": 300, "y": y, "wires": [[f"reply-{name}"]]},
            {"id": f"reply-{name}", "type": "http response", "z": tab, "name": "",
             "statusCode": "", "headers": {"content-type": "application/json"},
             "x": 500, "y": y, "wires": []},
        ]

    return [
        {"id": tab, "type": "tab", "label": "wattline peer"},
        {"id": "broker", "type": "mqtt-broker", "name": "bench broker", "broker": host,
         "port": str(port), "clientid": client_id, "usetls": False, "protocolVersion": "4",
         "keepalive": "60", "cleansession": True, "autoConnect": True},
        {"id": "readings", "type": "mqtt in", "z": tab, "name": "readings", "topic": topic,
         "qos": str(qos), "datatype": "json", "broker": "broker", "nl": False, "rap": False,
         "inputs": 0, "x": 100, "y": 40, "wires": [["intensity"]]},
        {"id": "intensity", "type": "function", "z": tab, "name": "deltas and windows",
         "func": function_code(config, rollover, keep_rows), "outputs": 1,
         "x": 300, "y": 40, "wires": [[]]},
        *endpoint("counts", _COUNTS_CODE, 120),
        *endpoint("rows", _ROWS_CODE, 180),
    ]
