"""Export a checkpoint to ONNX, with the model's metadata inside the file.

The exported graph takes segments ``(batch, n_mels, frames)`` float32 and returns
class probabilities; the metadata property ``genrekit`` holds the labels, the
FeatureConfig, the architecture and the training description, so an ``.onnx`` file
alone is enough for :func:`genrekit.prediction.load_model`.
"""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

from .errors import CheckpointError

METADATA_KEY = "genrekit"
OPSET = 17
METADATA_KEYS = ("format", "genrekit_version", "created", "name", "labels", "display_names", "feature_config",
                 "model_config", "training_data", "metrics", "test_metrics", "cv_metrics", "min_confidence")


def _metadata(payload: dict) -> dict:
    """Everything but the weights, history and resume state: the training data's ids and content
    hashes stay, so the leakage guard works on an exported model too."""
    return {k: payload[k] for k in METADATA_KEYS if k in payload} | {"kind": "segment_classifier"}


def onnx_bytes_from_payload(payload: dict) -> bytes:
    """Trace the checkpoint's model (with softmax) into an ONNX model, returned as bytes."""
    import onnx
    import torch

    from .checkpoint import model_from_checkpoint
    from .config import FeatureConfig

    model = torch.nn.Sequential(model_from_checkpoint(payload), torch.nn.Softmax(dim=1)).eval()
    cfg = FeatureConfig.from_dict(payload["feature_config"])
    example = torch.zeros(2, *cfg.segment_shape)
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the tracer's notes on shape checks and constant folding are not for users
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), buffer, input_names=["segments"], output_names=["probabilities"],
                          dynamic_axes={"segments": {0: "batch"}, "probabilities": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    proto = onnx.load_from_string(buffer.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(_metadata(payload))
    return proto.SerializeToString()


def export_onnx(checkpoint, out) -> Path:
    """Write ``checkpoint`` as an ONNX file at ``out`` (atomically).

    Examples
    --------
    >>> export_onnx("runs/demo/best.pt", "model.onnx")  # doctest: +SKIP
    """
    from .checkpoint import load_checkpoint
    from .io import atomic_path

    if Path(out).is_dir():
        raise CheckpointError(f"{out}: --out is a folder; give the path of the .onnx file to write")
    data = onnx_bytes_from_payload(load_checkpoint(checkpoint))
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    return Path(out)


def read_onnx_metadata(path) -> dict:
    """The genrekit metadata of an ONNX model file (through onnxruntime; no ``onnx`` package needed)."""
    from .runtime import open_session

    return open_session(path)[1]
