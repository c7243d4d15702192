"""Running the `pybpe` command line in tests, and what a user error must look like."""

import subprocess
import sys


def run_pybpe(*args, stdin=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "pybpe", *map(str, args)], input=stdin, capture_output=True,
                          cwd=cwd, timeout=300)


def assert_one_line_error(result, *fragments, code=1):
    """Exit status `code`, one line on stderr holding every fragment, and no traceback."""
    stderr = result.stderr.decode()
    assert result.returncode == code, stderr
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    for fragment in fragments:
        assert fragment in stderr, stderr
