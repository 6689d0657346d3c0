"""Benchmark: ``genrekit prepare`` against a plain single-process librosa pipeline.

Run from the repository root::

    .venv/bin/python bench/prepare.py                      # the MP3 set, 3 rounds
    .venv/bin/python bench/prepare.py --sets mp3,fma,gtzan --rounds 1 --no-csv

Sets, from ``--data``: ``fma`` is the 48 FMA MP3s (44.1 kHz stereo, 24 min); ``gtzan`` the
87 GTZAN WAVs/AUs (22.05 and 16 kHz, 43 min); ``mp3`` (the default, for issue 13's target
of at least 25 minutes of MP3) is the 48 FMA MP3s plus the first 12 GTZAN tracks encoded
to MP3 once, into runs/bench_mp3/ (30 min). Both pipelines turn the same files into
128-band log-mel spectrograms at 22.05 kHz:

- genrekit: ``prepare()`` through the API with all cores (``--workers``), writing a fresh
  float16 cache in a temporary folder (decode, resample, log-mel, segment, shard files).
- librosa: ``librosa.load(sr=22050)``, ``librosa.feature.melspectrogram(n_mels=128)``
  (n_fft 2048, hop 512) and ``power_to_db(top_db=80)``, one file after another in one
  process, results kept in memory.

Each run is a fresh Python process, timed twice: ``work`` is the pipeline alone, after
its imports;
``total`` is the whole process from start to exit, imports and interpreter start-up
included: what someone running it waits for. The machine is shared, so rounds alternate
the pipelines, the best round of each counts, and the 1-minute load average is recorded.
Rows go to ``bench/results/prepare.csv``.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CSV_PATH = REPO / "bench" / "results" / "prepare.csv"
SETS = ("mp3", "fma", "gtzan")
MP3_DIR = REPO / "runs" / "bench_mp3"
EXTRA_GTZAN_MP3 = 12
FIELDS = ["date", "machine", "commit", "label", "set", "tracks", "audio_s", "pipeline", "workers", "work_s",
          "total_s", "import_s", "cpu_s", "audio_per_s_work", "audio_per_s_total", "speedup_work",
          "speedup_total", "load_avg_1m"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="shared data folder")
    p.add_argument("--sets", default="mp3", help="comma-separated: mp3, fma, gtzan (default mp3)")
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="genrekit processes (default: all cores)")
    p.add_argument("--rounds", type=int, default=3, help="runs of each pipeline; the best counts (default 3)")
    p.add_argument("--genrekit-src", type=Path, default=REPO,
                   help="folder holding the genrekit package to time (default: this checkout)")
    p.add_argument("--label", default="", help="note stored with the CSV rows (e.g. 'before')")
    p.add_argument("--machine", default=f"{os.cpu_count()}-core CPU (shared)")
    p.add_argument("--no-csv", action="store_true", help="do not append to bench/results/prepare.csv")
    p.add_argument("--child", choices=["genrekit", "librosa"], help=argparse.SUPPRESS)
    p.add_argument("--set", choices=SETS, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def open_set(name: str, data: Path):
    """The benchmark's tracks: the same reader for both pipelines."""
    from genrekit.datasets import open_dataset

    if name == "mp3":
        return open_dataset(f"manifest:{MP3_DIR / 'manifest.csv'}")
    if name == "fma":
        return open_dataset(f"fma:{data / 'fma_small'}", metadata=data / "fma_metadata" / "labels.csv")
    return open_dataset(f"gtzan:{data}", splits=data / "gtzan_labels.csv")


def make_mp3_set(data: Path) -> Path:
    """The FMA MP3s plus GTZAN tracks encoded to MP3 (once), listed in a manifest."""
    import soundfile as sf

    MP3_DIR.mkdir(parents=True, exist_ok=True)
    rows = [(p, "fma") for p in sorted((data / "fma_small").glob("*/*.mp3"))]
    for wav in sorted((data / "gtzan").glob("*/*.wav"))[:EXTRA_GTZAN_MP3]:
        mp3 = MP3_DIR / f"{wav.stem}.mp3"
        if not mp3.is_file():
            y, sr = sf.read(wav, dtype="float32")
            sf.write(mp3, y, sr, format="MP3")
        rows.append((mp3, "gtzan"))
    manifest = MP3_DIR / "manifest.csv"
    manifest.write_text("path,label\n" + "".join(f"{p},{label}\n" for p, label in rows))
    return manifest


def cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def child_genrekit(args, started: float) -> dict:
    from genrekit.cache import prepare

    dataset = open_set(args.set, args.data)
    imported = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cpu = cpu_seconds()
        start = time.perf_counter()
        summary = prepare(dataset, Path(tmp) / "cache", workers=args.workers, progress=False)
        work = time.perf_counter() - start
        cpu = cpu_seconds() - cpu
    if summary.failed or summary.done != len(dataset.tracks):
        raise SystemExit(f"genrekit prepare failed: {summary.report()}")
    return {"tracks": summary.done, "audio_s": summary.audio_seconds, "import_s": imported - started,
            "work_s": work, "cpu_s": cpu}


