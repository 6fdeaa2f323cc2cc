#!/usr/bin/env bash
# One command from a fresh clone to the app on the demo: install, build the demo model, open the app.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
bash scripts/setup.sh requirements.txt
.venv/bin/python -m bif demo            # trains the tiny demo model once (~2 min on 2 cores), then cached
exec .venv/bin/streamlit run app.py "$@"
