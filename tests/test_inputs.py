"""Where text comes from: regular files, pipes, FIFOs and standard input are read alike by
`pybpe encode`, `train`, `stats` and `Tokenizer.encode_file`, and give the same ids; a file
that changes while it is read, or a device, is refused with one line, never a crash, and
leaves no temp file."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from cli_helpers import assert_one_line_error, run_pybpe

SPECIAL = "<|endoftext|>"


@pytest.fixture
def corpus(data, tmp_path):
    """4.8 MB of stories with special tokens: several chunks when streamed."""
    path = tmp_path / "corpus.txt"
    path.write_bytes((data / "corpora/tinystories_pool.txt").read_bytes())
    return path


@pytest.fixture
def big(data, tmp_path):
    """48 MB of text: many chunks more than are read ahead of the encoding."""
    path = tmp_path / "big.txt"
    piece = (data / "corpora/tinystories_pool.txt").read_bytes()
    with open(path, "wb") as f:
        for _ in range(10):
            f.write(piece)
    return path


def ids_of(tok, path):
    return tok.encode(path.read_bytes().decode("utf-8"), allowed_special="all")


def temp_files(folder):
    return [p.name for p in folder.iterdir() if ".tmp" in p.name]


def feed_fifo(path, data):
    """Opens the FIFO `path` for writing on a thread (it waits for its reader) and writes `data`."""
    def write():
        with open(path, "wb") as f:
            f.write(data)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


# -- pipes, FIFOs and standard input are inputs ----------------------------------------


def test_encode_of_standard_input_gives_the_ids_of_the_file(tok, tokenizer_file, corpus, tmp_path):
    out = tmp_path / "out.bin"
    result = run_pybpe("encode", "-t", tokenizer_file, "-", "-o", out, stdin=corpus.read_bytes())
    assert result.returncode == 0, result.stderr.decode()
    assert np.fromfile(out, dtype="<u2").tolist() == ids_of(tok, corpus)
    sidecar = json.loads((tmp_path / "out.bin.json").read_text())
    assert sidecar["sources"] == [{"path": "<stdin>", "bytes": corpus.stat().st_size}]
    assert f"{corpus.stat().st_size / 1e6:.1f} MB" in result.stdout.decode()


def test_encode_of_dev_stdin_and_a_process_substitution_gives_the_ids_of_the_file(tok, tokenizer_file, corpus,
                                                                                  tmp_path):
    out = tmp_path / "out.bin"
    from_dev_stdin = run_pybpe("encode", "-t", tokenizer_file, "/dev/stdin", "-o", out, stdin=corpus.read_bytes())
    assert from_dev_stdin.returncode == 0, from_dev_stdin.stderr.decode()
    assert np.fromfile(out, dtype="<u2").tolist() == ids_of(tok, corpus)
    out.unlink()
    command = f'"{sys.executable}" -m pybpe encode -t "{tokenizer_file}" <(cat "{corpus}") "{corpus}" -o "{out}"'
    substituted = subprocess.run(["bash", "-c", command], capture_output=True, timeout=300)
    assert substituted.returncode == 0, substituted.stderr.decode()
    assert np.fromfile(out, dtype="<u2").tolist() == ids_of(tok, corpus) * 2


def test_encode_file_of_a_fifo_reports_progress_without_a_total(tok, corpus, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = feed_fifo(fifo, corpus.read_bytes())
    seen = []
    sidecar = tok.encode_file([fifo], tmp_path / "out.bin", progress=lambda done, total: seen.append((done, total)))
    writer.join()
    assert np.fromfile(tmp_path / "out.bin", dtype="<u2").tolist() == ids_of(tok, corpus)
    assert sidecar["bytes_read"] == corpus.stat().st_size
    assert seen and all(total is None for _, total in seen)
    assert seen[-1][0] == corpus.stat().st_size


def test_train_of_a_fifo_and_of_standard_input_learns_what_the_file_teaches(corpus, tmp_path):
    from_file, from_fifo, from_stdin = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    assert run_pybpe("train", "--vocab", 400, "--special", SPECIAL, "-o", from_file, corpus).returncode == 0
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = feed_fifo(fifo, corpus.read_bytes())
    result = run_pybpe("train", "--vocab", 400, "--special", SPECIAL, "-o", from_fifo, fifo)
    writer.join()
    assert result.returncode == 0, result.stderr.decode()
    result = run_pybpe("train", "--vocab", 400, "--special", SPECIAL, "-o", from_stdin, "-", stdin=corpus.read_bytes())
    assert result.returncode == 0, result.stderr.decode()
    merges = json.loads(from_file.read_text())["merges"]
    assert json.loads(from_fifo.read_text())["merges"] == merges
    assert json.loads(from_stdin.read_text())["merges"] == merges


def test_stats_of_standard_input_counts_the_bytes_read(tok, tokenizer_file, corpus):
    result = run_pybpe("stats", "-t", tokenizer_file, "-", stdin=corpus.read_bytes())
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    ids = ids_of(tok, corpus)
    assert f"bytes         {corpus.stat().st_size:,}" in out, out
    assert f"tokens        {len(ids):,}" in out, out


@pytest.mark.parametrize("command", ["encode", "train", "stats"])
def test_a_device_is_refused_in_one_line(tokenizer_file, tmp_path, command):
    args = {"encode": ["encode", "-t", tokenizer_file, "/dev/zero", "-o", tmp_path / "out.bin"],
            "train": ["train", "--vocab", 300, "/dev/zero", "-o", tmp_path / "t.json"],
            "stats": ["stats", "-t", tokenizer_file, "/dev/zero"]}[command]
    assert_one_line_error(run_pybpe(*args), "/dev/zero: is a device")
    assert not list(tmp_path.iterdir())


def test_a_device_on_standard_input_is_refused_too(tokenizer_file, tmp_path):
    with open("/dev/zero", "rb") as zero:
        result = subprocess.run([sys.executable, "-m", "pybpe", "encode", "-t", str(tokenizer_file), "-", "-o",
                                 str(tmp_path / "out.bin")], stdin=zero, capture_output=True, timeout=60)
    assert_one_line_error(result, "<stdin>: is a device")
    assert not list(tmp_path.iterdir())


# -- a file that changes while it is read ----------------------------------------------

CHANGE_WHILE_READ = textwrap.dedent("""
    import os, sys
    import pybpe, pybpe.cli, pybpe.progress

    how, path, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    changed = False

    def change_once(*_):
        global changed
        if not changed:
            changed = True
            if how == "shrink":
                os.truncate(path, 1000)
            else:
                with open(path, "ab") as f:
                    f.write(b"more text")

    if args[0] == "api":
        tok = pybpe.Tokenizer.load(args[1])
        try:
            tok.encode_file(path, args[2], progress=change_once)
        except pybpe.FileError as e:
            print(f"FileError: {e}", file=sys.stderr)
            sys.exit(1)
        sys.exit(0)
    # The command line, with its progress bar drawn off a terminal too, so that it is called.
    update = pybpe.progress.PhaseProgress.update
    def update_and_change(self, phase, done, total):
        change_once()
        update(self, phase, done, total)
    pybpe.progress.PhaseProgress.update = update_and_change
    sys.exit(pybpe.cli.main(args))
