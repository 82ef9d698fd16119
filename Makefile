# The DDPM book: build and test.
#
#   make setup     .venv (Python 3.11) with requirements.txt and ddpm_core (editable); Debian
#                  chromium if /usr/bin/chromium is missing; npm and g++ if missing; the pinned
#                  widget JS and MathJax vendored into book/_static/vendor/ (ignored by git)
#   make execute   run every chapter notebook in place (stores outputs + widget state)
#   make book      setup + execute + build the HTML into _build/html (zero warnings allowed)
#   make test      setup + build the HTML from the STORED outputs + one pytest run:
#                  unit tests, nbval (strict) on the chapters, the browser test of the HTML
#   make clean     remove _build/
#
# Variables: PYTHON (interpreter that creates .venv, default python3.11), CHAPTERS (for
# `make execute CHAPTERS="01 06"`), PYTEST_ARGS (extra pytest arguments).

SHELL := /bin/bash
# One torch thread in the kernels: the chapters' stored outputs were produced this way, and float
# reductions can differ in the last digit with another thread count (which nbval would flag).
export OMP_NUM_THREADS := 1
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
JB := $(VENV)/bin/jupyter-book
CHROMIUM := /usr/bin/chromium
CHAPTERS ?=
PYTEST_ARGS ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || ! command -v sudo >/dev/null || echo sudo)

.PHONY: help setup system-deps vendor execute build book test clean

help:
	@sed -n '3,13p' Makefile | sed 's/^# \{0,1\}//'

setup: $(VENV)/.installed system-deps vendor

$(PY):
	$(PYTHON) -m venv $(VENV)

# Re-installs only when requirements.txt or pyproject.toml change.
$(VENV)/.installed: requirements.txt pyproject.toml | $(PY)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

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

# One pytest run: the unit tests, nbval on every chapter (re-executes each notebook once and
# compares with the stored outputs), and the browser test of the HTML built just before.
test: setup build
	$(PY) -m pytest --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
	  tests $(wildcard chapters) $(PYTEST_ARGS)

clean:
	rm -rf _build
