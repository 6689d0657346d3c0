"""genrekit embed: per-patch musicnn embeddings of audio files, one ``.npz`` per file.

Each output holds ``embedding``, float32 ``(n_patches, D)`` — one row per 3 s patch (back to
back, as musicnn cuts them), ``D = 200`` for the default ``penultimate`` layer — and
``timestamps``, each patch's start in seconds (and the ``tagger`` and ``layer`` that made it,
and the ``source`` file with its size in ``source_bytes``). An existing output is skipped unless
``--overwrite``; one made from a file of another size (another song of the same name) is
reported as failed, not taken for this file's.
A file found in a folder argument keeps its
path relative to that folder under ``--out``; a file given directly is written as
``OUT/<name>.npz``. ``OUT/genrekit-embed.json`` records the tagger and layer: outputs made
with other settings are never mixed in (rerun with ``--overwrite`` or another ``--out``).
"""
HELP = "write per-patch musicnn embeddings of audio files as .npz (one per file, with timestamps)"
TAGGERS = ("msd", "mtt")
LAYERS = ("penultimate", "pool", "max_pool", "mean_pool")
SETTINGS_FILE = "genrekit-embed.json"


def add_arguments(p):
    p.add_argument("paths", nargs="+", metavar="AUDIO", help="audio files or folders (searched recursively)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the .npz files")
    p.add_argument("--tagger", choices=TAGGERS, default="msd",
                   help="msd (default, Million Song Dataset) or mtt (MagnaTagATune)")
    p.add_argument("--model", dest="legacy_model", choices=["musicnn-msd", "musicnn-mtt"], help="deprecated: --tagger")
    p.add_argument("--layer", choices=LAYERS, default="penultimate",
                   help="penultimate: 200-d dense layer (default); max_pool/mean_pool: 753-d temporal "
                        "pooling of the mid-end; pool: both (1506-d)")
    p.add_argument("--overwrite", action="store_true", help="recompute files whose output exists")


def plan_outputs(paths, out_dir) -> list[tuple]:
    """``[(audio path, output path)]``; folder arguments keep their relative layout."""
    from pathlib import Path

    from ..audio import find_audio_files

    jobs = []
    for arg in map(Path, paths):
        if arg.is_dir():
            jobs += [(f, Path(out_dir) / f.relative_to(arg).with_suffix(".npz")) for f in find_audio_files(arg)]
        else:
            jobs.append((arg, Path(out_dir) / (arg.stem + ".npz")))
    return jobs


def check_out_folder(out, settings: dict, overwrite: bool) -> None:
    """Refuse an ``--out`` that is a file, or that holds embeddings made with other settings."""
    import json

    from ..errors import ConfigError
    from ..io import write_json

    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: --out must be a folder, and this is a file")
    recorded = out / SETTINGS_FILE
    if recorded.is_file() and not overwrite:
        try:
            before = json.loads(recorded.read_text())
        except ValueError:
            before = None
        if before != settings:
            raise ConfigError(f"{out} holds embeddings made with other settings ({before}); use --overwrite to "
                              f"recompute them all with {settings}, or another --out")
    try:
        write_json(recorded, settings)
    except OSError as e:
        raise ConfigError(f"{out}: cannot write to --out ({e.strerror or e})") from None


def made_from(target) -> tuple[str, int] | None:
    """The audio file an existing embedding was computed from, and its size in bytes (None: not
    recorded, by genrekit before 2026-12-03, or unreadable)."""
    import numpy as np

    try:
        with np.load(target) as saved:
            if {"source", "source_bytes"} <= set(saved.files):
                return str(saved["source"]), int(saved["source_bytes"])
    except (OSError, ValueError, KeyError):
        pass
    return None


def _size(path) -> int:
    import os

    try:
        return os.stat(path).st_size
    except OSError:
        return -1


def run(args) -> int:
    import sys
    from pathlib import Path

    import numpy as np

    from ..errors import AudioError
    from ..io import atomic_path
    from ..tagger import TAGGERS as NETWORKS
    from ..tagger import embeddings
    from .musicnn_tags import tagger_from_args

    tagger = tagger_from_args(args)
    out = Path(args.out)
    jobs = plan_outputs(args.paths, out)
    if not jobs:
        print("genrekit embed: no audio files found", file=sys.stderr)
        return 1
    check_out_folder(out, {"tagger": NETWORKS[tagger], "layer": args.layer}, args.overwrite)
    done = skipped = 0
    failed, claimed = [], {}
    for path, target in jobs:
        if target in claimed:
            if Path(claimed[target]).resolve() == Path(path).resolve():
                continue  # the same file given twice (overlapping globs, a folder named twice)
            failed.append(path)
            print(f"genrekit embed: {path}: output {target} clashes with {claimed[target]}; skipped", file=sys.stderr)
            continue
        claimed[target] = path
        if target.exists() and not args.overwrite:
            source = made_from(target)  # a moved library keeps its sizes; another file of that name rarely does
            if source is not None and source[1] != _size(path):
                failed.append(path)
                print(f"genrekit embed: {path}: {target} exists, made from another file ({source[0]}); "
                      "--overwrite to replace it, or another --out", file=sys.stderr)
                continue
            skipped += 1
            continue
        try:
            emb, times = embeddings(path, tagger, args.layer)
        except AudioError as e:
            failed.append(path)
            print(f"genrekit embed: {e}", file=sys.stderr)
            continue
        try:
            with atomic_path(target) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, embedding=emb, timestamps=times, tagger=np.array(NETWORKS[tagger]),
                             layer=np.array(args.layer), source=np.array(str(Path(path).resolve())),
                             source_bytes=np.array(_size(path)))
        except OSError as e:  # a file where a folder should be, a full disk: this file fails, the others go on
            failed.append(path)
            print(f"genrekit embed: {path}: cannot write {target} ({e.strerror or e}: {e.filename})", file=sys.stderr)
            continue
        done += 1
    print(f"genrekit embed: {done} written, {skipped} skipped (exist; --overwrite to redo), "
          f"{len(failed)} failed -> {args.out}", file=sys.stderr)
    return 1 if failed else 0
