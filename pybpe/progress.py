"""Progress bars on a terminal (tqdm), silence elsewhere."""

from __future__ import annotations

import sys
from typing import Optional


class TrainingProgress:
    """A `progress(phase, done, total)` callback for `Tokenizer.train` that draws one bar a phase."""

    def __init__(self, enabled: Optional[bool] = None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar = None
        self._phase = None

    def __call__(self, phase: str, done: int, total: Optional[int]) -> None:
        if not self.enabled:
            return
        if phase != self._phase:
            self.close()
            from tqdm import tqdm

            if phase == "count":
                self._bar = tqdm(total=total, desc="pre-tokenize", unit="B", unit_scale=True, unit_divisor=1024, leave=False)
            else:
                self._bar = tqdm(total=total, desc="merge", unit=" merges", leave=False)
            self._phase = phase
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
