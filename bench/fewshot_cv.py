"""How a head design does on a genre it has only two training tracks of: the regime of the
private held-out set, where blues, classical, country and disco had 2–6 DEV tracks each.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python bench/fewshot_cv.py [--shots 2] [--repeats 3] [--designs NAME ...]

Plain cross-validation (``bench/transfer_cv.py``) cannot value knowledge about the scarce
genres: DEV has 3 blues, 2 classical and 2 disco tracks, so their recalls are 0, 0.5 or 1.
This bench *simulates* scarcity on the genres DEV has plenty of. For each probe genre g
(every genre with at least 6 DEV tracks) and each outer fold of the recipe's
artist-grouped folds, the training folds keep only ``--shots`` tracks of g (drawn
``--repeats`` times, from different artists where possible) and no FMA track of g; the
fitted head then scores the held-out fold. Printed per design, side by side:

- **scarce recall**: recall of g on the held-out fold when g was scarce, per probe genre
  and averaged over them (the figure that matters for the held-out set);
- **scarce precision**: of the held-out tracks predicted g, the share that are g (a
  design must not win recall by calling everything g);
- **others' balanced accuracy**: the other genres' mean recall in those runs;
- the same design's plain CV balanced accuracy (all training data).

Designs are those of ``bench/transfer_cv.py`` (by name; C fixed, 0.1 unless the name says
otherwise) plus the variants defined here (C, prior scale "-prior<s>", inputs). Rows go to
``bench/results/fewshot_cv.csv``; a run of the default designs writes its table to
``bench/results/fewshot_cv.md``.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import transfer_cv as tcv  # noqa: E402
from transfer_cv import GENRES, REPO, transfer  # noqa: E402

DEFAULT_DESIGNS = ["zs-msd", "zs-both", "lr-msd-emb+tags+fma", "res-msd-emb+tags+fma", "res-msd-emb+tags+fma-C0.01",
                   "res-msd-emb+tags+fma-C0.003", "res-msd-emb+tags+fma-C0.001", "res-msd-emb+tags+fma-nobalance-C0.1",
                   "res-msd-emb+tags+fma-prior2-C0.01", "res-msd-emb+fma-C0.01", "res-msd-tags+fma-C1",
                   "res-msd-tags+fma", "res-msd-tags+fma-C0.03", "res-msd-tags+fma-C0.01", "res-both-emb+tags+fma",
                   "res-msdemb-bothprior+fma-C0.01"]


_library_prior = tcv.make_prior


def make_prior(kind):
    """``"<kind>-x<s>"``: the prior ``kind`` with its logits multiplied by ``s``."""
    if kind and "-x" in kind:
        base, _, s = kind.partition("-x")
        prior = _library_prior(base)
        prior.scale = float(s)
        return prior
    return _library_prior(kind)


tcv.make_prior = make_prior


def extra_designs() -> list:
    by_name = {d.name: d for d in tcv.DESIGNS}
    base = by_name["res-msd-emb+tags+fma"]
    out = [replace(base, name=f"res-msd-emb+tags+fma-C{c:g}", C=c) for c in (0.01, 0.003, 0.001)]
    out += [replace(base, name=f"res-msd-emb+tags+fma-prior{s:g}-C{c:g}", prior=f"msd-x{s:g}", C=c)
            for s in (1.5, 2) for c in (0.1, 0.01, 0.003)]
    out += [replace(base, name=f"res-msd-emb+fma-C{c:g}", inputs=(tcv.MSD_EMB,), C=c) for c in (0.1, 0.01, 0.003)]
    out += [replace(base, name=f"res-msd-tags+fma-C{c:g}", inputs=(tcv.MSD_TAGS,), C=c) for c in (1, 0.03, 0.01)]
    out += [replace(base, name=f"res-msd_proxy-tags+fma-C{c:g}", inputs=(tcv.MSD_TAGS,), prior="msd_proxy", C=c)
            for c in (0.03, 0.01)]
    out += [replace(base, name=f"res-msd-emb+tags+fma-nobalance-C{c:g}", class_balance="none", C=c)
            for c in (0.1, 0.01)]
    out += [replace(base, name="res-msdemb-bothprior+fma", prior="both",
                    note="MSD inputs, MSD + MTT tag prior (MTT's 'classical')"),
            replace(base, name="res-msdemb-bothprior+fma-C0.01", prior="both", C=0.01),
            replace(by_name["res-both-emb+tags+fma"], name="res-both-emb+tags+fma-C0.01", C=0.01)]
    return [d for d in out if d.name not in by_name]


def probe_genres(tracks: list, min_tracks: int = 6) -> list[str]:
    return [g for g in GENRES if sum(t.label == g for t in tracks) >= min_tracks]


def scarce_subset(train: list, genre: str, shots: int, rng) -> list:
    """``train`` with only ``shots`` tracks of ``genre``, from different artists first."""
    of_genre = [t for t in train if t.label == genre]
    by_group: dict[str, list] = {}
    for t in of_genre:
        by_group.setdefault(transfer.group_of(t), []).append(t)
    groups = list(by_group.values())
    rng.shuffle(groups)
    kept = []
    while len(kept) < shots and any(groups):
        for g in groups:
            if g and len(kept) < shots:
                kept.append(g.pop(rng.integers(len(g))))
    return [t for t in train if t.label != genre] + kept


def fewshot(design, tracks: list, extra: list, fold: np.ndarray, genre: str, shots: int, repeats: int,
            seed: int) -> dict:
    """Held-out predictions of every fold/repeat with ``genre`` scarce in training."""
    rng = np.random.default_rng(seed)
    y_true, y_pred = [], []
    extra = [t for t in extra if t.label != genre] if design.fma else []
    C = design.C if design.C is not None else tcv.DEFAULT_C
    for _ in range(repeats):
        for k in range(int(fold.max()) + 1):
            test = [t for t, f in zip(tracks, fold) if f == k]
            train = scarce_subset([t for t, f in zip(tracks, fold) if f != k], genre, shots, rng)
            logits = tcv.fit_design(design, train + transfer.extra_for(extra, test), C)(test)
            y_true += [GENRES.index(t.label) for t in test]
            y_pred += list(logits.argmax(1))
    return {"y": np.array(y_true), "pred": np.array(y_pred)}


def summarise(runs: dict[str, dict]) -> dict:
    """Scarce recall / precision per probe genre, and the others' balanced accuracy."""
    out = {}
    for genre, r in runs.items():
        g = GENRES.index(genre)
        y, p = r["y"], r["pred"]
        others = [c for c in np.unique(y) if c != g]
        out[genre] = {"recall": float((p[y == g] == g).mean()),
                      "precision": float((y[p == g] == g).mean()) if (p == g).any() else float("nan"),
                      "others_bal": float(np.mean([(p[y == c] == c).mean() for c in others]))}
    return out


