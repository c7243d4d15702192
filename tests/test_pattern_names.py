"""Pattern names are read in any case; a regular expression that leaves most of the text out
of its pre-tokens is refused by training and reported once by encoding."""

import json
import warnings

import pytest

from cli_helpers import assert_one_line_error, run_pybpe

import pybpe
from pybpe.tokenizer import pretokenize

TEXT = "Hello WORLD's 12345 ok?!\n\n  x"
UPPER_ONLY = r"[A-Z]+"


@pytest.fixture
def stories(data, tmp_path):
    path = tmp_path / "stories.txt"
    path.write_bytes((data / "cs336/tinystories_sample.txt").read_bytes())
    return path


@pytest.mark.parametrize("name, meant", [("GPT2", "gpt2"), ("Gpt4", "gpt4"), ("R50K", "gpt2"), ("cl100k", "gpt4"),
                                         ("P50K_BASE", "gpt2"), ("CL100K_BASE", "gpt4")])
def test_pattern_names_are_read_in_any_case(stories, name, meant):
    assert pretokenize(TEXT, name) == pretokenize(TEXT, meant)
    assert pybpe.Tokenizer.train(stories, 300, pattern=name).pattern == meant


def test_the_command_line_reads_pattern_names_in_any_case(stories, tmp_path):
    out = tmp_path / "t.json"
    result = run_pybpe("train", "--vocab", 300, "--pattern", "GPT4", "-o", out, stories)
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(out.read_text())["pattern"] == "gpt4"


def test_training_refuses_a_pattern_that_leaves_most_of_the_text_out(stories):
    with pytest.raises(pybpe.CorpusError, match=r"^the pattern matched only 3\.0% of the text, and the rest would be "
                                                r"left out of every token: check the regular expression"):
        pybpe.Tokenizer.train(stories, 300, pattern=UPPER_ONLY)


def test_the_command_line_refuses_it_in_one_line(stories, tmp_path):
    out = tmp_path / "t.json"
    assert_one_line_error(run_pybpe("train", "--vocab", 300, "--pattern", UPPER_ONLY, "-o", out, stories),
                          "pybpe: error: the pattern matched only", "gpt2 (also r50k, p50k), gpt4 (also cl100k) and o200k")
    assert not out.exists()


def test_encoding_warns_once_when_the_pattern_leaves_most_of_the_text_out(stories):
    tok = pybpe.Tokenizer.from_vocab_merges({i: bytes([i]) for i in range(256)}, [], [], pattern=UPPER_ONLY)
    text = stories.read_text(encoding="utf-8")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tok.encode("ABC dE")
        assert caught == []
        tok.encode(text)
        tok.encode(text)
        tok.encode_batch([text])
    assert [w.category for w in caught] == [pybpe.UnmatchedTextWarning]
    assert str(caught[0].message).startswith("the pattern matched only 3.0% of the text, and the rest is left out")


def test_encoding_on_the_command_line_warns_in_one_line(stories, tmp_path):
    tok_path = tmp_path / "upper.json"
    pybpe.Tokenizer.from_vocab_merges({i: bytes([i]) for i in range(256)}, [], [], pattern=UPPER_ONLY).save(tok_path)
    result = run_pybpe("encode", "-t", tok_path, stories, "-o", tmp_path / "out.bin")
    assert result.returncode == 0
    [line] = result.stderr.decode().splitlines()
    assert line.startswith("pybpe: warning: the pattern matched only 3.0% of the text, and the rest is left out")
