#!/usr/bin/env bash
# Installs UEO Studio's packages, at the exact versions of requirements.lock, into a virtual environment of its own:
# .venv in the project (or $UEO_VENV). Nothing installed elsewhere on the machine is used.
# Idempotent: when the environment already holds this lock, it only checks and returns (about a second).
#
# requirements.txt holds the human-readable ranges; requirements.lock is generated from it by pip-tools
# (see README, "Reproducible installs"). torch/torchvision are pinned: unpinned, pip pulls a newer multi-GB build.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${UEO_VENV:-.venv}
BASE_PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating the virtual environment $VENV…"
  "$BASE_PY" -m venv "$VENV"
fi
STAMP="$VENV/.ueo-lock.sha256"
WANT=$(sha256sum requirements.lock | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
  echo "installing requirements.lock into $VENV (a first install takes a few minutes)…"
  # --no-deps: the lock already lists every package; nothing outside it may come in.
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r requirements.lock 2>&1 \
    | grep -v -e "Running pip as the 'root' user" -e "is ignored: it is neither a file nor a directory" || true
  "$VENV/bin/python" -m pip check >/dev/null \
    || { "$VENV/bin/python" -m pip check >&2; echo "setup failed: the installed packages conflict (see above)" >&2; exit 1; }
  echo "$WANT" > "$STAMP"
fi
"$VENV/bin/python" -c "import torch, torchvision, open_clip, sklearn, umap, safetensors, streamlit, plotly, pillow_heif" \
  || { echo "setup failed: packages missing after pip install" >&2; exit 1; }
