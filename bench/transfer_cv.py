"""Compare track-head designs by artist-grouped cross-validation on DEV GTZAN (issue 11).

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python bench/transfer_cv.py [--config configs/default_model.yaml]
        [--n-boot 2000] [--designs NAME ...] [--chosen NAME] [--no-csv] [--extract-only]
        [--fold-splits N]

The data, features, folds and the nested recipe are the library's
(:mod:`genrekit.training.transfer`, which builds the shipped model); this script only
adds the study around them:

1. **Data and features** as for ``genrekit train --config configs/default_model.yaml``:
   the recipe's sources (:func:`~genrekit.training.transfer.gather`: the 87 DEV GTZAN
   tracks in the CV folds, FMA Hip-Hop/Pop/Rock mapped to hiphop/pop/rock for training
   only) and its per-file feature cache (``runs/features``,
   :func:`~genrekit.training.transfer.extract_features`), for both musicnn networks.
2. **Folds**: the recipe's artist-grouped, genre-stratified folds
   (:func:`~genrekit.training.transfer.group_folds`). Each design (:data:`DESIGNS`) is fitted
   on the other folds and scores each fold; the pooled held-out predictions give balanced
   accuracy and macro-F1 with bootstrap intervals, accuracy and per-genre recall. "+fma"
   designs add the FMA tracks that share no artist with the test fold
   (:func:`~genrekit.training.transfer.extra_for`).
3. **C**: fixed a priori (0.1) for the design comparison, with the recipe's grid shown for
   two designs; "-nestedC" designs are the library's recipe itself
   (:func:`~genrekit.training.transfer.cross_validate`: C per outer fold by inner
   artist-grouped CV, T on that inner CV's held-out logits).
4. **Calibration**: T of outer fold k fitted *cross-fitted* (on the pooled held-out logits
   of the other outer folds) and, for nested designs, *inner-nested* (the library's); ECE
   (15 bins) and NLL at T = 1 and both ways, beside the ECE noise floor of a perfectly
   calibrated model with the same confidences (:func:`genrekit.metrics.ece_noise_floor`).

5. **Repeated CV** (``--fold-splits N``): the same designs on N different artist-grouped fold
   splits (seeds ``seed`` … ``seed + N - 1``), mean, SD and range of balanced accuracy and
   macro-F1 per design, and per-genre recall pooled over the splits. Choosing the best of many
   designs on one split flatters the winner; the mean over splits is the less lucky figure.

Research-only variants live here, built on the library's pieces: "-exact" tag priors
(only tags equal to the genre name), zero-shot "zs-" heads and the segment-level "seg-"
design. Rows go to ``bench/results/transfer_cv.csv``; the tables and the chosen design's
fold assignment and pooled predictions go to ``bench/results/transfer_cv/``.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from genrekit.training import transfer  # noqa: E402

GENRES = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]
NETWORKS = ["MSD_musicnn", "MTT_musicnn"]
MSD_EMB, MSD_TAGS = "MSD_musicnn/penultimate", "MSD_musicnn/tags"
MTT_EMB, MTT_TAGS = "MTT_musicnn/penultimate", "MTT_musicnn/tags"
POOL_KINDS = ("mean_pool", "max_pool")
C_GRID = tuple(transfer.HeadSpec().C)  # the recipe's grid: 0.01, 0.1, 1
DEFAULT_C = 0.1  # fixed a priori for the design comparison (≈70 tracks, 200-500 standardised inputs)
# The shipped design (configs/default_model.yaml): one network (MSD), the MSD tag prior with
# disco's stand-in tags ("dance", "funk"; chosen from the tag names when the prior was written),
# a class-balanced residual on the 50 tags alone, FMA joining training, C and T chosen inside
# the training folds (nested, C grid 0.003-0.3). It has the highest balanced accuracy here, the
# figure the issue names and the one that does not depend on the genre mix (the held-out set is
# blues/classical/country/disco-heavy, DEV reggae/hiphop-heavy). Its cost is also in the table:
# 9 of DEV's 17 reggae tracks (16 by one artist) called disco. Until 2026-12-02 the shipped row
# was res-msd-tags+fma-nestedC (no stand-ins), kept for reggae and bench/fewshot_cv.py's
# scarce-genre recall (0.673 vs 0.651 at C 0.01), both driven by that one artist's reggae.
# Picking among designs on the same CV is itself a (small) optimistic bias; the nested C keeps
# the chosen row's own figure honest, and the paired differences show what 87 tracks can tell.
CHOSEN = "res-msd_proxy-tags+fma-nestedC"


# --- designs ------------------------------------------------------------------------

@dataclass(frozen=True)
class Design:
    """One head design. ``C=None``: the library's nested recipe (C per fold from the recipe's grid)."""

    name: str
    inputs: tuple = ()
    pooling: str = "mean"
    prior: str | None = None  # "msd" | "both" (the library's), "msd-exact" | "both-exact" (research only)
    C: float | None = DEFAULT_C
    class_balance: str = "weight"
    fma: bool = False
    level: str = "track"  # "track", or "segment": LR on single segments, track = mean segment probability
    note: str = ""

    @property
    def networks(self) -> list[str]:
        return head_spec(replace(self, prior=_base_prior(self.prior))).networks

    @property
    def is_recipe(self) -> bool:
        """Expressible as the library's recipe (a :class:`~genrekit.training.transfer.HeadSpec`)."""
        return self.level == "track" and bool(self.inputs) and self.prior == _base_prior(self.prior)


