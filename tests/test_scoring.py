"""Tests of the isolation-forest scorer: sklearn equivalence, calibration, explanations, config."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.ensemble import IsolationForest
from sklearn.exceptions import NotFittedError

from detector.errors import ConfigError, DetectorError
from detector.findings import FINDINGS_SCHEMA
from detector.scoring import (
    SEVERITIES,
    ColdStartError,
    ForestArrays,
    ScoringConfig,
    ScoringError,
    SeenCells,
    SeverityThresholds,
    TrainingColumns,
    WindowScorer,
    _factorize,
    average_path_length,
    severity,
)


def gaussian(n: int = 1000, d: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d))


def counts(n: int = 3000, seed: int = 0) -> np.ndarray:
    """Account-window-like data: logins per hour around 3, remote disconnects almost always 0."""
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.poisson(3.0, n), rng.poisson(0.2, n)]).astype(np.float64)


@pytest.fixture(scope="module")
def fitted() -> tuple[WindowScorer, np.ndarray]:
    X = gaussian(1500, 3, seed=1)
    return WindowScorer(random_state=7).fit(X, ["a", "b", "c"]), X


# -- equivalence with sklearn ------------------------------------------------------------------


@pytest.mark.parametrize(("data", "max_samples"), [
    (gaussian(800, 4, seed=2), 256),
    (counts(600, seed=3), 256),  # integer values: thresholds fall between float32 neighbours
    (gaussian(120, 3, seed=4), 256),  # fewer windows than max_samples
])
def test_numpy_scores_equal_sklearn(data: np.ndarray, max_samples: int) -> None:
    names = [f"f{i}" for i in range(data.shape[1])]
    scorer = WindowScorer(n_estimators=100, max_samples=max_samples, random_state=11).fit(data, names)
    forest = IsolationForest(n_estimators=100, max_samples=min(max_samples, len(data)),
                             random_state=11).fit(data)
    rng = np.random.default_rng(5)
    probe = np.vstack([data, rng.normal(scale=4.0, size=(300, data.shape[1])), np.round(data[:50] + 1)])
    np.testing.assert_allclose(scorer.score_samples(probe), -forest.score_samples(probe), rtol=0, atol=1e-9)


def test_forest_arrays_with_feature_subsampling_equal_sklearn() -> None:
    # WindowScorer always uses every feature; the extraction must still handle sklearn's subsets.
    data = gaussian(500, 6, seed=6)
    forest = IsolationForest(n_estimators=60, max_features=3, random_state=1).fit(data)
    arrays = ForestArrays.from_sklearn(forest)
    probe = gaussian(400, 6, seed=7) * 2
    np.testing.assert_allclose(arrays.score(probe.astype(np.float32)), -forest.score_samples(probe),
                               rtol=0, atol=1e-9)


def test_compiled_traversal_and_numpy_walk_give_identical_scores() -> None:
    # Scoring walks sklearn Tree objects rebuilt from the arrays; the numpy walk is the fallback
    # when sklearn's private Tree layout changes. Both must give the same bits.
    data = counts(700, seed=8)
    arrays = ForestArrays.from_sklearn(IsolationForest(n_estimators=80, random_state=3).fit(data))
    assert arrays._compiled is not None
    probe = np.vstack([data, np.round(data[:100] * 3)]).astype(np.float32)
    compiled = arrays.score(probe)
    object.__setattr__(arrays, "_compiled", None)
    np.testing.assert_array_equal(arrays.score(probe), compiled)


def test_scoring_one_row_per_cell_equals_walking_every_row() -> None:
    # Rows are grouped by their cell of the forest's splits and one row per cell is walked. With
    # 30 continuous features the folded cell key must be renumbered several times (no overflow);
    # values exactly at a threshold go left in sklearn and must land in the same cell as below it.
    data = gaussian(600, 30, seed=9)
    arrays = ForestArrays.from_sklearn(IsolationForest(n_estimators=50, random_state=4).fit(data))
    at_threshold = data[:200].copy()
    for j in range(30):
        cuts = arrays.threshold[(arrays.feature == j) & (arrays.children_left != -1)]
        at_threshold[:, j] = cuts[np.arange(200) % cuts.shape[0]]
    probe = np.vstack([data, at_threshold, np.nextafter(at_threshold, np.inf), data[:300]]).astype(np.float32)
    first, _ = arrays._distinct_cells(probe)
    assert first.shape[0] < probe.shape[0]  # the repeated rows share cells
    np.testing.assert_array_equal(arrays.score(probe), arrays._path_score(probe))
    np.testing.assert_array_equal(arrays.attribution(probe), arrays._attribution(probe))
    assert arrays.score(probe[:0]).shape == (0,)

def test_average_path_length_matches_definition() -> None:
    n = np.array([0, 1, 2, 3, 256])
    expected = [0.0, 0.0, 1.0, 2 * (np.log(2) + np.euler_gamma) - 4 / 3,
                2 * (np.log(255) + np.euler_gamma) - 2 * 255 / 256]
    np.testing.assert_allclose(average_path_length(n), expected)


# -- calibration -------------------------------------------------------------------------------


def test_calibration_monotone_and_in_unit_interval(fitted: tuple[WindowScorer, np.ndarray]) -> None:
    scorer, X = fitted
    probe = np.vstack([X, gaussian(2000, 3, seed=9) * 3])
    raw, cal = scorer.score_samples(probe), scorer.calibrated(probe)
    assert ((cal >= 0) & (cal < 1)).all()
    order = np.argsort(raw, kind="stable")
    assert (np.diff(cal[order]) >= 0).all()
    assert abs(np.median(scorer.calibrated(X)) - 0.5) < 0.02
    np.testing.assert_array_equal(cal, scorer.calibrate(raw))


_MODULE_SCORER = WindowScorer(n_estimators=20, random_state=0).fit(gaussian(300, 2, seed=12), ["x", "y"])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=50))
def test_calibrate_is_monotone_for_any_raw_scores(raw: list[float]) -> None:
    scorer = _MODULE_SCORER
    values = np.sort(np.asarray(raw))
    cal = scorer.calibrate(values)
    assert (np.diff(cal) >= 0).all()
    assert ((cal >= 0) & (cal <= scorer.n_training_windows / (scorer.n_training_windows + 1))).all()


def test_calibrated_score_is_share_of_baseline_strictly_below(fitted: tuple[WindowScorer, np.ndarray]) -> None:
    scorer, X = fitted
    train = scorer.score_samples(X)
    probe = gaussian(50, 3, seed=13)
    raw = scorer.score_samples(probe)
    expected = [(train < r).sum() / (len(X) + 1) for r in raw]
    np.testing.assert_allclose(scorer.calibrated(probe), expected)


def test_ordinary_windows_rarely_reach_low() -> None:
    # The conformal calibration bounds the false-alarm rate: P(score >= t) <= 1 - t for windows
    # like the baseline.
    scorer = WindowScorer(n_estimators=100, random_state=0).fit(gaussian(3000, 3, seed=14), ["a", "b", "c"])
    fresh = scorer.calibrated(gaussian(10000, 3, seed=15))
    assert (fresh >= 0.99).mean() < 0.015
    assert (fresh >= 0.9).mean() < 0.12


def _correlated_tail(n: int, seed: int) -> np.ndarray:
    """Gaussian windows and a tail feature that fires (the larger, the rarer) when a window is unusual anyway."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    rare = np.where(np.abs(X[:, 0]) > 1.5, np.abs(X[:, 0]) + rng.exponential(1.0, n), 0.0)
    return np.column_stack([X, rare])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_combined_scores_of_windows_like_the_baseline_keep_their_meaning(seed: int) -> None:
    # The combined score reads as the share of baseline windows a window is rarer than, so windows
    # like the baseline reach t about 1 - t of the time, also when the forest and the tail agree on
    # the same windows: the calibration must take each training window's own two ranks together
    # (paired across windows, it made such scores about a third too low).
    names = ["a", "b", "c", "rare"]
    scorer = WindowScorer(n_estimators=100, random_state=seed).fit(_correlated_tail(3000, 10 + seed), names,
                                                                   tail_features=["rare"])
    fresh = scorer.combined(_correlated_tail(30000, 20 + seed))[0]
    for t in (0.8, 0.9, 0.95):
        assert 0.8 < (fresh >= t).mean() / (1 - t) < 1.25


