"""Getting new files into the store exactly once: recover, parse and stage, append, commit."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from detector.atomic import fsync_dir
from detector.engines import running
from detector.nightly.files import iso, json_bytes, write_atomic
from detector.nightly.inbox import Candidate, discover, new_id
from detector.nightly.state import Hook, Layout, Night
from detector.parsers import ParsedChunk
from detector.pipeline import ParseRun, plan_parse
from detector.schema import REJECT_SCHEMA
from detector.spill import EventSpill, scan_parts, slice_start

# The staging spill's slices are days: the event store's partitions.
_DAY = timedelta(days=1)


def recover(night: Night) -> None:
    for leftover in night.layout.tmp.iterdir():
        shutil.rmtree(leftover) if leftover.is_dir() and not leftover.is_symlink() else leftover.unlink()
    for staging in sorted(night.layout.staging.iterdir()):
        if staging.name in night.state["batches"] or not (staging / "manifest.json").is_file():
            shutil.rmtree(staging)
            continue
        manifest = json.loads((staging / "manifest.json").read_text())
        night.summary.recovered.append(staging.name)
        _append_and_commit(night, manifest, staging)
    committed = set(night.state["batches"])
    for dataset in (night.layout.events, night.layout.rejects):
        for day_dir in sorted(dataset.glob("day=*")):
            for part in day_dir.glob("part-*.parquet"):
                if part.stem.removeprefix("part-") not in committed:
                    part.unlink()
            if not any(day_dir.iterdir()):
                day_dir.rmdir()
    night.timed("recover")


def ingest(night: Night) -> None:
    candidates, mappings, fingerprint = discover(night)
    while candidates:
        batch_id = new_id([fingerprint] + sorted(f"{c.sha256}:{c.skip}" for c in candidates))
        staging = night.layout.staging / batch_id
        manifest, changed = _parse(night, batch_id, staging, candidates, mappings, fingerprint)
        if changed:
            # A file changed while it was read: it waits for the next run, the rest is parsed again.
            shutil.rmtree(staging)
            for candidate in changed:
                night.summary.files["waiting"] += 1
                night.summary.waiting.append(str(candidate.path))
                night.summary.waiting_until[str(candidate.path)] = "by the next run (it changed while it was read)"
            candidates = [c for c in candidates if c not in changed]
            continue
        _append_and_commit(night, manifest, staging)
        break

@dataclass
class _NightRun(ParseRun):
    """A parse of a batch's files: of a file that grew since it was taken, only the lines after the
    ones taken before (``skip``); what each file gave is counted in ``stats``."""

    skip: dict[str, int] = field(default_factory=dict)
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    hook: Hook = lambda stage: None

    def chunks(self) -> Iterator[ParsedChunk]:
        for chunk in super().chunks():
            key = self.reports[-1].path
            stat = self.stats.setdefault(key, {"events": 0, "rejects": 0, "last_line": 0})
            lines = pl.concat([chunk.events.select("raw_line"), chunk.rejects.select("raw_line")])
            stat["last_line"] = max(stat["last_line"], int(lines.select(pl.col("raw_line").max()).item() or 0))
            events, rejects, skip = chunk.events, chunk.rejects, self.skip.get(key, 0)
            if skip:
                # A reject without a line number (file-level) is kept: it concerns the new content.
                events = events.filter(pl.col("raw_line") > skip)
                rejects = rejects.filter(pl.col("raw_line").is_null() | (pl.col("raw_line") > skip))
            stat["events"] += events.height
            stat["rejects"] += rejects.height
            yield ParsedChunk(events, rejects, chunk.time_fields)
            self.hook("parse")


def _parse(night: Night, batch_id: str, staging: Path, candidates: list[Candidate], mappings: list[Path],
           fingerprint: str) -> tuple[dict[str, Any], list[Candidate]]:
    """Parse the batch into ``staging/``: its events as an event spill of days (``events/``, by the
    engine's parse stage, as a scan parses), its rejects, and ``manifest.json`` last."""
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    plan = plan_parse([c.path for c in candidates], mappings=mappings, tz=night.config.tz)
    run = _NightRun(**{f.name: getattr(plan, f.name) for f in fields(ParseRun)},
                    skip={str(c.path): c.skip for c in candidates if c.skip}, hook=night.hook)
    spill = EventSpill(staging / "events", _DAY)
    with running("local") as engine:
        rejects = engine.parse(run, spill)
    if rejects.height:
        rejects.write_parquet(staging / "rejects.parquet", compression="zstd")
    changed = []
    for candidate in candidates:
        try:
            now = candidate.path.stat()
            if (now.st_size, now.st_mtime_ns) != (candidate.size, candidate.mtime_ns):
                changed.append(candidate)
        except OSError:
            changed.append(candidate)
    if changed:
        return {}, changed
    reports = {r.path: r for r in run.reports}
    stats = {str(c.path): run.stats.get(str(c.path), {"events": 0, "rejects": 0, "last_line": 0}) for c in candidates}
    manifest = {
        "batch": batch_id, "date": night.now.date().isoformat(), "fingerprint": fingerprint,
        "days": [slice_start(index, _DAY).date().isoformat() for index in sorted(spill.counts)],
        "events": sum(s["events"] for s in stats.values()), "rejects": sum(s["rejects"] for s in stats.values()),
        "files": [{"path": str(c.path), "sha256": c.sha256, "size": c.size, "mtime_ns": c.mtime_ns,
                   "skip": c.skip, "continues": c.continues, "format": reports[str(c.path)].format,
                   "error": reports[str(c.path)].error, **stats[str(c.path)]} for c in candidates],
    }
    write_atomic(staging / "manifest.json", json_bytes(manifest))
    night.hook("stage")
    night.timed("parse")
    return manifest, []


def _staged_events(staging: Path) -> pl.LazyFrame:
    """A batch's staged events: a spill of days (``events/``), or one file as staged before it was."""
    older = staging / "events.parquet"
    return scan_parts(older if older.exists() else staging / "events" / "slice=*" / "*.parquet")


def _place(night: Night, frame: pl.LazyFrame, target: Path) -> None:
    tmp = night.layout.tmp / f"{target.parent.parent.name}-{target.parent.name}-{target.name}"
    frame.sink_parquet(tmp, sync_on_close="all")
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, target)
    fsync_dir(target.parent)

