"""The notebooks run end to end at tiny scale on the local corpora, in a kernel of this interpreter."""

from __future__ import annotations

import json
import os
import sys

import pytest

from training_helpers import REPO

nbformat = pytest.importorskip("nbformat", reason="the notebook test needs the test extra (nbformat, nbclient, ipykernel)")
from nbclient import NotebookClient  # noqa: E402

KERNEL = "pybpe-test-python"


@pytest.fixture
def kernel(tmp_path, monkeypatch) -> str:
    """A kernel spec that runs this interpreter (a fresh venv has no installed spec to rely on)."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "pybpe tests", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("PYBPE_SCALE", "tiny")
    return KERNEL


@pytest.mark.parametrize("name, runs", [
    ("wikitext2_vs_bookcorpus", ["wikitext2", "bookcorpus"]),
    ("wikitext2_shakespeare_char", ["wikitext2", "shakespeare_char"]),
])
def test_notebook_runs_at_tiny_scale(name, runs, kernel, data, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setenv("PYBPE_NOTEBOOK_OUT", str(out))
    nb = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, kernel_name=kernel, timeout=600, resources={"metadata": {"path": str(tmp_path)}}).execute()
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary["runs"]) == sorted(runs)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 7
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    for run in runs:
        assert f"--- {run}, T=0.7" in printed
    assert not (REPO / "notebooks" / "runs").exists()
