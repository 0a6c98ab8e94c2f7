#!/usr/bin/env bash
# Bootstrap a bare, offline GPU machine, then run a command in the prepared environment:
#
#   bash scripts/gpu_bootstrap.sh [-- COMMAND ...]
#
# 1. installs the wheels carried in .whl/ (made by scripts/gpu_prepare_carry.sh) into .gpu/site;
# 2. builds mamba-ssm from its sdist for THIS GPU's architecture only (its setup.py otherwise compiles
#    for nine; TORCH_CUDA_ARCH_LIST is ignored by it), about 2.5 minutes for sm_90 on 16 cores;
# 3. verifies: the CUDA scan kernel imports and runs, nnU-Net finds our trainers;
# 4. runs COMMAND with PYTHONPATH, PATH and nnUNet_extTrainer set.
# Steps 1-2 are skipped when .gpu/ already holds their results (a warm machine keeps ignored folders).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SITE="$ROOT/.gpu/site"
WHEELS="$ROOT/.whl"
PY=${PYTHON:-python3}
export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$SITE/bin:$PATH"
export PYTHONUNBUFFERED=1
start=$(date +%s)

if [ ! -f "$SITE/.installed" ]; then
  echo "[bootstrap] installing carried wheels into $SITE"
  mkdir -p "$SITE"
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl
  # SimpleITK may stay behind to make room for a prebuilt mamba-ssm wheel (64 MiB a call): then only
  # the network, its tests and the benchmarks work, not nnU-Net's CLI.
  if [ -f "$WHEELS/simpleitk.tar.xz" ]; then
    tar -xJf "$WHEELS/simpleitk.tar.xz" -C "$SITE"
  fi
  touch "$SITE/.installed"
fi

# A mamba-ssm wheel built on an earlier machine is ABI-bound to that torch and GPU architecture: it is kept
# (and looked for) under .whl/prebuilt/sm<arch>-torch<version>/, and used only where both match.
arch=$($PY -c "import torch; major, minor = torch.cuda.get_device_capability(); print(f'{major}{minor}')")
tag="sm$arch-torch$($PY -c "import torch; print(torch.__version__.replace('+', '_'))")"
prebuilt="$WHEELS/prebuilt/$tag"
if ! $PY -c "import torch, selective_scan_cuda" 2>/dev/null && ls "$prebuilt"/mamba_ssm-*.whl > /dev/null 2>&1; then
  echo "[bootstrap] installing the prebuilt mamba-ssm wheel for $tag"
  $PY -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "$prebuilt"/mamba_ssm-*.whl
fi
if ! $PY -c "import torch, selective_scan_cuda" 2>/dev/null; then
  echo "[bootstrap] building mamba-ssm for sm_$arch"
  build="$ROOT/.gpu/build"
  rm -rf "$build" && mkdir -p "$build"
  tar -xzf "$WHEELS"/sdist/mamba_ssm-*.tar.gz -C "$build"
  src=$(ls -d "$build"/mamba_ssm-*)
  # Keep only this GPU's architecture: drop every other "-gencode arch=..." pair of flags.
  $PY - "$src/setup.py" "$arch" <<'PYEOF'
import re, sys
path, arch = sys.argv[1], sys.argv[2]
text = open(path).read()
pattern = r'cc_flag\.append\("arch=compute_(\d+),code=sm_\d+"\)'
text = re.sub(pattern, lambda m: m.group(0) if m.group(1) == arch else "cc_flag.pop()  # other arch", text)
open(path, "w").write(text)
PYEOF
  export CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$(command -v nvcc)")")}
  (cd "$src" && MAMBA_FORCE_BUILD=TRUE MAX_JOBS=${MAX_JOBS:-16} $PY -m pip wheel -q --no-deps --no-build-isolation \
     -w "$ROOT/.gpu/wheels" . > "$ROOT/.gpu/mamba_build.log" 2>&1) || { tail -40 "$ROOT/.gpu/mamba_build.log"; exit 1; }
  $PY -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "$ROOT"/.gpu/wheels/mamba_ssm-*.whl
  if [ -n "${OUT:-}" ]; then  # bring the wheel home: copy it from $OUT to .whl/prebuilt/ for the next machine
    mkdir -p "$OUT/prebuilt/$tag" && cp "$ROOT"/.gpu/wheels/mamba_ssm-*.whl "$OUT/prebuilt/$tag/"
  fi
fi

export nnUNet_extTrainer=$($PY -m nnunetv2_segresmamba_ext)
# Trainer lookup first, in its own process: nnU-Net's lookup iterates sys.modules, and the lazy modules
# that mamba-ssm's import pulls in (transformers) can change it mid-iteration.
if $PY -c "import SimpleITK" 2>/dev/null; then
  $PY -c "from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as f; f('nnUNetTrainerSegResMamba')" > /dev/null
  found="trainers found"
else
  found="SimpleITK not carried: nnU-Net's CLI will not run"
fi
$PY - <<'PYEOF'
import torch
from nnunetv2_segresmamba.ssm import resolve_backend, selective_scan_cuda, selective_scan_reference
dev = torch.device("cuda")
assert resolve_backend(dev) == "cuda", "mamba-ssm did not import"
g = torch.Generator(device=dev).manual_seed(0)
u, delta = torch.randn(2, 8, 100, device=dev, generator=g), torch.randn(2, 8, 100, device=dev, generator=g)
A = -torch.rand(8, 16, device=dev, generator=g)
B, C = torch.randn(2, 1, 16, 100, device=dev, generator=g), torch.randn(2, 1, 16, 100, device=dev, generator=g)
out = selective_scan_cuda(u, delta, A, B, C)
ref = selective_scan_reference(*(t.double() for t in (u, delta, A, B, C)))
err = ((out.double() - ref).norm() / ref.norm()).item()
assert err < 1e-4, err
print(f"[bootstrap] verified on {torch.cuda.get_device_name()}: CUDA scan rel. error {err:.1e}")
PYEOF
echo "[bootstrap] $found"
echo "[bootstrap] ready after $(( $(date +%s) - start )) s"

if [ "${1:-}" = "--" ]; then
  shift
  exec "$@"
fi