def _base_prior(prior: str | None) -> str | None:
    return prior.partition("-")[0] if prior else None


def head_spec(design: Design, C_grid=(DEFAULT_C,)) -> transfer.HeadSpec:
    return transfer.HeadSpec(list(design.inputs), design.pooling, design.prior, list(C_grid), design.class_balance)


def _designs(kinds=transfer.KINDS) -> list[Design]:
    msd, both = (MSD_EMB, MSD_TAGS), (MSD_EMB, MSD_TAGS, MTT_EMB, MTT_TAGS)
    msd_pool = tuple(f"MSD_musicnn/{k}" for k in POOL_KINDS)
    d = [
        Design("zs-msd", prior="msd", note="zero-shot: MSD tags naming the genre or a sub-genre"),
        Design("zs-msd-exact", prior="msd-exact", note="zero-shot: MSD tags equal to the genre name (post hoc)"),
        Design("zs-both", prior="both", note="zero-shot: MSD + MTT tags naming the genre or a sub-genre"),
        Design("zs-both-exact", prior="both-exact", note="zero-shot: MSD + MTT tags equal to the genre (post hoc)"),
        Design("zs-msd_proxy", prior="msd_proxy", note="zero-shot: MSD tags, and stand-ins for disco (dance, funk)"),
        Design("zs-msd_fill", prior="msd_fill", note="zero-shot: MSD tags, and MTT's for genres MSD lacks (classical)"),
        Design("zs-msd_proxy_fill", prior="msd_proxy_fill", note="zero-shot: MSD tags, disco's stand-ins, MTT's classical"),
        Design("lr-msd-emb", (MSD_EMB,)),
        Design("lr-msd-emb-meanstd", (MSD_EMB,), pooling="mean_std"),
        Design("lr-msd-tags", (MSD_TAGS,)),
        Design("lr-msd-emb+tags", msd),
        Design("lr-msd-emb+tags-meanstd", msd, pooling="mean_std"),
        Design("lr-msd-emb+tags-nobalance", msd, class_balance="none"),
        Design("lr-msd-pool", msd_pool, note="mid-end temporal mean+max pools (1506-d)"),
        Design("lr-msd-pool+tags", msd_pool + (MSD_TAGS,)),
        Design("lr-mtt-emb+tags", (MTT_EMB, MTT_TAGS)),
        Design("lr-msd+mtt-emb", (MSD_EMB, MTT_EMB)),
        Design("lr-msd+mtt-emb+tags", both),
        Design("res-msd-emb+tags", msd, prior="msd", note="MSD tag prior + residual LR"),
        Design("res-msd-emb+tags-nobalance", msd, prior="msd", class_balance="none"),
        Design("res-msd-emb+tags-meanstd", msd, pooling="mean_std", prior="msd"),
        Design("res-msd-exact-emb+tags", msd, prior="msd-exact"),
        Design("res-msd-tags", (MSD_TAGS,), prior="msd", note="MSD tag prior + residual LR on the tags alone"),
        Design("res-msd_proxy-tags", (MSD_TAGS,), prior="msd_proxy", note="the same with disco's stand-in tags"),
        Design("res-msd_fill-tags", (MSD_TAGS,), prior="msd_fill", note="the same with MTT's classical tags"),
        Design("res-msd_proxy_fill-tags", (MSD_TAGS,), prior="msd_proxy_fill",
               note="the same with disco's stand-ins and MTT's classical tags"),
        Design("res-msd-pool+tags", msd_pool + (MSD_TAGS,), prior="msd"),
        Design("res-both-emb+tags", both, prior="both", note="MSD + MTT tag prior + residual LR"),
        Design("seg-lr-msd-emb", (MSD_EMB,), level="segment",
               note="segment-level LR, mean of segment probabilities (the shipped head's voting, not its net)"),
    ]
    by_name = {x.name: x for x in d}
    for base in ("lr-msd-emb+tags", "res-msd-emb+tags"):
        for c in C_GRID:
            if c != DEFAULT_C:
                d.append(replace(by_name[base], name=f"{base}-C{c:g}", C=c))
    for base in ("lr-msd-emb", "lr-msd-emb+tags", "res-msd-emb+tags", "lr-msd+mtt-emb+tags", "res-both-emb+tags",
                 "res-msd-tags", "res-msd_proxy-tags", "res-msd_fill-tags", "res-msd_proxy_fill-tags"):
        d.append(replace(by_name[base], name=f"{base}+fma", fma=True))
    by_name = {x.name: x for x in d}
    for base in ("lr-msd-emb+tags", "res-msd-emb+tags", "lr-msd-emb+tags+fma", "res-msd-emb+tags+fma",
                 "res-both-emb+tags+fma", "res-msd-tags+fma", "res-msd_proxy-tags+fma",
                 "res-msd_fill-tags+fma", "res-msd_proxy_fill-tags+fma"):
        d.append(replace(by_name[base], name=f"{base}-nestedC", C=None))
    by_name = {x.name: x for x in d}
    for base in ("res-msd-tags+fma-nestedC", "res-msd_proxy-tags+fma-nestedC"):
        d.append(replace(by_name[base], name=f"{base}-artist", class_balance="artist",
                         note="each genre's weight shared equally by its artists"))
    return [x for x in d if all(k.split("/")[1] in kinds for k in x.inputs)]


