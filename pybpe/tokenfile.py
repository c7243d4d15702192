"""Token files: `X.bin` holds raw little-endian uint16/uint32 ids, documents separated by the
end-of-text id; `X.bin.json` beside it says how to read it.

    {"format": "pybpe-tokens", "version": 1, "dtype": "uint16", "num_tokens": N, "vocab_size": V,
     "special_tokens": {"<|endoftext|>": 9999},
     "tokenizer": {"path": "/abs/tokenizer.json", "sha256": "..."},  (a named encoding: {"name": "gpt2", ...})
     "sources": [{"path": "corpus.txt", "bytes": 123}]}
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Optional, Union

from pybpe.errors import ConfigError, FileError

FORMAT = "pybpe-tokens"
VERSION = 1


def sidecar_path(bin_path: Union[str, os.PathLike]) -> Path:
    return Path(f"{os.fspath(bin_path)}.json")


ITEMSIZES = {"uint16": 2, "uint32": 4}


def resolve_dtype(tokenizer, dtype: str) -> str:
    """The name of the dtype to write: `dtype`, or for "auto" the smallest that holds every id."""
    if dtype == "auto":
        return "uint16" if tokenizer.vocab_size <= 1 << 16 else "uint32"
    if dtype not in ITEMSIZES:
        raise ConfigError(f"dtype must be auto, uint16 or uint32, not {dtype!r}")
    if dtype == "uint16" and tokenizer.vocab_size > 1 << 16:
        raise ConfigError(f"uint16 holds ids below 65536, but the vocabulary has {tokenizer.vocab_size:,} tokens: "
                          f"use uint32 or auto")
    return dtype


def encode_files(tokenizer, paths, out_path, *, dtype: str = "auto", threads: int = 0,
                 progress: Optional[Callable[[int, Optional[int]], None]] = None) -> dict:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ConfigError("no input files")
    out = Path(out_path)
    if out.is_dir():
        raise FileError(f"{out}: is a directory; give a file name for the output")
    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise FileError(f"{out}: the directory {out.parent} does not exist")
    dtype_name = resolve_dtype(tokenizer, dtype)
    remove_stale_temp_files(out)
    tmp_bin, tmp_json = temp_paths(out, os.getpid())
    try:
        report = tokenizer._core.encode_files(paths, str(tmp_bin), ITEMSIZES[dtype_name], threads, progress, str(out))
        sidecar = {
            "format": FORMAT,
            "version": VERSION,
            "dtype": dtype_name,
            "num_tokens": report["num_tokens"],
            "vocab_size": tokenizer.vocab_size,
            "special_tokens": tokenizer.special_tokens,
            "tokenizer": tokenizer_reference(tokenizer),
            "sources": [{"path": p if p == "<stdin>" else os.path.abspath(p), "bytes": n} for p, n in report["sources"]],
            "invalid_utf8_bytes": report["invalid_utf8_bytes"],
        }
        try:
            with open(tmp_json, "w", encoding="utf-8") as f:
                f.write(json.dumps(sidecar, indent=2) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise FileError(f"{sidecar_path(out)}: {e.strerror or e}") from None
        with _signals_held():
            os.replace(tmp_bin, out)
            os.replace(tmp_json, sidecar_path(out))
    finally:
        for leftover in (tmp_bin, tmp_json):
            try:
                leftover.unlink()
            except FileNotFoundError:
                pass
    return dict(sidecar, seconds=report["seconds"], bytes_read=report["bytes_read"])


def tokenizer_reference(tokenizer) -> dict:
    """How a sidecar names the tokenizer: {"name": ..., "sha256": ...} for a named encoding
    (`Tokenizer.load(name)` makes it again), else {"path": ..., "sha256": ...}."""
    if tokenizer.name:
        return {"name": tokenizer.name, "sha256": tokenizer_sha256(tokenizer)}
    return {"path": tokenizer.source_path, "sha256": tokenizer_sha256(tokenizer)}


def temp_paths(out: Path, pid: int) -> tuple[Path, Path]:
    """Where the process `pid` writes the token file `out` and its sidecar before they are renamed into place."""
    return out.with_name(f".{out.name}.tmp{pid}"), out.with_name(f".{out.name}.json.tmp{pid}")


def remove_stale_temp_files(out: Path) -> None:
    """Removes the temp files of `out` left by a process that no longer runs (killed before it could)."""
    folder = out.parent if str(out.parent) else Path(".")
    prefixes = (f".{out.name}.tmp", f".{out.name}.json.tmp")
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        pid = next((name[len(p):] for p in prefixes if name.startswith(p)), "")
        if pid.isdigit() and not _process_runs(int(pid)):
            try:
                (folder / name).unlink()
            except OSError:
                pass


def _process_runs(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours from an earlier call, which no longer writes it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's
    except OSError:
        return True
    return True


class _signals_held:
    """Holds SIGINT and SIGTERM back (on Unix) while the output is renamed into place, so
    that a signal leaves both files renamed or neither."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __enter__(self):
        import signal

        self._held = None
        if hasattr(signal, "pthread_sigmask"):
            held = {getattr(signal, name) for name in self.SIGNALS}
            self._held = signal.pthread_sigmask(signal.SIG_BLOCK, held)
        return self

    def __exit__(self, *exc):
        import signal

        if self._held is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._held)


def tokenizer_sha256(tokenizer) -> str:
    """Hash of the tokenizer file it was loaded from (or saved to); of the JSON document it
    would be saved as when there is no such file."""
    if tokenizer.source_path:
        try:
            return hashlib.sha256(Path(tokenizer.source_path).read_bytes()).hexdigest()
        except OSError:
            pass
    return hashlib.sha256(tokenizer.to_json().encode("utf-8")).hexdigest()


def read_sidecar(bin_path: Union[str, os.PathLike]) -> dict:
    path = sidecar_path(bin_path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileError(f"{path}: no such file (the sidecar of {bin_path})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FileError(f"{path}: not a token-file sidecar ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("dtype") not in ("uint16", "uint32"):
        raise FileError(f"{path}: not a pybpe token-file sidecar")
    return meta


def load_tokens(bin_path: Union[str, os.PathLike], mmap: bool = True) -> "np.ndarray":
    """The ids of a token file, memory-mapped, with the dtype its sidecar gives."""
    import numpy as np

    meta = read_sidecar(bin_path)
    dtype = np.dtype(meta["dtype"]).newbyteorder("<")
    if mmap:
        return np.memmap(bin_path, dtype=dtype, mode="r")
    return np.fromfile(bin_path, dtype=dtype)


