"""scripts/gpu_check.py stays runnable: a tiny CPU run checks outputs and writes its JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.py"


def test_gpu_check_runs_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--batches", "1,16", "--vocab", "64",
         "--hidden", "16", "--embed", "8", "--window", "6", "--seconds", "0.01",
         "--json", str(out)],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result["outputs_agree"] is True
    assert result["agreement"]["stream_max_abs_diff"] < 1e-5  # streaming == window mode
    modes = {(r["mode"], r["batch"], r["precision"]) for r in result["rows"]}
    assert result["agreement"]["ragged_max_abs_diff"] < 1e-5  # same weights, same device
    assert modes == {(m, b, p) for m in ("window", "streaming", "streaming+io", "ragged")
                     for b in (1, 16) for p in ("fp32", "bf16")}
    assert all(r["predictions_per_s"] > 0 for r in result["rows"])
