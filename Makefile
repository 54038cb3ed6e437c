# Two commands on a fresh machine: `make demo` and `make test`. Each builds .venv itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PEERS := .venv-peers
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: demo test test-all bench lint format peers clean browser docs

$(STAMP): pyproject.toml Makefile benchmarks/peers/requirements-torch.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r benchmarks/peers/requirements-torch.txt  # torch==2.13.0, first
	$(PY) -m pip install -q -c benchmarks/peers/requirements-torch.txt -e '.[dev,seq,mpi,studio,docs,nir]'
	$(VENV)/bin/neurofabric snn compile
	$(VENV)/bin/neurofabric thermo compile
	$(VENV)/bin/neurofabric guard compile
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/neurofabric demo --out demo-output

# --durations: the CI log names the slowest tests (the suite's budget is 15 minutes on 2 cores)
test: $(STAMP) browser
	$(PY) -m pytest -q -m "not slow and not gpu" --durations=25  # mpi and browser included (mpiexec comes with the mpich wheel)

# The studio's browser tests drive Debian's chromium through its chromedriver (no browser is
# downloaded at run time). Installed with apt-get where we are root; elsewhere the tests skip
# with the command to run.
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
			{ apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; }; \
		else \
			echo "note: no chromium; the studio's browser tests will skip (apt-get install chromium chromium-driver)"; \
		fi; \
	fi

test-all: $(STAMP)
	$(PY) -m pytest -q

# The docs site (mkdocs.yml): engine pages, benchmarks, studio and an API reference from the
# docstrings; --strict makes a broken link or an unresolved reference an error.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

format: $(STAMP)
	$(PY) -m ruff format src tests benchmarks
	$(PY) -m ruff check --fix src tests benchmarks

# Peers that clash with our dependencies (Brian2 wants numpy<2.4) live in their own venv.
# torch is installed first, pinned (requirements-torch.txt), and is a constraint of every later
# step; bindsnet goes in last with --no-deps (its metadata asks for torch>=2.14), with the
# dependencies its Diehl & Cook peer needs from requirements-bindsnet.txt (see the comments there).
PEER_REQS := $(addprefix benchmarks/peers/,requirements-torch.txt requirements.txt \
	requirements-bindsnet.txt requirements-nodeps.txt)
$(PEERS)/.installed: $(PEER_REQS)
	test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install -q --upgrade pip
	$(PEERS)/bin/python -m pip install -q -r benchmarks/peers/requirements-torch.txt
	$(PEERS)/bin/python -m pip install -q -c benchmarks/peers/requirements-torch.txt \
		-r benchmarks/peers/requirements.txt
	$(PEERS)/bin/python -m pip install -q -c benchmarks/peers/requirements-torch.txt \
		-c benchmarks/peers/requirements.txt -r benchmarks/peers/requirements-bindsnet.txt
	$(PEERS)/bin/python -m pip install -q --no-deps -r benchmarks/peers/requirements-nodeps.txt
	$(PEERS)/bin/python benchmarks/peers/bindsnet_diehl_cook.py --check-install
	touch $(PEERS)/.installed

peers: $(PEERS)/.installed

# Every headline benchmark (benchmarks/run_all.py; hours for the full set; BENCH_ARGS="--only
# snn_nir,seq_decode" or "--quick" for less), each row to benchmarks/results/<date>-<machine>.jsonl
# (-quick.jsonl for smoke sizes), then the generated tables of docs/benchmarks.md and the README
# from the newest run of each benchmark in benchmarks/results (benchmarks/report.py).
bench: $(STAMP) peers
	$(PY) benchmarks/run_all.py $(BENCH_ARGS); status=$$?; \
		$(PY) benchmarks/report.py benchmarks/results --write && exit $$status

clean:
	rm -rf $(VENV) $(PEERS) demo-output .pytest_cache site
