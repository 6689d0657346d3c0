"""Inspect a built genrekit wheel: what the package declares is inside, and nothing that should not be.

Usage: python tools/check_wheel.py dist/genrekit-*.whl   (exit 1 and a list of problems otherwise)
"""
from __future__ import annotations

import sys
import zipfile

REQUIRED = [
    "genrekit/py.typed",
    "genrekit/weights/genrekit-gtzan.onnx",
    "genrekit/weights/musicnn-msd.onnx",
    "genrekit/weights/musicnn-mtt.onnx",
    "genrekit/models/weights/MSD_musicnn.safetensors",
    "genrekit/models/weights/MTT_musicnn.safetensors",
    "genrekit/models/weights/MSD_musicnn.tags.txt",
    "genrekit/models/weights/MTT_musicnn.tags.txt",
    "genrekit/models/weights/MUSICNN_LICENSE.txt",
    "genrekit/service/static/index.html",
    "genrekit/service/static/app.js",
]
FORBIDDEN_PARTS = ("tf_checkpoint", "/tests/", "__pycache__", ".pyc", "/runs/", "/caches/")
MAX_MB = 40


def problems(path: str) -> list[str]:
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        size = sum(info.file_size for info in wheel.infolist())
        metadata = next((wheel.read(n).decode() for n in names if n.endswith(".dist-info/METADATA")), "")
    found = [f"missing {name}" for name in REQUIRED if name not in names]
    found += [f"should not ship {name}" for name in names if any(part in name for part in FORBIDDEN_PARTS)]
    if size > MAX_MB * 1e6:
        found.append(f"{size / 1e6:.0f} MB unpacked, more than {MAX_MB} MB")
    core = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    found += [f"the core install requires {line.split(':', 1)[1].strip()}" for line in core
              if any(heavy in line for heavy in ("torch", "scipy", "pandas", "scikit", "matplotlib", "fastapi"))]
    return found


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    found = problems(sys.argv[1])
    for line in found:
        print(f"{sys.argv[1]}: {line}", file=sys.stderr)
    if not found:
        print(f"{sys.argv[1]}: ok")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
