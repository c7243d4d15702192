"""Interop: GPT-2 files, tiktoken rank files and `tiktoken.Encoding`, HuggingFace tokenizer.json.

pybpe's ids are checked against tiktoken (the reference; it classifies characters with the
same Unicode tables as pybpe) and against HuggingFace `tokenizers` loading our export.
"""

import base64
import json

import numpy as np
import pytest
import tiktoken
import tokenizers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pybpe
from pybpe.interop import bytes_to_gpt2_string, gpt2_string_to_bytes

SPECIAL = "<|endoftext|>"
SMALL_CORPORA = ["tinyshakespeare.txt", "tinystories_pool_valid.txt", "wikitext2_valid.txt",
                 "alice_multilingual_40lang.txt"]


@pytest.fixture(scope="session")
def gpt2(data):
    return pybpe.Tokenizer.from_gpt2(data / "cs336/gpt2_vocab.json", data / "cs336/gpt2_merges.txt")


@pytest.fixture(scope="session")
def tiktoken_gpt2():
    return tiktoken.get_encoding("gpt2")


@pytest.fixture(scope="session")
def gpt4_trained(data):
    """A GPT-4-pattern tokenizer trained by pybpe: ids are bytes, merges in order, specials."""
    return pybpe.Tokenizer.train(data / "corpora/alice_multilingual_40lang.txt", 3000, [SPECIAL, "<|pad|>"],
                                 pattern="gpt4")


@pytest.fixture(scope="session")
def gpt2_trained(data):
    return pybpe.Tokenizer.train(data / "corpora/tinystories_pool_valid.txt", 2000, [SPECIAL])


def assert_same_ids(ours, theirs, text=""):
    ours, theirs = np.asarray(ours, dtype=np.int64), np.asarray(theirs, dtype=np.int64)
    if len(ours) == len(theirs) and np.array_equal(ours, theirs):
        return
    differ = np.flatnonzero(ours[:len(theirs)] != theirs[:len(ours)])
    first = int(differ[0]) if len(differ) else min(len(ours), len(theirs))
    pytest.fail(f"ids differ first at position {first} (lengths {len(ours)} vs {len(theirs)}): "
                f"{ours[max(0, first - 3):first + 4].tolist()} vs {theirs[max(0, first - 3):first + 4].tolist()}")


def read_corpus(data, name):
    return (data / "corpora" / name).read_bytes().decode("utf-8")


# -- GPT-2 from vocab.json + merges.txt -------------------------------------------------


def test_gpt2_files_give_tiktokens_gpt2_vocabulary(gpt2, tiktoken_gpt2):
    assert gpt2.vocab_size == 50257
    assert gpt2.special_tokens == {SPECIAL: 50256}
    assert len(gpt2.merges) == 50000
    assert gpt2.vocab == {i: tiktoken_gpt2.decode_single_token_bytes(i) for i in range(50257)}
    # GPT-2's single bytes are not at ids 0-255 in byte order.
    assert gpt2.vocab[0] == b"!" and gpt2.vocab[188] == b"\x00"


@pytest.mark.parametrize("name", ["address.txt", "german.txt", "tinystories_sample.txt", "corpus.en",
                                  "special_token_double_newlines_non_whitespace.txt",
                                  "special_token_trailing_newlines.txt"])
def test_gpt2_encodes_the_cs336_fixtures_like_tiktoken(gpt2, tiktoken_gpt2, data, name):
    text = (data / "cs336" / name).read_bytes().decode("utf-8")
    assert_same_ids(gpt2.encode(text, allowed_special="all"), tiktoken_gpt2.encode(text, allowed_special="all"))
    assert gpt2.decode(gpt2.encode(text, allowed_special="all")) == text


def corpus_names():
    from pybpe.data import data_dir

    return sorted(p.name for p in (data_dir() / "corpora").glob("*.txt"))


@pytest.mark.parametrize("name", corpus_names())
def test_gpt2_encodes_every_corpus_like_tiktoken(gpt2, tiktoken_gpt2, data, name):
    text = read_corpus(data, name)
    # Special tokens are cut out before anything else, so the documents between them
    # encode independently: tiktoken encodes them in parallel, then they are joined.
    documents = text.split(SPECIAL)
    expected = []
    for start in range(0, len(documents), 1000):  # a batch at a time, to hold few Python ints
        batch = tiktoken_gpt2.encode_ordinary_batch(documents[start:start + 1000], num_threads=2)
        expected += [np.asarray(ids + [50256], dtype=np.uint32) for ids in batch]
    expected = np.concatenate(expected)[:-1]
    assert_same_ids(gpt2.encode_to_numpy(text, allowed_special="all"), expected)
    assert_same_ids(gpt2.encode_to_numpy(text, allowed_special="all", threads=2), expected)


