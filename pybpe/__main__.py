"""`python -m pybpe`: the same command line as the `pybpe` script."""

from pybpe.cli import main

raise SystemExit(main())
