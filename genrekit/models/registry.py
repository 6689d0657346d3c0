"""A registry of backbones: adding one is one :func:`register_backbone` call.

The registry imports none of its entries; :mod:`genrekit.models` imports it, then the
families that register themselves (:mod:`~.backbones`, :mod:`~.musicnn`), as timm does.

A backbone maps a batch of one-channel spectrogram segments ``(B, 1, n_mels, frames)``
to a feature map ``(B, C, H, W)`` with ``C = num_features``; the head pools it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..config import FeatureConfig
from ..errors import ConfigError


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone.

    ``build(pretrained: bool, weights: str | None) -> nn.Module`` returns a module with
    a ``num_features`` attribute. ``feature_config`` is the input the backbone needs
    (None: any). ``pretrained_source`` says where pretrained weights come from.
    """

    name: str
    build: Callable
    description: str = ""
    feature_config: FeatureConfig | None = None
    pretrained_source: str | None = None
    aliases: tuple = field(default_factory=tuple)
    standardise_input: bool = True  # False: the backbone normalises its input itself (e.g. musicnn)


BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    for name in (spec.name, *spec.aliases):
        BACKBONES[name] = spec
    return spec


def get_backbone(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; known: {', '.join(list_backbones())}")
    return BACKBONES[name]


def list_backbones() -> list[str]:
    return sorted({spec.name for spec in BACKBONES.values()})


def describe_backbones() -> str:
    """One line per backbone: name, input features, where pretrained weights come from, description."""
    lines = []
    for name in list_backbones():
        spec = BACKBONES[name]
        features = spec.feature_config.frontend if spec.feature_config else "any"
        lines.append(f"{name:24} features: {features:10} pretrained: {spec.pretrained_source or 'none':40} "
                     f"{spec.description}")
    return "\n".join(lines)
