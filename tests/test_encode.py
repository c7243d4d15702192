"""Encoding: tiktoken's ids and tiktoken's special-token rules, whatever way the text comes in."""

import time

import numpy as np
import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

import pybpe

EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def gpt2(data):
    return pybpe.Tokenizer.from_gpt2(data / "cs336/gpt2_vocab.json", data / "cs336/gpt2_merges.txt", [EOT])


@pytest.fixture(scope="module")
def reference():
    return tiktoken.get_encoding("gpt2")


TEXT = "Hello world! It's 2024.<|endoftext|>  New doc:\n\n  indented  \t tabs\r\nend<|endoftext|>"


def test_special_tokens_follow_tiktoken(gpt2, reference):
    assert gpt2.encode(TEXT, allowed_special="all") == reference.encode(TEXT, allowed_special="all")
    assert gpt2.encode(TEXT, allowed_special={EOT}) == reference.encode(TEXT, allowed_special={EOT})
    assert gpt2.encode(TEXT, disallowed_special=()) == reference.encode(TEXT, disallowed_special=())
    assert gpt2.encode_ordinary(TEXT) == reference.encode_ordinary(TEXT)
    assert gpt2.encode(TEXT, allowed_special="all").count(50256) == 2


def test_disallowed_special_text_raises_a_value_error(gpt2):
    with pytest.raises(pybpe.SpecialTokenError, match="endoftext") as raised:
        gpt2.encode(TEXT)
    assert isinstance(raised.value, ValueError)
    with pytest.raises(pybpe.SpecialTokenError):
        gpt2.encode_to_numpy(TEXT)
    with pytest.raises(pybpe.SpecialTokenError):
        gpt2.encode_batch(["fine", TEXT])


def test_overlapping_special_tokens_longest_wins():
    vocab = {i: bytes([i]) for i in range(256)}
    tok = pybpe.Tokenizer.from_vocab_merges(vocab, [], special_tokens=["<|a|>", "<|a|><|b|>"])
    ids = tok.encode("x<|a|><|b|>y<|a|>", allowed_special="all")
    assert ids == [ord("x"), tok.special_tokens["<|a|><|b|>"], ord("y"), tok.special_tokens["<|a|>"]]


