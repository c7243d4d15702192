#!/usr/bin/env python3
"""Short texts, one call each: pybpe vs tiktoken and gigatoken with GPT-2's tokenizer.

Where a text is a sentence or a short document, the cost of a call (choosing the special
tokens, finding the thread count, crossing into Rust and back) matters as much as encoding.
Each peer encodes every text of a list one call at a time, in this one process (each peer
warmed up on the list first), with its default arguments (no special token read; one in the
text raises). A list of ids: pybpe's `encode` against tiktoken's `encode`; a numpy array:
pybpe's `encode_to_numpy` against gigatoken's `encode`, which returns one. Prints
microseconds per call, ids checked against tiktoken's, and the ratios.

    python3 benchmarks/short_texts.py [--rounds 5]

Texts: the documents of tinystories_pool_valid.txt (split on <|endoftext|>), its lines, and
those lines cut to their first word. Data: $PYBPE_DATA (default ../shared/data).
"""

import argparse
import os
import sys
import time

from machine import machine_line, versions

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

SPECIAL = "<|endoftext|>"


def peers(tiktoken_file):
    import gigatoken
    import tiktoken

    import pybpe
    from pybpe.data import data_file

    tok = pybpe.Tokenizer.from_gpt2(data_file("cs336/gpt2_vocab.json"), data_file("cs336/gpt2_merges.txt"))
    tok.save_tiktoken(tiktoken_file)
    giga = gigatoken.Tokenizer.from_tiktoken(tiktoken_file, pretokenizer="gpt2", special_tokens={SPECIAL: 50256})
    return {"pybpe encode": tok.encode, "tiktoken encode": tiktoken.get_encoding("gpt2").encode,
            "pybpe encode_to_numpy": tok.encode_to_numpy, "gigatoken encode": giga.encode}


def per_call(encode, texts, rounds):
    """Microseconds per call, best of `rounds` passes over `texts`, and the ids of one pass."""
    ids = [list(encode(t)) for t in texts]
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for t in texts:
            encode(t)
        best = min(best, time.perf_counter() - started)
    return best / len(texts) * 1e6, ids


def main():
    import tempfile

    from pybpe.data import data_file

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="passes over each list; the fastest is kept")
    args = p.parse_args()
    text = data_file("corpora/tinystories_pool_valid.txt").read_text(encoding="utf-8")
    documents = [d.strip() for d in text.split(SPECIAL) if d.strip()]
    lines = [line for line in text.splitlines() if line.strip() and SPECIAL not in line]
    words = [line.split()[0] for line in lines]
    lists = [("documents", documents), ("lines", lines), ("first words", words)]
    with tempfile.TemporaryDirectory(prefix="pybpe-short-") as tmp:
        encoders = peers(os.path.join(tmp, "gpt2.tiktoken"))
        print(f"- machine: {machine_line()}")
        print(f"- versions: {versions(['pybpe', 'tiktoken', 'gigatoken'])}")
        print(f"- command: `python3 benchmarks/short_texts.py --rounds {args.rounds}`, 1 thread per call (each peer's default)")
        print()
        names = list(encoders)
        print("| texts | count | mean bytes | " + " | ".join(f"{n} µs/call" for n in names)
              + " | ids = tiktoken | pybpe × faster (lists: vs tiktoken; arrays: vs gigatoken) |")
        print("|---|---:|---:|" + "---:|" * len(names) + ":---:|---:|")
        for name, texts in lists:
            timed = {peer: per_call(encode, texts, args.rounds) for peer, encode in encoders.items()}
            reference = timed["tiktoken encode"][1]
            same = all(timed[peer][1] == reference for peer in encoders)
            us = {peer: timed[peer][0] for peer in encoders}
            mean = sum(len(t.encode()) for t in texts) / len(texts)
            lists_ratio = us["tiktoken encode"] / us["pybpe encode"]
            arrays_ratio = us["gigatoken encode"] / us["pybpe encode_to_numpy"]
            print(f"| {name} | {len(texts):,} | {mean:.0f} | " + " | ".join(f"{us[n]:.2f}" for n in names)
                  + f" | {'✓' if same else '✗'} | {lists_ratio:.2f}× / {arrays_ratio:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
