#!/usr/bin/env python
"""Time musicnn tagging of a 30 s clip on this machine (CPU by default).

Prints the median over ``--repeats`` runs of: decoding + resampling to 16 kHz, the
musicnn log-mel patches (10 x 3 s), the network (10 patches in one batch), and the
total, i.e. what ``genrekit tags`` spends per 30 s file after loading the model.

    python bench/musicnn_speed.py [AUDIO] [--model MTT_musicnn] [--repeats 5] [--threads N]

Without AUDIO it uses a GTZAN clip from ../shared/data if present, else 30 s of noise.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_CLIP = REPO.parent / "shared" / "data" / "gtzan" / "rock" / "rock.00001.wav"


def timed(fn, repeats: int):
    """``(median seconds, last result)`` of ``repeats`` calls after one warm-up call."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("audio", nargs="?", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--model", default="MTT_musicnn")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from genrekit.audio import load_audio
    from genrekit.config import MUSICNN_FEATURES
    from genrekit.features import waveform_segments
    from genrekit.models.musicnn import load_musicnn

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_musicnn(args.model)
    sr = MUSICNN_FEATURES.sr
    if args.audio.is_file():
        t_load, y = timed(lambda: load_audio(args.audio, sr=sr, duration=30.0), args.repeats)
        source = str(args.audio)
    else:
        t_load, source = 0.0, "30 s of noise"
        y = (0.1 * np.random.default_rng(0).standard_normal(30 * sr)).astype(np.float32)
    t_feat, patches = timed(lambda: waveform_segments(y, MUSICNN_FEATURES), args.repeats)
    with torch.no_grad():
        t_net, _ = timed(lambda: model.predict(patches), args.repeats)
    total = t_load + t_feat + t_net
    print(f"clip: {source} ({len(y) / sr:.1f} s, {len(patches)} patches); model {args.model}; "
          f"torch threads {torch.get_num_threads()}")
    print(f"decode+resample {t_load * 1000:7.1f} ms")
    print(f"log-mel patches {t_feat * 1000:7.1f} ms")
    print(f"network         {t_net * 1000:7.1f} ms")
    print(f"total           {total * 1000:7.1f} ms per {len(y) / sr:.0f} s clip "
          f"({len(y) / sr / total:.0f}x real time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
