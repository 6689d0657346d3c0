"""Music from outside the DEV data: what the shipped model says about game soundtracks from Debian.

Usage: python bench/outside_music.py [--root /tmp/gm2/x] [--folder NAME=PATH ...] [--model M.onnx] [--no-csv]

The DEV data is 87 GTZAN and 48 FMA tracks. Debian's game packages hold a few hundred freely
licensed tracks of other making: orchestral scores (wesnoth), electronic and rock (warzone2100,
nexuiz), chiptune-like and pop game music (supertux, extremetuxracer, hedgewars, freedroidrpg),
as Ogg Vorbis and Opus. None has a GTZAN genre to score against, so this is not an accuracy: it
counts, per package, tracks, decoding failures, tracks answered "not music" (all of them are
music, except wesnoth's ``silence.ogg``, 10 s of digital silence) and "uncertain", and the
genres given. No audio from these packages is kept in the repository. To fetch them (about
600 MB; nothing is installed)::

    mkdir -p /tmp/gm2 && cd /tmp/gm2
    apt-get download wesnoth-1.16-music warzone2100-music nexuiz-music extremetuxracer-data \\
        lincity-ng-data supertux-data hedgewars-data freedroidrpg-data
    for d in *.deb; do dpkg-deb -x "$d" x; done
    unzip -q -o x/usr/share/games/nexuiz/data/music.pk3 -d x/nexuiz   # nexuiz's music is in a zip
    cd - && python bench/outside_music.py --root /tmp/gm2/x

A package whose folder is missing under ``--root`` is reported and left out; ``--folder
NAME=PATH`` adds (or replaces) a folder of your own. Prints one block per package, the files
answered not music or uncertain with their music probability, the failures with their reason,
and appends one row to bench/results/outside_music.csv.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

SHIPPED = REPO / "genrekit" / "weights" / "genrekit-gtzan.onnx"
# Debian package -> its music folder under --root (the files `dpkg-deb -x` writes).
PACKAGES = {
    "wesnoth-1.16-music": "usr/share/games/wesnoth/1.16/data/core/music",
    "warzone2100-music": "usr/share/games/warzone2100/music",
    "nexuiz-music": "nexuiz/sound/cdtracks",
    "extremetuxracer-data": "usr/share/games/etr/music",
    "lincity-ng-data": "usr/share/games/lincity-ng/music",
    "supertux-data": "usr/share/games/supertux2/music",
    "hedgewars-data": "usr/share/games/hedgewars/Data/Music",
    "freedroidrpg-data": "usr/share/freedroidrpg/data/sound/music",
}


def folders(root: Path, extra: list[str]) -> dict[str, Path]:
    chosen = {name: root / rel for name, rel in PACKAGES.items()}
    for item in extra:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--folder {item!r}: give NAME=PATH")
        chosen[name] = Path(path)
    found = {}
    for name, path in chosen.items():
        if path.is_dir():
            found[name] = path
        else:
            print(f"{name}: {path} not found, left out (see this script's docstring to fetch it)")
    return found


def outcome(result) -> str:
    """The genre, "not_music", "uncertain" or "failed"."""
    if getattr(result, "abstain", None):
        return result.abstain
    return getattr(result, "genre", None) or "failed"


def counts(outcomes: Counter) -> str:
    return " ".join(f"{k}:{v}" for k, v in sorted(outcomes.items(), key=lambda kv: (-kv[1], kv[0])))


def genres_of(outcomes: Counter) -> Counter:
    return Counter({k: v for k, v in outcomes.items() if k not in ("not_music", "uncertain", "failed")})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path("/tmp/gm2/x"), help="where the packages were extracted")
    p.add_argument("--folder", action="append", default=[], metavar="NAME=PATH", help="another folder of music")
    p.add_argument("--model", type=Path, default=SHIPPED)
    p.add_argument("--no-csv", action="store_true")
    args = p.parse_args(argv)

    from results_csv import append_rows, machine

    from genrekit.audio import find_audio_files
    from genrekit.cache.featurize import file_sha256
    from genrekit.prediction import FILE_WORKERS, load_model

    chosen = folders(args.root, args.folder)
    if not chosen:
        print("no folder of music found", file=sys.stderr)
        return 1
    files = {name: find_audio_files([path]) for name, path in chosen.items()}
    model = load_model(str(args.model), threads=1)  # one thread per file, FILE_WORKERS files at once, as predict does
    total, per_package, odd, failed = Counter(), [], [], []
    seconds = audio_seconds = 0.0
    for name, paths in files.items():
        start = time.perf_counter()
        results = list(model.predict_files(paths, workers=FILE_WORKERS))
        seconds += time.perf_counter() - start
        said = Counter(outcome(r) for r in results)
        total.update(said)
        audio_seconds += sum(getattr(r, "duration", None) or 0.0 for r in results)
        genres = genres_of(said)
        print(f"{name}: {len(results)} tracks, {said['failed']} failed, {said['not_music']} not music, "
              f"{said['uncertain']} uncertain; genres {counts(genres) or '-'}", flush=True)
        per_package.append(f"{name}:{len(results)}/{said['failed']}/{said['not_music']}/{said['uncertain']}"
                           f"[{counts(genres)}]")
        for r in results:
            shown = f"{name}/{Path(r.path).relative_to(chosen[name])}"
            if outcome(r) in ("not_music", "uncertain"):
                music = getattr(r, "music_probability", None)
                music = "-" if music is None else f"{music:.3f}"
                odd.append(f"{shown}:{outcome(r)}:{music}")
                print(f"    {outcome(r)}: {shown} (music probability {music}, "
                      f"best guess {getattr(r, 'best_guess', None) or '-'})")
            elif outcome(r) == "failed":
                failed.append(f"{shown}:{r.error}")
                print(f"    FAILED: {shown}: {r.error}")
    tracks = sum(len(v) for v in files.values())
    genres = genres_of(total)
    print(f"all: {tracks} tracks ({audio_seconds / 3600:.2f} h of audio) in {seconds:.0f} s, {total['failed']} failed, "
          f"{total['not_music']} not music, {total['uncertain']} uncertain; genres {counts(genres)}")
    if not args.no_csv:
        command = " ".join(["python", "bench/outside_music.py", *(sys.argv[1:] if argv is None else argv)])
        model_path = args.model.resolve()
        shown_model = str(model_path.relative_to(REPO)) if model_path.is_relative_to(REPO) else str(model_path)
        append_rows(REPO / "bench" / "results" / "outside_music.csv", [{
            "date": time.strftime("%Y-%m-%d"), "machine": machine(), "command": command,
            "model": shown_model, "model_sha256": file_sha256(model_path)[:12], "model_id": model.model_id,
            "packages": len(files), "tracks": tracks, "audio_hours": round(audio_seconds / 3600, 2),
            "seconds": round(seconds, 1), "failed": total["failed"], "not_music": total["not_music"],
            "uncertain": total["uncertain"], "genres": counts(genres),
            "per_package (tracks/failed/not_music/uncertain[genres])": " ".join(per_package),
            "not_music_or_uncertain (music probability)": " | ".join(odd), "failures": " | ".join(failed)}])
    return 0


if __name__ == "__main__":
    sys.exit(main())
