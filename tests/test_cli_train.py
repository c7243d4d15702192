"""`pybpe train` from the command line: outputs, summary, and every bad-input case."""

import json

import pytest

from cli_helpers import assert_one_line_error, run_pybpe

SPECIAL = "<|endoftext|>"


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    story = ("Once upon a time there was a little girl named Lily. She loved to play outside in the sunshine "
             "with her friends, jumping over puddles and chasing butterflies across the quiet green meadow.\n")
    path.write_text((story * 5 + SPECIAL + "\n") * 20)
    return path


def test_train_writes_the_tokenizer_and_prints_a_summary(corpus, tmp_path):
    out = tmp_path / "tok.json"
    result = run_pybpe("train", "--vocab", 300, "--special", SPECIAL, "-o", out, corpus)
    assert result.returncode == 0, result.stderr.decode()
    doc = json.loads(out.read_text())
    assert doc["special_tokens"] == {SPECIAL: 299}
    summary = result.stdout.decode()
    for line in ("read", "pre-tokens", "unique", "merges", "longest tokens", "total time"):
        assert line in summary
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp file left behind"


def test_train_reads_standard_input(corpus, tmp_path):
    out_file, out_stdin = tmp_path / "a.json", tmp_path / "b.json"
    assert run_pybpe("train", "--vocab", 280, "-o", out_file, corpus).returncode == 0
    assert run_pybpe("train", "--vocab", 280, "-o", out_stdin, "-", stdin=corpus.read_bytes()).returncode == 0
    assert json.loads(out_file.read_text())["merges"] == json.loads(out_stdin.read_text())["merges"]


def test_default_output_is_tokenizer_json(corpus, tmp_path):
    assert run_pybpe("train", "--vocab", 270, corpus, cwd=tmp_path).returncode == 0
    assert (tmp_path / "tokenizer.json").is_file()


def test_missing_file(tmp_path):
    assert_one_line_error(run_pybpe("train", "--vocab", 300, "-o", tmp_path / "t.json", tmp_path / "nope.txt"),
                          "nope.txt", "no such file")
    assert not (tmp_path / "t.json").exists()


def test_unreadable_file(tmp_path):
    # Tests run as root in CI, which reads any file; a dangling symlink cannot be opened by anyone.
    link = tmp_path / "dangling.txt"
    link.symlink_to(tmp_path / "gone.txt")
    assert_one_line_error(run_pybpe("train", "--vocab", 300, "-o", tmp_path / "t.json", link), "dangling.txt")


def test_directory_given_as_file(tmp_path):
    assert_one_line_error(run_pybpe("train", "--vocab", 300, "-o", tmp_path / "t.json", tmp_path), "is a directory")


@pytest.mark.parametrize("vocab", [255, 256, 2**31 + 1])
def test_vocab_out_of_range(corpus, tmp_path, vocab):
    assert_one_line_error(run_pybpe("train", "--vocab", vocab, "--special", SPECIAL, "-o", tmp_path / "t.json", corpus),
                          "out of range")
    assert not (tmp_path / "t.json").exists()


def test_invalid_utf8_is_replaced_and_reported(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"caf\xe9 au lait \xff\n" * 10)
    result = run_pybpe("train", "--vocab", 262, "-o", tmp_path / "t.json", bad)
    assert result.returncode == 0
    assert "replaced 20 invalid UTF-8 bytes" in result.stderr.decode()


def test_invalid_utf8_with_strict_fails(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"caf\xe9 au lait\n")
    assert_one_line_error(run_pybpe("train", "--strict", "--vocab", 270, "-o", tmp_path / "t.json", bad),
                          "invalid UTF-8 at byte 3")
    assert not (tmp_path / "t.json").exists()


@pytest.mark.parametrize("content", [b"", SPECIAL.encode() * 3])
def test_empty_corpus(tmp_path, content):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(content)
    assert_one_line_error(run_pybpe("train", "--vocab", 300, "--special", SPECIAL, "-o", tmp_path / "t.json", empty),
                          "empty")
    assert not (tmp_path / "t.json").exists()


def test_running_out_of_pairs_saves_and_says_how_many(tmp_path):
    small = tmp_path / "small.txt"
    small.write_text("abcd abcd")
    out = tmp_path / "t.json"
    assert_one_line_error(run_pybpe("train", "--vocab", 5000, "-o", out, small), "after 4 merges", code=3)
    assert len(json.loads(out.read_text())["merges"]) == 4


def test_invalid_custom_regex(corpus, tmp_path):
    assert_one_line_error(run_pybpe("train", "--vocab", 300, "--pattern", "(unclosed", "-o", tmp_path / "t.json", corpus),
                          "(unclosed")


def test_output_in_a_missing_directory(corpus, tmp_path):
    assert_one_line_error(run_pybpe("train", "--vocab", 300, "-o", tmp_path / "no/such/dir/t.json", corpus),
                          "does not exist")


def test_bad_arguments_are_one_line_too(corpus):
    assert_one_line_error(run_pybpe("train", corpus), "--vocab", code=2)
    assert_one_line_error(run_pybpe("train", "--vocab", "many", corpus), "invalid int value", code=2)
    assert_one_line_error(run_pybpe("train", "--vocab", 300, "--threads", 0, corpus), "--threads", code=1)


def test_duplicate_special_token(corpus, tmp_path):
    assert_one_line_error(run_pybpe("train", "--vocab", 300, "--special", "<s>", "--special", "<s>", "-o",
                                tmp_path / "t.json", corpus), "twice")


def test_train_into_a_closed_pipe_after_success_exits_0(corpus, tmp_path):
    import subprocess
    import sys

    training = subprocess.Popen([sys.executable, "-m", "pybpe", "train", "--vocab", "300", "-o", str(tmp_path / "t.json"),
                                 str(corpus)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    training.stdout.close()
    assert training.wait(timeout=300) == 0
    assert training.stderr.read() == b""
    assert json.loads((tmp_path / "t.json").read_text())["merges"]
