"""Optional parts of genrekit and the one-line message when one is missing.

The core install (numpy, soundfile, soxr, onnxruntime, mutagen, fsspec) predicts, tags
and embeds. Training needs ``genrekit[train]`` (torch, timm, …), the HTTP service
``genrekit[serve]`` and the Ray engine ``genrekit[ray]``.

Examples
--------
>>> require("json", "train", "training").__name__
'json'
"""
from __future__ import annotations

import importlib

from .errors import MissingExtraError

EXTRAS = {
    "train": "training, evaluation, lr-find, export and .pt/.safetensors checkpoints",
    "serve": "the HTTP service",
    "ray": "prepare on a Ray cluster",
}


def require(module: str, extra: str, feature: str):
    """Import ``module``, or raise :class:`MissingExtraError` naming the extra that installs it.

    Parameters
    ----------
    module : str
        Module to import, e.g. ``"torch"``.
    extra : str
        The pip extra that provides it, one of :data:`EXTRAS`.
    feature : str
        What needs it, for the message.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(f"{feature} needs {module!r}, which is not installed ({e.msg}): "
                                f"pip install 'genrekit[{extra}]'") from None