ALL_DESIGNS = _designs(kinds=transfer.KINDS + POOL_KINDS)
DESIGNS = _designs()
# designs whose inputs the library does not extract (genrekit.training.transfer.KINDS)
SKIPPED = [d.name for d in ALL_DESIGNS if d not in DESIGNS]


def make_prior(kind: str | None):
    """The library's tag prior; ``"<msd|both>-exact"`` keeps only the tags equal to the genre's name."""
    from genrekit.heads import TagPrior

    prior = transfer.make_prior(_base_prior(kind), GENRES)
    if prior is None or not kind.endswith("-exact"):
        return prior
    exact = {g: {n: [t for t in tags if t.lower() == g or (g == "hiphop" and t == "Hip-Hop")]
                 for n, tags in per.items()} for g, per in prior.genre_tags.items()}
    return TagPrior(GENRES, exact)


def fit_design(design: Design, tracks: list, C: float):
    """A function ``tracks -> logits (n, K)`` at temperature 1, fitted on ``tracks``."""
    from genrekit.heads import fit_track_head, zero_shot_head

    if not design.inputs:
        head = zero_shot_head(GENRES, make_prior(design.prior))
    elif design.is_recipe:
        head = transfer.fit_head(head_spec(design), tracks, GENRES, C)
    elif design.level == "segment":
        return _fit_segment_vote(design, tracks, C)
    else:
        head = fit_track_head([t.features for t in tracks], [t.label for t in tracks], GENRES, design.inputs,
                              design.pooling, C, design.class_balance, make_prior(design.prior),
                              groups=[transfer.group_of(t) for t in tracks])
    return lambda test: transfer.logits_of(head, test)


