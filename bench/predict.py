"""Prediction speed with the shipped model: warm latency, cold CLI, throughput; torch vs onnxruntime.

Usage: python bench/predict.py [--model M]

Files: the FMA MP3s (30 s clips) in ../shared/data. Prints a side-by-side table and
appends rows to bench/results/predict.csv. Targets: warm <= 0.3 s per 30 s clip,
cold CLI <= 5 s.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from results_csv import append_rows

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def warm_latency(model, path, repeats: int = 5) -> float:
    model.predict_file(path)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict_file(path)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def throughput(model, files) -> float:
    start = time.perf_counter()
    results = list(model.predict_files(files))
    return len(results) / (time.perf_counter() - start)


def cold_cli(path, runtime: str, model_arg) -> float:
    cmd = [sys.executable, "-m", "genrekit", "predict", str(path), "--runtime", runtime, "--quiet"] + model_arg
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", help="checkpoint (default: the shipped model)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from genrekit.prediction import load_model

    files = sorted((DATA / "fma_small").rglob("*.mp3"))
    clip = files[0]
    model_arg = ["--model", args.model] if args.model else []
    rows = []
    for runtime in ("torch", "onnx"):
        model = load_model(args.model, runtime=runtime)
        rows.append({"runtime": runtime, "model": model.model_id, "warm_s_per_clip": round(warm_latency(model, clip), 3),
                     "cold_cli_s": round(cold_cli(clip, runtime, model_arg), 2),
                     "tracks_per_s": round(throughput(model, files), 2), "n_files": len(files),
                     "machine": f"{os.cpu_count()}-core CPU", "date": time.strftime("%Y-%m-%d")})
    print(f"{'runtime':8}{'warm s/clip':>12}{'cold CLI s':>11}{'tracks/s':>10}   ({len(files)} FMA MP3s of 30 s)")
    for r in rows:
        print(f"{r['runtime']:8}{r['warm_s_per_clip']:12.3f}{r['cold_cli_s']:11.2f}{r['tracks_per_s']:10.2f}")
    print(f"onnxruntime / torch throughput: {rows[1]['tracks_per_s'] / rows[0]['tracks_per_s']:.2f}x")
    append_rows(REPO / "bench" / "results" / "predict.csv", rows)


if __name__ == "__main__":
    main()
