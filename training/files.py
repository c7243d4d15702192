"""Writing the small text files of a run (config, metrics, reports) whole or not at all, so that
a run stopped mid-write never leaves a half-written file for the next run or the report to read."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_text_atomically(path: Path, text: str) -> None:
    """Writes `text` (UTF-8) to PATH.tmp, then renames it over `path`."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json_atomically(path: Path, obj: Any) -> None:
    """`obj` as indented JSON, written atomically."""
    write_text_atomically(path, json.dumps(obj, indent=2) + "\n")
