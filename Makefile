# The two commands of the README: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= python3

.PHONY: install demo test bench

install:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e ".[train,test]"

demo: install
	$(PYTHON) -m pybpe demo

test: install
	cargo test --release --quiet
	$(PYTHON) -m pytest -q

bench: install
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e ".[bench]"
	$(PYTHON) benchmarks/train.py
