# `make demo` and `make test` work on a fresh machine: they build the venv first.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# torch comes pinned: an unpinned torch pulls the registry's newest CUDA build.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: install test demo bench lint clean

$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet $(TORCH_PINS)
	$(PYTHON) -m pip install --quiet $(TORCH_PINS) -e ".[dev,launchers]"
	touch $(STAMP)

install: $(STAMP)

test: install
	$(PYTHON) -m pytest

demo: install
	$(PYTHON) scripts/train.py experiment=synthetic

bench: install
	$(PYTHON) benchmarks/render_speed.py

lint: install
	$(VENV)/bin/ruff check dynapose4d scripts tests benchmarks

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
