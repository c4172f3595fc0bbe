"""The lock of a state directory: one run at a time, a crashed run's lock cleared safely."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any, Final, Self

from detector.nightly.files import iso, utc_now
from detector.nightly.state import NightlyError

try:  # POSIX; on other systems the lock relies on O_EXCL alone
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

LOCK_FILE: Final = "lock"
# An unreadable lock file younger than this may be one being written right now.
_LOCK_GRACE_SECONDS: Final = 60.0


class LockedError(NightlyError):
    """Another run holds the lock of the state directory."""


def _process_start(pid: int) -> str | None:
    """The start time of a process in clock ticks since boot (Linux), to tell a reused PID apart."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return text.rsplit(")", 1)[1].split()[19]
    except IndexError:  # pragma: no cover
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    except OSError:  # pragma: no cover
        return False
    return True


class Lock:
    """``STATE/lock``, created with O_CREAT|O_EXCL and holding the PID, host and process start time.

    A lock whose process no longer runs on this host (no such PID, or the PID now belongs to a
    process that started at another time) is stale and is cleared; a live one, or one from another
    host, makes the run refuse to start. Checking and clearing happen under an ``flock`` on
    ``STATE/.lock.guard`` so that two runs starting together cannot both clear the same stale lock.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_FILE
        self.guard = state_dir / ".lock.guard"
        self.token = uuid.uuid4().hex
        self.cleared: dict[str, Any] | None = None

    def _holder(self) -> dict[str, Any] | None:
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) else None

    def _stale(self, holder: dict[str, Any] | None) -> bool:
        if holder is None:
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return True
            return age > _LOCK_GRACE_SECONDS
        if holder.get("host") != socket.gethostname():
            return False
        pid = holder.get("pid")
        if not isinstance(pid, int) or pid <= 0:
            return True
        if not _alive(pid):
            return True
        start = _process_start(pid)
        return bool(holder.get("start") and start and start != holder["start"])

    def acquire(self) -> None:
        guard = os.open(self.guard, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(guard, fcntl.LOCK_EX)
            for _ in range(2):
                try:
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    holder = self._holder()
                    if self._stale(holder):
                        self.cleared = holder or {}
                        self.path.unlink(missing_ok=True)
                        continue
                    who = (f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}"
                           if holder else "being written")
                    raise LockedError(f"another nightly run holds {self.path} ({who}); if no such run is "
                                      "alive, remove that file") from None
                with os.fdopen(fd, "w") as handle:
                    json.dump({"pid": os.getpid(), "host": socket.gethostname(), "start": _process_start(os.getpid()),
                               "started": iso(utc_now()), "token": self.token}, handle)
                    handle.flush()
                    os.fsync(handle.fileno())
                return
            raise LockedError(f"cannot take {self.path}: it reappeared while a stale lock was cleared")
        finally:
            if fcntl is not None:
                fcntl.flock(guard, fcntl.LOCK_UN)
            os.close(guard)

    def release(self) -> None:
        holder = self._holder()
        if holder is not None and holder.get("token") == self.token:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

