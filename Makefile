# The two commands of the README: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= python3

.PHONY: install demo test bench

install:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e ".[train,test]"
	@# An editable install leaves the modules uncompiled (as a wheel install would not); compiled
	@# here, the CLI does not compile them at every start where PYTHONDONTWRITEBYTECODE is set.
	$(PYTHON) -m compileall -q pybpe training

demo: install
	$(PYTHON) -m pybpe demo

test: install
	cargo test --release --quiet
	$(PYTHON) -m pytest -q

bench: install
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e ".[bench]"
	$(PYTHON) benchmarks/train.py
