"""Reading a JSON payload into Python objects, refusing objects with a repeated key.

orjson, like most JSON parsers, keeps the last of a repeated key without a word:
``{"ts": T, "v": 1000, "v": 5e9}`` would read as ``v = 5e9``. Which of two values a
gateway meant cannot be known, so such a payload is refused whole
(``duplicate_key``), wherever the object sits in it. orjson decides what is JSON
(and is fast); a second pass with the standard library's parser, whose
``object_pairs_hook`` sees every key of every object in order, finds repeats. Keys
are compared as decoded text, so ``"ts"`` and ``"t\\u0073"`` are the same key.
"""

from __future__ import annotations

import json
import re

import orjson

from wattline.contract.errors import PayloadError

__all__ = ["json_type", "parse_json", "repeated_key"]


class _Repeated(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _refuse_repeats(pairs: list[tuple[str, object]]) -> dict[str, object]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Repeated(key)
            seen.add(key)
    return doc


# A JSON string, or one of the structural characters that matter for keys.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\]:]', re.S)


def _repeated_key_iteratively(payload: bytes) -> str | None:
    """``repeated_key`` without recursion, for payloads nested deeper than Python's
    parser goes (orjson reads up to 1024 levels). ``payload`` must be valid JSON."""
    stack: list[set[str] | None] = []  # per open object its keys; None for an array
    last = b""
    for match in _TOKEN.finditer(payload):
        token = match.group()
        c = token[0]
        if c == 0x22:  # a string; a key when a colon follows
            last = token
        elif c == 0x3A:
            keys = stack[-1]
            assert keys is not None
            key = json.loads(last)
            if key in keys:
                return str(key)
            keys.add(key)
        elif c == 0x7B:
            stack.append(set())
        elif c == 0x5B:
            stack.append(None)
        else:
            stack.pop()
    return None


def repeated_key(payload: bytes) -> str | None:
    """The first key repeated within one object anywhere in ``payload``, or ``None``.

    ``payload`` must be JSON that orjson has read.
    """
    if payload.count(b":") < 2:
        return None  # fewer than two keys in all
    try:
        json.loads(payload, object_pairs_hook=_refuse_repeats)
    except _Repeated as repeated:
        return repeated.key
    except (RecursionError, ValueError):  # deeper than the stack, or an int over 4300 digits
        return _repeated_key_iteratively(payload)
    return None


def parse_json(payload: bytes) -> object:
    """``payload`` as Python objects.

    Raises:
        PayloadError: ``invalid_json`` (not JSON, or not UTF-8), ``duplicate_key``.
    """
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise PayloadError("invalid_json", str(exc)[:200]) from None
    if type(doc) is dict or type(doc) is list:
        key = repeated_key(payload)
        if key is not None:
            raise PayloadError("duplicate_key", f"key {key[:64]!r} appears twice in one object")
    return doc


def json_type(doc: object) -> str:
    """The JSON name of a parsed value's type."""
    return {
        dict: "object", list: "array", str: "string", int: "number", float: "number",
        bool: "boolean", type(None): "null",
    }.get(type(doc), type(doc).__name__)
