#!/usr/bin/env python3
"""Preparing a data set: `python -m training prepare` against a nanoGPT-style prepare.

The corpus is TinyStories-format text (documents separated by `<|endoftext|>` lines): the
shared tinystories_pool_train.txt + tinystories_pool_valid.txt repeated until the file holds
at least --mb MB, written to a temporary folder. Both peers turn it into train/val token files
with the GPT-2 encoding and an end-of-text id after each document:

  pybpe    `python -m training prepare text --from-files CORPUS --tokenizer gpt2 --out DIR`
           (held-out validation: 0.005 of the documents)
  nanoGPT  what nanoGPT's data/openwebtext/prepare.py does: a `datasets.Dataset` of the
           documents, train_test_split(test_size=0.005, seed=2357), `map` with
           tiktoken's `encode_ordinary` + EOT on num_proc = cores processes, then the ids
           written to a uint16 np.memmap per split in 1024 batches (fewer for a split of fewer documents)

Each peer runs in a fresh process and is timed from process start to exit (the interpreter,
imports, reading, splitting, encoding, writing). Peak memory is the largest total resident
set of the process and all its descendants, sampled every 20 ms with psutil. The total token
counts of the two peers (train + val) must agree: the same documents, each encoded
with GPT-2 and followed by the end-of-text id.

    python3 benchmarks/prepare.py             # 200 MB
    python3 benchmarks/prepare.py --mb 20     # a quick run
    python3 benchmarks/prepare.py --scaling 25 100 400   # pybpe only: time and peak memory by corpus size
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

NANOGPT = r'''
import os, sys, numpy as np, tiktoken
from datasets import Dataset

corpus, out = sys.argv[1], sys.argv[2]
num_proc = os.cpu_count()
enc = tiktoken.get_encoding("gpt2")
with open(corpus, encoding="utf-8") as f:
    docs = [d.strip() for d in f.read().split("<|endoftext|>")]
dataset = Dataset.from_dict({"text": [d for d in docs if d]})
del docs
split_dataset = dataset.train_test_split(test_size=0.005, seed=2357, shuffle=True)
split_dataset["val"] = split_dataset.pop("test")

def process(example):
    ids = enc.encode_ordinary(example["text"])
    ids.append(enc.eot_token)
    return {"ids": ids, "len": len(ids)}

tokenized = split_dataset.map(process, remove_columns=["text"], desc="tokenizing the splits", num_proc=num_proc)
total = 0
for split, dset in tokenized.items():
    arr_len = np.sum(dset["len"], dtype=np.uint64)
    arr = np.memmap(os.path.join(out, f"{split}.bin"), dtype=np.uint16, mode="w+", shape=(arr_len,))
    total_batches = min(1024, len(dset))
    idx = 0
    for batch_idx in range(total_batches):
        batch = dset.shard(num_shards=total_batches, index=batch_idx, contiguous=True).with_format("numpy")
        arr_batch = np.concatenate(batch["ids"])
        arr[idx : idx + len(arr_batch)] = arr_batch
        idx += len(arr_batch)
    arr.flush()
    total += int(arr_len)
print(total)
'''


def build_corpus(path: Path, mb: int) -> int:
    from pybpe.data import data_file

    parts = [data_file("corpora/tinystories_pool_train.txt").read_bytes(),
             data_file("corpora/tinystories_pool_valid.txt").read_bytes()]
    unit = b"".join(parts)
    with open(path, "wb") as f:
        written = 0
        while written < mb * 1_000_000:
            f.write(unit)
            written += len(unit)
    return written


def run_measured(cmd: list[str], env: dict) -> dict:
    """Runs `cmd`; wall seconds and the peak total RSS of its process tree."""
    import psutil

    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
            rss = 0
            for p in procs:
                try:
                    rss += p.memory_info().rss
                except psutil.Error:
                    pass
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.02)
    out, err = proc.communicate()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed ({proc.returncode}):\n{err[-2000:]}")
    return {"seconds": seconds, "peak_mib": peak / 2**20, "stdout": out}


def main() -> None:
    from machine import machine_line, versions

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=200, help="corpus size in MB (default 200)")
    parser.add_argument("--scaling", type=int, nargs="+", metavar="MB",
                        help="instead: pybpe alone on corpora of these sizes (peak memory against corpus size)")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OPENBLAS_NUM_THREADS": "1",
           "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    env.setdefault("TIKTOKEN_CACHE_DIR", str(Path(env.get("PYBPE_DATA", REPO.parent / "shared" / "data")) / "tiktoken_cache"))
    if args.scaling:
        return scaling(args.scaling, env)
    with tempfile.TemporaryDirectory(prefix="prepare_bench.") as tmp:
        tmp = Path(tmp)
        corpus = tmp / "tinystories_repeated.txt"
        size = build_corpus(corpus, args.mb)
        ours_cmd = [sys.executable, "-m", "training", "prepare", "text", "--from-files", str(corpus),
                    "--tokenizer", "gpt2", "--out", str(tmp / "pybpe")]
        nano_dir = tmp / "nanogpt"
        nano_dir.mkdir()
        nano_script = tmp / "nanogpt_prepare.py"
        nano_script.write_text(NANOGPT)
        env_nano = {**env, "HF_DATASETS_CACHE": str(tmp / "hf_cache")}
        nano = run_measured([sys.executable, str(nano_script), str(corpus), str(nano_dir)], env_nano)
        ours = run_measured(ours_cmd, env)
        report = json.loads((tmp / "pybpe" / "dataset.json").read_text())
        ours_tokens = report["splits"]["train"]["tokens"] + report["splits"]["val"]["tokens"]
        nano_tokens = int(nano["stdout"].strip().splitlines()[-1])

    print("### Preparing a data set: `benchmarks/prepare.py`, " + datetime.date.today().isoformat())
    print()
    print(f"- command: `python3 benchmarks/prepare.py --mb {args.mb}`")
    print(f"- machine: {machine_line()} (shared with other jobs while it ran)")
    print(f"- versions: {versions(['datasets', 'tiktoken', 'numpy'])}")
    print(f"- corpus: tinystories_pool_train.txt + tinystories_pool_valid.txt repeated to {size / 1e6:.1f} MB "
          f"(`<|endoftext|>`-separated), GPT-2 encoding, {os.cpu_count()} cores for each peer")
    print("- timed: process start to exit; peak = largest total RSS of the process and its children (20 ms samples)")
    print()
    print("| peer | wall s | MB/s | peak RSS MiB | tokens (train + val) |")
    print("|---|---:|---:|---:|---:|")
    for name, r, tokens in (("pybpe `python -m training prepare`", ours, ours_tokens),
                            (f"nanoGPT-style (datasets map, num_proc={os.cpu_count()}, tiktoken)", nano, nano_tokens)):
        print(f"| {name} | {r['seconds']:.2f} | {size / 1e6 / r['seconds']:.1f} | {r['peak_mib']:.0f} | {tokens:,} |")
    print()
    ratio = nano["seconds"] / ours["seconds"]
    print(f"- **speed: nanoGPT-style / pybpe = {ratio:.2f}x (target >= 5x: {'MET' if ratio >= 5 else 'NOT MET'})**")
    print(f"- peak memory: pybpe {ours['peak_mib']:.0f} MiB, nanoGPT-style {nano['peak_mib']:.0f} MiB")
    print(f"- same token count: {'yes' if ours_tokens == nano_tokens else 'NO'}")


def scaling(sizes: list[int], env: dict) -> None:
    from machine import machine_line

    print(f"### `python -m training prepare` by corpus size, {datetime.date.today().isoformat()}")
    print()
    print(f"- command: `python3 benchmarks/prepare.py --scaling {' '.join(map(str, sizes))}`")
    print(f"- machine: {machine_line()} (shared with other jobs while it ran)")
    print("- `prepare text --from-files CORPUS --tokenizer gpt2`, all cores; peak = largest total RSS (20 ms samples)")
    print()
    print("| corpus MB | wall s | MB/s | peak RSS MiB | tokens |")
    print("|---:|---:|---:|---:|---:|")
    for mb in sizes:
        with tempfile.TemporaryDirectory(prefix="prepare_bench.") as tmp:
            tmp = Path(tmp)
            corpus = tmp / "corpus.txt"
            size = build_corpus(corpus, mb)
            r = run_measured([sys.executable, "-m", "training", "prepare", "text", "--from-files", str(corpus),
                              "--tokenizer", "gpt2", "--out", str(tmp / "out")], env)
            report = json.loads((tmp / "out" / "dataset.json").read_text())
            tokens = report["splits"]["train"]["tokens"] + report["splits"]["val"]["tokens"]
        print(f"| {size / 1e6:.0f} | {r['seconds']:.2f} | {size / 1e6 / r['seconds']:.1f} | {r['peak_mib']:.0f} | {tokens:,} |")


if __name__ == "__main__":
    main()
