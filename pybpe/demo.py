"""`pybpe demo`: the pipeline on a default corpus that ships with the shared data, offline."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from pybpe.data import data_file

DEFAULT_CORPUS = "corpora/tinystories_pool_train.txt"
SPECIAL = "<|endoftext|>"


def run(args) -> int:
    from pybpe.cli import print_training_summary
    from pybpe.progress import TrainingProgress
    from pybpe.tokenizer import Tokenizer

    corpus = data_file(DEFAULT_CORPUS)
    out_dir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="pybpe-demo-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"pybpe demo: training a {args.vocab:,}-token tokenizer on {corpus} (TinyStories, CS336 settings)")
    started = time.perf_counter()
    with TrainingProgress() as progress:
        tokenizer = Tokenizer.train(corpus, args.vocab, special_tokens=[SPECIAL], progress=progress)
    seconds = time.perf_counter() - started
    path = out_dir / "tokenizer.json"
    tokenizer.save(path)
    print_training_summary(tokenizer, tokenizer.train_report, seconds, path)
    return 0
