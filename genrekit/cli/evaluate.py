"""genrekit evaluate: score a checkpoint on held-out tracks."""
from ._common import add_dataset_arguments, dataset_options_from_args, positive_int

HELP = ("score a model on a split of a feature cache or data set: balanced accuracy, macro-F1 and per-genre "
        "recall with CIs, calibration")


def add_arguments(p):
    p.add_argument("model", help="model file (.onnx) or training checkpoint (.safetensors)")
    p.add_argument("data", help="feature cache folder, or a data set spec decoded here: gtzan:ROOT, "
                   "fma:AUDIO_DIR (with --metadata), folder:ROOT or manifest:CSV")
    p.add_argument("--split", default="test", help="split to score (default test; 'all' for every track)")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("--report-dir", help="write report.md, report.json and confusion matrices here")
    p.add_argument("--allow-leak", action="store_true",
                   help="run even if test tracks/artists were trained on (report marked leaky)")
    p.add_argument("--allow-failures", action="store_true",
                   help="exit 0 even if some tracks could not be decoded (they are listed either way)")
    p.add_argument("--bootstrap", type=positive_int, default=2000, help="bootstrap resamples for the CI (default 2000)")
    p.add_argument("--only-model-labels", action="store_true",
                   help="leave out (with a note) tracks whose genre the model does not have, e.g. FMA's Folk")
    p.add_argument("--device", default="cpu")
    add_dataset_arguments(p)


def run(args) -> int:
    import sys

    from ..evaluation import evaluate, format_table, to_json, write_report

    report = evaluate(args.model, args.data, split=args.split, allow_leak=args.allow_leak,
                      n_boot=args.bootstrap, device=args.device, dataset_options=dataset_options_from_args(args),
                      only_model_labels=args.only_model_labels)
    if args.report_dir:
        report["files"] = write_report(report, args.report_dir)
    print(to_json(report) if args.format == "json" else format_table(report))
    if report["failures"] and not args.allow_failures:
        print(f"genrekit evaluate: {len(report['failures'])} track(s) could not be decoded (listed above); "
              "--allow-failures accepts a partial evaluation", file=sys.stderr)
        return 1
    return 0
