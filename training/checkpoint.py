"""Checkpoints: written atomically, read with a clear error when damaged or incompatible."""

from __future__ import annotations

import os
import secrets
import shutil
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
    """Writes `ckpt` to a temporary file beside `path`, then renames it over `path`.

    The temporary file is `PATH.PID.XXXXXXXX.tmp`, so that a later run can tell a stale one
    (its process is gone) from one being written. On failure it is removed and `path` is
    left as it was.
    """
    path = Path(path)
    ckpt = {"format": FORMAT, "version": VERSION, **ckpt}
    fd, tmp = tempfile.mkstemp(prefix=f"{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(ckpt, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        kept = f"the previous {path.name} is kept" if path.exists() else f"no {path.name} was written"
        raise TrainingError(f"cannot write checkpoint {path}: {e.strerror or e}; {kept}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def link_or_copy(source: "str | os.PathLike[str]", path: "str | os.PathLike[str]") -> None:
    """Makes `path` the checkpoint `source` holds without serialising it again: a hard link (the
    two names share the file until the next save replaces `source`), or a copy where the file
    system has no hard links. Atomic like `save`: `path` is the old file or the new, never a part."""
    source, path = Path(source), Path(path)
    tmp = path.parent / f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        try:
            os.link(source, tmp)
        except OSError:
            with open(source, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 24)
                dst.flush()
                os.fsync(dst.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        kept = f"the previous {path.name} is kept" if path.exists() else f"no {path.name} was written"
        raise TrainingError(f"cannot write checkpoint {path}: {e.strerror or e}; {kept}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temp_files(out_dir: "str | os.PathLike[str]") -> list[Path]:
    """Removes the temporary checkpoint files in `out_dir` that no running process is writing:
    those of a save killed before it could clean up. Returns the files removed."""
    removed = []
    for tmp in Path(out_dir).glob("ckpt_*.pt.*.tmp"):
        middle = tmp.name[: -len(".tmp")].split(".pt.", 1)[1]
        pid, _, rest = middle.partition(".")
        if rest and pid.isdigit() and _process_alive(int(pid)):
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process, or a number no process can have
    return True


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
    require(ckpt, ("model", "config"), path)
    if not isinstance(ckpt["model"], dict):
        raise TrainingError(f"checkpoint {path} holds no model weights")
    ckpt["model"] = clean_state_dict(ckpt["model"])
    ckpt["path"] = str(path)
    return ckpt


# What resuming a run needs beyond the model and its config.
TRAINING_STATE = ("data", "optimizer", "scaler", "step", "best_val", "elapsed_s", "tokens_seen", "rng")


def require(ckpt: dict[str, Any], keys: "tuple[str, ...]", path: "str | os.PathLike[str]") -> None:
    missing = [key for key in keys if key not in ckpt]
    if missing:
        raise TrainingError(f"checkpoint {path} lacks {', '.join(missing)}: it was not written by a complete run")


def config_of(ckpt: dict[str, Any]) -> Config:
    """The checkpoint's config, validated; keys added to Config since it was written take their defaults."""
    path = ckpt.get("path", "the checkpoint")
    saved = ckpt.get("config")
    if not isinstance(saved, dict):
        raise TrainingError(f"checkpoint {path} holds no config")
    missing = [key for key in ARCHITECTURE_KEYS if key not in saved]
    if missing:
        raise TrainingError(f"checkpoint {path} lacks the config keys {', '.join(missing)}")
    cfg = Config()
    for key, value in saved.items():
        if hasattr(cfg, key):
            setattr(cfg, key, value)
    try:
        cfg.validate()
    except TrainingError as e:
        raise TrainingError(f"checkpoint {path} has an invalid config: {e}") from None
    if cfg.vocab_size < 1:
        raise TrainingError(f"checkpoint {path} has an invalid config: vocab_size {cfg.vocab_size}")
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
