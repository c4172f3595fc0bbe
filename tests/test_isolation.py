"""The forest grown from each tree's own rows is scikit-learn's IsolationForest, node for node."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from detector.isolation import grow_forest
from detector.scoring import ForestArrays


def _data(kind: str, rows: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        return rng.normal(size=(rows, width)).astype(np.float32)
    # Counts like the windows': mostly zeros, ties everywhere, a constant column.
    data = rng.poisson(0.3, size=(rows, width)).astype(np.float32)
    data[:, 0] = 0.0
    return data


def _same(grown: ForestArrays, fitted: ForestArrays) -> None:
    for name in ("tree_offsets", "children_left", "children_right", "feature", "threshold", "n_node_samples"):
        np.testing.assert_array_equal(getattr(grown, name), getattr(fitted, name), err_msg=name)
    assert (grown.max_samples, grown.n_features) == (fitted.max_samples, fitted.n_features)


@pytest.mark.parametrize(("kind", "rows", "width", "max_samples", "trees"), [
    ("gaussian", 3000, 5, 256, 40),
    ("counts", 2500, 8, 256, 40),
    ("counts", 150, 4, 150, 20),  # every row in every tree
    ("gaussian", 700, 3, 64, 30),
])
def test_grown_forest_equals_sklearns(kind: str, rows: int, width: int, max_samples: int, trees: int) -> None:
    data = _data(kind, rows, width, seed=rows)
    fitted = IsolationForest(n_estimators=trees, max_samples=max_samples, max_features=1.0, bootstrap=False,
                             random_state=7).fit(data)
    _same(grown := grow_forest(data, trees, max_samples, 7), ForestArrays.from_sklearn(fitted))
    np.testing.assert_array_equal(grown.score(data), -fitted.score_samples(data))


def test_a_random_state_object_draws_as_sklearn_does() -> None:
    # One generator serves the target and the seeds (the target's draws come first).
    data = _data("gaussian", 1000, 4, seed=1)
    fitted = IsolationForest(n_estimators=25, max_samples=128, random_state=np.random.RandomState(3)).fit(data)
    _same(grow_forest(data, 25, 128, np.random.RandomState(3)), ForestArrays.from_sklearn(fitted))
