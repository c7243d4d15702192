"""Named encodings where a tokenizer file is expected: `gpt2` (GPT-2's files in the shared
data, else tiktoken) and tiktoken's encodings through tiktoken's own loader and cache."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tiktoken

from cli_helpers import assert_one_line_error, run_pybpe

import pybpe

UNKNOWN = "gpt3: no such tokenizer file or named encoding (known: gpt2, r50k_base, p50k_base, "


@pytest.fixture(scope="module")
def gpt2():
    return pybpe.Tokenizer.load("gpt2")


@pytest.fixture
def corpus(data, tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes((data / "cs336/corpus.en").read_bytes())
    return path


@pytest.fixture
def no_cache(tmp_path, monkeypatch):
    """tiktoken's cache is an empty folder, and there is no network."""
    empty = tmp_path / "empty_cache"
    empty.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(empty))
    return empty


def test_gpt2_by_name_encodes_as_tiktoken_gpt2(gpt2, corpus):
    text = corpus.read_text(encoding="utf-8") + "<|endoftext|>"
    assert gpt2.name == "gpt2" and gpt2.source_path is None
    assert gpt2.encode(text, allowed_special="all") == tiktoken.get_encoding("gpt2").encode(text, allowed_special="all")
    assert pybpe.get_encoding("gpt2").to_json() == pybpe.Tokenizer.from_name("GPT2").to_json() == gpt2.to_json()


def test_gpt2_without_the_shared_files_comes_from_tiktoken_the_same(gpt2, tmp_path, monkeypatch):
    monkeypatch.setenv("PYBPE_DATA", str(tmp_path))
    assert pybpe.Tokenizer.from_name("gpt2").to_json() == gpt2.to_json()


@pytest.mark.parametrize("name", ["cl100k_base", "o200k_base", "r50k_base", "p50k_base"])
def test_a_name_tiktoken_has_not_cached_offline_says_what_is_missing_and_how_to_provide_it(no_cache, name):
    with pytest.raises(pybpe.FileError) as error:
        pybpe.Tokenizer.load(name)
    assert str(error.value) == (
        f"{name}: tiktoken's files for it are not in TIKTOKEN_CACHE_DIR={no_cache} and cannot be downloaded "
        f"(ConnectionError); set TIKTOKEN_CACHE_DIR to a folder holding tiktoken's cached files, or pass a "
        f"tokenizer file")


def test_without_tiktoken_a_tiktoken_name_says_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "tiktoken", None)
    with pytest.raises(pybpe.ConfigError, match="cl100k_base is one of tiktoken's named encodings: pip install "
                                                "tiktoken to use it"):
        pybpe.Tokenizer.load("cl100k_base")
    assert pybpe.Tokenizer.load("gpt2").vocab_size == 50257


def test_an_unknown_name_that_is_not_a_file_lists_the_names(tmp_path):
    with pytest.raises(pybpe.FileError) as error:
        pybpe.Tokenizer.load("gpt3")
    assert str(error.value).startswith(UNKNOWN) and "cl100k_base, o200k_base" in str(error.value)


