"""Tests of the model store: round trip, stable ids, atomic writes, and refusing damaged models."""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import shutil
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from detector import model_store, scoring
from detector.errors import DetectorError
from detector.model_store import FORMAT_VERSION, Model, ModelError, ModelLoading, _checksum, load_model, save_model
from detector.scoring import ScoringConfig, WindowScorer

SPAN = (datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 4, 1, 23, 59, tzinfo=UTC))


def _data(n: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d))


def make_model(seed: int = 0) -> Model:
    accounts = WindowScorer(n_estimators=25, random_state=seed).fit(_data(400, 3, seed),
                                                                    ["logins", "fails", "hosts"])
    devices = WindowScorer(n_estimators=25, random_state=seed).fit(_data(300, 2, seed + 1),
                                                                   ["commands", "targets"])
    return Model(
        training_span=SPAN,
        scorers={"account": accounts, "device": devices},
        config={"features": {"window": "1h"}, "scoring": {"n_estimators": 25, "severity": {"high": 0.998}}},
        metadata={"training_files": ["a.csv", "b.jsonl"], "events": 12345},
        tables={"account_profile": pl.DataFrame({"account": ["jdoe", "ops"], "first_seen": [1, 2],
                                                 "hosts": [["JUMP01"], []]}),
                "device_profile": pl.DataFrame({"device": ["4A1B22C3"], "commands": [3.5]})},
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Model, Path]:
    model = make_model()
    directory = save_model(model, tmp_path_factory.mktemp("store") / "model")
    return model, directory


@pytest.fixture
def copy(saved: tuple[Model, Path], tmp_path: Path) -> Path:
    """A fresh copy of the saved model for a test to damage."""
    return Path(shutil.copytree(saved[1], tmp_path / "model"))


def model_files(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())


# -- round trip --------------------------------------------------------------------------------


def test_layout(saved: tuple[Model, Path]) -> None:
    _, directory = saved
    assert model_files(directory) == ["forests/account.npz", "forests/device.npz", "model.json",
                                      "profiles/account_profile.parquet", "profiles/device_profile.parquet"]
    document = json.loads((directory / "model.json").read_text())
    assert document["format_version"] == FORMAT_VERSION
    assert document["kinds"]["account"]["features"] == ["logins", "fails", "hosts"]
    assert document["thresholds"] == {"low": 0.99, "medium": 0.995, "high": 0.998, "critical": 0.9999}
    assert document["training_span"] == {"start": "2026-01-05T00:00:00Z", "end": "2026-04-01T23:59:00Z"}
    assert set(document["library_versions"]) == {"python", "numpy", "polars", "scikit-learn", "detector"}
    assert sorted(document["files"]) == [f for f in model_files(directory) if f != "model.json"]
    # Every numpy archive member is a plain .npy, loadable without pickle.
    with np.load(directory / "forests/account.npz", allow_pickle=False) as archive:
        assert sorted(archive.files) == sorted(scoring.STATE_ARRAYS)


def test_round_trip_scores_identically(saved: tuple[Model, Path]) -> None:
    model, directory = saved
    loaded = load_model(directory)
    assert loaded.model_id == model.model_id and len(model.model_id) == 16
    assert loaded.created == model.created and loaded.created.endswith("Z")
    assert loaded.training_span == SPAN
    assert loaded.config == model.config and loaded.metadata == model.metadata
    assert loaded.library_versions == model.library_versions
    assert loaded.thresholds == ScoringConfig.from_dict(model.config["scoring"]).severity
    for kind, scorer in model.scorers.items():
        again = loaded.scorers[kind]
        probe = _data(300, scorer.n_features_in_, seed=99) * 3
        np.testing.assert_array_equal(again.score_samples(probe), scorer.score_samples(probe))
        np.testing.assert_array_equal(again.calibrated(probe), scorer.calibrated(probe))
        assert again.explain(probe[:10]) == scorer.explain(probe[:10])
        assert again.get_params() == scorer.get_params()
        assert again.feature_names_ == scorer.feature_names_
    assert loaded.tables.keys() == model.tables.keys()
    for name, frame in model.tables.items():
        assert loaded.tables[name].equals(frame)


