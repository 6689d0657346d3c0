"""Render 30 s excerpts of public-domain classical scores to WAV, as an out-of-domain check.

DEV has 2 classical tracks, the private held-out set 13; this gives a third, synthetic view of
one question: does a model call classical music "classical"? The scores come from music21's
core corpus (string quartets, lieder, keyboard and chamber works, madrigals, chorales), the
sound from FluidSynth and the FluidR3 General MIDI soundfont, so the timbre is synthetic:
figures on it say how a model treats rendered scores, not how it treats recordings.

Needs (not genrekit dependencies): ``pip install music21`` in the Python that runs this, and
``apt install fluidsynth fluid-soundfont-gm``. Writes ``<out>/<composer>_<work>.wav`` (22.05 kHz
mono, 30 s from the start of the score) and ``<out>/manifest.csv`` (genrekit's manifest:
path, label = classical, split = test, group = composer), so that
``genrekit evaluate MODEL manifest:<out>/manifest.csv`` scores a model on it. Existing WAVs are kept unless ``--overwrite``.

Example: ``python tools/render_classical.py runs/synth_classical --per-composer 3``
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

COMPOSERS = ["bach", "beethoven", "mozart", "haydn", "schumann_robert", "schumann_clara", "chopin", "corelli",
             "handel", "schubert", "cpebach", "verdi", "weber", "beach", "monteverdi", "palestrina", "josquin"]
SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
SR, SECONDS, MAX_MEASURES = 22050, 30.0, 40


def pick_scores(per_composer: int) -> list[tuple[str, Path]]:
    from music21 import corpus

    paths = sorted(p for p in corpus.getCorePaths() if p.suffix in (".mxl", ".xml", ".krn"))
    picked = []
    for composer in COMPOSERS:
        mine = [p for p in paths if f"corpus/{composer}/" in p.as_posix()]
        stems, step = set(), max(1, len(mine) // max(per_composer, 1))
        for p in mine[::step]:  # spread over the composer's works, one file per work/movement
            key = p.with_suffix("").as_posix()
            if key not in stems and len(stems) < per_composer:
                stems.add(key)
                picked.append((composer, p))
    return picked


def render(score_path: Path, wav: Path) -> None:
    import numpy as np
    import soundfile as sf
    from music21 import corpus

    score = corpus.parse(score_path)
    if hasattr(score, "scores"):  # an opus: its first score
        score = score.scores[0]
    excerpt = score.measures(1, MAX_MEASURES) or score
    with tempfile.TemporaryDirectory() as tmp:
        mid, raw = Path(tmp) / "x.mid", Path(tmp) / "x.wav"
        excerpt.write("midi", fp=str(mid))
        # bounded: a hung synthesiser or a runaway file must not fill the disk
        subprocess.run(["fluidsynth", "-ni", "-q", "-g", "0.6", "-F", str(raw), "-r", str(SR), SOUNDFONT, str(mid)],
                       check=True, capture_output=True, timeout=120)
        audio, sr = sf.read(raw, frames=int(SR * SECONDS), always_2d=True)
    mono = audio.mean(axis=1)
    if len(mono) < SR * 10:
        raise ValueError(f"only {len(mono) / SR:.1f} s of audio")
    peak = np.abs(mono).max()
    tmp_wav = wav.with_suffix(".part.wav")
    sf.write(tmp_wav, (mono / peak * 0.9 if peak > 0 else mono).astype("float32"), SR, subtype="PCM_16")
    os.replace(tmp_wav, wav)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--per-composer", type=int, default=3)
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows, failed = [], []
    for composer, path in pick_scores(args.per_composer):
        work = "_".join(path.relative_to(path.parents[1] if path.parent.name != composer else path.parent)
                        .with_suffix("").parts).replace(".", "-")
        wav = args.out / f"{composer}_{work}.wav"
        try:
            if args.overwrite or not wav.exists():
                render(path, wav)
            rows.append({"path": wav.name, "label": "classical", "split": "test", "group": composer})
            print(f"ok   {wav.name}", flush=True)
        except Exception as e:  # one bad score must not stop the set
            failed.append(f"{path}: {e}")
            print(f"fail {path.name}: {str(e).splitlines()[0] if str(e) else type(e).__name__}", flush=True)
    with open(args.out / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["path", "label", "split", "group"])
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} excerpts in {args.out}; {len(failed)} scores failed", file=sys.stderr)
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
