"""The benchmark scripts that CI cannot time still have to run: a tiny CPU pass of each."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_training_throughput_script_runs_on_cpu():
    # bench/gpu_train_throughput.py is meant for a CUDA machine; this checks that it works at all
    cmd = [sys.executable, "bench/gpu_train_throughput.py", "--device", "cpu", "--backbone", "small_cnn",
           "--batch", "8", "--tracks", "8", "--bare-steps", "1", "--no-csv"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    lines = {line.split("  ")[0]: line for line in done.stdout.splitlines()}
    assert "genrekit training loop (cache)" in lines and "bare forward+backward (random)" in lines
    ratio = float(done.stdout.split("loop / bare:")[1].split()[0])
    assert ratio > 0