# -- outliers and explanations -----------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_obvious_outlier_scores_high_and_is_explained_by_its_feature(seed: int) -> None:
    X = counts(3000, seed=seed)
    scorer = WindowScorer(random_state=seed).fit(X, ["logins", "disconnects"])
    outlier = np.array([[3.0, 500.0]])  # ordinary logins, 500 remote disconnects in an hour
    assert scorer.calibrated(outlier)[0] > 0.99
    (explanation,) = scorer.explain(outlier)
    top = explanation[0]
    assert top["feature"] == "disconnects"
    assert top["value"] == 500.0 and top["baseline"] == 0.0
    assert top["contribution"] > 0.6


def test_explanation_names_extreme_feature_in_gaussian_data() -> None:
    X = gaussian(1000, 2, seed=3)
    scorer = WindowScorer(random_state=3).fit(X, ["f0", "f1"])
    (explanation,) = scorer.explain(np.array([[0.0, 9.0]]))
    assert explanation[0]["feature"] == "f1"
    assert explanation[0]["contribution"] > 0.7


def test_explanation_shape_and_normalisation(fitted: tuple[WindowScorer, np.ndarray]) -> None:
    scorer, X = fitted
    rows = X[:20]
    for explanation in scorer.explain(rows, top_k=2):
        assert 1 <= len(explanation) <= 2
        assert all(set(item) == {"feature", "value", "baseline", "contribution"} for item in explanation)
        shares = [item["contribution"] for item in explanation]
        assert shares == sorted(shares, reverse=True) and all(s > 0 for s in shares)
    for row, explanation in zip(rows, scorer.explain(rows, top_k=3), strict=True):
        assert sum(item["contribution"] for item in explanation) == pytest.approx(1.0)
        for item in explanation:
            j = scorer.feature_names_.index(item["feature"])
            assert item["value"] == row[j]
            assert item["baseline"] == scorer.feature_median_[j]
    with pytest.raises(ScoringError):
        scorer.explain(rows, top_k=0)


