"""Training: exact CS336 reference merges, determinism, and equality with the plain Python trainer."""

import json
import subprocess
import sys
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pybpe
from reference_bpe import GPT2_PATTERN, GPT4_PATTERN, gpt2_bytes_to_unicode
from reference_bpe import train_bpe as reference_train
from unicode_versions import established

SPECIAL = "<|endoftext|>"


def read_reference_merges(path):
    from_char = {c: b for b, c in gpt2_bytes_to_unicode().items()}
    merges = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line:
            a, b = line.split(" ")
            merges.append((bytes(from_char[c] for c in a), bytes(from_char[c] for c in b)))
    return merges


def test_reproduces_the_cs336_reference_merges_exactly(data):
    tok = pybpe.Tokenizer.train(data / "cs336/corpus.en", 500, special_tokens=[SPECIAL])
    assert tok.merges == read_reference_merges(data / "cs336/train-bpe-reference-merges.txt")


def test_vocabulary_matches_the_cs336_reference_vocabulary(data):
    tok = pybpe.Tokenizer.train(data / "cs336/corpus.en", 500, special_tokens=[SPECIAL])
    from_char = {c: b for b, c in gpt2_bytes_to_unicode().items()}
    reference = json.loads((data / "cs336/train-bpe-reference-vocab.json").read_text(encoding="utf-8"))
    reference_tokens = {bytes(from_char[c] for c in token) for token in reference}
    assert set(tok.vocab.values()) == reference_tokens
    assert len(tok.vocab) == 500


def test_id_layout_bytes_then_merges_then_specials(data):
    tok = pybpe.Tokenizer.train(data / "cs336/corpus.en", 300, special_tokens=[SPECIAL, "<|pad|>"])
    vocab = tok.vocab
    assert [vocab[i] for i in range(256)] == [bytes([i]) for i in range(256)]
    assert [vocab[256 + i] for i in range(len(tok.merges))] == [a + b for a, b in tok.merges]
    assert tok.special_tokens == {SPECIAL: 298, "<|pad|>": 299}
    assert tok.vocab_size == 300


@pytest.mark.parametrize("corpus", ["corpora/war_and_peace.txt", "corpora/webtext_pool.txt"])
def test_same_merges_for_any_thread_count(data, corpus):
    results = [pybpe.Tokenizer.train(data / corpus, 2000, [SPECIAL], threads=t).merges for t in (1, 2, 3, 7)]
    assert all(r == results[0] for r in results)


def test_same_merges_however_the_corpus_is_split_into_files(data, tmp_path):
    text = (data / "corpora/tinyshakespeare.txt").read_text(encoding="utf-8")
    whole = tmp_path / "whole.txt"
    whole.write_text(text, encoding="utf-8")
    # Cut the corpus in two at a paragraph break: the two files are one corpus.
    cut = text.index("\n\n", len(text) // 3) + 1
    (tmp_path / "a.txt").write_text(text[:cut], encoding="utf-8")
    (tmp_path / "b.txt").write_text(text[cut:], encoding="utf-8")
    one = pybpe.Tokenizer.train(whole, 1000)
    two = pybpe.Tokenizer.train([tmp_path / "a.txt", tmp_path / "b.txt"], 1000)
    assert one.merges == two.merges


def test_no_merged_token_contains_a_special_token(data):
    tok = pybpe.Tokenizer.train(data / "corpora/tinystories_pool_valid.txt", 3000, [SPECIAL])
    merged = [a + b for a, b in tok.merges]
    assert not [t for t in merged if b"<|" in t and b"|>" in t]
    assert all(SPECIAL.encode() not in t for t in merged)


words = st.sampled_from(["low", "lower", "newest", "widest", "the", " the", "a", "aaa", "ab", "ba", "'s", "don't",
                         "1999", "!", "?!", " ", "\n", "\n\n", "  ", "é", "日本", "😀", SPECIAL, "<|", "|>"])
corpora = st.lists(st.one_of(words, st.text(max_size=4)), min_size=1, max_size=60).map("".join).map(established)


@given(text=corpora, extra=st.integers(min_value=0, max_value=40), gpt4=st.booleans())
@settings(max_examples=200, deadline=None)
def test_equals_the_plain_python_trainer(tmp_path_factory, text, extra, gpt4):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(text, encoding="utf-8", newline="")
    specials = [SPECIAL]
    vocab_size = 256 + len(specials) + extra
    pattern, pattern_regex = ("gpt4", GPT4_PATTERN) if gpt4 else ("gpt2", GPT2_PATTERN)
    ref_vocab, ref_merges = reference_train(text, vocab_size, specials, pattern_regex)
    if text.replace(SPECIAL, "") == "":
        with pytest.raises(pybpe.CorpusError):
            pybpe.Tokenizer.train(path, vocab_size, specials, pattern=pattern)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pybpe.VocabShortfallWarning)
        tok = pybpe.Tokenizer.train(path, vocab_size, specials, pattern=pattern, threads=2)
    assert tok.merges == ref_merges
    assert tok.vocab == ref_vocab


