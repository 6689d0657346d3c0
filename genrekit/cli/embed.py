"""genrekit embed: per-patch musicnn embeddings of audio files, one ``.npy`` per file.

Each output is a float32 array ``(n_patches, D)``: one row per 3 s patch (back to back,
as musicnn cuts them), ``D = 200`` for the default ``penultimate`` layer. A file found in
a folder argument keeps its path relative to that folder under ``--out``; a file given
directly is written as ``OUT/<name>.npy``.
"""
HELP = "write per-patch musicnn embeddings of audio files as .npy (one per file)"
MODELS = ("musicnn-msd", "musicnn-mtt")
LAYERS = ("penultimate", "pool", "max_pool", "mean_pool")


def add_arguments(p):
    p.add_argument("paths", nargs="+", metavar="AUDIO", help="audio files or folders (searched recursively)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the .npy files")
    p.add_argument("--model", choices=MODELS, default="musicnn-msd",
                   help="musicnn-msd (default, Million Song Dataset) or musicnn-mtt (MagnaTagATune)")
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
            jobs += [(f, Path(out_dir) / f.relative_to(arg).with_suffix(".npy")) for f in find_audio_files(arg)]
        else:
            jobs.append((arg, Path(out_dir) / (arg.stem + ".npy")))
    return jobs


def _save(array, target) -> None:
    """Write ``target`` atomically: a crash never leaves a truncated ``.npy``."""
    import os

    import numpy as np

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, target)


def run(args) -> int:
    import sys

    from ..errors import AudioError
    from ..models.musicnn import embeddings, load_musicnn

    jobs = plan_outputs(args.paths, args.out)
    if not jobs:
        print("genrekit embed: no audio files found", file=sys.stderr)
        return 1
    model = load_musicnn(args.model)
    done = skipped = 0
    failed, claimed = [], {}
    for path, target in jobs:
        if target in claimed:
            failed.append(path)
            print(f"genrekit embed: {path}: output {target} clashes with {claimed[target]}; skipped", file=sys.stderr)
            continue
        claimed[target] = path
        if target.exists() and not args.overwrite:
            skipped += 1
            continue
        try:
            _save(embeddings(path, model=model, layer=args.layer), target)
            done += 1
        except AudioError as e:
            failed.append(path)
            print(f"genrekit embed: {e}", file=sys.stderr)
    print(f"genrekit embed: {done} written, {skipped} skipped (exist; --overwrite to redo), "
          f"{len(failed)} failed -> {args.out}", file=sys.stderr)
    return 1 if failed else 0
