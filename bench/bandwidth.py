"""Does the answer depend on the recording's bandwidth? DEV tracks low-passed, side by side for models.

Usage: python bench/bandwidth.py [--model M.onnx ...] [--cutoffs 8000 6000 4000] [--data ../shared/data]

Old recordings, radio captures and low-bitrate files lack the highs. Each DEV GTZAN WAV
(``gtzan/<genre>/*.wav``) is low-passed (Butterworth, order 6, applied forward) at each cut-off and
written as a float WAV; every model predicts every version. Prints, per model and cut-off, how
many tracks keep the genre they got unfiltered, and how many are answered "not music". The shipped
model trained on these tracks, so the figure is one of invariance, not of accuracy. Needs scipy
(``genrekit[train]``).
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from level import answers, print_same_answers  # noqa: E402  (the level bench's answers and table)


def low_passed_versions(tracks: list[Path], cutoffs: list[float], out: Path) -> dict[float, list[Path]]:
    """``{cut-off: [paths]}``; cut-off 0 is the file as it is."""
    import numpy as np
    import soundfile as sf
    from scipy.signal import butter, sosfilt

    versions = {0.0: list(tracks)} | {c: [] for c in cutoffs}
    for path in tracks:
        y, sr = sf.read(path, dtype="float32")
        for cutoff in cutoffs:
            sos = butter(6, cutoff, btype="low", fs=sr, output="sos")
            target = out / f"{path.stem}_lowpass{cutoff:g}.wav"
            sf.write(target, sosfilt(sos, y, axis=0).astype(np.float32), sr, subtype="FLOAT")
            versions[cutoff].append(target)
    return versions


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", nargs="+", default=[str(REPO / "genrekit" / "weights" / "genrekit-gtzan.onnx")])
    p.add_argument("--cutoffs", nargs="+", type=float, default=[8000.0, 6000.0, 4000.0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = p.parse_args()
    if any(c <= 0 for c in args.cutoffs):
        sys.exit("--cutoffs must be positive frequencies in Hz")
    tracks = sorted((args.data / "gtzan").glob("*/*.wav"))
    if not tracks:
        sys.exit(f"{args.data / 'gtzan'}: no WAV files")
    with tempfile.TemporaryDirectory() as tmp:
        versions = low_passed_versions(tracks, args.cutoffs, Path(tmp))
        results = {m: answers(m, versions) for m in args.model}
    print(f"{len(tracks)} DEV GTZAN WAVs (training tracks of the shipped model: invariance, not accuracy); "
          "per cut-off: same genre as unfiltered / answered not music")
    print_same_answers(results, 0.0, sorted(args.cutoffs, reverse=True), "cut-off Hz", width=30)


if __name__ == "__main__":
    main()
