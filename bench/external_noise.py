"""Noise made by other programs: is it "not music"? Side by side for models.

Usage: python bench/external_noise.py [--model M.onnx ...] [--seconds 30] [--probabilities] [--no-csv]

The detector learned "not music" from genrekit's own generator (tools/make_nonmusic.py), so
bench/not_music.py measures it on clips of the same making. Here the noise comes from ffmpeg's
``anoisesrc`` (white, pink, brown, blue, violet, velvet) and sox's ``synth`` (whitenoise,
pinknoise, brownnoise), seeded so that every run makes the same files. Each is written as a
44.1 kHz stereo file at a peak of -6 dBFS (ffmpeg's with two independent channels, sox's with
one noise in both) and treated four ways, as noise is found in a music library: as made,
low-passed at 5 kHz (sox, 24 dB/octave), high-passed at 300 Hz with a +6 dB bell at 2 kHz
(sox), and as a 128 kbit/s MP3 (ffmpeg). 36 files. Needs the Debian packages ffmpeg and sox.
Prints, per model, how many of each treatment are answered "not music", and appends one row
per model to bench/results/external_noise.csv. To compare with the model shipped before::

    git show HEAD:genrekit/weights/genrekit-gtzan.onnx > /tmp/before.onnx
    python bench/external_noise.py --model /tmp/before.onnx genrekit/weights/genrekit-gtzan.onnx
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

SR = 44100
PEAK_DB = -6.0
FFMPEG_COLOURS = ("white", "pink", "brown", "blue", "violet", "velvet")
SOX_COLOURS = ("whitenoise", "pinknoise", "brownnoise")
TREATMENTS = {  # name -> (file name part, sox effects; None: the MP3 round trip through ffmpeg)
    "as made": ("plain", []),
    "low-pass 5 kHz": ("lowpass", ["lowpass", "5000", "lowpass", "5000"]),
    "high-pass 300 Hz + bell": ("highpass", ["highpass", "300", "equalizer", "2000", "1q", "6"]),
    "mp3 128k": ("mp3", None),
}


def _shown(path: str) -> str:
    """A model's path relative to the repository when it is inside it."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(resolved)


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def make_sources(out: Path, seconds: float) -> list[Path]:
    """One 44.1 kHz stereo WAV per noise colour and program, peak-normalised to PEAK_DB."""
    raw = []
    for colour in FFMPEG_COLOURS:
        path = out / f"ffmpeg-{colour}-raw.wav"
        left_right = [f"anoisesrc=r={SR}:c={colour}:d={seconds}:a=0.5:s={seed}" for seed in (1, 2)]
        run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", left_right[0], "-f", "lavfi", "-i", left_right[1],
             "-filter_complex", "[0:a][1:a]join=inputs=2:channel_layout=stereo", str(path)])
        raw.append(path)
    for colour in SOX_COLOURS:
        path = out / f"sox-{colour}-raw.wav"
        run(["sox", "-R", "-n", "-r", str(SR), "-c", "2", str(path), "synth", str(seconds), colour])
        raw.append(path)
    sources = []
    for path in raw:
        target = path.with_name(path.name.replace("-raw", ""))
        run(["sox", "--norm=" + str(PEAK_DB), str(path), str(target)])
        sources.append(target)
    return sources


def treat(source: Path, treatment: str, out: Path) -> Path:
    slug, effects = TREATMENTS[treatment]
    if effects is None:
        target = out / f"{source.stem}-{slug}.mp3"
        run(["ffmpeg", "-v", "error", "-y", "-i", str(source), "-b:a", "128k", str(target)])
        return target
    target = out / f"{source.stem}-{slug}.wav"
    run(["sox", "-G", str(source), str(target), *effects])  # -G: guard against clipping
    return target


def answers_of(models: list[str], groups: dict[str, list[Path]]) -> dict:
    """model → group → each file's result, every model loaded once."""
    from genrekit.prediction import load_model

    answers = {}
    for m in models:
        model = load_model(m)
        answers[m] = {g: [model.predict_file(f) for f in paths] for g, paths in groups.items()}
    return answers


def detected(results: list) -> int:
    return sum(r.abstain == "not_music" for r in results)


def print_side_by_side(column: str, groups: dict[str, list[Path]], answers: dict) -> None:
    """One row per group, one column per model: files answered not music / files."""
    width = 30
    print(f"{column:>24}  " + "  ".join(f"{Path(m).name[:width]:>{width}}" for m in answers))
    for g, paths in groups.items():
        print(f"{g:>24}  " + "  ".join(f"{detected(a[g])}/{len(paths)}".rjust(width) for a in answers.values()))


def model_rows(answers: dict, command: str, slug=lambda g: g) -> list[dict]:
    """Per model: its totals, printed, and a CSV row (per group ``<slug>:<detected>/<files>``)."""
    from results_csv import machine

    from genrekit.cache.featurize import file_sha256

    rows = []
    for m, per_group in answers.items():
        results = [r for group in per_group.values() for r in group]
        missed = [f"{Path(r.path).stem}:{r.best_guess}" for r in results if r.abstain != "not_music"]
        print(f"{Path(m).name}: {detected(results)}/{len(results)} not music; missed: {' '.join(missed) or 'none'}")
        rows.append({"date": time.strftime("%Y-%m-%d"), "machine": machine(), "command": command, "model": _shown(m),
                     "model_sha256": file_sha256(m)[:12], "files": len(results), "not_music": detected(results),
                     "per_group": " ".join(f"{slug(g)}:{detected(v)}/{len(v)}" for g, v in per_group.items()),
                     "missed": " ".join(missed)})
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", nargs="+", default=[str(REPO / "genrekit" / "weights" / "genrekit-gtzan.onnx")])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--probabilities", action="store_true", help="also print each file's P(not music)")
    p.add_argument("--no-csv", action="store_true")
    args = p.parse_args()
    missing = [tool for tool in ("ffmpeg", "sox") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"external_noise: needs {' and '.join(missing)} (apt-get install ffmpeg sox)")
    from results_csv import append_rows

    with tempfile.TemporaryDirectory() as tmp:
        sources = make_sources(Path(tmp), args.seconds)
        files = {t: [treat(s, t, Path(tmp)) for s in sources] for t in TREATMENTS}
        answers = answers_of(args.model, files)
    print(f"{len(sources)} noises (ffmpeg: {', '.join(FFMPEG_COLOURS)}; sox: {', '.join(SOX_COLOURS)}), 44.1 kHz "
          f"stereo, {args.seconds:g} s, peak {PEAK_DB:g} dBFS; answered not music / {len(sources)}")
    print_side_by_side("treatment", files, answers)
    rows = model_rows(answers, "python bench/external_noise.py", slug=lambda t: TREATMENTS[t][0])
    for row in rows:
        row["per_treatment"] = row.pop("per_group")
    if args.probabilities:
        for m, per_group in answers.items():
            print(f"{Path(m).name} P(not music): " + " ".join(
                f"{Path(r.path).stem}:{1 - r.music_probability:.3f}" for g in per_group.values() for r in g))
    if not args.no_csv:
        append_rows(REPO / "bench" / "results" / "external_noise.csv", rows)


if __name__ == "__main__":
    main()