def plain_cv(design, tracks, extra, fold, seed) -> float:
    from genrekit.metrics import balanced_accuracy

    d = design if design.C is not None else replace(design, C=tcv.DEFAULT_C)
    cv = tcv.cross_validate(d, tracks, extra, fold, seed)
    return balanced_accuracy(cv["y"], cv["logits"].argmax(1), len(GENRES))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=REPO / "configs" / "default_model.yaml")
    p.add_argument("--shots", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--designs", nargs="*", default=DEFAULT_DESIGNS)
    p.add_argument("--no-csv", action="store_true")
    args = p.parse_args()
    command = " ".join(["python bench/fewshot_cv.py", *map(shlex.quote, sys.argv[1:])])
    designs = {d.name: d for d in tcv.DESIGNS + extra_designs()}
    unknown = sorted(set(args.designs) - set(designs))
    if unknown:
        sys.exit(f"unknown design(s): {unknown}; known: {sorted(designs)}")
    os.chdir(REPO)
    config = transfer.TransferConfig.from_file(args.config.resolve())
    gtzan, fma = tcv.load_tracks(config)
    fold = tcv.outer_folds(gtzan, config.folds, config.seed)
    probes = probe_genres(gtzan)
    print(f"{len(gtzan)} DEV tracks, probe genres {probes}, {args.shots} shots, {args.repeats} repeats x "
          f"{config.folds} folds", flush=True)
    rows = []
    for name in args.designs:
        start = time.perf_counter()
        design = designs[name]
        runs = {g: fewshot(design, gtzan, fma, fold, g, args.shots, args.repeats, config.seed) for g in probes}
        s = summarise(runs)
        row = {"design": name, "shots": args.shots, "repeats": args.repeats,
               "scarce_recall": np.mean([v["recall"] for v in s.values()]),
               "scarce_precision": np.nanmean([v["precision"] for v in s.values()]),
               "others_bal": np.mean([v["others_bal"] for v in s.values()]),
               "plain_cv_bal": plain_cv(design, gtzan, fma, fold, config.seed),
               **{f"recall_{g}": v["recall"] for g, v in s.items()}, "command": command}
        rows.append(row)
        print(f"{name:34s} scarce recall {row['scarce_recall']:.3f}  precision {row['scarce_precision']:.3f}  "
              f"others bal {row['others_bal']:.3f}  plain CV bal {row['plain_cv_bal']:.3f}  | "
              + " ".join(f"{g} {v['recall']:.2f}" for g, v in s.items())
              + f"  ({time.perf_counter() - start:.0f} s)", flush=True)
    table = markdown(rows, probes, args, command, len(gtzan))
    print("\n" + table)
    if args.designs == DEFAULT_DESIGNS:
        (REPO / "bench" / "results" / "fewshot_cv.md").write_text(table, encoding="utf-8")
    if not args.no_csv:
        from results_csv import append_rows

        append_rows(REPO / "bench" / "results" / "fewshot_cv.csv", rows)


def markdown(rows: list[dict], probes: list[str], args, command: str, n_tracks: int) -> str:
    lines = [f"# Scarce-genre simulation: {args.shots} training tracks of one genre, {n_tracks} DEV GTZAN tracks",
             "", f"Command: `{command}` ({time.strftime('%Y-%m-%d')}, 2-core CPU). Each probe genre in turn keeps "
             f"{args.shots} tracks in the training folds ({args.repeats} draws x 5 artist-grouped folds) and no FMA "
             "track; recall and precision are of that genre on the held-out folds. C fixed per design.", "",
             "| design | scarce recall | scarce precision | others' bal. acc | plain CV bal. acc | "
             + " | ".join(probes) + " |", "|---|---:|---:|---:|---:|" + "---:|" * len(probes)]
    for r in rows:
        lines.append(f"| {r['design']} | {r['scarce_recall']:.3f} | {r['scarce_precision']:.3f} | {r['others_bal']:.3f} | "
                     f"{r['plain_cv_bal']:.3f} | " + " | ".join(f"{r[f'recall_{g}']:.2f}" for g in probes) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
