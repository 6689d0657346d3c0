"""Models (``genrekit[train]``): a registry of backbones, their families, and the genre network.

As in timm, the registry (:mod:`~.registry`) imports none of its entries; this package
imports it, then the families that register themselves: timm's ImageNet CNNs and a
small CPU CNN (:mod:`~.backbones`), and musicnn (:mod:`~.musicnn`). The genre network
(:mod:`~.genre_net`) puts the fastai head (:mod:`~.head`) on any of them.

Examples
--------
>>> from genrekit.models import list_backbones
>>> "musicnn-msd" in list_backbones() and "densenet121" in list_backbones()
True
"""
from __future__ import annotations

from . import backbones, musicnn  # noqa: E402,F401  (the families register their entries)
from .genre_net import GenreNet, ModelConfig, build_model  # noqa: E402
from .head import HeadConfig, fastai_head  # noqa: E402
from .registry import BACKBONES, BackboneSpec, describe_backbones, get_backbone, list_backbones, register_backbone

__all__ = ["ModelConfig", "GenreNet", "build_model", "HeadConfig", "fastai_head", "BackboneSpec",
           "register_backbone", "get_backbone", "list_backbones", "describe_backbones", "BACKBONES"]
