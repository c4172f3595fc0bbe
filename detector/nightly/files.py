"""Small file helpers of the nightly job: clock, JSON, durable writes (:mod:`detector.atomic`), removal by rename."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from detector.atomic import atomic_bytes


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def write_atomic(path: Path, data: bytes, tmp_dir: Path | None = None) -> None:
    """Write *data* to *path* durably: temp file, fsync, rename, fsync of the directory."""
    atomic_bytes(path, data, tmp_dir=tmp_dir, durable=True)


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False, default=str).encode() + b"\n"


def remove_tree(path: Path, trash: Path) -> None:
    """Remove a directory by renaming it away first, so that readers never see half of it."""
    if not path.exists():
        return
    target = trash / f"trash-{path.name}-{uuid.uuid4().hex[:8]}"
    os.rename(path, target)
    shutil.rmtree(target, ignore_errors=True)

