"""Write the shipped musicnn taggers as ONNX: genrekit/weights/musicnn-msd.onnx and musicnn-mtt.onnx.

Usage: python tools/export_musicnn_onnx.py

They are traced from the PyTorch port (genrekit/models/musicnn.py, weights converted from
the musicnn wheel by tools/convert_musicnn.py), so `genrekit musicnn-tags` and `embed` run
with onnxruntime alone. tests/test_tagger.py holds them to the PyTorch port within 1e-4.
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from genrekit import __version__  # noqa: E402
from genrekit.export import musicnn_onnx_bytes  # noqa: E402
from genrekit.io import atomic_path  # noqa: E402

SOURCES = {"MSD_musicnn": "Million Song Dataset", "MTT_musicnn": "MagnaTagATune"}


def main():
    for network, data in SOURCES.items():
        metadata = {"kind": "tagger", "name": f"musicnn-{network[:3].lower()}", "genrekit_version": __version__,
                    "description": f"musicnn (Pons & Serra 2019) pretrained on the {data}; ISC licence, see "
                                   "genrekit/models/weights/MUSICNN_LICENSE.txt"}
        out = REPO / "genrekit" / "weights" / f"musicnn-{network[:3].lower()}.onnx"
        with atomic_path(out) as tmp:
            tmp.write_bytes(musicnn_onnx_bytes([network], metadata))
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
