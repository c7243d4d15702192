"""What a tokenizer must be to load: merges that rebuild its vocabulary, ids that are whole
numbers; and special-token names that can be special tokens."""

import base64
import json

import pytest
import tiktoken
import tiktoken.load

import pybpe

SPECIAL = "<|endoftext|>"


@pytest.fixture(scope="module")
def trained(data):
    return pybpe.Tokenizer.train(data / "cs336/tinystories_sample.txt", 330, [SPECIAL])


def made_by(tok, merge):
    return tok.vocab[[i for i, t in tok.vocab.items() if t == merge[0] + merge[1]][0]]


def with_merges(tok, merges):
    doc = json.loads(tok.to_json())
    doc["merges"] = merges
    return json.dumps(doc, ensure_ascii=False)


def depends(later, earlier):
    """Whether the merge `later` joins the token the merge `earlier` makes."""
    return "".join(earlier) in later


# -- merges that do not rebuild the vocabulary --------------------------------------------


def test_a_trained_tokenizer_and_gpt2_rebuild_their_vocabularies(trained, data):
    assert pybpe.Tokenizer.from_json(trained.to_json()).merges == trained.merges
    gpt2 = pybpe.Tokenizer.from_gpt2(data / "cs336/gpt2_vocab.json", data / "cs336/gpt2_merges.txt")
    assert len(gpt2.merges) == 50_000 and gpt2.vocab_size == 50_257


def test_a_tokenizer_file_without_its_merges_is_refused(trained, tmp_path):
    path = tmp_path / "tok.json"
    path.write_text(with_merges(trained, []), encoding="utf-8")
    with pytest.raises(pybpe.TokenizerFileError, match=r"tok.json: there are no merges, but 73 tokens are longer than "
                                                        r"a byte \(the first: token 256, "):
        pybpe.Tokenizer.load(path)


def test_a_duplicated_merge_is_refused_naming_both(trained):
    merges = json.loads(trained.to_json())["merges"]
    damaged = merges[:10] + [merges[3]] + merges[10:]
    with pytest.raises(pybpe.TokenizerFileError, match=r"merge 10 \(.*\) makes .* again \(merge 3 made it already\)"):
        pybpe.Tokenizer.from_json(with_merges(trained, damaged))


def test_a_merge_moved_before_the_merge_making_its_part_is_refused(trained):
    merges = json.loads(trained.to_json())["merges"]
    later = next(j for j, m in enumerate(merges) if j > 0 and depends(m, merges[j - 1]))
    damaged = merges[:later - 1] + [merges[later], merges[later - 1]] + merges[later + 1:]
    with pytest.raises(pybpe.TokenizerFileError,
                       match=rf"merge {later - 1} \(.*\) uses .*, which merge {later} makes only later: "
                             rf"the merges are out of order"):
        pybpe.Tokenizer.from_json(with_merges(trained, damaged))


def test_merges_swapped_out_of_the_order_of_their_ids_are_refused(trained):
    merges = json.loads(trained.to_json())["merges"]
    k = next(k for k in range(len(merges) - 1) if not depends(merges[k + 1], merges[k]))
    damaged = merges[:k] + [merges[k + 1], merges[k]] + merges[k + 2:]
    with pytest.raises(pybpe.TokenizerFileError, match=rf"merge {k + 1} \(.*\) makes token {256 + k}, but the merge "
                                                        rf"before it made token {256 + k + 1}"):
        pybpe.Tokenizer.from_json(with_merges(trained, damaged))


def test_a_missing_merge_is_refused_naming_the_token_nothing_makes(trained):
    merges = json.loads(trained.to_json())["merges"]
    last = 256 + len(merges) - 1
    with pytest.raises(pybpe.TokenizerFileError, match=rf"token {last} \(.*\) is made by no merge: a merge is missing"):
        pybpe.Tokenizer.from_json(with_merges(trained, merges[:-1]))


