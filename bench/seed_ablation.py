"""What the seed's 90 % was made of: input, scoring and split, ablated on DEV GTZAN (issue 16).

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python bench/seed_ablation.py [--data ../shared/data] [--folds 5]
        [--epochs 8] [--jobs 2] [--out runs/seed_ablation] [--n-boot 2000] [--no-csv]

One backbone and one recipe throughout: ``small_cnn`` from scratch (0.1 M parameters, the
only network this 2-core CPU trains in minutes), genrekit's own training loop
(:func:`genrekit.training.train`: AdaBound lr 1e-3, one-cycle, batch 32, loss weighted
by inverse class frequency as ``class_balance: auto`` decides), ``--epochs`` epochs, the
LAST epoch scored (no epoch is chosen on the fold it is scored on). What changes:

* **input** — the seed's STFT-dB (44.1 kHz, 1025 linear bins in dB re the clip's maximum,
  10 equal parts per 30 s clip) resized to 128 × 128; genrekit's default log-mel (22.05 kHz,
  128 mel bands, 10 × 3 s, 128 × 129); musicnn's input (16 kHz, 96-band log-mel, 96 × 187).
  The seed's parts are resized because at full size (1025 × 258, 16 times the pixels of a
  log-mel segment) small_cnn's cost grows with the pixels and the bench would take hours;
  128 × 128 gives all three inputs about the same number of pixels, so the comparison is of
  what the pixels hold, not of how many there are. The seed's own recipe resizes to 224 × 224
  (configs/seed_*.yaml);
* **scoring** — segment level (every 3 s part on its own) versus track level (the mean of
  a track's part probabilities, the seed's vote), on the same held-out predictions;
* **split** — the 87 tracks dealt into ``--folds`` folds by artist group, stratified by
  genre (:func:`genrekit.datasets.base.kfold_assign` over ``Track.group``, artists from
  ``bench/data/gtzan_dev_artists.csv``), versus — for the seed's input — a *random segment
  split*, as the seed made: every part is its own "track", so the parts of one clip fall on
  both sides. Each part is held out exactly once; its track-level figure averages the
  held-out parts of each track (each scored by a model trained on its other parts).

Every held-out prediction of the folds is pooled, then scored with
:func:`genrekit.metrics.classification_report`: balanced accuracy and macro-F1 with 95 %
bootstrap intervals, plain accuracy, per-genre recall. Intervals resample TRACKS (for
segment-level rows too: the parts of a clip are not independent), 2000 draws.

Resumable: caches are prepared with :func:`genrekit.cache.prepare` (which skips finished
tracks), each fold trains in its own folder and is continued with ``resume`` after an
interruption, and a finished fold's held-out predictions are stored beside it
(``predictions.npz``) and reused. Rows go to ``bench/results/seed_ablation.csv``; the
per-row reports (JSON) and the fold assignment to ``bench/results/seed_ablation/``.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from results_csv import append_rows, machine

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GENRES = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]
ARTISTS_CSV = REPO / "bench" / "data" / "gtzan_dev_artists.csv"
SEED_IMAGE = (128, 128)
ALL_SPLITS = ["train", "excluded"]  # the fault filter's two lists: all 87 tracks take part
PART = "#part"                      # track id of one part in the segment-split cache: <track>#partN


@dataclass(frozen=True)
class Input:
    name: str
    description: str

    def features(self):
        from genrekit.config import MUSICNN_FEATURES, SEED_FEATURES, FeatureConfig

        return {"seed_stft_db": dataclasses.replace(SEED_FEATURES, image_size=SEED_IMAGE),
                "logmel": FeatureConfig(), "musicnn": MUSICNN_FEATURES}[self.name]


INPUTS = [Input("seed_stft_db", "seed STFT-dB 1025x258 -> 128x128"),
          Input("logmel", "log-mel (default) 128x129"),
          Input("musicnn", "musicnn log-mel 96x187")]
LEAK_INPUT = INPUTS[0]


@dataclass(frozen=True)
class Experiment:
    """One set of folds: an input and a split (``artist``: by artist group; ``segment``: random parts)."""

    input: Input
    split: str

    @property
    def name(self) -> str:
        return f"{self.input.name}-{self.split}"


# --- data -----------------------------------------------------------------------------

def open_dev_gtzan(data: Path):
    from genrekit.datasets import open_dataset

    return open_dataset(f"gtzan:{data}", splits=data / "gtzan_labels.csv", artists=ARTISTS_CSV)


def prepare_caches(dataset, root: Path) -> dict[str, Path]:
    """One feature cache per input (resumable: finished tracks are skipped)."""
    from genrekit.cache import prepare

    caches = {}
    for inp in INPUTS:
        out = root / inp.name
        t0 = time.perf_counter()
        summary = prepare(dataset, out, inp.features(), workers=os.cpu_count(), progress=False)
        if summary.failed:
            raise SystemExit(f"{out}: {len(summary.failed)} track(s) failed:\n{summary.report()}")
        if summary.done:
            print(f"cache {inp.name}: {summary.done} tracks in {time.perf_counter() - t0:.0f} s", flush=True)
        caches[inp.name] = out
    return caches


def part_cache(source: Path, out: Path) -> Path:
    """The cache at ``source`` with every segment as a track of its own and no artist.

    This is the seed's random split made on purpose: genrekit refuses to split a track's
    segments (its splits work on tracks and artists, and refuse two "tracks" that share a
    file), so each part gets its own id and a path suffix. Only for this demonstration.
    """
    from genrekit.cache import CacheStore, FeatureCache

    cache = FeatureCache(source)
    store = CacheStore(out)
    manifest = store.read_manifest() if store.exists() else None
    if manifest is not None and len(FeatureCache(out)) == int(cache.tracks["n_segments"].sum()):
        return out
    if manifest is not None:
        store.remove()
    store = CacheStore(out)
    store.write_manifest(cache.config, {"name": f"{cache.dataset.get('name')}-parts", "parts_of": str(source)})
    records, arrays = [], []
    for row in cache.tracks.itertuples():
        for k, part in enumerate(np.asarray(cache.track_segments(row))):
            records.append({"track_id": f"{row.track_id}{PART}{k}", "path": f"{row.path}{PART}{k}",
                            "label": row.label, "split": row.split, "artist": None, "duration": 3.0,
                            "n_segments": 1, "sha256": None, "audio_sha256": None})
            arrays.append(part[None])
    store.write_shard("parts", records, arrays, [])
    return out


def source_track(track_id: str) -> str:
    """The track a part of the segment-split cache came from (itself for a whole track)."""
    return track_id.split(PART)[0]


# --- training and prediction ----------------------------------------------------------

def train_config(cache: Path, out: Path, fold: int, args):
    from genrekit.training import TrainConfig

    return TrainConfig(cache=str(cache), out=str(out), backbone="small_cnn", pretrained=False, labels=GENRES,
                       train_split=ALL_SPLITS, valid_split=[], folds=args.folds, fold=fold, optimizer="adabound",
                       lr=1e-3, frozen_epochs=0, unfrozen_epochs=args.epochs, batch_size=32, seed=args.seed,
                       device="cpu", progress=False)


def run_fold(cache: Path, out: Path, fold: int, args) -> dict:
    """Train one fold (or continue or reuse it) and return its held-out predictions with the last weights.

    Runs in a worker process with one thread: small convolutions on a shared 2-core CPU
    ran 3 times faster on one thread than on two (thread contention), and one thread per
    fold also makes the figures independent of ``--jobs``. The run's own output goes to
    ``train.log`` beside it.
    """
    import contextlib

    import torch

    from genrekit.checkpoint import load_checkpoint
    from genrekit.training import LAST, train

    torch.set_num_threads(1)
    saved = out / "predictions.npz"
    if not saved.is_file():
        last = out / LAST
        done = len(load_checkpoint(last)["history"]) if last.is_file() else 0
        if done < args.epochs:
            out.mkdir(parents=True, exist_ok=True)
            with open(out / "train.log", "a", buffering=1) as log, contextlib.redirect_stdout(log):
                train(train_config(cache, out, fold, args), resume=done > 0, overwrite=done == 0)
        payload = load_checkpoint(last)
        result = held_out_predictions(cache, payload)
        result["train_seconds"] = np.array(sum(h["seconds"] for h in payload["history"]))
        partial = saved.with_suffix(".partial")
        with open(partial, "wb") as f:
            np.savez(f, **result)
        partial.replace(saved)
    with np.load(saved) as f:
        return {k: f[k] for k in f.files}


def held_out_predictions(cache: Path, payload: dict) -> dict:
    """Segment probabilities of the fold's held-out tracks (the run's ``valid_track_ids``)."""
    import torch

    from genrekit.cache import FeatureCache
    from genrekit.checkpoint import model_from_checkpoint
    from genrekit.training.loop import predict_segments

    features = FeatureCache(cache)
    held_out = set(payload["training_data"]["valid_track_ids"])
    tracks = features.tracks[features.tracks["track_id"].isin(held_out)].reset_index(drop=True)
    x, y, track = features.segments_of(tracks, payload["labels"])
    model = model_from_checkpoint(payload)
    probs = predict_segments(model, torch.from_numpy(x), torch.device("cpu"))
    ids = np.array([source_track(t) for t in tracks["track_id"]])[track]
    return {"probs": probs.astype(np.float32), "y": y.astype(np.int64), "track_id": ids}


def run_all(experiments: list[Experiment], caches: dict[str, Path], fold_of: dict[str, int], args) -> dict:
    """Every fold of every experiment, ``--jobs`` at a time; pooled held-out predictions per experiment."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    tasks = {(exp, fold): (cache_of(exp, caches), args.out / "runs" / exp.name / f"fold{fold}")
             for exp in experiments for fold in range(args.folds)}
    pool = ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn"))
    try:
        futures = {key: pool.submit(run_fold, cache, out, key[1], args) for key, (cache, out) in tasks.items()}
        results = {}
        for (exp, fold), future in futures.items():
            results[exp, fold] = future.result()
            print(f"  {exp.name} fold {fold}: {len(results[exp, fold]['y'])} held-out segments, trained in "
                  f"{float(results[exp, fold]['train_seconds']):.0f} s", flush=True)
    except BaseException:
        # Stop every fold now (Python 3.14 has ProcessPoolExecutor.terminate_workers): each keeps
        # its epochs up to the last finished one, as checkpoints and predictions are written whole
        # or not at all, and the same command continues from there.
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    pooled = {}
    for exp in experiments:
        parts = [results[exp, fold] | {"fold": np.full(len(results[exp, fold]["y"]), fold)}
                 for fold in range(args.folds)]
        if exp.split == "artist":
            check_folds(parts, fold_of)
        pooled[exp] = {k: np.concatenate([p[k] for p in parts]) for k in ("probs", "y", "track_id", "fold")}
        pooled[exp]["train_seconds"] = float(sum(float(p["train_seconds"]) for p in parts))
    return pooled