unicode_text = st.text(st.characters(codec="utf-8"), max_size=200)
gpt2_like_text = st.lists(
    st.one_of(unicode_text, st.sampled_from([" ", "  ", "\n", "\n\n", " \n ", "'s", "'ll", "don't", "123", "1 2",
                                             "   a", "\t", "\r\n", "é", "日本語", "😀", "<|", "|>", SPECIAL])),
    max_size=30).map("".join)


@given(text=gpt2_like_text)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_gpt2_encodes_any_text_like_tiktoken(gpt2, tiktoken_gpt2, text):
    assert gpt2.encode_ordinary(text) == tiktoken_gpt2.encode_ordinary(text)
    assert gpt2.encode(text, allowed_special="all") == tiktoken_gpt2.encode(text, allowed_special="all")
    assert gpt2.decode(gpt2.encode_ordinary(text)) == text


def test_gpt2_special_tokens_missing_from_vocab_json_are_appended(data):
    tok = pybpe.Tokenizer.from_gpt2(data / "cs336/gpt2_vocab.json", data / "cs336/gpt2_merges.txt",
                                    special_tokens=[SPECIAL, "<|pad|>", "<|user|>"])
    assert tok.special_tokens == {SPECIAL: 50256, "<|pad|>": 50257, "<|user|>": 50258}
    assert tok.vocab_size == 50259


# -- a tokenizer trained by pybpe, as a tiktoken.Encoding ------------------------------


def test_trained_tokenizer_ranks_are_its_ids(gpt4_trained):
    enc = gpt4_trained.to_tiktoken()
    assert enc.n_vocab == gpt4_trained.vocab_size
    assert enc._pat_str == gpt4_trained.pattern_regex
    assert enc._special_tokens == gpt4_trained.special_tokens
    assert {rank: token for token, rank in enc._mergeable_ranks.items()} == {
        id: token for id, token in gpt4_trained.vocab.items() if id not in gpt4_trained.special_tokens.values()}


# webtext_pool has code: runs of whitespace with newlines inside, before text.
@pytest.mark.parametrize("name", SMALL_CORPORA + ["webtext_pool.txt", "nltk_web_news_speeches.txt"])
def test_gpt4_pattern_tokenizer_encodes_like_its_tiktoken_encoding(gpt4_trained, data, name):
    text = read_corpus(data, name)
    enc = gpt4_trained.to_tiktoken()
    assert_same_ids(gpt4_trained.encode(text, allowed_special="all"), enc.encode(text, allowed_special="all"))


@given(text=gpt2_like_text)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_gpt4_pattern_tokenizer_encodes_any_text_like_its_tiktoken_encoding(gpt4_trained, text):
    enc = gpt4_trained.to_tiktoken()
    assert gpt4_trained.encode(text, allowed_special="all") == enc.encode(text, allowed_special="all")


# -- HuggingFace tokenizer.json ----------------------------------------------------------


def huggingface(tok, tmp_path):
    path = tmp_path / "tokenizer.json"
    tok.save_huggingface(path)
    return tokenizers.Tokenizer.from_file(str(path))


@pytest.mark.parametrize("name", SMALL_CORPORA[:2])
def test_huggingface_export_of_gpt2_encodes_like_tiktoken(gpt2, tiktoken_gpt2, data, tmp_path, name):
    text = read_corpus(data, name)
    hf = huggingface(gpt2, tmp_path)
    assert_same_ids(hf.encode(text).ids, tiktoken_gpt2.encode(text, allowed_special="all"))
    assert hf.decode(hf.encode(text).ids, skip_special_tokens=False) == text


@pytest.mark.parametrize("fixture", ["gpt4_trained", "gpt2_trained"])
@pytest.mark.parametrize("name", SMALL_CORPORA[:2])
def test_huggingface_export_of_a_trained_tokenizer_encodes_like_pybpe(request, data, tmp_path, fixture, name):
    tok = request.getfixturevalue(fixture)
    text = read_corpus(data, name)
    hf = huggingface(tok, tmp_path)
    assert_same_ids(hf.encode(text).ids, tok.encode(text, allowed_special="all"))