def test_a_file_that_exists_wins_over_a_name(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pybpe.Tokenizer.train(data / "cs336/tinystories_sample.txt", 300).save("gpt2")
    tok = pybpe.Tokenizer.load("gpt2")
    assert tok.vocab_size == 300 and tok.name is None and tok.source_path == str(tmp_path / "gpt2")


def tiktoken_constructor(name, monkeypatch):
    """What tiktoken's constructor of `name` returns, with no ranks (which it would download)."""
    from tiktoken_ext import openai_public

    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", lambda *args, **kwargs: {})
    return openai_public.ENCODING_CONSTRUCTORS[name]()


@pytest.mark.parametrize("name, pattern", [("r50k_base", "gpt2"), ("p50k_base", "gpt2"), ("cl100k_base", "gpt4"),
                                           ("o200k_base", None)])
def test_tiktokens_encodings_are_built_from_their_ranks_specials_and_pattern(name, pattern, data, monkeypatch):
    # The cache holds only gpt2's files: tiktoken's encodings are made here of its pattern
    # and special tokens with GPT-2's ranks (special ids past them).
    pat_str = tiktoken_constructor(name, monkeypatch)["pat_str"]
    specials = {"<|endoftext|>": 50256, "<|fim_prefix|>": 50300, "<|endofprompt|>": 50310}
    fake = tiktoken.Encoding(name, pat_str=pat_str, mergeable_ranks=tiktoken.get_encoding("gpt2")._mergeable_ranks,
                             special_tokens=specials)
    monkeypatch.setattr(tiktoken, "get_encoding", lambda asked: fake if asked == name else None)
    tok = pybpe.Tokenizer.load(name)
    assert tok.pattern == (pattern or pat_str) and tok.special_tokens == specials and tok.vocab_size == 50311
    text = (data / "cs336/corpus.en").read_text(encoding="utf-8")[:30_000] + "<|fim_prefix|>x\n\n <|endofprompt|>"
    assert tok.encode(text, allowed_special="all") == fake.encode(text, allowed_special="all")


def test_the_o200k_pattern_is_tiktokens_and_splits_as_the_regex_module(data, monkeypatch):
    import regex

    pat_str = tiktoken_constructor("o200k_base", monkeypatch)["pat_str"]
    assert pybpe.Tokenizer.from_vocab_merges({i: bytes([i]) for i in range(256)}, [], [], "O200K").pattern == pat_str
    text = (data / "cs336/corpus.en").read_text(encoding="utf-8")[:50_000] + "Hello WORLD's 12345 ok?!\n\n x/\n"
    assert pybpe.tokenizer.pretokenize(text, "o200k") == regex.findall(pat_str, text)


# -- the command line ------------------------------------------------------------------


def test_encode_with_gpt2_by_name_writes_tiktokens_ids_and_names_it_in_the_sidecar(gpt2, corpus, tmp_path):
    out = tmp_path / "out.bin"
    result = run_pybpe("encode", "-t", "gpt2", corpus, "-o", out)
    assert result.returncode == 0, result.stderr.decode()
    text = corpus.read_text(encoding="utf-8")
    assert np.fromfile(out, dtype="<u2").tolist() == tiktoken.get_encoding("gpt2").encode(text, allowed_special="all")
    sidecar = json.loads((tmp_path / "out.bin.json").read_text())
    assert sidecar["tokenizer"] == {"name": "gpt2", "sha256": hashlib.sha256(gpt2.to_json().encode()).hexdigest()}
    decoded = run_pybpe("decode", "-t", "gpt2", out)
    assert decoded.returncode == 0 and decoded.stderr == b"" and decoded.stdout.decode() == text


def test_info_and_stats_of_gpt2_by_name(corpus):
    info = run_pybpe("info", "gpt2")
    assert info.returncode == 0 and b"vocab size    50,257" in info.stdout and b"50256  <|endoftext|>" in info.stdout
    stats = run_pybpe("stats", "-t", "GPT2", corpus)
    assert stats.returncode == 0 and b"unique tokens" in stats.stdout


def test_the_command_line_says_in_one_line_what_a_name_needs(corpus, tmp_path):
    env_cache = tmp_path / "empty_cache"
    env_cache.mkdir()
    result = subprocess.run([sys.executable, "-m", "pybpe", "encode", "-t", "cl100k_base", str(corpus), "-o",
                             str(tmp_path / "out.bin")], capture_output=True, timeout=300,
                            env={**os.environ, "TIKTOKEN_CACHE_DIR": str(env_cache)})
    assert_one_line_error(result, "cl100k_base: tiktoken's files for it are not in", "set TIKTOKEN_CACHE_DIR")
    assert_one_line_error(run_pybpe("info", "gpt3"), UNKNOWN, "cl100k_base, o200k_base")
    assert not list(tmp_path.glob("out.bin*"))
