"""The MQTT section's rules that need more than a type: the client id's ``{host}``, the
lines a collector subscribes to, and when a shared subscription is safe.

- ``client_id`` may hold ``{host}``, replaced at load by this machine's host name, so
  one config file serves every gateway and each still has a session of its own
  (``wattline-{host}`` -> ``wattline-gw-north-3``).
- ``subscribe_lines`` is a comma-separated list of ``site/line``, each part a name or
  ``+`` (every site, or every line of the site); without it every line is subscribed.
- ``mqtt_share_group`` makes the broker hand each message to one member of the group.
  One line's meters would then be split between collectors, and each would write an
  energy_intensity of its own, made from part of the line's energy and production, for
  the same series. So a group is accepted only when ``subscribe_lines`` names every
  site and line literally (no ``+``): each line is then the business of the collectors
  that list it, and giving each line to one collector only is the operator's part.
"""

from __future__ import annotations

import socket

from wattline.contract.errors import ConfigError
from wattline.contract.topics import valid_name

__all__ = ["HOST_FIELD", "check_share_group", "expand_client_id", "parse_subscribe_lines"]

HOST_FIELD = "{host}"
ANY = "+"


def expand_client_id(client_id: str, host: str | None = None) -> str:
    """``client_id`` with ``{host}`` replaced by ``host`` (this machine's host name)."""
    if HOST_FIELD not in client_id:
        return client_id
    return client_id.replace(HOST_FIELD, host if host is not None else socket.gethostname())


def parse_subscribe_lines(text: str | None) -> tuple[tuple[str, str], ...] | None:
    """``"plant-a/eaf-1, plant-b/+"`` as ``(("plant-a", "eaf-1"), ("plant-b", "+"))``;
    ``None`` (every line) when not given. ``ConfigError`` names the entry that is wrong."""
    if text is None:
        return None
    lines = []
    for entry in (e.strip() for e in text.split(",")):
        parts = entry.split("/")
        if len(parts) != 2 or not all(p == ANY or _literal(p) for p in parts):
            raise ConfigError("subscribe_lines", f"{entry!r} is not site/line",
                              suggestion="e.g. plant-a/eaf-1,plant-a/eaf-2 or plant-a/+; "
                              "names as the topics spell them, + for any")
        pair = (parts[0], parts[1])
        if pair not in lines:
            lines.append(pair)
    return tuple(lines)


def _literal(level: str) -> bool:
    """A name that may be a level of a subscription filter (no wildcard in it)."""
    return valid_name(level) and "+" not in level and "#" not in level


def check_share_group(group: str | None, lines: tuple[tuple[str, str], ...] | None) -> None:
    """Refuse a share group unless ``lines`` names each site and line literally."""
    if group is None:
        return
    if not lines or any(ANY in pair for pair in lines):
        raise ConfigError(
            "mqtt_share_group",
            "a shared subscription hands each message to any one collector of the group, "
            "so one line's meters are split and each collector writes its own partial "
            "energy_intensity for that line",
            suggestion="leave mqtt_share_group unset, or give each collector "
            "subscribe_lines naming its own sites and lines without +, each line in one "
            "collector only")
