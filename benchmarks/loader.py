"""Per-batch time of the training loader: the row-by-row loader it replaced against `Batches`.

    python3 benchmarks/loader.py [--tokens 50000000] [--batches 300] [--repeat 3]

Both draw the same window starts from the same seed; the ids they yield are asserted equal.
The token file is a temporary uint16 file of random ids (its pages are in the page cache: this
times the loader, not the disk). Device: CPU, so this is the gather and the int64 widening.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.data import Batches, TokenFile, open_tokens  # noqa: E402


def baseline_windows(data: TokenFile, starts: np.ndarray, T: int, device: torch.device):
    """training.data.windows as it was before the gathered loader (a fresh map, one row at a time)."""
    tokens = data.tokens()
    xy = torch.from_numpy(np.stack([tokens[s : s + T + 1].astype(np.int64) for s in starts]))
    x, y = xy[:, :-1], xy[:, 1:]
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


class BaselineBatches:
    def __init__(self, data, batch_size, context_length, device, seed):
        self.data, self.batch_size, self.T, self.device = data, batch_size, context_length, device
        self.rng = np.random.default_rng(seed)

    def next(self):
        starts = self.rng.integers(0, self.data.num_tokens - self.T, size=self.batch_size)
        return baseline_windows(self.data, starts, self.T, self.device)


def token_file(folder: Path, n: int) -> TokenFile:
    path = folder / "train.bin"
    ids = np.random.default_rng(0).integers(0, 50257, size=n, dtype=np.uint16)
    ids.tofile(path)
    Path(str(path) + ".json").write_text(json.dumps({
        "format": "pybpe-tokens", "version": 1, "dtype": "uint16", "num_tokens": n, "vocab_size": 50257,
        "special_tokens": {}, "tokenizer": None, "sources": []}))
    return open_tokens(path)


def per_batch_us(loader, batches: int) -> float:
    loader.next()
    t = time.perf_counter()
    for _ in range(batches):
        loader.next()
    return (time.perf_counter() - t) / batches * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=50_000_000)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many timings per peer")
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device("cpu")
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"numpy {np.__version__}; {args.tokens:,} uint16 tokens, {args.batches} batches a timing, best of {args.repeat}")
    print("| batch x context | before µs/batch | after µs/batch | speed-up | same ids |")
    print("|---|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        data = token_file(Path(tmp), args.tokens)
        for B, T in ((128, 256), (32, 1024)):
            old, new = BaselineBatches(data, B, T, device, 1), Batches(data, B, T, device, 1)
            same = all(torch.equal(a, b) for _ in range(50) for a, b in zip(old.next(), new.next()))
            assert same, "the loaders yield different ids"
            before = min(per_batch_us(BaselineBatches(data, B, T, device, 2), args.batches) for _ in range(args.repeat))
            after = min(per_batch_us(Batches(data, B, T, device, 2), args.batches) for _ in range(args.repeat))
            print(f"| {B} x {T} | {before:,.0f} | {after:,.1f} | {before / after:.1f}x | {'yes' if same else 'NO'} |",
                  flush=True)


if __name__ == "__main__":
    main()
