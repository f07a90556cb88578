#!/usr/bin/env bash
# Set up (first time: installs requirements.txt) and start UEO Studio on the built-in Shapes sample.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY="${UEO_VENV:-.venv}/bin/python"   # the environment setup.sh made from requirements.lock
exec "$PY" -m streamlit run app.py "$@"
