"""Fixtures shared by the test modules: the shared data folder and a small trained tokenizer."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import pybpe  # noqa: E402
from pybpe.data import data_dir  # noqa: E402


@pytest.fixture(scope="session")
def data() -> Path:
    """The shared data folder (env PYBPE_DATA, default ../shared/data). Missing data is a failure, not a skip."""
    path = data_dir()
    if not (path / "cs336").is_dir() or not (path / "corpora").is_dir():
        pytest.fail(f"shared data not found at {path}: set PYBPE_DATA to the folder holding cs336/ and corpora/")
    return path


@pytest.fixture(scope="module")
def tokenizer_file(data, tmp_path_factory):
    """A 1,000-token tokenizer with <|endoftext|>, trained on TinyStories text and saved."""
    path = tmp_path_factory.mktemp("tok") / "tok.json"
    pybpe.Tokenizer.train(data / "corpora/tinystories_pool_valid.txt", 1000, ["<|endoftext|>"]).save(path)
    return path


@pytest.fixture(scope="module")
def tok(tokenizer_file):
    return pybpe.Tokenizer.load(tokenizer_file)


def pytest_configure(config):
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(data_dir() / "tiktoken_cache"))
