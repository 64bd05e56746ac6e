#!/usr/bin/env bash
# Run the whole test suite under the library versions README's "Versions" table lists.
# Each combination gets its own virtual environment under $VENVS (default /tmp/vip-versions);
# CUDA builds of torch come from PyPI and run on the CPU (about 3-6 GB per environment).
#
#   scripts/test_versions.sh                 # every row
#   scripts/test_versions.sh torch2.2        # one row: torch2.2, torch2.11, py3.10, py3.13
# PY310 and PY313 name those interpreters when they are not on PATH as python3.10 / python3.13.
set -euo pipefail
cd "$(dirname "$0")/.."
VENVS=${VENVS:-/tmp/vip-versions}

run_row() {  # NAME PYTHON PIP-ARGS...
    local name=$1 python=$2; shift 2
    local venv="$VENVS/$name"
    echo "== $name: $python, $*"
    rm -rf "$venv" && "$python" -m venv "$venv"
    "$venv/bin/pip" install -q "$@" -e ".[dev]"
    "$venv/bin/python" -c "import sys, torch, torchvision, transformers, numpy; print('versions:', sys.version.split()[0], \
torch.__version__, torchvision.__version__, transformers.__version__, numpy.__version__)"
    "$venv/bin/python" -m pytest -q -p no:cacheprovider | tail -1
}

PY310=${PY310:-python3.10} PY313=${PY313:-python3.13}  # e.g. PY310=~/.pyenv/versions/3.10.13/bin/python
want=${1:-all}
[[ $want == all || $want == torch2.11 ]] && run_row torch2.11 python3.11 "torch==2.11.*" "torchvision==0.26.*"
[[ $want == all || $want == torch2.2 ]] && run_row torch2.2 python3.11 "torch==2.2.*" "torchvision==0.17.*" "numpy<2" "transformers==4.40.*"
[[ $want == all || $want == py3.10 ]] && run_row py3.10 "$PY310"
[[ $want == all || $want == py3.13 ]] && run_row py3.13 "$PY313"
exit 0