def test_model_id_is_stable_content_hash(saved: tuple[Model, Path], tmp_path: Path) -> None:
    model, _ = saved
    again = make_model()
    save_model(again, tmp_path / "again")
    assert again.model_id == model.model_id  # same training, different time of saving
    other = make_model(seed=1)
    save_model(other, tmp_path / "other")
    assert other.model_id != model.model_id
    retuned = make_model()
    retuned.config["scoring"]["severity"]["high"] = 0.9985
    save_model(retuned, tmp_path / "retuned")
    assert retuned.model_id != model.model_id
    # The same profile tables in other pieces (polars splits its work differently run to run).
    whole, pieces = make_model(), make_model()
    # (Parquet's bytes followed the pieces for tables this long: a model id changed between trainings.)
    table = pl.DataFrame({"device": pl.int_range(140_000, eager=True).cast(pl.String)}).with_columns(
        commands=pl.int_range(140_000) / 7)
    whole.tables["device_profile"], pieces.tables["device_profile"] = table, pl.concat(
        [table[:1000], table[1000:70_000], table[70_000:]], rechunk=False)
    assert pieces.tables["device_profile"].n_chunks() == 3
    save_model(whole, tmp_path / "whole")
    save_model(pieces, tmp_path / "pieces")
    assert pieces.model_id == whole.model_id


def test_training_span_in_other_zones_is_stored_as_utc(tmp_path: Path) -> None:
    model = make_model()
    zone = timezone(timedelta(hours=-5))
    model.training_span = (datetime(2026, 1, 4, 19, tzinfo=zone), datetime(2026, 4, 1, 18, 59, tzinfo=zone))
    loaded = load_model(save_model(model, tmp_path / "m"))
    assert loaded.training_span == SPAN and loaded.training_span[0].tzinfo == UTC


def test_model_without_profiles_or_scorers_round_trips(tmp_path: Path) -> None:
    model = Model(training_span=SPAN, scorers={})
    loaded = load_model(save_model(model, tmp_path / "empty"))
    assert loaded.scorers == {} and loaded.tables == {} and loaded.model_id == model.model_id


# -- atomic writing ----------------------------------------------------------------------------


def test_save_replaces_an_existing_model_atomically(tmp_path: Path) -> None:
    target = tmp_path / "model"
    first, second = make_model(), make_model(seed=3)
    save_model(first, target)
    save_model(second, target)
    assert load_model(target).model_id == second.model_id
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging or retired directories left


def test_failed_save_leaves_the_existing_model_untouched(tmp_path: Path) -> None:
    target = tmp_path / "model"
    good = make_model()
    save_model(good, target)
    before = {f: (target / f).read_bytes() for f in model_files(target)}
    broken = make_model()
    broken.scorers["device"] = WindowScorer()  # not fitted
    with pytest.raises(ModelError, match="not fitted"):
        save_model(broken, target)
    assert {f: (target / f).read_bytes() for f in model_files(target)} == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_save_refuses_to_replace_a_directory_that_is_not_a_model(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("precious")
    with pytest.raises(ModelError, match="not a model directory"):
        save_model(make_model(), home)
    assert (home / "notes.txt").read_text() == "precious"
    empty = tmp_path / "empty"
    empty.mkdir()
    save_model(make_model(), empty)  # an empty directory may be filled
    assert load_model(empty).scorers.keys() == {"account", "device"}


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: setattr(m, "training_span", (datetime(2026, 1, 1), datetime(2026, 2, 1))), "timezone-aware"),
    (lambda m: setattr(m, "training_span", (SPAN[1], SPAN[0])), "after it ends"),
    (lambda m: m.scorers.update({"Bad Kind": m.scorers["account"]}), "entity kind"),
    (lambda m: m.tables.update({"../escape": pl.DataFrame({"a": [1]})}), "table name"),
    (lambda m: m.metadata.update({"when": datetime(2026, 1, 1)}), "JSON-ready"),
    (lambda m: m.config.update({"scoring": {"severity": {"low": 0.9999}}}), "scoring config"),
    (lambda m: m.scorers["account"].set_params(random_state=np.random.RandomState(0)), "random_state"),
])
def test_save_rejects_invalid_models(tmp_path: Path, change, message: str) -> None:
    model = make_model()
    change(model)
    with pytest.raises(ModelError, match=message):
        save_model(model, tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


# -- refusing damaged or foreign models --------------------------------------------------------


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_any_changed_byte_of_model_json_is_detected(copy: Path) -> None:
    path = copy / "model.json"
    original = path.read_bytes()
    undetected = []
    for offset in range(len(original)):
        _flip(path, offset)
        try:  # plain try rather than pytest.raises: thousands of iterations
            load_model(copy)
            undetected.append(offset)
        except ModelError as exc:
            if "model.json" not in str(exc):
                undetected.append(offset)
        path.write_bytes(original)
    assert undetected == []
    load_model(copy)  # and the restored file loads again


@pytest.mark.parametrize("name", ["forests/account.npz", "forests/device.npz",
                                  "profiles/account_profile.parquet", "profiles/device_profile.parquet"])
def test_changed_bytes_of_data_files_are_detected(copy: Path, name: str) -> None:
    path = copy / name
    original = path.read_bytes()
    offsets = sorted({0, 1, len(original) // 2, len(original) - 1,
                      *np.random.default_rng(0).integers(0, len(original), 40).tolist()})
    for offset in offsets:
        _flip(path, offset)
        with pytest.raises(ModelError, match="modified after the model was written") as info:
            load_model(copy)
        assert name in str(info.value)
        path.write_bytes(original)


@pytest.mark.parametrize("name", ["model.json", "forests/account.npz", "profiles/device_profile.parquet"])
def test_truncated_files_are_detected(copy: Path, name: str) -> None:
    path = copy / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelError, match="truncated") as info:
        load_model(copy)
    assert name in str(info.value)


