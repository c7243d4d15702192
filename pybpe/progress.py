"""Progress bars on a terminal (tqdm), silence elsewhere."""

from __future__ import annotations

import sys
from typing import Optional

# The bar each phase draws.
BARS = {
    "count": dict(desc="pre-tokenize", unit="B", unit_scale=True, unit_divisor=1024),
    "merge": dict(desc="merge", unit=" merges"),
    "encode": dict(desc="encode", unit="B", unit_scale=True, unit_divisor=1000),
}


class PhaseProgress:
    """One tqdm bar per phase of a long job, drawn on stderr when it is a terminal."""

    def __init__(self, enabled: Optional[bool] = None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar = None
        self._phase = None

    def update(self, phase: str, done: int, total: Optional[int]) -> None:
        if not self.enabled:
            return
        if phase != self._phase:
            self.close()
            from tqdm import tqdm

            self._bar = tqdm(total=total, leave=False, **BARS[phase])
            self._phase = phase
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._phase = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class TrainingProgress(PhaseProgress):
    """The `progress(phase, done, total)` callback of `Tokenizer.train`."""

    def __call__(self, phase: str, done: int, total: Optional[int]) -> None:
        self.update(phase, done, total)


class EncodingProgress(PhaseProgress):
    """The `progress(done_bytes, total_bytes)` callback of `Tokenizer.encode_file`: a bar with MB/s."""

    def __call__(self, done: int, total: int) -> None:
        self.update("encode", done, total)
