#!/usr/bin/env bash
# The GPU session's one call on the device machine (~8 minutes on one H200), after scripts/device_prep.sh here:
#   1. environment (nvidia-smi, torch, transformers)      -> $OUT/env.txt
#   2. pytest -m gpu tests/test_gpu.py (CUDA replay, large-model options, NCCL when 2+ GPUs) -> $OUT/pytest_gpu.txt
#   3. QUICK=1 scripts/gpu_bench.sh: demo runs on the GPU, torchrun = 1-process check, micro-benchmarks
#                                                         -> $OUT/gpu_bench.md, gpu_bench.log
#   4. bench.scale_bench models on the GPU: SGLD step, scoring per sequence, cost model and peak memory vs the
#      estimate for random-weight Llamas of published shapes (SmolLM2-135M, Llama-3.2-1B; SIZES= to change)
#                                                         -> $OUT/models.md, models.json
# Each part has its own time limit; the exit status is 1 if any failed. DEVICE=cpu runs it here as a dry run.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-device_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 BIF_CACHE=${BIF_CACHE:-.devcache}
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
if ls .whl/*.whl > /dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
DEVICE=${DEVICE:-cuda}
SIZES=${SIZES:-$( [ "$DEVICE" = cuda ] && echo xs,smollm2,1b || echo xs )}
rc=0
{ nvidia-smi 2>&1 | head -15; $PY -c "import sys, torch, transformers; print(sys.version.split()[0], 'torch', \
torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"; } > "$OUT/env.txt" 2>&1
timeout 180 $PY -m pytest -m gpu tests/test_gpu.py -p no:cacheprovider -o addopts="" -q > "$OUT/pytest_gpu.txt" 2>&1 \
  || { echo "pytest -m gpu failed (exit $?)" >> "$OUT/pytest_gpu.txt"; rc=1; }
QUICK=1 DEVICE=$DEVICE PYTHON=$PY timeout 330 bash scripts/gpu_bench.sh "$OUT" > /dev/null 2>&1 \
  || { echo "gpu_bench.sh failed (exit $?)" >> "$OUT/gpu_bench.md"; rc=1; }
timeout 240 $PY -m bench.scale_bench --only models --quick --device "$DEVICE" --sizes "$SIZES" --json "$OUT/models.json" \
  > "$OUT/models.md" 2>&1 || { echo "scale_bench failed (exit $?)" >> "$OUT/models.md"; rc=1; }
cat "$OUT/env.txt"; tail -3 "$OUT/pytest_gpu.txt"; cat "$OUT/gpu_bench.md" "$OUT/models.md"
exit $rc
