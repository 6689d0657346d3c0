"""GPU training throughput: genrekit's real training loop, fed from a feature cache, against
the bare model's forward+backward rate on random tensors, in one run.

Usage (on a CUDA machine)::

    python bench/gpu_train_throughput.py                    # densenet121, bf16, batch 512, 1x128x128
    python bench/gpu_train_throughput.py --device cpu --backbone small_cnn --batch 16 \
        --tracks 16 --bare-steps 2 --no-csv                 # a quick check that the script works

1. Writes a feature cache of random float16 segments (``--tracks`` × 10 segments of
   128 mel bands × 128 frames) in a temporary folder, with the cache writer ``prepare`` uses.
2. Runs ``genrekit.training.train`` on it: backbone unfrozen, 2 epochs, AdaBound, bf16
   autocast and channels_last (``amp``). The first epoch warms up (cuDNN autotuning);
   the second epoch's segments/s, as the training loop itself records it, is the figure.
3. Times the bare model: random ``(batch, 1, 128, 128)`` tensors already on the GPU,
   bf16 autocast, channels_last, forward + cross-entropy + backward, no optimiser step
   and no data loading.

Prints both rates and loop / bare (target ≥ 0.85), and appends a row to
``bench/results/gpu_train_throughput.csv``.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from results_csv import append_rows

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SEGMENTS_PER_TRACK = 10
LABELS = [f"genre{i}" for i in range(8)]


def synthetic_cache(root: Path, n_tracks: int, n_valid: int, frames: int):
    """A cache of random segments in a realistic dB range, written like ``prepare`` writes one."""
    import numpy as np

    from genrekit.cache import open_cache_for_writing, write_shard
    from genrekit.config import FeatureConfig
    from genrekit.datasets.base import Track

    config = FeatureConfig(segment_seconds=(frames + 0.5) * 512 / 22050, segment_hop_seconds=3.0)
    assert config.segment_frames == frames, config.segment_frames
    open_cache_for_writing(root, config, {"name": "synthetic", "n_tracks": n_tracks + n_valid})
    rng = np.random.default_rng(0)
    for start in range(0, n_tracks + n_valid, 512):
        ids = range(start, min(start + 512, n_tracks + n_valid))
        records = [Track(f"t{i}", f"synthetic/t{i}.wav", LABELS[i % len(LABELS)],
                         "train" if i < n_tracks else "valid").to_dict()
                   | {"duration": 30.0, "n_segments": SEGMENTS_PER_TRACK} for i in ids]
        arrays = [(rng.standard_normal((SEGMENTS_PER_TRACK, config.n_mels, frames), np.float32) * 15 - 40)
                  .astype(np.float16) for _ in ids]
        write_shard(root, records, arrays, [])
    return config


def loop_rate(cache: Path, out: Path, args) -> float:
    from genrekit.training import TrainConfig, train

    config = TrainConfig(cache=str(cache), out=str(out), backbone=args.backbone, pretrained=False,
                         frozen_epochs=0, unfrozen_epochs=2, batch_size=args.batch, device=args.device,
                         amp=True, progress=False, labels=LABELS)
    result = train(config)
    return result.history[-1]["segments_per_s"]


def bare_rate(args, frames: int) -> float:
    import torch

    from genrekit.models import ModelConfig, build_model

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = True
    model = build_model(ModelConfig(args.backbone, len(LABELS))).to(device).train()
    x = torch.randn(args.batch, 1, 128, frames, device=device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, len(LABELS), (args.batch,), device=device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        model.zero_grad(set_to_none=True)
        loss.backward()

    for _ in range(5):
        step()
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.bare_steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    return args.batch * args.bare_steps / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--backbone", default="densenet121")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--frames", type=int, default=128)
    p.add_argument("--tracks", type=int, default=4096, help="training tracks (10 segments each)")
    p.add_argument("--bare-steps", type=int, default=40)
    p.add_argument("--no-csv", action="store_true")
    args = p.parse_args()
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        synthetic_cache(Path(tmp) / "cache", args.tracks, max(8, args.tracks // 64), args.frames)
        loop = loop_rate(Path(tmp) / "cache", Path(tmp) / "run", args)
    bare = bare_rate(args, args.frames)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{os.cpu_count()}-core CPU"
    precision = "bf16+channels_last" if args.device.startswith("cuda") else "fp32"
    print(f"\n{args.backbone}, batch {args.batch}, 1x128x{args.frames}, {precision} on {device_name}")
    print(f"{'genrekit training loop (cache)':34}{loop:10.1f} segments/s")
    print(f"{'bare forward+backward (random)':34}{bare:10.1f} segments/s")
    print(f"loop / bare: {loop / bare:.2f} (target >= 0.85)")
    if not args.no_csv:
        append_rows(REPO / "bench" / "results" / "gpu_train_throughput.csv",
                    [{"backbone": args.backbone, "batch": args.batch, "frames": args.frames, "device": device_name,
                      "loop_segments_per_s": round(loop, 1), "bare_segments_per_s": round(bare, 1),
                      "ratio": round(loop / bare, 3), "date": time.strftime("%Y-%m-%d")}])


if __name__ == "__main__":
    main()
