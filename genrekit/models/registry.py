"""A registry of backbones: adding one is one :func:`register_backbone` call.

A backbone maps a batch of one-channel spectrogram segments ``(B, 1, n_mels, frames)``
to a feature map ``(B, C, H, W)`` with ``C = num_features``; the head pools it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

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


def _load_entries() -> None:
    from . import backbones  # noqa: F401  (registers the built-in entries)

    try:
        from . import musicnn  # noqa: F401
    except ImportError:  # pragma: no cover - musicnn weights not installed
        pass


def get_backbone(name: str) -> BackboneSpec:
    _load_entries()
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; known: {', '.join(list_backbones())}")
    return BACKBONES[name]


def list_backbones() -> list[str]:
    _load_entries()
    return sorted({spec.name for spec in BACKBONES.values()})
