"""`pybpe demo`: the pipeline on a default corpus that ships with the shared data, offline.

1. train a 10K tokenizer on TinyStories text (CS336's settings);
2. encode the TinyStories train and validation text to train.bin / val.bin (what
   `python -m training train` reads);
3. compare with tiktoken: bytes per token of our tokenizer and of GPT-2's, and encoding
   throughput of pybpe and tiktoken with the same GPT-2 tokenizer on the same text.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import time
from pathlib import Path

from pybpe.data import data_dir, data_file

TRAIN_CORPUS = "corpora/tinystories_pool_train.txt"
VALID_CORPUS = "corpora/tinystories_pool_valid.txt"
SPECIAL = "<|endoftext|>"


def _best_seconds(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def run(args) -> int:
    from pybpe.formatting import print_training_summary
    from pybpe.progress import TrainingProgress
    from pybpe.tokenizer import Tokenizer

    train_text, valid_text = data_file(TRAIN_CORPUS), data_file(VALID_CORPUS)
    out_dir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="pybpe-demo-"))
    out_dir.mkdir(parents=True, exist_ok=True)

    print(f"pybpe demo: 1. train a {args.vocab:,}-token tokenizer on {train_text.name} (TinyStories, CS336 settings)")
    started = time.perf_counter()
    with TrainingProgress() as progress:
        tokenizer = Tokenizer.train(train_text, args.vocab, special_tokens=[SPECIAL], progress=progress)
    seconds = time.perf_counter() - started
    tokenizer_path = out_dir / "tokenizer.json"
    tokenizer.save(tokenizer_path)
    print_training_summary(tokenizer, tokenizer.train_report, seconds, tokenizer_path)

    print(f"\n2. encode the corpus to token files (uint16, documents separated by {SPECIAL})")
    for name, source in (("train.bin", train_text), ("val.bin", valid_text)):
        meta = tokenizer.encode_file(source, out_dir / name)
        print(f"  {name:<9}  {meta['num_tokens']:>9,} tokens from {source.name} "
              f"({meta['bytes_read'] / max(meta['seconds'], 1e-9) / 1e6:.0f} MB/s)")

    print("\n3. compare with tiktoken (GPT-2) on the validation text")
    _compare_with_tiktoken(tokenizer, valid_text.read_text(encoding="utf-8"))

    print()
    print(next_step(out_dir))
    return 0


def next_step(out_dir: Path) -> str:
    """The training command for this machine: the CS336 TinyStories preset on a CUDA GPU, else
    the `cpu` preset (a few minutes on two cores). torch is imported here, at the very end."""
    command = f"python -m training train --preset {{}} --data {out_dir} --out {out_dir / 'run'}"
    if importlib.util.find_spec("torch") is None:
        return (f"next (needs PyTorch: pip install torch): {command.format('cpu')}\n"
                f"      on a CUDA GPU: {command.format('tinystories')}")
    import torch

    if torch.cuda.is_available():
        return f"next: {command.format('tinystories')}"
    return (f"next: {command.format('cpu')}   (no CUDA GPU here: a few minutes on a CPU)\n"
            f"      on a CUDA GPU: {command.format('tinystories')}")


def _compare_with_tiktoken(tokenizer, text: str) -> None:
    from pybpe.tokenizer import Tokenizer

    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(data_dir() / "tiktoken_cache"))
    try:
        import tiktoken

        reference = tiktoken.get_encoding("gpt2")
    except Exception as e:  # tiktoken missing, or its files not cached and no network
        print(f"  (skipped: tiktoken's GPT-2 encoding is not available here: {e})")
        return
    gpt2 = Tokenizer.from_gpt2(data_file("cs336/gpt2_vocab.json"), data_file("cs336/gpt2_merges.txt"), [SPECIAL])
    n_bytes = len(text.encode("utf-8"))
    ours = tokenizer.encode(text, allowed_special="all")
    theirs = reference.encode(text, allowed_special="all")
    print(f"  compression     ours ({tokenizer.vocab_size:,} tokens): {n_bytes / len(ours):.2f} bytes/token   "
          f"GPT-2 (50,257 tokens): {n_bytes / len(theirs):.2f} bytes/token")
    same = gpt2.encode(text, allowed_special="all") == theirs
    pybpe_s = _best_seconds(lambda: gpt2.encode_to_numpy(text, allowed_special="all"))
    tiktoken_s = _best_seconds(lambda: reference.encode(text, allowed_special="all"))
    print(f"  GPT-2 encoding  pybpe {n_bytes / pybpe_s / 1e6:.0f} MB/s, tiktoken {n_bytes / tiktoken_s / 1e6:.0f} MB/s "
          f"(1 thread each, {tiktoken_s / pybpe_s:.1f}x); ids identical: {'yes' if same else 'NO'}")
