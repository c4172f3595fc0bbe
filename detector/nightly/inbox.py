"""Which inbox files are new: content hashes, completeness, continuations (see the package docstring)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from detector.nightly.config import _format_duration
from detector.nightly.files import iso
from detector.nightly.state import Night, NightlyError
from detector.parsers.reader import GZIP_MAGIC
from detector.pipeline import expand_paths

_IN_PROGRESS: Final = (".tmp", ".part", ".partial", ".filepart", ".crdownload", ".download", ".swp")
_HASH_BLOCK: Final = 1 << 20


@dataclass
class Candidate:
    path: Path
    size: int
    mtime_ns: int
    sha256: str
    skip: int = 0  # a continuation: lines up to this one were processed before
    continues: str | None = None


def new_id(parts: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _sha256_file(path: Path, prefix: int | None = None) -> tuple[str, str | None]:
    """The sha256 of the file, and of its first *prefix* bytes when asked."""
    whole, head = hashlib.sha256(), hashlib.sha256() if prefix is not None else None
    remaining = prefix or 0
    with open(path, "rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            whole.update(block)
            if head is not None and remaining > 0:
                head.update(block[:remaining])
                remaining -= min(remaining, len(block))
    return whole.hexdigest(), head.hexdigest() if head is not None else None


def _ends_cleanly(path: Path, size: int) -> bool:
    """Whether a text file ends with a line break (gzip cannot be told without reading it all)."""
    with open(path, "rb") as handle:
        start = handle.read(2)
        handle.seek(max(0, size - 2))
        end = handle.read(2)
    if start == GZIP_MAGIC:
        return True
    if start == b"\xff\xfe":
        return end == b"\n\x00"
    if start == b"\xfe\xff":
        return end == b"\x00\n"
    return end.endswith(b"\n")



def _fingerprint(night: Night, mappings: list[Path]) -> str:
    """What a retry of an unreadable file depends on: the mapping files and the time zone."""
    parts = [f"tz={night.config.tz}"] + [f"{m.name}={_sha256_file(m)[0]}" for m in sorted(mappings)]
    return new_id(parts)

def discover(night: Night) -> tuple[list[Candidate], list[Path], str]:
    inbox = night.config.inbox
    if not inbox.is_dir():
        raise NightlyError(f"the inbox {inbox} is not a directory; create it or fix --inbox")
    paths, mappings = expand_paths([inbox])
    fingerprint = _fingerprint(night, mappings)
    seen_before: dict[str, Any] = night.state["seen"]
    seen: dict[str, Any] = {}
    registry: dict[str, Any] = night.state["files"]
    files = night.summary.files
    ready: dict[str, Candidate] = {}
    quiet_before = night.now - night.config.settle
    for path in paths:
        if path.name.endswith(_IN_PROGRESS):
            files["waiting"] += 1
            night.summary.waiting.append(str(path))
            night.summary.waiting_until[str(path)] = "once it is renamed (its name says it is still being written)"
            continue
        files["inbox"] += 1
        key = str(path)
        before = seen_before.get(key)
        try:
            stat = path.stat()
            if before and before["size"] == stat.st_size and before["mtime_ns"] == stat.st_mtime_ns:
                sha = before["sha256"]  # unchanged size and time: not read again (as git and rsync do)
            else:
                sha = _sha256_file(path)[0]
            complete = stat.st_size > 0 and (
                (before is not None and before["size"] == stat.st_size and before["sha256"] == sha)
                or (datetime.fromtimestamp(stat.st_mtime, UTC) <= quiet_before
                    and _ends_cleanly(path, stat.st_size)))
        except OSError as exc:
            # Not recorded: a file that cannot be read now (permissions, vanished) is tried again.
            files["unreadable"] += 1
            night.summary.unreadable.append({"path": key, "reason": f"cannot read: {exc.strerror or exc}"})
            continue
        seen[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha,
                     "first_seen": (before or {}).get("first_seen", iso(night.now))}
        known = registry.get(sha)
        if known is not None and (known["status"] == "committed" or known.get("events")
                                  or known.get("fingerprint") == fingerprint):
            files["already_processed" if known["path"] == key else "duplicates"] += 1
            continue
        if not complete:
            files["waiting"] += 1
            night.summary.waiting.append(key)
            settled = datetime.fromtimestamp(stat.st_mtime, UTC) + night.config.settle
            if stat.st_size == 0:
                when = "once it has content"
            elif settled > night.now:
                when = (f"by the first run from {settled:%Y-%m-%dT%H:%M:%SZ} ({_format_duration(night.config.settle)}"
                        " after its last write), or by the next run if it is unchanged until then")
            else:
                when = "by the next run if it is unchanged until then (it does not end with a line break)"
            night.summary.waiting_until[key] = when
            continue
        if sha in ready:
            files["duplicates"] += 1
            continue
        ready[sha] = Candidate(path, stat.st_size, stat.st_mtime_ns, sha)
    night.state["seen"] = seen
    for candidate in ready.values():
        _continuation(night, candidate)
    night.timed("discover")
    return list(ready.values()), mappings, fingerprint

def _continuation(night: Night, candidate: Candidate) -> None:
    """Mark a file that grew after it was processed, so only its new lines are taken."""
    processed = night.state["paths"].get(str(candidate.path), "")
    previous = night.state["files"].get(processed)
    if previous is None or previous["status"] != "committed" or previous["size"] >= candidate.size:
        return
    try:
        sha, head = _sha256_file(candidate.path, prefix=previous["size"])
    except OSError:
        return
    if sha == candidate.sha256 and head == processed:
        candidate.skip = int(previous.get("last_line") or 0)
        candidate.continues = processed

