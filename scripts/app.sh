#!/usr/bin/env bash
# Set up (first time: installs requirements.lock into .venv) and start UEO Studio on the built-in Shapes sample.
# Runs are jobs on Ray: the operator's cluster when UEO_RAY_ADDRESS (or RAY_ADDRESS) is set, else a local Ray on
# this machine (UEO_SLOTS runs at once; started once, and found again after a restart of the web server).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY="${UEO_VENV:-.venv}/bin/python"   # the environment setup.sh made from requirements.lock
"$PY" -m ueo_core cluster up
exec "$PY" -m streamlit run app.py "$@"
