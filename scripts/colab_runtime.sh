#!/usr/bin/env bash
# Colab's widget and IPython stack, for tests/test_colab_runtime.py, in a folder that goes first on
# the test kernel's PYTHONPATH (nothing else sees it; the venv stays on ipywidgets 8):
#
#   scripts/colab_runtime.sh [DIR]      default DIR: .build/colab-runtime/site
#
# Google Colab ships ipywidgets 7.7.1 and IPython 7.34.0 with its own torch; the kernel that runs
# them there is ipykernel 6.17.1 with traitlets 5.7.1. Those four, plus what IPython 7.34 and
# ipywidgets 7.7 import that the venv lacks (or has in a newer, incompatible major version:
# decorator 4, backcall, pickleshare, ipython_genutils), are installed with --no-deps, so pip
# cannot pull anything else in: torch, numpy, jupyter_client, pyzmq, tornado, jedi, prompt_toolkit
# and the rest come from the venv, whose versions all satisfy these packages. Not installed:
# widgetsnbextension 3.6 and jupyterlab_widgets 1.x, which hold only the browser side (Colab
# replaces it with its own widget manager) and are never imported by the kernel.
# Quick no-op when DIR already holds these versions.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${1:-.build/colab-runtime/site}"
PY="${PY:-.venv/bin/python}"
PINS=(ipywidgets==7.7.1 ipython==7.34.0 ipykernel==6.17.1 traitlets==5.7.1
      decorator==4.4.2 backcall==0.2.0 pickleshare==0.7.5 ipython-genutils==0.2.0)
STAMP="$DIR/.colab-runtime"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "${PINS[*]}" ]; then
  exit 0
fi
echo "colab_runtime: installing Colab's kernel-side stack into $DIR: ${PINS[*]}"
rm -rf "$DIR"
mkdir -p "$DIR"
if ! "$PY" -m pip install --quiet --disable-pip-version-check --no-deps --target "$DIR" "${PINS[@]}"; then
  echo "colab_runtime: ERROR: pip could not install ${PINS[*]} into $DIR" >&2
  exit 1
fi
# The check the test relies on: this folder first on the path gives Colab's versions.
PYTHONPATH="$DIR" "$PY" - <<'EOF'
import IPython, ipykernel, ipywidgets, traitlets
got = (ipywidgets.__version__, IPython.__version__, ipykernel.__version__, traitlets.__version__)
assert got == ("7.7.1", "7.34.0", "6.17.1", "5.7.1"), got
assert not hasattr(ipywidgets, "Stack"), "ipywidgets 7 has no Stack"
EOF
echo "${PINS[*]}" > "$STAMP"
