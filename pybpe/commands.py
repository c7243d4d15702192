"""`pybpe train`, `encode`, `decode`, `info` and `stats`: the command line over `pybpe.Tokenizer`.

Problems are raised as PybpeError subclasses; `pybpe.cli.main` prints them as one line.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from pybpe import tokenfile
from pybpe.cli_common import EXIT_SHORTFALL, check_threads, load_tokenizer, writes_to_stdout
from pybpe.errors import ConfigError, FileError, TokenizerFileError, VocabShortfallWarning
from pybpe.formatting import fmt_bytes, longest_tokens, print_training_summary, show_token
from pybpe.interop import check_output_path
from pybpe.progress import EncodingProgress, TrainingProgress
from pybpe.tokenizer import Tokenizer
from pybpe.tokenizer_files import is_char_file, load_any

if TYPE_CHECKING:
    import numpy as np

DTYPES = {"uint16": "<u2", "uint32": "<u4"}
DECODE_CHUNK_TOKENS = 1 << 20


@writes_to_stdout
def cmd_train(args) -> int:
    out = check_output_path(args.output)
    check_threads(args.threads)
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught, TrainingProgress() as progress:
        warnings.simplefilter("always", VocabShortfallWarning)
        tokenizer = Tokenizer.train(
            args.files,
            vocab_size=args.vocab,
            special_tokens=args.special or [],
            pattern=args.pattern,
            threads=args.threads,
            strict_utf8=args.strict,
            progress=progress,
        )
    tokenizer.save(out)
    seconds = time.perf_counter() - started
    report = tokenizer.train_report
    print(f"pybpe train: {', '.join(args.files)}")
    print_training_summary(tokenizer, report, seconds, out)
    if report["invalid_utf8_bytes"]:
        print(f"pybpe: note: replaced {report['invalid_utf8_bytes']:,} invalid UTF-8 bytes with U+FFFD "
              f"(--strict refuses such input)", file=sys.stderr)
    if any(issubclass(w.category, VocabShortfallWarning) for w in caught):
        print(f"pybpe: warning: the corpus ran out of pairs after {report['merges_learned']:,} merges; "
              f"saved {out} with vocab {tokenizer.vocab_size:,} instead of {args.vocab:,}", file=sys.stderr)
        return EXIT_SHORTFALL
    return 0


@writes_to_stdout
def cmd_encode(args) -> int:
    check_threads(args.threads)
    tok = load_tokenizer(args.tokenizer)
    if args.dtype == "uint16" and tok.vocab_size > 1 << 16:
        raise ConfigError(f"--dtype uint16 holds ids below 65536, but {args.tokenizer} has "
                          f"{tok.vocab_size:,} tokens: use uint32 or auto")
    out = check_output_path(args.output)
    written = {out.resolve(), Path(f"{out}.json").resolve()}
    for given in [*args.files, args.tokenizer]:
        if given != "-" and Path(given).resolve() in written:
            raise ConfigError(f"-o {out} would overwrite the input {given}")
    started = time.perf_counter()
    with EncodingProgress() as progress:
        sidecar = tok.encode_file(args.files, out, dtype=args.dtype, threads=args.threads, progress=progress)
    seconds = time.perf_counter() - started
    num_tokens = sidecar["num_tokens"]
    total_bytes = sidecar["bytes_read"]
    itemsize = tokenfile.ITEMSIZES[sidecar["dtype"]]
    print(f"pybpe encode: {', '.join(args.files)} -> {out}")
    print(f"  read          {fmt_bytes(total_bytes)} in {len(args.files)} input{'s' if len(args.files) > 1 else ''}")
    print(f"  tokens        {num_tokens:,} ({sidecar['dtype']}, {fmt_bytes(num_tokens * itemsize)})")
    if num_tokens:
        print(f"  bytes/token   {total_bytes / num_tokens:.3f}")
    rate = total_bytes / seconds / 1e6 if seconds > 0 else float("inf")
    print(f"  time          {seconds:.2f} s ({rate:.1f} MB/s)")
    print(f"  wrote         {out} + {out}.json")
    invalid = sidecar.get("invalid_utf8_bytes", 0)
    if invalid:
        print(f"pybpe: note: replaced {invalid:,} invalid UTF-8 bytes with U+FFFD", file=sys.stderr)
    return 0


def parse_range(text: Optional[str]) -> slice:
    """"A:B" as a Python slice of token positions; either end may be left out or negative."""
    if text is None:
        return slice(None)
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start, stop = (int(p) if p.strip() else None for p in parts)
    except ValueError:
        raise ConfigError(f"--range must be START:END (token positions, either may be left out), not {text!r}") from None
    return slice(start, stop)


def read_token_file(path: Path, tok: Tokenizer, tokenizer_path: str, dtype: Optional[str]) -> "np.ndarray":
    """The ids of a .bin token file, with the dtype its sidecar .bin.json names (else
    --dtype, else the smallest that holds the vocabulary)."""
    import numpy as np

    sidecar_path = Path(f"{path}.json")
    if sidecar_path.is_file():
        try:
            sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
            if sidecar.get("format") != tokenfile.FORMAT or sidecar.get("dtype") not in DTYPES:
                raise ValueError
        except (ValueError, UnicodeDecodeError, AttributeError):
            raise TokenizerFileError(f"{sidecar_path}: not a pybpe token file description "
                                     f"(a JSON object with \"format\": \"{tokenfile.FORMAT}\" and a dtype)") from None
        if dtype is not None and dtype != sidecar["dtype"]:
            raise ConfigError(f"--dtype {dtype} contradicts {sidecar_path}, which says {sidecar['dtype']}")
        dtype = sidecar["dtype"]
        expected_tokens = sidecar.get("num_tokens")
        recorded = (sidecar.get("tokenizer") or {}).get("sha256")
        ours = {tokenfile.tokenizer_sha256(tok), hashlib.sha256(tok.to_json().encode("utf-8")).hexdigest()}
        if recorded and recorded not in ours:
            used = sidecar["tokenizer"].get("name") or sidecar["tokenizer"].get("path")
            print(f"pybpe: warning: {path} was encoded with another tokenizer ({used}) than {tokenizer_path}",
                  file=sys.stderr)
    else:
        expected_tokens = None
        if dtype is None:
            dtype = "uint16" if tok.vocab_size <= 1 << 16 else "uint32"
    if path.is_dir():
        raise FileError(f"{path}: is a directory, not a token file")
    if not path.is_file():
        raise FileError(f"{path}: no such file")
    size = path.stat().st_size
    itemsize = tokenfile.ITEMSIZES[dtype]
    if size % itemsize:
        raise TokenizerFileError(f"{path}: {size:,} bytes is not a whole number of {dtype} ids")
    if type(expected_tokens) is int and size // itemsize != expected_tokens:
        raise TokenizerFileError(f"{path}: holds {size // itemsize:,} tokens, but {sidecar_path} says num_tokens "
                                 f"{expected_tokens:,} (the file is damaged or was cut short)")
    if size == 0:
        return np.zeros(0, dtype=DTYPES[dtype])
    return np.memmap(path, dtype=DTYPES[dtype], mode="r")


@writes_to_stdout
def cmd_decode(args) -> int:
    import numpy as np

    tok = load_any(args.tokenizer, load_tokenizer)
    selection = parse_range(args.range)
    ids = read_token_file(Path(args.file), tok, args.tokenizer, args.dtype)
    if selection.start is not None and not -len(ids) <= selection.start <= len(ids):
        raise ConfigError(f"--range starts at position {selection.start:,}, outside {args.file}, which holds "
                          f"{len(ids):,} tokens")
    first = selection.indices(len(ids))[0]
    ids = ids[selection]
    if len(ids):
        outside = np.flatnonzero(ids >= tok.vocab_size)
        if len(outside):
            position = first + int(outside[0])
            raise TokenizerFileError(f"{args.file}: token id {int(ids[outside[0]])} at position {position:,} is outside "
                                     f"the vocabulary of {args.tokenizer} ({tok.vocab_size:,} tokens)")
    out = sys.stdout.buffer
    for start in range(0, len(ids), DECODE_CHUNK_TOKENS):
        out.write(tok.decode_bytes(ids[start:start + DECODE_CHUNK_TOKENS]))
    out.flush()
    return 0


def print_special_tokens(specials: dict[str, int]) -> None:
    print(f"  special       {len(specials)}" + (":" if specials else ""))
    for name, id in sorted(specials.items(), key=lambda s: s[1]):
        print(f"    {id:>7}  {name}")


@writes_to_stdout
def cmd_info(args) -> int:
    if is_char_file(args.tokenizer):
        return info_char(args)
    tok = load_tokenizer(args.tokenizer)
    vocab = tok.vocab
    print(f"pybpe info: {args.tokenizer}")
    unused = tok.vocab_size - len(vocab)
    print(f"  vocab size    {tok.vocab_size:,}" + (f" ({unused:,} ids unused)" if unused else ""))
    print(f"  merges        {len(tok.merges):,}")
    pattern = tok.pattern
    print(f"  pattern       {pattern}" + ("" if pattern in ("gpt2", "gpt4") else " (custom regex)"))
    if pattern in ("gpt2", "gpt4"):
        print(f"  regex         {tok.pattern_regex}")
    print_special_tokens(tok.special_tokens)
    print("  longest tokens:")
    for i in longest_tokens(tok, 20):
        print(f"    {i:>7}  {len(vocab[i]):>3} bytes  {show_token(vocab[i])}")
    return 0


def info_char(args) -> int:
    """`pybpe info` of a character vocabulary file."""
    from pybpe.chartok import CharTokenizer

    tok = CharTokenizer.load(args.tokenizer)
    print(f"pybpe info: {args.tokenizer}")
    print(f"  vocab size    {tok.vocab_size:,}")
    print(f"  kind          character-level: {len(tok.chars):,} characters, ids 0-{len(tok.chars) - 1}")
    print_special_tokens(tok.special_tokens)
    print(f"  characters    {tok.chars!r}")
    return 0


@writes_to_stdout
def cmd_stats(args) -> int:
    import numpy as np

    check_threads(args.threads)
    tok = load_tokenizer(args.tokenizer)
    started = time.perf_counter()
    with EncodingProgress() as progress:
        counts, report = tok._core.count_tokens(args.files, args.threads or 0, progress)
    counts = np.frombuffer(counts, dtype="<u8").astype(np.int64)
    total_bytes = report["bytes_read"]
    seconds = time.perf_counter() - started
    num_tokens = int(counts.sum())
    vocab = tok.vocab
    print(f"pybpe stats: {', '.join(args.files)} with {args.tokenizer}")
    print(f"  bytes         {total_bytes:,}")
    print(f"  tokens        {num_tokens:,}")
    if num_tokens:
        print(f"  bytes/token   {total_bytes / num_tokens:.3f}")
    used = int(np.count_nonzero(counts))
    print(f"  unique tokens {used:,} of {tok.vocab_size:,} ({100 * used / tok.vocab_size:.1f}%)")
    print(f"  time          {seconds:.2f} s")
    print("  top tokens:")
    for i in np.argsort(-counts, kind="stable")[:20]:
        if counts[i] == 0:
            break
        share = 100 * counts[i] / num_tokens
        print(f"    {int(i):>7}  {int(counts[i]):>12,}  {share:5.2f}%  {show_token(vocab[int(i)])}")
    return 0
