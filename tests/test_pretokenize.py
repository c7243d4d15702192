"""The pre-tokenizer splits exactly as the `regex` module applying the same pattern."""

import unicodedata

import regex
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pybpe.tokenizer import pretokenize
from reference_bpe import GPT2_PATTERN, GPT4_PATTERN
from unicode_versions import NEWER_THAN_PYTHON, established
from reference_bpe import pretokenize as reference_pretokenize


def test_character_classes_agree_with_the_regex_module_on_every_established_character():
    # Any release of `regex` may carry newer Unicode tables than Rust's: only characters that
    # Python's unicodedata leaves unassigned may differ, however many a new Unicode version adds.
    assigned = [c for c in NEWER_THAN_PYTHON if unicodedata.category(chr(c)) != "Cn"]
    assert assigned == [], f"{unicodedata.unidata_version}: {[hex(c) for c in assigned[:10]]}"


# Pieces that exercise every branch of the patterns, mixed with arbitrary Unicode.
PIECES = [" ", "  ", "\n", "\r\n", "\t", "\u00a0", "\u3000", "\u2028", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d",
          "'S", "'LL", "'\u017f", "'", "a", "Z", "é", "e\u0301", "\u0301", "1", "42", "12345", "\u0663", "½", "!", "?!",
          "...", "😀", "👍🏽", "中文", "Ελλάδα", "עברית", "<|endoftext|>", "x", "don't", "-", "$"]
texts = st.one_of(
    st.text(),
    st.lists(st.sampled_from(PIECES), max_size=30).map("".join),
    st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=3)), max_size=20).map("".join),
).map(established)


@given(texts)
@settings(max_examples=1500, deadline=None)
@example("Hello world's 123 !!! \n\n  end  ")
def test_gpt2_splits_like_the_regex_module(text):
    assert pretokenize(text, "gpt2") == regex.findall(GPT2_PATTERN, text)


@given(texts)
@settings(max_examples=1500, deadline=None)
@example("I'LL 've \r\n\r\n 1234567 x\n  ")
def test_gpt4_splits_like_the_regex_module(text):
    assert pretokenize(text, "gpt4") == regex.findall(GPT4_PATTERN, text)


# Long texts, mostly ASCII, which the built-in patterns split 64 bytes at a time.
ASCII_PIECES = ["word", " word", "The", "  ", "\n", "\n\n", "\r\n", "\t", " \n", "\t\n", "\r", ".", ",", "...",
                "'s", "'LL", "'Ve", "'d", "123", "12345", "\x0b", "\x0c", "\x1c", "x\n    y", "!\n", " (", ")\n\n  "]
long_texts = st.lists(st.sampled_from(ASCII_PIECES * 4 + PIECES), min_size=30, max_size=150).map("".join).map(established)


@given(long_texts)
@settings(max_examples=1000, deadline=None)
@example("x" * 61 + "'LL've \n   \n  y" + "1234567 " * 10)
def test_long_texts_split_like_the_regex_module(text):
    assert pretokenize(text, "gpt2") == regex.findall(GPT2_PATTERN, text)
    assert pretokenize(text, "gpt4") == regex.findall(GPT4_PATTERN, text)


# Long texts mostly of other scripts, whose letters, numbers and others the blocks classify.
NON_ASCII_PIECES = ["жизнь", " Ωμέγα", "中文字", " עברית", "\u0915\u093f", "\u0663\u0664", "²", "—", "«", "»", "€",
                    "\u0301", "😀", "\U00010348", "\U0001d7d9", "'\u017f", "\u00a0", "\u3000"]
non_ascii_texts = st.lists(st.sampled_from(NON_ASCII_PIECES * 3 + ASCII_PIECES + PIECES), min_size=30,
                           max_size=150).map("".join).map(established)


@given(non_ascii_texts)
@settings(max_examples=1000, deadline=None)
@example("«жизнь»" * 12 + " x" + "\u0663\u0664" * 20 + "'\u017fword")
def test_long_texts_in_other_scripts_split_like_the_regex_module(text):
    assert pretokenize(text, "gpt2") == regex.findall(GPT2_PATTERN, text)
    assert pretokenize(text, "gpt4") == regex.findall(GPT4_PATTERN, text)


@given(texts)
@settings(max_examples=300, deadline=None)
def test_custom_pattern_splits_like_the_regex_module(text):
    pattern = r"\p{L}+|\p{N}|[^\p{L}\p{N}]+"
    assert pretokenize(text, pattern) == regex.findall(pattern, text)


@given(texts)
@settings(max_examples=500, deadline=None)
def test_special_tokens_are_cut_out_first(text):
    specials = ["<|endoftext|>", "<|end|>"]
    got = pretokenize(text, "gpt2", specials)
    expected = []
    alternation = "(" + "|".join(regex.escape(s) for s in sorted(specials, key=len, reverse=True)) + ")"
    for i, piece in enumerate(regex.split(alternation, text)):
        if i % 2:
            expected.append(piece)
        elif piece:
            expected.extend(reference_pretokenize(piece))
    assert got == expected


def test_overlapping_special_tokens_longest_wins():
    assert pretokenize("a<|x|><|x|>b", "gpt2", ["<|x|>", "<|x|><|x|>"]) == ["a", "<|x|><|x|>", "b"]
