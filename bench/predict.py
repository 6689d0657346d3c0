"""Prediction speed with the shipped model: warm latency, cold CLI, throughput, side by side for the
graph's export, onnxruntime's thread count and the chunk of segments per graph run (none changes a
number: each variant's probabilities are checked against the first's within 1e-4). numpy's BLAS runs
on one thread for the features in every variant (genrekit.features.one_blas_thread); rows before
2026-12-02 in bench/results/predict.csv compare that setting with numpy's default ("blas1").

Usage: python bench/predict.py [--model M] [--fast-model F] [--versus OTHER] [--repeats 9] [--no-csv]

Variants (ratio: warm latency / the first row's, measured round-robin so that a busy machine weighs on
all of them alike):

- "--model": the model file (--model, default the shipped one) as it is;
- ``re-exported``: the same model with its musicnn network traced by this version's export
  (tools/reexport_network.py), given by --fast-model or made in memory (needs torch); --model itself
  when its graph is re-exported already, as the shipped files are since 2026-12-02. To measure the
  re-export, pass a graph of genrekit <= 0.1.0 as --model and the shipped file as --fast-model;
- 1 thread / chunk 8: onnxruntime settings;
- ``versus <file>`` (with --versus): another model, e.g. ``configs/gtzan_two_networks.yaml``'s, to
  see what a second network costs on this machine (its cold CLI time is not measured).

The first variant is also timed apart: the share of its warm time spent in the network's runs,
against decoding, features and the head (printed, not in the CSV).

Files: the FMA MP3s (30 s clips) in ../shared/data. Prints a side-by-side table and appends rows to
bench/results/predict.csv. Targets: warm <= 0.3 s per 30 s clip, cold CLI <= 5 s.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from results_csv import append_rows, machine

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))

# name, model ("shipped" or "fast"), intra-op threads, chunk
VARIANTS = [("--model", "shipped", None, 2),
            ("re-exported", "fast", None, 2),
            ("re-exported, chunk 8", "fast", None, 8),
            ("re-exported, 1 thread", "fast", 1, 2)]


def cold_cli(path, model_arg) -> float:
    cmd = [sys.executable, "-m", "genrekit", "predict", str(path), "--quiet"] + model_arg
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build(spec, sources: dict):
    """The variant's loaded model, with its speed settings."""
    from genrekit.prediction import GenreClassifier
    from genrekit.runtime import OnnxNetwork

    _, kind, threads, chunk = spec
    network = OnnxNetwork(sources[kind], threads=threads, chunk=chunk)
    return GenreClassifier(network, network.metadata, str(sources["shipped"]))


def warm_latencies(models: dict, clip, repeats: int) -> dict:
    """Median seconds per ``predict_file(clip)`` of each model, measured round-robin."""
    for model in models.values():
        model.predict_file(clip)  # warm-up
    times = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            start = time.perf_counter()
            model.predict_file(clip)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def network_share(model, clip, repeats: int) -> tuple[float, float]:
    """Median ``(seconds per predict_file(clip), of which in the network's runs)``: what a faster CPU
    or a cheaper network could change, against decoding, features and the head."""
    original, spent, rows = model.network.run, [], []

    def timed(*args, **kwargs):
        start = time.perf_counter()
        out = original(*args, **kwargs)
        spent.append(time.perf_counter() - start)
        return out

    model.network.run = timed
    try:
        for _ in range(repeats):
            spent.clear()
            start = time.perf_counter()
            model.predict_file(clip)
            rows.append((time.perf_counter() - start, sum(spent)))
    finally:
        model.network.run = original
    return statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)


def throughput(model, files) -> float:
    start = time.perf_counter()
    results = list(model.predict_files(files))
    return len(results) / (time.perf_counter() - start)


def check_equal(models: dict, clip) -> float:
    """The largest difference of any probability from the first variant's (must be <= 1e-4)."""
    results = [m.predict_file(clip) for m in models.values()]
    diff = max(abs(r.probabilities[k] - results[0].probabilities[k]) for r in results for k in r.probabilities)
    if diff > 1e-4 or any(r.genre != results[0].genre for r in results):
        raise SystemExit(f"variants disagree: probabilities differ by {diff:.2g}")
    return diff


def sources(args) -> dict:
    """The model files: "shipped" (--model) and "fast" (re-exported; --model itself when its graph is
    the re-exported one already)."""
    import onnx

    shipped = Path(args.model) if args.model else REPO / "genrekit" / "weights" / "genrekit-gtzan.onnx"
    if args.fast_model:
        return {"shipped": shipped, "fast": Path(args.fast_model)}
    if "MaxPool" in {node.op_type for node in onnx.load(shipped).graph.node}:
        return {"shipped": shipped, "fast": shipped}
    from genrekit.export import reexport_musicnn  # needs torch (genrekit[train])

    return {"shipped": shipped, "fast": reexport_musicnn(shipped)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", help="model file (default: the shipped model)")
    parser.add_argument("--fast-model", help="the same model re-exported (default: re-exported in memory)")
    parser.add_argument("--versus", help="another model file (e.g. one with two networks), measured round-robin with "
                        "the variants and shown as one more row; its probabilities are not compared")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--no-csv", action="store_true")
    args = parser.parse_args()
    files = sorted((DATA / "fma_small").rglob("*.mp3"))
    clip = files[0]
    cold = cold_cli(clip, ["--model", args.model] if args.model else [])
    src = sources(args)
    models = {spec[0]: build(spec, src) for spec in VARIANTS}
    diff = check_equal(models, clip)
    if args.versus:
        from genrekit.prediction import load_model

        models[f"versus {Path(args.versus).name}"] = load_model(args.versus)
    warm = warm_latencies(models, clip, args.repeats)
    split = network_share(next(iter(models.values())), clip, args.repeats)
    rate = {name: throughput(model, files) for name, model in models.items()}
    rows = [{"variant": name, "model": models[name].model_id, "warm_s_per_clip": round(warm[name], 3),
             "cold_cli_s": "" if name.startswith("versus ") else round(cold, 2),
             "tracks_per_s": round(rate[name], 2), "n_files": len(files), "machine": machine(),
             "load_avg_1m": round(os.getloadavg()[0], 2), "date": time.strftime("%Y-%m-%d")} for name in models]
    report(rows, cold, len(files), diff)
    print(f"first row, timed apart: {split[0]:.3f} s per clip, of which the network {split[1]:.3f} s "
          f"({split[1] / split[0]:.0%}); decoding, features and the head {split[0] - split[1]:.3f} s")
    if not args.no_csv:
        append_rows(REPO / "bench" / "results" / "predict.csv", rows)


def report(rows: list, cold: float, n_files: int, diff: float) -> None:
    base = rows[0]
    print(f"{'variant':32}{'warm s/clip':>12}{'ratio':>7}{'tracks/s':>10}{'ratio':>7}   ({n_files} FMA MP3s of 30 s; "
          f"cold CLI {cold:.2f} s; targets warm <= 0.3 s, cold <= 5 s)")
    for r in rows:
        print(f"{r['variant']:32}{r['warm_s_per_clip']:12.3f}{r['warm_s_per_clip'] / base['warm_s_per_clip']:7.2f}"
              f"{r['tracks_per_s']:10.2f}{r['tracks_per_s'] / base['tracks_per_s']:7.2f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"largest probability difference from the first row: {diff:.1g}; peak RSS of this process {peak:.0f} MiB "
          f"(all {len(rows)} models loaded); load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
