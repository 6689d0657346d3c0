"""genrekit show: plot a file's log-mel spectrogram with its segment boundaries."""
from ._common import add_feature_arguments, feature_config_from_args, positive_float

IMAGE_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg")


def non_negative_float(text: str) -> float:
    import argparse

    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {text}")
    return value

HELP = "plot the log-mel spectrogram of an audio file with its segments marked"


def add_arguments(p):
    p.add_argument("audio", help="audio file")
    p.add_argument("--out", required=True, help="image to write (.png, .svg, .pdf)")
    p.add_argument("--offset", type=non_negative_float, default=0.0, help="start, in seconds")
    p.add_argument("--duration", type=positive_float, default=30.0, help="seconds to show (default 30)")
    add_feature_arguments(p)


def run(args) -> int:
    from pathlib import Path

    from ..errors import ConfigError
    from ..plots import plot_spectrogram

    out = Path(args.out)
    if out.is_dir():
        raise ConfigError(f"{out}: --out is a folder; give the image file to write")
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise ConfigError(f"{out}: --out must end in one of {', '.join(IMAGE_SUFFIXES)}")

    plot_spectrogram(args.audio, args.out, feature_config_from_args(args), offset=args.offset, duration=args.duration)
    print(f"wrote {args.out}")
    return 0
