"""pybpe: a fast byte-level BPE tokenizer with a Rust core."""

from pybpe.errors import (
    ConfigError,
    CorpusError,
    FileError,
    PybpeError,
    SpecialTokenError,
    TokenizerFileError,
    VocabShortfallWarning,
)
from pybpe.tokenizer import Tokenizer

__version__ = "0.1.0"
__all__ = [
    "Tokenizer",
    "PybpeError",
    "FileError",
    "CorpusError",
    "ConfigError",
    "TokenizerFileError",
    "SpecialTokenError",
    "VocabShortfallWarning",
]