def test_huggingface_export_file_is_byte_level_bpe(gpt2_trained, gpt4_trained, tmp_path):
    gpt2_trained.save_huggingface(tmp_path / "a.json")
    doc = json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))
    assert doc["model"]["type"] == "BPE"
    assert doc["pre_tokenizer"] == {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                                    "use_regex": True}
    assert doc["decoder"]["type"] == "ByteLevel"
    assert doc["added_tokens"][0]["content"] == SPECIAL and doc["added_tokens"][0]["id"] == 1999
    assert len(doc["model"]["merges"]) == len(gpt2_trained.merges)
    gpt4_trained.save_huggingface(tmp_path / "b.json")
    split, byte_level = json.loads((tmp_path / "b.json").read_text(encoding="utf-8"))["pre_tokenizer"]["pretokenizers"]
    assert split["pattern"] == {"Regex": gpt4_trained.pattern_regex} and split["behavior"] == "Isolated"
    assert byte_level["use_regex"] is False


@given(text=gpt2_like_text)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_huggingface_export_encodes_any_text_like_tiktoken(gpt2, gpt4_trained, tiktoken_gpt2, tmp_path_factory, text):
    # Oniguruma (HF) and the Rust regex crate (tiktoken, pybpe) could disagree on code
    # points new in recent Unicode versions; on arbitrary text they have not so far.
    for tok, enc in ((gpt2, tiktoken_gpt2), (gpt4_trained, gpt4_trained.to_tiktoken())):
        hf = _huggingface_cached(tok, tmp_path_factory)
        assert hf.encode(text).ids == enc.encode(text, allowed_special="all")


def test_huggingface_can_differ_where_a_token_joins_from_parts_that_are_not_its_merge(tmp_path):
    # "bc" is merged first; tiktoken then joins "a" + "bc" because "abc" is a token, but HF
    # only applies listed merges, and "abc" is listed as "ab" + "c". Trained vocabularies
    # do not have such tokens; this hand-made one shows what the export does not promise.
    vocab = {i: bytes([i]) for i in range(256)} | {256: b"bc", 257: b"ab", 258: b"abc"}
    tok = pybpe.Tokenizer.from_vocab_merges(vocab, [(b"b", b"c"), (b"a", b"b"), (b"ab", b"c")], special_tokens=[])
    assert tok.to_tiktoken().encode("abc") == [258]
    assert huggingface(tok, tmp_path).encode("abc").ids == [ord("a"), 256]


_hf_cache = {}


def _huggingface_cached(tok, tmp_path_factory):
    if id(tok) not in _hf_cache:
        _hf_cache[id(tok)] = huggingface(tok, tmp_path_factory.mktemp("hf"))
    return _hf_cache[id(tok)]


# -- tiktoken rank files -------------------------------------------------------------------


def test_tiktoken_file_round_trip_derives_the_same_merges(gpt2, tiktoken_gpt2, tmp_path):
    path = tmp_path / "gpt2.tiktoken"
    gpt2.save_tiktoken(path)
    assert tiktoken.load.load_tiktoken_bpe(str(path)) == tiktoken_gpt2._mergeable_ranks
    back = pybpe.Tokenizer.from_tiktoken_file(path, {SPECIAL: 50256}, pattern="gpt2")
    assert back.vocab == gpt2.vocab
    assert back.merges == gpt2.merges
    assert back.special_tokens == gpt2.special_tokens


def test_tiktoken_file_of_a_trained_tokenizer_round_trips(gpt4_trained, tmp_path):
    path = tmp_path / "t.tiktoken"
    gpt4_trained.save_tiktoken(path)
    back = pybpe.Tokenizer.from_tiktoken_file(path, [SPECIAL, "<|pad|>"], pattern="gpt4")
    assert back.vocab == gpt4_trained.vocab
    assert back.merges == gpt4_trained.merges
    assert back.special_tokens == gpt4_trained.special_tokens
    assert path.read_text().splitlines()[300] == f"{base64.b64encode(gpt4_trained.vocab[300]).decode()} 300"


