"""The `pybpe` command line."""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Optional, Sequence

from pybpe.errors import PybpeError, VocabShortfallWarning

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_SHORTFALL = 3  # the tokenizer was saved, but with fewer merges than asked for
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + 15


class Terminated(BaseException):
    """SIGTERM, raised where Python runs next (in a long job, its progress callback), so that
    the job stops and its temp files are removed as on Ctrl-C."""


def _raise_terminated(signum, frame):
    raise Terminated()


class UserError(Exception):
    """A problem to report in one line, without a traceback."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + message
        print(f"pybpe: error: {message} (see pybpe {self.prog.split()[-1]} --help)" if " " in self.prog
              else f"pybpe: error: {message} (see pybpe --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def writes_to_stdout(command):
    """A command whose output may go to a pipe that closes early (`| head`): it stops quietly
    and, once its work is done, succeeds."""
    @functools.wraps(command)
    def run(args) -> int:
        try:
            status = command(args)
            sys.stdout.flush()
            return status
        except BrokenPipeError:
            # Point stdout at /dev/null so that the interpreter's final flush fails silently too.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0

    return run


def _check_output_path(path: Path) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UserError(f"{path}: is a directory; give a file name for the output")
    if not parent.is_dir():
        raise UserError(f"{path}: the directory {parent} does not exist")


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} GB"


def _show_token(token: bytes) -> str:
    return repr(token.decode("utf-8", errors="replace"))


def print_training_summary(tokenizer, report: dict, seconds: float, out: Optional[Path], file=sys.stdout) -> None:
    r = report
    rate = r["bytes_read"] / r["count_seconds"] / 1e6 if r["count_seconds"] > 0 else float("inf")
    n_special = len(tokenizer.special_tokens)
    print(f"  read          {_fmt_bytes(r['bytes_read'])} in {r['count_seconds']:.2f} s ({rate:.1f} MB/s)", file=file)
    print(f"  pre-tokens    {r['pretokens']:,} ({r['unique_pretokens']:,} unique)", file=file)
    print(f"  merges        {r['merges_learned']:,} learned in {r['merge_seconds']:.2f} s", file=file)
    print(f"  total time    {seconds:.2f} s", file=file)
    print(f"  vocab         {tokenizer.vocab_size:,} = 256 bytes + {r['merges_learned']:,} merges + {n_special} special",
          file=file)
    if out is not None:
        print(f"  saved         {out}", file=file)
    vocab = tokenizer.vocab
    specials = set(tokenizer.special_tokens.values())
    longest = sorted((i for i in vocab if i not in specials), key=lambda i: (-len(vocab[i]), i))[:10]
    print("  longest tokens:", file=file)
    for i in longest:
        print(f"    {i:>7}  {len(vocab[i]):>3} bytes  {_show_token(vocab[i])}", file=file)


@writes_to_stdout
def cmd_train(args) -> int:
    from pybpe.progress import TrainingProgress
    from pybpe.tokenizer import Tokenizer

    out = Path(args.output)
    _check_output_path(out)
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be at least 1, not {args.threads}")
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


def cmd_demo(args) -> int:
    from pybpe import demo

    return demo.run(args)


def cmd_encode(args) -> int:
    from pybpe import commands

    if args.format == "jsonl":
        from pybpe.jsonl_export import cmd_encode_jsonl

        return cmd_encode_jsonl(args)
    if args.max_length is not None:
        raise UserError("--max-length applies to --format jsonl only")
    return commands.cmd_encode(args)


def cmd_decode(args) -> int:
    from pybpe import commands

    return commands.cmd_decode(args)


def cmd_info(args) -> int:
    from pybpe import commands, tokenizer_files

    if tokenizer_files.is_char_file(args.tokenizer):
        return tokenizer_files.cmd_info_char(args)
    return commands.cmd_info(args)


def cmd_stats(args) -> int:
    from pybpe import commands

    return commands.cmd_stats(args)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line on stderr."""
    print(f"pybpe: warning: {message}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pybpe", description="Fast byte-level BPE: train, encode, inspect.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    train = sub.add_parser("train", help="train a tokenizer on text files",
                           description="Train a byte-level BPE tokenizer (CS336 semantics) on text files.")
    train.add_argument("files", nargs="+", metavar="FILE", help="text files; - reads standard input")
    train.add_argument("--vocab", type=int, required=True, metavar="N",
                       help="vocabulary size: 256 bytes + special tokens + merges")
    train.add_argument("--special", action="append", metavar="TOKEN",
                       help="a special token such as <|endoftext|> (repeatable); never merged across")
    train.add_argument("--pattern", default="gpt2", metavar="gpt2|gpt4|REGEX",
                       help="pre-tokenizer: gpt2 (r50k, default), gpt4 (cl100k), o200k (names in any case) "
                            "or a regular expression")
    train.add_argument("--threads", type=int, default=None, metavar="N", help="threads (default: all cores)")
    train.add_argument("--strict", action="store_true", help="fail on invalid UTF-8 instead of replacing it")
    train.add_argument("-o", "--output", default="tokenizer.json", metavar="OUT",
                       help="where to write the tokenizer (default: tokenizer.json)")
    train.set_defaults(run=cmd_train)

    demo = sub.add_parser("demo", help="the whole pipeline on a built-in default corpus, offline",
                          description="Train a tokenizer on TinyStories text from the shared data folder "
                                      "(env PYBPE_DATA) and print what it learned.")
    demo.add_argument("--out", default=None, metavar="DIR", help="where to write outputs (default: a temporary folder)")
    demo.add_argument("--vocab", type=int, default=10000, metavar="N", help="vocabulary size (default 10000)")
    demo.set_defaults(run=cmd_demo)

    tokenizer_help = ("a tokenizer file written by pybpe train, or a named encoding: gpt2, r50k_base, p50k_base, "
                      "cl100k_base, o200k_base (all but gpt2 through tiktoken and its cache, TIKTOKEN_CACHE_DIR)")
    encode = sub.add_parser("encode", help="encode text files to a token file (.bin)",
                            description="Encode text files to OUT.bin (little-endian ids, special tokens such as "
                                        "<|endoftext|> read as such) and OUT.bin.json describing it.")
    encode.add_argument("-t", "--tokenizer", required=True, metavar="TOKENIZER", help=tokenizer_help)
    encode.add_argument("files", nargs="+", metavar="FILE",
                        help="UTF-8 text files or pipes, encoded one after another; - reads standard input")
    encode.add_argument("-o", "--output", required=True, metavar="OUT.bin", help="the token file to write")
    encode.add_argument("--threads", type=int, default=None, metavar="N", help="threads (default: all cores)")
    encode.add_argument("--dtype", choices=["auto", "uint16", "uint32"], default="auto",
                        help="id type: auto (default) is uint16 when the vocabulary fits, else uint32")
    encode.add_argument("--format", choices=["bin", "jsonl"], default="bin",
                        help="bin (default): OUT.bin + OUT.bin.json; jsonl: one JSON array of ids per document "
                             "per line (documents end at <|endoftext|>, which is left out)")
    encode.add_argument("--max-length", type=int, default=None, metavar="L",
                        help="with --format jsonl: cut longer documents into pieces of at most L ids")
    encode.set_defaults(run=cmd_encode)

    decode = sub.add_parser("decode", help="decode a token file back to text on standard output",
                            description="Write the text of a token file to standard output; its dtype is read "
                                        "from OUT.bin.json beside it.")
    decode.add_argument("-t", "--tokenizer", required=True, metavar="TOKENIZER", help=tokenizer_help)
    decode.add_argument("file", metavar="OUT.bin", help="a token file written by pybpe encode")
    decode.add_argument("--range", default=None, metavar="A:B",
                        help="only the tokens at positions A to B-1, as a Python slice (--range=-100: the last 100); "
                             "A must lie in the file")
    decode.add_argument("--dtype", choices=["uint16", "uint32"], default=None,
                        help="id type when there is no OUT.bin.json (default: uint16 if the vocabulary fits)")
    decode.set_defaults(run=cmd_decode)

    info = sub.add_parser("info", help="what a tokenizer holds", description="Vocabulary size, special tokens, "
                                                                             "pattern, merges, longest tokens.")
    info.add_argument("tokenizer", metavar="TOKENIZER", help=tokenizer_help)
    info.set_defaults(run=cmd_info)

    stats = sub.add_parser("stats", help="how a tokenizer encodes text files",
                           description="Bytes, tokens, bytes per token, tokens used and the most frequent tokens.")
    stats.add_argument("-t", "--tokenizer", required=True, metavar="TOKENIZER", help=tokenizer_help)
    stats.add_argument("files", nargs="+", metavar="FILE", help="UTF-8 text files or pipes; - reads standard input")
    stats.add_argument("--threads", type=int, default=None, metavar="N", help="threads (default: all cores)")
    stats.set_defaults(run=cmd_stats)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        previous_sigterm = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: SIGTERM keeps its handler
        previous_sigterm = None
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.run(args)
    except (UserError, PybpeError) as e:
        print(f"pybpe: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except FileNotFoundError as e:
        print(f"pybpe: error: {e.filename or ''}{': ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as e:
        name = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"pybpe: error: {name}{e.strerror or e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("pybpe: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print("pybpe: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)


if __name__ == "__main__":
    raise SystemExit(main())
