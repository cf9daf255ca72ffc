# Set-up and everyday commands. `make test` and `make demo` work on a fresh machine.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip -q --disable-pip-version-check
# Pinned so that pip takes the local CPU wheel instead of the multi-GB CUDA build.
TORCH  ?= torch==2.13.0

# `make lint` runs `ruff check` and `ruff format --check` (FORMAT_CHECK=0 leaves the second out while editing).
FORMAT_CHECK ?= 1

.PHONY: install test test-fast lint package-check demo bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install "$(TORCH)"
	$(PIP) install -e '.[dev]'
	touch $@

# The full suite, then the packaging check. -rfEs: the reason of every skip, failure and error.
test: lint
	$(PY) -m pytest -q -rfEs -n auto --maxprocesses 4 tests
	$(MAKE) --no-print-directory package-check

# The quick tier (under a minute): no subprocess, torchrun or snakemake runs (tests marked slow).
test-fast: install
	$(PY) -m pytest -q -rfEs -n auto --maxprocesses 4 -m "not slow" tests

lint: install
	$(VENV)/bin/ruff check .
ifeq ($(FORMAT_CHECK),1)
	$(VENV)/bin/ruff format --check .
else
	@echo "ruff format --check: skipped (FORMAT_CHECK=0)"
endif

# sdist, wheel from the sdist, fresh venv with the wheel, the demo scored from outside the clone.
package-check: install
	TORCH="$(TORCH)" .ci/check-package $(PY)

# Scores examples/demo.vcf on real chr22 DNA with the bundled default model, at 1 kb (it was trained at 4 kb).
demo: install
	mkdir -p demo-out
	$(VENV)/bin/vepcli score examples/demo.vcf --fasta tests/data/chr22_slice.fa.gz --window 1024 -o demo-out/demo.scored.vcf.gz
	$(VENV)/bin/vepcli score examples/demo.vcf --fasta tests/data/chr22_slice.fa.gz --window 1024 -o demo-out/demo.scored.tsv -q
	@echo "demo output: demo-out/demo.scored.vcf.gz (+ .tbi) and demo-out/demo.scored.tsv"

bench: install
	$(PIP) install -e '.[bench]'
	$(PY) bench/scan.py
	$(PY) bench/forward.py
	$(PY) bench/score.py
	$(PY) bench/pretrain.py
	$(PY) bench/commands.py

clean:
	rm -rf build dist *.egg-info demo-out .pytest_cache

# The bundled default model, models/caduceus-ps-chr22-small: about 2 hours of one CPU core (49M tokens at
# 4,096 bp). A run that was stopped continues from its last checkpoint; a finished one is not trained again.
PRETRAIN_FASTA ?= ../shared/data/GRCh37_chr22_subset.fa.gz
PRETRAIN_RUN   ?= runs/caduceus-ps-chr22-small
PRETRAIN_DATA  := --fasta $(PRETRAIN_FASTA) --val-region 22:47000001-51304566 --seq-len 4096 --val-windows 32 --seed 0
PRETRAIN_ARGS  := $(PRETRAIN_DATA) --arch caduceus-ps --d-model 64 --n-layer 4 --d-state 16 --batch-size 2 \
                  --steps 6000 --lr 4e-3 --val-every 100 --checkpoint-every 100 --threads 1

# COMPARE_MODELS: the models this one replaces (folders; e.g. from `git worktree add` of an older release),
# scored on the same held-out windows and masks for the card.
COMPARE_MODELS ?=

.PHONY: pretrain-default
pretrain-default: install
	test -f $(PRETRAIN_RUN)/model/training.json || $(PY) -m vepcli pretrain $(PRETRAIN_ARGS) -o $(PRETRAIN_RUN) \
		$(if $(wildcard $(PRETRAIN_RUN)/checkpoints/step-*),--resume)
	$(PY) -m vepcli tools kmer-baseline $(PRETRAIN_DATA) --max-k 8 $(foreach m,$(COMPARE_MODELS),--model $(m)) \
		-o $(PRETRAIN_RUN)/kmer_baseline.json
	$(PY) -m vepcli tools model-card $(PRETRAIN_RUN) $(PRETRAIN_RUN)/kmer_baseline.json models/caduceus-ps-chr22-small
