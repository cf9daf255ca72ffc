# Set-up and everyday commands. `make test` and `make demo` work on a fresh machine.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip -q --disable-pip-version-check
# Pinned so that pip takes the local CPU wheel instead of the multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: install test lint demo bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install "$(TORCH)"
	$(PIP) install -e '.[dev]'
	touch $@

test: install
	$(PY) -m pytest -q tests

lint: install
	$(VENV)/bin/ruff check .

demo: install
	$(VENV)/bin/vepcli score examples/demo.vcf --fasta examples/demo.fa.gz -o demo-out/demo.scored.tsv
	@echo "demo output: demo-out/demo.scored.tsv"

bench: install
	$(PIP) install -e '.[bench]'
	$(PY) bench/forward.py

clean:
	rm -rf build *.egg-info demo-out .pytest_cache
