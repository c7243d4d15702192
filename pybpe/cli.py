"""The `pybpe` command line: the argument parser and `main`, which runs a subcommand and turns
its errors into one line on stderr. The subcommands live in `commands`, `jsonl_export` and `demo`."""

from __future__ import annotations

import argparse
import signal
import sys
import warnings
from typing import Optional, Sequence

from pybpe.cli_common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, UserError
from pybpe.errors import PybpeError


class Terminated(BaseException):
    """SIGTERM, raised where Python runs next (in a long job, its progress callback), so that
    the job stops and its temp files are removed as on Ctrl-C."""


def _raise_terminated(signum, frame):
    raise Terminated()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + message
        print(f"pybpe: error: {message} (see pybpe {self.prog.split()[-1]} --help)" if " " in self.prog
              else f"pybpe: error: {message} (see pybpe --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def cmd_train(args) -> int:
    from pybpe import commands

    return commands.cmd_train(args)


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
    from pybpe import commands

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
