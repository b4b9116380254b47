"""The example config file, written from the settings schema.

``deploy/wattline.example.toml`` is this module's output (``wattline check-config
--example``), so a setting's name, default, help text and example value are written
only once, in its section dataclass (``config_sections``). A test regenerates the
file and compares.

Each section's docstring opens its part of the file; each setting follows with its
help text as a comment, then ``key = value``: the example value when the schema
gives one (``doc(example=...)``), else the default; a setting best left unset shows
its ``doc(hint=...)`` commented out, or only its name (``hint=LEFT_OUT``).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from typing import Any

from wattline.ingest.config import Settings
from wattline.ingest.config_schema import LEFT_OUT, NO_EXAMPLE, SettingSpec

__all__ = ["example_config", "toml_value"]

WIDTH = 88

_HEADER = """\
wattline example config: every setting, with its default or a typical value, or
commented out where it is unset by default. Check a config with
  wattline check-config FILE
Keys are the `wattline run` flags with underscores. A flag beats the environment
variable WATTLINE_<FLAG>, which beats this file, which beats the default.
The headings are the sections of `wattline run --help`; the keys themselves sit at
the top level of the file (no [section] tables), except the [rename],
[meters."..."], [[payloads]] and [lines."..."] tables at the end.
This file is generated from the settings' own definitions:
  wattline check-config --example > deploy/wattline.example.toml"""


def toml_value(value: Any) -> str:
    """``value`` written as a TOML value (strings, numbers, booleans, arrays)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML spelling for {value!r}")


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, WIDTH - 2, initial_indent="# ", subsequent_indent="# ",
                         break_on_hyphens=False) if text else []


def _heading(title: str) -> str:
    head = f"# --- {title} "
    return head + "-" * max(3, WIDTH - len(head))


def _setting(spec: SettingSpec) -> Iterator[str]:
    yield from _comment(spec.help)
    if spec.example is not NO_EXAMPLE:
        shown = spec.shown_default
        yield from _comment(f"Default: {shown}." if shown else "Unset by default.")
        yield f"{spec.name} = {toml_value(spec.example)}"
    elif spec.hint is LEFT_OUT:
        yield f"# {spec.name}: not set here (see `wattline run --help`)."
    elif spec.hint is not NO_EXAMPLE:
        yield f"# {spec.name} = {toml_value(spec.hint)}"
    elif spec.default is None:
        raise ValueError(f"{spec.name} is unset by default: give it doc(example=) or doc(hint=)")
    else:
        yield f"{spec.name} = {toml_value(spec.default)}"


def _tables(spec: SettingSpec) -> Iterator[str]:
    if isinstance(spec.example, list):  # an array of tables, [[name]], each with sub-tables
        for table in spec.example:
            yield ""
            yield f"[[{spec.name}]]"
            subtables = {k: v for k, v in table.items() if isinstance(v, dict)}
            for key, value in table.items():
                if key not in subtables:
                    yield f"{key} = {toml_value(value)}"
            for key, sub in subtables.items():
                yield f"[{spec.name}.{key}]"
                for k, v in sub.items():
                    yield f"{toml_value(k)} = {toml_value(v)}"
        return
    if all(isinstance(v, str) for v in spec.example.values()):  # one table of names
        yield ""
        yield f"[{spec.name}]"
        for key, value in spec.example.items():
            yield f"{toml_value(key)} = {toml_value(value)}"
        return
    for name, keys in spec.example.items():
        yield ""
        yield f"[{spec.name}.{toml_value(name)}]"
        for key, value in keys.items():
            yield f"{key} = {toml_value(value)}"


def example_config() -> str:
    """The text of ``deploy/wattline.example.toml``."""
    out = [*_comment_block(_HEADER)]
    tables: list[SettingSpec] = []
    for section in Settings.sections():
        out += ["", _heading(section.title)]
        out += _comment(" ".join((section.cls.__doc__ or "").split()))
        for spec in section.specs():
            if spec.is_table:
                tables.append(spec)
                out += _comment(f"{spec.help} Example at the end of the file.")
                continue
            out += _setting(spec)
    for spec in tables:
        out += ["", _heading(f"{spec.name} (tables)"), *_comment(spec.help)]
        out += _tables(spec)
    return "\n".join(out) + "\n"


def _comment_block(text: str) -> Iterator[str]:
    for line in text.splitlines():
        yield f"# {line}" if line else "#"
