#!/usr/bin/env bash
# Create (or reuse) .venv and install this package into it, non-editable, so that its .pth hook
# registers our trainers with nnU-Net exactly as a user's `pip install` does. Source it:
#   source scripts/setup_env.sh
# torch and torchvision are pinned as a matching pair (nnunetv2 pulls torchvision through timm).
# Set SEGRESMAMBA_EXTRAS=test,energy (etc.) to add extras.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${SEGRESMAMBA_VENV:-$ROOT/.venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
python -m pip install -q --upgrade pip
python -c "import torch, torchvision" 2>/dev/null || python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
python -m pip install -q --upgrade "$ROOT[${SEGRESMAMBA_EXTRAS:-test}]"
