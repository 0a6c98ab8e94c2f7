#!/usr/bin/env bash
# Create (or reuse) .venv and install this package into it, non-editable, so that its .pth hook
# registers our trainers with nnU-Net exactly as a user's `pip install` does. Source it:
#   source scripts/setup_env.sh
# torch and torchvision are pinned as a matching pair (nnunetv2 pulls torchvision through timm). On a machine
# without an NVIDIA GPU they come from PyTorch's CPU-only wheel index where it is reachable (the default Linux
# wheels bring CUDA's libraries, several GB), else from the default index. SEGRESMAMBA_TORCH=cpu or default
# forces one of the two.
# Set SEGRESMAMBA_EXTRAS=test,energy (etc.) to add extras.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${SEGRESMAMBA_VENV:-$ROOT/.venv}
TORCH_PIN=("torch==2.14.1" "torchvision==0.29.1")
CPU_INDEX=https://download.pytorch.org/whl/cpu
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
python -m pip install -q --upgrade pip

# Is the CPU wheel index answering? (5 s at most: a machine that reaches only PyPI must not wait.)
cpu_index_reachable() {
  python - "$CPU_INDEX/torch/" <<'EOF'
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=5).close()
except Exception:
    sys.exit(1)
EOF
}

install_torch() {
  local variant=${SEGRESMAMBA_TORCH:-auto}
  case "$variant" in
    auto|cpu|default) ;;
    *) echo "setup_env.sh: SEGRESMAMBA_TORCH=$variant: use auto, cpu or default" >&2; return 2 ;;
  esac
  if [ "$variant" = auto ]; then
    if command -v nvidia-smi >/dev/null 2>&1; then variant=default; else variant=cpu; fi
  fi
  if [ "$variant" = cpu ]; then
    if cpu_index_reachable && python -m pip install -q --index-url "$CPU_INDEX" "${TORCH_PIN[@]}"; then
      return
    fi
    echo "setup_env.sh: PyTorch's CPU wheel index ($CPU_INDEX) is not reachable or lacks ${TORCH_PIN[*]}:" \
         "installing the default wheels instead (on Linux these include CUDA's libraries)." >&2
  fi
  python -m pip install -q "${TORCH_PIN[@]}"
}

python -c "import torch, torchvision" 2>/dev/null || install_torch
python -m pip install -q --upgrade "$ROOT[${SEGRESMAMBA_EXTRAS:-test}]"
