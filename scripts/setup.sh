#!/usr/bin/env bash
# Installs what UEO Studio needs into the current Python (idempotent: a few seconds when already installed).
# torch/torchvision are pinned in requirements.txt: unpinned, pip pulls a newer multi-GB build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip install -q --disable-pip-version-check -r requirements.txt 2>&1 | grep -v "Running pip as the 'root' user" || true
"$PY" -c "import torch, torchvision, open_clip, sklearn, umap, safetensors, streamlit, plotly" \
  || { echo "setup failed: packages missing after pip install" >&2; exit 1; }
