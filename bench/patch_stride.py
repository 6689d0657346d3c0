"""musicnn-MTT heard on every k-th patch only: CV balanced accuracy and network time, side by side.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python bench/patch_stride.py [--fold-splits 5] [--strides 2 4 8]
        [--synth runs/synth_classical]

MTT's "classical" tag is the only classical knowledge musicnn has (MSD has no such tag), but a
second network costs as much as the first. ``head.patch_strides: {MTT_musicnn: k}`` runs it on
every k-th 3 s patch, each of the next k - 1 taking its tags (:func:`genrekit.heads.hold_strided`).
Printed side by side, each against the recipe of ``--config`` with its ``prior`` and strides
replaced:

- ``msd only``: ``prior: msd_proxy`` (one network, the model shipped until 2026-12-02);
- ``mtt every patch``: ``prior: msd_proxy_fill`` (MTT's classical tags), no stride;
- ``mtt stride k``: the same with MTT on patches 0, k, 2k, ... (what the library runs);
- ``mtt stride k, other patches``: the mean over starting patches 1 .. k-1 instead of 0, a
  measure of how much *which* patches MTT hears moves the figure (simulated on the cached
  features; the library always starts at patch 0).

Columns: balanced accuracy, mean (SD) over ``--fold-splits`` artist-grouped 5-fold splits of
DEV GTZAN ("other patches": the SDs pooled), and macro-F1's mean; per-genre recall pooled over
them; those recalls weighted by the private held-out set's genre counts (an estimate, arithmetic
on 2-3 DEV tracks per scarce genre); and the network's time on one 30 s clip (10 patches,
onnxruntime, 2 threads, best of ``--repeats``), as a ratio to ``msd only`` measured in the same
run. With ``--synth``, also how many classical scores rendered by ``tools/render_classical.py``
(General MIDI timbre: out of domain, and MTT's "classical" is weak on most of them) the design,
trained on all DEV tracks, calls classical. The table goes to
``bench/results/patch_stride.md`` and ``patch_stride.csv``.
"""
from __future__ import annotations

import copy
import csv
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import scarce_ideas  # noqa: E402

from genrekit.training import transfer  # noqa: E402

MTT = "MTT_musicnn"
PATCHES_PER_CLIP = 10  # a 30 s clip in 3 s musicnn patches


