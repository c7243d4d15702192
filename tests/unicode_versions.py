"""Characters on which the `regex` module and pybpe may disagree.

The regex module carries newer Unicode tables than the Rust regex crates (and tiktoken, whose ids
pybpe must equal). The two may classify characters newer than Python's own unicodedata differently;
tests compare against the regex module on every other character.
"""

import regex

from pybpe import _core


def _regex_module_classes() -> bytes:
    """The class of every code point according to the `regex` module, coded as `_core.char_classes()`."""
    everything = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)
    classes = bytearray(b"\x03" * 0x110000)
    for m in regex.finditer(r"(\p{L})|(\p{N})|(\s)|(.)", everything, flags=regex.DOTALL):
        classes[ord(m.group())] = m.lastindex - 1
    return bytes(classes)


OURS, THEIRS = _core.char_classes(), _regex_module_classes()
NEWER_THAN_PYTHON = {c for c in range(0x110000) if OURS[c] != THEIRS[c]}


def established(text: str) -> str:
    """`text` without the characters whose class the two Unicode versions disagree on."""
    return "".join(ch for ch in text if ord(ch) not in NEWER_THAN_PYTHON)
