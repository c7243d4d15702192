"""`pybpe.Tokenizer`: a thin wrapper around the Rust tokenizer in `pybpe._core`."""

from __future__ import annotations

import os
import warnings
from typing import Callable, Iterable, Optional, Union

from pybpe import _core
from pybpe.errors import ConfigError, VocabShortfallWarning

PathLike = Union[str, "os.PathLike[str]"]
ProgressCallback = Callable[[str, int, Optional[int]], None]


def _threads(threads: Optional[int]) -> int:
    if threads is None:
        return 0
    if not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be a positive whole number or None (all cores), not {threads!r}")
    return threads


class Tokenizer:
    """A byte-level BPE tokenizer.

    Ids 0-255 are the single bytes, then come the merges in the order they were learned,
    then the special tokens (for a tokenizer trained by pybpe).
    """

    def __init__(self, core: _core.CoreTokenizer):
        self._core = core
        self.train_report: Optional[dict] = None
        self._vocab: Optional[dict] = None

    # -- making one ------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        files: Union[PathLike, Iterable[PathLike]],
        vocab_size: int,
        special_tokens: Iterable[str] = (),
        pattern: str = "gpt2",
        threads: Optional[int] = None,
        *,
        strict_utf8: bool = False,
        progress: Optional[ProgressCallback] = None,
    ) -> "Tokenizer":
        """Trains on text files ("-" is standard input).

        `pattern` is "gpt2", "gpt4" or a regular expression. Invalid UTF-8 is replaced
        with U+FFFD unless `strict_utf8`. The counts of the run are in `.train_report`.
        Warns with VocabShortfallWarning when the corpus runs out of pairs first.
        """
        if isinstance(files, (str, os.PathLike)):
            files = [files]
        files = [os.fspath(f) for f in files]
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
            raise ConfigError(f"vocab_size must be a whole number, not {vocab_size!r}")
        if vocab_size < 0:
            raise ConfigError(f"vocab size {vocab_size} is out of range: it must be at least 256 + the special tokens")
        special_tokens = list(special_tokens)
        core, report = _core.train_bpe(
            files, vocab_size, special_tokens, pattern, _threads(threads), strict_utf8, progress
        )
        tokenizer = cls(core)
        tokenizer.train_report = report
        if report["merges_learned"] < report["merges_requested"]:
            warnings.warn(
                f"the corpus ran out of pairs after {report['merges_learned']} merges: "
                f"vocab size is {core.vocab_size()}, not the {vocab_size} asked for",
                VocabShortfallWarning,
                stacklevel=2,
            )
        return tokenizer

    @classmethod
    def load(cls, path: PathLike) -> "Tokenizer":
        """Reads a tokenizer file written by `save`."""
        return cls(_core.CoreTokenizer.load(os.fspath(path)))

    def save(self, path: PathLike) -> None:
        """Writes the tokenizer as one JSON document (atomically: temp file, then rename)."""
        self._core.save(os.fspath(path))

    def to_json(self) -> str:
        return self._core.to_json()

    @classmethod
    def from_json(cls, text: str) -> "Tokenizer":
        return cls(_core.CoreTokenizer.from_json(text))

    # -- what it is ------------------------------------------------------------------

    @property
    def vocab(self) -> dict[int, bytes]:
        """Token bytes by id, special tokens included."""
        if self._vocab is None:
            self._vocab = self._core.vocab()
        return dict(self._vocab)

    @property
    def merges(self) -> list[tuple[bytes, bytes]]:
        """The merges, in the order they were learned."""
        return self._core.merges()

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._core.special_tokens())

    @property
    def pattern(self) -> str:
        """"gpt2", "gpt4", or the custom regular expression."""
        return self._core.pattern()

    @property
    def pattern_regex(self) -> str:
        """The regular expression the pattern is equal to."""
        return self._core.pattern_regex()

    @property
    def vocab_size(self) -> int:
        return self._core.vocab_size()

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return (
            f"Tokenizer(vocab_size={self.vocab_size}, merges={len(self._core.merge_ids())}, "
            f"special_tokens={list(self.special_tokens)}, pattern={self.pattern!r})"
        )

    # -- interop
    # Other formats (GPT-2 files, tiktoken, HuggingFace); the work is in pybpe/interop.py.

    @classmethod
    def from_gpt2(cls, vocab_json: PathLike, merges_txt: PathLike,
                  special_tokens: Iterable[str] = ("<|endoftext|>",), pattern: str = "gpt2") -> "Tokenizer":
        """Reads GPT-2's `vocab.json` + `merges.txt`, keeping its ids. A special token takes
        its id from vocab.json when it is there, else the next free id."""
        from pybpe import interop

        return cls(interop.read_gpt2(vocab_json, merges_txt, special_tokens, pattern))

    @classmethod
    def from_vocab_merges(cls, vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]],
                          special_tokens: Iterable[str] = ("<|endoftext|>",), pattern: str = "gpt2") -> "Tokenizer":
        """Builds one from token bytes by id and merges as byte pairs in order (CS336's form).
        A special token takes the id of the token holding its bytes, else the next free id."""
        from pybpe import interop

        return cls(interop.build(vocab, merges, list(special_tokens), pattern, source="the vocab and merges given"))

    @classmethod
    def from_tiktoken_file(cls, path: PathLike, special_tokens: Union[dict[str, int], Iterable[str]] = (),
                           *, pattern: str) -> "Tokenizer":
        """Reads a tiktoken `.tiktoken` rank file: ids are the ranks, merges are derived.
        The file holds neither the pattern nor the special tokens, so both are given:
        specials as a dict name -> id, or a list (ids after the largest rank)."""
        from pybpe import interop

        return cls(interop.read_tiktoken_file(path, special_tokens, pattern))

    def save_tiktoken(self, path: PathLike) -> None:
        """Writes the non-special tokens as a tiktoken rank file (rank = id)."""
        from pybpe import interop

        interop.save_tiktoken(self._core, path)

    def to_tiktoken(self, name: str = "pybpe"):
        """A `tiktoken.Encoding` with this pattern, ranks = ids, and these special tokens."""
        from pybpe import interop

        return interop.to_tiktoken(self._core, name)

    def save_huggingface(self, path: PathLike) -> None:
        """Writes a HuggingFace `tokenizers` tokenizer.json that encodes to the same ids."""
        from pybpe import interop

        interop.save_huggingface(self._core, path)

    def save_gpt2(self, vocab_json: PathLike, merges_txt: PathLike) -> None:
        """Writes GPT-2's `vocab.json` + `merges.txt` (read back by `from_gpt2`)."""
        from pybpe import interop

        interop.save_gpt2(self._core, vocab_json, merges_txt)


def pretokenize(text: str, pattern: str = "gpt2", special_tokens: Iterable[str] = ()) -> list[str]:
    """The pre-tokens of `text`, special tokens cut out first and kept whole."""
    return _core.pretokenize(text, pattern, list(special_tokens))
