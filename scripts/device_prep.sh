#!/usr/bin/env bash
# Prepares, on this machine, what a GPU session carries to the device machine (the tool library's `device`):
# the wheels its python lacks (the demo corpus) and the demo model, in two git-ignored folders.
#
#   bash scripts/device_prep.sh
#   then, with the device tool:  run(command="bash scripts/device_check.sh", carry=[".whl", ".devcache"],
#                                    timeout_s=540)
#
# The device's image already holds torch (CUDA), transformers, safetensors, tokenizers, filelock, scipy, numpy,
# pandas, pyyaml, tqdm and pytest; it cannot fetch anything. SmolLM2's weights (94 MB GGUF, 270 MB as bf16) do not
# fit the 64 MiB that a call carries: SmolLM2 is timed there as its architecture with random weights
# (bench.scale_bench --sizes smollm2), which costs the same compute and memory.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
for d in /.whl/ /.devcache/; do grep -qxF "$d" .git/info/exclude 2>/dev/null || echo "$d" >> .git/info/exclude; done
rm -rf .whl .devcache && mkdir -p .whl .devcache/models
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 -d .whl chatterbot-corpus==1.3.3
$PY -m bif --cache "${BIF_CACHE:-cache}" demo > /dev/null  # builds the demo model here once if needed
cp -r "${BIF_CACHE:-cache}"/models/demo-s0-v* .devcache/models/
du -sh .whl .devcache
echo "ready: carry .whl and .devcache; command: bash scripts/device_check.sh"
