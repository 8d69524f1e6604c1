# Oculus developer commands. `make run` and `make test` are all a fresh clone needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYVER  := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
STAMP  := $(VENV)/.installed-$(PYVER)-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run test dist bench bench-smoke css lint clean distclean

$(STAMP): pyproject.toml
	@if [ -x $(PY) ] && [ "$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])')" != "$(PYVER)" ]; then \
		echo "$(VENV) was made by another Python version; recreating it for Python $(PYVER)"; rm -rf $(VENV); fi
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

## run: start Oculus on the default config (or ARGS="-c my.yaml"), dashboard on http://127.0.0.1:8470
run: $(STAMP)
	$(VENV)/bin/oculus run $(ARGS)

## test: run the test suite
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

## dist: build dist/oculus.pyz for this Python version
dist: $(STAMP)
	$(PY) build_zipapp.py

## bench: run every benchmark scenario and rewrite docs/benchmarks.md (about an hour; run on a quiet machine)
bench: dist
	$(PY) bench/run_all.py

## bench-smoke: every benchmark scenario at a tiny size, to check the scripts still work (under 2 minutes)
bench-smoke: dist
	$(PY) bench/run_all.py --smoke

## css: rebuild static/oculus.css from the templates with the Tailwind CLI (npm registry)
css:
	npm ci --no-audit --no-fund
	npx @tailwindcss/cli -i static/src/oculus.css -o static/oculus.css --minify

## lint: static checks
lint: $(STAMP)
	$(VENV)/bin/ruff check oculus tests build_zipapp.py

clean:
	rm -rf build dist .pytest_cache

## distclean: also remove the virtual environment and node_modules
distclean: clean
	rm -rf $(VENV) node_modules
