"""Degenerate input: one pre-token of 100 MB, encoded by `pybpe encode` with GPT-2.

    python benchmarks/degenerate.py [--mb 100] [--cases a,letters,unicode] [--dtype uint16|uint32]

Each case is a file of one pre-token (no whitespace, no punctuation): `a` is one letter
repeated, `letters` random ASCII letters (a-z, A-Z, seeded), `unicode` random letters of
two to four bytes of UTF-8 (accented Latin, Greek, Cyrillic, CJK; seeded). Each is encoded
by `python -m pybpe encode -t gpt2.json FILE -o out.bin` in a subprocess of its own, whose
wall time, CPU time and peak RSS (from /usr/bin/time) are reported; RSS growth per input byte is
the peak past that of the same command on a 1 KB file. The ids are checked: they decode to
the input, and the first megabyte encoded by tiktoken in this process gives the same ids
(but for the last 64, where that shorter text ends) as the file's, and so does pybpe on it.
"""

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from machine import machine_line  # noqa: E402

import pybpe  # noqa: E402
from pybpe.data import data_dir, data_file  # noqa: E402

CASES = ("a", "letters", "unicode")
TIME = "/usr/bin/time"
UNICODE_LETTERS = (
    [chr(c) for c in range(0xC0, 0x250) if chr(c).isalpha()]
    + [chr(c) for c in range(0x3B1, 0x3CA)]
    + [chr(c) for c in range(0x430, 0x450)]
    + [chr(c) for c in range(0x4E00, 0x4E00 + 2000)]
)


def write_case(name: str, size: int, path: str) -> None:
    """About `size` bytes of the case, written a megabyte at a time."""
    rng = random.Random(20251205)
    block = 1 << 20
    with open(path, "w", encoding="utf-8") as f:
        written = 0
        while written < size:
            n = min(block, size - written)
            if name == "a":
                part = "a" * n
            elif name == "letters":
                part = "".join(rng.choices("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", k=n))
            else:
                part = "".join(rng.choices(UNICODE_LETTERS, k=n // 2))
            f.write(part)
            written += len(part.encode())


def run_encode(tokenizer: str, path: str, out: str, tmp: str, dtype: str) -> dict:
    """`pybpe encode` of one file in a subprocess: wall and CPU seconds, peak RSS in bytes.

    Measured by /usr/bin/time: a process forked from this one would count this one's
    memory as its own peak (Linux keeps the high-water mark across exec).
    """
    command = [sys.executable, "-m", "pybpe", "encode", "-t", tokenizer, path, "-o", out, "--dtype", dtype]
    report = os.path.join(tmp, "time.txt")
    started = time.perf_counter()
    done = subprocess.run([TIME, "-o", report, "-f", "%U %S %M", *command], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.decode(errors='replace').strip()}")
    with open(report) as f:
        user, system, rss_kb = f.read().split()[-3:]
    return {"wall": wall, "cpu": float(user) + float(system), "rss": int(rss_kb) * 1024}


def check_ids(tok, reference, path: str, out: str, dtype: str) -> str:
    """'ok', or what disagrees."""
    ids = np.fromfile(out, dtype=dtype)
    with open(path, "rb") as f:
        data = f.read()
    if tok.decode_bytes(ids.tolist()) != data:
        return "ids do not decode to the input"
    prefix = data[: 1 << 20].decode("utf-8", errors="ignore")
    expected = reference.encode_ordinary(prefix)
    if tok.encode_ordinary(prefix) != expected:
        return "pybpe's ids of the first MB differ from tiktoken's"
    keep = len(expected) - 64
    if ids[:keep].tolist() != expected[:keep]:
        return "the file's first ids differ from tiktoken's of the first MB"
    return "ok"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=100, help="size of each case in MB (default 100)")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--dtype", choices=["uint16", "uint32"], default="uint16", help="ids written as (default uint16)")
    parser.add_argument("--no-check", action="store_true", help="skip the check of the ids")
    args = parser.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    if unknown := [c for c in cases if c not in CASES]:
        sys.exit(f"unknown case(s): {', '.join(unknown)}")
    size = int(args.mb * 1e6)
    if not os.path.exists(TIME):
        sys.exit(f"{TIME} is needed to measure the peak memory of each run (apt-get install time)")
    tok = pybpe.Tokenizer.from_gpt2(data_file("cs336/gpt2_vocab.json"), data_file("cs336/gpt2_merges.txt"), ["<|endoftext|>"])
    reference = None
    if not args.no_check:
        import tiktoken

        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(data_dir() / "tiktoken_cache"))
        reference = tiktoken.get_encoding("gpt2")
    print(machine_line())
    print(f"pybpe encode -t gpt2.json FILE -o out.bin --dtype {args.dtype}, one subprocess per case, {args.mb:g} MB per case")
    with tempfile.TemporaryDirectory() as tmp:
        gpt2 = os.path.join(tmp, "gpt2.json")
        tok.save(gpt2)
        small = os.path.join(tmp, "small.txt")
        with open(small, "w") as f:
            f.write("hello world " * 85)
        base = run_encode(gpt2, small, os.path.join(tmp, "small.bin"), tmp, args.dtype)
        print(f"baseline (1 KB file): {base['wall']:.2f} s wall, peak RSS {base['rss'] / 1e6:.0f} MB")
        header = f"{'case':8} {'MB':>6} {'tokens':>11} {'wall s':>7} {'MB/s':>6} {'CPU s':>6} {'peak RSS MB':>11} {'growth B/B':>10}  ids"
        rows = []
        for name in cases:
            path, out = os.path.join(tmp, f"{name}.txt"), os.path.join(tmp, f"{name}.bin")
            write_case(name, size, path)
            mb = os.path.getsize(path) / 1e6
            run = run_encode(gpt2, path, out, tmp, args.dtype)
            tokens = os.path.getsize(out) // np.dtype(args.dtype).itemsize
            growth = (run["rss"] - base["rss"]) / (mb * 1e6)
            verdict = "not checked" if reference is None else check_ids(tok, reference, path, out, args.dtype)
            rows.append(f"{name:8} {mb:6.1f} {tokens:11,} {run['wall']:7.2f} {mb / run['wall']:6.1f} {run['cpu']:6.2f} "
                        f"{run['rss'] / 1e6:11.0f} {growth:10.2f}  {verdict}")
            print(rows[-1] if len(rows) > 1 else header + "\n" + rows[-1], flush=True)
            os.remove(path)
            os.remove(out)


if __name__ == "__main__":
    main()
