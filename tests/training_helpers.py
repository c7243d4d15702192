"""Helpers for the training tests: token files written with numpy, tiny configs, the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

# Tiny models run fastest on one thread, and the machine's cores are shared with other tests.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
EOT_ID = 256  # byte-level ids 0-255, then <|endoftext|>
DATA = Path(os.environ.get("PYBPE_DATA", REPO.parent / "shared" / "data"))


def write_bin(path: Path, ids, vocab_size: int = 257, dtype: str = "uint16", eot_id: int | None = EOT_ID,
              tokenizer: Path | None = None, **overrides) -> Path:
    """Writes ids as path (raw little-endian) and the sidecar path.json."""
    arr = np.asarray(ids, dtype="<u2" if dtype == "uint16" else "<u4")
    path.write_bytes(arr.tobytes())
    meta = {
        "format": "pybpe-tokens", "version": 1, "dtype": dtype, "num_tokens": int(arr.size),
        "vocab_size": vocab_size, "special_tokens": {} if eot_id is None else {"<|endoftext|>": eot_id},
        "tokenizer": None if tokenizer is None else {
            "path": str(tokenizer), "sha256": hashlib.sha256(tokenizer.read_bytes()).hexdigest()},
        "sources": [],
    }
    meta.update(overrides)
    Path(str(path) + ".json").write_text(json.dumps(meta))
    return path


def byte_ids(text: str, eot_id: int = EOT_ID) -> list[int]:
    """Documents separated by '\\n\\n' as byte ids, each followed by end-of-text."""
    ids: list[int] = []
    for doc in text.split("\n\n"):
        if doc.strip():
            ids.extend(doc.encode("utf-8"))
            ids.append(eot_id)
    return ids


def byte_tokenizer(path: Path) -> Path:
    """A pybpe tokenizer with no merges: ids 0-255 are the bytes, 256 is <|endoftext|>."""
    import pybpe

    corpus = path.with_suffix(".corpus.txt")
    corpus.write_text("ab")
    pybpe.Tokenizer.train([str(corpus)], vocab_size=257, special_tokens=["<|endoftext|>"]).save(str(path))
    return path


def make_data(dir: Path, train_ids, val_ids, **kw) -> Path:
    dir.mkdir(parents=True, exist_ok=True)
    write_bin(dir / "train.bin", train_ids, **kw)
    write_bin(dir / "val.bin", val_ids, **kw)
    return dir


def shakespeare(n_bytes: int) -> str:
    path = DATA / "corpora" / "tinyshakespeare.txt"
    if not path.is_file():
        raise FileNotFoundError(f"test data {path} is missing (set PYBPE_DATA to the shared data folder)")
    return path.read_text(encoding="utf-8")[:n_bytes]


TINY = {  # on top of the tinystories preset (the CS336 architecture)
    "vocab_size": 0, "context_length": 32, "d_model": 32, "n_layers": 2, "n_heads": 2, "d_ff": 64, "batch_size": 8,
    "max_steps": 20, "lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 2, "eval_interval": 10, "eval_batches": 2,
    "log_interval": 5, "device": "cpu", "seed": 0,
}


def sets(**kw) -> list[str]:
    """--preset tinystories with the TINY keys and `kw` set."""
    out = ["--preset", "tinystories"]
    for key, value in {**TINY, **kw}.items():
        out += ["--set", f"{key}={str(value).lower() if isinstance(value, bool) else value}"]
    return out


def cli(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Runs `python -m training ARGS` with this checkout first on the path."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "training", *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def read_metrics(out: Path) -> list[dict]:
    return [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines() if l.strip()]


def tiny_config(**kw):
    """The Config that `sets(**kw)` gives on the command line."""
    from training import config

    return config.load("tinystories", None, {**TINY, **kw})


def quiet(*args, **kwargs) -> None:
    pass
