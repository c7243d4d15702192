"""Plumbing every `pybpe` subcommand shares: exit codes, the one-line error, quiet exit on a
closed pipe, and the checks of the arguments the subcommands have in common."""

from __future__ import annotations

import functools
import os
import sys
from typing import Optional

from pybpe.errors import ConfigError

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_SHORTFALL = 3  # the tokenizer was saved, but with fewer merges than asked for
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + 15


class UserError(Exception):
    """A problem to report in one line, without a traceback."""


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


def load_tokenizer(path: str):
    """A pybpe tokenizer file (written by `pybpe train` or `Tokenizer.save`), or where no
    file has that name a named encoding such as gpt2 or cl100k_base."""
    from pybpe.tokenizer import Tokenizer

    return Tokenizer.load(path)


def check_threads(threads: Optional[int]) -> None:
    """ConfigError unless `--threads` is absent or at least 1."""
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be at least 1, not {threads}")
