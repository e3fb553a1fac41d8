# `make demo` and `make test` work on a fresh machine: they build the venv first.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# torch comes pinned: an unpinned torch pulls the registry's newest CUDA build.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
# The GLB tests' three.js and glTF validator (tests/js/package-lock.json); without npm those tests skip.
JS_STAMP := tests/js/node_modules/.installed-stamp

.PHONY: install test demo bench lint clean

$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet $(TORCH_PINS)
	$(PYTHON) -m pip install --quiet $(TORCH_PINS) -e ".[dev,launchers]"
	touch $(STAMP)

install: $(STAMP)

# No stamp without npm, so the install runs once npm is there.
$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix tests/js --no-audit --no-fund --loglevel=error && touch $(JS_STAMP); \
	else \
		echo "warning: npm not found; the GLB validator and three.js tests (tests/test_glb_in_browser.py) will skip" >&2; \
	fi

test: install $(JS_STAMP)
	$(PYTHON) -m pytest

demo: install
	$(PYTHON) scripts/train.py experiment=synthetic

bench: install
	$(PYTHON) benchmarks/render_speed.py

lint: install
	$(VENV)/bin/ruff check dynapose4d scripts tests benchmarks

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache tests/js/node_modules