@pytest.mark.parametrize("name", ["model.json", "forests/device.npz", "profiles/account_profile.parquet"])
def test_deleted_files_are_detected(copy: Path, name: str) -> None:
    (copy / name).unlink()
    with pytest.raises(ModelError) as info:
        load_model(copy)
    assert name in str(info.value) and "ami-detector train" in str(info.value)


def test_of_several_damaged_files_the_first_listed_is_named(copy: Path) -> None:
    """The files are checked two at a time; the error is still the one reading them in order gives."""
    for name in ("forests/device.npz", "profiles/account_profile.parquet", "profiles/device_profile.parquet"):
        _flip(copy / name, 0)
    for _ in range(5):
        with pytest.raises(ModelError, match="modified after the model was written") as info:
            load_model(copy)
        assert "forests/device.npz" in str(info.value)


# -- read in the background -------------------------------------------------------------------


def test_loading_gives_the_settings_at_once_and_the_model_load_model_gives(saved: tuple[Model, Path]) -> None:
    _, directory = saved
    loaded = load_model(directory)
    with ModelLoading(directory) as loading:
        assert loading.settings == loaded.settings
        model = loading.result()
    assert model.model_id == loaded.model_id
    assert model.tables.keys() == loaded.tables.keys()
    for kind, scorer in loaded.scorers.items():
        X = _data(50, len(scorer.feature_names_), 3)
        np.testing.assert_array_equal(model.scorers[kind].score_samples(X), scorer.score_samples(X))


def test_loading_a_damaged_data_file_fails_at_the_result_naming_it(copy: Path) -> None:
    _flip(copy / "profiles/device_profile.parquet", 0)
    loading = ModelLoading(copy)  # model.json is sound: the settings are known
    assert loading.settings is not None
    with pytest.raises(ModelError, match="modified after the model was written") as info:
        loading.result()
    assert "profiles/device_profile.parquet" in str(info.value)


@pytest.mark.parametrize("damage", ["flip", "delete", "no directory"])
def test_loading_a_damaged_document_fails_at_once_as_load_model_does(copy: Path, damage: str) -> None:
    if damage == "flip":
        _flip(copy / "model.json", 40)
    elif damage == "delete":
        (copy / "model.json").unlink()
    else:
        copy = copy / "nowhere"
    with pytest.raises(ModelError) as expected:
        load_model(copy)
    with pytest.raises(ModelError) as info:
        ModelLoading(copy)
    assert str(info.value) == str(expected.value)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="ami-detector train"):
        load_model(tmp_path / "nowhere")


def _rewrite(directory: Path, change) -> None:
    """Edit model.json and re-seal it, as a buggy or foreign writer would (checksum consistent)."""
    path = directory / "model.json"
    document = json.loads(path.read_text())
    change(document)
    document["checksum"] = _checksum(document)
    path.write_text(json.dumps(document))


@pytest.mark.parametrize("version", [FORMAT_VERSION + 1, 0])
def test_other_format_versions_are_refused_with_advice(copy: Path, version: int) -> None:
    _rewrite(copy, lambda d: d.update(format_version=version))
    with pytest.raises(ModelError, match=f"format version {version}") as info:
        load_model(copy)
    assert "ami-detector train" in str(info.value)


