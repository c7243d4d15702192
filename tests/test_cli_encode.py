"""`pybpe encode`, `decode`, `info` and `stats` from the command line, and every bad-input case:
one line on stderr, exit status 1, no token file left behind."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from cli_helpers import assert_one_line_error, run_pybpe

import pybpe

SPECIAL = "<|endoftext|>"


@pytest.fixture(scope="module")
def big_tokenizer_file(tmp_path_factory):
    """65,793 tokens (bytes, all byte pairs, a special): more ids than uint16 holds."""
    vocab = {i: bytes([i]) for i in range(256)}
    vocab.update({256 + i: bytes([i >> 8, i & 0xFF]) for i in range(1 << 16)})
    merges = [(bytes([i >> 8]), bytes([i & 0xFF])) for i in range(1 << 16)]
    path = tmp_path_factory.mktemp("big") / "big.json"
    pybpe.Tokenizer.from_vocab_merges(vocab, merges, special_tokens=[SPECIAL]).save(path)
    return path


@pytest.fixture
def stories(data, tmp_path):
    path = tmp_path / "stories.txt"
    path.write_bytes((data / "cs336/tinystories_sample.txt").read_bytes())
    return path


@pytest.fixture
def german(data, tmp_path):
    path = tmp_path / "german.txt"
    path.write_bytes((data / "cs336/german.txt").read_bytes())
    return path


def no_token_files(folder):
    return not [p.name for p in folder.iterdir() if p.suffix in (".bin", ".json", ".tmp") and "tok" not in p.name
                or p.name.startswith(".")]


# -- encode ----------------------------------------------------------------------------


def test_encode_writes_the_ids_and_the_sidecar_and_prints_a_summary(tok, tokenizer_file, stories, tmp_path):
    out = tmp_path / "out.bin"
    result = run_pybpe("encode", "-t", tokenizer_file, stories, "-o", out)
    assert result.returncode == 0, result.stderr.decode()
    text = stories.read_bytes().decode("utf-8")
    expected = tok.encode(text, allowed_special="all")
    assert np.fromfile(out, dtype="<u2").tolist() == expected
    sidecar = json.loads((tmp_path / "out.bin.json").read_text())
    assert sidecar["format"] == "pybpe-tokens" and sidecar["version"] == 1
    assert sidecar["dtype"] == "uint16"
    assert sidecar["num_tokens"] == len(expected)
    assert sidecar["vocab_size"] == 1000
    assert sidecar["special_tokens"] == {SPECIAL: 999}
    assert sidecar["tokenizer"]["sha256"] == hashlib.sha256(tokenizer_file.read_bytes()).hexdigest()
    assert sidecar["sources"][0]["bytes"] == stories.stat().st_size
    summary = result.stdout.decode()
    for fragment in ("tokens", f"{len(expected):,}", "bytes/token", f"{len(text.encode()) / len(expected):.3f}",
                     "MB/s", " s "):
        assert fragment in summary, summary


def test_encode_of_several_files_is_their_ids_one_after_another(tok, tokenizer_file, stories, german, tmp_path):
    out = tmp_path / "out.bin"
    assert run_pybpe("encode", "-t", tokenizer_file, stories, german, "-o", out).returncode == 0
    expected = [*tok.encode(stories.read_bytes().decode("utf-8"), allowed_special="all"),
                *tok.encode(german.read_bytes().decode("utf-8"), allowed_special="all")]
    assert np.fromfile(out, dtype="<u2").tolist() == expected


def test_encode_file_gives_the_same_bytes_for_any_thread_count(tok, data, german, tmp_path):
    # Long enough for many chunks per thread, so that chunks finish out of order and threads
    # wait for the writer; two files, so that the second continues where the first ended.
    corpus = data / "corpora/war_and_peace.txt"
    assert corpus.stat().st_size > 3 << 20
    outputs = []
    for threads in (1, 2, 3):
        out = tmp_path / f"out{threads}.bin"
        sidecar = tok.encode_file([corpus, german], out, threads=threads)
        outputs.append(out.read_bytes())
        assert sidecar["num_tokens"] * 2 == len(outputs[-1])
    assert outputs[0] == outputs[1] == outputs[2]
    texts = [path.read_bytes().decode("utf-8") for path in (corpus, german)]  # \r\n kept
    expected = [i for text in texts for i in tok.encode(text, allowed_special="all", threads=1)]
    assert np.frombuffer(outputs[0], dtype="<u2").tolist() == expected


def test_encode_with_uint32(tok, tokenizer_file, stories, tmp_path):
    out = tmp_path / "out.bin"
    assert run_pybpe("encode", "-t", tokenizer_file, stories, "-o", out, "--dtype", "uint32", "--threads", 1).returncode == 0
    assert json.loads((tmp_path / "out.bin.json").read_text())["dtype"] == "uint32"
    assert np.fromfile(out, dtype="<u4").tolist() == tok.encode(stories.read_bytes().decode("utf-8"), allowed_special="all")


def test_auto_dtype_is_uint32_for_a_vocabulary_beyond_uint16(big_tokenizer_file, german, tmp_path):
    out = tmp_path / "out.bin"
    assert run_pybpe("encode", "-t", big_tokenizer_file, german, "-o", out).returncode == 0
    sidecar = json.loads((tmp_path / "out.bin.json").read_text())
    assert sidecar["dtype"] == "uint32" and out.stat().st_size == 4 * sidecar["num_tokens"]


# -- decode ----------------------------------------------------------------------------


@pytest.fixture
def encoded(tokenizer_file, stories, tmp_path):
    out = tmp_path / "out.bin"
    assert run_pybpe("encode", "-t", tokenizer_file, stories, "-o", out).returncode == 0
    return out


def test_decode_gives_back_the_text(tokenizer_file, stories, encoded):
    result = run_pybpe("decode", "-t", tokenizer_file, encoded)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == stories.read_bytes()


def test_decode_a_range_of_tokens(tok, tokenizer_file, encoded):
    ids = np.fromfile(encoded, dtype="<u2").tolist()
    for spec, part in (("10:20", ids[10:20]), (":5", ids[:5]), ("-7:", ids[-7:]), ("5:5", [])):
        result = run_pybpe("decode", "-t", tokenizer_file, encoded, f"--range={spec}")
        assert result.returncode == 0, result.stderr.decode()
        assert result.stdout == tok.decode_bytes(part)


def test_decode_without_a_sidecar_assumes_uint16_or_takes_the_dtype(tok, tokenizer_file, stories, tmp_path):
    out = tmp_path / "out.bin"
    assert run_pybpe("encode", "-t", tokenizer_file, stories, "-o", out, "--dtype", "uint32").returncode == 0
    (tmp_path / "out.bin.json").unlink()
    assert run_pybpe("decode", "-t", tokenizer_file, out, "--dtype", "uint32").stdout == stories.read_bytes()
    np.fromfile(out, dtype="<u4").astype("<u2").tofile(out)
    assert run_pybpe("decode", "-t", tokenizer_file, out).stdout == stories.read_bytes()


def test_decode_refuses_ids_outside_the_vocabulary(tokenizer_file, tmp_path):
    bad = tmp_path / "bad.bin"
    np.array([1, 2, 3, 1000, 5], dtype="<u2").tofile(bad)
    result = run_pybpe("decode", "-t", tokenizer_file, bad)
    assert_one_line_error(result, "token id 1000 at position 3", "1,000 tokens")
    assert result.stdout == b""


def test_decode_refuses_a_file_of_the_wrong_size(tokenizer_file, tmp_path):
    bad = tmp_path / "odd.bin"
    bad.write_bytes(b"\x01\x00\x02")
    assert_one_line_error(run_pybpe("decode", "-t", tokenizer_file, bad), "3 bytes is not a whole number of uint16")


def test_decode_refuses_a_damaged_sidecar(tokenizer_file, encoded, tmp_path):
    (tmp_path / "out.bin.json").write_text("{")
    assert_one_line_error(run_pybpe("decode", "-t", tokenizer_file, encoded), "out.bin.json", "not a pybpe token file")


def test_decode_refuses_a_dtype_contradicting_the_sidecar(tokenizer_file, encoded):
    assert_one_line_error(run_pybpe("decode", "-t", tokenizer_file, encoded, "--dtype", "uint32"), "contradicts")


@pytest.mark.parametrize("spec", ["10", "a:b", "1:2:3"])
def test_decode_refuses_a_malformed_range(tokenizer_file, encoded, spec):
    assert_one_line_error(run_pybpe("decode", "-t", tokenizer_file, encoded, "--range", spec), "--range")


def test_decode_of_a_missing_file(tokenizer_file, tmp_path):
    assert_one_line_error(run_pybpe("decode", "-t", tokenizer_file, tmp_path / "nope.bin"), "nope.bin", "no such file")


# -- info, stats -----------------------------------------------------------------------


def test_info_describes_the_tokenizer(tok, tokenizer_file):
    result = run_pybpe("info", tokenizer_file)
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    for fragment in ("vocab size    1,000", "merges        743", "pattern       gpt2", f"999  {SPECIAL}",
                     "longest tokens"):
        assert fragment in out, out
    longest = out.split("longest tokens:")[1].strip().splitlines()
    assert len(longest) == 20
    assert [len(tok.vocab[int(line.split()[0])]) for line in longest] == sorted(
        (len(t) for i, t in tok.vocab.items() if i != 999), reverse=True)[:20]


def test_info_counts_unused_ids(tok, tmp_path):
    path = tmp_path / "ranks.tiktoken"
    tok.save_tiktoken(path)
    sparse = pybpe.Tokenizer.from_tiktoken_file(path, {SPECIAL: 1005}, pattern="gpt2")
    sparse.save(tmp_path / "sparse.json")
    result = run_pybpe("info", tmp_path / "sparse.json")
    assert result.returncode == 0, result.stderr.decode()
    assert "vocab size    1,006 (6 ids unused)" in result.stdout.decode()


def test_stats_counts_tokens(tok, tokenizer_file, stories, german):
    result = run_pybpe("stats", "-t", tokenizer_file, stories, german)
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    ids = [*tok.encode(stories.read_bytes().decode("utf-8"), allowed_special="all"),
           *tok.encode(german.read_bytes().decode("utf-8"), allowed_special="all")]
    size = stories.stat().st_size + german.stat().st_size
    for fragment in (f"bytes         {size:,}", f"tokens        {len(ids):,}", f"bytes/token   {size / len(ids):.3f}",
                     f"unique tokens {len(set(ids)):,} of 1,000"):
        assert fragment in out, out
    top = out.split("top tokens:")[1].strip().splitlines()
    assert len(top) == 20
    most_common = max(set(ids), key=ids.count)
    assert top[0].split()[:2] == [str(most_common), f"{ids.count(most_common):,}"]


# -- bad input: one line, exit 1, nothing written --------------------------------------


def test_uint16_with_a_vocabulary_beyond_it(big_tokenizer_file, german, tmp_path):
    result = run_pybpe("encode", "-t", big_tokenizer_file, german, "-o", tmp_path / "out.bin", "--dtype", "uint16")
    assert_one_line_error(result, "uint16", "65,793")
    assert no_token_files(tmp_path)


def test_encode_of_a_missing_input(tokenizer_file, stories, tmp_path):
    result = run_pybpe("encode", "-t", tokenizer_file, stories, tmp_path / "nope.txt", "-o", tmp_path / "out.bin")
    assert_one_line_error(result, "nope.txt", "no such file")
    assert no_token_files(tmp_path)


def test_encode_of_a_directory(tokenizer_file, tmp_path):
    result = run_pybpe("encode", "-t", tokenizer_file, tmp_path, "-o", tmp_path / "out.bin")
    assert_one_line_error(result, "is a directory")
    assert no_token_files(tmp_path)


def test_encode_into_a_missing_directory(tokenizer_file, stories, tmp_path):
    result = run_pybpe("encode", "-t", tokenizer_file, stories, "-o", tmp_path / "no/such/out.bin")
    assert_one_line_error(result, "does not exist")
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("content, complaint", [(b"{ not json", "not valid JSON"),
                                                (b'{"format": "other"}', "not a pybpe tokenizer"),
                                                (b"\xff\xfe\x00", "not UTF-8")])
def test_encode_with_a_damaged_tokenizer(stories, tmp_path, content, complaint):
    bad = tmp_path / "tok.json"
    bad.write_bytes(content)
    result = run_pybpe("encode", "-t", bad, stories, "-o", tmp_path / "out.bin")
    assert_one_line_error(result, "tok.json", complaint)
    assert not (tmp_path / "out.bin").exists() and not (tmp_path / "out.bin.json").exists()


def test_encode_with_a_missing_tokenizer(stories, tmp_path):
    assert_one_line_error(run_pybpe("encode", "-t", tmp_path / "nope.json", stories, "-o", tmp_path / "out.bin"),
                          "nope.json", "no such")


def test_a_failed_encode_leaves_an_existing_output_alone(tokenizer_file, tmp_path):
    out = tmp_path / "out.bin"
    out.write_bytes(b"old")
    assert_one_line_error(run_pybpe("encode", "-t", tokenizer_file, tmp_path / "nope.txt", "-o", out), "nope.txt")
    assert out.read_bytes() == b"old"


def test_encode_refuses_to_overwrite_its_input(tokenizer_file, stories, tmp_path):
    before = stories.read_bytes()
    assert_one_line_error(run_pybpe("encode", "-t", tokenizer_file, stories, "-o", stories), "overwrite")
    assert_one_line_error(run_pybpe("encode", "-t", tokenizer_file, stories, "-o", tokenizer_file), "overwrite")
    text_named_like_the_sidecar = tmp_path / "x.bin.json"
    text_named_like_the_sidecar.write_bytes(before)
    assert_one_line_error(run_pybpe("encode", "-t", tokenizer_file, text_named_like_the_sidecar, "-o",
                                    tmp_path / "x.bin"), "overwrite")
    assert text_named_like_the_sidecar.read_bytes() == before
    assert stories.read_bytes() == before


def test_bad_encode_arguments(tokenizer_file, stories, tmp_path):
    out = tmp_path / "out.bin"
    assert_one_line_error(run_pybpe("encode", "-t", tokenizer_file, stories, "-o", out, "--threads", 0), "--threads")
    assert_one_line_error(run_pybpe("encode", "-t", tokenizer_file, stories, "-o", out, "--dtype", "int8"),
                          "--dtype", code=2)
    assert_one_line_error(run_pybpe("encode", "-t", tokenizer_file, stories), "-o", code=2)
    assert not out.exists()


def test_info_and_stats_of_missing_or_damaged_files(tokenizer_file, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    assert_one_line_error(run_pybpe("info", bad), "bad.json", "not a JSON object")
    assert_one_line_error(run_pybpe("info", tmp_path / "nope.json"), "nope.json")
    assert_one_line_error(run_pybpe("stats", "-t", tokenizer_file, tmp_path / "nope.txt"), "nope.txt", "no such file")


def test_decode_into_a_pipe_that_closes_early_stops_quietly(tokenizer_file, stories, tmp_path):
    many = tmp_path / "many.txt"
    many.write_bytes(stories.read_bytes() * 100)
    out = tmp_path / "many.bin"
    assert run_pybpe("encode", "-t", tokenizer_file, many, "-o", out).returncode == 0
    decoding = subprocess.Popen([sys.executable, "-m", "pybpe", "decode", "-t", str(tokenizer_file), str(out)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert decoding.stdout.read(10) == many.read_bytes()[:10]
    decoding.stdout.close()
    assert decoding.wait(timeout=60) == 0
    assert decoding.stderr.read() == b""


def test_encode_progress_bar_shows_the_rate(capsys):
    from pybpe.progress import EncodingProgress

    with EncodingProgress(enabled=True) as progress:
        for done in range(0, 10_000_001, 2_500_000):
            progress(done, 10_000_000)
    drawn = capsys.readouterr().err
    assert "encode" in drawn and "B/s" in drawn


def test_decode_with_another_tokenizer_than_the_file_was_encoded_with_warns(big_tokenizer_file, encoded):
    result = run_pybpe("decode", "-t", big_tokenizer_file, encoded)
    assert result.returncode == 0
    assert "warning" in result.stderr.decode() and "another tokenizer" in result.stderr.decode()


def test_decode_refuses_a_token_file_whose_size_disagrees_with_its_sidecar(tokenizer_file, encoded):
    num_tokens = json.loads(encoded.with_name("out.bin.json").read_text())["num_tokens"]
    with open(encoded, "r+b") as f:
        f.truncate(2 * (num_tokens - 10))
    result = run_pybpe("decode", "-t", tokenizer_file, encoded)
    assert_one_line_error(result, "out.bin", f"{num_tokens - 10:,} tokens", f"num_tokens {num_tokens:,}")
    assert result.stdout == b""


def test_decode_names_a_range_start_outside_the_file_as_given(tokenizer_file, encoded):
    num_tokens = json.loads(encoded.with_name("out.bin.json").read_text())["num_tokens"]
    for start in (-999999999, num_tokens + 1):
        result = run_pybpe("decode", "-t", tokenizer_file, encoded, f"--range={start}:")
        assert_one_line_error(result, f"position {start:,}", f"{num_tokens:,} tokens")


# -- interrupted, disk full, closed stdout ---------------------------------------------


def encode_from_a_stalled_pipe(tokenizer_file, stories, out):
    """`pybpe encode -` fed several MB and then nothing more, its pipe left open: stopped mid-run
    with a temp file written in part."""
    encoding = subprocess.Popen([sys.executable, "-m", "pybpe", "encode", "-t", str(tokenizer_file), "-", "-o", str(out)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    encoding.stdin.write(stories.read_bytes() * 3000)
    encoding.stdin.flush()
    temp = out.with_name(f".{out.name}.tmp{encoding.pid}")
    for _ in range(6000):
        if temp.exists() and temp.stat().st_size > 0:
            break
        assert encoding.poll() is None, encoding.stderr.read().decode()
        time.sleep(0.01)
    assert temp.stat().st_size > 0
    return encoding


@pytest.mark.parametrize("signal_number, code, message", [(signal.SIGTERM, 143, "terminated"),
                                                          (signal.SIGINT, 130, "interrupted")])
def test_a_signal_stops_encode_and_removes_its_temp_files(tokenizer_file, stories, tmp_path, signal_number, code,
                                                          message):
    out = tmp_path / "out.bin"
    encoding = encode_from_a_stalled_pipe(tokenizer_file, stories, out)
    encoding.send_signal(signal_number)
    assert encoding.wait(timeout=60) == code
    stderr = encoding.stderr.read().decode()
    encoding.stdin.close()
    assert stderr.strip() == f"pybpe: {message}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stories.txt"]


def test_encode_removes_the_temp_files_a_killed_run_left_of_its_output(tokenizer_file, stories, tmp_path):
    out = tmp_path / "out.bin"
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    stale = [tmp_path / f".out.bin.tmp{dead.pid}", tmp_path / f".out.bin.json.tmp{dead.pid}"]
    running = [tmp_path / f".out.bin.tmp{os.getpid()}"]  # a run that is still writing
    other_output = [tmp_path / f".other.bin.tmp{dead.pid}"]
    for path in stale + running + other_output:
        path.write_bytes(b"\0" * 100)
    assert run_pybpe("encode", "-t", tokenizer_file, stories, "-o", out).returncode == 0
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in running + other_output)


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KB tmpfs (tests run as root in CI)."""
    folder = tmp_path / "small_disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_is_reported_naming_the_output(tokenizer_file, stories, tmp_path, small_disk):
    big = tmp_path / "big.txt"
    big.write_bytes(stories.read_bytes() * 100)  # 180 KB of ids
    out = small_disk / "out.bin"
    result = run_pybpe("encode", "-t", tokenizer_file, big, "-o", out)
    assert_one_line_error(result, f"{out}: no space left")
    assert ".tmp" not in result.stderr.decode()
    assert not list(small_disk.iterdir())


def test_a_file_size_limit_is_reported_naming_the_output(tokenizer_file, stories, tmp_path):
    import resource

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))

    big = tmp_path / "big.txt"
    big.write_bytes(stories.read_bytes() * 100)
    out = tmp_path / "out.bin"
    result = subprocess.run([sys.executable, "-m", "pybpe", "encode", "-t", str(tokenizer_file), str(big), "-o",
                             str(out)], capture_output=True, timeout=300, preexec_fn=limit_file_size)
    assert_one_line_error(result, f"{out}: ")
    assert ".tmp" not in result.stderr.decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt", "stories.txt"]


def test_encode_into_a_closed_pipe_after_success_exits_0(tokenizer_file, stories, tmp_path):
    encoding = subprocess.Popen([sys.executable, "-m", "pybpe", "encode", "-t", str(tokenizer_file), str(stories), "-o",
                                 str(tmp_path / "out.bin")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    encoding.stdout.close()
    assert encoding.wait(timeout=300) == 0
    assert encoding.stderr.read() == b""
    assert (tmp_path / "out.bin").stat().st_size > 0
