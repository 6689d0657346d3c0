"""Augmentation of training segments: SpecAugment masking and mixup."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .config import SpecAugmentConfig


def spec_augment(x: torch.Tensor, config: SpecAugmentConfig, generator=None) -> torch.Tensor:
    """SpecAugment-style masking of ``(B, bins, frames)``: random bands of bins and stretches of
    frames are filled with the batch mean (which the model's standardisation maps to about 0)."""
    if not config.enabled:
        return x
    x = x.clone()
    b, f, t = x.shape
    fill = x.float().mean()
    for count, width, size, dim in ((config.freq_masks, config.freq_width, f, 1),
                                    (config.time_masks, config.time_width, t, 2)):
        for _ in range(count):
            w = torch.randint(0, width + 1, (b,), generator=generator)
            start = (torch.rand(b, generator=generator) * (size - w).clamp(min=1)).long()
            pos = torch.arange(size)
            mask = (pos[None, :] >= start[:, None]) & (pos[None, :] < (start + w)[:, None])
            mask = mask[:, :, None] if dim == 1 else mask[:, None, :]
            x = x.masked_fill(mask.to(x.device), fill.to(x.dtype))
    return x


def mixup(x: torch.Tensor, y: torch.Tensor, n_classes: int, alpha: float, generator=None):
    """Mix pairs of examples; returns inputs and soft targets (one-hot when ``alpha`` is 0)."""
    target = nn.functional.one_hot(y, n_classes).float()
    if alpha <= 0:
        return x, target
    lam = float(np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=generator))).beta(alpha, alpha))
    perm = torch.randperm(len(x), generator=generator).to(x.device)
    return lam * x.float() + (1 - lam) * x[perm].float(), lam * target + (1 - lam) * target[perm]