def _append_and_commit(night: Night, manifest: dict[str, Any], staging: Path) -> None:
    batch_id = manifest["batch"]
    events = _staged_events(staging)
    for day in manifest["days"]:
        when = date.fromisoformat(day)
        _place(night, events.filter(pl.col("time").dt.date() == when),
                    Layout.part(night.layout.events, day, batch_id))
        night.hook("append")
    if manifest["rejects"]:
        _place(night, pl.scan_parquet(staging / "rejects.parquet", schema=REJECT_SCHEMA),
                    Layout.part(night.layout.rejects, manifest["date"], batch_id))
    night.timed("append")

    state = night.state
    for entry in manifest["files"]:
        status = "unreadable" if entry["error"] else "committed"
        state["files"][entry["sha256"]] = {
            "path": entry["path"], "size": entry["size"], "status": status, "batch": batch_id,
            "last_line": entry["last_line"], "events": entry["events"], "rejects": entry["rejects"],
            "format": entry["format"], "error": entry["error"], "continues": entry["continues"],
            "fingerprint": manifest["fingerprint"], "committed": iso(night.now)}
        if status == "committed":
            state["paths"][entry["path"]] = entry["sha256"]
        if entry["error"]:
            night.summary.files["unreadable"] += 1
            night.summary.unreadable.append({"path": entry["path"], "reason": entry["error"]})
        night.summary.files["continued"] += bool(entry["skip"])
    state["batches"][batch_id] = {
        "date": manifest["date"], "days": manifest["days"], "events": manifest["events"],
        "rejects": manifest["rejects"], "files": [e["sha256"] for e in manifest["files"]],
        "committed": iso(night.now)}
    if state["job"] is None:
        state["job"] = {"seq": state["next_seq"], "date": manifest["date"], "batches": []}
        state["next_seq"] += 1
    state["job"]["batches"].append(batch_id)
    night.save()
    night.hook("commit")
    shutil.rmtree(staging, ignore_errors=True)
    night.summary.files["new"] += len(manifest["files"])
    night.summary.events += manifest["events"]
    night.summary.rejects += manifest["rejects"]
    night.summary.batches.append(batch_id)
    night.timed("commit")

