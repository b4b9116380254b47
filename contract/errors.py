"""wattline's exceptions: one base, a few specific kinds with structured fields.

Callers branch on the fields (``reason`` feeds a metric label, ``key`` names the
setting), never on message text. Messages say what to do next.
"""

from __future__ import annotations

__all__ = [
    "PAYLOAD_ERROR_REASONS",
    "TOPIC_ERROR_REASONS",
    "ConfigError",
    "PayloadError",
    "TopicError",
    "WattlineError",
]

#: Why a whole message payload was rejected (the ``reason`` label of the payload error counter).
PAYLOAD_ERROR_REASONS = (
    "too_large",        # longer than max_payload_bytes; not parsed at all
    "empty",            # zero-length (a retained message being cleared), not a JSON value
    "invalid_json",     # not JSON, or not UTF-8
    "payload_shape",    # JSON, but none of the three reading forms
    "length_mismatch",  # columnar form whose ts, v (and q) lists differ in length
    "duplicate_key",    # a JSON object with a repeated key (which value was meant is unknown)
    "meta_invalid",     # a meta payload with a wrong key, type or value
    "sparkplug_invalid",  # a Sparkplug B message that does not parse, or an unknown type
    "mapping",          # a document on a [[payloads]] topic without the readings it maps
)

#: Why a topic was rejected.
TOPIC_ERROR_REASONS = (
    "topic_layout",  # wrong number of levels, or a fixed level (the prefix) does not match
    "topic_name",    # site, line or meter (or Sparkplug id) that is not a name (topics.valid_name)
    "topic_kind",    # kind other than energy or production
    "name_taken",    # a name the config's [rename] table gives another site, line or meter
)

_PAYLOAD_HINTS = {
    "too_large": "split the batch into smaller messages or raise max_payload_bytes",
    "empty": "publish a JSON reading; an empty payload only clears a retained message",
    "invalid_json": "publish UTF-8 JSON (NaN and Infinity are not JSON; send strings or omit)",
    "payload_shape": 'publish {"ts": ms, "v": x}, a list of those, or {"ts": [...], "v": [...]}',
    "length_mismatch": "give the columnar ts, v and q lists the same length",
    "duplicate_key": "give each key once per object",
    "meta_invalid": 'publish {"carrier": str, "unit": str, "mode": "counter"|"delta", '
                    '"rollover": number in (0, 2**64], "direction": "import"|"export", '
                    '"max_rate": positive number per hour}, every key optional',
    "sparkplug_invalid": "publish Sparkplug B protobuf payloads on spBv1.0/{group}/"
                         "{N|D}{BIRTH|DATA|DEATH}/{node}[/{device}]",
    "mapping": "publish the document the topic's [[payloads]] mapping describes, or fix the "
               "mapping's readings expression in the config file",
}

_TOPIC_HINTS = {
    "topic_layout": "publish to {prefix}/{site}/{line}/{kind}/{meter}[/meta] "
                    "(is --topic-prefix right?)",
    "topic_name": "name sites, lines and meters with 1-64 characters, no control characters, "
                  "no white space at either end, not . or ..",
    "topic_kind": "use energy or production as the kind level",
    "name_taken": "rename this site, line or meter too, or drop the [rename] entry that gives "
                  "its name to another",
}


class WattlineError(Exception):
    """Base of every error wattline raises on purpose; the CLI prints these without a traceback."""


class ConfigError(WattlineError):
    """A setting is missing, unknown or wrong.

    ``key`` names the setting (dotted for nested tables); ``line`` and ``path``
    point into the config file when known and may be filled in by a caller
    that knows more than the validator (hence mutable, and ``__str__`` reads them).
    """

    def __init__(
        self,
        key: str,
        message: str,
        *,
        line: int | None = None,
        suggestion: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(key, message)
        self.key = key
        self.message = message
        self.line = line
        self.suggestion = suggestion
        self.path = path

    def __str__(self) -> str:
        where = ""
        if self.path is not None and self.line is not None:
            where = f"{self.path}:{self.line}: "
        elif self.path is not None:
            where = f"{self.path}: "
        elif self.line is not None:
            where = f"line {self.line}: "
        text = f"{where}{self.key}: {self.message}"
        if self.suggestion:
            text += f" ({self.suggestion})"
        return text


class PayloadError(WattlineError):
    """A whole message payload was rejected; ``reason`` is one of ``PAYLOAD_ERROR_REASONS``."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in PAYLOAD_ERROR_REASONS:
            raise ValueError(f"unknown payload error reason {reason!r}")
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}; {_PAYLOAD_HINTS[self.reason]}"


class TopicError(WattlineError):
    """A received topic cannot name a meter; ``reason`` is one of ``TOPIC_ERROR_REASONS``."""

    def __init__(self, reason: str, topic: str, detail: str = "") -> None:
        if reason not in TOPIC_ERROR_REASONS:
            raise ValueError(f"unknown topic error reason {reason!r}")
        super().__init__(reason, topic, detail)
        self.reason = reason
        self.topic = topic
        self.detail = detail

    def __str__(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.reason}: {self.topic[:200]!r}{detail}; {_TOPIC_HINTS[self.reason]}"
