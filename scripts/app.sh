#!/usr/bin/env bash
# Set up (first time: installs requirements.lock into .venv) and start UEO Studio on the built-in Shapes sample.
# Runs are jobs on Ray: the operator's cluster when UEO_RAY_ADDRESS (or RAY_ADDRESS) is set, else a local Ray on
# this machine (UEO_SLOTS runs at once; started once, and found again after a restart of the web server).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY="${UEO_VENV:-.venv}/bin/python"   # the environment setup.sh made from requirements.lock
"$PY" -m ueo_core cluster up
# A served app does not watch its own source: Streamlit's file watcher on a server filled its log with 32,000
# "Inotify queue overflowed" lines in 45 minutes. Developers who edit pages and want live reloads: UEO_WATCH=1.
WATCH=(--server.fileWatcherType none)
[ "${UEO_WATCH:-0}" = "1" ] && WATCH=()
exec "$PY" -m streamlit run app.py "${WATCH[@]}" "$@"
