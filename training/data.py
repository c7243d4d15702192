"""Token arrays written by pybpe: `X.bin` (uint16/uint32 ids) with the sidecar `X.bin.json`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from training.errors import TrainingError

EOT = "<|endoftext|>"
DTYPES = {"uint16": np.uint16, "uint32": np.uint32}


@dataclass
class TokenFile:
    path: Path
    dtype: str
    num_tokens: int
    vocab_size: int
    special_tokens: dict[str, int]
    tokenizer: Optional[dict[str, Any]]
    loader: Optional["WindowLoader"] = field(default=None, init=False, repr=False, compare=False)

    @property
    def eot_id(self) -> Optional[int]:
        return self.special_tokens.get(EOT)

    def tokens(self) -> np.memmap:
        # A fresh read-only map each time: pages read through an old map are not kept alive.
        return np.memmap(self.path, dtype=DTYPES[self.dtype], mode="r", shape=(self.num_tokens,))


def open_tokens(path: "str | os.PathLike[str]") -> TokenFile:
    """Reads and checks `path` and its sidecar `path.json`."""
    path = Path(path)
    meta_path = Path(str(path) + ".json")
    if not path.is_file():
        raise TrainingError(f"data file {path} does not exist")
    if not meta_path.is_file():
        raise TrainingError(f"data file {path} has no sidecar {meta_path.name} (write it with pybpe encode)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TrainingError(f"sidecar {meta_path} is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != "pybpe-tokens":
        raise TrainingError(f"sidecar {meta_path} is not a pybpe-tokens file (format must be \"pybpe-tokens\")")
    dtype = meta.get("dtype")
    if dtype not in DTYPES:
        raise TrainingError(f"sidecar {meta_path}: dtype {dtype!r} is not uint16 or uint32")
    num_tokens, vocab_size = meta.get("num_tokens"), meta.get("vocab_size")
    if not isinstance(num_tokens, int) or not isinstance(vocab_size, int) or vocab_size < 1:
        raise TrainingError(f"sidecar {meta_path}: num_tokens and vocab_size must be whole numbers")
    if dtype == "uint16" and vocab_size > 1 << 16:
        raise TrainingError(f"sidecar {meta_path}: vocab_size {vocab_size} does not fit dtype uint16")
    itemsize = np.dtype(DTYPES[dtype]).itemsize
    size = path.stat().st_size
    if size != num_tokens * itemsize:
        raise TrainingError(
            f"data file {path} has {size} bytes, but the sidecar says {num_tokens} tokens of {dtype} "
            f"({num_tokens * itemsize} bytes): wrong dtype or a truncated file"
        )
    if num_tokens == 0:
        raise TrainingError(f"data file {path} is empty")
    special = meta.get("special_tokens") or {}
    if not isinstance(special, dict) or not all(isinstance(k, str) for k in special):
        raise TrainingError(f"sidecar {meta_path}: special_tokens must be an object of token text to id")
    if any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < vocab_size for i in special.values()):
        raise TrainingError(f"sidecar {meta_path}: special token ids must be whole numbers below vocab_size {vocab_size}")
    tokenizer = meta.get("tokenizer")
    if tokenizer is not None and (
        not isinstance(tokenizer, dict)
        or any(not isinstance(tokenizer.get(k), (str, type(None))) for k in ("path", "sha256"))
    ):
        raise TrainingError(f"sidecar {meta_path}: tokenizer must be null or an object with a path and a sha256 string")
    tokens = TokenFile(path, dtype, num_tokens, vocab_size, dict(special), tokenizer)
    check_ids(tokens)
    return tokens


def check_ids(data: TokenFile, chunk: int = 1 << 24) -> None:
    """Refuses a file holding an id at or above its vocab_size, naming the first one."""
    if data.vocab_size >= np.iinfo(DTYPES[data.dtype]).max + 1:
        return  # every value of the dtype is a valid id
    tokens = data.tokens()
    for start in range(0, data.num_tokens, chunk):
        part = tokens[start : start + chunk]
        if part.max() >= data.vocab_size:
            at = start + int(np.argmax(part >= data.vocab_size))
            raise TrainingError(
                f"data file {data.path} holds id {int(tokens[at])} at position {at:,}, "
                f"not below its sidecar's vocab_size {data.vocab_size}"
            )


@dataclass
class Dataset:
    train: TokenFile
    val: TokenFile

    @property
    def vocab_size(self) -> int:
        return self.train.vocab_size


def open_dataset(data_dir: "str | os.PathLike[str]", context_length: int) -> Dataset:
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise TrainingError(f"data directory {data_dir} does not exist")
    train, val = open_tokens(data_dir / "train.bin"), open_tokens(data_dir / "val.bin")
    for name in ("dtype", "vocab_size", "special_tokens"):
        if getattr(train, name) != getattr(val, name):
            raise TrainingError(
                f"train.bin and val.bin disagree on {name}: {getattr(train, name)} vs {getattr(val, name)}"
            )
    digests = [(f.tokenizer or {}).get("sha256") for f in (train, val)]
    if all(digests) and digests[0] != digests[1]:
        raise TrainingError(
            f"train.bin and val.bin were encoded by different tokenizers (sha256 {digests[0][:12]}... "
            f"vs {digests[1][:12]}...); encode both splits with the same one"
        )
    for f in (train, val):
        if f.num_tokens < context_length + 1:
            raise TrainingError(
                f"data file {f.path} has {f.num_tokens} tokens, fewer than context_length + 1 = {context_length + 1}"
            )
    return Dataset(train, val)


class Batches:
    """Random contiguous windows of a token file; the generator state is part of a checkpoint.

    The token map is opened once; each batch is gathered in one indexing operation and sent to the
    device in the file's own width (2 or 4 bytes an id), then widened to int64 there. The next batch
    is built when this one is handed out: on CUDA its copy runs on a side stream while the step runs.
    `state()` is the generator state before the batch built ahead was drawn, so a run resumed from it
    sees the same batches.
    """

    def __init__(self, data: TokenFile, batch_size: int, context_length: int, device: torch.device, seed: int):
        self.data, self.batch_size, self.T, self.device = data, batch_size, context_length, device
        self.rng = np.random.default_rng(seed)
        self.loader = WindowLoader(data, device)
        self.ahead: Optional[tuple[dict, tuple[torch.Tensor, torch.Tensor]]] = None

    def state(self) -> dict:
        return self.ahead[0] if self.ahead is not None else self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state
        self.ahead = None

    def _draw(self) -> tuple[dict, tuple[torch.Tensor, torch.Tensor]]:
        before = self.rng.bit_generator.state
        starts = self.rng.integers(0, self.data.num_tokens - self.T, size=self.batch_size)
        return before, self.loader.windows(starts, self.T)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = (self.ahead if self.ahead is not None else self._draw())[1]
        self.loader.ready(x, y)  # before the next copy is queued, which then overlaps this step
        self.ahead = self._draw()
        return x, y


class WindowLoader:
    """Windows of one token file on one device, from a map of the file opened once."""

    def __init__(self, data: TokenFile, device: torch.device):
        self.data, self.device = data, device
        self.tokens = data.tokens()
        self.views: dict[int, np.ndarray] = {}  # windows of T + 1 tokens, by T
        self.wire_torch = torch.int16 if data.dtype == "uint16" else torch.int32
        self.cuda = device.type == "cuda"
        self.stream = torch.cuda.Stream(device) if self.cuda else None
        self.staging: list[tuple[torch.Tensor, Optional[torch.cuda.Event]]] = []
        self.turn = 0

    def windows(self, starts: np.ndarray, T: int) -> tuple[torch.Tensor, torch.Tensor]:
        if T not in self.views:
            self.views[T] = np.lib.stride_tricks.sliding_window_view(self.tokens, T + 1)
        rows = self.views[T][starts]
        if not self.cuda:
            xy = torch.from_numpy(rows.astype(np.int64))
            if self.device.type != "cpu":
                xy = xy.to(self.device)
            return xy[:, :-1], xy[:, 1:]
        host = self._pinned(rows.size).view(rows.shape)
        host.copy_(wire_ids(rows))
        with torch.cuda.stream(self.stream):
            xy = widen_ids(host.to(self.device, non_blocking=True))
        done = torch.cuda.Event()
        done.record(self.stream)
        self.staging[self.turn] = (self.staging[self.turn][0], done)
        return xy[:, :-1], xy[:, 1:]

    def _pinned(self, size: int) -> torch.Tensor:
        # two pinned buffers in turn: one may still be copying while the other is filled
        if len(self.staging) < 2:
            self.staging.append((torch.empty(0, dtype=self.wire_torch), None))
        self.turn = (self.turn + 1) % len(self.staging)
        host, done = self.staging[self.turn]
        if done is not None:
            done.synchronize()
        if host.numel() < size:
            host = torch.empty(size, dtype=self.wire_torch).pin_memory()
            self.staging[self.turn] = (host, None)
        return host[:size]

    def ready(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Makes the compute stream wait for the copy of (x, y) before it uses them."""
        if self.cuda:
            current = torch.cuda.current_stream(self.device)
            current.wait_stream(self.stream)
            x.record_stream(current)
            y.record_stream(current)


