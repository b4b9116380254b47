"""The config file's ``[rename]`` table at work: a gateway's names -> wattline's names.

A gateway names a meter (site, line, kind, meter) the way the plant's integrator set
it up (``Sparkplug B Devices``, ``EAF 1``, ``Zähler 7``). The table gives any site,
line or meter another name, and every stage after decoding (the meter registry,
kernels, store, InfluxDB, metrics, logs, the ``[meters]`` and ``[lines]`` tables) sees
only the new one. Keys name the source as the gateway does: a line by its gateway's
site and line, a meter by all four, so one entry does not depend on another.

Renaming must not merge two sources into one name, or one meter's readings would
become another's deltas. ``parse_renames`` refuses two entries giving one name in one
place; and a name an entry gives belongs to that entry's source alone: a gateway
publishing under that name itself (at the same level, under the same site or line)
is refused (``name_taken``), whichever came first.

Lifecycle: built once at start-up from validated settings (a reload does not change
it); ``meter`` is called from the pipeline thread only, once per new topic, and per
meter of each Sparkplug B or mapped message (a few dictionary lookups).
"""

from __future__ import annotations

from collections.abc import Mapping

from wattline.ingest.decode.registry import MeterName

__all__ = ["Renames"]


class Renames:
    """The ``[rename]`` table (validated by ``config_tables.parse_renames``), split by level."""

    def __init__(self, table: Mapping[str, str]) -> None:
        self._sites: dict[str, str] = {}
        self._lines: dict[tuple[str, str], str] = {}
        self._meters: dict[tuple[str, str, str, str], str] = {}
        # The names entries give, per place: a source publishing one of them itself is
        # refused. Lines and meters by their gateway's (unrenamed) site, line and kind.
        self._given_sites: set[str] = set()
        self._given_lines: dict[str, set[str]] = {}
        self._given_meters: dict[tuple[str, str, str], set[str]] = {}
        for key, new in table.items():
            parts = tuple(key.split("/"))
            if len(parts) == 1:
                self._sites[parts[0]] = new
                self._given_sites.add(new)
            elif len(parts) == 2:
                self._lines[(parts[0], parts[1])] = new
                self._given_lines.setdefault(parts[0], set()).add(new)
            else:
                site, line, kind, meter = parts
                self._meters[(site, line, kind, meter)] = new
                self._given_meters.setdefault((site, line, kind), set()).add(new)

    def __bool__(self) -> bool:
        return bool(self._sites or self._lines or self._meters)

    def meter(self, site: str, line: str, kind: str, meter: str) -> MeterName | None:
        """The meter as wattline names it; ``None`` when one of its names is one that an
        entry gives another source (``taken``)."""
        new_site = self._sites.get(site)
        if new_site is None:
            if site in self._given_sites:
                return None
            new_site = site
        new_line = self._lines.get((site, line))
        if new_line is None:
            if line in self._given_lines.get(site, ()):
                return None
            new_line = line
        new_meter = self._meters.get((site, line, kind, meter))
        if new_meter is None:
            if meter in self._given_meters.get((site, line, kind), ()):
                return None
            new_meter = meter
        return new_site, new_line, kind, new_meter

    def taken(self, site: str, line: str, kind: str, meter: str) -> str:
        """Why ``meter`` returned ``None``: which of the names is another's, for the log."""
        if site not in self._sites and site in self._given_sites:
            return f"site {site!r} is the name [rename] gives another site"
        if (site, line) not in self._lines and line in self._given_lines.get(site, ()):
            return f"line {line!r} is the name [rename] gives another line of {site!r}"
        return f"meter {meter!r} is the name [rename] gives another {kind} meter of {line!r}"
