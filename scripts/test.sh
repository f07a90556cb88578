#!/usr/bin/env bash
# The test command: installs what the tests need (requirements.lock into .venv; Debian's chromium for the browser test),
# then runs the whole suite, slow end-to-end tests included.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing Debian's chromium for the browser test…"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
PY="${UEO_VENV:-.venv}/bin/python"   # the environment setup.sh made from requirements.lock
"$PY" -m pytest "$@"
