"""One day's simulated events, kept per output source until they are written.

Each source has an intermediate schema: ``t`` (UTC epoch microseconds) plus the fields its raw
format writes, by their raw names. Hand-made events (logins, incidents) are added as dicts; bulk
routine arrives as ready frames. Sources map to files: ``vpn`` and ``jumphost`` are both CEF.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import polars as pl

Source = Literal["hes_audit", "hes_commands", "dms", "winsec", "vpn", "jumphost"]
SOURCES: Final[tuple[Source, ...]] = ("hes_audit", "hes_commands", "dms", "winsec", "vpn", "jumphost")

S, I = pl.String(), pl.Int64()

_CEF = {"t": I, "sig": S, "name": S, "sev": I, "suser": S, "src": S, "dst": S, "dhost": S, "shost": S,
        "app": S, "outcome": S, "reason": S, "cs1Label": S, "cs1": S, "cs2Label": S, "cs2": S, "cn1Label": S,
        "cn1": I, "filePath": S,
        "msg": S}

# Windows' own field names: logon ids, 4697/7045 services, 4698/4702 tasks, 6416 devices, the log.
WINSEC_EXTRA: Final[dict[str, pl.DataType]] = {
    "TargetLogonId": S, "SubjectLogonId": S, "ServiceName": S, "ImagePath": S, "ServiceType": S,
    "StartType": S, "AccountName": S, "ServiceFileName": S, "ServiceStartType": S, "ServiceAccount": S,
    "TaskName": S, "TaskContent": S, "DeviceId": S, "DeviceDescription": S, "ClassName": S, "ClassId": S,
    "Channel": S,
}

SCHEMAS: Final[dict[Source, pl.Schema]] = {
    "hes_audit": pl.Schema({
        "t": I, "UserName": S, "Role": S, "ClientIP": S, "Workstation": S, "Category": S, "Action": S,
        "ObjectType": S, "ObjectId": S, "OldValue": S, "NewValue": S, "Result": S}),
    "hes_commands": pl.Schema({
        "t": I, "user": S, "client": S, "command": S, "controlType": S, "targetType": S, "targetId": S,
        "serviceAccount": S, "targetGroup": S, "targetCount": I, "image": S, "sha256": S, "status": S,
        "success": I, "failure": I}),
    "dms": pl.Schema({
        "t": I, "pri": I, "host": S, "app": S, "procid": S, "msgid": S,
        # structured-data parameters, written in this order when present
        "user": S, "src": S, "console": S, "method": S, "device": S, "rtu": S, "proto": S, "point": S,
        "action": S, "sbo": S, "prev": S, "new": S, "commanded": S, "tag": S, "note": S, "object": S,
        "param": S, "old": S, "target": S, "role": S, "result": S, "msg": S}),
    "winsec": pl.Schema({
        "t": I, "EventID": I, "Computer": S, "SubjectUserName": S, "SubjectDomainName": S,
        "TargetUserName": S, "TargetDomainName": S, "MemberName": S, "LogonType": I, "IpAddress": S,
        "WorkstationName": S, "AuthenticationPackageName": S, "Status": S, "SubStatus": S,
        "PrivilegeList": S,
        # Only the extended scenarios write these (null columns are left out of every line).
        **WINSEC_EXTRA}),
    "vpn": pl.Schema(_CEF),
    "jumphost": pl.Schema(_CEF),
}


class DayBuffer:
    """Events of one local day, per source, in the order they were made."""

    def __init__(self) -> None:
        self._rows: dict[Source, list[dict[str, Any]]] = {s: [] for s in SOURCES}
        self._frames: dict[Source, list[pl.DataFrame]] = {s: [] for s in SOURCES}

    def add(self, source: Source, t: int, **fields: Any) -> None:
        self._rows[source].append({"t": int(t), **fields})

    def add_frame(self, source: Source, frame: pl.DataFrame) -> None:
        if frame.height:
            schema = SCHEMAS[source]
            self._frames[source].append(frame.select(
                [pl.col(c).cast(schema[c]) if c in frame.columns else pl.lit(None, schema[c]).alias(c)
                 for c in schema]))

    def frame(self, source: Source) -> pl.DataFrame:
        """All events of *source*, sorted by time; ties keep the order they were added in."""
        schema = SCHEMAS[source]
        parts = [pl.DataFrame(self._rows[source], schema=schema), *self._frames[source]]
        return pl.concat(parts).sort("t", maintain_order=True)

    def merge(self, other: DayBuffer) -> None:
        """Take over *other*'s events, after this buffer's own."""
        for source in SOURCES:
            self._rows[source].extend(other._rows[source])
            self._frames[source].extend(other._frames[source])

    def span(self) -> tuple[int, int]:
        """First and last event time over all sources (UTC epoch microseconds)."""
        times = [r["t"] for s in SOURCES for r in self._rows[s]]
        times += [v for s in SOURCES for f in self._frames[s] for v in (f["t"].min(), f["t"].max())]
        return min(times), max(times)