def _fit_segment_vote(design: Design, tracks: list, C: float):
    """LR on single 3 s segments (class-balanced); a track's logits are the log of its mean segment probability."""
    from genrekit.heads import fit_track_head
    from genrekit.metrics import softmax

    segments = transfer.segment_samples(tracks, list(design.inputs))
    labels = [t.label for t in tracks for _ in range(len(t.features[design.inputs[0]]))]
    head = fit_track_head(segments, labels, GENRES, design.inputs, "mean", C, design.class_balance,
                          make_prior(design.prior))
    return lambda test: np.stack([np.log(softmax(head.segment_logits(t.features)).mean(0)) for t in test])


# --- cross-validation -----------------------------------------------------------------

def outer_folds(tracks: list, n_folds: int, seed: int) -> np.ndarray:
    """The recipe's outer folds (the same call as :func:`genrekit.training.transfer.cross_validate`)."""
    return transfer.group_folds([t.label for t in tracks], [transfer.group_of(t) for t in tracks], n_folds, seed)


def cross_validate(design: Design, tracks: list, extra: list, fold: np.ndarray, seed: int,
                   C_grid=C_GRID) -> dict:
    """Pooled held-out logits (T = 1), C per fold, and the cross-fitted and (nested designs) inner-nested T.

    A nested design (``C=None``) is the library's recipe as it is, C chosen from ``C_grid``.
    """
    from genrekit.metrics import encode

    y = encode([t.label for t in tracks], GENRES)
    extra = extra if design.fma else []
    n_folds = int(fold.max()) + 1
    if design.C is None:
        cv = transfer.cross_validate(head_spec(design, C_grid), tracks, extra, GENRES, n_folds, seed)
        if not np.array_equal(cv["fold"], fold):
            raise RuntimeError("the library's outer folds differ from the bench's")
        logits, chosen_C, t_inner = cv["logits"], cv["C"], cv["temperature"]
    else:
        logits, chosen_C, t_inner = np.zeros((len(tracks), len(GENRES))), [design.C] * n_folds, None
        for k in range(n_folds):
            test = [t for t, f in zip(tracks, fold) if f == k]
            train = [t for t, f in zip(tracks, fold) if f != k]
            logits[fold == k] = fit_design(design, train + transfer.extra_for(extra, test), design.C)(test)
    return {"logits": logits, "y": y, "C": chosen_C, "temperature_inner": t_inner,
            "temperature_cross": cross_fitted_temperature(logits, y, fold)}


