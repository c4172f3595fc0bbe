"""scikit-learn imported only where it pays: to grow a forest, and to walk one over many rows.

Importing scikit-learn takes about 1.3 s (most of it scipy), more than loading a model or scoring a
small scan. Scoring needs it only for its compiled tree walk, about ten times faster than the package's
numpy walk (about 15 µs a row for 200 trees), which gives the same scores bit for bit. So a process
walks its first :data:`NUMPY_WALK_ROWS` rows in numpy and imports scikit-learn only when it walks more
(a scan of a large utility's day) or has it imported already (training, which grows trees with it): a
small scan, a night of the nightly job or a notebook's few windows never import it. A scan of logs
large enough to walk more starts the import ahead, in a background thread, while it parses
(:func:`import_ahead`).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
from typing import Final

# Rows (forest cells) a process walks in numpy before a walk imports scikit-learn: about 0.3 s of
# walking, a quarter of the import. The sample month's scan walks 11,784.
NUMPY_WALK_ROWS: Final = 20_000
_TREES: Final = "sklearn.tree._tree"  # what the compiled walk needs; importing it imports the package
_walked = 0
_lock = threading.Lock()
_started = threading.Event()


def walk_compiled(rows: int) -> bool:
    """Whether to walk *rows* with scikit-learn's compiled trees (importing it if needed) rather than in
    numpy: when it is imported already, or when the rows with those this process walked in numpy so far
    exceed :data:`NUMPY_WALK_ROWS`. Both walks give the same scores."""
    global _walked
    if _TREES in sys.modules:
        return True
    with _lock:
        if _walked + rows > NUMPY_WALK_ROWS:
            return True
        _walked += rows
        return False


def import_ahead() -> None:
    """Start importing scikit-learn's compiled trees in a background thread (once per process): for a
    scan whose walks will need it, so that the import goes on beside the parse."""
    if _started.is_set() or _TREES in sys.modules:
        return
    _started.set()
    threading.Thread(target=_import, name="ami-detector-import-sklearn", daemon=True).start()


def _import() -> None:
    # An error is left for the walk that needs the module: it meets it again there.
    with contextlib.suppress(Exception):
        importlib.import_module(_TREES)


def not_fitted(estimator: object) -> Exception:
    """scikit-learn's NotFittedError for *estimator*, as ``check_is_fitted`` raises it."""
    from sklearn.exceptions import NotFittedError

    return NotFittedError(f"This {type(estimator).__name__} instance is not fitted yet. Call 'fit' with "
                          "appropriate arguments before using this estimator.")


__all__ = ["NUMPY_WALK_ROWS", "import_ahead", "not_fitted", "walk_compiled"]