@pytest.mark.parametrize("unit", ["a", " ", "!", "\n", "日", "1"])
def test_a_megabyte_of_one_character_encodes_in_linear_time(gpt2, reference, unit):
    # tiktoken is quadratic here; pybpe merges a pre-token this long by backtracking (linear). A generous bound
    # separates linear (milliseconds) from quadratic (minutes) on any machine.
    text = unit * (1_000_000 // len(unit.encode()))
    started = time.perf_counter()
    ids = gpt2.encode_ordinary(text)
    assert time.perf_counter() - started < 10
    assert gpt2.decode_bytes(ids) == text.encode()
    sample = text[:3000]
    assert gpt2.encode_ordinary(sample) == reference.encode_ordinary(sample)


def test_encode_iterable_gives_the_ids_of_the_whole_text(gpt2, data):
    path = data / "corpora/tinystories_pool_valid.txt"
    whole = gpt2.encode(path.read_text(encoding="utf-8"), allowed_special="all")
    with open(path, encoding="utf-8") as lines:
        assert list(gpt2.encode_iterable(lines, allowed_special="all")) == whole
    # Pieces that cut words, whitespace runs and special tokens in two.
    text = path.read_text(encoding="utf-8")[:200_000]
    pieces = [text[i:i + 7] for i in range(0, len(text), 7)]
    assert list(gpt2.encode_iterable(pieces, allowed_special="all")) == gpt2.encode(text, allowed_special="all")


def test_batch_numpy_and_thread_counts_agree(gpt2, data):
    text = (data / "corpora/war_and_peace.txt").read_text(encoding="utf-8")
    assert len(text) >= 1 << 20  # long enough to be encoded in parallel chunks
    ids = gpt2.encode_ordinary(text, threads=1)
    assert gpt2.encode_ordinary(text, threads=2) == ids
    assert gpt2.encode_ordinary(text) == ids  # all cores by default
    array = gpt2.encode_to_numpy(text, disallowed_special=(), threads=2)
    assert array.dtype == np.uint16 and array.tolist() == ids
    docs = text.split("\n\n")[:500]
    assert gpt2.encode_batch(docs, threads=2) == [gpt2.encode(d) for d in docs]


def test_numpy_dtype_follows_the_vocabulary_size():
    vocab = {i: bytes([i]) for i in range(256)}
    small = pybpe.Tokenizer.from_vocab_merges(vocab, [])
    assert small.encode_to_numpy("hi").dtype == np.uint16
    big = pybpe.Tokenizer.from_vocab_merges(vocab, [], special_tokens=["<|x|>"])
    assert big.dtype == np.uint16
    specials = [f"<|s{i}|>" for i in range(70_000)]
    huge = pybpe.Tokenizer.from_vocab_merges(vocab, [], special_tokens=specials)
    assert huge.encode_to_numpy("hi<|s69999|>", allowed_special="all").dtype == np.uint32
    assert huge.encode_to_numpy("hi<|s69999|>", allowed_special="all").tolist() == [104, 105, 256 + 69_999]


def test_numpy_arrays_are_their_own_writable_memory(gpt2):
    first, second = gpt2.encode_to_numpy("hello world"), gpt2.encode_to_numpy("hello world")
    first[0] = 7
    assert first.tolist() == [7, 995] and second.tolist() == [31373, 995]
    del second
    assert first.sum() == 7 + 995 and gpt2.encode_to_numpy("").shape == (0,)


def test_lone_surrogates_are_replaced_as_tiktoken_does(gpt2, reference):
    text = "before \ud800 after \udfff end"
    assert gpt2.encode(text) == reference.encode(text)
    assert gpt2.encode_batch([text]) == [reference.encode(text)]


@pytest.mark.parametrize(("letters", "widest"), [("café ÿ", range(0x80, 0x100)), ("αβγ 中文 é", range(0x100, 0x10000)),
                                                  ("😀 é α", range(0x10000, 0x110000))],
                         ids=["latin-1", "ucs-2", "ucs-4"])
def test_long_texts_of_every_str_width_give_tiktokens_ids(gpt2, reference, letters, widest):
    # A non-ASCII str is read in its own storage (one, two or four bytes a character) and
    # turned into UTF-8 in windows of 64K characters by each thread: texts long enough for
    # many windows and parallel chunks, special tokens and odd characters everywhere.
    words = ["the", " quick", " fox", "\n", "  ", "\n\n", ".", EOT, *letters.split()]
    rng = np.random.default_rng(3)
    text = "".join(words[i] + " " * int(i % 3 == 0) for i in rng.integers(0, len(words), 400_000))
    text += letters * 70_000 + EOT + "end"
    assert max(map(ord, text)) in widest
    expected = reference.encode(text, allowed_special="all")
    for threads in (1, 2):
        assert gpt2.encode(text, allowed_special="all", threads=threads) == expected
        assert gpt2.encode_to_numpy(text, allowed_special="all", threads=threads).tolist() == expected
        assert gpt2.encode_ordinary(text, threads=threads) == reference.encode_ordinary(text)
        with pytest.raises(pybpe.SpecialTokenError):
            gpt2.encode(text[-200_000:], threads=threads)


def test_a_non_ascii_str_is_read_in_its_own_storage_on_cpython_3_9_to_3_14():
    # Elsewhere the layout check fails and CPython's UTF-8 is used: same ids, slower.
    assert pybpe._core.reads_str_storage()


def test_a_lone_surrogate_far_into_a_long_text_is_replaced_as_tiktoken_does(gpt2, reference):
    text = "naïve café, the end. " * 80_000
    text = text[:1_500_000] + "\udc00" + text[1_500_000:]
    for threads in (1, 2):
        assert gpt2.encode(text, threads=threads) == reference.encode(text)


def test_decode(gpt2):
    ids = gpt2.encode("naïve café 😀", allowed_special="all")
    assert gpt2.decode(ids) == "naïve café 😀"
    assert gpt2.decode(np.array(ids, dtype=np.uint16)) == "naïve café 😀"
    assert gpt2.decode_bytes(ids[:1]) == "na".encode()[:len(gpt2.decode_bytes(ids[:1]))]
    # A token that ends inside a character decodes with U+FFFD, or strictly fails.
    emoji = gpt2.encode("😀")
    assert gpt2.decode(emoji[:1]) == "\ufffd" * len(gpt2.decode_bytes(emoji[:1]).decode("utf-8", "replace"))
    with pytest.raises(UnicodeDecodeError):
        gpt2.decode(emoji[:1], errors="strict")


def test_decode_of_ids_out_of_range(gpt2):
    with pytest.raises(pybpe.ConfigError, match="id 50257 at position 1 is out of range"):
        gpt2.decode([0, 50257])
    with pytest.raises(pybpe.ConfigError):
        gpt2.decode([-1])
    with pytest.raises(pybpe.ConfigError):
        gpt2.decode(np.array([70000], dtype=np.uint32))


def test_python_threads_encoding_with_one_tokenizer_at_once_get_tiktokens_ids(data, reference):
    # A fresh tokenizer, so that its cache (one for every thread that encodes with it) grows
    # while the calls share it; texts of several scripts, parallel and not, str and numpy.
    from concurrent.futures import ThreadPoolExecutor

    tok = pybpe.Tokenizer.from_gpt2(data / "cs336/gpt2_vocab.json", data / "cs336/gpt2_merges.txt", [EOT])
    alice = (data / "corpora/alice_multilingual_40lang.txt").read_text(encoding="utf-8")
    stories = (data / "corpora/tinystories_pool_valid.txt").read_text(encoding="utf-8")
    texts = [alice[i * 400_000:(i + 1) * 400_000] for i in range(6)] + [stories[:300_000], stories[300_000:]]
    expected = [reference.encode(t, allowed_special="all") for t in texts]

    def encode(i):
        text = texts[i % len(texts)]
        if i % 2:
            return list(tok.encode_to_numpy(text, allowed_special="all", threads=2))
        return tok.encode(text, allowed_special="all", threads=1)

    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(encode, range(3 * len(texts))))
    for i, ids in enumerate(got):
        assert ids == expected[i % len(texts)], f"text {i % len(texts)}"


