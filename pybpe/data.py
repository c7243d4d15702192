"""Where the shared data sets live: env PYBPE_DATA, else ../shared/data beside the checkout."""

import os
from pathlib import Path


def data_dir() -> Path:
    if os.environ.get("PYBPE_DATA"):
        return Path(os.environ["PYBPE_DATA"])
    for base in (Path(__file__).resolve().parents[1], Path.cwd()):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def data_file(relative: str) -> Path:
    """A file of the shared data; FileNotFoundError naming the setting when it is missing."""
    path = data_dir() / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: set PYBPE_DATA to the shared data folder (holding cs336/ and corpora/)")
    return path
