"""The epoch loop: optimiser and schedule, one training pass, prediction and validation metrics."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..voting import majority_vote, mean_vote
from .augment import mixup, spec_augment
from .config import TrainConfig
from .data import SegmentSet, balanced_order, batches


def make_optimizer(params, config: TrainConfig, lr: float):
    params = [p for p in params if p.requires_grad]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay)
    import torch_optimizer

    return torch_optimizer.AdaBound(params, lr=lr, final_lr=config.final_lr, weight_decay=config.weight_decay)


def make_scheduler(optimizer, lr: float, total_steps: int):
    """fastai's one-cycle: warm up over 25 % of the steps to ``lr`` (from lr/25), then cosine down to lr/1e5."""
    total_steps = max(total_steps, 1)
    # PyTorch ends the warm-up at step pct_start * total_steps - 1 and divides by it: 0 for 4 steps.
    pct_start = 0.25 if total_steps != 4 else 0.3
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps, pct_start=pct_start,
                                               div_factor=25.0, final_div_factor=1e5 / 25, anneal_strategy="cos")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but no CUDA device is available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}: use cpu, cuda, cuda:N or auto") from None


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@dataclass
class RunState:
    """Everything one run's epochs share, built once per run (and per rank under DDP)."""

    model: nn.Module
    config: TrainConfig
    device: torch.device
    labels: list[str]
    generator: torch.Generator
    train_set: SegmentSet
    valid_set: SegmentSet
    out: Path
    class_balance: str = "none"                   # resolved: weight, sample or none
    loss_weights: torch.Tensor | None = None
    rank: int = 0
    world_size: int = 1
    ddp_model: nn.Module | None = None
    aug_generator: torch.Generator | None = None   # per-rank augmentation stream under DDP; default: generator
    history: list = field(default_factory=list)
    best: dict | None = None
    cache: object = None                          # the FeatureCache the run reads
    notes: list = field(default_factory=list)     # one-line notes printed when the run starts (split_notes)

    @property
    def net(self) -> nn.Module:
        return self.ddp_model or self.model

    @property
    def n_classes(self) -> int:
        return len(self.labels)

    def autocast(self):
        enabled = self.config.amp and self.device.type == "cuda"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)


def train_epoch(state: RunState, optimizer, scheduler, progress=None) -> float:
    """One pass over the training segments; returns the mean loss (over all ranks)."""
    state.net.train()
    cfg, data, device = state.config, state.train_set, state.device
    total, count = torch.zeros((), device=device), torch.zeros((), device=device)
    aug = state.aug_generator if state.aug_generator is not None else state.generator
    global_batch = cfg.batch_size * state.world_size
    order = balanced_order(data.y, state.n_classes, state.generator) if state.class_balance == "sample" else None
    weights = None if state.loss_weights is None else state.loss_weights.to(device)
    steps = batches(len(data), cfg.batch_size, True, state.generator, state.rank, state.world_size, order=order)
    for step, idx in enumerate(steps):
        idx = idx.to(data.x.device)
        x = spec_augment(data.x[idx], cfg.spec_augment, generator=aug)
        x, target = mixup(x.to(device, non_blocking=True), data.y[idx].to(device), state.n_classes, cfg.mixup, aug)
        if device.type == "cuda" and cfg.amp:
            x = x.unsqueeze(1).contiguous(memory_format=torch.channels_last)
        with state.autocast():
            logits = state.net(x)
            loss = nn.functional.cross_entropy(logits.float(), target, weight=weights)
        optimizer.zero_grad(set_to_none=True)
        if state.world_size > 1:  # DDP averages the ranks' gradients: weight by this rank's share of the global batch
            (loss * (len(idx) * state.world_size / min(global_batch, len(data) - step * global_batch))).backward()
        else:
            loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.detach() * len(idx)
        count += len(idx)
        if progress is not None:
            progress.update(len(idx) * state.world_size)
    if state.world_size > 1:
        import torch.distributed as dist

        dist.all_reduce(total)
        dist.all_reduce(count)
    return float(total / count.clamp(min=1))


@torch.no_grad()
def predict_segments(model: nn.Module, x: torch.Tensor, device, batch_size: int = 256, amp: bool = False) -> np.ndarray:
    """Softmax probabilities of segments ``(N, bins, frames)`` → ``(N, n_classes)``."""
    model.eval()
    out = []
    for start in range(0, len(x), batch_size):
        xb = x[start: start + batch_size].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            out.append(torch.softmax(model(xb).float(), dim=1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0))


def validation_metrics(probs: np.ndarray, data: SegmentSet) -> dict:
    """Segment- and track-level validation metrics of segment probabilities (voted per track).

    ``valid_track_balanced_accuracy`` is the mean per-class recall of the tracks, the
    figure that does not hide a failing class when the classes are uneven.
    """
    y = data.y.cpu().numpy()
    loss = float(-np.log(probs[np.arange(len(y)), y] + 1e-12).mean())
    n_tracks = len(data.tracks)
    track_y = np.zeros(n_tracks, int)
    track_y[data.track] = y
    mean = mean_vote(probs, data.track, n_tracks).argmax(1)
    major = majority_vote(probs, data.track, n_tracks).argmax(1)
    recalls = [float((mean[track_y == c] == c).mean()) for c in np.unique(track_y)]
    return {"valid_loss": loss, "valid_segment_accuracy": float((probs.argmax(1) == y).mean()),
            "valid_track_accuracy": float((mean == track_y).mean()),
            "valid_track_balanced_accuracy": float(np.mean(recalls)),
            "valid_track_accuracy_majority": float((major == track_y).mean()), "valid_tracks": n_tracks}
