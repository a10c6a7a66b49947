#!/usr/bin/env bash
# Set up the project (idempotent): .venv with pinned CPU torch and the packages of
# requirements.txt, then real MNIST, fetched and verified. Gradescope runs this same script
# once, as root, in /autograder/source (Ubuntu 22.04, Python 3.10), with none of these set:
#   PYTHON=/path/to/python3.X  the interpreter of the venv (it must run and be >= 3.10; default:
#                              the first of python3, python3.12, python3.11, python3.10 that does)
#   VENV=DIR                   where the venv goes (default .venv). An existing one is kept; if
#                              PYTHON is given and DIR holds another version, setup.sh stops
#   TORCH_SOURCE=pypi          torch from the configured index instead of a CPU build: on x86_64
#                              that is PyPI's CUDA build (GBs; it runs on the CPU too). Only for a
#                              machine with neither a CPU wheel on disk for this Python nor
#                              PyTorch's CPU index (CI's Python 3.10 venv: .ci/py310)
set -euo pipefail
cd "$(dirname "$0")"
TORCH_VERSION=2.13.0
VENV=${VENV:-.venv}
TORCH_SOURCE=${TORCH_SOURCE:-cpu}
case $TORCH_SOURCE in cpu|pypi) ;; *) echo "setup.sh: TORCH_SOURCE is cpu (default) or pypi" >&2; exit 1;; esac

runs() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1; }
if [ -n "${PYTHON:-}" ]; then
  runs "$PYTHON" || { echo "setup.sh: PYTHON=$PYTHON does not run or is older than 3.10" >&2; exit 1; }
  asked=1
else
  asked=0
  for candidate in python3 python3.12 python3.11 python3.10; do
    if command -v "$candidate" >/dev/null 2>&1 && runs "$candidate"; then PYTHON=$candidate; break; fi
  done
  [ -n "${PYTHON:-}" ] || { echo "setup.sh: Python >= 3.10 is required" >&2; exit 1; }
fi
version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo none; }

if [ -d /autograder ] && [ "$(id -u)" = 0 ] && ! "$PYTHON" -m venv --help >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq python3-venv
fi
if [ -x "$VENV/bin/python" ]; then
  if [ "$asked" = 1 ] && [ "$(version "$VENV/bin/python")" != "$(version "$PYTHON")" ]; then
    echo "setup.sh: $VENV holds Python $(version "$VENV/bin/python"), PYTHON=$PYTHON is $(version "$PYTHON"):" \
         "remove $VENV or choose another VENV=" >&2
    exit 1
  fi
else
  "$PYTHON" -m venv "$VENV"
fi
echo "setup.sh: $VENV with Python $(version "$VENV/bin/python")"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)

if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  if [ "$TORCH_SOURCE" = pypi ]; then
    "${PIP[@]}" "torch==$TORCH_VERSION"
    echo "setup.sh: torch $TORCH_VERSION from the configured index (TORCH_SOURCE=pypi)"
  else
    # A CPU wheel on a local wheelhouse (pip's find-links) wins, its dependencies from the
    # configured index; else PyTorch's CPU index, asked for the +cpu build by name on x86_64,
    # so that an unreachable index fails here instead of PyPI's CUDA build coming instead.
    wheelhouse=$(mktemp -d)
    if "$VENV/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps --no-index \
         --only-binary=:all: -d "$wheelhouse" "torch==$TORCH_VERSION" 2>/dev/null &&
       ls "$wheelhouse"/torch-*cpu*.whl >/dev/null 2>&1; then
      "${PIP[@]}" "$wheelhouse"/torch-*.whl
      echo "setup.sh: torch $TORCH_VERSION (CPU) from the local wheelhouse"
    else
      build=""; [ "$(uname -m)" = x86_64 ] && build="+cpu"
      "${PIP[@]}" --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple \
        "torch==$TORCH_VERSION$build"
    fi
    rm -rf "$wheelhouse"
  fi
fi
"${PIP[@]}" "torch==$TORCH_VERSION" -r requirements.txt
if [ "$TORCH_SOURCE" = cpu ] && ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.version.cuda is not None)"; then
  echo "setup.sh: $VENV holds a CUDA build of torch; this grader wants the CPU build" \
       "(remove $VENV, or TORCH_SOURCE=pypi where no CPU build can be had)" >&2
  exit 1
fi

"$VENV/bin/python" -m autograder prepare
if [ -d tests ]; then
  echo "setup.sh: done. Test with: $VENV/bin/python -m pytest solution tests"
else                       # the Gradescope zip: no tests folder; run_autograder grades /autograder/submission
  echo "setup.sh: done. Grade a submission with: run_autograder (or $VENV/bin/python -m autograder grade FOLDER --results R.json)"
fi
