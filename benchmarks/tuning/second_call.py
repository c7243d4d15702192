#!/usr/bin/env python3
"""First and second encoding call of one text in one process, for pybpe and gigatoken (GPT-2).

A first call meets every pre-token for the first time; a second one finds them in whatever
cache the encoder keeps. Each peer runs in a fresh process (one thread, warmed up on a small
text first, as in encode.py), and prints the seconds of three calls on the same text.

    python3 benchmarks/tuning/second_call.py [CORPUS ...]     # default: enwiki and alice

With PERF_CTL and PERF_ACK set (the fifos of `perf record -D -1 --control fifo:CTL,ACK`), a
worker enables perf around its first call only, so that a profile shows that call alone:

    mkfifo /tmp/ctl /tmp/ack
    PERF_CTL=/tmp/ctl PERF_ACK=/tmp/ack perf record -D -1 --control fifo:/tmp/ctl,/tmp/ack -e cpu-clock \\
        python3 benchmarks/tuning/second_call.py --worker pybpe CORPUS
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

PEERS = ["pybpe", "gigatoken"]
SPECIAL = "<|endoftext|>"
MARK = "@@SECONDS "


def encoder(peer, tiktoken_file):
    import pybpe
    from pybpe.data import data_file

    gpt2 = pybpe.Tokenizer.from_gpt2(data_file("cs336/gpt2_vocab.json"), data_file("cs336/gpt2_merges.txt"))
    if peer == "pybpe":
        return lambda text: gpt2.encode_to_numpy(text, allowed_special="all", threads=1)
    import gigatoken

    giga = gigatoken.Tokenizer.from_tiktoken(tiktoken_file, pretokenizer="gpt2", special_tokens={SPECIAL: 50256})
    return giga.encode


class PerfControl:
    """Enables perf around a block when the worker runs under `perf record --control`."""

    def __init__(self):
        ctl, ack = os.environ.get("PERF_CTL"), os.environ.get("PERF_ACK")
        self.files = (open(ctl, "w"), open(ack)) if ctl and ack else None

    def send(self, command):
        if self.files:
            self.files[0].write(command + "\n")
            self.files[0].flush()
            self.files[1].readline()


def worker(peer, corpus, tiktoken_file):
    encode = encoder(peer, tiktoken_file)
    encode("A small text to warm up with, as encode.py does.")
    text = open(corpus, encoding="utf-8").read()
    perf = PerfControl()
    profiled = int(os.environ.get("PERF_CALL", "1")) - 1
    seconds = []
    for call in range(3):
        if call == profiled:
            perf.send("enable")
        started = time.perf_counter()
        encode(text)
        seconds.append(time.perf_counter() - started)
        if call == profiled:
            perf.send("disable")
    print(MARK + " ".join(f"{s:.4f}" for s in seconds))


def main():
    from pybpe.data import data_dir

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("corpora", nargs="*", help="files in corpora/ (default: enwiki_extract.txt alice_multilingual_40lang.txt)")
    p.add_argument("--worker", choices=PEERS, help="run one peer on one corpus in this process")
    args = p.parse_args()
    names = args.corpora or ["enwiki_extract.txt", "alice_multilingual_40lang.txt"]
    with tempfile.TemporaryDirectory(prefix="pybpe-second-") as tmp:
        import pybpe
        from pybpe.data import data_file

        tiktoken_file = os.path.join(tmp, "gpt2.tiktoken")
        pybpe.Tokenizer.from_gpt2(data_file("cs336/gpt2_vocab.json"),
                                  data_file("cs336/gpt2_merges.txt")).save_tiktoken(tiktoken_file)
        if args.worker:
            corpus = names[0] if os.path.isfile(names[0]) else str(data_dir() / "corpora" / names[0])
            return worker(args.worker, corpus, tiktoken_file)
        print("| corpus | MB | peer | 1st call | 2nd call | 3rd call | MB/s 1st → 2nd |")
        print("|---|---:|---|---:|---:|---:|---:|")
        env = dict(os.environ, RAYON_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        env.pop("PERF_CTL", None)
        for name in names:
            corpus = str(data_dir() / "corpora" / name)
            size = os.path.getsize(corpus) / 1e6
            for peer in PEERS:
                done = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", peer, corpus],
                                      capture_output=True, text=True, env=env)
                line = next((l for l in done.stdout.splitlines() if l.startswith(MARK)), None)
                if line is None:
                    print(f"| {name} | {size:.1f} | {peer} | failed: {done.stderr.strip()[-200:]} | | | |")
                    continue
                s = [float(x) for x in line[len(MARK):].split()]
                print(f"| {name} | {size:.1f} | {peer} | {s[0]:.3f} s | {s[1]:.3f} s | {s[2]:.3f} s | "
                      f"{size / s[0]:.0f} → {size / s[1]:.0f} |", flush=True)


if __name__ == "__main__":
    main()
