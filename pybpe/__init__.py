"""pybpe: a fast byte-level BPE tokenizer with a Rust core."""

from pybpe.errors import (
    ConfigError,
    CorpusError,
    FileError,
    PybpeError,
    SpecialTokenError,
    TokenizerFileError,
    UnmatchedTextWarning,
    VocabShortfallWarning,
)
from pybpe.tokenizer import Tokenizer


def get_encoding(name: str) -> Tokenizer:
    """A named encoding ("gpt2", "cl100k_base", ...), as tiktoken's `get_encoding`: see
    `Tokenizer.from_name`."""
    return Tokenizer.from_name(name)


__version__ = "0.1.0"
__all__ = [
    "Tokenizer",
    "get_encoding",
    "PybpeError",
    "FileError",
    "CorpusError",
    "ConfigError",
    "TokenizerFileError",
    "SpecialTokenError",
    "VocabShortfallWarning",
    "UnmatchedTextWarning",
]
