"""InfluxDB 1.x's reading of a tag value, written out as the rule its parser follows (found
against InfluxDB 1.6.7, tests/e2e/test_influx_v1.py): a value runs up to the first ``,``
or space not directly after a backslash, then ``\\,`` ``\\=`` and ``\\ `` lose their
backslash and every other backslash stays. ``escape_tag_value(v1=True)`` must give
text that reads back as the value, and cannot end the value early."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wattline.ingest.sinks.line_protocol import escape_tag_value


def read_tag_value(text: str) -> tuple[str, str]:
    """The value InfluxDB 1.x reads at the start of ``text``, and what follows it."""
    end = 0
    while end < len(text) and not (text[end] in ", " and (end == 0 or text[end - 1] != "\\")):
        end += 1
    raw = text[:end]
    for special in ",= ":
        raw = raw.replace("\\" + special, special)
    return raw, text[end:]


_NAMES = st.text(st.sampled_from(list("a\\,= \"é東")), min_size=1).filter(
    lambda v: not v.endswith("\\"))


@given(_NAMES)
def test_a_v1_tag_value_reads_back_as_itself_and_ends_where_it_should(value: str) -> None:
    assert read_tag_value(escape_tag_value(value, v1=True) + ",line=x") == (value, ",line=x")


@pytest.mark.parametrize("value", ["a\\", "C:\\plant\\\\", ""])
def test_a_v1_tag_value_it_cannot_read_back_is_refused(value: str) -> None:
    with pytest.raises(ValueError):
        escape_tag_value(value, v1=True)
