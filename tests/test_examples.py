"""The walkthrough notebook runs, short, through a real Jupyter kernel, and its checks pass."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import lecun1989
from lecun1989 import paper

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOK = EXAMPLES / "walkthrough.ipynb"
PROBE = "import sys, lecun1989; print(sys.executable); print(lecun1989.__file__)"


def test_the_notebook_is_stored_without_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert len(code) >= 10
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.slow
def test_the_walkthrough_notebook_runs_in_a_jupyter_kernel(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("LECUN1989_EXAMPLE_SHORT", "1")
    monkeypatch.setenv("LECUN1989_EXAMPLE_OUT", str(tmp_path / "out"))
    # The kernel must be this interpreter's ipykernel: jupyter_client's built-in "python3"
    # spec runs sys.executable; a spec installed elsewhere would win, so the probe checks.
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter-runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(PROBE))
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=600,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first failing cell or assert

    def text(cell) -> str:
        return "".join(o.get("text", "") for o in cell.outputs if o["output_type"] == "stream")

    executable, package = text(nb.cells[0]).split()
    assert Path(executable).resolve() == Path(sys.executable).resolve()
    assert Path(package).resolve() == Path(lecun1989.__file__).resolve()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)  # every cell ran
    assert not any(o["output_type"] == "error" for c in code for o in c.outputs)
    last = text(code[-1])
    assert (f"units {paper.UNITS}, connections {paper.CONNECTIONS}, parameters "
            f"{paper.PARAMETERS}") in last and "walkthrough checks passed" in last
    pictures = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(pictures) == 5  # digits, loss, parameters, feature maps, learning
    run = tmp_path / "out" / "run"
    assert (run / "summary.json").is_file() and (run / "pass_weights.safetensors").is_file()
