# The commands of the README:
#   make demo    light set-up of .venv (first time only), then run the AtomNAS demo
#   make test    full set-up of .venv (first time only), then run the whole test suite
#   make setup   the full set-up alone: adds mmdet and mmcv's compiled ops
#   make setup-light   the light set-up alone: classification and the search
# Set-up is idempotent: a second run installs nothing (tools/setup_env.sh). The full
# set-up satisfies the light one and is never downgraded by it.
# ATOMNAS_WHEELHOUSE=DIR lets the full set-up take a prebuilt mmcv wheel from DIR
# instead of building it (about 30 min on 2 cores, once; cached in ~/.cache).

PY := .venv/bin/python

.PHONY: demo test setup setup-light
setup:
	@bash tools/setup_env.sh full

setup-light:
	@bash tools/setup_env.sh light

demo: setup-light
	@$(PY) tools/run_demo.py

test: setup
	@$(PY) -m pytest -q -n auto --durations=10 tests