@pytest.mark.parametrize("content, complaint", [
    (b"", "no tokens"),
    (b"not a rank file\n", "line 1"),
    (b"IQ== 0\nIg== x\n", "line 2"),
    (b"IQ== 0\n!!!! 1\n", "line 2"),
    (b"IQ== 0\nIQ== 1\n", "listed twice"),
    (b"IQ== 0\nIg== 0\n", "rank 0"),
    (b"IQ== 0\nIg== 1\n", "the single byte"),
    (b"\x89PNG\r\n\x1a\n", "line 1"),
])
def test_a_damaged_tiktoken_file_is_refused_naming_the_file(tmp_path, content, complaint):
    path = tmp_path / "bad.tiktoken"
    path.write_bytes(content)
    with pytest.raises(pybpe.TokenizerFileError, match=complaint) as error:
        pybpe.Tokenizer.from_tiktoken_file(path, pattern="gpt2")
    assert "bad.tiktoken" in str(error.value)


def test_tiktoken_file_with_a_gap_in_the_ranks_leaves_that_id_unused(gpt2, data, tmp_path):
    path = tmp_path / "gap.tiktoken"
    gpt2.save_tiktoken(path)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-2] + lines[-1:]))  # rank 50254 left out
    tok = pybpe.Tokenizer.from_tiktoken_file(path, pattern="gpt2")
    assert tok.vocab_size == 50256 and 50254 not in tok.vocab and len(tok.vocab) == 50255
    ranks = {token: rank for token, rank in tiktoken.get_encoding("gpt2")._mergeable_ranks.items() if rank != 50254}
    enc = tiktoken.Encoding("gap", pat_str=tok.pattern_regex, mergeable_ranks=ranks, special_tokens={})
    text = read_corpus(data, "wikitext2_valid.txt")
    assert_same_ids(tok.encode(text), enc.encode(text))
    with pytest.raises(pybpe.ConfigError, match="id 50254 at position 1 is an unused id"):
        tok.decode([262, 50254])


def test_special_tokens_with_unused_ids_between_them_as_cl100k_has(gpt4_trained, data, tmp_path):
    # cl100k: ranks 0..100255, <|endoftext|> 100257, <|fim_prefix|> 100258, <|endofprompt|> 100276.
    path = tmp_path / "ranks.tiktoken"
    gpt4_trained.save_tiktoken(path)
    n = len(gpt4_trained.vocab) - len(gpt4_trained.special_tokens)
    specials = {SPECIAL: n + 1, "<|fim_prefix|>": n + 2, "<|endofprompt|>": n + 20}
    tok = pybpe.Tokenizer.from_tiktoken_file(path, specials, pattern="gpt4")
    assert tok.vocab_size == n + 21 and len(tok.vocab) == n + 3 and tok.special_tokens == specials
    enc = tiktoken.Encoding("cl100k-like", pat_str=tok.pattern_regex, special_tokens=specials,
                            mergeable_ranks=tiktoken.load.load_tiktoken_bpe(str(path)))
    text = "<|fim_prefix|>" + read_corpus(data, "tinyshakespeare.txt")[:20000] + "<|endofprompt|>x" + SPECIAL
    ids = tok.encode(text, allowed_special="all")
    assert_same_ids(ids, enc.encode(text, allowed_special="all"))
    assert ids[0] == n + 2 and ids[-1] == n + 1 and tok.decode(ids) == text
    assert tok.to_tiktoken().encode(text, allowed_special="all") == ids
    # Every format keeps the unused ids unused.
    tok.save(tmp_path / "tok.json")
    back = pybpe.Tokenizer.load(tmp_path / "tok.json")
    assert (back.vocab, back.special_tokens, back.vocab_size) == (tok.vocab, specials, n + 21)
    tok.save_gpt2(tmp_path / "vocab.json", tmp_path / "merges.txt")
    back = pybpe.Tokenizer.from_gpt2(tmp_path / "vocab.json", tmp_path / "merges.txt", list(specials), pattern="gpt4")
    assert (back.vocab, back.merges, back.special_tokens) == (tok.vocab, tok.merges, specials)
    tok.save_huggingface(tmp_path / "hf.json")
    hf = tokenizers.Tokenizer.from_file(str(tmp_path / "hf.json"))
    assert hf.encode(text, add_special_tokens=False).ids == ids
    assert tok.encode_to_numpy(text, allowed_special="all").tolist() == ids
    with pytest.raises(pybpe.ConfigError, match=f"id {n + 5} at position 0 is an unused id"):
        tok.decode([n + 5])


