"""A character-level tokenizer (nanoGPT's shakespeare_char): one id per character.

The vocabulary is the sorted set of the characters of a text, ids 0..n-1, then any special
tokens (ids n, n+1, ...). Saved as a small JSON file:

    {"format": "pybpe-char", "version": 1, "chars": "\\n !$&',-.3:;?AB...", "special_tokens": ["<|endoftext|>"]}

Text holding a character outside the vocabulary raises UnknownCharacterError (a ConfigError
and a ValueError) naming it; there is no unknown id.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import TYPE_CHECKING, AbstractSet, Collection, Iterable, Optional, Sequence, Union

from pybpe.errors import ConfigError, SpecialTokenError, TokenizerFileError

if TYPE_CHECKING:
    import numpy as np

FORMAT = "pybpe-char"
VERSION = 1


class UnknownCharacterError(ConfigError, ValueError):
    """Text holds a character outside the vocabulary (a ValueError, as a disallowed special token)."""


class CharTokenizer:
    """Encodes each character as its index in a sorted character vocabulary."""

    def __init__(self, chars: Iterable[str], special_tokens: Iterable[str] = ()):
        chars = "".join(sorted(set(chars)))
        if not chars:
            raise ConfigError("a character vocabulary needs at least one character")
        self.chars = chars
        self._ids = {c: i for i, c in enumerate(chars)}
        self._special_tokens = {name: len(chars) + i for i, name in enumerate(dict.fromkeys(special_tokens))}
        self.source_path: Optional[str] = None

    @classmethod
    def from_text(cls, text: str, special_tokens: Iterable[str] = ()) -> "CharTokenizer":
        """The vocabulary of the characters of `text` (special tokens in it are not characters)."""
        specials = list(special_tokens)
        for name in specials:
            text = text.replace(name, "")
        return cls(set(text), specials)

    # -- file

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "version": VERSION, "chars": self.chars,
                           "special_tokens": list(self._special_tokens)}, ensure_ascii=False) + "\n"

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Writes the vocabulary file atomically (temp file, then rename)."""
        from pybpe.interop import write_atomically

        write_atomically(path, self.to_json().encode("utf-8"))
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(path, 0o666 & ~mask)
        self.source_path = os.path.abspath(path)

    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]"]) -> "CharTokenizer":
        try:
            doc = json.loads(open(path, "rb").read().decode("utf-8"))
        except FileNotFoundError:
            raise TokenizerFileError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise TokenizerFileError(f"{path}: not a character vocabulary file ({e})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise TokenizerFileError(f'{path}: not a character vocabulary file (no "format": "{FORMAT}")')
        if doc.get("version") != VERSION:
            raise TokenizerFileError(f"{path}: character vocabulary version {doc.get('version')!r} is not {VERSION}")
        chars, specials = doc.get("chars"), doc.get("special_tokens", [])
        if not isinstance(chars, str) or not chars or len(set(chars)) != len(chars) or "".join(sorted(chars)) != chars:
            raise TokenizerFileError(f'{path}: "chars" must be a non-empty string of distinct characters in sorted order')
        if not isinstance(specials, list) or not all(isinstance(s, str) and s for s in specials):
            raise TokenizerFileError(f'{path}: "special_tokens" must be a list of names')
        tok = cls(chars, specials)
        tok.source_path = os.path.abspath(path)
        return tok

    # -- what it is

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + len(self._special_tokens)

    def __len__(self) -> int:
        return self.vocab_size

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._special_tokens)

    @property
    def vocab(self) -> dict[int, bytes]:
        """Token bytes by id, special tokens included."""
        vocab = {i: c.encode("utf-8", "surrogatepass") for i, c in enumerate(self.chars)}
        vocab.update({i: name.encode("utf-8") for name, i in self._special_tokens.items()})
        return vocab

    @property
    def merges(self) -> list:
        return []

    @property
    def pattern(self) -> str:
        return "char"

    @property
    def dtype(self) -> "np.dtype":
        import numpy as np

        return np.dtype(np.uint16) if self.vocab_size <= 1 << 16 else np.dtype(np.uint32)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size}, special_tokens={list(self._special_tokens)})"

    # -- encoding

    def _unknown(self, text: str) -> ConfigError:
        bad = next(c for c in text if c not in self._ids)
        return UnknownCharacterError(f"character {bad!r} (U+{ord(bad):04X}) is not in the character vocabulary "
                           f"of {len(self.chars)} characters")

    def encode_ordinary(self, text: str, **_) -> list[int]:
        try:
            return [self._ids[c] for c in text]
        except KeyError:
            raise self._unknown(text) from None

    def encode(self, text: str, *, allowed_special: Union[str, AbstractSet[str]] = (),
               disallowed_special: Union[str, Collection[str]] = "all", **_) -> list[int]:
        """Ids of `text`; special tokens in `allowed_special` ("all" or a set) are read as such."""
        allowed = set(self._special_tokens) if allowed_special == "all" else set(allowed_special)
        disallowed = set(self._special_tokens) - allowed if disallowed_special == "all" else set(disallowed_special)
        for name in disallowed:
            if name in text:
                raise SpecialTokenError(f"the text holds the special token {name!r}; allow it or encode as plain text")
        if not allowed:
            return self.encode_ordinary(text)
        ids: list[int] = []
        for piece, special in _split_specials(text, sorted(allowed, key=len, reverse=True)):
            ids.extend([self._special_tokens[piece]] if special else self.encode_ordinary(piece))
        return ids

    def encode_to_numpy(self, text: str, **kw) -> "np.ndarray":
        """`encode` into a numpy array (uint16 when the vocabulary fits): vectorized for long texts."""
        import numpy as np

        if kw.get("allowed_special"):
            return np.asarray(self.encode(text, **kw), dtype=self.dtype)
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
        table = np.frombuffer(self.chars.encode("utf-32-le", "surrogatepass"), dtype="<u4")
        ids = np.searchsorted(table, codes)
        ids_clipped = np.minimum(ids, len(table) - 1)
        bad = np.flatnonzero(table[ids_clipped] != codes)
        if len(bad):
            raise self._unknown(text[int(bad[0]):])
        return ids.astype(self.dtype)

    def encode_batch(self, texts: Sequence[str], **kw) -> list[list[int]]:
        return [self.encode(t, **kw) for t in texts]

    def decode_bytes(self, ids) -> bytes:
        return self.decode(ids).encode("utf-8", "surrogatepass")

    def decode(self, ids, errors: str = "replace") -> str:
        names = {i: name for name, i in self._special_tokens.items()}
        out = []
        for i in (int(i) for i in ids):
            if 0 <= i < len(self.chars):
                out.append(self.chars[i])
            elif i in names:
                out.append(names[i])
            else:
                raise ConfigError(f"id {i} is outside the character vocabulary ({self.vocab_size} ids)")
        return "".join(out)

    def sha256(self) -> str:
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()


def _split_specials(text: str, names: list[str]):
    """(piece, is_special) in order, cutting `text` at each occurrence of a name (longest first)."""
    import re

    if not names:
        yield text, False
        return
    pattern = re.compile("|".join(re.escape(n) for n in names))
    start = 0
    for m in pattern.finditer(text):
        if m.start() > start:
            yield text[start:m.start()], False
        yield m.group(0), True
        start = m.end()
    if start < len(text):
        yield text[start:], False


def is_char_file(path: Union[str, "os.PathLike[str]"]) -> bool:
    """Whether `path` is a character vocabulary file (read from its first bytes only)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    return head.lstrip().startswith(b'{"format": "' + FORMAT.encode() + b'"')
