"""Benchmark: ``prepare`` on a local Ray vs the single-machine ``prepare``, same files, all cores.

Run from the repository root::

    .venv/bin/python bench/prepare_ray.py              # all of ../shared/data, 4 times over
    .venv/bin/python bench/prepare_ray.py --repeat 1 --no-csv

The data set is every GTZAN WAV and FMA MP3 under ``--data`` (123 files), listed
``--repeat`` times under distinct track ids so the run is long enough to time. Both
engines write a fresh cache of the same tracks, with all cores. The Ray time is given
twice: end to end as ``genrekit prepare --engine ray`` without ``--address`` pays it
(``ray.init`` + tasks + ``ray.shutdown``), and ``prepare_ray`` alone with Ray already up
(what a job on a running cluster pays; worker processes still start cold).

Before that, every file is featurized once on one core in this process (one BLAS
thread): the core-seconds per MP3 clip. The projection for FMA large uses that cost,
scaled by the CPU-s per track measured inside the Ray tasks, and Ray's core utilisation
(CPU-s of the work / (wall x cores)) relative to the local engine's in the same run, so
the load of other users on a shared machine cancels out. A row is appended to
``bench/results/prepare_ray.csv`` and the projection is printed with its arithmetic.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from results_csv import append_rows, cpu_model

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))  # Ray workers

from genrekit.cache import FeatureCache, PrepareOptions, featurize_track, prepare  # noqa: E402
from genrekit.config import FeatureConfig  # noqa: E402
from genrekit.datasets import open_dataset  # noqa: E402
from genrekit.datasets.base import Dataset  # noqa: E402

FMA_LARGE_CLIPS = 106_574
FMA_LARGE_BYTES = 93e9
CSV_PATH = REPO / "bench" / "results" / "prepare_ray.csv"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="shared data folder")
    p.add_argument("--repeat", type=int, default=4, help="times every file is listed (default 4)")
    p.add_argument("--tracks-per-task", type=int, default=16)
    p.add_argument("--cpus", type=int, default=os.cpu_count(), help="cores for both engines (default: all)")
    p.add_argument("--nodes", default="1,4,16,64", help="cluster sizes for the projection")
    p.add_argument("--no-csv", action="store_true", help="do not append to bench/results/prepare_ray.csv")
    return p.parse_args(argv)


def load_tracks(data: Path, repeat: int) -> Dataset:
    gtzan = open_dataset(f"gtzan:{data}", splits=data / "gtzan_labels.csv").tracks
    fma = open_dataset(f"fma:{data / 'fma_small'}", metadata=data / "fma_metadata" / "labels.csv").tracks
    base = gtzan + fma
    tracks = [replace(t, track_id=f"{t.track_id}~{r}") for r in range(repeat) for t in base]
    return Dataset("bench", str(data), tracks)


def warm_page_cache(dataset: Dataset) -> int:
    return sum(len(Path(p).read_bytes()) for p in {t.path for t in dataset.tracks})


def single_core_seconds(dataset: Dataset, config: FeatureConfig) -> dict[str, float]:
    """Core-seconds per clip by file type, each distinct file featurized once on one thread."""
    from threadpoolctl import threadpool_limits

    limits = threadpool_limits(1)
    featurize_track(dataset.tracks[0], config, PrepareOptions())  # imports and first-call costs
    spent: dict[str, list[float]] = {}
    for track in {t.path: t for t in dataset.tracks}.values():
        start = time.process_time()
        featurize_track(track, config, PrepareOptions())
        spent.setdefault(Path(track.path).suffix.lstrip("."), []).append(time.process_time() - start)
    limits.restore_original_limits()
    return {kind: sum(v) / len(v) for kind, v in spent.items()}


def run_local(dataset, out, cpus):
    """``(wall seconds, summary, CPU seconds of this process and its worker processes)``."""
    import resource

    before = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    start = time.perf_counter()
    summary = prepare(dataset, out, workers=cpus, progress=False)  # its pool is shut down and reaped on return
    wall = time.perf_counter() - start
    after = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime for a, b in zip(after, before))
    return wall, summary, cpu


def run_ray(dataset, out, cpus, tracks_per_task):
    import ray

    from genrekit.cache.ray import prepare_ray

    start = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    up = time.perf_counter()
    summary = prepare_ray(dataset, out, progress=False, tracks_per_task=tracks_per_task)
    done = time.perf_counter()
    ray.shutdown()
    return {"total": time.perf_counter() - start, "init": up - start, "prepare": done - up, "summary": summary}


def projection(core_s_per_clip: float, utilisation: float, startup_s: float, nodes: list[int]) -> list[str]:
    """FMA large on N 16-core workers, from the measured per-core cost and core utilisation."""
    per_node = 16 * utilisation / core_s_per_clip  # clips per second per node
    clip_bytes = FMA_LARGE_BYTES / FMA_LARGE_CLIPS
    out_bytes = 10 * 128 * 129 * 2  # default features: 10 segments x 128 mels x 129 frames, float16
    lines = [f"FMA large: {FMA_LARGE_CLIPS} clips x 30 s, {FMA_LARGE_BYTES / 1e9:.0f} GB MP3 in, "
             f"{FMA_LARGE_CLIPS * out_bytes / 1e9:.1f} GB of float16 features out",
             f"per node: 16 cores x {utilisation:.2f} utilisation / {core_s_per_clip:.4f} core-s per clip"
             f" = {per_node:.0f} clips/s  (reads {per_node * clip_bytes / 1e6:.0f} MB/s, writes "
             f"{per_node * out_bytes / 1e6:.0f} MB/s)"]
    for n in nodes:
        seconds = FMA_LARGE_CLIPS / (n * per_node) + startup_s
        lines.append(f"  N={n:3d}: {FMA_LARGE_CLIPS} / ({n} x {per_node:.0f}) + {startup_s:.0f} s start"
                     f" = {seconds:7.0f} s = {seconds / 60:6.1f} min")
    return lines


def write_csv_row(row: dict) -> None:
    append_rows(CSV_PATH, [row])


def main(argv=None) -> int:
    args = parse_args(argv)
    config = FeatureConfig()
    dataset = load_tracks(args.data, args.repeat)
    n_files = len({t.path for t in dataset.tracks})
    print(f"{len(dataset.tracks)} tracks ({n_files} files x {args.repeat}), {warm_page_cache(dataset) / 1e6:.0f} MB "
          f"read to warm the page cache; {args.cpus} cores; load average {os.getloadavg()[0]:.2f}")
    per_clip = single_core_seconds(dataset, config)
    print("single core, per clip: " + ", ".join(f"{k} {v:.4f} core-s" for k, v in sorted(per_clip.items())))

    with tempfile.TemporaryDirectory(prefix="genrekit-bench-") as tmp:
        local_s, local, local_cpu = run_local(dataset, Path(tmp) / "local", args.cpus)
        ray_run = run_ray(dataset, Path(tmp) / "ray", args.cpus, args.tracks_per_task)
        same = len(FeatureCache(Path(tmp) / "local")) == len(FeatureCache(Path(tmp) / "ray")) == local.done
    rs = ray_run["summary"]
    audio = local.audio_seconds
    rows = [("local prepare", local_s), ("ray end to end (init+tasks+shutdown)", ray_run["total"]),
            ("ray prepare_ray, Ray already up", ray_run["prepare"])]
    print(f"\n{'engine':40s} {'seconds':>8s} {'tracks/s':>9s} {'audio s/s':>10s} {'local/this':>10s}")
    for name, seconds in rows:
        print(f"{name:40s} {seconds:8.1f} {local.done / seconds:9.1f} {audio / seconds:10.0f} "
              f"{local_s / seconds:10.2f}")
    utilisation = rs.task_cpu_seconds / (ray_run["prepare"] * args.cpus)
    local_utilisation = local_cpu / (local_s * args.cpus)
    relative = min(1.0, utilisation / local_utilisation)
    task_per_track = rs.task_cpu_seconds / max(rs.done, 1)
    mixed_single = sum(per_clip.get(Path(t.path).suffix.lstrip("."), 0) for t in dataset.tracks) / len(dataset.tracks)
    print(f"\nray: {rs.tasks} tasks of {args.tracks_per_task}; {rs.task_seconds:.1f} worker-s busy, "
          f"{rs.task_cpu_seconds:.1f} CPU-s in tasks = {task_per_track:.4f} core-s per track (single core "
          f"in-process, same tracks: {mixed_single:.4f}); ray.init {ray_run['init']:.1f} s; caches agree: {same}")
    print(f"core utilisation = CPU-s of the work / (wall x {args.cpus} cores): ray (in tasks) {rs.task_cpu_seconds:.1f}"
          f" / {ray_run['prepare'] * args.cpus:.1f} = {utilisation:.2f}; local prepare {local_cpu:.1f} / "
          f"{local_s * args.cpus:.1f} = {local_utilisation:.2f}; ray relative to local {relative:.2f}")
    core_s = per_clip.get("mp3", mixed_single) * task_per_track / mixed_single  # MP3 cost inside a Ray task
    print(f"\nprojection, MP3 core-s per clip inside a task = {per_clip.get('mp3', 0):.4f} x {task_per_track:.4f} / "
          f"{mixed_single:.4f} = {core_s:.4f}")
    nodes = [int(n) for n in args.nodes.split(",")]
    print(f"with Ray's utilisation relative to local prepare as measured here ({relative:.2f}; includes the cold "
          "start of the workers, which a long run amortises; other users' load cancels out):")
    for line in projection(core_s, relative, ray_run["init"], nodes):
        print(line)
    print("with every core busy (utilisation 1.00, the bound a long run approaches):")
    for line in projection(core_s, 1.0, ray_run["init"], nodes)[1:]:
        print(line)
    if not args.no_csv:
        per_node = 16 * relative / core_s
        write_csv_row({
            "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "host": platform.node(), "cpus": args.cpus,
            "cpu_model": cpu_model(), "load_avg_1m": round(os.getloadavg()[0], 2), "tracks": local.done,
            "repeat": args.repeat, "tracks_per_task": args.tracks_per_task, "audio_s": round(audio, 1),
            "local_s": round(local_s, 2), "local_tracks_per_s": round(local.done / local_s, 2),
            "local_audio_x": round(audio / local_s), "ray_total_s": round(ray_run["total"], 2),
            "ray_init_s": round(ray_run["init"], 2), "ray_prepare_s": round(ray_run["prepare"], 2),
            "ray_tracks_per_s": round(rs.done / ray_run["prepare"], 2),
            "ray_audio_x": round(audio / ray_run["prepare"]),
            "local_over_ray_total": round(local_s / ray_run["total"], 3),
            "local_over_ray_prepare": round(local_s / ray_run["prepare"], 3),
            "ray_task_busy_s": round(rs.task_seconds, 2),
            "ray_task_cpu_s": round(rs.task_cpu_seconds, 2),
            "ray_utilisation": round(utilisation, 3), "local_utilisation": round(local_utilisation, 3),
            "ray_relative_utilisation": round(relative, 3), "mp3_core_s_single": round(per_clip.get("mp3", 0), 4),
            "mp3_core_s_in_task": round(core_s, 4), "fma_large_min_1x16": round(FMA_LARGE_CLIPS / per_node / 60, 1),
            "fma_large_min_16x16": round(FMA_LARGE_CLIPS / (16 * per_node) / 60, 1), "caches_agree": same,
        })
        print(f"\nrow appended to {CSV_PATH.relative_to(REPO)}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