def starting_at(tracks: list, stride: int, first: int) -> list:
    """Copies of ``tracks`` whose MTT outputs are those of patches ``first``, ``first + stride``, …,
    each held over the next ``stride - 1`` (the last patch stands in past the end)."""
    out = []
    for track in tracks:
        track = copy.copy(track)
        features = dict(track.features)
        for key in [k for k in features if k.startswith(MTT + "/")]:
            n = len(features[key])
            features[key] = features[key][np.minimum((np.arange(n) // stride) * stride + first, n - 1)]
        track.features = features
        out.append(track)
    return out


def designs(spec, tracks: list, strides: list[int]) -> list[tuple[scarce_ideas.Idea, list]]:
    """``(idea, [ideas averaged with it])``: the reference, MTT on every patch, and each stride."""
    base = replace(spec, prior="msd_proxy", patch_strides={})
    every = replace(spec, prior="msd_proxy_fill", patch_strides={})
    out = [(scarce_ideas.Idea("msd only", base), []), (scarce_ideas.Idea("mtt every patch", every), [])]
    for k in strides:
        strided = replace(every, patch_strides={MTT: k})
        out.append((scarce_ideas.Idea(f"mtt stride {k}", strided), []))
        others = [scarce_ideas.Idea(f"from patch {first}", every, tracks=starting_at(tracks, k, first))
                  for first in range(1, k)]
        out.append((scarce_ideas.Idea(f"mtt stride {k}, other patches", strided), others))
    return out


def averaged(results: list[dict]) -> dict:
    labels = results[0]["recall"]
    return {"mean": float(np.mean([r["mean"] for r in results])),
            "sd": float(np.sqrt(np.mean([r["sd"] ** 2 for r in results]))),
            "macro_f1": float(np.mean([r["macro_f1"] for r in results])),
            "recall": {g: float(np.mean([r["recall"][g] for r in results])) for g in labels}}


def network_seconds(spec, repeats: int) -> float:
    """Best time of the design's musicnn graph on one 30 s clip's patches (needs torch to export)."""
    from genrekit.config import MUSICNN_FEATURES
    from genrekit.export import musicnn_onnx_bytes
    from genrekit.runtime import OnnxNetwork

    network = OnnxNetwork(musicnn_onnx_bytes(spec.networks, {}, kinds=transfer.KINDS,
                                             patch_strides=spec.patch_strides), threads=2)
    patches = np.random.default_rng(0).normal(size=(PATCHES_PER_CLIP, *MUSICNN_FEATURES.segment_shape))
    network.run(patches)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        network.run(patches)
        times.append(time.perf_counter() - start)
    return min(times)


def markdown(rows: list[dict], labels: list[str], command: str, n_cv: int, splits: int, synth: bool) -> str:
    from results_csv import machine

    head = (["design", f"bal. acc. mean (SD), {splits} splits", "macro-F1"] + labels
            + ["held-out mix estimate", "network s / clip", "× msd only"] + (["synthetic classical"] if synth else []))
    lines = [f"# musicnn-MTT on every k-th patch ({time.strftime('%Y-%m-%d')})", "",
             f"Command: `{command}` on a {machine()}. {n_cv} DEV GTZAN tracks (blues 3, classical 2, disco 2; "
             "small and uneven), artist-grouped 5-fold CV; per-genre recall pooled over the splits; "
             "'other patches': mean over MTT starting at patches 1 .. k-1 instead of 0 (simulated).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = ([r["name"], f"{r['mean']:.3f} ({r['sd']:.3f})", f"{r['macro_f1']:.3f}"]
                 + [f"{r['recall'][g]:.2f}" for g in labels]
                 + [f"{r['estimate']:.3f}", f"{r['seconds']:.3f}" if r["seconds"] else "",
                    f"{r['ratio']:.2f}" if r["ratio"] else ""] + ([r["synth"]] if synth else []))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main():
    p = scarce_ideas.bench_parser(__doc__.split("\n\n")[0])
    p.add_argument("--strides", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    command, config, tracks, synth = scarce_ideas.bench_setup(args, "patch_stride.py")
    rows = []
    for idea, others in designs(config.head, tracks, args.strides):
        runs = [scarce_ideas.repeated(i, tracks, config.labels, args.fold_splits, config.seed, config.folds)
                for i in (others or [idea])]
        r = {"name": idea.name, **averaged(runs), "seconds": None if others else network_seconds(idea.spec, args.repeats)}
        r["estimate"] = scarce_ideas.held_out_estimate(r["recall"])
        r["synth"] = "" if others else scarce_ideas.synth_classical(idea, tracks, synth, config.labels, config.seed)
        r["ratio"] = r["seconds"] / (rows or [r])[0]["seconds"] if r["seconds"] else None  # to the first row
        rows.append(r)
        print(f"{r['name']:32s} {r['mean']:.3f} ({r['sd']:.3f})  F1 {r['macro_f1']:.3f}  "
              f"classical {r['recall']['classical']:.2f}  jazz {r['recall']['jazz']:.2f}  held-out mix {r['estimate']:.3f}"
              + (f"  network {r['seconds']:.3f} s ({r['ratio']:.2f}x)" if r["seconds"] else "")
              + (f"  synthetic classical {r['synth']}" if r["synth"] else ""), flush=True)
    text = markdown(rows, config.labels, command, sum(t.role == "cv" for t in tracks), args.fold_splits, bool(synth))
    print("\n" + text)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "patch_stride.md").write_text(text, encoding="utf-8")
    with open(args.results / "patch_stride.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["design", "bal_acc_mean", "bal_acc_sd", "macro_f1", *config.labels, "held_out_estimate",
                         "network_s", "ratio_to_msd_only", "synthetic_classical", "command"])
        for r in rows:
            writer.writerow([r["name"], round(r["mean"], 6), round(r["sd"], 6), round(r["macro_f1"], 6),
                             *[round(r["recall"][g], 4) for g in config.labels], round(r["estimate"], 4),
                             round(r["seconds"], 4) if r["seconds"] else "", round(r["ratio"], 3) if r["ratio"] else "",
                             r["synth"], command])


if __name__ == "__main__":
    main()
