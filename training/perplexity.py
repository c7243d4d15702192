"""Perplexity per token and per word (WikiText's word-level figure), and the word counts a
prepared data set records in DIR/dataset.json. No torch here."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Optional

from training.errors import TrainingError


def token_perplexity(mean_nll: float) -> float:
    return math.exp(min(mean_nll, 700.0))


def word_perplexity(total_nll: float, num_words: int) -> float:
    """exp(total NLL in nats of a text's tokens / the number of words of the raw text).

    Words are the whitespace-separated pieces of the raw text (WikiText's convention), so the
    figure compares across tokenizers and with word-level results (AWD-LSTM: 68.6 valid on
    WikiText-2).
    """
    if num_words < 1:
        raise ValueError(f"num_words must be at least 1, not {num_words}")
    return math.exp(min(total_nll / num_words, 700.0))


def count_words(text: str) -> int:
    return len(text.split())


def word_counts(data_dir: "str | os.PathLike[str]") -> Optional[dict[str, int]]:
    """The `words` of DIR/dataset.json ({"train": N, "val": M}), or None when the file or the
    key is absent."""
    path = Path(data_dir) / "dataset.json"
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TrainingError(f"{path} is not valid JSON: {e}") from None
    words = meta.get("words") if isinstance(meta, dict) else None
    if words is None:
        return None
    if not isinstance(words, dict) or any(
        isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in words.values()
    ):
        raise TrainingError(f"{path}: words must be an object of split name to a positive whole number")
    return dict(words)
