#!/usr/bin/env python3
"""What a cold `encode_to_numpy` call costs besides its wall time, and why two threads do
more work than one: the diagnostics behind the encoder notes in docs/design.md.

    python3 benchmarks/tuning/encode_costs.py faults [CORPUS] [--threads N]
        one cold call (GPT-2, warmed up on small texts first, as encode.py's workers are):
        wall ms, minor page faults, user and system CPU seconds of the call alone
    python3 benchmarks/tuning/encode_costs.py overlap [CORPUS] [--threads N]
        distinct pre-tokens of the corpus, and summed over N threads that take its 2 MiB
        chunks in turn: the ratio is how much more first-time work (vocabulary lookups and
        merges) N threads would do if each had a cache of its own, as they did before the
        encoder's cache was shared (--contiguous: each thread takes a contiguous 1/N of the
        chunks instead)

Run `faults` with PYTHONPATH=DIR to measure another copy of the package (see
alternate_python.sh). CORPUS defaults to enwiki_extract.txt in $PYBPE_DATA/corpora.
"""

import argparse
import os
import resource
import sys
import time

sys.path.append(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

WARMUP_FILES = ["cs336/tinystories_sample.txt", "cs336/german.txt", "cs336/address.txt"]
CHUNK_CHARS = 2 << 20


def faults(corpus, threads):
    import pybpe
    from pybpe.data import data_file

    tok = pybpe.Tokenizer.from_gpt2(data_file("cs336/gpt2_vocab.json"), data_file("cs336/gpt2_merges.txt"))
    for name in WARMUP_FILES:
        tok.encode_to_numpy(data_file(name).read_text(encoding="utf-8"), allowed_special="all", threads=1)
    with open(corpus, encoding="utf-8") as f:
        text = f.read()
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    tok.encode_to_numpy(text, allowed_special="all", threads=threads)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(f"{os.path.basename(corpus)}, {threads} thread(s): {seconds * 1000:.1f} ms wall, "
          f"{after.ru_minflt - before.ru_minflt} minor page faults, "
          f"user {after.ru_utime - before.ru_utime:.3f} s, system {after.ru_stime - before.ru_stime:.3f} s")


def overlap(corpus, threads, contiguous):
    import regex

    import pybpe
    from pybpe.data import data_file

    tok = pybpe.Tokenizer.from_gpt2(data_file("cs336/gpt2_vocab.json"), data_file("cs336/gpt2_merges.txt"))
    pattern = regex.compile(tok.pattern_regex)
    with open(corpus, encoding="utf-8") as f:
        text = f.read()
    starts = range(0, len(text), CHUNK_CHARS)
    seen = [set() for _ in range(threads)]
    for k, start in enumerate(starts):
        thread = k * threads // len(starts) if contiguous else k % threads
        seen[thread].update(pattern.findall(text[start:start + CHUNK_CHARS]))
    distinct = len(set().union(*seen))
    summed = sum(len(s) for s in seen)
    print(f"{os.path.basename(corpus)}: {distinct:,} distinct pre-tokens; {summed:,} summed over {threads} threads "
          f"taking 2 MiB chunks {'in contiguous runs' if contiguous else 'in turn'} ({summed / distinct:.2f}x the first-time work)")


def main():
    from pybpe.data import data_file

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["faults", "overlap"])
    parser.add_argument("corpus", nargs="?", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--contiguous", action="store_true")
    args = parser.parse_args()
    corpus = args.corpus or str(data_file("corpora/enwiki_extract.txt"))
    if args.what == "faults":
        faults(corpus, args.threads)
    else:
        overlap(corpus, args.threads, args.contiguous)


if __name__ == "__main__":
    main()