def child_librosa(args, started: float) -> dict:
    import librosa
    import numpy as np

    paths = [t.path for t in open_set(args.set, args.data).tracks]
    imported = time.perf_counter()
    cpu = cpu_seconds()
    start = time.perf_counter()
    features, audio_s = [], 0.0
    for path in paths:
        y, sr = librosa.load(path, sr=22050)
        power = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=2048, hop_length=512, n_mels=128)
        features.append(librosa.power_to_db(power, top_db=80.0).astype(np.float16))
        audio_s += len(y) / sr
    work = time.perf_counter() - start
    return {"tracks": len(features), "audio_s": audio_s, "import_s": imported - started, "work_s": work,
            "cpu_s": cpu_seconds() - cpu}


def run_child(args, pipeline: str, name: str) -> dict:
    """One pipeline on one set in a fresh process; adds the process's wall time."""
    command = [sys.executable, __file__, "--child", pipeline, "--set", name, "--data", str(args.data),
               "--workers", str(args.workers)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(args.genrekit_src),
                                                                     os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    total = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{pipeline} on {name} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result | {"total_s": total, "load_avg_1m": os.getloadavg()[0]}


def commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout
        dirty = subprocess.run(["git", "status", "--porcelain", "genrekit"], capture_output=True, text=True,
                               cwd=REPO).stdout
        return sha.strip() + ("+dirty" if dirty.strip() else "")
    except OSError:
        return "?"


def best_of(args, name: str) -> dict[str, dict]:
    """Each pipeline ``rounds`` times, alternating; the round with the least work time counts."""
    runs: dict[str, list[dict]] = {"librosa": [], "genrekit": []}
    for r in range(args.rounds):
        for pipeline in (("librosa", "genrekit") if r % 2 == 0 else ("genrekit", "librosa")):
            result = run_child(args, pipeline, name)
            runs[pipeline].append(result)
            print(f"  {name} round {r + 1} {pipeline:8s}: work {result['work_s']:6.2f} s, "
                  f"total {result['total_s']:6.2f} s, load {result['load_avg_1m']:.1f}", flush=True)
    return {p: min(rs, key=lambda x: x["work_s"]) for p, rs in runs.items()}


def rows_for(args, name: str, best: dict[str, dict]) -> list[dict]:
    base = best["librosa"]
    rows = []
    for pipeline, r in best.items():
        rows.append({
            "date": datetime.now().strftime("%Y-%m-%dT%H:%M:%S"), "machine": args.machine, "commit": commit(),
            "label": args.label, "set": name, "tracks": r["tracks"], "audio_s": round(r["audio_s"], 1),
            "pipeline": pipeline, "workers": args.workers if pipeline == "genrekit" else 1,
            "work_s": round(r["work_s"], 2), "total_s": round(r["total_s"], 2), "import_s": round(r["import_s"], 2),
            "cpu_s": round(r["cpu_s"], 2), "audio_per_s_work": round(r["audio_s"] / r["work_s"]),
            "audio_per_s_total": round(r["audio_s"] / r["total_s"]),
            "speedup_work": round(base["work_s"] / r["work_s"], 2),
            "speedup_total": round(base["total_s"] / r["total_s"], 2), "load_avg_1m": round(r["load_avg_1m"], 2)})
    return rows


def print_table(rows: list[dict]) -> None:
    head = (f"{'set':6s} {'pipeline':9s} {'tracks':>6s} {'audio s':>8s} | {'work s':>7s} {'audio s/s':>9s} "
            f"{'x librosa':>9s} | {'total s':>7s} {'audio s/s':>9s} {'x librosa':>9s} | {'imports':>7s} {'CPU s':>6s}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['set']:6s} {r['pipeline']:9s} {r['tracks']:6d} {r['audio_s']:8.0f} | {r['work_s']:7.2f} "
              f"{r['audio_per_s_work']:9d} {r['speedup_work']:9.2f} | {r['total_s']:7.2f} "
              f"{r['audio_per_s_total']:9d} {r['speedup_total']:9.2f} | {r['import_s']:7.2f} {r['cpu_s']:6.2f}")


def append_csv(rows: list[dict]) -> None:
    CSV_PATH.parent.mkdir(parents=True, exist_ok=True)
    new = not CSV_PATH.exists()
    with open(CSV_PATH, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def main(argv=None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    if args.child:
        result = (child_genrekit if args.child == "genrekit" else child_librosa)(args, started)
        print(json.dumps(result))
        return 0
    names = [s.strip() for s in args.sets.split(",") if s.strip()]
    if not set(names) <= set(SETS):
        raise SystemExit(f"--sets takes {SETS}, not {args.sets!r}")
    print(f"genrekit from {args.genrekit_src}, {args.workers} workers, {args.rounds} rounds, data {args.data}")
    if "mp3" in names:
        make_mp3_set(args.data)
    rows = []
    for name in names:
        rows += rows_for(args, name, best_of(args, name))
    print()
    print_table(rows)
    if not args.no_csv:
        append_csv(rows)
        print(f"appended {len(rows)} rows to {CSV_PATH.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
