"""The fastai-style classification head the seed used on top of every backbone."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..errors import ConfigError


@dataclass(frozen=True)
class HeadConfig:
    """Head sizes. Defaults are fastai's ``create_head``: one hidden layer of 512,
    dropout 0.25 before it and 0.5 before the output."""

    hidden: int = 512
    dropout_hidden: float = 0.25
    dropout_out: float = 0.5

    def __post_init__(self):
        if not isinstance(self.hidden, int) or isinstance(self.hidden, bool) or self.hidden < 1:
            raise ConfigError(f"head.hidden must be a positive integer, not {self.hidden!r}")
        for name in ("dropout_hidden", "dropout_out"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ConfigError(f"head.{name} must be in [0, 1), not {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class AdaptiveConcatPool2d(nn.Module):
    """Concatenated adaptive average and max pooling to 1×1 (``2 × C`` features)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.amax(dim=(2, 3)), x.mean(dim=(2, 3))], dim=1)


def fastai_head(in_features: int, n_classes: int, config: HeadConfig = HeadConfig()) -> nn.Sequential:
    """concat pool → flatten → BN → dropout → linear → ReLU → BN → dropout → linear.

    Examples
    --------
    >>> fastai_head(1024, 10)(torch.zeros(4, 1024, 4, 4)).shape
    torch.Size([4, 10])
    """
    return nn.Sequential(
        AdaptiveConcatPool2d(),
        nn.BatchNorm1d(2 * in_features),
        nn.Dropout(config.dropout_hidden),
        nn.Linear(2 * in_features, config.hidden),
        nn.ReLU(inplace=True),
        nn.BatchNorm1d(config.hidden),
        nn.Dropout(config.dropout_out),
        nn.Linear(config.hidden, n_classes),
    )
