"""A trained model as a directory that can be shared, reviewed and loaded without pickle.

Layout::

    <model>/
      model.json              metadata: id, span, features, thresholds, config, versions, file hashes
      forests/<kind>.npz      one WindowScorer per entity kind, as plain numeric arrays
      profiles/<name>.parquet baseline profile tables

Nothing in a model directory is executable: ``model.json`` is read with :mod:`json`, forests with
``numpy.load(..., allow_pickle=False)`` (object arrays are refused) and profiles with polars'
Parquet reader. A model may come from someone else (a vendor, a colleague, a bundled default), so
:func:`load_model` trusts nothing in it: every file's size and sha256 are checked against
``model.json``, ``model.json`` against its own checksum, and every array's dtype, shape and tree
structure before the first score is computed. Any problem is a :class:`ModelError` that names the
file and says what to do.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import shutil
import stat
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property, partial
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Final, Self

import numpy as np
import polars as pl

from detector.atomic import fsync_dir
from detector.config import Config
from detector.errors import ConfigError, DetectorError
from detector.features.profiles import PROFILE_SCHEMAS, Profiles
from detector.overlap import two_at_a_time
from detector.scoring import STATE_ARRAYS, ScoringError, SeverityThresholds, WindowScorer

__all__ = ["FORMAT_VERSION", "MODEL_FILE", "Model", "ModelError", "ModelLoading", "load_model", "save_model"]

# Bump when a model written by this code could be misread by older code, or vice versa.
FORMAT_VERSION: Final = 1
MODEL_FILE: Final = "model.json"
FOREST_DIR: Final = "forests"
PROFILE_DIR: Final = "profiles"

_RETRAIN = "retrain with `ami-detector train`"
_KIND = re.compile(r"[a-z][a-z0-9_]*")
_TABLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_FILE = re.compile(r"(forests/[a-z][a-z0-9_]*\.npz|profiles/[A-Za-z0-9][A-Za-z0-9_.-]*\.parquet)")
_TOP_KEYS: Final = frozenset({
    "format_version", "model_id", "created", "training_span", "thresholds", "kinds", "tables",
    "config", "metadata", "library_versions", "files", "checksum",
})


class ModelError(DetectorError, ValueError):
    """A model directory cannot be written, or cannot be trusted or understood when read."""


@dataclass(kw_only=True)
class Model:
    """A trained model: one scorer per entity kind, the baseline profiles, and their provenance.

    Parameters
    ----------
    model_id
        Stable hash of the model's content (forest arrays, profiles, features, config, span), set
        by :func:`save_model`: retraining on the same logs with the same settings gives the same
        id, so finding ids stay the same too.
    created
        When the model was saved, UTC ISO 8601; set by :func:`save_model` when empty.
    training_span
        First and last event time of the training logs, timezone-aware.
    scorers
        A fitted :class:`~detector.scoring.WindowScorer` per entity kind (``"account"``, ``"device"``).
    config
        The settings the model was trained with, JSON-ready (e.g. ``{"features": {...},
        "scoring": {...}}``); severity thresholds are read from ``config["scoring"]["severity"]``.
    metadata
        Free-form JSON-ready extras (e.g. the training files, event counts).
    tables
        Baseline profile tables by name, stored as ``profiles/<name>.parquet``.
    library_versions
        Versions of Python and the libraries the model was saved with; set by :func:`save_model`.
    """

    model_id: str = ""
    created: str = ""
    training_span: tuple[datetime, datetime]
    scorers: dict[str, WindowScorer]
    config: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    library_versions: dict[str, str] = field(default_factory=dict)

    @cached_property
    def settings(self) -> Config:
        """The typed settings of :attr:`config` (features, scoring, alerts), resolved once: what a scan
        with this model uses unless it is given a configuration of its own."""
        return Config.of_model(self.config)

    @cached_property
    def profiles(self) -> Profiles:
        """The baseline profiles of :attr:`tables`, built once: what windows derive from them alone
        (peer medians, everyone's habits, the device index: :meth:`Profiles.derived`) is then derived
        once per model, however many slices, scans and ``score`` calls read it.

        Raises
        ------
        DetectorError
            When a table this version needs is missing (a model trained by an older version).
        """
        scalars = self.metadata.get("profiles", {})

        def when(key: str) -> datetime | None:
            value = scalars.get(key)
            return datetime.fromisoformat(value) if value else None

        missing = [name for name in PROFILE_SCHEMAS if name not in self.tables]
        if missing:
            raise DetectorError(f"model {self.model_id or ''} lacks the baseline table(s) {', '.join(missing)} this "
                                "version needs: it was trained by an older version; retrain it with `ami-detector train`")
        return Profiles(
            **{name: self.tables[name] for name in PROFILE_SCHEMAS},
            baseline_start=when("baseline_start"), baseline_end=when("baseline_end"),
            window=scalars.get("window", self.settings.features.window), event_count=int(scalars.get("event_count", 0)),
        )

    @property
    def thresholds(self) -> SeverityThresholds:
        """Severity thresholds from ``config["scoring"]["severity"]`` (defaults where absent)."""
        return _thresholds(self.config)


# --------------------------------------------------------------------------------------------
# Helpers


def _thresholds(config: dict[str, Any]) -> SeverityThresholds:
    scoring = config.get("scoring", {})
    if not isinstance(scoring, dict):
        raise ConfigError(f"config['scoring'] must be a table, not {scoring!r}")
    return SeverityThresholds.from_dict(scoring.get("severity", {}))


def _canonical(value: Any) -> bytes:
    """One byte string per JSON value, whatever the key order or formatting of the file."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _array_digest(array: np.ndarray) -> str:
    # dtype and shape are part of the content: the same bytes as int32 are a different model.
    digest = hashlib.sha256(f"{array.dtype.str}|{array.shape}|".encode())
    # The array's own buffer is hashed in place: a forest's calibration arrays run to tens of MB,
    # and copying them into one bytes object took longer than hashing them.
    digest.update(np.ascontiguousarray(array).reshape(-1).view(np.uint8).data)
    return digest.hexdigest()


def _content_id(document: dict[str, Any], array_digests: dict[str, dict[str, str]]) -> str:
    """The model id: a hash of everything that determines the model's output.

    Left out are ``created``, the library versions and the file hashes of the forests (``np.savez_compressed``
    stamps the time into its zip entries), so the same training gives the same id; the arrays
    themselves are hashed instead.
    """
    content = {
        "format_version": document["format_version"],
        "training_span": document["training_span"],
        "kinds": {kind: {**entry, "arrays": array_digests[kind]} for kind, entry in document["kinds"].items()},
        "tables": {name: document["files"][path]["sha256"] for name, path in document["tables"].items()},
        "config": document["config"],
        "metadata": document["metadata"],
    }
    return _sha256(_canonical(content))[:16]


def _checksum(document: dict[str, Any]) -> str:
    return _sha256(_canonical({k: v for k, v in document.items() if k != "checksum"}))


def _library_versions() -> dict[str, str]:
    try:
        detector_version = importlib_metadata.version("ami-detector")
    except importlib_metadata.PackageNotFoundError:
        detector_version = "unknown"
    return {"python": platform.python_version(), "numpy": np.__version__, "polars": pl.__version__,
            "scikit-learn": importlib_metadata.version("scikit-learn"), "detector": detector_version}


def _utc_iso(moment: datetime, what: str) -> str:
    if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise ModelError(f"{what} must be a timezone-aware datetime, not {moment!r}")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_utc(text: object, what: str, source: tuple[str, None]) -> datetime:
    not_iso = f"{what} is not an ISO 8601 time: {text!r}"
    if not isinstance(text, str):
        raise ModelError(not_iso, source=source)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ModelError(not_iso, source=source) from None
    if moment.tzinfo is None:
        raise ModelError(f"{what} has no time zone: {text!r}", source=source)
    return moment.astimezone(UTC)


def _json_params(scorer: WindowScorer, kind: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, value in scorer.get_params().items():
        if isinstance(value, np.integer):
            value = int(value)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ModelError(f"scorer {kind!r}: parameter {name}={value!r} cannot be saved; "
                             "use an integer (or None) random_state")
        params[name] = value
    return params


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


# --------------------------------------------------------------------------------------------
# Saving


def _build(model: Model, root: Path) -> dict[str, Any]:
    """Write forests and profiles under *root* and return the finished model.json document."""
    if not isinstance(model.scorers, dict) or not isinstance(model.tables, dict):
        raise ModelError("Model.scorers and Model.tables must be dicts")
    try:
        start, end = model.training_span
    except (TypeError, ValueError):
        raise ModelError(f"training_span must be (start, end), not {model.training_span!r}") from None
    span = {"start": _utc_iso(start, "training_span start"), "end": _utc_iso(end, "training_span end")}
    if start > end:
        raise ModelError(f"training_span starts ({span['start']}) after it ends ({span['end']})")
    try:
        thresholds = _thresholds(model.config)
        _canonical(model.config)
        _canonical(model.metadata)
    except ConfigError as exc:
        raise ModelError(f"invalid scoring config: {exc.message}") from None
    except (TypeError, ValueError) as exc:
        raise ModelError(f"config and metadata must be JSON-ready (no NaN, dates as text): {exc}") from None

    files: dict[str, dict[str, Any]] = {}
    kinds: dict[str, dict[str, Any]] = {}
    digests: dict[str, dict[str, str]] = {}
    (root / FOREST_DIR).mkdir()
    (root / PROFILE_DIR).mkdir()
    for kind, scorer in sorted(model.scorers.items()):
        if not isinstance(kind, str) or not _KIND.fullmatch(kind):
            raise ModelError(f"entity kind {kind!r} must be lower-case letters, digits and _")
        if not isinstance(scorer, WindowScorer):
            raise ModelError(f"scorer for {kind!r} is a {type(scorer).__name__}, not a WindowScorer")
        try:
            state = scorer.get_state()
        except Exception as exc:  # noqa: BLE001 - NotFittedError and friends: any failure means not fitted
            raise ModelError(f"scorer for {kind!r} is not fitted: {exc}") from None
        relative = f"{FOREST_DIR}/{kind}.npz"
        # An object array would be saved by pickling it; it would be a bug, and must not reach disk.
        # (Checked here rather than with allow_pickle=False on np.savez*, which numpy < 2.1 lacks.)
        if any(array.dtype.kind not in "iuf" for array in state.values()):
            raise ModelError(f"scorer for {kind!r} has non-numeric state arrays")
        buffer = io.BytesIO()
        # Any: numpy types savez's keyword arrays as its own options (allow_pickle: bool).
        arrays: dict[str, Any] = state
        np.savez_compressed(buffer, **arrays)
        data = buffer.getvalue()
        _write_bytes(root / relative, data)
        files[relative] = {"sha256": _sha256(data), "bytes": len(data)}
        digests[kind] = {name: _array_digest(state[name]) for name in STATE_ARRAYS}
        kinds[kind] = {"file": relative, "features": list(scorer.feature_names_),
                       "params": _json_params(scorer, kind),
                       "n_training_windows": scorer.n_training_windows}
    tables: dict[str, str] = {}
    for name, frame in sorted(model.tables.items()):
        if not isinstance(name, str) or not _TABLE.fullmatch(name):
            raise ModelError(f"profile table name {name!r} must be letters, digits, '.', '_' or '-'")
        if not isinstance(frame, pl.DataFrame):
            raise ModelError(f"profile table {name!r} is a {type(frame).__name__}, not a polars DataFrame")
        relative = f"{PROFILE_DIR}/{name}.parquet"
        buffer = io.BytesIO()
        try:
            # In one piece: Parquet's bytes follow the frame's chunks, which vary with how polars
            # happened to split the work, and the model id hashes those bytes.
            frame.rechunk().write_parquet(buffer)
        except Exception as exc:  # noqa: BLE001 - e.g. pl.Object columns: any failure is one clear error
            raise ModelError(f"profile table {name!r} cannot be written as Parquet: {exc}") from None
        data = buffer.getvalue()
        _write_bytes(root / relative, data)
        files[relative] = {"sha256": _sha256(data), "bytes": len(data)}
        tables[name] = relative

    created = model.created or datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    _parse_utc(created, "created", (MODEL_FILE, None))
    document: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "model_id": "",
        "created": created,
        "training_span": span,
        "thresholds": {"low": thresholds.low, "medium": thresholds.medium, "high": thresholds.high,
                       "critical": thresholds.critical},
        "kinds": kinds,
        "tables": tables,
        "config": model.config,
        "metadata": model.metadata,
        "library_versions": _library_versions(),
        "files": files,
    }
    document["model_id"] = _content_id(document, digests)
    document["checksum"] = _checksum(document)
    return document


def save_model(model: Model, directory: Path | str) -> Path:
    """Write *model* as a model directory, atomically.

    Everything is written to a temporary directory beside *directory* and renamed into place only
    when complete, so a crash or error never leaves a half-written model where a model is
    expected; an existing model there is replaced only then. ``model.model_id``, ``model.created``
    and ``model.library_versions`` are filled in on *model*.

    Parameters
    ----------
    model
        The model; its scorers must be fitted with an integer (or ``None``) ``random_state``.
    directory
        Where the model goes. If it exists it must be a model directory (or empty).

    Returns
    -------
    pathlib.Path
        *directory*.

    Raises
    ------
    ModelError
        When the model is incomplete or not serialisable, or *directory* exists and is not a model.
    """
    directory = Path(directory)
    if directory.exists() and not (directory.is_dir() and (
            (directory / MODEL_FILE).is_file() or not any(directory.iterdir()))):
        # A typo like `--model ~` must not replace someone's home directory with a model.
        raise ModelError(f"refusing to replace {directory}: it exists and is not a model directory "
                         f"(no {MODEL_FILE}); choose a new or empty directory")
    parent = directory.parent
    parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:12]
    staging = parent / f".{directory.name}.{tag}.tmp"
    staging.mkdir()
    try:
        document = _build(model, staging)
        _write_bytes(staging / MODEL_FILE, json.dumps(document, indent=1, sort_keys=True,
                                                      ensure_ascii=True, allow_nan=False).encode() + b"\n")
        for sub in (FOREST_DIR, PROFILE_DIR, "."):
            fsync_dir(staging / sub)
        if directory.exists():
            # POSIX rename cannot replace a non-empty directory: move the old one aside first, and
            # put it back if the second rename fails.
            retired = parent / f".{directory.name}.{tag}.old"
            os.replace(directory, retired)
            try:
                os.replace(staging, directory)
            except BaseException:
                os.replace(retired, directory)
                raise
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, directory)
        fsync_dir(parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    model.model_id = document["model_id"]
    model.created = document["created"]
    model.library_versions = document["library_versions"]
    return directory


# --------------------------------------------------------------------------------------------
# Loading


def _read_verified(directory: Path, relative: str, expected: dict[str, Any]) -> bytes:
    """The bytes of one listed file, after checking they are exactly what model.json recorded."""
    source = (str(directory / relative), None)
    path = directory / relative
    try:
        info = path.lstat()
    except FileNotFoundError:
        raise ModelError(f"file is missing: the model directory is incomplete; restore it or {_RETRAIN}",
                         source=source) from None
    if not stat.S_ISREG(info.st_mode):
        # A symlink could point anywhere; a model directory is self-contained.
        raise ModelError("not a regular file (symlinks are not accepted in a model directory)", source=source)
    data = path.read_bytes()
    if len(data) != expected["bytes"]:
        state = "truncated" if len(data) < expected["bytes"] else "longer than recorded"
        raise ModelError(f"file is {state}: {len(data)} bytes, model.json records {expected['bytes']}; "
                         f"restore the model directory or {_RETRAIN}", source=source)
    if _sha256(data) != expected["sha256"]:
        raise ModelError(f"file was modified after the model was written (sha256 mismatch); do not use "
                         f"this model: restore it from a trusted copy or {_RETRAIN}", source=source)
    return data


def _require(document: dict[str, Any], key: str, kind: type | tuple[type, ...],
             source: tuple[str, None]) -> Any:
    if key not in document:
        raise ModelError(f"missing key {key!r}", source=source)
    value = document[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ModelError(f"key {key!r} has the wrong type ({type(value).__name__})", source=source)
    return value


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON here")


def _read_document(directory: Path) -> dict[str, Any]:
    path = directory / MODEL_FILE
    source = (str(path), None)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ModelError(f"no {MODEL_FILE}: this is not a model directory (or it is incomplete); "
                         f"point to a model directory or {_RETRAIN}", source=source) from None
    except UnicodeDecodeError:
        raise ModelError(f"not UTF-8 text: the file is damaged; restore it or {_RETRAIN}",
                         source=source) from None
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise ModelError(f"not valid JSON ({exc}); the file is truncated or damaged: restore it or {_RETRAIN}",
                         source=source) from None
    if not isinstance(document, dict):
        raise ModelError("not a JSON object", source=source)

    version = document.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelError(f"no valid format_version: not a model written by ami-detector; {_RETRAIN}",
                         source=source)
    if version != FORMAT_VERSION:
        newer = " or upgrade ami-detector" if version > FORMAT_VERSION else ""
        raise ModelError(f"model format version {version} is not supported: this ami-detector reads "
                         f"version {FORMAT_VERSION}; {_RETRAIN}{newer}", source=source)
    if document.get("checksum") != _checksum(document):
        raise ModelError("model.json was modified after the model was written (checksum mismatch); "
                         f"do not use this model: restore it from a trusted copy or {_RETRAIN}", source=source)
    unknown = sorted(set(document) - _TOP_KEYS)
    if unknown:
        raise ModelError(f"unexpected key(s) {unknown}", source=source)
    return document


def load_model(directory: Path | str) -> Model:
    """Read and verify a model directory written by :func:`save_model`.

    Nothing is unpickled or executed: JSON, ``numpy.load(allow_pickle=False)`` and Parquet only.

    Parameters
    ----------
    directory
        The model directory.

    Returns
    -------
    Model
        With fitted scorers that score exactly as the saved ones did.

    Raises
    ------
    ModelError
        When the directory or a file is missing, truncated or modified (naming the file), when
        ``model.json`` lacks a key or has a wrong value, when an array has the wrong dtype or
        shape or does not describe a valid forest, or when the format version is not this
        version's (retrain with ``ami-detector train``).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelError(f"no model directory at {directory}; train one with `ami-detector train` "
                         "or pass the path of an existing model")
    document = _read_document(directory)
    source = (str(directory / MODEL_FILE), None)

    model_id = _require(document, "model_id", str, source)
    created = _require(document, "created", str, source)
    _parse_utc(created, "created", source)
    span = _require(document, "training_span", dict, source)
    start = _parse_utc(span.get("start"), "training_span start", source)
    end = _parse_utc(span.get("end"), "training_span end", source)
    kinds = _require(document, "kinds", dict, source)
    tables = _require(document, "tables", dict, source)
    config = _require(document, "config", dict, source)
    extras = _require(document, "metadata", dict, source)
    versions = _require(document, "library_versions", dict, source)
    files = _require(document, "files", dict, source)
    _require(document, "thresholds", dict, source)
    try:
        thresholds = _thresholds(config)
    except ConfigError as exc:
        raise ModelError(f"invalid scoring config: {exc.message}", source=source) from None
    if document["thresholds"] != {"low": thresholds.low, "medium": thresholds.medium,
                                  "high": thresholds.high, "critical": thresholds.critical}:
        raise ModelError("thresholds do not match config['scoring']['severity']", source=source)

    referenced: list[str] = []
    for kind, entry in kinds.items():
        if not _KIND.fullmatch(kind) or not isinstance(entry, dict):
            raise ModelError(f"invalid entity kind entry {kind!r}", source=source)
        referenced.append(entry.get("file", ""))
        if entry.get("file") != f"{FOREST_DIR}/{kind}.npz":
            raise ModelError(f"kind {kind!r}: file must be {FOREST_DIR}/{kind}.npz", source=source)
    for name, relative in tables.items():
        wanted = f"{PROFILE_DIR}/{name}.parquet"
        if not isinstance(name, str) or not _TABLE.fullmatch(name) or relative != wanted:
            raise ModelError(f"invalid profile table entry {name!r}: {relative!r}", source=source)
        referenced.append(relative)
    for relative, expected in files.items():
        if not _FILE.fullmatch(relative):
            # Also what keeps a crafted model.json from reading outside the directory.
            raise ModelError(f"invalid file entry {relative!r}", source=source)
        if (not isinstance(expected, dict) or set(expected) != {"sha256", "bytes"}
                or not isinstance(expected["sha256"], str) or not isinstance(expected["bytes"], int)):
            raise ModelError(f"file entry {relative!r} must be {{sha256, bytes}}", source=source)
    if sorted(referenced) != sorted(files):
        raise ModelError(f"files listed {sorted(files)} do not match the forests and profiles "
                         f"{sorted(referenced)}", source=source)

    # The files are read, checked and decoded two at a time (hashing, inflating and Parquet decoding
    # run outside the GIL); a damaged file is still the first one named, in the order listed.
    jobs: list[Callable[[], Any]] = [partial(_load_forest, directory, kind, kinds[kind], files, source) for kind in kinds]
    jobs += [partial(_load_table, directory, relative, files) for relative in tables.values()]
    loaded = list(two_at_a_time(iter(jobs), lambda job: job()))
    scorers = {kind: scorer for kind, (scorer, _) in zip(kinds, loaded, strict=False)}
    digests = {kind: digest for kind, (_, digest) in zip(kinds, loaded, strict=False)}
    frames = dict(zip(tables, loaded[len(kinds):], strict=True))

    if _content_id(document, digests) != model_id:
        raise ModelError("model_id does not match the model's content", source=source)
    return Model(model_id=model_id, created=created, training_span=(start, end), scorers=scorers,
                 config=config, metadata=extras, tables=frames,
                 library_versions={str(k): str(v) for k, v in versions.items()})


class ModelLoading:
    """A model read and checked in a background thread (:func:`load_model`), its settings at once.

    A scan needs the model's settings (the window length) to parse its logs, and the model itself
    only to score them: reading and verifying the forests and profile tables overlaps the parse,
    and so does *then* (called with the model once it is loaded: a scan prepares its profiles there). ``model.json`` is read and its checksum
    verified here, so a damaged or foreign document fails at once; a damaged forest or table
    file is reported by :meth:`result`, as :func:`load_model` reports it. Use it as a context
    manager, or call :meth:`close`, so that the thread is always waited for.
    """

    def __init__(self, directory: Path | str, then: Callable[[Model], object] | None = None) -> None:
        self.directory = Path(directory)
        try:
            document = _read_document(self.directory)
            self.settings = Config.of_model(_require(document, "config", dict, (str(self.directory / MODEL_FILE), None)))
        except (ModelError, ConfigError):
            load_model(self.directory)  # its own error, worded and named as it words and names it
            raise
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ami-detector-model")
        self._model = self._pool.submit(_loaded, self.directory, then)

    def result(self) -> Model:
        """The model, once read and checked (raises :class:`ModelError` as :func:`load_model` does)."""
        try:
            return self._model.result()
        finally:
            self.close()

    def close(self) -> None:
        """Wait for the thread; what it read is dropped if :meth:`result` was not called."""
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _loaded(directory: Path, then: Callable[[Model], object] | None) -> Model:
    model = load_model(directory)
    if then is not None:
        then(model)
    return model


def _load_forest(directory: Path, kind: str, entry: dict[str, Any], files: dict[str, Any],
                 source: tuple[str, None]) -> tuple[WindowScorer, dict[str, str]]:
    """One kind's scorer from its verified ``.npz``, and the digests of its arrays (for the model id)."""
    relative = entry["file"]
    file_source = (str(directory / relative), None)
    data = _read_verified(directory, relative, files[relative])
    features, params, n_train = entry.get("features"), entry.get("params"), entry.get("n_training_windows")
    if (not isinstance(features, list) or not isinstance(params, dict) or not isinstance(n_train, int)
            or set(entry) != {"file", "features", "params", "n_training_windows"}):
        raise ModelError(f"kind {kind!r}: needs exactly file, features (list), params (object) and "
                         "n_training_windows (int)", source=source)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name.removesuffix(".npy"): archive[name] for name in archive.files}
    except Exception as exc:  # noqa: BLE001 - BadZipFile, object arrays (pickle refused), bad headers...
        raise ModelError(f"cannot read the forest arrays ({type(exc).__name__}: {exc}); {_RETRAIN}",
                         source=file_source) from None
    try:
        scorer = WindowScorer.from_state(arrays, features, params)
    except ScoringError as exc:
        raise ModelError(f"{exc.message}; {_RETRAIN}", source=file_source) from None
    if scorer.n_training_windows != n_train:
        raise ModelError(f"holds {scorer.n_training_windows} training scores, model.json records {n_train}",
                         source=file_source)
    return scorer, {name: _array_digest(arrays[name]) for name in STATE_ARRAYS}


def _load_table(directory: Path, relative: str, files: dict[str, Any]) -> pl.DataFrame:
    """One verified profile table."""
    data = _read_verified(directory, relative, files[relative])
    try:
        return pl.read_parquet(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - polars raises several types for a damaged file
        raise ModelError(f"cannot read the profile table ({type(exc).__name__}: {exc}); {_RETRAIN}",
                         source=(str(directory / relative), None)) from None
