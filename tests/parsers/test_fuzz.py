"""No parser may crash on any input: arbitrary bytes become rejects or a clear DetectorError."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector.errors import DetectorError
from detector.parsers import PARSERS, ParseOptions, parse_file
from detector.parsers.mapping import load_mapping
from detector.schema import validate_events, validate_rejects
from tests.conftest import DATA

ALL = {**PARSERS, "mapping": load_mapping(DATA / "mapping" / "acme.mapping.toml")}

# Lines that look almost right are where parsers break, so mix real fragments into random text.
FRAGMENTS = ["{", "}", '"', ",", "|", "=", "\\", "[", "]", "CEF:0|", "<86>1 ", "2026-04-14T02:13:07Z",
             '"ts":', '"EventID":', "EventTimeUTC,AuditId,UserName,Action", "\t", " ", "\r"]
line = st.lists(st.one_of(st.text(max_size=20), st.sampled_from(FRAGMENTS)), max_size=8).map("".join)
document = st.one_of(
    st.lists(line, min_size=1, max_size=12).map(lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass")),
    st.binary(max_size=300),
)


@pytest.mark.parametrize("name", list(ALL))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=document)
def test_parser_never_crashes(name: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.log"
        path.write_bytes(data)
        try:
            chunks = list(parse_file(path, ALL[name], ParseOptions(tz="UTC")))
        except DetectorError as exc:
            assert exc.message  # a clear error naming the problem, never a traceback
            return
    for chunk in chunks:
        validate_events(chunk.events)
        validate_rejects(chunk.rejects)
        assert chunk.rejects.height == 0 or chunk.rejects.get_column("reason").str.len_chars().min() > 0
