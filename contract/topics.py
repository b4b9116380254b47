"""MQTT topic layout: which meter a message is about (docs/formats.md, topics).

A ``TopicTemplate`` is compiled once from a layout such as
``{prefix}/{site}/{line}/{kind}/{meter}``: the topic is split on ``/`` and the
levels are picked by position, so no regex runs per message. A site, line or
meter name is any text of 1 to 64 characters without a control character (C0,
DEL or C1), without white space at either end, and other than ``.`` and ``..``
(``valid_name``): ``Plant A``, ``EAF 1`` and ``Öfen-3`` are names as gateways
write them. Names are kept exactly; every writer escapes them in its own way
(line protocol, folder names, label values), so a name never needs to be safe
by itself. Parsed topics are cached (topics repeat every few seconds).
Only valid topics are cached, and a valid topic is short (four names of at most
64 characters plus the fixed levels), so the bounded cache (16384 by default,
oldest forgotten first) stays within a few MB however many junk topics arrive.

Subscriptions: ``subscriptions()`` returns two filters, ``{prefix}/+/+/+/+`` and
``{prefix}/+/+/+/+/meta``, rather than ``{prefix}/#``, so the broker itself
keeps deeper or shallower topics away from the collector.

Lifecycle: build one ``TopicTemplate`` at start-up; call ``parse`` from one
thread (the pipeline's); the cache is not locked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from wattline.contract.errors import ConfigError, TopicError

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_TEMPLATE",
    "KINDS",
    "META_LEVEL",
    "NAME_MAX_CHARS",
    "MeterTopic",
    "TopicTemplate",
    "subscriptions",
    "valid_name",
]

DEFAULT_PREFIX = "factory"
DEFAULT_TEMPLATE = "{prefix}/{site}/{line}/{kind}/{meter}"
KINDS = frozenset({"energy", "production"})
META_LEVEL = "meta"

_FIELDS = ("site", "line", "kind", "meter")
NAME_MAX_CHARS = 64
_NAME = re.compile(rf"[^\x00-\x1f\x7f-\x9f\ud800-\udfff]{{1,{NAME_MAX_CHARS}}}")
"""1-64 characters, none of them a control character (C0, DEL, C1) or a lone surrogate
(which no UTF-8 text holds)."""
_DOTS = frozenset({".", ".."})
_FIXED_LEVEL_FORBIDDEN = frozenset("+#{}\x00")


@dataclass(frozen=True, slots=True)
class MeterTopic:
    """The meter a topic names, and whether the message describes it (``meta``) or reads it."""

    site: str
    line: str
    kind: str
    meter: str
    is_meta: bool = False


class TopicTemplate:
    """A compiled topic layout: parses received topics and builds subscription filters.

    Args:
        template: levels separated by ``/``; ``{site}``, ``{line}``, ``{kind}`` and
            ``{meter}`` each fill one whole level exactly once, ``{prefix}`` is
            replaced by ``prefix``, any other level must match literally.
        prefix: the value of ``{prefix}`` (the CLI's ``--topic-prefix``); it may
            span several levels (``plant/north``).
        cache_size: how many distinct valid topics to remember; the oldest is
            forgotten first.

    Raises:
        ConfigError: the template or prefix cannot describe a meter topic.
    """

    def __init__(
        self,
        template: str = DEFAULT_TEMPLATE,
        *,
        prefix: str = DEFAULT_PREFIX,
        cache_size: int = 16_384,
    ) -> None:
        _check_prefix(prefix)
        if cache_size < 1:
            raise ConfigError("topic_cache_size", f"must be at least 1, got {cache_size}")
        self.template = template
        self.prefix = prefix
        levels = template.replace("{prefix}", prefix).split("/")
        positions: dict[str, int] = {}
        fixed: list[tuple[int, str]] = []
        for i, level in enumerate(levels):
            field = level[1:-1] if level.startswith("{") and level.endswith("}") else None
            if field in _FIELDS:
                if field in positions:
                    raise ConfigError(
                        "topic_template", f"{{{field}}} appears twice in {template!r}"
                    )
                positions[field] = i
            elif not level or _FIXED_LEVEL_FORBIDDEN.intersection(level):
                raise ConfigError(
                    "topic_template",
                    f"level {level!r} of {template!r} is neither a field nor a plain name",
                    suggestion="fields are {prefix}, {site}, {line}, {kind}, {meter}",
                )
            else:
                fixed.append((i, level))
        missing = [f for f in _FIELDS if f not in positions]
        if missing:
            raise ConfigError(
                "topic_template",
                f"{template!r} lacks {', '.join('{' + f + '}' for f in missing)}",
            )
        self._levels = tuple(levels)
        self._n_levels = len(levels)
        self._fixed = tuple(fixed)
        self._site_at = positions["site"]
        self._line_at = positions["line"]
        self._kind_at = positions["kind"]
        self._meter_at = positions["meter"]
        self._cache: dict[str, MeterTopic] = {}
        self._cache_size = cache_size

    def parse(self, topic: str) -> MeterTopic:
        """The meter ``topic`` names; raises ``TopicError`` rather than return a dubious name."""
        hit = self._cache.get(topic)
        if hit is not None:
            return hit
        parsed = self._parse(topic)
        cache = self._cache
        if len(cache) >= self._cache_size:
            del cache[next(iter(cache))]
        cache[topic] = parsed
        return parsed

    def _parse(self, topic: str) -> MeterTopic:
        levels = topic.split("/")
        n = len(levels)
        if n == self._n_levels:
            is_meta = False
        elif n == self._n_levels + 1 and levels[-1] == META_LEVEL:
            is_meta = True
        else:
            raise TopicError(
                "topic_layout", topic, f"{n} levels, expected {self._n_levels} (+ /meta)"
            )
        for i, expected in self._fixed:
            if levels[i] != expected:
                raise TopicError("topic_layout", topic, f"level {i + 1} is not {expected!r}")
        kind = levels[self._kind_at]
        if kind not in KINDS:
            raise TopicError("topic_kind", topic, f"kind {kind[:64]!r}")
        site = levels[self._site_at]
        line = levels[self._line_at]
        meter = levels[self._meter_at]
        for what, name in (("site", site), ("line", line), ("meter", meter)):
            if not valid_name(name):
                raise TopicError("topic_name", topic, f"{what} {name[:80]!r}")
        return MeterTopic(site, line, kind, meter, is_meta)

    def topic(self, site: str, line: str, kind: str, meter: str, *, meta: bool = False) -> str:
        """The topic a gateway publishes ``meter``'s readings (or its ``meta``) to."""
        levels = list(self._levels)
        levels[self._site_at] = site
        levels[self._line_at] = line
        levels[self._kind_at] = kind
        levels[self._meter_at] = meter
        if meta:
            levels.append(META_LEVEL)
        return "/".join(levels)

    def alerts_topic(self, site: str, line: str) -> str:
        """Where a line's active alerts are published, retained: ``{prefix}/{site}/{line}/alerts``
        (contract: the prefix, site and line, then ``alerts``)."""
        return f"{self.prefix}/{site}/{line}/alerts"

    def subscriptions(self) -> list[str]:
        """MQTT filters for readings and meta: every field level becomes ``+``."""
        readings = self.topic("+", "+", "+", "+")
        return [readings, f"{readings}/{META_LEVEL}"]


def subscriptions(template: TopicTemplate | str = DEFAULT_PREFIX) -> list[str]:
    """MQTT subscription filters for a template, or for the default layout under a prefix.

    A plain string is taken as the prefix (what ``--topic-prefix`` gives), so
    ``subscriptions("factory")`` is ``["factory/+/+/+/+", "factory/+/+/+/+/meta"]``.
    """
    if isinstance(template, str):
        template = TopicTemplate(prefix=template)
    return template.subscriptions()


def valid_name(name: str) -> bool:
    """Whether ``name`` may be a site, line or meter (or a Sparkplug B group, edge node or
    device id): 1-64 characters, no control character (C0 ``U+0000``-``U+001F``, DEL
    ``U+007F``, C1 ``U+0080``-``U+009F``), no white space first or last (``str.isspace``,
    so also U+00A0 or U+3000), and neither ``.`` nor ``..`` (docs/formats.md, topics).
    A topic level never holds ``/``, ``+`` or ``#``; the rule itself does not forbid
    them, and no writer needs it to."""
    return (_NAME.fullmatch(name) is not None and not name[0].isspace()
            and not name[-1].isspace() and name not in _DOTS)


def _check_prefix(prefix: str) -> None:
    if not prefix:
        raise ConfigError(
            "topic_prefix", "must not be empty", suggestion="the default is 'factory'"
        )
    for level in prefix.split("/"):
        if not level or _FIXED_LEVEL_FORBIDDEN.intersection(level):
            raise ConfigError(
                "topic_prefix",
                f"{prefix!r} must be plain topic levels without empty levels, + # {{ }} or NUL",
                suggestion="for example 'factory' or 'plant/north'",
            )
