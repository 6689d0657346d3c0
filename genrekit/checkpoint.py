"""Model checkpoints: what training writes and what fine-tuning, evaluation and export read.

A checkpoint is one `safetensors <https://huggingface.co/docs/safetensors>`_ file: the
model's tensors (``model/<name>``), for ``last.safetensors`` also the optimiser and
random-generator states (``resume/...``), and in the header's metadata, under
``genrekit``, a JSON document with everything else needed to use the model again: the
labels, the exact :class:`~genrekit.config.FeatureConfig`, the architecture, the
training configuration, the training data (track ids, artists and content hashes),
metrics and history. Nested structures that hold tensors (an optimiser's state) are
stored as JSON with ``{"__tensor__": KEY}`` in place of each tensor.

Trust model: loading a checkpoint never runs code from it. safetensors holds only
arrays and strings; the legacy ``.pt`` files of genrekit 0.1 are read with
``torch.load(weights_only=True)``, which refuses anything but tensors and plain
containers. A file that is neither is refused with :class:`~genrekit.errors.CheckpointError`.

The inference side does not read checkpoints: ``genrekit export`` turns one into an
ONNX model file (:mod:`genrekit.export`), which the light install runs.

Examples
--------
>>> import torch
>>> payload = {"format": CHECKPOINT_FORMAT, "labels": ["jazz", "rock"],
...            "state_dict": {"w": torch.ones(2)}, "history": [{"epoch": 1}]}
>>> path = save_checkpoint(payload, tmp_dir / "demo.safetensors")  # doctest: +SKIP
>>> load_checkpoint(path)["labels"]  # doctest: +SKIP
['jazz', 'rock']
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

from .errors import CheckpointError
from .extras import require
from .io import atomic_path

CHECKPOINT_FORMAT = 2
LEGACY_FORMATS = (1,)  # genrekit 0.1's torch.save() payloads (.pt), read with weights_only=True
METADATA_KEY = "genrekit"
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit on the JSON header
PUBLIC_TRAINING_KEYS_DROPPED = ("train_track_ids", "valid_track_ids", "train_artists", "train_hashes",
                                "train_audio_hashes")


# ---------------------------------------------------------------- nested structures with tensors


def pack(obj, tensors: dict, prefix: str):
    """A JSON-able copy of ``obj`` with each tensor moved into ``tensors`` under a key from ``prefix``.

    Tuples and dicts with non-string keys (an optimiser's state) survive the round trip
    through :func:`unpack`.
    """
    import torch

    if isinstance(obj, torch.Tensor):
        key = prefix
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: pack(v, tensors, f"{prefix}/{k}") for k, v in obj.items()}
        return {"__items__": [[k, pack(v, tensors, f"{prefix}/{k}")] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [pack(v, tensors, f"{prefix}/{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [pack(v, tensors, f"{prefix}/{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    raise CheckpointError(f"cannot store a {type(obj).__name__} in a checkpoint (at {prefix})")


def unpack(obj, tensors: dict):
    """Inverse of :func:`pack`."""
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        if set(obj) == {"__items__"}:
            return {k: unpack(v, tensors) for k, v in obj["__items__"]}
        if set(obj) == {"__tuple__"}:
            return tuple(unpack(v, tensors) for v in obj["__tuple__"])
        return {k: unpack(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unpack(v, tensors) for v in obj]
    return obj


# ---------------------------------------------------------------- files


def save_checkpoint(payload: dict, path) -> Path:
    """Write ``payload`` (a dict; tensors anywhere inside) as a safetensors checkpoint, atomically."""
    require("torch", "train", "writing a checkpoint")
    from safetensors.torch import save_file

    tensors: dict = {}
    document = pack(payload, tensors, "t")
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(document)})
    return Path(path)


def is_safetensors(path) -> bool:
    """True if the file starts like a safetensors file (header length, then a JSON object)."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 0 < length < MAX_HEADER_BYTES and head[8:9] == b"{"


def read_metadata(path) -> dict:
    """The checkpoint's JSON document without its tensors (no torch needed); tensors stay references."""
    path = _existing(path)
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        return json.loads(header["__metadata__"][METADATA_KEY])
    except (OSError, ValueError, KeyError, TypeError, struct.error) as e:
        raise CheckpointError(f"{path}: not a genrekit checkpoint ({type(e).__name__}: {e})") from None


def load_checkpoint(path, map_location: str = "cpu") -> dict:
    """Read a checkpoint: safetensors (this format) or a legacy genrekit ``.pt``.

    Never unpickles arbitrary objects (see the module notes).

    Raises
    ------
    CheckpointError
        The file is missing, is not a genrekit checkpoint, or is damaged.
    """
    path = _existing(path)
    require("torch", "train", f"reading the checkpoint {path}")
    payload = _load_safetensors(path, map_location) if is_safetensors(path) else _load_legacy(path, map_location)
    if not isinstance(payload, dict) or payload.get("format") not in (CHECKPOINT_FORMAT, *LEGACY_FORMATS):
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path}: not a genrekit checkpoint (format {found!r})")
    for key in ("labels", "feature_config", "model_config", "state_dict"):
        if key not in payload:
            raise CheckpointError(f"{path}: not a genrekit checkpoint (no {key!r})")
    return payload


def _existing(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file")
    return path


def _load_safetensors(path: Path, map_location: str) -> dict:
    from safetensors.torch import load_file

    document = read_metadata(path)
    try:
        tensors = load_file(str(path), device=str(map_location))
    except Exception as e:  # truncated or corrupt data after a valid header
        raise CheckpointError(f"{path}: damaged checkpoint ({type(e).__name__}: {e})") from None
    try:
        return unpack(document, tensors)
    except KeyError as e:
        raise CheckpointError(f"{path}: damaged checkpoint (tensor {e} missing)") from None


NOT_A_MODEL = "not a genrekit model file (.onnx, or a .safetensors checkpoint)"
LEGACY_MAGIC = (b"PK\x03\x04", b"\x80")  # torch.save: a zip archive, or before PyTorch 1.6 a pickle


def _load_legacy(path: Path, map_location: str) -> dict:
    import pickle

    import torch

    with open(path, "rb") as f:
        if not f.read(4).startswith(LEGACY_MAGIC):
            raise CheckpointError(f"{path}: {NOT_A_MODEL}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unsafe content"
        raise CheckpointError(f"{path}: refused, it holds more than tensors and plain data and loading it "
                              f"could run code ({first})") from None
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None


# ---------------------------------------------------------------- using a checkpoint


def model_from_checkpoint(payload: dict):
    """The network of a checkpoint, in eval mode.

    Raises
    ------
    CheckpointError
        The tensors do not fit the architecture the checkpoint describes, or the
        labels do not match the head.
    """
    from .models import ModelConfig, build_model

    try:
        config = ModelConfig.from_dict(payload["model_config"])
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"checkpoint has an invalid model_config ({e})") from None
    if config.n_classes != len(payload["labels"]):
        raise CheckpointError(f"checkpoint has {len(payload['labels'])} labels but its head has "
                              f"{config.n_classes} outputs")
    model = build_model(config)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint tensors do not fit its {config.backbone} model ({first})") from None
    return model.eval()


def public_card(payload: dict) -> dict:
    """What a model file shows about itself: everything but the per-track training ids, artists and hashes."""
    keep = ("format", "genrekit_version", "created", "name", "labels", "display_names", "feature_config",
            "model_config", "networks", "patch_strides", "recipe", "metrics", "test_metrics", "cv_metrics",
            "min_confidence")
    card = {k: payload[k] for k in keep if k in payload}
    training = payload.get("training_data", {})
    card["training_data"] = {k: v for k, v in training.items() if k not in PUBLIC_TRAINING_KEYS_DROPPED}
    if payload.get("detector_metrics"):  # its CV figures, without the hashes of what it was trained on
        card["detector_metrics"] = {k: v for k, v in payload["detector_metrics"].items() if k != "training_data"}
    return card
