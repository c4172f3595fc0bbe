"""Isolation-forest scoring of feature windows, calibrated and explained.

One :class:`WindowScorer` is trained per entity kind (``account``, ``device``) on the baseline
windows the feature stage produces. It follows scikit-learn's estimator contract and is built on
:class:`sklearn.ensemble.IsolationForest`, but after fitting it keeps the forest only as plain
numpy arrays (:class:`ForestArrays`) and scores from those. That is what lets the model store save
a model without pickle: a loaded scorer is the same arrays and therefore gives bit-for-bit the same
scores as the one that was fitted.

Three numbers per window, in one direction (higher = more anomalous):

* the *raw* score, ``2 ** (-mean path length / c(max_samples))`` — the anomaly score of the
  isolation-forest paper, i.e. the opposite of sklearn's ``score_samples``;
* the *calibrated* score in 0..1, "rarer than this share of the baseline windows"
  (:meth:`WindowScorer.calibrated`), which is what findings carry;
* the severity label derived from the calibrated score (:func:`severity`).

Cold start is explicit: :meth:`WindowScorer.fit` raises :class:`ColdStartError` when an entity
kind has too few baseline windows for any window to be placed in the top percent of the baseline,
instead of quietly training a scorer that can never flag anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, Self, overload

import numpy as np
import polars as pl

from detector.errors import ConfigError, DetectorError
from detector.lazy_sklearn import not_fitted, walk_compiled

if TYPE_CHECKING:
    from sklearn.ensemble import IsolationForest

__all__ = [
    "QUANTILE_LEVELS",
    "SEVERITIES",
    "STATE_ARRAYS",
    "ColdStartError",
    "ForestArrays",
    "ScoringConfig",
    "ScoringError",
    "SeenCells",
    "Severity",
    "SeverityThresholds",
    "WindowScorer",
    "average_path_length",
    "severity",
]


class ScoringError(DetectorError, ValueError):
    """Scoring input is unusable (wrong shape, non-finite values) or a scorer's state is invalid."""


class ColdStartError(ScoringError):
    """An entity kind has too few baseline windows to train a calibrated scorer.

    Attributes
    ----------
    n_windows, min_windows
        How many baseline windows there were and how many are needed.
    """

    def __init__(self, message: str, *, n_windows: int, min_windows: int) -> None:
        super().__init__(message)
        self.n_windows = n_windows
        self.min_windows = min_windows


Severity = Literal["none", "low", "medium", "high", "critical"]
SEVERITIES: Final[tuple[Severity, ...]] = ("none", "low", "medium", "high", "critical")

# Baseline quantiles kept per feature for explanations and reasons ("above 99 % of baseline
# windows"); 0 and 1 are the training range, which also tells which features were constant.
QUANTILE_LEVELS: Final[tuple[float, ...]] = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)

# The arrays of a fitted scorer's state, as the model store saves them (see WindowScorer.get_state).
STATE_ARRAYS: Final[tuple[str, ...]] = (
    "tree_offsets", "children_left", "children_right", "feature", "threshold", "n_node_samples",
    "max_samples", "train_scores", "feature_median", "quantile_levels", "feature_quantiles",
    "tail_index", "tail_top", "train_tail", "train_combined",
)

_INT_ARRAYS: Final = frozenset({"tree_offsets", "children_left", "children_right", "feature",
                                "n_node_samples", "max_samples", "tail_index"})

# Largest training values kept per tail feature: the tail p-value is exact down to TAIL_KEEP / n,
# which is all the tail needs (above it a value is not rare enough to matter).
TAIL_KEEP: Final = 1024
_TAIL_BLOCK: Final = 1 << 18  # rows per block of the tail component's scores

# sklearn's markers in tree arrays.
_LEAF: Final = -1  # children_left / children_right of a leaf
_UNDEFINED: Final = -2  # feature of a leaf

# Rows scored together: large enough to amortise numpy's per-call cost, small enough for cache.
_CHUNK_ROWS: Final = 16384
_HASHED_FROM: Final = 1 << 16  # rows from which cells are told apart by hashing rather than sorting


# --------------------------------------------------------------------------------------------
# Configuration


def _check_int(name: str, value: object, minimum: int) -> None:
    # bool is an int to Python, but `n_estimators = true` in a TOML file is a mistake.
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, not {value!r}")


@dataclass(frozen=True)
class SeverityThresholds:
    """Lower bounds of each severity on the calibrated score (a window scoring >= ``high`` and
    < ``critical`` is ``high``; below ``low`` it is ``none``).

    The calibrated score is a conformal rank (see :meth:`WindowScorer.calibrated`), so a window
    drawn from the same distribution as the baseline reaches a threshold ``t`` with probability at
    most ``1 - t``. The defaults therefore read as false-alarm budgets: per 10 000 ordinary windows
    at most about 100 are ``low`` or above, 50 ``medium``, 10 ``high`` and 1 ``critical``. For a
    utility with a few hundred active account-hours a day that is a handful of ``low`` findings and
    a ``high`` one every few days, which an analyst can read; the factor between levels keeps them
    apart in practice. A threshold ``t`` is only reachable when the baseline has at least
    ``t / (1 - t)`` windows (``critical`` needs 9 999), so with a short baseline the top severities
    cannot be reached: deliberately, since the model has no evidence that a window is that rare.

    Raises
    ------
    ConfigError
        Unless ``0 < low < medium < high < critical <= 1``.
    """

    low: float = 0.99
    medium: float = 0.995
    high: float = 0.999
    critical: float = 0.9999

    def __post_init__(self) -> None:
        values = [self.low, self.medium, self.high, self.critical]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            raise ConfigError(f"severity thresholds must be numbers, not {values!r}")
        if not (0.0 < self.low < self.medium < self.high < self.critical <= 1.0):
            raise ConfigError("severity thresholds must satisfy 0 < low < medium < high < critical <= 1, "
                              f"not low={self.low}, medium={self.medium}, high={self.high}, "
                              f"critical={self.critical}")

    def as_array(self) -> np.ndarray:
        """The four thresholds in increasing order, for :func:`numpy.searchsorted`."""
        return np.array([self.low, self.medium, self.high, self.critical], dtype=np.float64)

    @classmethod
    def from_dict(cls, table: Mapping[str, Any]) -> Self:
        """Build from a TOML table such as ``[scoring.severity]``; missing keys keep their defaults.

        Raises
        ------
        ConfigError
            On an unknown key or invalid values.
        """
        if not isinstance(table, Mapping):
            raise ConfigError(f"[scoring.severity] must be a table, not {table!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(f"unknown severity threshold(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v
                      for k, v in table.items()})


