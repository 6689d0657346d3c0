"""Does the answer depend on how loud the file is? The same DEV tracks played softer, side by side for models.

Usage: python bench/level.py [--model M.onnx ...] [--gains 0 -10 -20 -30 -40] [--data ../shared/data]

Each track (by default the 2 classical, 2 jazz and 1 blues of DEV that are quietest or most
dynamic: the genres whose recordings are often soft) is scaled by each gain and written as a
float WAV, so nothing clips or is requantised; every model predicts every version. Prints, per
model and gain, how many tracks keep the genre they got at 0 dB and how many are answered
"not music". To compare with the model shipped before the level step::

    git show 27e54eb:genrekit/weights/genrekit-gtzan.onnx > /tmp/before.onnx
    python bench/level.py --model /tmp/before.onnx genrekit/weights/genrekit-gtzan.onnx
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TRACKS = ["gtzan_16k/classical/classical.00045.wav", "gtzan_16k/classical/classical.00092.wav",
          "gtzan/jazz/jazz.00000.wav", "gtzan/jazz/jazz.00001.wav", "gtzan_16k/blues/blues.00040.wav"]


def softer_versions(data: Path, gains: list[float], out: Path) -> dict[float, list[Path]]:
    import numpy as np
    import soundfile as sf

    versions = {g: [] for g in gains}
    for rel in TRACKS:
        y, sr = sf.read(data / rel, dtype="float32")
        for g in gains:
            path = out / f"{Path(rel).stem}_{-g:g}dB.wav"
            sf.write(path, (y * np.float32(10 ** (g / 20))).astype(np.float32), sr, subtype="FLOAT")
            versions[g].append(path)
    return versions


def answers(model_path: str, versions: dict) -> dict[float, list[str]]:
    """Each model's answer (genre, or why it abstained) for every file of every version."""
    from genrekit.prediction import load_model

    model = load_model(model_path)
    return {g: [(p.genre or p.abstain) for p in map(model.predict_file, paths)] for g, paths in versions.items()}


def print_same_answers(results: dict, reference: float, keys: list[float], header: str, width: int = 28) -> None:
    """Per version (row) and model (column): how many files keep the answer of the ``reference``
    version, and how many are answered "not music"."""
    models = list(results)
    print(f"{header:>10}  " + "  ".join(f"{Path(m).name[:width]:>{width}}" for m in models))
    for key in keys:
        cells = []
        for m in models:
            base, now = results[m][reference], results[m][key]
            same = sum(a == b for a, b in zip(base, now))
            cells.append(f"{same}/{len(now)} same, {now.count('not_music')} not music".rjust(width))
        print(f"{key:>10g}  " + "  ".join(cells))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", nargs="+", default=[str(REPO / "genrekit" / "weights" / "genrekit-gtzan.onnx")])
    p.add_argument("--gains", nargs="+", type=float, default=[0.0, -10.0, -20.0, -30.0, -40.0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = p.parse_args()
    if 0.0 not in args.gains:
        sys.exit("--gains must include 0 (the reference)")
    with tempfile.TemporaryDirectory() as tmp:
        versions = softer_versions(args.data, args.gains, Path(tmp))
        results = {m: answers(m, versions) for m in args.model}
    print(f"{len(TRACKS)} DEV tracks ({', '.join(Path(t).stem for t in TRACKS)}); per gain: "
          "same genre as at 0 dB / answered not music")
    print_same_answers(results, 0.0, sorted(args.gains, reverse=True), "gain dB")


if __name__ == "__main__":
    main()
