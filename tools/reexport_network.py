"""Trace the musicnn network inside a model file again with this version's export code, keep its metadata.

Usage: python tools/reexport_network.py IN.onnx OUT.onnx

For the shipped model (genrekit/weights/genrekit-gtzan.onnx) and the taggers: the export of
genrekit/models/musicnn.py pools over frequencies in onnxruntime's blocked layout, which runs the
network in about 0.8x the time of the graph exported before (bench/predict.py). OUT is written
only if every output of every segment equals IN's within 1e-5, on the patches of a real clip
(../shared/data, else a synthetic chord) and on random ones.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from genrekit.config import FeatureConfig  # noqa: E402
from genrekit.export import reexport_musicnn  # noqa: E402
from genrekit.features import waveform_segments  # noqa: E402
from genrekit.io import atomic_path  # noqa: E402
from genrekit.runtime import OnnxNetwork  # noqa: E402

TOLERANCE = 1e-5
CLIP = REPO.parent / "shared" / "data" / "fma_small" / "000" / "000002.mp3"


def check_patches(cfg: FeatureConfig) -> np.ndarray:
    """The patches of a real clip (or a chord where the data is absent) and 4 random ones."""
    if CLIP.is_file():
        from genrekit.audio import load_audio

        y = load_audio(CLIP, cfg.sr)
    else:
        t = np.arange(10 * cfg.sr) / cfg.sr
        y = (0.3 * np.sign(np.sin(2 * np.pi * 220 * t))).astype(np.float32)
    noise = np.random.default_rng(0).standard_normal((4, *cfg.segment_shape)).astype(np.float32)
    return np.concatenate([waveform_segments(y, cfg), 2.0 * noise + 1.0])


def largest_difference(old: OnnxNetwork, new: OnnxNetwork, patches: np.ndarray) -> float:
    a, b = old.run(patches), new.run(patches)
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    source, out = Path(args[0]), Path(args[1])
    data = reexport_musicnn(source)
    old, new = OnnxNetwork(source), OnnxNetwork(data)
    cfg = FeatureConfig.from_dict(old.metadata["feature_config"])
    diff = largest_difference(old, new, check_patches(cfg))
    if old.metadata != new.metadata or diff > TOLERANCE:
        print(f"not written: outputs differ by {diff:.2g} (limit {TOLERANCE:g}) or metadata differ", file=sys.stderr)
        return 1
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB); largest output difference {diff:.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
