"""How the CLI shows sizes, tokens and a training run: shared by the commands and the demo,
so that they print alike."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional


def fmt_bytes(n: float) -> str:
    """A byte count in decimal units: "512 B", "1.5 KB", "3.2 GB"."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} GB"


def show_token(token: bytes) -> str:
    """A token's bytes as a quoted string, invalid UTF-8 shown as U+FFFD."""
    return repr(token.decode("utf-8", errors="replace"))


def longest_tokens(tokenizer, n: int) -> list[int]:
    """The ids of the `n` longest ordinary (not special) tokens, longest first, then by id."""
    vocab = tokenizer.vocab
    specials = set(tokenizer.special_tokens.values())
    return sorted((i for i in vocab if i not in specials), key=lambda i: (-len(vocab[i]), i))[:n]


def print_training_summary(tokenizer, report: dict, seconds: float, out: Optional[Path], file=sys.stdout) -> None:
    """What `pybpe train` and `pybpe demo` print after training: throughput, counts, the longest tokens."""
    r = report
    rate = r["bytes_read"] / r["count_seconds"] / 1e6 if r["count_seconds"] > 0 else float("inf")
    n_special = len(tokenizer.special_tokens)
    print(f"  read          {fmt_bytes(r['bytes_read'])} in {r['count_seconds']:.2f} s ({rate:.1f} MB/s)", file=file)
    print(f"  pre-tokens    {r['pretokens']:,} ({r['unique_pretokens']:,} unique)", file=file)
    print(f"  merges        {r['merges_learned']:,} learned in {r['merge_seconds']:.2f} s", file=file)
    print(f"  total time    {seconds:.2f} s", file=file)
    print(f"  vocab         {tokenizer.vocab_size:,} = 256 bytes + {r['merges_learned']:,} merges + {n_special} special",
          file=file)
    if out is not None:
        print(f"  saved         {out}", file=file)
    vocab = tokenizer.vocab
    print("  longest tokens:", file=file)
    for i in longest_tokens(tokenizer, 10):
        print(f"    {i:>7}  {len(vocab[i]):>3} bytes  {show_token(vocab[i])}", file=file)
