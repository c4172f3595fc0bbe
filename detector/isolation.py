"""Growing the isolation forest of a scorer: scikit-learn's trees, grown from each tree's own rows.

``IsolationForest(max_features=1.0, bootstrap=False).fit(X)`` grows each tree on the whole matrix with a
weight per row, one for the ``max_samples`` rows drawn for the tree and zero for the others: for each of
its trees it counts, converts and validates a weight for every one of millions of training windows, and
the tree's splitter walks all of them to keep the drawn ones. :func:`grow_forest` hands each tree only
its drawn rows instead, in increasing order (the order the splitter keeps them in), with the same seeds
and the same random draws, so the trees are the ones scikit-learn grows, node for node and bit for bit
(``tests/test_isolation.py`` holds them to it); only scikit-learn's public tree and sampling functions
are used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from detector.scoring import ForestArrays

# scikit-learn draws its seeds below this bound (sklearn.ensemble._bagging.MAX_INT).
_MAX_INT = np.iinfo(np.int32).max


def grow_forest(X32: np.ndarray, n_estimators: int, max_samples: int,
                random_state: int | np.random.RandomState | None) -> ForestArrays:
    """The forest ``IsolationForest(n_estimators, max_samples, max_features=1.0, bootstrap=False,
    random_state).fit(X32)`` grows, as :class:`~detector.scoring.ForestArrays`.

    *X32* is the finite float32 training matrix and ``1 <= max_samples <= len(X32)``.
    """
    from sklearn.tree import ExtraTreeRegressor
    from sklearn.utils import check_random_state
    from sklearn.utils.random import sample_without_replacement

    from detector.scoring import ForestArrays

    n_rows, n_features = X32.shape
    # As IsolationForest.fit and its bagging draw them: the regression target first, then the trees'
    # seeds, each from random_state (the same generator twice when it is one, two fresh ones for a seed).
    target = check_random_state(random_state).uniform(size=n_rows)
    seeds = check_random_state(random_state).randint(_MAX_INT, size=n_estimators)
    max_depth = int(np.ceil(np.log2(max(max_samples, 2))))
    trees = []
    for seed in seeds:
        draws = np.random.RandomState(seed)
        # The bagging draws the features first: all of them (max_features=1.0), in an order the trees
        # never use. scikit-learn 1.9's draw leaves the generator as it was; made anyway, the rows
        # come from the generator's state the bagging draws them from in any version.
        sample_without_replacement(n_features, n_features, random_state=draws)
        rows = np.sort(sample_without_replacement(n_rows, max_samples, random_state=draws))
        tree = ExtraTreeRegressor(max_features=1, splitter="random", max_depth=max_depth,
                                  random_state=np.random.RandomState(seed).randint(_MAX_INT))
        grown = tree.fit(X32[rows], target[rows]).tree_
        trees.append((grown, np.asarray(grown.feature, dtype=np.int64)))
    return ForestArrays.of_trees(trees, int(max_samples), n_features)
