"""Learning-rate range test (Smith 2015; fastai's ``lr_find``).

The learning rate grows exponentially from ``start_lr`` to ``end_lr`` over
``num_iter`` mini-batches while the (smoothed) training loss is recorded; the run
stops early once the loss diverges. The suggestion is the rate where the smoothed
loss falls fastest before its minimum (fastai's "steep"), leaving out the noisy first
tenth of the points and measuring each slope over a window (:func:`suggest_lr`).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError


@dataclass
class LRFinderResult:
    lrs: list
    losses: list
    suggestion: float

    def to_dict(self) -> dict:
        return {"lrs": self.lrs, "losses": self.losses, "suggestion": self.suggestion}


def range_test(model: nn.Module, optimizer, x: torch.Tensor, y: torch.Tensor, batch_size: int = 64,
               start_lr: float = 1e-7, end_lr: float = 10.0, num_iter: int = 100, smooth: float = 0.98,
               diverge: float = 4.0, device="cpu", generator: torch.Generator | None = None) -> LRFinderResult:
    """Run the range test on a copy of ``model``'s weights (the model is restored afterwards)."""
    if not 0 < start_lr < end_lr:
        raise ConfigError("need 0 < start_lr < end_lr")
    saved = copy.deepcopy(model.state_dict())
    gamma = (end_lr / start_lr) ** (1 / max(num_iter - 1, 1))
    lrs, losses, avg, best = [], [], 0.0, float("inf")
    model.train()
    for step in range(num_iter):
        lr = start_lr * gamma ** step
        for group in optimizer.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, len(x), (batch_size,), generator=generator)
        loss = nn.functional.cross_entropy(model(x[idx].to(device)), y[idx].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        avg = smooth * avg + (1 - smooth) * loss.item()
        smoothed = avg / (1 - smooth ** (step + 1))
        lrs.append(lr)
        losses.append(smoothed)
        best = min(best, smoothed)
        if not np.isfinite(smoothed) or smoothed > diverge * best:
            break
    model.load_state_dict(saved)
    return LRFinderResult(lrs, losses, suggest_lr(lrs, losses))


def suggest_lr(lrs, losses) -> float:
    """The rate where the smoothed loss falls fastest before its minimum, robust to a noisy start.

    The first tenth of the points is left out (the running average of the first few
    batches is noise, which fastai's ``lr_find`` skips too), and each slope is taken
    across a window of ``len(lrs) // 20`` points on either side, so one noisy step cannot
    be the steepest.

    Parameters
    ----------
    lrs, losses : sequence of float
        The rates tried, in increasing order, and the smoothed loss at each.

    Returns
    -------
    float
        One of ``lrs``.
    """
    lrs, losses = np.asarray(lrs, dtype=float), np.asarray(losses, dtype=float)
    losses = np.where(np.isfinite(losses), losses, np.inf)
    start = len(lrs) // 10
    end = start + int(np.argmin(losses[start:])) + 1  # up to and with the minimum
    if end - start < 3:
        return float(lrs[start])
    return float(lrs[start + int(np.argmin(_window_slopes(np.log(lrs[start:end]), losses[start:end])))])


def _window_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Slope of ``y`` over ``x`` at each point, across ``len(x) // 20`` points (at least 1) on either side."""
    k = max(1, len(x) // 20)
    i = np.arange(len(x))
    lo, hi = np.maximum(i - k, 0), np.minimum(i + k, len(x) - 1)
    return (y[hi] - y[lo]) / (x[hi] - x[lo])


def lr_find(config, out_png=None, num_iter: int = 100, start_lr: float = 1e-7, end_lr: float = 10.0) -> LRFinderResult:
    """Range test for a training config (its cache, backbone, optimiser, frozen state of phase 1).

    Examples
    --------
    >>> from genrekit.training import TrainConfig
    >>> result = lr_find(TrainConfig(cache="caches/gtzan", backbone="small_cnn"), "lr.png")  # doctest: +SKIP
    >>> result.suggestion  # doctest: +SKIP
    0.0012
    """
    from ..cache import FeatureCache
    from ..models import ModelConfig, build_model
    from .data import load_segments, split_tracks
    from .loop import make_optimizer, resolve_device, seed_everything
    from .run import check_backbone_features, input_stats

    generator = seed_everything(config.seed)
    device = resolve_device(config.device)
    cache = FeatureCache(config.cache)
    check_backbone_features(config.backbone, cache)
    train_tracks, _ = split_tracks(cache, config)
    labels = config.labels or sorted(train_tracks["label"].unique())
    data = load_segments(cache, train_tracks, labels)
    mean, std = input_stats(config.backbone, data.x)
    model = build_model(ModelConfig(config.backbone, len(labels), config.head, mean, std),
                        pretrained=config.pretrained, weights=config.weights).to(device)
    model.freeze_backbone(config.frozen_epochs > 0)
    optimizer = make_optimizer(model.parameters(), config, start_lr)
    result = range_test(model, optimizer, data.x, data.y, config.batch_size, start_lr, end_lr, num_iter,
                        device=device, generator=generator)
    if out_png:
        from ..plots import plot_lr_finder

        plot_lr_finder(result.lrs, result.losses, Path(out_png), result.suggestion)
    return result
