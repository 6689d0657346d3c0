"""genrekit tags: music tags from musicnn, the pretrained tagger of Pons & Serra (2019).

Each file's taggram (tag probabilities of every 3 s patch) is averaged over the file and
the top tags are printed, as ``musicnn.tagger.top_tags`` does. The MagnaTagATune model
is the default, as in musicnn.
"""
from ._common import positive_int

HELP = "tag audio files with the pretrained musicnn tagger (MagnaTagATune or Million Song Dataset tags)"
MODELS = ("musicnn-mtt", "musicnn-msd")


def add_arguments(p):
    p.add_argument("paths", nargs="+", metavar="AUDIO", help="audio files or folders (searched recursively)")
    p.add_argument("--model", choices=MODELS, default="musicnn-mtt",
                   help="musicnn-mtt: 50 MagnaTagATune tags (default); musicnn-msd: 50 Million Song Dataset tags")
    p.add_argument("--top", type=positive_int, default=5, metavar="K", help="tags to show per file (default 5)")
    p.add_argument("--format", choices=["table", "json"], default="table")


def _file_result(path, model, top: int) -> dict:
    from ..models.musicnn import taggram

    probs, tags = taggram(path, model=model)
    mean = probs.mean(axis=0)
    order = mean.argsort()[::-1][:top]
    return {"path": str(path), "n_patches": int(len(probs)),
            "tags": [{"tag": tags[i], "probability": round(float(mean[i]), 6)} for i in order]}


def _table(result: dict) -> str:
    lines = [f"{result['path']}  ({result['n_patches']} x 3 s)"]
    width = max(len(t["tag"]) for t in result["tags"])
    lines += [f"  {t['tag']:<{width}}  {t['probability']:.3f}" for t in result["tags"]]
    return "\n".join(lines)


def run(args) -> int:
    import json
    import sys

    from ..audio import find_audio_files
    from ..errors import AudioError
    from ..models.musicnn import load_musicnn

    files = find_audio_files(args.paths)
    if not files:
        print("genrekit tags: no audio files found", file=sys.stderr)
        return 1
    model = load_musicnn(args.model)
    results, failed = [], 0
    for path in files:
        try:
            result = _file_result(path, model, args.top)
        except AudioError as e:
            failed += 1
            print(f"genrekit tags: {e}", file=sys.stderr)
            results.append({"path": str(path), "error": str(e)})
            continue
        results.append(result)
        if args.format == "table":
            print(_table(result), flush=True)
    if args.format == "json":
        print(json.dumps({"model": model.name, "files": results}, indent=2))
    return 1 if failed else 0