def test_forest_saturates_beyond_the_training_range_and_ignores_constant_features() -> None:
    """Known limits of an isolation forest, pinned so that rules cover them (see beyond_baseline)."""
    X = np.column_stack([counts(2000, seed=4), np.zeros(2000)])
    scorer = WindowScorer(random_state=0).fit(X, ["logins", "disconnects", "log_cleared"])
    top = X[:, 1].max()
    probe = np.array([[3.0, top, 0.0], [3.0, 10 * top, 0.0], [3.0, 0.0, 0.0], [3.0, 0.0, 1.0]])
    raw = scorer.score_samples(probe)
    assert raw[0] == raw[1]  # 10x the baseline maximum looks like the maximum
    assert raw[2] == raw[3]  # a value never seen in a constant feature is invisible
    np.testing.assert_array_equal(scorer.beyond_baseline(probe),
                                  [[False, False, False], [False, True, False],
                                   [False, False, False], [False, False, True]])


# -- determinism and estimator conventions -----------------------------------------------------


def test_training_quantiles_and_medians_are_numpys_of_each_column() -> None:
    # Both come from one scratch copy partitioned in place: they must be numpy's of the column itself.
    rng = np.random.default_rng(31)
    X = np.column_stack([rng.poisson(2.0, 3001), rng.normal(size=3001), rng.poisson(0.1, 3001)]).astype(np.float64)
    scorer = WindowScorer(n_estimators=10, random_state=2).fit(X, ["events", "spread", "rare"])
    np.testing.assert_array_equal(scorer.feature_quantiles_, np.quantile(X, scorer.quantile_levels_, axis=0))
    np.testing.assert_array_equal(scorer.feature_median_, np.median(X, axis=0))


