"""Small file helpers of the nightly job: clock, JSON, atomic writes, removal by rename."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from detector.model_store import _fsync_dir as fsync_dir


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def write_atomic(path: Path, data: bytes, tmp_dir: Path | None = None) -> None:
    """Write *data* to *path* by temp file, fsync and rename, then fsync the directory."""
    tmp = (tmp_dir or path.parent) / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False, default=str).encode() + b"\n"


def remove_tree(path: Path, trash: Path) -> None:
    """Remove a directory by renaming it away first, so that readers never see half of it."""
    if not path.exists():
        return
    target = trash / f"trash-{path.name}-{uuid.uuid4().hex[:8]}"
    os.rename(path, target)
    shutil.rmtree(target, ignore_errors=True)

