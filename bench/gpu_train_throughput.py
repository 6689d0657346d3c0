"""GPU training throughput (issue 16): the training loop's overhead, and the seed's recipe on FMA small.

Usage, one command on a CUDA machine (about 6-8 minutes on one H100/H200, most of it the 20 epochs)::

    python bench/gpu_train_throughput.py                 # densenet121, 8,000 tracks x 10 parts of 224 x 224
    python bench/gpu_train_throughput.py --tiny          # under a minute on a CPU: checks that the script works

It measures, in one run, and prints side by side:

(b) **the seed's recipe at FMA-small size** — ``configs/seed_densenet121.yaml`` (AdaBound lr
    1e-3, one-cycle, 10 epochs frozen + 10 unfrozen, batch 64, bf16 autocast and
    channels_last on CUDA) trained by :func:`genrekit.training.train` on a synthetic cache
    the size of FMA small with the seed's features: 8,000 tracks x 10 parts of 224 x 224
    (float16, 8.0 GB; split 6,400 / 800 / 800 as FMA's official split), written with the
    cache writer ``prepare`` uses. Random weights instead of ImageNet's: the time does not
    depend on them, and the GPU machine is offline. Reported: the mean frozen and unfrozen
    epoch (the training pass, as the loop records it), the 20 passes together, and the whole
    ``train()`` call (cache check and load, 20 epochs with validation and checkpoints).
    Goal: the whole call within 4 minutes on one H100/H200-class GPU.
(a) **loop versus bare** — the loop's rate is the mean of the unfrozen epochs after the first
    (which autotunes cuDNN) of that same run. The bare rate is the same model (same backbone,
    head, batch, precision and memory format) doing only forward + cross-entropy + backward on
    the same training segments, gathered into batches beforehand, so no data handling, no
    optimiser and no bookkeeping is timed. A third line adds the AdaBound step to the bare
    pass, to show where a shortfall comes from. Goal: loop / bare >= 0.85.

One row per run goes to ``bench/results/gpu_train_throughput.csv`` (``--csv`` elsewhere,
``--no-csv`` for none).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

from results_csv import append_rows

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RECIPE = REPO / "configs" / "seed_densenet121.yaml"
SEGMENTS_PER_TRACK = 10
SPLIT_SHARES = (("train", 0.8), ("valid", 0.1), ("test", 0.1))  # FMA small: 6,400 / 800 / 800
SHARD_TRACKS = 512
POOL = 256  # distinct random parts the synthetic tracks are drawn from (content does not matter)
EPOCH_GOAL_S = 240.0
RATIO_GOAL = 0.85


# --- the synthetic cache ---------------------------------------------------------------

def split_of(i: int, n: int) -> str:
    edge = 0.0
    for name, share in SPLIT_SHARES:
        edge += share
        if i < round(edge * n):
            return name
    return SPLIT_SHARES[-1][0]


def synthetic_cache(root: Path, n_tracks: int, image: tuple[int, int], labels: list[str]):
    """A cache of ``n_tracks`` x 10 random parts with the seed's feature settings, resized to ``image``.

    Values are in the seed's range (dB re the clip's maximum, -80 to 0). Written shard by
    shard with :class:`genrekit.cache.CacheStore`, as ``prepare`` writes, so memory stays
    at one shard (512 tracks).
    """
    import numpy as np

    from genrekit.cache import CacheStore
    from genrekit.cache.format import new_shard_name
    from genrekit.config import SEED_FEATURES

    config = dataclasses.replace(SEED_FEATURES, image_size=image)
    store = CacheStore(root)
    store.write_manifest(config, {"name": "synthetic-fma-small", "n_tracks": n_tracks})
    rng = np.random.default_rng(0)
    pool = (-80.0 * rng.random((POOL, *image), np.float32)).astype(np.float16)
    for start in range(0, n_tracks, SHARD_TRACKS):
        ids = range(start, min(start + SHARD_TRACKS, n_tracks))
        records = [{"track_id": f"{i:06d}", "path": f"synthetic/{i:06d}.mp3", "label": labels[i % len(labels)],
                    "split": split_of(i, n_tracks), "artist": f"artist{i}", "duration": 30.0,
                    "n_segments": SEGMENTS_PER_TRACK, "sha256": None, "audio_sha256": None} for i in ids]
        arrays = [pool[rng.integers(0, POOL, SEGMENTS_PER_TRACK)] for _ in ids]
        store.write_shard(new_shard_name(start), records, arrays, [])
    return config


# --- (b) the recipe --------------------------------------------------------------------

def recipe_config(cache: Path, out: Path, args):
    from genrekit.training import TrainConfig

    config = TrainConfig.from_file(RECIPE, cache=str(cache), out=str(out), device=args.device, progress=False)
    changes = {"pretrained": False, "weights": None}  # timing does not depend on the weights
    for name in ("backbone", "batch_size", "frozen_epochs", "unfrozen_epochs"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    return dataclasses.replace(config, **changes)


def run_recipe(config) -> dict:
    from genrekit.training import train

    start = time.perf_counter()
    result = train(config)
    wall = time.perf_counter() - start
    frozen = [h["seconds"] for h in result.history if h["phase"] == "frozen"]
    unfrozen = [h for h in result.history if h["phase"] == "unfrozen"]
    steady = unfrozen[1:] or unfrozen  # the first unfrozen epoch autotunes cuDNN's backward kernels
    mean = lambda values: sum(values) / len(values) if values else float("nan")  # noqa: E731
    return {"frozen_epoch_s": mean(frozen), "unfrozen_epoch_s": mean([h["seconds"] for h in unfrozen]),
            "epochs_s": sum(h["seconds"] for h in result.history), "train_call_s": wall,
            "loop_segments_per_s": mean([h["segments_per_s"] for h in steady]),
            "n_epochs": len(result.history)}


# --- (a) the bare pass -----------------------------------------------------------------

def training_batches(cache: Path, config, device, n_batches: int):
    """``n_batches`` batches of the cache's training segments as the loop makes them, on ``device``."""
    import torch

    from genrekit.cache import FeatureCache
    from genrekit.training.data import batches, load_segments

    features = FeatureCache(cache)
    needed = -(-n_batches * config.batch_size // SEGMENTS_PER_TRACK)  # whole tracks enough for the batches
    data = load_segments(features, features.select(config.train_split).iloc[:needed], config.labels)
    generator = torch.Generator().manual_seed(config.seed)
    channels_last = device.type == "cuda" and config.amp
    out = []
    for idx in batches(len(data), config.batch_size, True, generator, drop_last=True):
        x = data.x[idx].to(device).unsqueeze(1)
        out.append((x.contiguous(memory_format=torch.channels_last) if channels_last else x, data.y[idx].to(device)))
        if len(out) == n_batches:
            break
    return out


def bare_rates(cache: Path, config, steps: int) -> dict:
    """Segments/s of forward+backward alone, and with the optimiser step, on pre-gathered batches."""
    import torch

    from genrekit.models import ModelConfig, build_model
    from genrekit.training.loop import make_optimizer, resolve_device

    device = resolve_device(config.device)
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = True
    model = build_model(ModelConfig(config.backbone, len(config.labels), config.head)).to(device).train()
    if cuda and config.amp:
        model = model.to(memory_format=torch.channels_last)
    warmup = min(10, steps)
    data = training_batches(cache, config, device, warmup + steps)
    optimizer = make_optimizer(model.parameters(), config, config.lr)

    def step(x, y, with_optimizer: bool):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda and config.amp):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        model.zero_grad(set_to_none=True)
        loss.backward()
        if with_optimizer:
            optimizer.step()

    rates = {}
    for name, with_optimizer in (("bare_segments_per_s", False), ("bare_optimizer_segments_per_s", True)):
        for x, y in data[:warmup]:
            step(x, y, with_optimizer)
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for x, y in data[warmup:]:
            step(x, y, with_optimizer)
        if cuda:
            torch.cuda.synchronize()
        rates[name] = sum(len(y) for _, y in data[warmup:]) / (time.perf_counter() - start)
    return rates


