"""Checkpoints: written atomically, read with a clear error when damaged or incompatible."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from training.config import ARCHITECTURE_KEYS, Config
from training.errors import TrainingError

FORMAT = "pybpe-training-checkpoint"
VERSION = 1


def clean_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drops the prefixes torch.compile (`_orig_mod.`) and DDP (`module.`) put on keys."""
    out = {}
    for key, value in state.items():
        for prefix in ("_orig_mod.", "module."):
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def save(path: "str | os.PathLike[str]", ckpt: dict[str, Any]) -> None:
    """Writes `ckpt` to a temporary file beside `path`, then renames it over `path`."""
    path = Path(path)
    ckpt = {"format": FORMAT, "version": VERSION, **ckpt}
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(ckpt, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: "str | os.PathLike[str]", map_location: Any = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for a damaged file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TrainingError(f"checkpoint {path} is corrupt or unreadable ({first})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise TrainingError(f"{path} is not a pybpe training checkpoint")
    if ckpt.get("version") != VERSION:
        raise TrainingError(f"checkpoint {path} has version {ckpt.get('version')}, this code reads version {VERSION}")
    ckpt["model"] = clean_state_dict(ckpt["model"])
    return ckpt


def config_of(ckpt: dict[str, Any]) -> Config:
    cfg = Config()
    for key, value in ckpt["config"].items():
        if hasattr(cfg, key):
            setattr(cfg, key, value)
    return cfg


def check_compatible(saved: Config, new: Config, path: "str | os.PathLike[str]") -> None:
    """Resuming needs the same model shape; everything else may change."""
    diffs = [
        f"{key} {getattr(saved, key)!r} in the checkpoint, {getattr(new, key)!r} now"
        for key in ARCHITECTURE_KEYS
        if getattr(saved, key) != getattr(new, key)
    ]
    if diffs:
        raise TrainingError(f"cannot resume from {path} with an incompatible config: " + "; ".join(diffs))
