#!/usr/bin/env bash
# Run HERE (a machine with PyPI), once: fills .whl/ with what a bare, offline GPU machine lacks
# (Python 3.12, x86_64): nnU-Net and its missing dependencies as wheels, SimpleITK as an xz tarball of
# its installed files (29 MB instead of a 53 MB wheel), and mamba-ssm's sdist (it ships no wheel).
# .whl/ is git-ignored; name it in the device tool's `carry`. See docs/gpu.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
mkdir -p .whl/sdist
grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
PLATFORMS="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64"
# Binary wheels for cp312.
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PLATFORMS -d .whl \
  blosc2==4.14.1 numexpr ndindex pydantic==2.14.4 pydantic-core==2.50.5 annotated-types typing-inspection \
  nibabel connected-components-3d
# Pure-Python packages published as sdists only: build their (py3-none-any) wheels here.
$PY -m pip wheel -q --no-deps -w .whl nnunetv2==2.8.1 acvl-utils==0.2.6 batchgenerators==0.25.5 \
  batchgeneratorsv2==0.3.6 dynamic-network-architectures==0.4.4
# SimpleITK: unpack the wheel and keep its installed files as one xz tarball.
if [ ! -f .whl/simpleitk.tar.xz ]; then
  tmp=$(mktemp -d)
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PLATFORMS \
    -d "$tmp" simpleitk==2.5.7
  (cd "$tmp" && $PY -m zipfile -e simpleitk-*.whl site && tar -C site -cJf simpleitk.tar.xz .)
  mv "$tmp/simpleitk.tar.xz" .whl/ && rm -rf "$tmp"
fi
# mamba-ssm's sdist (reading its metadata runs its setup.py, which imports torch: use an env with torch).
[ -f .whl/sdist/mamba_ssm-2.3.2.post1.tar.gz ] || MAMBA_SKIP_CUDA_BUILD=TRUE $PY -m pip download -q --no-deps --no-build-isolation --no-binary=:all: \
  -d .whl/sdist mamba-ssm==2.3.2.post1
du -sh .whl