def test_fit_reorders_only_fresh_columns() -> None:
    # Columns handed over as fresh are partitioned in place for the quantiles; a caller's matrix stays as it was,
    # and both give the same scorer.
    data = counts(900, seed=12)
    kept = data.copy()
    names = [f"f{i}" for i in range(data.shape[1])]
    from_matrix = WindowScorer(n_estimators=20, random_state=2).fit(data, names)
    np.testing.assert_array_equal(data, kept)
    handed = TrainingColumns(data.shape[0], data.shape[1], lambda j: data[:, j].copy(), fresh=True)
    from_columns = WindowScorer(n_estimators=20, random_state=2).fit(handed, names)
    np.testing.assert_array_equal(data, kept)
    for name, value in from_matrix.get_state().items():
        np.testing.assert_array_equal(from_columns.get_state()[name], value, err_msg=name)


def test_same_seed_gives_identical_scores() -> None:
    X, probe = gaussian(600, 3, seed=20), gaussian(200, 3, seed=21)
    first = WindowScorer(n_estimators=50, random_state=5).fit(X, ["a", "b", "c"])
    second = WindowScorer(n_estimators=50, random_state=5).fit(X, ["a", "b", "c"])
    other = WindowScorer(n_estimators=50, random_state=6).fit(X, ["a", "b", "c"])
    np.testing.assert_array_equal(first.score_samples(probe), second.score_samples(probe))
    assert first.explain(probe[:5]) == second.explain(probe[:5])
    assert not np.array_equal(first.score_samples(probe), other.score_samples(probe))


