import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from pybpe.data import data_dir  # noqa: E402


@pytest.fixture(scope="session")
def data() -> Path:
    """The shared data folder (env PYBPE_DATA, default ../shared/data). Missing data is a failure, not a skip."""
    path = data_dir()
    if not (path / "cs336").is_dir() or not (path / "corpora").is_dir():
        pytest.fail(f"shared data not found at {path}: set PYBPE_DATA to the folder holding cs336/ and corpora/")
    return path


def pytest_configure(config):
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(data_dir() / "tiktoken_cache"))
