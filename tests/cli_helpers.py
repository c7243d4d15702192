"""Running the command lines in tests, and what a user error must look like."""

import subprocess
import sys


def run_pybpe(*args, stdin=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "pybpe", *map(str, args)], input=stdin, capture_output=True,
                          cwd=cwd, timeout=300)


def assert_one_line_error(result, *fragments, code=1, prefix=""):
    """Exit status `code`, one line on stderr starting with `prefix` and holding every
    fragment, and no traceback. `result` is a finished subprocess, its output bytes or text."""
    stderr = result.stderr if isinstance(result.stderr, str) else result.stderr.decode()
    assert result.returncode == code, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(prefix), stderr
    for fragment in fragments:
        assert fragment in stderr, stderr
