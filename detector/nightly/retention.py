"""Retention: partitions of days older than ``keep`` leave the store, the rejects and the ledger."""

from __future__ import annotations

from datetime import date

from detector.nightly.files import remove_tree
from detector.nightly.state import Night


def retention(night: Night) -> None:
    keep = night.config.keep
    if keep is None:
        return
    days = [d for b in night.state["batches"].values() for d in b["days"]]
    anchor = min(night.now.date(), date.fromisoformat(max(days))) if days else night.now.date()
    cutoff = (anchor - keep).isoformat()
    removed: dict[str, list[str]] = {}
    for name, dataset in (("events", night.layout.events), ("rejects", night.layout.rejects),
                          ("findings", night.layout.findings)):
        for day_dir in sorted(dataset.glob("day=*")):
            day = day_dir.name.removeprefix("day=")
            if day < cutoff:
                remove_tree(day_dir, night.layout.tmp)
                removed.setdefault(name, []).append(day)
    pending = set(night.state["job"]["batches"]) if night.state["job"] else set()
    for batch_id, batch in list(night.state["batches"].items()):
        if batch_id not in pending and batch["date"] < cutoff and all(d < cutoff for d in batch["days"]):
            del night.state["batches"][batch_id]
    horizon = (night.now - keep).strftime("%Y%m%dT%H%M%S")
    for run_file in night.layout.runs.glob("*.json"):
        if run_file.name < horizon:
            run_file.unlink()
    night.save()
    night.summary.retention = removed
    night.timed("retention")