def test_scikit_learn_is_imported_only_to_walk_many_rows() -> None:
    # Importing scikit-learn (and scipy) takes longer than loading a model or scoring a small scan: the
    # package imports it neither at start nor with a forest; a process's first rows are walked in numpy,
    # and a walk beyond them imports it for its compiled trees, which give the same scores.
    script = """
import json, sys
import numpy as np
import detector.api
from detector.lazy_sklearn import NUMPY_WALK_ROWS
from detector.scoring import ForestArrays
assert "sklearn" not in sys.modules, "imported at start"
arrays = ForestArrays(tree_offsets=np.array([0, 3, 6]), children_left=np.array([1, -1, -1, 1, -1, -1]),
                      children_right=np.array([2, -1, -1, 2, -1, -1]), feature=np.array([0, -2, -2, 1, -2, -2]),
                      threshold=np.array([0.5, -2.0, -2.0, 0.25, -2.0, -2.0]),
                      n_node_samples=np.array([4, 1, 3, 4, 2, 2]), max_samples=4, n_features=2)
assert "sklearn" not in sys.modules, "imported with a forest"
rows = np.random.default_rng(0).random((NUMPY_WALK_ROWS + 1, 2), dtype=np.float32)
few = arrays._path_score(rows[:100])
assert "sklearn" not in sys.modules, "imported to walk a few rows"
many = arrays._path_score(rows)
assert "sklearn.tree._tree" in sys.modules and arrays._compiled is not None, "not imported to walk many rows"
print(json.dumps({"few": few.tolist(), "many": many[:100].tolist(), "distinct": len(set(many.tolist()))}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    scores = json.loads(done.stdout)
    assert scores["few"] == scores["many"] and scores["distinct"] == 2  # the first tree decides: one leaf of 1, one of 3


def test_sklearn_estimator_conventions() -> None:
    scorer = WindowScorer(n_estimators=30, max_samples=64, random_state=3, min_windows=10)
    assert scorer.get_params() == {"n_estimators": 30, "max_samples": 64, "random_state": 3, "min_windows": 10}
    twin = clone(scorer)
    assert twin is not scorer and twin.get_params() == scorer.get_params()
    assert twin.set_params(n_estimators=40) is twin and twin.n_estimators == 40
    with pytest.raises(ValueError, match="invalid parameter 'trees'"):
        twin.set_params(trees=3)
    assert repr(twin) == "WindowScorer(n_estimators=40, max_samples=64, random_state=3, min_windows=10)"
    assert repr(WindowScorer()) == "WindowScorer()"
    X = gaussian(100, 2)
    for use in (scorer.score_samples, scorer.calibrated, scorer.explain, scorer.beyond_baseline):
        with pytest.raises(NotFittedError):
            use(X)
    with pytest.raises(NotFittedError):
        scorer.get_state()
    assert scorer.fit(X, ["x", "y"]) is scorer
    assert not hasattr(clone(scorer), "forest_")  # clone copies parameters, never learned state
    assert scorer.n_features_in_ == 2 and scorer.feature_names_ == ["x", "y"]
    assert scorer.forest_.n_trees == 30


def test_cold_start_is_explicit() -> None:
    with pytest.raises(ColdStartError) as info:
        WindowScorer(min_windows=100).fit(gaussian(40, 2), ["x", "y"])
    assert info.value.n_windows == 40 and info.value.min_windows == 100
    assert "40" in str(info.value) and "100" in str(info.value)
    assert isinstance(info.value, DetectorError) and isinstance(info.value, ValueError)


def test_polars_frame_input_is_matched_by_column_name(fitted: tuple[WindowScorer, np.ndarray]) -> None:
    scorer, X = fitted
    frame = pl.DataFrame({"c": X[:30, 2], "extra": np.ones(30), "a": X[:30, 0], "b": X[:30, 1]})
    np.testing.assert_array_equal(scorer.score_samples(frame), scorer.score_samples(X[:30]))
    refit = WindowScorer(n_estimators=20, random_state=0, min_windows=10).fit(frame.select("a", "b", "c"))
    assert refit.feature_names_ == ["a", "b", "c"]
    with pytest.raises(ScoringError, match="missing"):
        scorer.score_samples(frame.drop("b"))


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e39])
def test_non_finite_features_are_refused_with_their_name(fitted: tuple[WindowScorer, np.ndarray],
                                                        bad: float) -> None:
    scorer, X = fitted
    rows = X[:5].copy()
    rows[2, 1] = bad
    with pytest.raises(ScoringError, match="'b'"):
        scorer.score_samples(rows)
    with pytest.raises(ScoringError, match="'b'"):
        WindowScorer().fit(np.vstack([X, rows]), ["a", "b", "c"])


def test_wrong_shapes_and_names_are_refused(fitted: tuple[WindowScorer, np.ndarray]) -> None:
    scorer, X = fitted
    with pytest.raises(ScoringError, match="3 feature columns"):
        scorer.score_samples(X[:, :2])
    with pytest.raises(ScoringError):
        WindowScorer().fit(X, ["a", "a", "c"])
    with pytest.raises(ScoringError):
        WindowScorer().fit(X)  # no names for a plain matrix
    with pytest.raises(ScoringError):
        WindowScorer(n_estimators=0).fit(X, ["a", "b", "c"])


# -- state round trip and validation -----------------------------------------------------------


def test_state_round_trip_scores_identically(fitted: tuple[WindowScorer, np.ndarray]) -> None:
    scorer, X = fitted
    copy = WindowScorer.from_state({k: v.copy() for k, v in scorer.get_state().items()},
                                   scorer.feature_names_, scorer.get_params())
    probe = np.vstack([X, gaussian(100, 3, seed=30) * 5])
    np.testing.assert_array_equal(copy.score_samples(probe), scorer.score_samples(probe))
    np.testing.assert_array_equal(copy.calibrated(probe), scorer.calibrated(probe))
    assert copy.explain(probe[-5:]) == scorer.explain(probe[-5:])
    assert copy.get_params() == scorer.get_params()


def _corrupt(state: dict[str, np.ndarray], name: str, change) -> dict[str, np.ndarray]:
    state = {k: v.copy() for k, v in state.items()}
    state[name] = change(state[name])
    return state


def _set(index: int, value):
    def change(array: np.ndarray) -> np.ndarray:
        array[index] = value
        return array
    return change


@pytest.mark.parametrize(("name", "change", "message"), [
    ("threshold", lambda a: a.astype(np.float32), "float64"),
    ("children_left", _set(0, 0), "backwards"),  # root pointing at itself: a cycle
    ("children_right", _set(0, 10**6), "outside its tree"),
    ("feature", _set(0, 3), "split feature"),
    ("n_node_samples", _set(1, 10**6), "sample count"),
    ("tree_offsets", lambda a: a[:-1], "tree_offsets"),
    ("train_scores", lambda a: a[::-1].copy(), "sorted"),
    ("feature_median", lambda a: a[:2], "feature_median"),
    ("feature_quantiles", lambda a: a.T.copy(), "feature_quantiles"),
    ("max_samples", lambda a: np.array([256]), "scalar"),
])
def test_from_state_rejects_inconsistent_arrays(fitted: tuple[WindowScorer, np.ndarray], name: str,
                                               change, message: str) -> None:
    scorer, _ = fitted
    with pytest.raises(ScoringError, match=message):
        WindowScorer.from_state(_corrupt(scorer.get_state(), name, change), scorer.feature_names_)


def test_from_state_rejects_missing_arrays_and_wrong_names(fitted: tuple[WindowScorer, np.ndarray]) -> None:
    scorer, _ = fitted
    state = scorer.get_state()
    with pytest.raises(ScoringError, match="missing arrays"):
        WindowScorer.from_state({k: v for k, v in state.items() if k != "threshold"}, scorer.feature_names_)
    with pytest.raises(ScoringError, match="split feature"):
        WindowScorer.from_state(state, ["a", "b"])  # the trees split on a third feature
    with pytest.raises(ScoringError, match="parameters"):
        WindowScorer.from_state(state, scorer.feature_names_, {"n_trees": 3})


# -- severity and configuration ----------------------------------------------------------------


def test_severity_mapping() -> None:
    config = ScoringConfig()
    scores = np.array([0.0, 0.5, 0.98999, 0.99, 0.9949, 0.995, 0.999, 0.99989, 0.9999, 1.0])
    expected = ["none", "none", "none", "low", "low", "medium", "high", "high", "critical", "critical"]
    assert severity(scores, config).tolist() == expected
    assert severity(0.9995, config) == "high" and isinstance(severity(0.9995, config), str)
    assert severity(0.5) == "none"
    assert severity(scores.reshape(2, 5), config.severity).shape == (2, 5)
    custom = SeverityThresholds(low=0.5, medium=0.6, high=0.7, critical=0.8)
    assert severity(np.array([0.55, 0.65, 0.75, 0.85]), custom).tolist() == list(SEVERITIES[1:])
    for bad in (np.nan, -0.1, 1.5):
        with pytest.raises(ScoringError):
            severity(bad, config)


def test_scoring_config_from_dict() -> None:
    assert ScoringConfig.from_dict({}) == ScoringConfig()
    config = ScoringConfig.from_dict({"n_estimators": 50, "random_state": 4,
                                      "severity": {"high": 0.998, "critical": 1}})
    assert config.n_estimators == 50 and config.severity.high == 0.998 and config.severity.critical == 1.0
    assert config.severity.low == 0.99
    assert ScoringConfig.from_dict(config.to_dict()) == config
    scorer = config.make_scorer()
    assert scorer.get_params() == {"n_estimators": 50, "max_samples": 256, "random_state": 4,
                                   "min_windows": 100}


@pytest.mark.parametrize("table", [
    {"n_trees": 10},
    {"n_estimators": 0},
    {"n_estimators": True},
    {"max_samples": "auto"},
    {"random_state": -1},
    {"severity": {"low": 0.999, "medium": 0.995}},
    {"severity": {"urgent": 0.5}},
    {"severity": {"critical": 1.5}},
    {"severity": 0.9},
])
def test_scoring_config_rejects_bad_tables(table: dict) -> None:
    with pytest.raises(ConfigError):
        ScoringConfig.from_dict(table)


def test_top_features_of_findings_follow_explain_with_the_tail_lead_first() -> None:
    # Findings build top_features from arrays; they must say what explain() says, except that a
    # window raised by the tail component has that feature first at 0.5 and the rest at half credit.
    from detector.detection import _top_features

    data = gaussian(800, 4, seed=12)
    scorer = WindowScorer(random_state=2).fit(data, ["a", "b", "c", "d"])
    probe = np.vstack([data[:30], data[:10] * 6])
    lead = np.where(np.arange(40) % 3 == 0, np.arange(40) % 4, -1)
    top = _top_features(scorer, probe, lead, top_k=3)
    series = top.series()
    assert series.dtype == FINDINGS_SCHEMA["top_features"]
    for r, (row, explained) in enumerate(zip(probe, scorer.explain(probe, top_k=3), strict=True)):
        if lead[r] >= 0:
            j = int(lead[r])
            expected = [{"feature": scorer.feature_names_[j], "value": float(row[j]),
                         "baseline": float(scorer.feature_median_[j]), "contribution": 0.5}]
            expected += [dict(t, contribution=t["contribution"] * 0.5) for t in explained
                         if t["feature"] != scorer.feature_names_[j]]
        else:
            expected = explained
        assert series[r].to_list() == expected
        assert top.of(r) == [{"feature": t["feature"], "value": t["value"]} for t in expected]


def test_factorize_equals_numpy_unique_hashed_or_sorted() -> None:
    # Cells are told apart by hashing from _HASHED_FROM rows on, by np.unique below: both must give
    # np.unique's first rows and inverse, in ascending order of the values.
    rng = np.random.default_rng(12)
    for rows in (0, 1, 500, (1 << 16) + 3000):
        key = rng.integers(-50, 900, rows).astype(np.int64) * 1_000_003
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        got_first, got_inverse = _factorize(key)
        np.testing.assert_array_equal(got_first, first)
        np.testing.assert_array_equal(got_inverse, inverse.reshape(rows))


def _combined_row_by_row(scorer: WindowScorer, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What WindowScorer.combined computed before it ranked per cell: every window's forest path
    walked and every window's tail scored and ranked on its own."""
    n = scorer.train_scores_.shape[0]
    tail_raw, rarest = scorer._tail(matrix)
    forest_raw = scorer.forest_._path_score(matrix.astype(np.float32))
    forest_rank = np.searchsorted(scorer.train_scores_, forest_raw, side="left")
    tail_rank = np.searchsorted(scorer.train_tail_, tail_raw, side="left")
    combined = np.maximum(forest_rank, tail_rank) / (n + 1.0)
    return (np.searchsorted(scorer.train_combined_, combined, side="left") / (n + 1.0), rarest,
            tail_rank > forest_rank)


