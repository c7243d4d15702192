from pybpe.cli import main

raise SystemExit(main())