# --- output ----------------------------------------------------------------------------

def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return torch.cuda.get_device_name()
    return f"{os.cpu_count()}-core {platform.processor() or platform.machine()} CPU"


def verdict(ok: bool, applies: bool, where: str = "an H100/H200-class GPU") -> str:
    return ("PASS" if ok else "FAIL") if applies else f"(goal is for {where})"


def report(r: dict, config, args) -> list[str]:
    gpu = "cuda" in r["device_kind"]
    ratio = r["loop_segments_per_s"] / r["bare_segments_per_s"]
    shape = "x".join(map(str, args.image))
    lines = [
        f"{config.backbone}, batch {config.batch_size}, 1x{shape}, "
        f"{'bf16 autocast + channels_last' if gpu and config.amp else 'fp32'} on {r['device']}; "
        f"synthetic cache of {args.tracks} tracks x {SEGMENTS_PER_TRACK} parts (seed STFT-dB), "
        f"{r['train_segments']} training segments",
        "",
        f"{'(a) loop vs bare':48}{'segments/s':>12}   "
        f"{'(b) ' + RECIPE.name + f' ({config.frozen_epochs} + {config.unfrozen_epochs} epochs)':52}{'seconds':>9}",
        f"{'bare forward+backward (same batches)':48}{r['bare_segments_per_s']:12.1f}   "
        f"{'frozen epoch (mean)':52}{r['frozen_epoch_s']:9.1f}",
        f"{'bare + AdaBound step':48}{r['bare_optimizer_segments_per_s']:12.1f}   "
        f"{'unfrozen epoch (mean)':52}{r['unfrozen_epoch_s']:9.1f}",
        f"{'genrekit training loop (cache)':48}{r['loop_segments_per_s']:12.1f}   "
        f"{'all epochs, training passes':52}{r['epochs_s']:9.1f}",
        f"{'loop / bare: ' + format(ratio, '.2f') + ' (goal >= 0.85) ' + verdict(ratio >= RATIO_GOAL, gpu, 'a GPU'):60}"
        f"   {'whole train() call (load, epochs, validation, saves)':52}{r['train_call_s']:9.1f}",
        f"{'':63}{'goal: whole call <= 240 s ' + verdict(r['train_call_s'] <= EPOCH_GOAL_S, gpu):61}",
        f"setup: synthetic cache written in {r['cache_s']:.1f} s",
    ]
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--tracks", type=int, default=8000, help="tracks in the synthetic cache (10 parts each)")
    p.add_argument("--image", type=int, nargs=2, default=[224, 224], metavar=("H", "W"))
    p.add_argument("--backbone", help="default: the recipe's (densenet121)")
    p.add_argument("--batch", type=int, dest="batch_size", help="default: the recipe's (64)")
    p.add_argument("--frozen-epochs", type=int, help="default: the recipe's (10)")
    p.add_argument("--unfrozen-epochs", type=int, help="default: the recipe's (10)")
    p.add_argument("--bare-steps", type=int, default=100, help="timed steps of the bare pass (after 10 warm-up)")
    p.add_argument("--workdir", type=Path, help="where the cache and run go (default: a temporary folder)")
    p.add_argument("--tiny", action="store_true",
                   help="a quick CPU check (under a minute): small_cnn, 24 tracks of 32x32, 1 + 1 epochs, batch 8")
    p.add_argument("--csv", type=Path, default=REPO / "bench" / "results" / "gpu_train_throughput.csv")
    p.add_argument("--no-csv", action="store_true")
    args = p.parse_args(argv)
    if args.tiny:
        args.device, args.tracks, args.image, args.backbone, args.batch_size = "cpu", 24, [32, 32], "small_cnn", 8
        args.frozen_epochs, args.unfrozen_epochs, args.bare_steps = 1, 1, 2
    if args.device == "cpu":
        import torch

        torch.set_num_threads(1)  # small convolutions on a shared CPU: more threads only contend
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        r = measure(Path(tmp), args)
    config = r.pop("config")
    lines = report(r, config, args)
    print("\n" + "\n".join(lines))
    if not args.no_csv:
        append_rows(args.csv, [{
            "date": time.strftime("%Y-%m-%d"), "device": r["device"],
            "command": shlex.join(["python", "bench/gpu_train_throughput.py", *(argv or sys.argv[1:])]),
            "backbone": config.backbone, "batch": config.batch_size, "image": "x".join(map(str, args.image)),
            "tracks": args.tracks, "epochs": f"{config.frozen_epochs}+{config.unfrozen_epochs}",
            "precision": "bf16+channels_last" if "cuda" in r["device_kind"] and config.amp else "fp32",
            **{k: round(v, 2) for k, v in r.items() if isinstance(v, float)},
            "ratio": round(r["loop_segments_per_s"] / r["bare_segments_per_s"], 3)}])


def measure(tmp: Path, args) -> dict:
    import torch

    from genrekit.training import TrainConfig

    labels = TrainConfig.from_file(RECIPE).labels
    start = time.perf_counter()
    synthetic_cache(tmp / "cache", args.tracks, tuple(args.image), labels)
    cache_s = time.perf_counter() - start
    config = recipe_config(tmp / "cache", tmp / "run", args)
    recipe = run_recipe(config)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    bare = bare_rates(tmp / "cache", config, args.bare_steps)
    train_segments = round(args.tracks * SPLIT_SHARES[0][1]) * SEGMENTS_PER_TRACK
    from genrekit.training.loop import resolve_device

    return {"config": config, "device": device_name(args.device), "device_kind": resolve_device(args.device).type,
            "cache_s": cache_s, "train_segments": train_segments, **recipe, **bare}


if __name__ == "__main__":
    main()
