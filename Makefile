# The two commands of the README:
#   make demo   set up .venv (first time only), then run the AtomNAS demo
#   make test   set up .venv (first time only), then run the whole test suite
# Set-up is idempotent: a second run installs nothing (tools/setup_env.sh).
# ATOMNAS_WHEELHOUSE=DIR lets set-up take a prebuilt mmcv wheel from DIR
# instead of building it (~30 min on 2 cores, once; cached in ~/.cache).

PY := .venv/bin/python

.PHONY: demo test setup
setup:
	@bash tools/setup_env.sh

demo: setup
	@$(PY) tools/run_demo.py

test: setup
	@$(PY) -m pytest -q tests