def cache_of(exp: Experiment, caches: dict[str, Path]) -> Path:
    return caches[f"{exp.input.name}-parts" if exp.split == "segment" else exp.input.name]


def check_folds(parts: list[dict], fold_of: dict[str, int]) -> None:
    """The tracks each run held out are the artist-grouped fold ``kfold_assign`` gives, and no artist
    group is on both sides (``fold_of`` deals whole groups)."""
    for fold, part in enumerate(parts):
        held_out = set(part["track_id"])
        expected = {t for t, f in fold_of.items() if f == fold}
        if held_out != expected:
            raise SystemExit(f"fold {fold}: the run held out {sorted(held_out ^ expected)[:3]}... other than "
                             "kfold_assign's fold")


# --- scoring --------------------------------------------------------------------------

def track_level(pooled: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean vote per source track: ``(true labels, predicted labels, track ids)``."""
    from genrekit.voting import mean_vote

    ids, index = np.unique(pooled["track_id"], return_inverse=True)
    probs = mean_vote(pooled["probs"], index, len(ids))
    y = np.zeros(len(ids), np.int64)
    y[index] = pooled["y"]
    return y, probs.argmax(1), ids


def cluster_bootstrap_ci(y_true, y_pred, cluster, n_classes: int, n_boot: int, seed: int = 0) -> dict:
    """95 % intervals of every metric, resampling whole clusters (tracks) with replacement.

    The segments of one track are not independent draws; resampling segments would give
    intervals that are too narrow. Each draw's confusion matrix is the sum of the drawn
    tracks' own matrices.
    """
    from genrekit.metrics import METRICS_CM

    ids, index = np.unique(cluster, return_inverse=True)
    per_track = np.zeros((len(ids), n_classes * n_classes))
    np.add.at(per_track, (index, y_true * n_classes + y_pred), 1)
    draws = np.random.default_rng(seed).integers(0, len(ids), size=(n_boot, len(ids)))
    counts = np.stack([np.bincount(d, minlength=len(ids)) for d in draws])
    cms = (counts @ per_track).reshape(n_boot, n_classes, n_classes)
    return {f"{name}_ci": [float(np.quantile(fn(cms), 0.025)), float(np.quantile(fn(cms), 0.975))]
            for name, fn in METRICS_CM.items()}


def score(pooled: dict, level: str, n_boot: int) -> dict:
    from genrekit.metrics import classification_report

    if level == "track":
        y, pred, ids = track_level(pooled)
        return classification_report(y, pred, GENRES, n_boot=n_boot)
    y, pred = pooled["y"], pooled["probs"].argmax(1)
    report = classification_report(y, pred, GENRES, n_boot=10)
    report.update(cluster_bootstrap_ci(y, pred, pooled["track_id"], len(GENRES), n_boot))
    report["n_boot"], report["n_tracks_resampled"] = n_boot, int(len(np.unique(pooled["track_id"])))
    return report


# --- output ---------------------------------------------------------------------------

SPLIT_NAMES = {"artist": "artist-grouped {k}-fold", "segment": "random segment {k}-fold (LEAK)"}


def machine_name() -> str:
    """The CPU model and core count, e.g. ``2-core Intel(R) Xeon(R) ... (x86_64)``, torch, threads."""
    return f"{machine()}, torch {torch_version()}, 1 thread per fold"


def torch_version() -> str:
    import torch

    return torch.__version__


def table_rows(results: list[tuple[Experiment, str, dict]], args, seconds: dict) -> list[dict]:
    rows = []
    command = "HF_HUB_OFFLINE=1 .venv/bin/python " + shlex.join(["bench/seed_ablation.py", *sys.argv[1:]])
    machine = machine_name()
    for exp, level, rep in results:
        recall = {g: rep["per_class"][g]["recall"] for g in GENRES}
        rows.append({
            "date": time.strftime("%Y-%m-%d"), "machine": machine, "command": command,
            "input": exp.input.description, "split": SPLIT_NAMES[exp.split].format(k=args.folds),
            "scoring": "segment" if level == "segment" else "track (mean vote)",
            "n": rep["n_tracks"], "unit": "segments" if level == "segment" else "tracks",
            "accuracy": round(rep["accuracy"], 3),
            "balanced_accuracy": round(rep["balanced_accuracy"], 3),
            "balanced_accuracy_ci95": "{:.2f}-{:.2f}".format(*rep["balanced_accuracy_ci"]),
            "macro_f1": round(rep["macro_f1"], 3), "macro_f1_ci95": "{:.2f}-{:.2f}".format(*rep["macro_f1_ci"]),
            "per_genre_recall": " ".join(f"{g}:{recall_cell(r)}" for g, r in recall.items()),
            "backbone": "small_cnn (scratch)", "epochs": args.epochs, "folds": args.folds, "seed": args.seed,
            "train_minutes": round(seconds[exp.name] / 60, 1)})
    return rows


def recall_cell(recall) -> str:
    return "-" if recall is None else f"{recall:.2f}"


def print_table(rows: list[dict], results, counts: dict, seconds: dict, args) -> None:
    print("\nDEV GTZAN, 87 tracks, small and uneven: " + ", ".join(f"{g} {n}" for g, n in counts.items()))
    print("Artist groups are few for some genres (reggae: 17 tracks from 2 groups, rock: 13 from 3), so a "
          "fold often holds a genre that its training folds barely have: the honest figures are low and wide.")
    print("The 28 tracks at 16 kHz are band-limited to 8 kHz and include every blues and classical track: an "
          "input that shows the band above 8 kHz (STFT-dB at 44.1 kHz, log-mel at 22.05 kHz) can tell the "
          "source apart; musicnn's 16 kHz input cannot.\n")
    header = f"{'input':34} {'split':34} {'scoring':18} {'n':>4} {'acc':>6} {'bal.acc [95% CI]':>18} " \
             f"{'macro-F1 [95% CI]':>18}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['input']:34} {r['split']:34} {r['scoring']:18} {r['n']:>4} {r['accuracy']:6.3f} "
              f"{r['balanced_accuracy']:6.3f} [{r['balanced_accuracy_ci95']}] {r['macro_f1']:6.3f} "
              f"[{r['macro_f1_ci95']}]")
    print("\nper-genre recall (track level; the leak row also at segment level)")
    print(f"{'':46}" + "".join(f"{g[:9]:>10}" for g in GENRES))
    for exp, level, rep in results:
        if level == "track" or exp.split == "segment":
            name = f"{exp.input.name} / {exp.split} split / {level}"
            cells = "".join(f"{recall_cell(rep['per_class'][g]['recall']):>10}" for g in GENRES)
            print(f"{name:46}{cells}")
    honest = {(e.input.name, lv): rep for e, lv, rep in results if e.split == "artist"}
    for e, lv, rep in results:
        if e.split == "segment":
            base = honest[(e.input.name, lv)]
            print(f"\nleak gap ({e.input.name}, {lv} level): balanced accuracy {rep['balanced_accuracy']:.3f} with "
                  f"a clip's parts on both sides vs {base['balanced_accuracy']:.3f} artist-grouped "
                  f"(+{rep['balanced_accuracy'] - base['balanced_accuracy']:.3f}); accuracy {rep['accuracy']:.3f} vs "
                  f"{base['accuracy']:.3f}", end="")
    print(f"\n\n{args.folds} folds x {len(seconds)} experiments, {args.epochs} epochs each; training took "
          f"{sum(seconds.values()) / 60:.1f} min in all")


def write_details(results, folds: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for exp, level, rep in results:
        (out / f"{exp.name}-{level}.json").write_text(json.dumps(rep, indent=1) + "\n")
    with open(out / "artist_folds.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["track_id", "label", "artist_group", "fold"])
        writer.writerows(folds)


# --- main -----------------------------------------------------------------------------

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--jobs", type=int, default=2, help="folds trained at once, one thread each (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--out", type=Path, default=REPO / "runs" / "seed_ablation")
    p.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    p.add_argument("--no-csv", action="store_true")
    args = p.parse_args(argv)
    args.out = args.out.resolve()
    from genrekit.datasets.base import kfold_assign

    t0 = time.perf_counter()
    dataset = open_dev_gtzan(args.data)
    counts = {g: sum(t.label == g for t in dataset.tracks) for g in GENRES}
    fold_of = kfold_assign(dataset.tracks, args.folds, args.seed)  # what TrainConfig(folds, fold) carves out
    caches = prepare_caches(dataset, args.out / "caches")
    parts = f"{LEAK_INPUT.name}-parts"
    caches[parts] = part_cache(caches[LEAK_INPUT.name], args.out / "caches" / parts)
    experiments = [Experiment(inp, "artist") for inp in INPUTS] + [Experiment(LEAK_INPUT, "segment")]
    print(f"training {len(experiments)} x {args.folds} folds, {args.jobs} at a time (one thread each)", flush=True)
    reused = sum((args.out / "runs" / e.name / f"fold{k}" / "predictions.npz").is_file()
                 for e in experiments for k in range(args.folds))
    pooled = run_all(experiments, caches, fold_of, args)
    results = [(exp, level, score(pooled[exp], level, args.n_boot)) for exp in experiments
               for level in ("segment", "track")]
    seconds = {exp.name: pooled[exp]["train_seconds"] for exp in experiments}
    rows = table_rows(results, args, seconds)
    print_table(rows, results, counts, seconds, args)
    wall = (time.perf_counter() - t0) / 60
    print(f"whole bench: {wall:.1f} min wall ({args.jobs} folds at a time) on {rows[0]['machine']}"
          + (" (folds finished earlier were reused)" if reused else ""))
    for row in rows:
        row.update(jobs=args.jobs, bench_wall_minutes=round(wall, 1), reused_folds=reused)
    if not args.no_csv:
        append_rows(args.results / "seed_ablation.csv", rows)
        write_details(results, [(t.track_id, t.label, t.group, fold_of[t.track_id]) for t in dataset.tracks],
                      args.results / "seed_ablation")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted: run the same command again to continue where it stopped")
