# Two entry points for a fresh clone: `make demo` and `make test`. Each creates .venv and
# installs what is missing (pycrs from source with its C parts, MPICH and mpi4py from PyPI).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SOURCES := pyproject.toml setup.py $(wildcard crs/native/*.c crs/native/build_*.py)

.PHONY: demo test bench clean

$(STAMP): $(SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[mpich,test]'
	touch $@

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/self_checkpoint.py

clean:
	rm -rf $(VENV) build *.egg-info crs/native/_fsops*.so
