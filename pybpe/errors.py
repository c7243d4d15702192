"""The exceptions pybpe raises; all derive from PybpeError."""

from pybpe._core import ConfigError, CorpusError, FileError, PybpeError, SpecialTokenError, TokenizerFileError


class VocabShortfallWarning(UserWarning):
    """Training ran out of pairs to merge before reaching the vocabulary size asked for."""


__all__ = [
    "PybpeError", "FileError", "CorpusError", "ConfigError", "TokenizerFileError", "SpecialTokenError",
    "VocabShortfallWarning",
]
