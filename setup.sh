#!/usr/bin/env bash
# Set up the project (idempotent): .venv with pinned CPU torch and the packages of
# requirements.txt, then real MNIST, fetched and verified. Gradescope runs this same script
# once, as root, in /autograder/source (Ubuntu 22.04, Python 3.10).
set -euo pipefail
cd "$(dirname "$0")"
TORCH_VERSION=2.13.0
VENV=${VENV:-.venv}

PYTHON=${PYTHON:-}
for candidate in $PYTHON python3 python3.12 python3.11 python3.10; do
  if command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    PYTHON=$candidate; break
  fi
done
[ -n "$PYTHON" ] || { echo "setup.sh: Python >= 3.10 is required" >&2; exit 1; }

if [ -d /autograder ] && [ "$(id -u)" = 0 ] && ! "$PYTHON" -m venv --help >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq python3-venv
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)

if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  # A CPU wheel on a local wheelhouse (pip's find-links) wins, its dependencies from the
  # configured index; else PyTorch's CPU index (never PyPI's CUDA build).
  wheelhouse=$(mktemp -d)
  if "$VENV/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps --no-index \
       --only-binary=:all: -d "$wheelhouse" "torch==$TORCH_VERSION" 2>/dev/null &&
     ls "$wheelhouse"/torch-*cpu*.whl >/dev/null 2>&1; then
    "${PIP[@]}" "$wheelhouse"/torch-*.whl
    echo "setup.sh: torch $TORCH_VERSION (CPU) from the local wheelhouse"
  else
    "${PIP[@]}" --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple \
      "torch==$TORCH_VERSION"
  fi
  rm -rf "$wheelhouse"
fi
"${PIP[@]}" "torch==$TORCH_VERSION" -r requirements.txt

"$VENV/bin/python" -m autograder prepare
echo "setup.sh: done. Test with: $VENV/bin/python -m pytest solution tests"
