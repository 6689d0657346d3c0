"""CPU training throughput (segments/s) per backbone: genrekit's training step on 128x129 segments.

Usage: python bench/train_throughput.py [BACKBONE ...]

Measures forward+backward+optimizer steps (AdaBound, batch 32) on random segments after
two warm-up steps, with the backbone frozen (phase 1 of the recipe) and unfrozen (phase 2);
appends to bench/results/train_throughput.csv.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from results_csv import append_rows, machine

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]


def measure(backbone: str, frozen: bool, batch: int = 32, steps: int = 4, shape=(128, 129)) -> float:
    import torch

    from genrekit.models import ModelConfig, build_model, get_backbone
    from genrekit.training import TrainConfig
    from genrekit.training.loop import make_optimizer

    if get_backbone(backbone).feature_config is not None:
        shape = get_backbone(backbone).feature_config.segment_shape
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone, 10))
    model.train()
    model.freeze_backbone(frozen)
    opt = make_optimizer(model.parameters(), TrainConfig(), 1e-3)
    x, y = torch.randn(batch, *shape), torch.randint(0, 10, (batch,))
    for i in range(steps + 2):
        if i == 2:
            start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return batch * steps / (time.perf_counter() - start)


def main(backbones):
    sys.path.insert(0, str(REPO))
    import torch

    rows = []
    for backbone in backbones:
        frozen, unfrozen = measure(backbone, frozen=True), measure(backbone, frozen=False)
        rows.append({"backbone": backbone, "frozen_segments_per_s": round(frozen, 1),
                     "unfrozen_segments_per_s": round(unfrozen, 1), "batch": 32,
                     "threads": torch.get_num_threads(), "machine": machine(),
                     "date": time.strftime("%Y-%m-%d")})
        print(f"{backbone:24}{frozen:8.1f} segments/s frozen {unfrozen:8.1f} segments/s unfrozen", flush=True)
    append_rows(REPO / "bench" / "results" / "train_throughput.csv", rows)


if __name__ == "__main__":
    main(sys.argv[1:] or ["small_cnn", "tf_efficientnet_lite0", "efficientnet_b0", "densenet121", "musicnn-msd"])
