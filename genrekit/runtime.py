"""ONNX model files run with onnxruntime: the inference engine of the light install.

A genrekit model file is an ONNX graph over segments (``(batch, bins, frames)``
float32) with a JSON document in its metadata property ``genrekit``: what kind of model
it is, its labels, the exact :class:`~genrekit.config.FeatureConfig`, its card and,
for track-level models, the head that turns pooled segment outputs into a prediction.
The document is read through onnxruntime itself, so neither torch nor the ``onnx``
package is needed.

Memory is bounded per call: segments go through the graph in chunks of at most
``chunk`` segments, so a request's peak does not grow with the file's length, and
onnxruntime's memory arena (which keeps the largest buffers for reuse) is sized by the
chunk, not by the file.

Examples
--------
>>> net = OnnxNetwork("genrekit/weights/musicnn-msd.onnx")  # doctest: +SKIP
>>> net.metadata["kind"]  # doctest: +SKIP
'tagger'
>>> net.run(segments)["tags"].shape  # doctest: +SKIP
(10, 50)
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from .config import check_patch_strides
from .errors import CheckpointError, ConfigError

METADATA_KEY = "genrekit"
CHUNK = 2  # segments per run of the graph: bounds the activations (musicnn: ~45 MB per segment, measured)


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def session_options(threads: int | None = None):
    """onnxruntime options: ``threads`` intra-op threads (default: all cores), sequential graphs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads or available_cores())
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: its warnings are not for users
    return options


def open_session(source, threads: int | None = None):
    """``(InferenceSession, metadata)`` of a model file (path) or ONNX bytes.

    Raises
    ------
    CheckpointError
        Not an ONNX model, or an ONNX model without genrekit's metadata.
    """
    import onnxruntime as ort

    name = "<in-memory model>" if isinstance(source, (bytes, bytearray)) else str(source)
    if not isinstance(source, (bytes, bytearray)):
        path = Path(source)
        if not path.is_file():
            raise CheckpointError(f"{path}: model not found" if not path.exists() else f"{path}: not a file")
        source = str(path)
    try:
        session = ort.InferenceSession(source, session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own InvalidProtobuf, Fail, … for bad files
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{name}: not a usable ONNX model ({first})") from None
    text = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if text is None:
        raise CheckpointError(f"{name}: an ONNX file without genrekit metadata (make it with genrekit export)")
    try:
        metadata = json.loads(text)
    except ValueError:
        raise CheckpointError(f"{name}: its genrekit metadata is not valid JSON") from None
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{name}: its genrekit metadata is not a JSON object")
    return session, metadata


class OnnxNetwork:
    """An ONNX graph over segments, run in chunks.

    Parameters
    ----------
    source : path or bytes
        A model file, or ONNX bytes exported in memory.
    threads : int, optional
        Intra-op threads (default: all cores). A service with several workers gives each
        ``cores // workers``.
    chunk : int
        Segments per run of the graph; for a graph with patch strides (a network run on every
        k-th patch only, :func:`genrekit.export.musicnn_onnx_bytes`) a multiple of each k, so
        that which patches that network sees does not depend on the chunks.
    """

    def __init__(self, source, threads: int | None = None, chunk: int = CHUNK):
        self.session, self.metadata = open_session(source, threads)
        self.source = "<in-memory model>" if isinstance(source, (bytes, bytearray)) else str(source)
        self.input = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        try:
            self.patch_strides = check_patch_strides(self.metadata.get("patch_strides"))
        except ConfigError as e:
            raise CheckpointError(f"{self.source}: {e}") from None
        self.chunk = math.lcm(max(1, chunk), *self.patch_strides.values())

    def run(self, segments, outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """``{output name: (n, ...) array}`` for segments ``(n, bins, frames)``, chunk by chunk."""
        names = outputs or self.output_names
        x = np.asarray(segments, dtype=np.float32)
        parts: dict[str, list] = {name: [] for name in names}
        for start in range(0, len(x), self.chunk):
            for name, value in zip(names, self.session.run(names, {self.input: x[start: start + self.chunk]})):
                parts[name].append(value)
        return {name: np.concatenate(values) if values else np.zeros((0,)) for name, values in parts.items()}
