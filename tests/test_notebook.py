"""examples/investigate.ipynb runs from top to bottom, so the example never rots."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_investigate_notebook_executes() -> None:
    nbclient = pytest.importorskip(
        "nbclient", reason="executing the example notebook needs nbclient: pip install -e '.[test]'")
    import nbformat

    notebook = nbformat.read(EXAMPLES / "investigate.ipynb", as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), \
        "commit the notebook without outputs"
    client = nbclient.NotebookClient(notebook, timeout=180, kernel_name="python3",
                                     resources={"metadata": {"path": str(EXAMPLES)}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, if a cell fails

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) >= 2, "the timeline plots should render"
    printed = "".join(out.get("text", "") for out in outputs if out.output_type == "stream")
    assert "evidence:" in printed and re.search(r"sample_logs/\S+:\d+: ", printed)  # raw lines, with file:line
