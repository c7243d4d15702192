"""`pybpe encode --format jsonl`: one JSON array of ids per document per line (the NumPy
training guide's `train_tokenized.jsonl`).

Documents are the pieces of the encoded files between end-of-text ids (the id itself is
left out, empty pieces are skipped); with `max_length`, a longer document is cut into
consecutive pieces of at most that many ids.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Optional

EOT = "<|endoftext|>"
WRITE_BLOCK_TOKENS = 1 << 22


def documents(ids, eot_id: Optional[int], max_length: Optional[int]):
    """The pieces of `ids` (a 1-D array) between end-of-text ids, each cut to at most `max_length`."""
    import numpy as np

    if eot_id is None:
        bounds = np.array([], dtype=np.int64)
    else:
        bounds = np.flatnonzero(ids == eot_id)
    start = 0
    for end in [*bounds.tolist(), len(ids)]:
        if end > start:
            if max_length is None:
                yield ids[start:end]
            else:
                for s in range(start, end, max_length):
                    yield ids[s:min(s + max_length, end)]
        start = end + 1


def write_jsonl(ids, eot_id: Optional[int], out: Path, max_length: Optional[int] = None) -> int:
    """Writes `ids` as JSON lines to `out` atomically; returns the number of lines."""
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    lines = 0
    try:
        with open(tmp, "w", encoding="ascii") as f:
            buf: list[str] = []
            size = 0
            for doc in documents(ids, eot_id, max_length):
                buf.append("[" + ",".join(map(str, doc.tolist())) + "]\n")
                lines += 1
                size += len(doc)
                if size >= WRITE_BLOCK_TOKENS:
                    f.write("".join(buf))
                    buf, size = [], 0
            f.write("".join(buf))
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return lines


def cmd_encode_jsonl(args) -> int:
    from pybpe import tokenfile
    from pybpe.cli_common import check_threads, load_tokenizer
    from pybpe.errors import ConfigError
    from pybpe.interop import check_output_path
    from pybpe.progress import EncodingProgress

    check_threads(args.threads)
    if args.max_length is not None and args.max_length < 1:
        raise ConfigError(f"--max-length must be at least 1, not {args.max_length}")
    tok = load_tokenizer(args.tokenizer)
    out = check_output_path(args.output)
    for given in [*args.files, args.tokenizer]:
        if Path(given).resolve() == out.resolve():
            raise ConfigError(f"-o {out} would overwrite the input {given}")
    started = time.perf_counter()
    tmp_bin = out.with_name(f".{out.name}.ids{os.getpid()}.bin")
    try:
        with EncodingProgress() as progress:
            meta = tok.encode_file(args.files, tmp_bin, dtype=args.dtype, threads=args.threads, progress=progress)
        total_bytes = meta["bytes_read"]
        ids = tokenfile.load_tokens(tmp_bin)
        lines = write_jsonl(ids, tok.special_tokens.get(EOT), out, args.max_length)
        num_tokens = len(ids)
        del ids
    finally:
        for leftover in (tmp_bin, tokenfile.sidecar_path(tmp_bin)):
            if leftover.exists():
                leftover.unlink()
    seconds = time.perf_counter() - started
    print(f"pybpe encode: {', '.join(args.files)} -> {out}")
    print(f"  read          {total_bytes:,} bytes in {len(args.files)} file{'s' if len(args.files) > 1 else ''}")
    print(f"  tokens        {num_tokens:,} in {lines:,} lines"
          + (f" (documents cut at {args.max_length:,} ids)" if args.max_length else ""))
    print(f"  time          {seconds:.2f} s")
    print(f"  wrote         {out}", file=sys.stdout)
    return 0
