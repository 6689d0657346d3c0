"""The genre network: input standardisation → a backbone from the registry → the fastai head.

Examples
--------
>>> import torch
>>> from genrekit.models import ModelConfig, build_model
>>> model = build_model(ModelConfig(backbone="small_cnn", n_classes=10)).eval()
>>> model(torch.zeros(2, 1, 128, 129)).shape
torch.Size([2, 10])
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..errors import ConfigError
from .head import HeadConfig, fastai_head
from .registry import get_backbone


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model's architecture.

    ``norm_mean``/``norm_std`` standardise the input features; training sets them from
    the training data, and they travel in the checkpoint.
    """

    backbone: str = "small_cnn"
    n_classes: int = 10
    head: HeadConfig = field(default_factory=HeadConfig)
    norm_mean: float = 0.0
    norm_std: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)

    def __post_init__(self):
        if isinstance(self.head, dict):
            self.head = HeadConfig(**self.head)
        if not isinstance(self.n_classes, int) or self.n_classes < 1:
            raise ConfigError(f"n_classes must be a positive integer, not {self.n_classes!r}")
        if not self.norm_std > 0:
            raise ConfigError(f"norm_std must be positive, not {self.norm_std!r}")

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown model settings: {unknown}; known: {sorted(known)}")
        return cls(**data)


class GenreNet(nn.Module):
    """Standardise → backbone → fastai head. Input ``(B, n_mels, frames)`` or ``(B, 1, n_mels, frames)``."""

    def __init__(self, backbone: nn.Module, config: ModelConfig):
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.head = fastai_head(backbone.num_features, config.n_classes, config.head)
        self.register_buffer("norm_mean", torch.tensor(float(config.norm_mean)))
        self.register_buffer("norm_std", torch.tensor(float(config.norm_std)))

    def forward(self, x):
        if x.ndim == 3:
            x = x.unsqueeze(1)
        x = (x.float() - self.norm_mean) / self.norm_std
        return self.head(self.backbone(x))

    def freeze_backbone(self, frozen: bool = True) -> None:
        """Stop (or restart) training the backbone: no gradients, BatchNorm statistics fixed."""
        for p in self.backbone.parameters():
            p.requires_grad_(not frozen)
        self._backbone_frozen = frozen
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and getattr(self, "_backbone_frozen", False):
            self.backbone.eval()
        return self


def build_model(config: ModelConfig, pretrained: bool = False, weights: str | None = None) -> GenreNet:
    """Build the network; ``pretrained``/``weights`` load backbone weights (training start only)."""
    spec = get_backbone(config.backbone)
    return GenreNet(spec.build(pretrained=pretrained, weights=weights), config)