def cross_fitted_temperature(logits: np.ndarray, y: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """T per track: fold k's T fitted on the pooled held-out logits of the OTHER folds."""
    from genrekit.metrics import fit_temperature

    t = np.ones(len(y))
    for k in np.unique(fold):
        t[fold == k] = fit_temperature(logits[fold != k], y[fold != k])
    return t


def score(design: Design, cv: dict, n_boot: int, seed: int) -> dict:
    from genrekit.metrics import calibration_report, classification_report, ece, ece_noise_floor, nll, softmax

    y = cv["y"]
    report = classification_report(y, cv["logits"].argmax(1), GENRES, n_boot=n_boot, seed=seed)
    before = calibration_report(cv["logits"], y)
    out = {"design": design, "report": report, "ece_t1": before["ece"], "nll_t1": before["nll"],
           "reliability_t1": before["reliability"], "C": cv["C"],
           "ece_floor": ece_noise_floor(softmax(cv["logits"]), seed=seed)}
    for kind in ("cross", "inner"):
        temps = cv[f"temperature_{kind}"]
        if temps is None:
            out.update({f"ece_{kind}": None, f"nll_{kind}": None, f"temps_{kind}": []})
            continue
        probs = softmax(cv["logits"] / temps[:, None])
        out.update({f"ece_{kind}": ece(probs, y), f"nll_{kind}": nll(probs, y),
                    f"temps_{kind}": sorted(set(temps.round(3)))})
    return out


def repeated_cv(designs: list, tracks: list, extra: list, n_folds: int, seeds: list[int], C_grid) -> dict:
    """Per design: balanced accuracy and macro-F1 of each fold split, and per-genre recall pooled over the splits."""
    from genrekit.metrics import balanced_accuracy, macro_f1

    out = {d.name: {"balanced_accuracy": [], "macro_f1": [], "hits": np.zeros(len(GENRES)),
                    "counts": np.zeros(len(GENRES))} for d in designs}
    for seed in seeds:
        fold = outer_folds(tracks, n_folds, seed)
        for design in designs:
            cv = cross_validate(design, tracks, extra, fold, seed, C_grid)
            pred, row = cv["logits"].argmax(1), out[design.name]
            row["balanced_accuracy"].append(balanced_accuracy(cv["y"], pred, len(GENRES)))
            row["macro_f1"].append(macro_f1(cv["y"], pred, len(GENRES)))
            row["hits"] += np.bincount(cv["y"][pred == cv["y"]], minlength=len(GENRES))
            row["counts"] += np.bincount(cv["y"], minlength=len(GENRES))
        print(f"fold split {seed}: done", flush=True)
    return out


def repeated_markdown(rep: dict, seeds: list[int], n_folds: int, command: str) -> str:
    lines = ["| design | bal. acc mean (SD) [min–max] | macro-F1 mean (SD) | " + " | ".join(GENRES) + " |",
             "|---|---|---|" + "---:|" * len(GENRES)]
    for name, r in sorted(rep.items(), key=lambda kv: -np.mean(kv[1]["balanced_accuracy"])):
        b, f = np.array(r["balanced_accuracy"]), np.array(r["macro_f1"])
        recall = " | ".join(f"{h / c:.2f}" if c else "–" for h, c in zip(r["hits"], r["counts"]))
        lines.append(f"| {name} | {b.mean():.3f} ({b.std():.3f}) [{b.min():.2f}–{b.max():.2f}] | "
                     f"{f.mean():.3f} ({f.std():.3f}) | {recall} |")
    return (f"# Repeated CV: {len(seeds)} artist-grouped {n_folds}-fold splits (seeds {seeds[0]}–{seeds[-1]})\n\n"
            f"Command: `{command}` ({time.strftime('%Y-%m-%d')}, {os.cpu_count()}-core CPU). Per-genre recall is "
            f"pooled over the splits (every track counted once per split).\n\n" + "\n".join(lines) + "\n")


# --- output ---------------------------------------------------------------------------

def recall_table(results: list[dict], counts: dict) -> str:
    head = "| design | bal. acc [95 % CI] | macro-F1 [95 % CI] | acc | " + " | ".join(
        f"{g} ({counts[g]})" for g in GENRES) + " |"
    lines = [head, "|---|---|---|---:|" + "---:|" * len(GENRES)]
    for r in results:
        rep = r["report"]
        cells = [_f(rep["per_class"][g]["recall"], ".2f") for g in GENRES]
        lines.append(f"| {r['design'].name} | {rep['balanced_accuracy']:.3f} [{rep['balanced_accuracy_ci'][0]:.2f}–"
                     f"{rep['balanced_accuracy_ci'][1]:.2f}] | {rep['macro_f1']:.3f} [{rep['macro_f1_ci'][0]:.2f}–"
                     f"{rep['macro_f1_ci'][1]:.2f}] | {rep['accuracy']:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _f(value, fmt=".3f") -> str:
    return "–" if value is None else format(value, fmt)


def _round(value, digits=4):
    return "" if value is None else round(value, digits)


def _C_cell(r: dict) -> str:
    return " ".join(f"{c:g}" for c in r["C"]) if r["design"].inputs else "–"


def calibration_table(results: list[dict]) -> str:
    lines = ["| design | networks | C per fold | ECE T=1 | ECE cross-fitted T | ECE inner-nested T | "
             "ECE noise floor | NLL T=1 | NLL cross-fitted T | NLL inner-nested T | T per fold (cross) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        lines.append(f"| {r['design'].name} | {'+'.join(n.split('_')[0] for n in r['design'].networks)} | "
                     f"{_C_cell(r)} | {r['ece_t1']:.3f} | {_f(r['ece_cross'])} | {_f(r['ece_inner'])} | "
                     f"{r['ece_floor']:.3f} | {r['nll_t1']:.3f} | {_f(r['nll_cross'])} | {_f(r['nll_inner'])} | "
                     f"{' '.join(f'{t:.2f}' for t in r['temps_cross'])} |")
    return "\n".join(lines)


def differences_table(results: list[dict], cvs: dict, reference: str, n_boot: int, seed: int) -> str:
    """Each design minus ``reference`` on the same tracks, with paired bootstrap intervals."""
    from genrekit.metrics import bootstrap_difference

    ref = cvs[reference]
    lines = ["| design | Δ bal. acc [95 % CI] | P(Δ ≤ 0) | Δ macro-F1 [95 % CI] | Δ acc [95 % CI] |",
             "|---|---|---:|---|---|"]
    for r in results:
        name = r["design"].name
        if name == reference:
            continue
        cells = []
        for metric in ("balanced_accuracy", "macro_f1", "accuracy"):
            d = bootstrap_difference(metric, ref["y"], cvs[name]["logits"].argmax(1), ref["logits"].argmax(1),
                                     len(GENRES), n_boot, seed=seed)
            cells.append(f"{d['difference']:+.3f} [{d['ci'][0]:+.2f} – {d['ci'][1]:+.2f}]")
            if metric == "balanced_accuracy":
                cells.append(f"{d['p_not_better']:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return (f"## Paired differences against {reference}\n\nThe same tracks resampled for both (paired "
            f"bootstrap, {n_boot} resamples): an interval that holds 0 is a difference these tracks cannot "
            f"show.\n\n" + "\n".join(lines) + "\n")


def tables_markdown(results: list[dict], counts: dict, n_tracks: int, n_folds: int, command: str) -> str:
    skipped = (f"\n\nNot run: {', '.join(SKIPPED)} (inputs {', '.join(POOL_KINDS)} are not among the kinds the "
               f"library extracts, `genrekit.training.transfer.KINDS`)." if SKIPPED else "")
    return (f"# Track-head designs, {n_folds}-fold artist-grouped CV on {n_tracks} DEV GTZAN tracks\n\n"
            f"Command: `{command}` ({time.strftime('%Y-%m-%d')}, {os.cpu_count()}-core CPU). Data, features, "
            f"folds and the nested (\"-nestedC\") recipe: `genrekit.training.transfer`.{skipped}\n\n"
            f"## Balanced accuracy, macro-F1, accuracy and per-genre recall (held-out folds pooled)\n\n"
            f"{recall_table(results, counts)}\n\n## Calibration (ECE 15 bins)\n\n"
            f"T of outer fold k: *cross-fitted* on the pooled held-out logits of the other folds; *inner-nested* "
            f"(the library's recipe) on the inner CV of fold k's training tracks that chose C. Noise floor: "
            f"median ECE of a perfectly calibrated model with the same confidences on {n_tracks} tracks.\n\n"
            f"{calibration_table(results)}\n")


def csv_row(r: dict, command: str) -> dict:
    from results_csv import machine

    rep, d = r["report"], r["design"]
    row = {"date": time.strftime("%Y-%m-%d"), "machine": machine(),
           "command": command, "design": d.name, "networks": "+".join(d.networks), "inputs": " ".join(d.inputs),
           "pooling": d.pooling, "prior": d.prior or "",
           "C": "" if not d.inputs else "nested" if d.C is None else d.C,
           "C_per_fold": _C_cell(r) if d.inputs else "", "class_balance": d.class_balance,
           "fma": d.fma, "level": d.level, "tracks": rep["n_tracks"],
           "balanced_accuracy": round(rep["balanced_accuracy"], 4),
           "balanced_accuracy_ci": "{:.3f}-{:.3f}".format(*rep["balanced_accuracy_ci"]),
           "macro_f1": round(rep["macro_f1"], 4), "macro_f1_ci": "{:.3f}-{:.3f}".format(*rep["macro_f1_ci"]),
           "accuracy": round(rep["accuracy"], 4), "accuracy_ci": "{:.3f}-{:.3f}".format(*rep["accuracy_ci"]),
           "ece15_t1": round(r["ece_t1"], 4), "ece15_cross_t": _round(r["ece_cross"]),
           "ece15_inner_t": _round(r["ece_inner"]), "ece15_noise_floor": round(r["ece_floor"], 4),
           "nll_t1": round(r["nll_t1"], 4), "nll_cross_t": _round(r["nll_cross"]),
           "nll_inner_t": _round(r["nll_inner"])}
    for g in GENRES:
        row[f"recall_{g}"] = _round(rep["per_class"][g]["recall"], 3)
    return row


def write_chosen(chosen: dict, cv: dict, tracks: list, fold: np.ndarray, out: Path, command: str) -> Path:
    """The chosen design's report, calibration, fold assignment and pooled held-out predictions (JSON)."""
    keys = ("ece_t1", "ece_cross", "ece_inner", "ece_floor", "nll_t1", "nll_cross", "nll_inner", "temps_cross",
            "temps_inner", "reliability_t1")
    design = chosen["design"]
    detail = {"design": asdict(design), "command": command, "report": chosen["report"],
              "calibration": {k: chosen[k] for k in keys},
              "predictions": [{"track_id": t.track_id, "genre": t.label, "artist": t.artist, "fold": int(f),
                               "predicted": GENRES[int(z.argmax())]} for t, f, z in zip(tracks, fold, cv["logits"])]}
    path = out / f"chosen_{design.name}.json"
    path.write_text(json.dumps(detail, indent=1, default=str), encoding="utf-8")
    return path


# --- main -----------------------------------------------------------------------------

def load_tracks(config: transfer.TransferConfig) -> tuple[list, list]:
    """The recipe's CV and training-only tracks with both networks' features (cached in ``features_cache``)."""
    tracks, notes = transfer.gather(config.sources)
    failures = transfer.extract_features(tracks, NETWORKS, config.features_cache, progress=sys.stderr.isatty(),
                                         config=config.feature_config())
    for line in notes:
        print(line)
    for line in failures:
        print(f"FAILED {line}", flush=True)
    tracks = [t for t in tracks if t.features]
    return [t for t in tracks if t.role == "cv"], [t for t in tracks if t.role == "train"]


def print_folds(tracks: list, fold: np.ndarray) -> None:
    for k in range(int(fold.max()) + 1):
        genres = [t.label for t, f in zip(tracks, fold) if f == k]
        print(f"  fold {k}: {len(genres)} tracks, " + " ".join(f"{g}:{genres.count(g)}" for g in GENRES
                                                               if g in genres), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=REPO / "configs" / "default_model.yaml",
                   help="the transfer recipe whose sources, feature cache, folds and seed are used")
    p.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--designs", nargs="*", help="only these designs (default: all)")
    p.add_argument("--chosen", default=CHOSEN, help="design to report in detail")
    p.add_argument("--extract-only", action="store_true")
    p.add_argument("--no-csv", action="store_true")
    p.add_argument("--segment-rms-db", metavar="DB", help="override the recipe's segment level "
                   "(features.segment_rms_db): a level in dBFS, or 'none' for the level as decoded")
    p.add_argument("--fold-splits", type=int, default=1,
                   help="also run N fold splits (seeds seed..seed+N-1) and report mean/SD per design")
    args = p.parse_args()
    command = " ".join(["python bench/transfer_cv.py", *map(shlex.quote, sys.argv[1:])])
    unknown = set(args.designs or []) - {d.name for d in DESIGNS}
    if unknown:
        sys.exit(f"unknown design(s): {sorted(unknown)}; known: {[d.name for d in DESIGNS]}")

    args.config, args.results = args.config.resolve(), args.results.resolve()
    os.chdir(REPO)  # the recipe's paths are relative to the repository root, as for `genrekit train`
    config = transfer.TransferConfig.from_file(args.config)
    if args.segment_rms_db is not None:
        level = None if args.segment_rms_db.lower() == "none" else float(args.segment_rms_db)
        config.features = {**config.features, "segment_rms_db": level}
        config.feature_config()
    if config.labels != GENRES:
        sys.exit(f"{args.config}: labels {config.labels} are not the GTZAN genres {GENRES}")
    gtzan, fma = load_tracks(config)
    if args.extract_only:
        return
    fold = outer_folds(gtzan, config.folds, config.seed)
    counts = {g: sum(t.label == g for t in gtzan) for g in GENRES}
    print(f"{len(gtzan)} DEV tracks, {len(set(map(transfer.group_of, gtzan)))} artist groups, {config.folds} "
          f"folds; {len(fma)} training-only FMA tracks for '+fma' designs", flush=True)
    print_folds(gtzan, fold)

    results, cvs = [], {}
    for design in [d for d in DESIGNS if not args.designs or d.name in args.designs]:
        start = time.perf_counter()
        cvs[design.name] = cv = cross_validate(design, gtzan, fma, fold, config.seed, config.head.C)
        r = score(design, cv, args.n_boot, config.seed)
        results.append(r)
        rep = r["report"]
        print(f"{design.name:32s} bal {rep['balanced_accuracy']:.3f} [{rep['balanced_accuracy_ci'][0]:.2f}-"
              f"{rep['balanced_accuracy_ci'][1]:.2f}]  F1 {rep['macro_f1']:.3f}  acc {rep['accuracy']:.3f}  "
              f"ECE {r['ece_t1']:.3f}->{_f(r['ece_cross'])}/{_f(r['ece_inner'])} (floor {r['ece_floor']:.3f})  "
              f"C {_C_cell(r)}  ({time.perf_counter() - start:.1f} s)", flush=True)

    out = args.results / "transfer_cv"
    out.mkdir(parents=True, exist_ok=True)
    tables = tables_markdown(results, counts, len(gtzan), config.folds, command)
    if args.chosen in cvs and len(cvs) > 1:
        tables += "\n" + differences_table(results, cvs, args.chosen, args.n_boot, config.seed)
    print("\n" + tables)
    if not args.designs:
        (out / "tables.md").write_text(tables, encoding="utf-8")
    chosen = next((r for r in results if r["design"].name == args.chosen), None)
    if chosen is not None:
        from genrekit.metrics import per_class_markdown

        print(f"## Chosen design {args.chosen}\n\n{per_class_markdown(chosen['report'])}\n")
        print(f"details: {write_chosen(chosen, cvs[args.chosen], gtzan, fold, out, command)}")
    if not args.no_csv:
        from results_csv import append_rows

        append_rows(args.results / "transfer_cv.csv", [csv_row(r, command) for r in results])
    if args.fold_splits > 1:
        seeds = list(range(config.seed, config.seed + args.fold_splits))
        chosen_designs = [d for d in DESIGNS if not args.designs or d.name in args.designs]
        rep = repeated_cv(chosen_designs, gtzan, fma, config.folds, seeds, config.head.C)
        text = repeated_markdown(rep, seeds, config.folds, command)
        print("\n" + text)
        level = "" if args.segment_rms_db is None else f"-segment_rms_db-{args.segment_rms_db.lower()}"
        (out / f"repeated{level}.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