@dataclass(frozen=True)
class ScoringConfig:
    """Settings of the scoring stage, as in the ``[scoring]`` table of a configuration file.

    Parameters
    ----------
    n_estimators
        Trees per forest. 200 (rather than sklearn's 100) halves the run-to-run noise of the
        explanations, which average over trees, for little cost.
    max_samples
        Windows drawn (without replacement) to grow each tree; 256 is the isolation-forest paper's
        value, beyond which detection does not improve.
    random_state
        Seed of the forest. Fixed by default so that training twice on the same data gives the same
        model, model id and finding ids.
    min_training_windows
        Fewest baseline windows per entity kind; fewer raise :class:`ColdStartError`. 100 is what
        the calibration needs before any window can reach the default ``low`` threshold 0.99.
    top_k
        Features listed in each finding's ``top_features``.
    severity
        Thresholds on the calibrated score, see :class:`SeverityThresholds`.

    Raises
    ------
    ConfigError
        On invalid values.
    """

    n_estimators: int = 200
    max_samples: int = 256
    random_state: int | None = 0
    min_training_windows: int = 100
    top_k: int = 5
    severity: SeverityThresholds = field(default_factory=SeverityThresholds)

    def __post_init__(self) -> None:
        _check_int("n_estimators", self.n_estimators, 1)
        _check_int("max_samples", self.max_samples, 2)
        _check_int("min_training_windows", self.min_training_windows, 2)
        _check_int("top_k", self.top_k, 1)
        if self.random_state is not None:
            _check_int("random_state", self.random_state, 0)
        if not isinstance(self.severity, SeverityThresholds):
            raise ConfigError(f"severity must be SeverityThresholds, not {self.severity!r}")

    @classmethod
    def from_dict(cls, table: Mapping[str, Any]) -> Self:
        """Build a config from a TOML table such as ``[scoring]``; missing keys keep their defaults.

        The thresholds are the sub-table ``[scoring.severity]`` (``low``, ``medium``, ``high``,
        ``critical``).

        Raises
        ------
        ConfigError
            On an unknown key or an invalid value.
        """
        if not isinstance(table, Mapping):
            raise ConfigError(f"[scoring] must be a table, not {table!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(f"unknown scoring setting(s) {unknown}; known: {sorted(known)}")
        values = dict(table)
        if "severity" in values:
            values["severity"] = SeverityThresholds.from_dict(values["severity"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain (TOML/JSON-ready) table; ``from_dict(to_dict())`` round-trips.

        ``random_state = None`` is left out (TOML has no null), which ``from_dict`` reads back as
        the default seed 0 — so only a config with an explicit seed round-trips through TOML.
        """
        table = asdict(self)
        if table["random_state"] is None:
            del table["random_state"]
        return table

    def make_scorer(self) -> WindowScorer:
        """An unfitted :class:`WindowScorer` with these settings."""
        return WindowScorer(n_estimators=self.n_estimators, max_samples=self.max_samples,
                            random_state=self.random_state, min_windows=self.min_training_windows)


# --------------------------------------------------------------------------------------------
# Severity


@overload
def severity(score: float, config: ScoringConfig | SeverityThresholds | None = None) -> Severity: ...
@overload
def severity(score: np.ndarray, config: ScoringConfig | SeverityThresholds | None = None) -> np.ndarray: ...


def severity(score: np.ndarray | float, config: ScoringConfig | SeverityThresholds | None = None
             ) -> np.ndarray | Severity:
    """Map calibrated scores to severity labels.

    Parameters
    ----------
    score
        Calibrated score(s) in 0..1, a scalar or an array of any shape.
    config
        The thresholds, or a :class:`ScoringConfig` holding them; the defaults when ``None``.

    Returns
    -------
    numpy.ndarray or str
        ``"none"``, ``"low"``, ``"medium"``, ``"high"`` or ``"critical"``: the highest level whose
        threshold the score reaches (a score equal to a threshold reaches it). An array of ``str``
        of the same shape for array input, a plain ``str`` for a scalar.

    Raises
    ------
    ScoringError
        When a score is NaN or outside 0..1 (calibrated scores never are; a raw score was passed).
    """
    if config is None:
        thresholds = SeverityThresholds()
    elif isinstance(config, ScoringConfig):
        thresholds = config.severity
    else:
        thresholds = config
    values = np.asarray(score, dtype=np.float64)
    if np.isnan(values).any() or (values < 0.0).any() or (values > 1.0).any():
        raise ScoringError("severity needs calibrated scores in 0..1 (WindowScorer.calibrated), "
                           "got values outside that range or NaN")
    # side="right": a score equal to a threshold belongs to that threshold's level.
    level = np.searchsorted(thresholds.as_array(), values, side="right")
    labels = np.asarray(SEVERITIES)[level]
    if labels.ndim == 0:
        return str(labels)  # type: ignore[return-value]
    return labels


# --------------------------------------------------------------------------------------------
# The forest as arrays


def average_path_length(n: np.ndarray | int) -> np.ndarray:
    """``c(n)``: mean depth of an unsuccessful search in a binary search tree of *n* keys.

    The expected remaining path length below a leaf holding *n* training samples, exactly as
    scikit-learn computes it (0 for n <= 1, 1 for n == 2).
    """
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros(n.shape, dtype=np.float64)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def _validation_error(message: str) -> ScoringError:
    return ScoringError(f"invalid forest arrays: {message}")


def _rank_in(ascending: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``searchsorted(ascending, values, side="left")``, each distinct value looked up once.

    Windows share few distinct scores (see :meth:`ForestArrays.score`); looking those up in
    order is several times faster than a random lookup per window in a large training array.
    """
    distinct, inverse = np.unique(values, return_inverse=True)
    return np.searchsorted(ascending, distinct, side="left")[inverse.reshape(values.shape)]


def _factorize(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(key, return_index=True, return_inverse=True)`` without its values: the first row of
    each distinct value of *key* (int64) in ascending order of the values, and each row's value as an
    index into them. Found by hashing and only the distinct values sorted: several times faster for a
    day's hundreds of thousands of windows in a few tens of thousands of cells. (In order of value,
    not of first occurrence: the trees then walk similar rows one after the other, twice as fast.)"""
    if key.shape[0] < _HASHED_FROM:
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        return first, inverse.reshape(key.shape)
    frame = pl.DataFrame({"key": key})
    first = frame.get_column("key").arg_unique().to_numpy().astype(np.int64)
    first = first[np.argsort(key[first], kind="stable")]
    numbered = pl.DataFrame({"key": key[first], "at": np.arange(first.shape[0], dtype=np.int64)})
    inverse = frame.join(numbered, on="key", how="left", maintain_order="left").get_column("at").to_numpy()
    return first, inverse


@dataclass(frozen=True, eq=False)
class _TreeWalk:
    """One tree's arrays prepared for walking: leaves loop onto themselves (threshold +inf)."""

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    count: np.ndarray
    path_length: np.ndarray
    depth: int


def _compiled_trees(offsets: np.ndarray, left: np.ndarray, right: np.ndarray, feature: np.ndarray,
                    threshold: np.ndarray, counts: np.ndarray, depth: np.ndarray, n_features: int) -> tuple | None:
    """The trees as sklearn ``Tree`` objects built from the (validated) arrays, for fast traversal.

    ``Tree`` state is a private sklearn layout: when it is not the one expected, None, and scoring
    walks the arrays in numpy instead (same results, several times slower).
    """
    try:
        from sklearn.tree._tree import NODE_DTYPE, Tree

        trees = []
        for t in range(offsets.shape[0] - 1):
            nodes = slice(int(offsets[t]), int(offsets[t + 1]))
            state = np.zeros(nodes.stop - nodes.start, dtype=NODE_DTYPE)
            state["left_child"], state["right_child"] = left[nodes], right[nodes]
            state["feature"], state["threshold"] = feature[nodes], threshold[nodes]
            state["n_node_samples"] = counts[nodes]
            state["weighted_n_node_samples"] = counts[nodes]
            tree = Tree(n_features, np.ones(1, dtype=np.intp), 1)
            tree.__setstate__({"max_depth": int(depth[nodes].max()), "node_count": state.shape[0], "nodes": state,
                               "values": np.zeros((state.shape[0], 1, 1))})
            trees.append(tree)
        return tuple(trees)
    except (ImportError, KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True, eq=False)
class ForestArrays:
    """A fitted isolation forest as flat arrays, and path-length scoring in numpy.

    The trees are concatenated: tree ``t`` owns nodes ``tree_offsets[t]:tree_offsets[t + 1]``.
    Node arrays are those of sklearn's ``estimator.tree_`` with child indices local to their tree
    (``-1`` at a leaf); ``feature`` is already mapped through ``estimators_features_`` to a column
    of the full input matrix (``-2`` at a leaf), so no per-tree feature subset needs storing.

    Constructing one checks the arrays' structure (shapes, index ranges, that every child comes
    after its parent and has exactly one parent, sample counts adding up), so arrays read from
    disk cannot make the traversal loop, index out of bounds or divide by zero.

    Raises
    ------
    ScoringError
        When the arrays do not describe a valid forest.
    """

    tree_offsets: np.ndarray
    children_left: np.ndarray
    children_right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    n_node_samples: np.ndarray
    max_samples: int
    n_features: int
    # Derived once from the above (global child indices, depths, per-leaf path lengths).
    _trees: tuple[_TreeWalk, ...] = field(init=False, repr=False)
    _cuts: tuple[np.ndarray, ...] = field(init=False, repr=False)
    _depth: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen dataclass: derived fields are set once, here
        for name in ("tree_offsets", "children_left", "children_right", "feature", "n_node_samples"):
            value = np.asarray(getattr(self, name))
            if value.dtype.kind not in "iu" or value.ndim != 1:
                raise _validation_error(f"{name} must be a 1-D integer array, not {value.dtype} {value.shape}")
            set_(self, name, value.astype(np.int64, copy=False))
        threshold = np.asarray(self.threshold)
        if threshold.dtype.kind != "f" or threshold.ndim != 1:
            raise _validation_error(f"threshold must be a 1-D float array, "
                                    f"not {threshold.dtype} {threshold.shape}")
        set_(self, "threshold", threshold.astype(np.float64, copy=False))
        if int(self.max_samples) < 1 or int(self.n_features) < 1:
            raise _validation_error(f"max_samples={self.max_samples} and n_features={self.n_features} "
                                    "must be >= 1")
        set_(self, "max_samples", int(self.max_samples))
        set_(self, "n_features", int(self.n_features))

        offsets = self.tree_offsets
        n_nodes = self.children_left.shape[0]
        if any(getattr(self, a).shape[0] != n_nodes
               for a in ("children_right", "feature", "threshold", "n_node_samples")):
            raise _validation_error("node arrays differ in length")
        if offsets.shape[0] < 2 or offsets[0] != 0 or offsets[-1] != n_nodes or (np.diff(offsets) < 1).any():
            raise _validation_error("tree_offsets must rise strictly from 0 to the number of nodes")

        tree_of = np.repeat(np.arange(offsets.shape[0] - 1), np.diff(offsets))
        local = np.arange(n_nodes) - offsets[tree_of]
        size = np.diff(offsets)[tree_of]
        left, right = self.children_left, self.children_right
        leaf = left == _LEAF
        internal = ~leaf
        if (right[leaf] != _LEAF).any() or (self.feature[leaf] != _UNDEFINED).any():
            raise _validation_error("a leaf has a right child or a split feature")
        # A child after its parent and inside its tree: traversal cannot cycle or leave the tree.
        for name, child in (("children_left", left), ("children_right", right)):
            if ((child[internal] <= local[internal]) | (child[internal] >= size[internal])).any():
                raise _validation_error(f"{name} points outside its tree or backwards")
        if ((self.feature[internal] < 0) | (self.feature[internal] >= self.n_features)).any():
            raise _validation_error(f"a split feature is outside 0..{self.n_features - 1}")
        if not np.isfinite(self.threshold[internal]).all():
            raise _validation_error("a split threshold is not finite")
        global_left = np.where(internal, left + offsets[tree_of], _LEAF)
        global_right = np.where(internal, right + offsets[tree_of], _LEAF)
        parents = np.bincount(np.concatenate([global_left[internal], global_right[internal]]),
                              minlength=n_nodes)
        is_root = local == 0
        if (parents[is_root] != 0).any() or (parents[~is_root] != 1).any():
            raise _validation_error("every node but a root must have exactly one parent")
        counts = self.n_node_samples
        if (counts < 1).any() or (counts[offsets[:-1]] > self.max_samples).any():
            raise _validation_error("node sample counts must be >= 1 and a root's <= max_samples")
        if (counts[internal] != counts[global_left[internal]] + counts[global_right[internal]]).any():
            raise _validation_error("a node's sample count is not the sum of its children's")

        depth = np.zeros(n_nodes, dtype=np.int64)
        frontier = np.flatnonzero(is_root)
        level = 0
        while frontier.size:
            frontier = frontier[internal[frontier]]
            level += 1
            children = np.concatenate([global_left[frontier], global_right[frontier]])
            depth[children] = level
            frontier = children
        # Same operations as sklearn (1-based node depth + c(n) - 1) so scores match bit for bit.
        path_length = (depth + 1.0) + average_path_length(counts) - 1.0
        walks = []
        for t in range(offsets.shape[0] - 1):
            nodes = slice(int(offsets[t]), int(offsets[t + 1]))
            is_leaf, own = leaf[nodes], np.arange(nodes.stop - nodes.start)
            walks.append(_TreeWalk(
                left=np.where(is_leaf, own, left[nodes]).astype(np.intp),
                right=np.where(is_leaf, own, right[nodes]).astype(np.intp),
                feature=np.where(is_leaf, 0, self.feature[nodes]).astype(np.intp),
                threshold=np.where(is_leaf, np.inf, self.threshold[nodes]),
                count=counts[nodes].astype(np.float64),
                path_length=path_length[nodes],
                depth=int(depth[nodes].max())))
        set_(self, "_trees", tuple(walks))
        set_(self, "_cuts", tuple(np.unique(self.threshold[internal & (self.feature == j)])
                                  for j in range(self.n_features)))
        set_(self, "_depth", depth)

    @cached_property
    def _compiled(self) -> tuple[Any, ...] | None:
        """sklearn's compiled trees of this forest (None when sklearn's layout is not the one expected),
        built on first use: importing scikit-learn takes longer than walking a few thousand rows in numpy
        (see :mod:`detector.lazy_sklearn`)."""
        return _compiled_trees(self.tree_offsets, self.children_left, self.children_right, self.feature,
                               self.threshold, self.n_node_samples, self._depth, self.n_features)

    @classmethod
    def from_sklearn(cls, forest: IsolationForest) -> Self:
        """Extract the arrays of a fitted :class:`~sklearn.ensemble.IsolationForest`."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(forest)
        n_features = int(forest.n_features_in_)
        # sklearn trains each tree on X[:, estimators_features_[t]] only when features are
        # subsampled; otherwise on X itself (and the indices are merely a permutation of all).
        subsampled = any(len(columns) != n_features for columns in forest.estimators_features_)

        def mapped(tree: Any, columns: np.ndarray) -> np.ndarray:
            feature = np.asarray(tree.feature, dtype=np.int64).copy()
            if subsampled:
                split = feature >= 0
                feature[split] = np.asarray(columns, dtype=np.int64)[feature[split]]
            return feature

        return cls.of_trees([(e.tree_, mapped(e.tree_, columns))
                             for e, columns in zip(forest.estimators_, forest.estimators_features_, strict=True)],
                            int(forest.max_samples_), n_features)

    @classmethod
    def of_trees(cls, trees: Sequence[tuple[Any, np.ndarray]], max_samples: int, n_features: int) -> Self:
        """The arrays of scikit-learn ``Tree`` objects (``estimator.tree_``), each given with its split
        features as columns of the full input matrix."""
        lefts, rights, feats, thresholds, counts, offsets = [], [], [], [], [], [0]
        for tree, feature in trees:
            lefts.append(np.asarray(tree.children_left, dtype=np.int64))
            rights.append(np.asarray(tree.children_right, dtype=np.int64))
            feats.append(feature)
            thresholds.append(np.asarray(tree.threshold, dtype=np.float64))
            counts.append(np.asarray(tree.n_node_samples, dtype=np.int64))
            offsets.append(offsets[-1] + tree.node_count)
        return cls(tree_offsets=np.asarray(offsets, dtype=np.int64),
                   children_left=np.concatenate(lefts), children_right=np.concatenate(rights),
                   feature=np.concatenate(feats), threshold=np.concatenate(thresholds),
                   n_node_samples=np.concatenate(counts), max_samples=max_samples, n_features=n_features)

    @property
    def n_trees(self) -> int:
        """Number of trees."""
        return int(self.tree_offsets.shape[0] - 1)

    def _walk(self, X32: np.ndarray, record: bool
              ) -> Iterator[tuple[int, _TreeWalk, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]]:
        """Walk rows down the trees, tree by tree, all rows of a chunk one depth level at a time.

        Yields, per chunk of rows (its start) and per tree (its arrays), the leaf each row
        reaches (a node index local to the tree) and, when *record*, per level the split feature
        and the bits of isolation of the step taken (0 once the row is in its leaf). Tree by tree
        keeps one tree's node arrays in cache: twice as fast as walking all trees at once.
        """
        n_rows = X32.shape[0]
        for start in range(0, n_rows, _CHUNK_ROWS):
            chunk = X32[start:start + _CHUNK_ROWS]
            m = chunk.shape[0]
            # Feature-major copy: the values a level needs are one gather from a flat array.
            flat = np.ascontiguousarray(chunk.T).ravel()
            rows = np.arange(m)
            for walk in self._trees:
                node = np.zeros(m, dtype=np.intp)
                steps: list[tuple[np.ndarray, np.ndarray]] = []
                for _ in range(walk.depth):
                    feature = walk.feature[node]
                    # float32 value against float64 threshold, as sklearn's Cython tree compares
                    # them; a leaf has threshold +inf and itself as both children, so rows that
                    # reached their leaf stay there.
                    nxt = np.where(flat[feature * m + rows] <= walk.threshold[node],
                                   walk.left[node], walk.right[node])
                    if record:
                        steps.append((feature, np.log2(walk.count[node] / walk.count[nxt])))
                    node = nxt
                yield start, walk, node, steps

    def score(self, X32: np.ndarray) -> np.ndarray:
        """Anomaly score ``2 ** (-E[h(x)] / c(max_samples))`` per row: higher = more anomalous.

        Equal to ``-IsolationForest.score_samples(X)`` of the forest these arrays came from.
        *X32* must be a finite float32 matrix with ``n_features`` columns.
        """
        per_cell, cell_of = self.score_cells(X32)
        return per_cell[cell_of]

    def score_cells(self, X32: np.ndarray, seen: SeenCells | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`score` per distinct cell of *X32* (in ascending cell order), and each row's cell.

        Rows in the same cell of every split take the same paths: one row per cell is walked. Logs
        repeat themselves (a million meters read once a day), so there are far fewer cells than
        windows, and what follows from the score alone (its rank) can be computed per cell too.
        With *seen* (the cells of earlier slices of one scan), only cells it lacks are walked, and
        it learns them.
        """
        first, cell_of = self._distinct_cells(X32)
        if seen is None:
            return self._path_score(X32[first]), cell_of
        return seen.scores(self, X32[first]), cell_of

    def cell_keys(self, X32: np.ndarray) -> pl.DataFrame:
        """Each row's cell as columns of integers the same from one matrix to the next (the counts of
        split thresholds below each feature's value, packed into as few int64 columns as fit)."""
        words: list[np.ndarray] = []
        key = np.zeros(X32.shape[0], dtype=np.int64)
        span = 1
        for j, cuts in enumerate(self._cuts):
            width = cuts.shape[0] + 1
            if width == 1:
                continue
            if span > (2 ** 62) // width:
                words.append(key)
                key, span = np.zeros(X32.shape[0], dtype=np.int64), 1
            key = key * width + np.searchsorted(cuts, X32[:, j].astype(np.float64), side="left")
            span *= width
        words.append(key)
        return pl.DataFrame({f"_w{i}": word for i, word in enumerate(words)})

    def _distinct_cells(self, X32: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One row index per distinct cell of *X32*, and each row's cell (an index into them).

        A row's cell is, per feature, how many of the forest's split thresholds on it lie below
        the row's value: every comparison ``x <= threshold`` in every tree follows from it. The
        per-feature cell numbers (offset to the lowest any row has: a count feature reaches few of
        its cuts) are folded into one integer key, renumbered densely whenever the next fold could
        overflow.
        """
        n_rows = X32.shape[0]
        key = np.zeros(n_rows, dtype=np.int64)
        if n_rows == 0:
            return key, key
        span = 1  # key < span
        for j, cuts in enumerate(self._cuts):
            if cuts.shape[0] == 0:
                continue
            cell = np.searchsorted(cuts, X32[:, j].astype(np.float64), side="left")
            low = int(cell.min())
            width = int(cell.max()) - low + 1
            if width == 1:
                continue
            if span > (2 ** 62) // width:
                first, key = _factorize(key)
                span = first.shape[0]
            key = key * width + (cell - low)
            span *= width
        return _factorize(key)

    def _path_score(self, X32: np.ndarray) -> np.ndarray:
        depths = np.zeros(X32.shape[0], dtype=np.float64)
        compiled = self._compiled if walk_compiled(X32.shape[0]) else None
        if compiled is not None:
            # sklearn's compiled traversal, two trees at a time (it runs without the GIL).
            with ThreadPoolExecutor(max_workers=2) as pool:
                leaves = pool.map(lambda tree: tree.apply(X32), compiled)
                for walk, leaf in zip(self._trees, leaves, strict=True):
                    depths += walk.path_length[leaf]
        else:
            for start, walk, leaf, _ in self._walk(X32, record=False):
                # Tree by tree, in order: the same floating-point sum as sklearn's accumulation.
                depths[start:start + leaf.shape[0]] += walk.path_length[leaf]
        denominator = self.n_trees * float(average_path_length(self.max_samples))
        # As sklearn: a forest grown on a single sample has c = 0 and scores every row 2**-1.
        ratio = depths / denominator if denominator != 0 else np.ones_like(depths)
        return 2.0 ** (-ratio)

    def attribution(self, X32: np.ndarray) -> np.ndarray:
        """Depth-weighted isolation attribution per (row, feature), each row summing to 1.

        For every tree, each split on the row's path is credited to its feature with the bits of
        isolation it achieved, ``log2(n_node / n_child_taken)``, and the tree is weighted by
        ``1 / h`` where ``h`` is the row's path length in it (DIFFI's weight: trees that isolate the
        row early say most about why it is anomalous). See :meth:`WindowScorer.explain` for why.
        """
        first, cell_of = self._distinct_cells(X32)  # the paths, and so the shares, are the cell's
        return self._attribution(X32[first])[cell_of]

    def _attribution(self, X32: np.ndarray) -> np.ndarray:
        n_rows, n_features = X32.shape[0], self.n_features
        out = np.zeros(n_rows * n_features, dtype=np.float64)
        for start, walk, leaf, steps in self._walk(X32, record=True):
            if not steps:
                continue
            weight = 1.0 / np.maximum(walk.path_length[leaf], 1.0)
            cell = (np.arange(start, start + leaf.shape[0]) * n_features)
            index = np.concatenate([cell + feature for feature, _ in steps])
            bits = np.concatenate([b * weight for _, b in steps])
            out += np.bincount(index, weights=bits, minlength=out.shape[0])
        shares = out.reshape(n_rows, n_features)
        sums = shares.sum(axis=1, keepdims=True)
        return np.divide(shares, sums, out=np.zeros_like(shares), where=sums > 0)


class SeenCells:
    """The forest scores of the cells met in earlier slices of one scan, kept in memory for the scan
    only (nothing of it goes into a model): a utility's devices fall in the same cells day after day
    (about two thirds of a day's device cells were seen on an earlier day of the sparse week), and a
    cell's score is the same whichever rows share it, so a cell already walked is not walked again."""

    def __init__(self) -> None:
        self._forest: ForestArrays | None = None  # the forest whose cells these are
        self._known: pl.DataFrame | None = None  # cell key columns and "score"

    def scores(self, forest: ForestArrays, X32: np.ndarray) -> np.ndarray:
        """:meth:`ForestArrays._path_score` of the rows of *X32* (one per distinct cell), walking only
        the cells not seen before and remembering them."""
        if forest is not self._forest:  # another forest's cells mean nothing here
            self._forest, self._known = forest, None
        keys = forest.cell_keys(X32)
        if self._known is None:
            found = np.full(X32.shape[0], np.nan)
        else:
            found = (keys.join(self._known, on=keys.columns, how="left", maintain_order="left")
                     .get_column("score").fill_null(np.nan).to_numpy(writable=True))
        missing = np.flatnonzero(np.isnan(found))
        if missing.shape[0]:
            found[missing] = forest._path_score(X32[missing])
            learned = keys[missing].with_columns(pl.Series("score", found[missing], pl.Float64))
            self._known = learned if self._known is None else pl.concat([self._known, learned])
        return found


# --------------------------------------------------------------------------------------------
# The estimator


@dataclass(frozen=True)
class TrainingColumns:
    """Training windows handed to :meth:`WindowScorer.fit` a column at a time (float64, in row order):
    a baseline's millions of windows need not be one float64 matrix in memory.

    *fresh*: each call of *column* returns a new array, which the fit may then reorder in place
    (otherwise it works on a copy: a column of a caller's matrix must stay as it is)."""

    rows: int
    width: int
    column: Callable[[int], np.ndarray]
    fresh: bool = False

    @classmethod
    def of(cls, matrix: np.ndarray) -> TrainingColumns:
        return cls(matrix.shape[0], matrix.shape[1], lambda j: matrix[:, j])


class WindowScorer:
    """Isolation-forest anomaly scorer for the windows of one entity kind.

    Parameters
    ----------
    n_estimators
        Number of trees.
    max_samples
        Windows drawn without replacement to grow each tree (capped at the number of windows).
    random_state
        Seed (or :class:`numpy.random.RandomState`) for the forest; ``None`` is not reproducible.
    min_windows
        Fewest training windows :meth:`fit` accepts; fewer raise :class:`ColdStartError`.

    Attributes
    ----------
    feature_names_ : list of str
        Column names, in the order of the matrix columns.
    n_features_in_ : int
        Number of features.
    forest_ : ForestArrays
        The fitted forest as arrays; all scoring goes through it.
    train_scores_ : numpy.ndarray
        Sorted raw scores of the training windows: the calibration sample.
    feature_median_ : numpy.ndarray
        Per-feature median over the training windows (the ``baseline`` of explanations).
    quantile_levels_ : numpy.ndarray
        Levels of :attr:`feature_quantiles_` (:data:`QUANTILE_LEVELS`).
    feature_quantiles_ : numpy.ndarray
        Per-feature training quantiles, shape ``(len(quantile_levels_), n_features_in_)``.
    """

    def __init__(self, n_estimators: int = 200, max_samples: int = 256,
                 random_state: int | np.random.RandomState | None = None, min_windows: int = 100) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.random_state = random_state
        self.min_windows = min_windows

    # scikit-learn's estimator conventions (get_params, set_params, clone), without deriving from its
    # BaseEstimator: importing scikit-learn is then needed only to fit, not to load and score.

    _PARAMS: ClassVar[tuple[str, ...]] = ("n_estimators", "max_samples", "random_state", "min_windows")

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters, by name (as scikit-learn's estimators give them)."""
        return {name: getattr(self, name) for name in self._PARAMS}

    def set_params(self, **params: Any) -> Self:
        """Set constructor parameters by name; returns ``self``."""
        for name, value in params.items():
            if name not in self._PARAMS:
                raise ValueError(f"invalid parameter {name!r} for WindowScorer; valid parameters: {list(self._PARAMS)}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = WindowScorer()
        changed = [f"{name}={value!r}" for name, value in self.get_params().items()
                   if value != getattr(defaults, name)]
        return f"WindowScorer({', '.join(changed)})"

    def _check_fitted(self) -> None:
        if not hasattr(self, "forest_"):
            raise not_fitted(self)

    # -- input ---------------------------------------------------------------------------------

    def _matrix(self, X: np.ndarray | pl.DataFrame, names: Sequence[str]) -> np.ndarray:
        """*X* as a finite float64 matrix whose columns are *names*, in that order."""
        if isinstance(X, pl.DataFrame):
            missing = [n for n in names if n not in X.columns]
            if missing:
                raise ScoringError(f"feature column(s) {missing} missing from the frame")
            # Selecting by name makes a frame whose columns come in another order score correctly.
            X = X.select(names).to_numpy()
        try:
            matrix = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ScoringError(f"features must be numeric: {exc}") from None
        if matrix.ndim != 2 or matrix.shape[1] != len(names):
            raise ScoringError(f"expected a matrix with {len(names)} feature columns, got shape {matrix.shape}")
        # The forest sees float32 (as sklearn does); a float64 beyond its range would become inf.
        # Column by column: a float32 copy of a training matrix of millions of windows is large.
        with np.errstate(over="ignore"):
            finite = [bool(np.isfinite(matrix[:, j].astype(np.float32)).all()) for j in range(matrix.shape[1])]
        if not all(finite):
            bad = [names[j] for j, ok in enumerate(finite) if not ok]
            raise ScoringError(f"feature(s) {bad} hold NaN, null or infinite values (or exceed float32); "
                               "the feature stage must give every window a finite value")
        return matrix

    def _input(self, X: np.ndarray | pl.DataFrame) -> np.ndarray:
        self._check_fitted()
        return self._matrix(X, self.feature_names_)

    # -- fitting -------------------------------------------------------------------------------

    def fit(self, X: np.ndarray | pl.DataFrame | TrainingColumns, feature_names: Sequence[str] | None = None,
            tail_features: Sequence[str] = ()) -> Self:
        """Grow the forest on baseline windows and record the calibration and baseline statistics.

        Parameters
        ----------
        X
            Baseline windows, shape ``(n_windows, n_features)``, or a polars frame of numeric columns.
        feature_names
            Names of the columns; for a frame, which columns to use (default: all of them).
        tail_features
            Features also scored by their own upper tail (see :meth:`combined`): the sparse,
            security-relevant ones whose first-ever values the forest cannot see.

        Returns
        -------
        WindowScorer
            ``self``, fitted.

        Raises
        ------
        ColdStartError
            When there are fewer than ``min_windows`` windows.
        ScoringError
            On invalid parameters, names or values.
        """
        if feature_names is None:
            if not isinstance(X, pl.DataFrame):
                raise ScoringError("feature_names are required when X is not a polars DataFrame")
            feature_names = X.columns
        names = list(feature_names)
        if not names or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
            raise ScoringError(f"feature_names must be distinct non-empty strings, not {names!r}")
        for param, minimum in (("n_estimators", 1), ("max_samples", 1), ("min_windows", 1)):
            value = getattr(self, param)
            if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < minimum:
                raise ScoringError(f"{param} must be an integer >= {minimum}, not {value!r}")
        source = X if isinstance(X, TrainingColumns) else TrainingColumns.of(self._matrix(X, names))
        if source.width != len(names):
            raise ScoringError(f"expected {len(names)} feature columns, got {source.width}")
        n_windows = source.rows
        if n_windows < self.min_windows:
            raise ColdStartError(
                f"only {n_windows} baseline window(s), at least {self.min_windows} are needed to "
                "calibrate scores; train on a longer span of logs (or lower "
                "scoring.min_training_windows, accepting that few windows can reach any severity)",
                n_windows=n_windows, min_windows=int(self.min_windows))
        unknown = sorted(set(tail_features) - set(names))
        if unknown:
            raise ScoringError(f"tail_features {unknown} are not among the feature names")
        # sklearn grows its trees on float32; one copy serves the fit and the calibration. Built and
        # summarized a column at a time: the float64 windows need never be in memory at once. Column-major:
        # it is written, checked and cut into cells a column at a time (each tree reads only its 256 rows).
        as_float32 = np.empty((n_windows, len(names)), dtype=np.float32, order="F")
        quantiles, medians = [], []
        self.quantile_levels_ = np.asarray(QUANTILE_LEVELS, dtype=np.float64)
        for j in range(len(names)):
            column = source.column(j)
            with np.errstate(over="ignore"):
                as_float32[:, j] = column  # cast to float32 in place, as astype would
            if not np.isfinite(as_float32[:, j]).all():
                raise ScoringError(f"feature(s) {[names[j]]} hold NaN, null or infinite values (or exceed float32); "
                                   "the feature stage must give every window a finite value")
            # Both from one scratch column, partitioned in place: each would copy the column, and the values
            # picked (order statistics) do not depend on how the column is ordered.
            scratch = column if source.fresh else column.copy()
            del column
            quantiles.append(np.quantile(scratch, self.quantile_levels_, overwrite_input=True))
            medians.append(np.median(scratch, overwrite_input=True))
            del scratch
        self.feature_quantiles_ = np.column_stack(quantiles)
        self.feature_median_ = np.asarray(medians, dtype=np.float64)
        from detector.isolation import grow_forest

        # IsolationForest(max_features=1.0, bootstrap=False)'s trees, without its weight per window and tree.
        self.forest_ = grow_forest(as_float32, int(self.n_estimators), min(int(self.max_samples), n_windows),
                                   self.random_state)
        self.feature_names_ = names
        self.n_features_in_ = len(names)
        # Calibrating on the training windows themselves (in-sample) is slightly conservative in
        # the upper tail for small baselines (a point helped grow the trees it is scored by) and
        # indistinguishable from held-out calibration from a few thousand windows on.
        per_cell, cell_of = self.forest_.score_cells(as_float32)  # a window's score is its cell's
        self.train_scores_ = np.sort(per_cell[cell_of])
        del as_float32
        self.tail_index_ = np.asarray([names.index(f) for f in tail_features], dtype=np.int64)
        keep = min(TAIL_KEEP, n_windows)
        # Descending top values per tail feature, shape (keep, n_tail); column-major, as sorting the
        # tail columns of the whole matrix along axis 0 gave (the saved model's bytes stay the same).
        tail_columns = np.empty((n_windows, self.tail_index_.shape[0]), dtype=np.float64)
        self.tail_top_ = np.empty((keep, self.tail_index_.shape[0]), dtype=np.float64, order="F")
        for position, j in enumerate(self.tail_index_):
            tail_columns[:, position] = source.column(int(j))
            self.tail_top_[:, position] = -np.sort(-tail_columns[:, position])[:keep]
        tail_raw, active = self._train_tail(tail_columns)
        del tail_columns
        self.train_tail_ = np.sort(tail_raw)
        # Each training window's two ranks (training windows strictly below it), combined as combined()
        # combines a window's: its forest rank and its own tail rank, so that the calibration sees how
        # often a baseline window is rare on both at once. Ranked as combined() ranks them: the forest's
        # per cell, the tail's per window where it is not nothing.
        forest_rank = _rank_in(self.train_scores_, per_cell)[cell_of]
        tail_rank = self._tail_ranks(tail_raw, active)
        self.train_combined_ = np.sort(np.maximum(forest_rank, tail_rank) / (n_windows + 1.0))
        return self

    # -- the tail component --------------------------------------------------------------------

    def _train_tail(self, tail_columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The raw tail scores of the training windows in sample, given their tail columns, and the
        windows with a positive tail value (the others all score nothing).

        A window without a positive tail value has every p-value 1, so the score of a row of zeros
        (-0.0: the sum of -log 1): most training windows, so only the others are computed. They go in
        column-major blocks of at least two rows, as blocks of the whole matrix went: each row's sum of
        log p-values then adds up column by column, in the same order, to the last bit."""
        rows, width = tail_columns.shape
        if rows == 0 or width == 0:
            return np.zeros(rows), np.empty(0, dtype=np.intp)
        tail_raw = np.full(rows, self._tail_of(np.zeros((2, width), order="F"), True)[0][0])
        active = np.flatnonzero((tail_columns > 0.0).any(axis=1))
        if active.shape[0] == 0:
            return tail_raw, active
        # A lone row would be summed as one contiguous row (pairwise): doubled, it is summed like the others.
        picked = np.concatenate([active, active[-1:]]) if active.shape[0] % _TAIL_BLOCK == 1 else active
        raw, _ = self._tail_blocks(lambda start, stop: np.asfortranarray(tail_columns[picked[start:stop]]),
                                   picked.shape[0], True)
        tail_raw[active] = raw[:active.shape[0]]
        return tail_raw, active

    def _tail_ranks(self, tail_raw: np.ndarray, active: np.ndarray) -> np.ndarray:
        """Training windows strictly below each window's tail score: looked up for the *active* windows
        (a positive tail value), nothing's rank for the others (their score is nothing: -0.0)."""
        ranks = np.full(tail_raw.shape[0], np.searchsorted(self.train_tail_, 0.0, side="left"), dtype=np.int64)
        ranks[active] = _rank_in(self.train_tail_, tail_raw[active])
        return ranks

    def _tail(self, matrix: np.ndarray, *, in_sample: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Raw tail scores ``-sum_j log(p_j)`` and the index (into the features) of the rarest one.

        ``p_j`` is the conformal upper-tail p-value of the window's value of tail feature j among the
        training windows: ``(#training values >= x + 1) / (n + 1)`` (a training window counts
        itself once instead). Zero is never rare — it is "nothing happened" for these features —
        and values not above the kept top values are not rare enough to matter (p = 1).
        """
        return self._tail_blocks(lambda start, stop: matrix[start:stop, self.tail_index_], matrix.shape[0], in_sample)

    def _tail_blocks(self, values_of: Callable[[int, int], np.ndarray], rows: int,
                     in_sample: bool) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_tail` of rows given by ``values_of(start, stop)`` (their tail columns), in blocks:
        every step is per row, and in blocks the temporaries of millions of training windows stay small."""
        if self.tail_index_.shape[0] == 0 or rows == 0:
            return np.zeros(rows), np.full(rows, -1, dtype=np.int64)
        parts = [self._tail_of(values_of(start, min(start + _TAIL_BLOCK, rows)), in_sample)
                 for start in range(0, rows, _TAIL_BLOCK)]
        return np.concatenate([raw for raw, _ in parts]), np.concatenate([rarest for _, rarest in parts])

    def _tail_of(self, values: np.ndarray, in_sample: bool) -> tuple[np.ndarray, np.ndarray]:
        rows = values.shape[0]
        n = self.train_scores_.shape[0]
        top = self.tail_top_
        keep = top.shape[0]
        ge = np.empty_like(values)
        for j in range(values.shape[1]):
            ascending = top[::-1, j]
            ge[:, j] = keep - np.searchsorted(ascending, values[:, j], side="left")
        p = (ge + (0.0 if in_sample else 1.0)) / (n + 1.0)
        p = np.where((values <= 0.0) | ((ge >= keep) & (keep < n)), 1.0, np.clip(p, 1.0 / (n + 1.0), 1.0))
        rarest = np.argmin(p, axis=1)
        best = p[np.arange(rows), rarest]
        # Fisher's combination: several moderately rare signals together (a new address, at an
        # hour the account is never active, after days of silence) weigh like one very rare one.
        # Dependence between the signals is absorbed by calibrating against the training windows.
        return -np.log(p).sum(axis=1), np.where(best < 1.0, self.tail_index_[rarest], -1)

    def combined(self, X: np.ndarray | pl.DataFrame, seen: SeenCells | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Calibrated scores of the forest and the tail component together, and the rarest tail feature.

        The forest sees combinations but is blind to values it never saw vary (a first-ever log
        clearing against an all-zero baseline is not split on) and saturates at the training range.
        The tail component scores each window by its single most unprecedented value among the
        ``tail_features``. Each is calibrated against the baseline, their maximum is taken, and that
        maximum is calibrated again against the training windows' own maxima, so the result keeps
        the meaning of :meth:`calibrate`: the share of baseline windows this one is rarer than.

        *seen* holds the forest scores of cells met before in the same scan (see :class:`SeenCells`):
        the same results, fewer cells walked.

        Returns
        -------
        scores : numpy.ndarray
            Shape ``(n,)``, in [0, 1).
        rarest : numpy.ndarray
            Per window, the feature index whose tail p-value was lowest, or -1 if none was rare.
        tail_driven : numpy.ndarray
            Per window, whether the tail component scored it higher than the forest did.
        """
        matrix = self._input(X)
        n, rows = self.train_scores_.shape[0], matrix.shape[0]
        # The forest's score, and so its rank, is its cell's: ranked once per cell.
        per_cell, cell_of = self.forest_.score_cells(matrix.astype(np.float32), seen)
        cell_rank = _rank_in(self.train_scores_, per_cell)
        forest_rank = cell_rank[cell_of]
        # The tail component of a window without a positive tail value is nothing (every p-value 1):
        # computed and ranked for the others only.
        tail_raw, rarest = np.zeros(rows), np.full(rows, -1, dtype=np.int64)
        active = np.flatnonzero((matrix[:, self.tail_index_] > 0.0).any(axis=1))
        tail_raw[active], rarest[active] = self._tail(matrix[active])
        tail_rank = self._tail_ranks(tail_raw, active)
        nothing = np.searchsorted(self.train_tail_, 0.0, side="left")
        # Calibrated again: per cell where the tail is nothing, per window where it is not.
        scores = (_rank_in(self.train_combined_, np.maximum(cell_rank, nothing) / (n + 1.0)) / (n + 1.0))[cell_of]
        scores[active] = _rank_in(self.train_combined_,
                                  np.maximum(forest_rank[active], tail_rank[active]) / (n + 1.0)) / (n + 1.0)
        return scores, rarest, tail_rank > forest_rank

    # -- scoring -------------------------------------------------------------------------------

    def score_samples(self, X: np.ndarray | pl.DataFrame) -> np.ndarray:
        """Raw anomaly scores in (0, 1], higher = more anomalous.

        This is the isolation-forest paper's ``s(x) = 2 ** (-E[h(x)] / c(max_samples))``, the
        opposite of sklearn's ``IsolationForest.score_samples``. Around 0.5 and below is ordinary;
        use :meth:`calibrated` for a number with a meaning across models.

        Parameters
        ----------
        X
            Windows, shape ``(n, n_features_in_)``, or a frame holding the ``feature_names_`` columns.

        Returns
        -------
        numpy.ndarray
            Shape ``(n,)``, float64.
        """
        matrix = self._input(X)  # first: it is the not-fitted guard
        return self.forest_.score(matrix.astype(np.float32))

    def calibrate(self, raw_scores: np.ndarray) -> np.ndarray:
        """Calibrated scores from raw scores already computed with :meth:`score_samples`.

        ``#(training windows with a strictly lower raw score) / (n_training + 1)``: the share of the
        baseline the window is rarer than, counting the window itself among the n + 1 (a conformal
        rank). Counting it makes ``1 - score`` a valid p-value — a window from the baseline's
        distribution scores >= t with probability at most 1 - t — and caps the score at
        n / (n + 1), so a small baseline cannot claim a window is rarer than it can know.
        Monotone (non-decreasing) in the raw score; in [0, 1).
        """
        self._check_fitted()
        raw = np.asarray(raw_scores, dtype=np.float64)
        below = np.searchsorted(self.train_scores_, raw, side="left")
        return below / (self.train_scores_.shape[0] + 1.0)

    def calibrated(self, X: np.ndarray | pl.DataFrame) -> np.ndarray:
        """Calibrated anomaly scores in 0..1: "rarer than this share of the baseline windows".

        See :meth:`calibrate` for the exact definition.

        Parameters
        ----------
        X
            Windows, as for :meth:`score_samples`.

        Returns
        -------
        numpy.ndarray
            Shape ``(n,)``, float64 in [0, 1).
        """
        return self.calibrate(self.score_samples(X))

    # -- explanations --------------------------------------------------------------------------

    def explain(self, X: np.ndarray | pl.DataFrame, top_k: int = 5) -> list[list[dict[str, Any]]]:
        """The features that made each window stand out, for ``top_features`` of a finding.

        Parameters
        ----------
        X
            Windows, as for :meth:`score_samples` (normally just the flagged ones).
        top_k
            Most features returned per window.

        Returns
        -------
        list of list of dict
            Per window, up to *top_k* dicts ``{feature, value, baseline, contribution}`` in
            decreasing contribution, where ``value`` is the window's value, ``baseline`` the
            training median and ``contribution`` the feature's share of the window's isolation
            (all features' shares sum to 1; features with no share are left out).

        Notes
        -----
        The attribution is depth-based, in the manner of DIFFI (Carletti et al., "Interpretable
        anomaly detection with DIFFI", 2023), rather than per-feature rarity. Rarity against the
        training distribution explains a different model from the one that scored the window: it
        cannot see a window that is anomalous only through a combination of individually ordinary
        values, and it ranks first whichever feature happens to be heavy-tailed rather than the one
        the forest isolated the window on. Path attribution explains the score that was actually
        given. Plain DIFFI credits every split on the path (weighted by 1/depth); in an isolation
        forest features are picked at random, so a split near the root that left the window with
        most of its node would be credited as much as the one that cut it off. Each split is
        therefore credited with the bits of isolation it achieved, ``log2(n_node / n_child)``
        (a cut that leaves the window alone among 128 earns 7 bits, one that keeps it with 127 of
        128 almost none), and each tree is weighted by DIFFI's ``1 / h(x)`` so that trees which
        isolated the window early weigh most. A feature constant in the training windows is
        never split on and so gets no share — and neither does the forest's score react to it;
        rules, not the forest, must catch "first time ever" values of such features.
        """
        matrix = self._input(X)
        order, shares = self.top_contributions(matrix, top_k)
        return [
            [{"feature": self.feature_names_[j], "value": float(matrix[i, j]),
              "baseline": float(self.feature_median_[j]), "contribution": float(share)}
             for j, share in zip(order[i], shares[i], strict=True) if share > 0.0]
            for i in range(matrix.shape[0])
        ]

    def top_contributions(self, X: np.ndarray | pl.DataFrame, top_k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`explain` as arrays: per window the *top_k* feature indices by decreasing share of
        its isolation, and their shares (0 where a feature had none), both shape ``(n, top_k)``."""
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise ScoringError(f"top_k must be a positive integer, not {top_k!r}")
        shares = self.forest_.attribution(self._input(X).astype(np.float32))
        # Stable sort on the negated share: ties keep column order, so explanations are deterministic.
        order = np.argsort(-shares, axis=1, kind="stable")[:, :top_k]
        return order, np.take_along_axis(shares, order, axis=1)

    def beyond_baseline(self, X: np.ndarray | pl.DataFrame) -> np.ndarray:
        """Which values lie outside the range every training window stayed in.

        The forest cannot tell such values apart from the most extreme training value (its
        thresholds all lie inside the training range), and a feature that was constant in training
        is never split on at all. This mask lets rules and reasons say "above every baseline
        window" where the score alone cannot.

        Parameters
        ----------
        X
            Windows, as for :meth:`score_samples`.

        Returns
        -------
        numpy.ndarray
            Boolean, shape ``(n, n_features_in_)``.
        """
        matrix = self._input(X)
        low = self.feature_quantiles_[0] if self.quantile_levels_[0] == 0.0 else None
        high = self.feature_quantiles_[-1] if self.quantile_levels_[-1] == 1.0 else None
        if low is None or high is None:
            raise ScoringError("this scorer's baseline quantiles do not include the training range")
        return (matrix < low) | (matrix > high)

    # -- persistence ---------------------------------------------------------------------------

    def get_state(self) -> dict[str, np.ndarray]:
        """The fitted state as named numeric arrays (:data:`STATE_ARRAYS`), for the model store.

        Together with :meth:`get_params` and ``feature_names_`` this is everything
        :meth:`from_state` needs; no array has an object dtype, so they save without pickle.
        """
        self._check_fitted()
        forest = self.forest_
        return {
            "tree_offsets": forest.tree_offsets,
            "children_left": forest.children_left,
            "children_right": forest.children_right,
            "feature": forest.feature,
            "threshold": forest.threshold,
            "n_node_samples": forest.n_node_samples,
            "max_samples": np.asarray(forest.max_samples, dtype=np.int64),
            "train_scores": self.train_scores_,
            "feature_median": self.feature_median_,
            "quantile_levels": self.quantile_levels_,
            "feature_quantiles": self.feature_quantiles_,
            "tail_index": self.tail_index_,
            "tail_top": self.tail_top_,
            "train_tail": self.train_tail_,
            "train_combined": self.train_combined_,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray], feature_names: Sequence[str],
                   params: Mapping[str, Any] | None = None) -> Self:
        """Rebuild a fitted scorer from :meth:`get_state` arrays, checking them thoroughly.

        Parameters
        ----------
        state
            Arrays named as in :data:`STATE_ARRAYS`: integer arrays int64, float arrays float64.
        feature_names
            The feature names the scorer was fitted with.
        params
            Constructor parameters (:meth:`get_params`); defaults when ``None``.

        Raises
        ------
        ScoringError
            When an array is missing, unexpected, of the wrong dtype or shape, or the arrays are
            inconsistent with each other or with *feature_names*.
        """
        missing = sorted(set(STATE_ARRAYS) - set(state))
        extra = sorted(set(state) - set(STATE_ARRAYS))
        if missing or extra:
            raise ScoringError(f"scorer state: missing arrays {missing}, unexpected arrays {extra}")
        arrays: dict[str, np.ndarray] = {}
        for name in STATE_ARRAYS:
            value = state[name]
            want = np.dtype(np.int64) if name in _INT_ARRAYS else np.dtype(np.float64)
            if not isinstance(value, np.ndarray) or value.dtype != want:
                got = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
                raise ScoringError(f"scorer state: array {name!r} must be {want}, not {got}")
            arrays[name] = value
        names = list(feature_names)
        if not names or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
            raise ScoringError(f"scorer state: feature names must be distinct non-empty strings, not {names!r}")
        n_features = len(names)
        if arrays["max_samples"].shape != ():
            raise ScoringError("scorer state: max_samples must be a scalar")
        forest = ForestArrays(
            tree_offsets=arrays["tree_offsets"], children_left=arrays["children_left"],
            children_right=arrays["children_right"], feature=arrays["feature"],
            threshold=arrays["threshold"], n_node_samples=arrays["n_node_samples"],
            max_samples=int(arrays["max_samples"]), n_features=n_features)
        train = arrays["train_scores"]
        if train.ndim != 1 or train.shape[0] < 1 or not np.isfinite(train).all() or (np.diff(train) < 0).any():
            raise ScoringError("scorer state: train_scores must be a non-empty, finite, sorted 1-D array")
        median, levels = arrays["feature_median"], arrays["quantile_levels"]
        quantiles = arrays["feature_quantiles"]
        if median.shape != (n_features,) or not np.isfinite(median).all():
            raise ScoringError(f"scorer state: feature_median must be {n_features} finite values, "
                               f"not shape {median.shape}")
        if (levels.ndim != 1 or levels.shape[0] < 1 or (np.diff(levels) <= 0).any()
                or levels[0] < 0.0 or levels[-1] > 1.0):
            raise ScoringError("scorer state: quantile_levels must rise strictly within 0..1")
        if quantiles.shape != (levels.shape[0], n_features) or not np.isfinite(quantiles).all():
            raise ScoringError(f"scorer state: feature_quantiles must be finite, shape "
                               f"({levels.shape[0]}, {n_features}), not {quantiles.shape}")
        tail_index, tail_top = arrays["tail_index"], arrays["tail_top"]
        if tail_index.ndim != 1 or ((tail_index < 0) | (tail_index >= n_features)).any():
            raise ScoringError("scorer state: tail_index must index the features")
        if (tail_top.ndim != 2 or tail_top.shape[1] != tail_index.shape[0] or tail_top.shape[0] > train.shape[0]
                or not np.isfinite(tail_top).all()):
            raise ScoringError("scorer state: tail_top must be finite, shape (kept values, tail features)")
        for name in ("train_tail", "train_combined"):
            values = arrays[name]
            if values.shape != train.shape or not np.isfinite(values).all() or (np.diff(values) < 0).any():
                raise ScoringError(f"scorer state: {name} must be finite, sorted and as long as train_scores")
        try:
            scorer = cls(**dict(params or {}))
        except TypeError as exc:
            raise ScoringError(f"scorer state: invalid parameters {dict(params or {})!r}: {exc}") from None
        scorer.forest_ = forest
        scorer.feature_names_ = names
        scorer.n_features_in_ = n_features
        scorer.train_scores_ = train
        scorer.feature_median_ = median
        scorer.quantile_levels_ = levels
        scorer.feature_quantiles_ = quantiles
        scorer.tail_index_ = tail_index
        scorer.tail_top_ = tail_top
        scorer.train_tail_ = arrays["train_tail"]
        scorer.train_combined_ = arrays["train_combined"]
        return scorer

    @property
    def n_training_windows(self) -> int:
        """Windows the scorer was calibrated on; its calibrated scores are at most n / (n + 1)."""
        self._check_fitted()
        return int(self.train_scores_.shape[0])
