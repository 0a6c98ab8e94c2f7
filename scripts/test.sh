#!/usr/bin/env bash
# The project's test command: install into .venv (scripts/setup_env.sh), then run every test.
# GPU tests skip themselves (with the reason) on machines without a CUDA GPU or mamba-ssm.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
python -m pytest -q -rs "$@"
