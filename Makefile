# Two commands on a fresh machine: `make demo` and `make test`. Each builds .venv itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PEERS := .venv-peers
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: demo test test-all bench lint format peers clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(VENV)/bin/neurofabric snn compile
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/neurofabric demo --out demo-output

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not gpu and not mpi"

test-all: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

format: $(STAMP)
	$(PY) -m ruff format src tests benchmarks
	$(PY) -m ruff check --fix src tests benchmarks

# Peers that clash with our dependencies (Brian2 wants numpy<2.4) live in their own venv.
$(PEERS)/.installed: benchmarks/peers/requirements.txt
	test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install -q --upgrade pip
	$(PEERS)/bin/python -m pip install -q -r benchmarks/peers/requirements.txt
	touch $(PEERS)/.installed

peers: $(PEERS)/.installed

bench: $(STAMP) peers
	$(PY) benchmarks/snn_cuba.py --peers-python $(PEERS)/bin/python

clean:
	rm -rf $(VENV) $(PEERS) demo-output .pytest_cache
