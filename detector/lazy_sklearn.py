"""scikit-learn imported only where it is needed, and ahead of time in the background.

Importing scikit-learn takes about a second and a half (most of it scipy), more than loading a
model. Scoring needs it only for its compiled tree traversal and training for the forest itself, so
the package does not import it at start: :func:`import_ahead` (called when a forest is loaded) starts
the import in a background thread, and a scan parses its logs meanwhile. Whatever imports it
later waits for that thread through Python's import lock, so the result is the same either way.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading

# What scoring needs; importing it imports the package (and scipy).
_TREES = "sklearn.tree._tree"
_started = threading.Event()


def import_ahead() -> None:
    """Start importing scikit-learn's compiled trees in a background thread (once per process)."""
    if _started.is_set() or _TREES in sys.modules:
        return
    _started.set()
    threading.Thread(target=_import, name="ami-detector-import-sklearn", daemon=True).start()


def _import() -> None:
    # An error is left for the importer that needs the module: it meets it again there.
    with contextlib.suppress(Exception):
        importlib.import_module(_TREES)


def not_fitted(estimator: object) -> Exception:
    """scikit-learn's NotFittedError for *estimator*, as ``check_is_fitted`` raises it."""
    from sklearn.exceptions import NotFittedError

    return NotFittedError(f"This {type(estimator).__name__} instance is not fitted yet. Call 'fit' with "
                          "appropriate arguments before using this estimator.")


__all__ = ["import_ahead", "not_fitted"]
