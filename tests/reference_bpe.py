"""A plain Python BPE trainer with CS336 semantics: the specification the Rust trainer is tested against.

Slow on purpose (every merge recounts every pair); only for small corpora.
"""

from collections import Counter

import regex

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT4_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)


def split_specials(text: str, special_tokens: list[str]) -> list[str]:
    """Text pieces between special tokens (longest special first)."""
    if not special_tokens:
        return [text]
    alternation = "|".join(regex.escape(s) for s in sorted(special_tokens, key=len, reverse=True))
    return [piece for piece in regex.split(alternation, text) if piece]


def pretokenize(text: str, pattern: str = GPT2_PATTERN, special_tokens: list[str] = ()) -> list[str]:
    return [m.group() for piece in split_specials(text, list(special_tokens)) for m in regex.finditer(pattern, piece)]


def train_bpe(text: str, vocab_size: int, special_tokens: list[str] = (), pattern: str = GPT2_PATTERN):
    """Returns (vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]]) in pybpe's id layout."""
    words = Counter(tuple(bytes([b]) for b in w.encode("utf-8")) for w in pretokenize(text, pattern, special_tokens))
    merges = []
    while 256 + len(special_tokens) + len(merges) < vocab_size:
        pairs = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))
        merges.append(best)
        joined = best[0] + best[1]
        new_words = Counter()
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(joined)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            new_words[tuple(out)] += count
        words = new_words
    vocab = {i: bytes([i]) for i in range(256)}
    for a, b in merges:
        vocab[len(vocab)] = a + b
    for s in special_tokens:
        vocab[len(vocab)] = s.encode("utf-8")
    return vocab, merges


def gpt2_bytes_to_unicode() -> dict[int, str]:
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(printable, chars)}