def test_ids_far_past_the_others_are_refused_as_damage(gpt2, tmp_path):
    path = tmp_path / "far.tiktoken"
    gpt2.save_tiktoken(path)
    path.write_bytes(path.read_bytes().replace(b" 50255\n", b" 5000000\n"))
    with pytest.raises(pybpe.TokenizerFileError, match="far.tiktoken: its ids go up to 5000000"):
        pybpe.Tokenizer.from_tiktoken_file(path, pattern="gpt2")
    with pytest.raises(pybpe.TokenizerFileError, match="ids go up to 4999999"):
        pybpe.Tokenizer.from_vocab_merges({i: bytes([i]) for i in range(256)} | {4999999: b"ab"}, [], [])


# -- GPT-2 vocab.json + merges.txt written back ---------------------------------------


def test_gpt2_files_round_trip(gpt2, data, tmp_path):
    gpt2.save_gpt2(tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8")) == json.loads(
        (data / "cs336/gpt2_vocab.json").read_text(encoding="utf-8"))
    written = (tmp_path / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert written[0] == "#version: 0.2"
    assert written[1:] == (data / "cs336/gpt2_merges.txt").read_text(encoding="utf-8").splitlines()
    back = pybpe.Tokenizer.from_gpt2(tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert back.vocab == gpt2.vocab and back.merges == gpt2.merges and back.special_tokens == gpt2.special_tokens


def test_trained_tokenizer_round_trips_through_gpt2_files(gpt4_trained, tmp_path):
    gpt4_trained.save_gpt2(tmp_path / "vocab.json", tmp_path / "merges.txt")
    back = pybpe.Tokenizer.from_gpt2(tmp_path / "vocab.json", tmp_path / "merges.txt",
                                     special_tokens=[SPECIAL, "<|pad|>"], pattern="gpt4")
    assert back.vocab == gpt4_trained.vocab and back.merges == gpt4_trained.merges
    assert back.special_tokens == gpt4_trained.special_tokens


@pytest.mark.parametrize("which, content, complaint", [
    ("vocab", "{not json", "not valid JSON"),
    ("vocab", "[1, 2]", "not a JSON object"),
    ("vocab", '{"a": "zero"}', 'token \'a\' has id "zero"; ids are whole numbers from 0'),
    ("vocab", '{"a": -1}', "token 'a' has id -1; ids are whole numbers from 0"),
    ("vocab", '{"a": 1.5}', "token 'a' has id 1.5; ids are whole numbers from 0"),
    ("vocab", '{"format": "pybpe", "version": 1}', "a pybpe tokenizer file"),
    ("vocab", '{"version": "1.0", "model": {}, "pre_tokenizer": null}', "a HuggingFace tokenizer.json"),
    ("vocab", '{"a b": 0}', "byte-to-unicode"),
    ("merges", "Ġ t\nĠ\n", "line 2"),
    ("merges", "Ġ t x\n", "line 1"),
    ("merges", "Ġ zzzzzzzz\n", "not in the vocabulary"),
])
def test_damaged_gpt2_files_are_refused_naming_the_file(data, tmp_path, which, content, complaint):
    vocab, merges = tmp_path / "vocab.json", tmp_path / "merges.txt"
    vocab.write_bytes((data / "cs336/gpt2_vocab.json").read_bytes())
    merges.write_bytes((data / "cs336/gpt2_merges.txt").read_bytes())
    (vocab if which == "vocab" else merges).write_text(content, encoding="utf-8")
    with pytest.raises(pybpe.TokenizerFileError, match=complaint) as error:
        pybpe.Tokenizer.from_gpt2(vocab, merges)
    assert ("vocab.json" if which == "vocab" else "merges.txt") in str(error.value)


def test_missing_gpt2_file_is_a_file_error(data, tmp_path):
    with pytest.raises(pybpe.FileError, match="nope.json"):
        pybpe.Tokenizer.from_gpt2(tmp_path / "nope.json", data / "cs336/gpt2_merges.txt")


# -- CS336's form: dict[int, bytes] + list[tuple[bytes, bytes]] -------------------------


def read_cs336_reference(data):
    vocab_doc = json.loads((data / "cs336/train-bpe-reference-vocab.json").read_text(encoding="utf-8"))
    vocab = {id: gpt2_string_to_bytes(token) if token != SPECIAL else SPECIAL.encode() for token, id in vocab_doc.items()}
    merges = [tuple(gpt2_string_to_bytes(part) for part in line.split(" "))
              for line in (data / "cs336/train-bpe-reference-merges.txt").read_text(encoding="utf-8").splitlines()
              if line]
    return vocab, merges


def test_from_vocab_merges_keeps_the_cs336_reference_ids(data):
    vocab, merges = read_cs336_reference(data)
    tok = pybpe.Tokenizer.from_vocab_merges(vocab, merges, special_tokens=[SPECIAL])
    assert tok.vocab == vocab
    assert tok.merges == merges
    assert tok.special_tokens == {SPECIAL: 0}
    text = (data / "cs336/tinystories_sample.txt").read_text(encoding="utf-8")
    assert tok.encode(text, allowed_special="all") == tok.to_tiktoken().encode(text, allowed_special="all")


def test_from_vocab_merges_equals_the_trained_tokenizer_it_came_from(gpt2_trained):
    rebuilt = pybpe.Tokenizer.from_vocab_merges(gpt2_trained.vocab, gpt2_trained.merges, special_tokens=[SPECIAL])
    assert rebuilt.to_json() == gpt2_trained.to_json()


def test_from_vocab_merges_appends_missing_special_tokens():
    vocab = {i: bytes([i]) for i in range(256)}
    tok = pybpe.Tokenizer.from_vocab_merges(vocab, [], special_tokens=[SPECIAL, "<|pad|>"])
    assert tok.special_tokens == {SPECIAL: 256, "<|pad|>": 257}


@pytest.mark.parametrize("vocab, merges, error, complaint", [
    ({i: bytes([i]) for i in range(255)}, [], pybpe.TokenizerFileError, "0xff"),
    ({i: bytes([i]) for i in range(256)} | {10**7: b"ab"}, [], pybpe.TokenizerFileError, "ids unused among 257 tokens"),
    ({i: bytes([i]) for i in range(256)}, [(b"a", b"b")], pybpe.TokenizerFileError, "not in the vocabulary"),
    ({i: bytes([i]) for i in range(256)}, [(b"a", b"zz")], pybpe.TokenizerFileError, "not in the vocabulary"),
])
def test_from_vocab_merges_refuses_inconsistent_parts(vocab, merges, error, complaint):
    with pytest.raises(error, match=complaint):
        pybpe.Tokenizer.from_vocab_merges(vocab, merges, special_tokens=[])


def test_special_token_ids_must_hold_the_special_token(gpt2_trained, tmp_path):
    path = tmp_path / "t.tiktoken"
    gpt2_trained.save_tiktoken(path)
    with pytest.raises(pybpe.ConfigError, match="gives to the token"):
        pybpe.Tokenizer.from_tiktoken_file(path, {SPECIAL: 5}, pattern="gpt2")


# -- writing -----------------------------------------------------------------------------


def test_writes_are_atomic_and_refuse_missing_directories(gpt2_trained, tmp_path):
    missing = tmp_path / "no" / "such"
    for save in (gpt2_trained.save_tiktoken, gpt2_trained.save_huggingface):
        with pytest.raises(pybpe.FileError, match="does not exist"):
            save(missing / "out")
    with pytest.raises(pybpe.FileError, match="does not exist"):
        gpt2_trained.save_gpt2(tmp_path / "vocab.json", missing / "merges.txt")
    assert not (tmp_path / "vocab.json").exists(), "half of the pair written"
    target = tmp_path / "t.tiktoken"
    target.write_text("old")
    gpt2_trained.save_tiktoken(target)
    assert target.read_text() != "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.tiktoken"], "temp files left behind"


def test_byte_to_unicode_is_gpt2s():
    assert bytes_to_gpt2_string(b" the\n") == "ĠtheĊ"
    assert gpt2_string_to_bytes("ĠtheĊ") == b" the\n"
    assert gpt2_string_to_bytes("a b") is None
    assert {gpt2_string_to_bytes(bytes_to_gpt2_string(bytes([b]))) for b in range(256)} == {bytes([b]) for b in range(256)}