def test_vocab_and_merges_given_in_python_are_held_to_the_same_rules():
    vocab = {i: bytes([i]) for i in range(256)} | {256: b"ab", 257: b"abc"}
    assert pybpe.Tokenizer.from_vocab_merges(vocab, [(b"a", b"b"), (b"ab", b"c")], []).vocab_size == 258
    with pytest.raises(pybpe.TokenizerFileError, match=r'the vocab and merges given: token 257 \("abc"\) is made by no'):
        pybpe.Tokenizer.from_vocab_merges(vocab, [(b"a", b"b")], [])
    # "ab" made first but with the higher id: the ids are not the ranks the encoder merges by.
    swapped = {i: bytes([i]) for i in range(256)} | {257: b"ab", 256: b"abc"}
    with pytest.raises(pybpe.TokenizerFileError, match="merge 1 .* makes token 256, but the merge before it made "
                                                       "token 257: merges must come in the order of the ids"):
        pybpe.Tokenizer.from_vocab_merges(swapped, [(b"a", b"b"), (b"ab", b"c")], [])


@pytest.fixture
def gpt2_files(data, tmp_path):
    vocab, merges = tmp_path / "vocab.json", tmp_path / "merges.txt"
    vocab.write_bytes((data / "cs336/gpt2_vocab.json").read_bytes())
    lines = (data / "cs336/gpt2_merges.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "Ġ t"  # this copy has no "#version" line: line n is merge n - 1

    def damaged(new_lines):
        merges.write_text("".join(line + "\n" for line in new_lines), encoding="utf-8")
        return vocab, merges

    return lines, damaged


def test_gpt2_merges_txt_that_is_empty_is_refused(gpt2_files):
    _, damaged = gpt2_files
    with pytest.raises(pybpe.TokenizerFileError, match="merges.txt: there are no merges, but 50000 tokens are longer"):
        pybpe.Tokenizer.from_gpt2(*damaged([]))


def test_gpt2_merges_txt_with_a_line_twice_is_refused_naming_both_lines(gpt2_files):
    lines, damaged = gpt2_files
    assert lines[2] == "h e"
    with pytest.raises(pybpe.TokenizerFileError,
                       match=r'merges.txt line 11 \("h" \+ "e"\) makes "he" again \(merges.txt line 3 made it already\)'):
        pybpe.Tokenizer.from_gpt2(*damaged(lines[:10] + [lines[2]] + lines[10:]))


def test_gpt2_merges_txt_with_lines_out_of_order_is_refused(gpt2_files):
    lines, damaged = gpt2_files
    assert lines[6] == "Ġt he"  # it joins the token line 1 makes
    with pytest.raises(pybpe.TokenizerFileError,
                       match=r'merges.txt line 1 \(" t" \+ "he"\) uses " t" \(id 256\), which merges.txt line 7 makes '
                             r'only later: the merges are out of order'):
        pybpe.Tokenizer.from_gpt2(*damaged([lines[6]] + lines[1:6] + [lines[0]] + lines[7:]))


def test_gpt2_merges_txt_with_a_line_missing_is_refused(gpt2_files):
    lines, damaged = gpt2_files
    with pytest.raises(pybpe.TokenizerFileError, match=r"token 50255 \(.*\) is made by no merge: a merge is missing"):
        pybpe.Tokenizer.from_gpt2(*damaged(lines[:-1]))


# -- ids that are not whole numbers ------------------------------------------------------


@pytest.mark.parametrize("written", ["-1", "1.5", '"abc"', "true"])
def test_an_id_that_is_not_a_whole_number_is_named_as_written_with_its_token(trained, tmp_path, written):
    text = trained.to_json()
    key = next(k for k, v in json.loads(text)["vocab"].items() if v == 300)
    path = tmp_path / "tok.json"
    path.write_text(text.replace(f'"{key}": 300', f'"{key}": {written}'), encoding="utf-8")
    with pytest.raises(pybpe.TokenizerFileError) as error:
        pybpe.Tokenizer.load(path)
    assert str(error.value) == f'{path}: vocab entry "{key}" has id {written}; ids are whole numbers from 0'
    special = text.replace(f'"{SPECIAL}": 329', f'"{SPECIAL}": {written}')
    with pytest.raises(pybpe.TokenizerFileError, match=f'special token "<|endoftext|>" has id {written}; ids are'):
        pybpe.Tokenizer.from_json(special)


@pytest.mark.parametrize("bad_id", [-1, 1.5, "abc", "300", None])
def test_an_id_that_is_not_a_whole_number_is_refused_in_a_vocab_given_in_python(bad_id):
    vocab = {i: bytes([i]) for i in range(256)} | {bad_id: b"ab"}
    with pytest.raises(pybpe.TokenizerFileError) as error:
        pybpe.Tokenizer.from_vocab_merges(vocab, [(b"a", b"b")], [])
    assert str(error.value) == f"the vocab and merges given: the token b'ab' has id {bad_id!r}; ids are whole numbers from 0"


# -- special-token names -------------------------------------------------------------------


def test_a_lone_surrogate_allowed_as_a_special_token_is_a_config_error(trained):
    for call in (lambda: trained.encode("hi", allowed_special={"\ud800"}),
                 lambda: trained.encode_batch(["hi"], allowed_special={"\ud800"}),
                 lambda: trained.encode_to_numpy("hi", allowed_special={"<|endoftext|>", "\ud800"}),
                 lambda: list(trained.encode_iterable(["hi"], allowed_special={"\ud800"}))):
        with pytest.raises(pybpe.ConfigError, match=r"'\\ud800' is not a special token of this tokenizer: it holds a "
                                                    r"lone surrogate"):
            call()


def test_a_lone_surrogate_disallowed_disallows_nothing_as_any_name_no_special_token_has(trained):
    text = "hi \ud800 there"
    assert trained.encode(text, disallowed_special={"\ud800"}) == trained.encode(text, disallowed_special={"<|x|>"})
    assert trained.encode(text, disallowed_special={"\ud800"}) == trained.encode(text.replace("\ud800", "\ufffd"))
    with pytest.raises(pybpe.SpecialTokenError):
        trained.encode(f"a{SPECIAL}", disallowed_special={"\ud800", SPECIAL})


# -- merges derived from tiktoken ranks ----------------------------------------------------


def write_ranks(path, extra):
    tokens = [bytes([b]) for b in range(256)] + extra
    path.write_bytes(b"".join(base64.b64encode(t) + b" %d\n" % rank for rank, t in enumerate(tokens)))


def test_a_tiktoken_token_its_own_bpe_leaves_in_three_parts_is_made_from_two_lower_ranked_tokens(tmp_path):
    # BPE of ".:.:" with the tokens below it joins the middle ":." first and stops at ". :. :".
    path = tmp_path / "ranks.tiktoken"
    write_ranks(path, [b":.", b".:", b".:.:"])
    tok = pybpe.Tokenizer.from_tiktoken_file(path, pattern=r"\S+|\s+")
    assert tok.merges == [(b":", b"."), (b".", b":"), (b".:", b".:")]
    enc = tiktoken.Encoding("t", pat_str=r"\S+|\s+", mergeable_ranks=tiktoken.load.load_tiktoken_bpe(str(path)),
                            special_tokens={})
    for text in [".:.:", ".:.:.:", "x.:.:", ":.:.:"]:
        assert tok.encode(text) == enc.encode(text)


def test_a_tiktoken_token_that_is_not_two_lower_ranked_tokens_joined_is_refused(tmp_path):
    path = tmp_path / "ranks.tiktoken"
    write_ranks(path, [b"ab", b"xyz"])
    with pytest.raises(pybpe.TokenizerFileError, match=r"ranks.tiktoken: the token b'xyz' \(rank 257\) is not two "
                                                       r"tokens of lower rank joined, so no merge can make it"):
        pybpe.Tokenizer.from_tiktoken_file(path, pattern="gpt2")
