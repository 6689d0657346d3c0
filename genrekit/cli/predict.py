"""genrekit predict: classify audio files with the shipped model or your own."""
from ._common import positive_float, positive_int

HELP = "predict the genre of audio files or folders (shipped model by default)"


def add_arguments(p):
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files or folders (searched recursively)")
    p.add_argument("--model", help="model file (.onnx) or training checkpoint (.safetensors; needs genrekit[train]); "
                   "default: the model shipped with genrekit")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")
    p.add_argument("--top-k", type=positive_int, default=3, help="probabilities to show per file (default 3)")
    p.add_argument("--max-duration", type=_seconds, help="read at most this many seconds of each file")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--runtime", choices=["auto", "torch", "onnx"], default="auto",
                   help="auto (default): onnxruntime on CPU, PyTorch on CUDA")
    p.add_argument("--min-confidence", type=_probability, metavar="P",
                   help="answer 'uncertain' below this top probability (default: the model's own)")
    p.add_argument("--segments", action="store_true", help="table format: also list every segment's vote")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _seconds(text: str) -> float:
    import argparse
    import math

    value = positive_float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def _probability(text: str) -> float:
    import argparse

    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


ANSWERS = {"not_music": "not music", "uncertain": "uncertain"}


def _answer(result) -> str:
    """The genre, or the abstention in words with the best guess."""
    if result.abstain is None:
        return result.genre
    return f"{ANSWERS[result.abstain]} (best guess {result.best_guess} {result.confidence:.2f})"


def _table(result, top_k: int, segments: bool) -> str:
    from ..audio import shown_path
    from ..prediction import Failure

    if _silent(result):
        return f"{shown_path(result.path, one_line=True)}\tnot music ({result.error})"
    if isinstance(result, Failure):
        return f"{shown_path(result.path, one_line=True)}\tFAILED: {result.error}"
    probs = ", ".join(f"{label} {p:.2f}" for label, p in result.top(top_k))
    votes = " ".join(f"{label}:{n}" for label, n in result.votes().items())
    line = f"{shown_path(result.path, one_line=True)}\t{_answer(result)}\t({probs})\tvotes {votes}"
    if segments:
        line += "".join(f"\n    {s['start']:7.2f}-{s['end']:7.2f} s  {s['genre']} {s['confidence']:.2f}" for s in result.segments)
    return line


def _csv_rows(results, top_k):
    from ..audio import shown_path
    from ..prediction import Failure

    rows = []
    for r in results:
        if _silent(r):
            rows.append({"path": shown_path(r.path), "genre": "", "abstain": "not_music", "confidence": "", "top": "",
                         "n_segments": "", "error": ""})
        elif isinstance(r, Failure):
            rows.append({"path": shown_path(r.path), "genre": "", "abstain": "", "confidence": "", "top": "", "n_segments": "",
                         "error": r.error})
        else:
            rows.append({"path": shown_path(r.path), "genre": r.genre or "", "abstain": r.abstain or "",
                         "confidence": f"{r.confidence:.4f}",
                         "top": ";".join(f"{k}={v:.4f}" for k, v in r.top(top_k)), "n_segments": len(r.segments), "error": ""})
    return rows


def _json_dict(result, top_k: int) -> dict:
    """The result as JSON data; a file name that is not valid UTF-8 shows its odd bytes as
    ``\\xNN`` (see :func:`genrekit.audio.shown_path`), so the output is valid UTF-8 JSON."""
    from ..audio import shown_path
    from ..prediction import Failure

    data = result.to_dict() if isinstance(result, Failure) else result.to_dict(top_k)
    return {**data, "path": shown_path(data["path"])}


def _silent(result) -> bool:
    """All-silent audio: reported as not music (as the docs say), not as a failure."""
    from ..prediction import Failure

    return isinstance(result, Failure) and result.abstain == "not_music"


def run(args) -> int:
    import csv
    import json
    import sys

    from ..audio import find_audio_files, shown_path
    from ..prediction import file_threads, load_model

    files = find_audio_files(args.paths)
    if not files:
        print(f"genrekit predict: no audio files found in {' '.join(map(shown_path, args.paths))}", file=sys.stderr)
        return 1
    threads = file_threads(len(files))
    model = load_model(args.model, device=args.device, runtime=args.runtime, min_confidence=args.min_confidence,
                       threads=threads)
    results = []
    try:
        _predict_all(model, files, args, results)
    except KeyboardInterrupt:
        print(f"genrekit predict: interrupted after {len(results)} of {len(files)} files", file=sys.stderr)
        _report_failures(results)
        return 130
    if args.format == "json":
        print(json.dumps([_json_dict(r, args.top_k) for r in results], indent=2))
    elif args.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=["path", "genre", "abstain", "confidence", "top", "n_segments", "error"])
        writer.writeheader()
        writer.writerows(_csv_rows(results, args.top_k))
    return 1 if _report_failures(results) else 0


def _predict_all(model, files, args, results: list) -> None:
    """Classify the files, appending to ``results`` as each is done (a table is printed as it goes)."""
    import sys

    from tqdm import tqdm

    from ..prediction import FILE_WORKERS

    bar = tqdm(total=len(files), unit="file", disable=args.quiet or len(files) < 2, file=sys.stderr)
    try:
        for result in model.predict_files(files, args.max_duration, workers=FILE_WORKERS):
            results.append(result)
            bar.update()
            if args.format == "table":
                bar.write(_table(result, args.top_k, args.segments), file=sys.stdout)
    finally:
        bar.close()


def _report_failures(results) -> list:
    """Print the failed files, if any, to standard error; return them."""
    import sys

    from ..audio import shown_path
    from ..prediction import Failure

    failed = [r for r in results if isinstance(r, Failure) and not _silent(r)]
    if failed:
        print(f"{len(failed)} of {len(results)} file(s) failed:", file=sys.stderr)
        for f in failed:
            print(f"  {shown_path(f.path, one_line=True)}: {f.error}", file=sys.stderr)
    return failed
