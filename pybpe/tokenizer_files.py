"""Loading any tokenizer file pybpe writes: a BPE tokenizer (`Tokenizer`) or a character
vocabulary (`CharTokenizer`)."""

from __future__ import annotations

import os
from typing import Callable, Optional, Union


def load_any(path: Union[str, "os.PathLike[str]"], load_bpe: Optional[Callable] = None):
    """A CharTokenizer when `path` is a character vocabulary file, else `load_bpe(path)`
    (default `Tokenizer.load`)."""
    from pybpe.chartok import CharTokenizer, is_char_file

    if is_char_file(path):
        return CharTokenizer.load(path)
    if load_bpe is None:
        from pybpe.tokenizer import Tokenizer

        load_bpe = Tokenizer.load
    return load_bpe(path)


def is_char_file(path) -> bool:
    from pybpe.chartok import is_char_file as check

    return check(path)
