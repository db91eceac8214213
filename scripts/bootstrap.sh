#!/usr/bin/env bash
# Create .venv with Python 3.11 and install minewatch (and its compiled reader) into it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(command -v python3.11 || true)
if [ -z "$PY" ]; then
  bash scripts/apt-need.sh python3.11:python3.11 && PY=$(command -v python3.11)
fi
# A C compiler and the Python headers build the packet reader.
bash scripts/apt-need.sh cc:gcc
"$PY" - <<'PYEOF' || bash scripts/apt-need.sh /usr/include/python3.11/Python.h:python3.11-dev
import os, sysconfig, sys
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)
PYEOF
"$PY" -m venv --help >/dev/null 2>&1 || bash scripts/apt-need.sh /usr/lib/python3.11/venv:python3.11-venv
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
.venv/bin/minewatch --version
