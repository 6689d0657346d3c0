"""Prediction speed with the shipped model: warm latency, cold CLI, throughput, side by side for
onnxruntime's thread count and the chunk of segments per graph run (memory).

Usage: python bench/predict.py [--model M] [--no-csv]

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


def cold_cli(path, model_arg) -> float:
    cmd = [sys.executable, "-m", "genrekit", "predict", str(path), "--quiet"] + model_arg
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


VARIANTS = [("default threads, chunk 2 (shipped)", None, 2), ("1 thread, chunk 2", 1, 2),
            ("default threads, chunk 8", None, 8)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", help="model file (default: the shipped model)")
    parser.add_argument("--no-csv", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from genrekit.prediction import load_model

    files = sorted((DATA / "fma_small").rglob("*.mp3"))
    clip = files[0]
    model_arg = ["--model", args.model] if args.model else []
    rows = []
    cold = cold_cli(clip, model_arg)
    for name, threads, chunk in VARIANTS:
        model = load_model(args.model, threads=threads)
        model.network.chunk = chunk
        rows.append({"variant": name, "model": model.model_id, "warm_s_per_clip": round(warm_latency(model, clip), 3),
                     "cold_cli_s": round(cold, 2), "tracks_per_s": round(throughput(model, files), 2),
                     "n_files": len(files), "machine": f"{os.cpu_count()}-core CPU",
                     "load_avg_1m": round(os.getloadavg()[0], 2), "date": time.strftime("%Y-%m-%d")})
    print(f"{'variant':36}{'warm s/clip':>12}{'tracks/s':>10}   ({len(files)} FMA MP3s of 30 s; "
          f"cold CLI {cold:.2f} s; targets warm <= 0.3 s, cold <= 5 s)")
    for r in rows:
        print(f"{r['variant']:36}{r['warm_s_per_clip']:12.3f}{r['tracks_per_s']:10.2f}")
    if not args.no_csv:
        append_rows(REPO / "bench" / "results" / "predict.csv", rows)


if __name__ == "__main__":
    main()