def test_bumped_format_version_without_resealing_is_refused(copy: Path) -> None:
    path = copy / "model.json"
    path.write_text(path.read_text().replace('"format_version": 1', '"format_version": 2'))
    with pytest.raises(ModelError, match="format version 2 is not supported"):
        load_model(copy)


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.pop("kinds"), "missing key 'kinds'"),
    (lambda d: d.update(config=[]), "wrong type"),
    (lambda d: d.update(surprise=1), "unexpected key"),
    (lambda d: d["kinds"]["account"].pop("features"), "features"),
    (lambda d: d["kinds"]["account"].update(features=["logins", "fails"]), "split feature"),
    (lambda d: d["kinds"]["account"].update(n_training_windows=5), "records 5"),
    (lambda d: d.update(model_id="0" * 16), "model_id does not match"),
    (lambda d: d["training_span"].update(start="yesterday"), "ISO 8601"),
    (lambda d: d["files"].update({"../../etc/passwd": {"sha256": "0" * 64, "bytes": 1}}), "invalid file entry"),
    (lambda d: d["files"].pop("profiles/device_profile.parquet"), "do not match"),
    (lambda d: d["thresholds"].update(high=0.5), "thresholds do not match"),
])
def test_inconsistent_model_json_is_refused(copy: Path, change, message: str) -> None:
    _rewrite(copy, change)
    with pytest.raises(ModelError, match=message):
        load_model(copy)


def _replace_npz(directory: Path, kind: str, arrays: dict[str, np.ndarray], allow_pickle: bool = False) -> None:
    """Write different forest arrays and re-seal model.json so that only their content is wrong."""
    relative = f"forests/{kind}.npz"
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=allow_pickle, **arrays)
    data = buffer.getvalue()
    (directory / relative).write_bytes(data)
    _rewrite(directory, lambda d: d["files"].update(
        {relative: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}}))


def _arrays(directory: Path, kind: str) -> dict[str, np.ndarray]:
    with np.load(directory / f"forests/{kind}.npz", allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


@pytest.mark.parametrize(("change", "message"), [
    (lambda a: a.update(threshold=a["threshold"].astype(np.float32)), "'threshold' must be float64"),
    (lambda a: a.update(feature_quantiles=a["feature_quantiles"][:, :1]), "feature_quantiles"),
    (lambda a: a.pop("train_scores"), "missing arrays"),
    (lambda a: a.update(children_left=np.zeros_like(a["children_left"])), "children_left"),
])
def test_wrong_arrays_are_refused(copy: Path, change, message: str) -> None:
    arrays = _arrays(copy, "account")
    change(arrays)
    _replace_npz(copy, "account", arrays)
    with pytest.raises(ModelError, match=message) as info:
        load_model(copy)
    assert "forests/account.npz" in str(info.value)


UNPICKLED: list[str] = []


def _record_unpickling() -> str:
    UNPICKLED.append("code ran")
    return "payload"


class _Payload:
    def __reduce__(self):
        return (_record_unpickling, ())


def test_pickled_arrays_are_never_unpickled(copy: Path) -> None:
    arrays = _arrays(copy, "device")
    arrays["train_scores"] = np.array([_Payload()], dtype=object)
    _replace_npz(copy, "device", arrays, allow_pickle=True)
    with pytest.raises(ModelError, match="forests/device.npz"):
        load_model(copy)
    assert UNPICKLED == []


def test_symlinked_files_are_refused(copy: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.parquet"
    shutil.move(copy / "profiles/device_profile.parquet", outside)
    os.symlink(outside, copy / "profiles/device_profile.parquet")
    with pytest.raises(ModelError, match="regular file"):
        load_model(copy)


def test_errors_are_detector_errors(copy: Path) -> None:
    (copy / "forests/account.npz").unlink()
    with pytest.raises(DetectorError):
        load_model(copy)
    assert issubclass(ModelError, ValueError)


def test_no_pickle_in_scoring_or_model_store() -> None:
    """The modules import no pickling library and never allow numpy to unpickle."""
    for module in (scoring, model_store):
        tree = ast.parse(Path(module.__file__).read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module}
        forbidden = {"pickle", "cPickle", "joblib", "cloudpickle", "dill", "shelve", "marshal", "skops"}
        assert not imported & forbidden
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load":
                keywords = {k.arg: k.value for k in node.keywords}
                if "allow_pickle" in keywords or getattr(node.func.value, "id", None) == "np":
                    assert isinstance(keywords.get("allow_pickle"), ast.Constant)
                    assert keywords["allow_pickle"].value is False


def test_loading_calls_then_with_the_model_in_the_background(saved: tuple[Model, Path]) -> None:
    _, directory = saved
    calls: list[tuple[Model, str]] = []
    with ModelLoading(directory, then=lambda model: calls.append((model, threading.current_thread().name))) as loading:
        model = loading.result()
    assert len(calls) == 1 and calls[0][0] is model
    assert calls[0][1] != threading.current_thread().name


def test_an_error_of_then_is_raised_by_the_result(saved: tuple[Model, Path]) -> None:
    _, directory = saved

    def fail(model: Model) -> None:
        raise ModelError("cannot prepare")

    loading = ModelLoading(directory, then=fail)
    with pytest.raises(ModelError, match="cannot prepare"):
        loading.result()
