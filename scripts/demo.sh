#!/usr/bin/env bash
# The demo from a fresh machine: install into .venv, then plan, preprocess, train SegResMamba briefly on
# the bundled Hippocampus cases, predict fold 0's validation cases and print their Dice.
# Arguments go to the demo (--work-dir DIR, --device cpu|cuda). About 10 minutes on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
nnunetv2-segresmamba-demo "$@"
