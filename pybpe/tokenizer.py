"""`pybpe.Tokenizer`: a thin wrapper around the Rust tokenizer in `pybpe._core`."""

from __future__ import annotations

import os
import sys
import warnings
from typing import TYPE_CHECKING, AbstractSet, Callable, Collection, Iterable, Iterator, Optional, Sequence, Union

if TYPE_CHECKING:
    import numpy as np

from pybpe import _core
from pybpe.errors import ConfigError, FileError, UnmatchedTextWarning, VocabShortfallWarning

# encode_iterable encodes the text it has gathered once it holds this many characters.
_ITERABLE_BLOCK_CHARS = 1 << 20

PathLike = Union[str, "os.PathLike[str]"]
ProgressCallback = Callable[[str, int, Optional[int]], None]


def _threads(threads: Optional[int]) -> int:
    if threads is None:
        return 0
    if not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be a positive whole number or None (all cores), not {threads!r}")
    return threads


def _specials_args(allowed_special, disallowed_special):
    """tiktoken's arguments as the core takes them: "all" or a list of names."""
    def as_arg(value, name):
        if value == "all":
            return "all"
        if isinstance(value, str):
            raise ConfigError(f'{name} must be "all" or a collection of special tokens, not the string {value!r}')
        names = list(value)
        for special in names:
            if not isinstance(special, str):
                raise ConfigError(f"{name} holds {special!r}, not a string")
            if not special.isascii() and _has_surrogates(special):
                if name == "allowed_special":
                    raise ConfigError(f"{special!r} is not a special token of this tokenizer: it holds a lone "
                                      f"surrogate, which UTF-8 cannot encode")
                # As any other name that is no special token's, it disallows nothing.
                names = [n for n in names if not _has_surrogates(n)]
                break
        return names

    return as_arg(allowed_special, "allowed_special"), as_arg(disallowed_special, "disallowed_special")


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _without_surrogates(text: str) -> str:
    """`text` with lone surrogates (which UTF-8 cannot hold) replaced by U+FFFD, as tiktoken does."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _on_text(method, text: str, *args):
    """Calls a core method on `text`, retrying without lone surrogates if it holds any."""
    try:
        return method(text, *args)
    except UnicodeEncodeError:
        return method(_without_surrogates(text), *args)


class Tokenizer:
    """A byte-level BPE tokenizer.

    Ids 0-255 are the single bytes, then come the merges in the order they were learned,
    then the special tokens (for a tokenizer trained by pybpe).
    """

    def __init__(self, core: _core.CoreTokenizer):
        self._core = core
        self.train_report: Optional[dict] = None
        self.source_path: Optional[str] = None  # the file it was loaded from or last saved to
        self.name: Optional[str] = None  # the named encoding it is ("gpt2", "cl100k_base", ...)
        self._vocab: Optional[dict] = None
        # A regular-expression pattern may leave text out of every token: encoding says so once.
        self._check_coverage = core.pattern_coverage() is not None

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

        `pattern` is "gpt2", "gpt4", "o200k" (names in any case) or a regular expression;
        one that leaves most of the text out of its pre-tokens is refused (CorpusError).
        Invalid UTF-8 is replaced with U+FFFD unless `strict_utf8`. The counts of the run
        are in `.train_report`. Warns with VocabShortfallWarning when the corpus runs out
        of pairs first.
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
        """Reads a tokenizer file written by `save`; a string that names no file but a named
        encoding ("gpt2", "cl100k_base", ...) makes that encoding (see `from_name`)."""
        from pybpe import interop

        fspath = os.fspath(path)
        if not os.path.exists(fspath):
            if not isinstance(path, str):
                raise FileError(f"{fspath}: no such tokenizer file")
            if interop.is_encoding_name(path):
                return cls.from_name(path)
            raise FileError(f"{path}: no such tokenizer file or named encoding "
                            f"(known: {', '.join(interop.encoding_names())})")
        tokenizer = cls(_core.CoreTokenizer.load(fspath))
        tokenizer.source_path = os.path.abspath(path)
        return tokenizer

    @classmethod
    def from_name(cls, name: str) -> "Tokenizer":
        """A named encoding: "gpt2" (from GPT-2's vocab.json and merges.txt in the shared
        data folder when they are there, else through tiktoken), or tiktoken's "r50k_base",
        "p50k_base", "cl100k_base", "o200k_base" (and any other name tiktoken knows),
        through tiktoken's own loader and cache (env TIKTOKEN_CACHE_DIR), with its special
        tokens and pattern. The ids are tiktoken's. Needs the tiktoken package for any name
        but gpt2 with the shared data."""
        from pybpe import interop

        if not isinstance(name, str):
            raise ConfigError(f"an encoding name is a string, not {name!r}")
        tokenizer = cls(interop.read_named(name))
        tokenizer.name = name.lower()
        return tokenizer

    def save(self, path: PathLike) -> None:
        """Writes the tokenizer as one JSON document (atomically: temp file, then rename)."""
        self._core.save(os.fspath(path))
        self.source_path = os.path.abspath(path)
        self.name = None

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
        """"gpt2", "gpt4", or the regular expression (tiktoken's o200k pattern is one)."""
        return self._core.pattern()

    @property
    def pattern_regex(self) -> str:
        """The regular expression the pattern is equal to."""
        return self._core.pattern_regex()

    @property
    def vocab_size(self) -> int:
        """One past the largest id (tiktoken's `n_vocab`): tokens, special tokens and any
        unused ids between them."""
        return self._core.vocab_size()

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return (
            f"Tokenizer(vocab_size={self.vocab_size}, merges={len(self._core.merge_ids())}, "
            f"special_tokens={list(self.special_tokens)}, pattern={self.pattern!r})"
        )

    # -- encoding

    def encode(
        self,
        text: str,
        *,
        allowed_special: Union[str, AbstractSet[str]] = (),
        disallowed_special: Union[str, Collection[str]] = "all",
        threads: Optional[int] = None,
    ) -> list[int]:
        """Token ids of `text`, exactly as tiktoken's `encode`.

        Special tokens in `allowed_special` ("all" or a set) are read as special tokens;
        text that holds a disallowed one raises SpecialTokenError (a ValueError). Pass
        `disallowed_special=()` to encode such text as ordinary text. A long text (from
        256 KiB) is cut into chunks encoded in parallel on `threads` threads (None, the
        default: all cores; 1: this thread only); the ids are the same for any count.
        """
        allowed, disallowed = _specials_args(allowed_special, disallowed_special)
        before = self._core.pattern_coverage() if self._check_coverage else None
        ids = _on_text(self._core.encode, text, allowed, disallowed, _threads(threads))
        if before is not None:
            self._warn_if_unmatched(before)
        return ids

    def encode_ordinary(self, text: str, *, threads: Optional[int] = None) -> list[int]:
        """Token ids of `text` with special tokens treated as plain text (`threads` as in `encode`)."""
        before = self._core.pattern_coverage() if self._check_coverage else None
        ids = _on_text(self._core.encode_ordinary, text, _threads(threads))
        if before is not None:
            self._warn_if_unmatched(before)
        return ids

    def _warn_if_unmatched(self, before: tuple[int, int]) -> None:
        """Warns, once, when the pattern left most of the text encoded since `before` (its
        `pattern_coverage()` then) out of its pre-tokens."""
        share = self._core.pattern_mostly_unmatched_since(before)
        if share is not None:
            self._check_coverage = False
            warnings.warn(
                f"the pattern matched only {100 * share:.1f}% of the text, and the rest is left out of the tokens: "
                f"check the regular expression (the pattern names are gpt2 (also r50k, p50k), gpt4 (also cl100k) "
                f"and o200k, in any case)",
                UnmatchedTextWarning,
                stacklevel=3,
            )

    def encode_batch(
        self,
        texts: Sequence[str],
        *,
        allowed_special: Union[str, AbstractSet[str]] = (),
        disallowed_special: Union[str, Collection[str]] = "all",
        threads: Optional[int] = None,
    ) -> list[list[int]]:
        """`encode` of each text, in parallel over the texts (all cores by default)."""
        allowed, disallowed = _specials_args(allowed_special, disallowed_special)
        before = self._core.pattern_coverage() if self._check_coverage else None
        try:
            batch = self._core.encode_batch(list(texts), allowed, disallowed, _threads(threads))
        except UnicodeEncodeError:
            texts = [_without_surrogates(t) for t in texts]
            batch = self._core.encode_batch(texts, allowed, disallowed, _threads(threads))
        if before is not None:
            self._warn_if_unmatched(before)
        return batch

    @property
    def dtype(self) -> "np.dtype":
        """The smallest numpy dtype that holds every id: uint16 when the vocabulary fits."""
        import numpy as np

        return np.dtype(np.uint16) if self.vocab_size <= 1 << 16 else np.dtype(np.uint32)

    def encode_to_numpy(
        self,
        text: str,
        *,
        allowed_special: Union[str, AbstractSet[str]] = (),
        disallowed_special: Union[str, Collection[str]] = "all",
        threads: Optional[int] = None,
    ) -> "np.ndarray":
        """`encode` into a numpy array (uint16 when the vocabulary fits, else uint32)."""
        import numpy as np

        allowed, disallowed = _specials_args(allowed_special, disallowed_special)
        dtype = self.dtype
        before = self._core.pattern_coverage() if self._check_coverage else None
        ids = _on_text(self._core.encode_to_array, text, allowed, disallowed, _threads(threads), dtype.itemsize)
        if before is not None:
            self._warn_if_unmatched(before)
        return np.asarray(ids).astype(dtype, copy=False)

    def encode_iterable(
        self,
        iterable: Iterable[str],
        *,
        allowed_special: Union[str, AbstractSet[str]] = (),
        disallowed_special: Union[str, Collection[str]] = "all",
    ) -> Iterator[int]:
        """Yields the ids of the concatenated strings (e.g. a file's lines), exactly those of
        encoding the whole text, holding only a bounded piece of it in memory."""
        allowed, disallowed = _specials_args(allowed_special, disallowed_special)
        before = self._core.pattern_coverage() if self._check_coverage else None
        pending: list[str] = []
        pending_len = 0
        for piece in iterable:
            pending.append(piece)
            pending_len += len(piece)
            if pending_len < _ITERABLE_BLOCK_CHARS:
                continue
            text = _without_surrogates("".join(pending))
            cut = self._core.safe_prefix_chars(text, allowed)
            if cut == 0:
                pending = [text]
                continue
            yield from self._core.encode(text[:cut], allowed, disallowed, 1)
            pending, pending_len = [text[cut:]], len(text) - cut
        if pending:
            yield from _on_text(self._core.encode, "".join(pending), allowed, disallowed, 1)
        if before is not None:
            self._warn_if_unmatched(before)

    def decode_bytes(self, ids: Union[Iterable[int], "np.ndarray"]) -> bytes:
        """The bytes of the tokens `ids`, joined."""
        np = sys.modules.get("numpy")  # an array can only come from a program that imported numpy
        if np is not None and isinstance(ids, np.ndarray):
            if ids.dtype.kind not in "ui" or (ids.size and (ids.min() < 0 or ids.max() >= 1 << 32)):
                raise ConfigError(f"ids must be non-negative integers below 2^32, not an array of {ids.dtype}")
            return self._core.decode_buffer(np.ascontiguousarray(ids, dtype="<u4").tobytes(), 4)
        try:
            return self._core.decode_bytes(list(ids))
        except OverflowError:
            raise ConfigError("ids must be non-negative integers below 2^32") from None

    def decode(self, ids: Union[Iterable[int], "np.ndarray"], errors: str = "replace") -> str:
        """The text of `ids`; bytes that are not UTF-8 become U+FFFD (or as `errors` says)."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    def encode_file(
        self,
        paths: Union[PathLike, Iterable[PathLike]],
        out_path: PathLike,
        *,
        dtype: str = "auto",
        threads: Optional[int] = None,
        progress: Optional[Callable[[int, int], None]] = None,
    ) -> dict:
        """Encodes text files to a token file `out_path` (raw little-endian ids, special tokens
        read as such) and its sidecar `out_path.json`; returns the sidecar's content.

        Both files are written under temporary names and renamed at the end, so an
        interrupted run leaves neither.
        """
        from pybpe import tokenfile

        before = self._core.pattern_coverage() if self._check_coverage else None
        sidecar = tokenfile.encode_files(self, paths, out_path, dtype=dtype, threads=_threads(threads), progress=progress)
        if before is not None:
            self._warn_if_unmatched(before)
        return sidecar

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
        specials as a dict name -> id, or a list (ids after the largest rank). Ids that
        neither a rank nor a special token takes are unused (as in cl100k)."""
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