""")


@pytest.mark.parametrize("how", ["shrink", "grow"])
@pytest.mark.parametrize("job", ["encode", "train", "api"])
def test_a_file_that_changes_while_it_is_read_is_an_error_naming_it(tokenizer_file, big, tmp_path, job, how):
    out = tmp_path / "out.bin"
    args = {"encode": ["encode", "-t", tokenizer_file, big, "-o", out],
            "train": ["train", "--vocab", 300, big, "-o", out],
            "api": ["api", tokenizer_file, out]}[job]
    result = subprocess.run([sys.executable, "-c", CHANGE_WHILE_READ, how, big, *map(str, args)],
                            capture_output=True, timeout=300)
    assert_one_line_error(result, str(big), "changed while it was read")
    assert not out.exists() and not temp_files(tmp_path)


def test_encode_waiting_for_a_fifo_writer_stops_on_ctrl_c(tokenizer_file, tmp_path):
    fifo, out = tmp_path / "fifo", tmp_path / "out.bin"
    os.mkfifo(fifo)
    encoding = subprocess.Popen([sys.executable, "-m", "pybpe", "encode", "-t", str(tokenizer_file), str(fifo), "-o",
                                 str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(6000):
            if temp_files(tmp_path):
                break
            time.sleep(0.01)
        assert temp_files(tmp_path), "encode did not start"
        encoding.send_signal(signal.SIGINT)
        assert encoding.wait(timeout=60) == 130
    finally:
        encoding.kill()
    assert encoding.stderr.read().decode().strip() == "pybpe: interrupted"
    assert not temp_files(tmp_path)
