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
                 progress: Optional[Callable[[int, int], None]] = None) -> dict:
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
    tmp_bin = out.with_name(f".{out.name}.tmp{os.getpid()}")
    tmp_json = out.with_name(f".{out.name}.json.tmp{os.getpid()}")
    try:
        report = tokenizer._core.encode_files(paths, str(tmp_bin), ITEMSIZES[dtype_name], threads, progress)
        sidecar = {
            "format": FORMAT,
            "version": VERSION,
            "dtype": dtype_name,
            "num_tokens": report["num_tokens"],
            "vocab_size": tokenizer.vocab_size,
            "special_tokens": tokenizer.special_tokens,
            "tokenizer": tokenizer_reference(tokenizer),
            "sources": [{"path": os.path.abspath(p), "bytes": n} for p, n in report["sources"]],
            "invalid_utf8_bytes": report["invalid_utf8_bytes"],
        }
        tmp_json.write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp_bin, out)
        os.replace(tmp_json, sidecar_path(out))
    finally:
        for leftover in (tmp_bin, tmp_json):
            if leftover.exists():
                leftover.unlink()
    return dict(sidecar, seconds=report["seconds"], bytes_read=report["bytes_read"])


def tokenizer_reference(tokenizer) -> dict:
    """How a sidecar names the tokenizer: {"name": ..., "sha256": ...} for a named encoding
    (`Tokenizer.load(name)` makes it again), else {"path": ..., "sha256": ...}."""
    if tokenizer.name:
        return {"name": tokenizer.name, "sha256": tokenizer_sha256(tokenizer)}
    return {"path": tokenizer.source_path, "sha256": tokenizer_sha256(tokenizer)}


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


