"""The exceptions pybpe raises; all derive from PybpeError."""

from pybpe._core import ConfigError, CorpusError, FileError, PybpeError, SpecialTokenError, TokenizerFileError


class VocabShortfallWarning(UserWarning):
    """Training ran out of pairs to merge before reaching the vocabulary size asked for."""


class UnmatchedTextWarning(UserWarning):
    """A regular-expression pattern left most of the text encoded out of its pre-tokens
    (and so out of the tokens)."""


__all__ = [
    "PybpeError", "FileError", "CorpusError", "ConfigError", "TokenizerFileError", "SpecialTokenError",
    "VocabShortfallWarning", "UnmatchedTextWarning",
]
