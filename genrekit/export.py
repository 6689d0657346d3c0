"""Export models to ONNX, with their metadata inside the file (``genrekit[train]``).

- :func:`onnx_bytes_from_payload` / :func:`export_onnx`: a training checkpoint (the
  seed's segment recipe) → a graph from segments ``(batch, bins, frames)`` to class
  probabilities. The metadata property ``genrekit`` holds the labels, the
  FeatureConfig, the architecture and the training description (with the track ids,
  artists and content hashes the leakage guard needs), so an ``.onnx`` file alone is
  enough for :func:`genrekit.prediction.load_model`.
- :func:`musicnn_onnx_bytes`: musicnn networks → a graph from musicnn patches to their
  named outputs (``MSD_musicnn/tags``, ``MSD_musicnn/penultimate``, …): the taggers of
  ``genrekit musicnn-tags`` and ``embed``, and the network of track-head models.
"""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

from .errors import CheckpointError, ConfigError

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
    import torch

    from .checkpoint import model_from_checkpoint
    from .config import FeatureConfig

    model = torch.nn.Sequential(model_from_checkpoint(payload), torch.nn.Softmax(dim=1)).eval()
    cfg = FeatureConfig.from_dict(payload["feature_config"])
    return _traced_onnx(model, cfg.segment_shape, ["probabilities"], _metadata(payload))


MUSICNN_OUTPUTS = ("tags", "penultimate", "max_pool", "mean_pool")


def _musicnn_module(networks: list[str], kinds: tuple[str, ...], strides: dict[str, int]):
    import torch

    from .models.musicnn import load_musicnn

    class MusicnnOutputs(torch.nn.Module):
        """Each network's requested outputs for a batch of patches, in a fixed order; a network with
        a stride k runs on every k-th patch of the batch, and the next k - 1 take its outputs."""

        def __init__(self):
            super().__init__()
            self.taggers = torch.nn.ModuleList([load_musicnn(name) for name in networks])
            self.strides = [strides.get(name, 1) for name in networks]

        def forward(self, x):
            outputs = []
            for tagger, stride in zip(self.taggers, self.strides):
                feats = tagger.features(x if stride == 1 else x[::stride])
                max_pool, mean_pool = tagger.backend.pool(feats)
                penultimate = tagger.backend.penultimate(feats)
                values = {"tags": torch.sigmoid(tagger.backend.output(penultimate)), "penultimate": penultimate,
                          "max_pool": max_pool, "mean_pool": mean_pool}
                if stride > 1:
                    held = torch.div(torch.arange(x.shape[0]), stride, rounding_mode="floor")
                    values = {k: v[held] for k, v in values.items()}
                outputs += [values[kind] for kind in kinds]
            return tuple(outputs)

    return MusicnnOutputs().eval()


def musicnn_onnx_bytes(networks: list[str], metadata: dict, kinds: tuple[str, ...] = MUSICNN_OUTPUTS,
                       feature_config=None, patch_strides: dict | None = None) -> bytes:
    """musicnn ``networks`` (``"MSD_musicnn"``, ``"MTT_musicnn"``) as one ONNX graph with outputs
    ``"<network>/<kind>"`` and ``metadata`` (plus the feature settings and tag names) inside.
    ``feature_config``: :data:`~genrekit.config.MUSICNN_FEATURES` (default), or the same with a
    segment level (:func:`genrekit.config.check_musicnn_config`). ``patch_strides`` (network → k,
    :func:`genrekit.config.check_patch_strides`): that network runs on every k-th patch of a batch
    only, its outputs held over the next k - 1 (:func:`genrekit.heads.hold_strided`); the graph is
    then run k patches at a time (:class:`genrekit.runtime.OnnxNetwork`)."""
    from .config import MUSICNN_FEATURES, check_musicnn_config, check_patch_strides
    from .models.musicnn import canonical_name, load_tags

    feature_config = feature_config or MUSICNN_FEATURES
    check_musicnn_config(feature_config)
    networks = [canonical_name(n) for n in networks]
    strides = check_patch_strides({canonical_name(n): k for n, k in (patch_strides or {}).items()})
    if set(strides) - set(networks):
        raise ConfigError(f"patch strides for {sorted(set(strides) - set(networks))}, not among {networks}")
    names = [f"{net}/{kind}" for net in networks for kind in kinds]
    document = {"feature_config": feature_config.to_dict(), "networks": networks,
                "tags": {net: load_tags(net) for net in networks}, **metadata}
    if strides:
        document["patch_strides"] = strides
    return _traced_onnx(_musicnn_module(networks, kinds, strides), MUSICNN_FEATURES.segment_shape, names, document)


def reexport_musicnn(source) -> bytes:
    """A musicnn model file (tagger or track head) with its network traced again by this version's
    export code, and its metadata and outputs unchanged: ONNX bytes.

    The numbers stay those of the same weights (tools/reexport_network.py checks them); the
    graph is the one :func:`musicnn_onnx_bytes` makes now (e.g. faster to run).

    Raises
    ------
    CheckpointError
        Not a musicnn model file (no ``networks`` in its metadata, or other outputs).
    """
    from .runtime import open_session

    session, metadata = open_session(source, threads=1)
    names = [o.name for o in session.get_outputs()]
    networks = list(metadata.get("networks") or [])
    kinds = tuple(dict.fromkeys(name.split("/", 1)[-1] for name in names))
    if not networks or [f"{net}/{kind}" for net in networks for kind in kinds] != names:
        raise CheckpointError(f"{source}: not a musicnn model file (outputs {names}, networks {networks})")
    from .config import FeatureConfig

    feature_config = FeatureConfig.from_dict(metadata["feature_config"]) if "feature_config" in metadata else None
    return musicnn_onnx_bytes(networks, metadata, kinds, feature_config, metadata.get("patch_strides"))


def _traced_onnx(module, segment_shape, output_names: list[str], document: dict) -> bytes:
    import onnx
    import torch

    buffer = io.BytesIO()
    axes = {name: {0: "batch"} for name in ["segments", *output_names]}
    with warnings.catch_warnings():  # the tracer's notes on shape checks and constant folding are not for users
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(2, *segment_shape),), buffer, input_names=["segments"],
                          output_names=output_names, dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    proto = onnx.load_from_string(buffer.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(document)
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
    if _is_onnx(checkpoint):
        raise CheckpointError(f"{checkpoint}: already an ONNX model file; export takes a training checkpoint "
                              "(.safetensors)")
    if Path(out).exists() and Path(checkpoint).exists() and Path(out).samefile(checkpoint):
        raise CheckpointError(f"{out}: --out is the checkpoint itself; give another path for the .onnx file")
    data = onnx_bytes_from_payload(load_checkpoint(checkpoint))
    try:
        with atomic_path(out) as tmp:
            tmp.write_bytes(data)
    except OSError as e:
        raise CheckpointError(f"{out}: cannot write the ONNX file ({e.strerror or e})") from None
    return Path(out)


def _is_onnx(path) -> bool:
    """An existing ``.onnx`` file (by name: an ONNX file has no magic bytes)."""
    return Path(path).suffix.lower() == ".onnx" and Path(path).is_file()


def read_onnx_metadata(path) -> dict:
    """The genrekit metadata of an ONNX model file (through onnxruntime; no ``onnx`` package needed)."""
    from .runtime import open_session

    return open_session(path)[1]