# -- pre-tokens past 64 KiB (merged by backtracking rather than with a heap over every byte)

LONG = 70_000  # bytes: past the 64 KiB from which a pre-token is merged by backtracking
ASCII_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
WIDE_LETTERS = "éøßαβγжщя中文字日本語한국"


@pytest.fixture(scope="module")
def small_tokenizers(data, tmp_path_factory):
    """Tokenizers of 300, 1000 and 2000 tokens trained here, each with tiktoken made from it."""
    made = []
    for source, size in [("cs336/tinystories_sample.txt", 300), ("corpora/tinystories_hf_valid_head.txt", 1000),
                         ("corpora/tinystories_hf_valid_head.txt", 2000)]:
        tok = pybpe.Tokenizer.train(data / source, size, [EOT])
        assert tok.vocab_size == size
        made.append((tok, tok.to_tiktoken(f"trained{size}")))
    return made


def long_pieces(rng, corpus: str) -> dict:
    """Text that is one pre-token of LONG bytes or more (but the whitespace-free corpus text,
    which its punctuation cuts), by what it is made of."""
    pieces = {}
    for letter in "aAzé中":
        pieces[f"{letter} repeated"] = letter * (LONG + rng.randrange(200))
    for period in range(2, 8):
        pattern = "".join(rng.choices("abcde"[: rng.randrange(2, 6)], k=period))
        pieces[f"{pattern} repeated"] = pattern * (LONG // period + rng.randrange(50))
    for alphabet in ["ab", "abc", "abcd", "abcde", "aA"]:
        pieces[f"random over {alphabet}"] = "".join(rng.choices(alphabet, k=LONG + rng.randrange(200)))
    pieces["random letters"] = "".join(rng.choices(ASCII_LETTERS, k=LONG))
    pieces["random wide letters"] = "".join(rng.choices(WIDE_LETTERS, k=LONG // 2))
    pieces["corpus letters"] = "".join(c for c in corpus if c.isalpha())[: 2 * LONG]
    pieces["corpus without whitespace"] = "".join(corpus.split())[: 2 * LONG]
    return pieces


def test_long_pre_tokens_give_tiktokens_ids(gpt2, reference, small_tokenizers, data):
    import random

    corpus = (data / "corpora/war_and_peace.txt").read_text(encoding="utf-8")[:400_000]
    pieces = long_pieces(random.Random(21), corpus)
    for tok, tiktoken_of_it in [(gpt2, reference), *small_tokenizers]:
        for what, text in pieces.items():
            expected = tiktoken_of_it.encode_ordinary(text)
            assert tok.encode_ordinary(text) == expected, f"{what}, vocab {tok.vocab_size}"
        text = pieces["random over abc"]
        assert tok.encode_to_numpy(text, threads=2).tolist() == tiktoken_of_it.encode_ordinary(text)


def test_a_long_pre_token_between_others_gives_tiktokens_ids(gpt2, reference, small_tokenizers, tmp_path):
    import random

    rng = random.Random(22)
    run = "".join(rng.choices("ab", k=300_000))
    text = f"Once upon a time {run}, and then{EOT} again{run[:LONG]}aab the end"
    path = tmp_path / "text.txt"
    path.write_text(text, encoding="utf-8")
    for tok, tiktoken_of_it in [(gpt2, reference), *small_tokenizers]:
        expected = tiktoken_of_it.encode(text, allowed_special="all")
        assert tok.encode(text, allowed_special="all", threads=2) == expected
        tok.encode_file(path, tmp_path / "text.bin")
        assert np.fromfile(tmp_path / "text.bin", dtype=np.uint16).tolist() == expected


@settings(max_examples=25, deadline=None)
@given(pattern=st.text(alphabet="abcdeA", min_size=1, max_size=9), noise=st.lists(st.integers(0, LONG - 1), max_size=8),
       letter=st.sampled_from("xyzé"))
def test_long_repeated_patterns_with_odd_letters_give_tiktokens_ids(gpt2, reference, small_tokenizers, pattern, noise,
                                                                    letter):
    chars = list(pattern * (LONG // len(pattern) + 1))
    for at in noise:
        chars[at] = letter
    text = "".join(chars)
    assert gpt2.encode_ordinary(text) == reference.encode_ordinary(text)
    tok, tiktoken_of_it = small_tokenizers[-1]
    assert tok.encode_ordinary(text) == tiktoken_of_it.encode_ordinary(text)
