# The DDPM book: build and test.
#
#   make setup     .venv (Python >= 3.10; 3.11 preferred) with requirements.txt at the exact
#                  versions of constraints.txt, JupyterLab and ddpm_core (editable); Debian
#                  chromium if /usr/bin/chromium is missing; npm and g++ if missing; the pinned
#                  widget JS and MathJax vendored into book/_static/vendor/ (ignored by git)
#   make execute   run every chapter notebook in place (stores outputs + widget state)
#   make book      setup + execute + build the HTML into _build/html (zero warnings allowed)
#   make test      setup + build the HTML from the STORED outputs + two pytest runs at once:
#                  (1) unit tests, nbval (strict) on the chapters, the browser test of the HTML;
#                  (2) nbval (strict) again with torch held to an older instruction set
#                  ("foreign CPU": the stored outputs must not depend on the CPU)
#   make lock      rewrite constraints.txt from the versions installed in .venv
#   make clean     remove _build/
#
# Variables: PYTHON (interpreter that creates .venv: the first of python3.11, python3.12,
# python3.13, python3.10, python3 that is >= 3.10), CHAPTERS (for `make execute CHAPTERS="01 06"`),
# PYTEST_ARGS (extra arguments for pytest run 1).

SHELL := /bin/bash
# One torch thread in the kernels: the chapters' stored outputs were produced this way, and float
# reductions can differ in the last digit with another thread count (which nbval would flag).
export OMP_NUM_THREADS := 1
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# The first Python >= 3.10 on PATH, 3.11 first (the stored outputs were produced with it).
PYTHON ?= $(shell for p in python3.11 python3.12 python3.13 python3.10 python3; do \
  command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null \
  && { echo $$p; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
JB := $(VENV)/bin/jupyter-book
CHROMIUM := /usr/bin/chromium
CHAPTERS ?=
PYTEST_ARGS ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || ! command -v sudo >/dev/null || echo sudo)

.PHONY: help setup system-deps vendor execute build book test lock clean

help:
	@sed -n '3,/^$$/p' Makefile | sed 's/^# \{0,1\}//'

setup: $(VENV)/.installed system-deps vendor

$(PY):
	@[ -n "$(PYTHON)" ] || { echo "setup: no Python >= 3.10 found on PATH (set PYTHON=/path/to/python3)" >&2; exit 1; }
	@echo "setup: creating $(VENV) with $(PYTHON) ($$($(PYTHON) --version 2>&1))"
	$(PYTHON) -m venv $(VENV)

# Re-installs only when requirements.txt, constraints.txt or pyproject.toml change.
# constraints.txt holds the exact versions the stored outputs were produced with (make lock).
$(VENV)/.installed: requirements.txt constraints.txt pyproject.toml | $(PY)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -r requirements.txt -c constraints.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# constraints.txt: every package of .venv at its installed version (ddpm_core itself excluded).
lock: $(VENV)/.installed
	@{ sed -n '1,/^# ---$$/p' constraints.txt; \
	   $(PY) -m pip freeze --exclude-editable | grep -v '^-e ' | LC_ALL=C sort -f; } > constraints.txt.new
	@mv constraints.txt.new constraints.txt
	@echo "lock: constraints.txt has $$(grep -vc '^#' constraints.txt) pinned packages"

# System packages from apt, only when missing: chromium for the browser test, npm for vendoring,
# g++ for torch.compile's CPU code generation (tests/test_train.py compiles a small model).
system-deps:
	@missing=""; \
	[ -x $(CHROMIUM) ] || missing="$$missing chromium"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	command -v g++ >/dev/null || missing="$$missing g++"; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null && { [ -z "$(SUDO)" ] || sudo -n true 2>/dev/null; }; then \
	    echo "setup: installing$$missing with apt-get"; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing \
	      >/dev/null || echo "setup: WARNING: apt-get could not install$$missing"; \
	  else \
	    echo "setup: WARNING: missing$$missing and no apt-get/root to install it"; \
	  fi; \
	fi; \
	[ -x $(CHROMIUM) ] || echo "setup: WARNING: no $(CHROMIUM): the browser test (tests/test_book_html.py) will fail"

# Quick no-op when book/_static/vendor/ already holds the pinned versions.
vendor:
	@scripts/vendor_js.sh

execute: setup
	$(PY) scripts/execute_notebooks.py $(CHAPTERS)

# Sphinx copies book/_static/ only when it writes pages: after a change there, rebuild all pages.
# Then the Colab edition of every chapter goes into _build/html/colab/ (published with the HTML,
# opened by the Colab buttons); DDPM_BOOK_REF=<tag or commit> pins its install instead of HEAD.
STATIC_STAMP := _build/html/.static-stamp
build: setup
	@if [ -f $(STATIC_STAMP) ] && [ -n "$$(find book/_static -type f -newer $(STATIC_STAMP) | head -1)" ]; then \
	  echo "build: book/_static/ changed, rebuilding every page"; rm -rf _build/html; fi
	$(JB) build . -W -n --keep-going
	@touch $(STATIC_STAMP)
	$(PY) scripts/colab_edition.py

book: setup execute build

# Two pytest runs side by side (one CPU core each; every kernel runs torch on one thread):
# (1) the unit tests, nbval on every chapter (re-executes each notebook once and compares with the
#     stored outputs) and the browser test of the HTML built just before;
# (2) nbval again on a "foreign CPU": ATen's kernels without SIMD, oneDNN (convolutions) at SSE4.1
#     and MKL (matrix products) at SSE4.2 instead of this CPU's AVX2/AVX-512, so that float
#     rounding differs as it does on another machine (tests/test_foreign_cpu.py checks that each
#     variable changes the kernels torch picks). Its log is printed when both have finished.
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg
FOREIGN_CPU := ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_ENABLE_INSTRUCTIONS=SSE4_2
FOREIGN_LOG := _build/nbval-foreign-cpu.log
test: setup build
	@echo "test: run 2 (nbval on a foreign CPU: $(FOREIGN_CPU)) started, log in $(FOREIGN_LOG)"
	@env $(FOREIGN_CPU) $(PY) -m pytest -p no:cacheprovider $(NBVAL) $(wildcard chapters) -q -rfE \
	  > $(FOREIGN_LOG) 2>&1 & foreign=$$!; \
	status=0; $(PY) -m pytest $(NBVAL) tests $(wildcard chapters) $(PYTEST_ARGS) || status=$$?; \
	fstatus=0; wait $$foreign || fstatus=$$?; \
	echo "=== run 2: nbval on a foreign CPU ($(FOREIGN_CPU))"; cat $(FOREIGN_LOG); \
	echo "test: run 1 exit status $$status, run 2 (foreign CPU) exit status $$fstatus"; \
	[ $$status = 0 ] && [ $$fstatus = 0 ]

clean:
	rm -rf _build
