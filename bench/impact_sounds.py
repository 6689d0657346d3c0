"""Sound effects with hits in them (explosions, shots, thuds, barrages): is it "not music"? Side by side for models.

Usage: python bench/impact_sounds.py [--model M.onnx ...] [--no-csv]

The detector learned "not music" from genrekit's own generator (tools/make_nonmusic.py): steady
noise, tones, clicks, applause, speech and the like. Game and film sound effects are none of these:
a burst of noise that dies away, once or in a string. This bench makes such effects with sox, in
repeatable mode (``-R``), so every run hears the same files, 44.1 kHz stereo, peak-normalised to
-3 dBFS, and prints how many of each kind each model answers "not music":

- ``explosion``: brown noise low-passed at 300, 800 or 2000 Hz, 0.5 ms attack, a logarithmic
  decay over 2 or 4 s (one event, as a game ships it; under 9 s, so read by the per-patch detector);
- ``shots``: 0.25 s white-noise cracks high-passed at 200 Hz, 12 s at 1, 2 and 4 a second;
- ``thuds``: 0.4 s brown-noise thumps low-passed at 150 Hz, 12 s at 1 and 2 a second;
- ``barrage``: explosions of the three cut-offs, 1.5 s each with 0-1 s between, 12 s and 30 s;
- ``crackling``: a 4 s explosion whose brown noise is amplitude-modulated by white noise (sox
  ``synth … amod``), low-passed at 400, 800 or 1200 Hz;
- ``bursts``: 0.8 s white-noise bursts low-passed at 1, 2, 3 and 4 kHz, one after another, 4.8 s and 12 s.

The last two kinds come from the first effects tried by hand (2026-12-03), of which one crackling
explosion and the string of bursts got a genre; the first four were written after them. All six
are kept, none tuned toward or away from a miss.

One row per model goes to ``bench/results/impact_sounds.csv``. Needs the Debian package sox.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

SR = 44100
PEAK_DB = -3.0
CUTOFFS = (300, 800, 2000)


def sox(*args) -> None:
    subprocess.run(["sox", "-R", *map(str, args)], check=True, capture_output=True)


def event(path: Path, colour: str, seconds: float, filt: list, gap: float = 0.0) -> Path:
    """One burst: ``colour`` noise, 0.5 ms attack, logarithmic decay over ``seconds``, then ``gap`` s of silence."""
    sox("-n", "-r", SR, "-c", 2, path, "synth", seconds, colour, "fade", "l", 0.0005, seconds, seconds - 0.001,
        *filt, "pad", 0, gap)
    return path


def string_of(path: Path, parts: list[Path], seconds: float) -> Path:
    """``parts`` one after another, repeated up to ``seconds``."""
    joined = path.with_suffix(".joined.wav")
    sox(*parts, joined)
    sox(joined, path, "repeat", "-", "trim", 0, seconds)
    return path


def normalised(path: Path) -> Path:
    """A copy peak-normalised to PEAK_DB, of the same name, in a folder of its own."""
    target = path.parent / "normalised" / path.name
    target.parent.mkdir(exist_ok=True)
    sox(f"--norm={PEAK_DB}", path, target)
    return target


def make_effects(out: Path) -> dict[str, list[Path]]:
    kinds = {"explosion": [], "shots": [], "thuds": [], "barrage": [], "crackling": [], "bursts": []}
    for cutoff in CUTOFFS:
        for seconds in (2, 4):
            kinds["explosion"].append(event(out / f"explosion-{cutoff}hz-{seconds}s.wav", "brownnoise", seconds,
                                            ["lowpass", cutoff, "lowpass", cutoff]))
    for rate in (1, 2, 4):
        crack = event(out / f"crack-{rate}.wav", "whitenoise", 0.25, ["highpass", 200], gap=1 / rate - 0.25)
        kinds["shots"].append(string_of(out / f"shots-{rate}-per-s.wav", [crack], 12))
    for rate in (1, 2):
        thump = event(out / f"thump-{rate}.wav", "brownnoise", 0.4, ["lowpass", 150, "lowpass", 150],
                      gap=1 / rate - 0.4)
        kinds["thuds"].append(string_of(out / f"thuds-{rate}-per-s.wav", [thump], 12))
    booms = [event(out / f"boom-{c}.wav", "brownnoise", 1.5, ["lowpass", c, "lowpass", c], gap=g)
             for c, g in zip(CUTOFFS, (0.0, 0.6, 1.0))]
    for seconds in (12, 30):
        kinds["barrage"].append(string_of(out / f"barrage-{seconds}s.wav", booms, seconds))
    for cutoff in (400, 800, 1200):
        path = out / f"crackling-{cutoff}hz.wav"
        sox("-n", "-r", SR, "-c", 2, path, "synth", 4, "brownnoise", "synth", 4, "whitenoise", "amod", 0.3,
            "fade", "p", 0.005, 4, 3.9, "lowpass", cutoff)
        kinds["crackling"].append(path)
    bursts = [event(out / f"burst-{k}khz.wav", "whitenoise", 0.8, ["lowpass", 1000 * k]) for k in (1, 2, 3, 4)]
    for seconds in (4.8, 12):
        kinds["bursts"].append(string_of(out / f"bursts-{seconds:g}s.wav", [*bursts, bursts[0], bursts[2]], seconds))
    return {kind: [normalised(p) for p in paths] for kind, paths in kinds.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", nargs="+", default=[str(REPO / "genrekit" / "weights" / "genrekit-gtzan.onnx")])
    p.add_argument("--no-csv", action="store_true")
    args = p.parse_args()
    if shutil.which("sox") is None:
        sys.exit("impact_sounds: needs sox (apt-get install sox)")
    from external_noise import answers_of, model_rows, print_side_by_side
    from results_csv import append_rows

    with tempfile.TemporaryDirectory() as tmp:
        effects = make_effects(Path(tmp))
        answers = answers_of(args.model, effects)
    print(f"sound effects made by sox, 44.1 kHz stereo, peak {PEAK_DB:g} dBFS; answered not music / files")
    print_side_by_side("kind", effects, answers)
    rows = model_rows(answers, "python bench/impact_sounds.py")
    for row in rows:
        row["per_kind"] = row.pop("per_group")
    if not args.no_csv:
        append_rows(REPO / "bench" / "results" / "impact_sounds.csv", rows)


if __name__ == "__main__":
    main()
