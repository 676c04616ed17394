"""The tutorial notebooks run top to bottom, each in a working folder of its own, with the
installed package and no network. They are committed without outputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (dev extra)")
nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (dev extra)")
pytest.importorskip("ipykernel", reason="ipykernel is not installed (dev extra)")

REPO = Path(__file__).resolve().parents[1]
TUTORIALS = REPO / "docs" / "tutorials"
DATA = REPO.parent / "shared" / "data"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))

# What a notebook needs beyond the package, and why it skips without it.
NEEDS_DATA = {"03_real_text.ipynb": DATA / "ptb"}


def test_there_are_tutorials_and_they_are_committed_without_outputs():
    assert {"01_first_hour.ipynb", "02_your_own_model.ipynb",
            "03_real_text.ipynb"} <= {p.name for p in NOTEBOOKS}
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata["kernelspec"]["name"] == "python3", path.name
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path.name


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    needed = NEEDS_DATA.get(path.name)
    if needed is not None and not needed.is_dir():
        pytest.skip(f"{path.name} reads {needed}, which is absent")
    # The notebooks read the corpora from STATEGRAD_DATA; one thread per kernel keeps the
    # run fast on a small shared machine and its numbers the same from run to run.
    monkeypatch.setenv("STATEGRAD_DATA", str(DATA))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=900,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    # Every code cell ran and none raised (execute() raises CellExecutionError otherwise).
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    assert os.listdir(tmp_path), "the notebook wrote nothing into its working folder"
