"""Binary Windows event logs (``.evtx``), read with the ``evtx`` package (a Rust parser).

Each record is turned into the flat shape NXLog writes (``EventID``, ``TimeCreated``, ``Computer``,
``Channel``, ``ProviderName``, ``UserID``, ``Keywords`` and the EventData / UserData names at the top
level) and goes through :class:`~detector.parsers.winsec_jsonl.WinsecJsonl`'s normalization: one
mapping of Windows events, whichever way they arrive.

``raw_line`` is the record's position in the file (1 for the first record read); the record's own
``EventRecordID`` is kept in ``details`` as ``record_id``. A damaged chunk becomes one reject naming
the file and the chunk (``raw_line`` null, since the chunk's records cannot be counted); every record
the parser can still read comes out.

The conversion of a record from the parser's JSON to the flat dict is a Python step per record (the
Rust parser yields records one by one); records are batched into chunks of :data:`BATCH_RECORDS`
before polars sees them. Measured on ``post-Security.evtx`` (see ``benchmarks/bench_fuzz.py``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, ClassVar, Final

import polars as pl

from detector.errors import InputError
from detector.parsers.reader import LineChunk
from detector.parsers.winsec_jsonl import WinsecJsonl
from detector.schema import REJECT_RAW_BYTES

EVTX_MAGIC: Final = b"ElfFile\x00"
BATCH_RECORDS: Final = 20_000
_MAX_DAMAGE_REPORTS: Final = 10_000  # a file that is nothing but damage stops being read after this


def is_evtx(head: bytes) -> bool:
    return head.startswith(EVTX_MAGIC)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict):
        if "#text" in value:
            return _text(value["#text"])
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return ", ".join(t for t in map(_text, value) if t is not None)
    return str(value)


def _attribute(node: Any, name: str) -> str | None:
    attributes = node.get("#attributes") if isinstance(node, dict) else None
    return _text(attributes.get(name)) if isinstance(attributes, dict) else None


def _data_fields(data: Any, flat: dict[str, Any]) -> None:
    """EventData / UserData names at the top level of *flat*, without overwriting the System fields."""
    if not isinstance(data, dict):
        if data is not None:
            flat.setdefault("param1", _text(data))
        return
    for name, value in data.items():
        if name == "#attributes":
            continue
        if not isinstance(name, str):
            continue
        if name == "Data":  # unnamed <Data> elements: param1, param2... as Windows numbers its inserts
            values = value.get("#text") if isinstance(value, dict) else value
            values = values if isinstance(values, list) else [values]
            for i, item in enumerate(values, start=1):
                flat.setdefault(f"param{i}", _text(item))
        elif isinstance(value, dict) and "#text" not in value and "#attributes" not in value:
            _data_fields(value, flat)  # UserData: <LogFileCleared><SubjectUserName>...
        elif name not in flat:
            flat[name] = _text(value)


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """One record of ``PyEvtxParser.records_json`` as the flat dict an NXLog export would hold."""
    document = json.loads(record["data"])
    event = document.get("Event") if isinstance(document, dict) else None
    event = event if isinstance(event, dict) else {}
    system_node = event.get("System")
    system: dict[str, Any] = system_node if isinstance(system_node, dict) else {}
    flat: dict[str, Any] = {
        "EventID": _text(system.get("EventID")),
        "TimeCreated": _attribute(system.get("TimeCreated"), "SystemTime") or (_text(record.get("timestamp") or "") or "").removesuffix(" UTC") or None,
        "Computer": _text(system.get("Computer")),
        "Channel": _text(system.get("Channel")),
        "ProviderName": _attribute(system.get("Provider"), "Name"),
        "UserID": _attribute(system.get("Security"), "UserID"),
        "Keywords": _text(system.get("Keywords")),
        "EventRecordID": _text(system.get("EventRecordID")) or _text(record.get("event_record_id")),
    }
    data = event.get("EventData")
    # 7045 names the service's account AccountName, the name NXLog gives the record's user.
    if isinstance(data, dict) and "ServiceName" in data and "AccountName" in data:
        data = {("ServiceAccount" if k == "AccountName" else k): v for k, v in data.items()}
    _data_fields(data, flat)
    _data_fields(event.get("UserData"), flat)
    return {k: v for k, v in flat.items() if v is not None}


class Evtx(WinsecJsonl):
    name = "evtx"
    description = "Windows event logs as binary .evtx files (Security, System, Sysmon...), same mapping as winsec_jsonl"
    source_system = "windows"
    binary: ClassVar[bool] = True
    independent_chunks = False

    @classmethod
    def sniff(cls, head: list[str]) -> bool:
        return False  # sniffed by its magic bytes (detector.parsers.sniff), never by text lines

    def read_chunks(self) -> Iterator[LineChunk]:
        """The records as numbered lines of flat JSON, :data:`BATCH_RECORDS` at a time, and one bad
        line per damaged chunk."""
        try:
            import evtx  # loaded only when an .evtx file is read
        except ImportError:
            raise InputError("reading .evtx files needs the 'evtx' package: pip install evtx",
                             source=(self.path, None)) from None
        try:
            records = evtx.PyEvtxParser(self.path, number_of_threads=1).records_json()
        except (OSError, RuntimeError) as exc:
            raise InputError(f"not a readable EVTX file ({exc})", source=(self.path, None)) from None
        numbers: list[int] = []
        lines: list[str] = []
        damage: list[str] = []
        position = 0
        while True:
            try:
                record = next(records)
            except StopIteration:
                break
            except (RuntimeError, OSError, ValueError) as exc:
                damage.append(f"damaged EVTX data, records there skipped: {exc}")
                if len(damage) >= _MAX_DAMAGE_REPORTS:
                    damage.append("too much damage; the rest of the file was not read")
                    break
                continue
            position += 1
            try:
                if not isinstance(record, dict):  # the iterator's type allows None
                    raise TypeError(f"not a record: {record!r}")
                line = json.dumps(flatten(record), ensure_ascii=False)
            except (ValueError, TypeError, AttributeError) as exc:
                damage.append(f"record {position}: cannot be read ({exc})")
                continue
            numbers.append(position)
            lines.append(line)
            if len(lines) >= BATCH_RECORDS:
                yield self._chunk(numbers, lines, damage)
                numbers, lines, damage = [], [], []
        if lines or damage or position == 0:
            yield self._chunk(numbers, lines, damage)

    @staticmethod
    def _chunk(numbers: list[int], lines: list[str], damage: list[str]) -> LineChunk:
        good = pl.DataFrame({"raw_line": numbers, "raw": lines}, schema={"raw_line": pl.Int64, "raw": pl.String})
        bad = pl.DataFrame({"raw_line": [None] * len(damage), "reason": damage,
                            "raw": [None] * len(damage)},
                           schema={"raw_line": pl.Int64, "reason": pl.String, "raw": pl.String})
        bad = bad.with_columns(pl.col("reason").str.head(REJECT_RAW_BYTES))
        return LineChunk(good, bad)