def wire_ids(ids: np.ndarray) -> torch.Tensor:
    """uint16/uint32 ids as the signed torch ints of the same width and bits (torch has few
    unsigned ops): what travels to the device, half or a quarter of int64's bytes."""
    return torch.from_numpy(ids.view(np.int16 if ids.dtype == np.uint16 else np.int32))


def widen_ids(wire: torch.Tensor) -> torch.Tensor:
    """The int64 ids of `wire_ids`' signed ints, on their device."""
    return wire.to(torch.int64) & (0xFFFF if wire.dtype == torch.int16 else 0xFFFFFFFF)


def windows(data: TokenFile, starts: np.ndarray, T: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The windows of T + 1 tokens at `starts` as (inputs, next-token targets) on `device`."""
    loader = WindowLoader(data, device) if data.loader is None or data.loader.device != device else data.loader
    data.loader = loader
    x, y = loader.windows(np.asarray(starts), T)
    loader.ready(x, y)
    return x, y


def eval_starts(data: TokenFile, context_length: int, num_windows: int) -> np.ndarray:
    """The fixed validation windows: the whole split when it has at most `num_windows`
    non-overlapping windows, else `num_windows` windows drawn with a fixed seed."""
    whole = (data.num_tokens - 1) // context_length
    if whole <= num_windows:
        return np.arange(whole) * context_length
    return np.sort(np.random.default_rng(0).integers(0, data.num_tokens - context_length, size=num_windows))