@pytest.mark.parametrize("rows", [0, 1, 2000, (1 << 16) + 500])
def test_combined_ranked_per_cell_equals_ranking_every_window(rows: int) -> None:
    # Device-window-like counts: many windows alike (ties), a few with rare tail values, some
    # beyond every training value, zero and negative tail values (never rare).
    rng = np.random.default_rng(rows)
    def windows(n: int) -> np.ndarray:
        return np.column_stack([rng.poisson(3.0, n), rng.poisson(0.05, n), rng.poisson(0.01, n) * 7,
                                rng.normal(size=n).round(1), rng.choice([-1.0, 0.0, 0.0, 0.0, 2.0], n)])
    scorer = WindowScorer(n_estimators=40, random_state=2).fit(
        windows(3000), feature_names=["a", "b", "c", "d", "e"], tail_features=["b", "c", "e"])
    probe = windows(rows)
    probe[: rows // 50, 2] = 1000.0  # beyond the baseline
    got = scorer.combined(probe)
    expected = _combined_row_by_row(scorer, probe)
    for mine, theirs in zip(got, expected, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert rows < 2000 or (0 < got[2].sum() < rows)  # both the tail and the forest lead somewhere


@pytest.mark.parametrize("active", [0, 1, 5, 33, 64])
def test_training_tail_scores_only_windows_with_a_positive_tail_value_to_the_bit(active: int, monkeypatch) -> None:
    # In sample, windows without a positive tail value are not computed: the scores must be those of
    # every window in column-major blocks, bit for bit, with a lone active row in the last block too.
    from detector import scoring

    monkeypatch.setattr(scoring, "_TAIL_BLOCK", 16)  # 33 active rows: two blocks and a lone row
    rng = np.random.default_rng(active)
    rows = 400
    X = np.column_stack([rng.poisson(3.0, rows), np.zeros(rows), np.zeros(rows), rng.choice([-1.0, 0.0], rows)])
    at = rng.choice(rows, size=active, replace=False)
    X[at, 1] = rng.choice([1.0, 2.0, 9.0], active)
    X[at[: active // 2], 2] = rng.normal(size=active // 2).round(2)
    scorer = WindowScorer(n_estimators=10, random_state=3).fit(X, ["a", "b", "c", "d"], tail_features=["b", "c", "d"])
    tail = np.asfortranarray(X[:, scorer.tail_index_])
    every, _ = scorer._tail_blocks(lambda start, stop: np.asfortranarray(tail[start:stop]), rows, True)
    got, positive = scorer._train_tail(np.ascontiguousarray(tail))
    assert got.tobytes() == every.tobytes()
    assert np.array_equal(positive, np.flatnonzero((tail > 0.0).any(axis=1)))
    assert (got[np.setdiff1d(np.arange(rows), positive)] == 0.0).all()
    assert scorer.train_tail_.tobytes() == np.sort(every).tobytes()


def test_cells_seen_in_earlier_slices_are_not_walked_again_and_score_the_same(monkeypatch) -> None:
    # Twenty features of rounded values: cells repeat between the two "days", and their keys need
    # several int64 columns (stable from one matrix to the next, unlike the per-matrix cell numbers).
    rng = np.random.default_rng(5)
    def day(n: int) -> np.ndarray:
        return rng.normal(size=(n, 20)).round(0)
    scorer = WindowScorer(n_estimators=60, random_state=3).fit(
        day(2000), feature_names=[f"f{j}" for j in range(20)], tail_features=["f0", "f1"])
    first, second = day(3000), day(3000)
    second[:1500] = first[rng.permutation(3000)[:1500]]  # half of the second day's windows seen before
    assert scorer.forest_.cell_keys(first.astype(np.float32)).width > 1
    walked: list[int] = []
    path_score = ForestArrays._path_score
    monkeypatch.setattr(ForestArrays, "_path_score", lambda self, X32: (walked.append(X32.shape[0]),
                                                                       path_score(self, X32))[1])
    seen = SeenCells()
    for matrix in (first, second):
        walked.clear()
        alone = scorer.combined(matrix)
        walked_alone = sum(walked)
        walked.clear()
        for mine, theirs in zip(scorer.combined(matrix, seen), alone, strict=True):
            np.testing.assert_array_equal(mine, theirs)
        assert sum(walked) <= walked_alone
    assert sum(walked) < walked_alone - 500  # the second day's seen cells were not walked again
    other = WindowScorer(n_estimators=10, random_state=4).fit(first, feature_names=[f"f{j}" for j in range(20)])
    np.testing.assert_array_equal(other.combined(second, seen)[0], other.combined(second)[0])  # another forest
