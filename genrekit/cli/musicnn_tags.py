"""genrekit musicnn-tags: music tags from musicnn, the pretrained tagger of Pons & Serra (2019).

Each file's taggram (tag probabilities of every 3 s patch) is averaged over the file and
the top tags are printed, as ``musicnn.tagger.top_tags`` does. The MagnaTagATune tagger
is the default, as in musicnn. (Called ``genrekit tags`` before 0.2; that name still works.)
"""
from ._common import positive_int

HELP = "describe audio files with musicnn's 50 tags (MagnaTagATune or Million Song Dataset tagger)"
TAGGERS = ("mtt", "msd")


def add_arguments(p):
    p.add_argument("paths", nargs="+", metavar="AUDIO", help="audio files or folders (searched recursively)")
    p.add_argument("--tagger", choices=TAGGERS, default="mtt",
                   help="mtt: 50 MagnaTagATune tags (default); msd: 50 Million Song Dataset tags")
    p.add_argument("--model", dest="legacy_model", choices=["musicnn-mtt", "musicnn-msd"], help="deprecated: --tagger")
    p.add_argument("--top", type=positive_int, default=5, metavar="K", help="tags to show per file (default 5)")
    p.add_argument("--format", choices=["table", "json"], default="table")


def tagger_from_args(args) -> str:
    """``--tagger``, or the deprecated ``--model musicnn-X`` (with a warning)."""
    import sys

    if args.legacy_model:
        print("genrekit: --model musicnn-X is deprecated here, use --tagger X", file=sys.stderr)
        return args.legacy_model.split("-")[1]
    return args.tagger


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
    from ..tagger import TAGGERS as NETWORKS
    from ..tagger import taggram, top_of

    tagger = tagger_from_args(args)
    files = find_audio_files(args.paths)
    if not files:
        print("genrekit musicnn-tags: no audio files found", file=sys.stderr)
        return 1
    results, failed = [], 0
    for path in files:
        try:
            probs, names, _ = taggram(path, tagger)
        except AudioError as e:
            failed += 1
            print(f"genrekit musicnn-tags: {e}", file=sys.stderr)
            results.append({"path": str(path), "error": str(e)})
            continue
        result = {"path": str(path), "n_patches": int(len(probs)),
                  "tags": [{"tag": tag, "probability": p} for tag, p in top_of(probs, names, args.top)]}
        results.append(result)
        if args.format == "table":
            print(_table(result), flush=True)
    if args.format == "json":
        print(json.dumps({"tagger": NETWORKS[tagger], "files": results}, indent=2))
    if failed:
        print(f"{failed} of {len(files)} file(s) failed", file=sys.stderr)
    return 1 if failed else 0