def test_custom_regex_pattern(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("aa bb aa bb aa\n" * 10)
    tok = pybpe.Tokenizer.train(path, 258, pattern=r"\S+|\s+")
    assert tok.pattern == r"\S+|\s+"
    # The spaces and newlines are pre-tokens of one byte each: only "aa" and "bb" can merge.
    assert sorted(tok.merges) == [(b"a", b"a"), (b"b", b"b")]


def test_save_and_load_round_trip_exactly(data, tmp_path):
    tok = pybpe.Tokenizer.train(data / "corpora/alice_multilingual_40lang.txt", 1500, [SPECIAL, "<|pad|>"], pattern="gpt4")
    path = tmp_path / "tok.json"
    tok.save(path)
    back = pybpe.Tokenizer.load(path)
    assert back.vocab == tok.vocab and back.merges == tok.merges
    assert back.special_tokens == tok.special_tokens and back.pattern == "gpt4"
    assert back.to_json() == path.read_text(encoding="utf-8")
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["format"] == "pybpe" and doc["version"] == 1 and doc["pattern"] == "gpt4"
    assert doc["special_tokens"] == tok.special_tokens


def test_invalid_utf8_is_replaced_and_counted_or_refused(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"hello \xff\xfe world hello\n" * 3)
    tok = pybpe.Tokenizer.train(path, 260)
    assert tok.train_report["invalid_utf8_bytes"] == 6
    with pytest.raises(pybpe.CorpusError, match="invalid UTF-8 at byte 6"):
        pybpe.Tokenizer.train(path, 260, strict_utf8=True)


def test_running_out_of_pairs_warns_and_returns_what_was_learned(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("abc abc")
    with pytest.warns(pybpe.VocabShortfallWarning, match="after 3 merges"):
        tok = pybpe.Tokenizer.train(path, 1000)
    assert len(tok.merges) == 3 and tok.vocab_size == 259


@pytest.mark.parametrize("vocab_size", [255, 256, 2**31 + 1])
def test_vocab_size_out_of_range(tmp_path, vocab_size):
    path = tmp_path / "c.txt"
    path.write_text("text")
    with pytest.raises(pybpe.ConfigError, match="out of range"):
        pybpe.Tokenizer.train(path, vocab_size, special_tokens=[SPECIAL])


def test_one_huge_line_without_newlines_trains_in_little_memory(tmp_path):
    # 40 MB in one line: cut at spaces between letters, so it is counted in parallel and linearly,
    # and the pages of the mapped file are let go as they are read.
    path = tmp_path / "line.txt"
    word = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
    path.write_text(word * (40_000_000 // len(word)))
    code = (f"import pybpe; tok = pybpe.Tokenizer.train({str(path)!r}, 300, threads=2); "
            "print(len(tok.merges), tok.train_report['bytes_read']); "
            "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    counts, peak_kib = result.stdout.splitlines()
    assert counts == f"44 {path.stat().st_size}"
    assert int(peak_kib) * 1024 < path.stat().st_size, f"peak RSS {peak_kib} KiB for a 40 MB file"


def test_progress_is_reported_and_an_error_in_the_callback_stops_training(data):
    phases = []
    pybpe.Tokenizer.train(data / "cs336/corpus.en", 500, [SPECIAL], progress=lambda *p: phases.append(p))
    assert phases[0][0] == "count" and phases[-1] == ("merge", 243, 243)
    assert phases[0][2] == (data / "cs336/corpus.en").stat().st_size

    def fail(*_):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        pybpe.Tokenizer.train(data / "cs336/corpus.en", 500, [SPECIAL], progress=fail)
