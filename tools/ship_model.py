"""Ship a model built by `genrekit train --config configs/default_model.yaml`: copy it into the
package and write its model card from the figures inside it.

Usage: python tools/ship_model.py [runs/default_model/genrekit-gtzan.onnx]

The card (docs/model-card.md) is generated from the model file's own metadata, so what it
says is what the model carries; what was measured elsewhere is named with its source: the
not-music figure is read from bench/results/not_music.csv, and the design choice quotes
bench/results/transfer_cv/tables.md (rerun `python bench/transfer_cv.py` and edit it with them).
"""
from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from genrekit.runtime import open_session  # noqa: E402

TARGET = REPO / "genrekit" / "weights" / "genrekit-gtzan.onnx"
CARD = REPO / "docs" / "model-card.md"


def _ci(report: dict, key: str) -> str:
    lo, hi = report[f"{key}_ci"]
    return f"{report[key]:.3f} (95 % CI {lo:.2f}–{hi:.2f})"


def _score(scores: dict, key: str) -> str:
    return "–" if scores.get(key) is None else f"{scores[key]:.2f}"


def _headline(cv: dict) -> str:
    """Over every fold split when the recipe ran several (``cv_repeats``), then the first split with CIs."""
    first = (f"- **Balanced accuracy {_ci(cv, 'balanced_accuracy')}**\n- **Macro-F1 {_ci(cv, 'macro_f1')}**\n"
             f"- Accuracy {_ci(cv, 'accuracy')}")
    rep = cv.get("repeated")
    if not rep:
        return first
    splits = " ".join(f"{v:.3f}" for v in rep["balanced_accuracy_per_split"])
    return (f"Over {rep['splits']} different fold splits (seeds {rep['seeds'][0]}–{rep['seeds'][-1]}):\n\n"
            f"- **Balanced accuracy {rep['balanced_accuracy_mean']:.3f}** (SD {rep['balanced_accuracy_sd']:.3f}; "
            f"per split {splits})\n- **Macro-F1 {rep['macro_f1_mean']:.3f}** (SD {rep['macro_f1_sd']:.3f})\n"
            f"- Accuracy {rep['accuracy_mean']:.3f} (SD {rep['accuracy_sd']:.3f})\n\n"
            f"The first split (seed {rep['seeds'][0]}), with 95 % bootstrap CIs over its tracks:\n\n{first}")


def _pooled_head(cv: dict) -> str:
    n = (cv.get("repeated") or {}).get("splits")
    return f" recall, {n} splits | precision, {n} splits | first split:" if n else ""


def _latest(path: Path, shipped_file_only: bool = False) -> dict | None:
    """A bench CSV's latest row; ``shipped_file_only``: among the rows for the shipped file (same SHA-256)."""
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if shipped_file_only:
        from genrekit.cache.featurize import file_sha256

        sha = file_sha256(TARGET)[:12] if TARGET.is_file() else None
        rows = [r for r in rows if r.get("model_sha256") == sha]
    return rows[-1] if rows else None


STRIDES = REPO / "bench" / "results" / "patch_stride.csv"
EXTERNAL_NOISE = REPO / "bench" / "results" / "external_noise.csv"
IMPACT_SOUNDS = REPO / "bench" / "results" / "impact_sounds.csv"


def _detector_classes(meta: dict) -> str:
    labels = (meta.get("detector") or {}).get("labels") or ["music", "not_music"]
    if labels == ["music", "not_music"]:
        return "music against not music"
    return f"music against each family of non-music ({', '.join(labels[1:])})"


def _detector_line(meta: dict, det: dict) -> str:
    """How the not-music detector reads a track, and when it answers "not music"."""
    trained = (f"trained on every DEV music track and "
               f"{det.get('trained_on', 'generated non-music').split(', ')[-1]}")
    short = meta.get("short_detector")
    if not short:
        return (f"a second head on the patch embeddings, {_detector_classes(meta)}, {trained}; threshold\n"
                f"  P(not music) = 1 − P(music) ≥ {meta['not_music_threshold']:.3f}.")
    below = short["below_segments"]
    return (f"a second head, {_detector_classes(meta)},\n"
            f"  on the mean **and the spread** (standard deviation over time) of the track's patch embeddings:\n"
            f"  steady noise barely moves from one patch to the next, music does, and on the mean alone pink noise\n"
            f"  sat beside distorted guitars. It is {trained}\n"
            f"  (the spread head on the {det.get('n_not_music')} clips of at least {below} patches); threshold\n"
            f"  P(not music) = 1 − P(music) ≥ {meta['not_music_threshold']:.3f}. A file of fewer than {below} patches "
            f"({below * 3} s) has no\n  spread to read: a per-patch head (the mean of its patches' scores) decides "
            f"it, at ≥ {short['threshold']:.3f}.")


def _detector_cv_line(det: dict) -> str:
    """The detector's CV figures, per length of file where the model has two heads."""
    def share(d: dict, key: str) -> str:
        return f"{d.get(key, float('nan')):.3f}"

    if "short" not in det:
        return (f"the detector answers not music for {share(det, 'not_music_detected')} of {det.get('n_not_music')} "
                f"generated clips and for {share(det, 'music_false_alarms')} of {det.get('n_music')} music tracks.")
    whole, short = det["all_lengths"], det["short"]
    return (f"the detector, as shipped (the spread head for clips of at least {det['min_segments']} patches, "
            f"the per-patch head below), answers not music for **{share(whole, 'not_music_detected')}** of "
            f"{whole['n_not_music']} generated clips and for {share(whole, 'music_false_alarms')} of "
            f"{whole['n_music']} music tracks; the per-patch head alone, as shipped until 2026-12-02, "
            f"{share(short, 'not_music_detected')} and {share(short, 'music_false_alarms')}. On the "
            f"{det['n_not_music']} clips of at least {det['min_segments']} patches the spread head answers "
            f"{share(det, 'not_music_detected')}. Music cut short, as a short file of it would be, is called "
            f"not music more often: {share(det, 'cut_music_false_alarms')} of the music tracks cut to their first "
            f"{det['min_segments']} patches ({det['min_segments'] * 3} s, the spread head), "
            f"{share(short, 'cut_music_false_alarms')} cut to one patch (the per-patch head).")


def _noise_from_programs() -> str:
    """bench/external_noise.py's and bench/impact_sounds.py's latest rows for the shipped file, in words."""
    r = _latest(EXTERNAL_NOISE, shipped_file_only=True)
    noise = ("Noise made by other programs: not yet measured for this model (`python bench/external_noise.py`)."
             if r is None else
             f"Noise made by other programs (ffmpeg and sox: 9 colours, each as made, low-passed, high-passed "
             f"with a bell, and as MP3; `{r['command']}`, {r['date']}, {r['machine']}): **{r['not_music']} of "
             f"{r['files']}** answered not music ({r['per_treatment']}). Missed, with the genre given: {r['missed']}.")
    r = _latest(IMPACT_SOUNDS, shipped_file_only=True)
    if r is None:
        return noise + " Sound effects with hits: not yet measured for this model (`python bench/impact_sounds.py`)."
    return (noise + f" Sound effects with hits (sox: explosions, shots, thuds, barrages, crackling explosions, strings "
            f"of noise bursts; `{r['command']}`, {r['date']}): **{r['not_music']} of {r['files']}** answered not "
            f"music ({r['per_kind']}). Missed: {r['missed']}.")


def _level(meta: dict) -> str:
    cfg = meta.get("feature_config") or {}
    if cfg.get("segment_rms_db") is None:
        return ""
    return (f", each patch scaled to {cfg['segment_rms_db']:g} dBFS RMS (boosted by at most "
            f"{cfg['max_gain_db']:g} dB) before the network, so that the level a track was recorded or "
            f"mastered at does not change its genre")


def _stride_rows() -> dict[str, dict]:
    if not STRIDES.is_file():
        return {}
    with open(STRIDES, newline="", encoding="utf-8") as f:
        return {r["design"]: r for r in csv.DictReader(f)}


def _stride_line(head: dict) -> str:
    """The shipped design over several fold splits, beside MSD alone and MTT on every patch
    (``bench/patch_stride.py``)."""
    k = (head.get("patch_strides") or {}).get("MTT_musicnn")
    rows = _stride_rows()
    names = ["msd only", "mtt every patch", f"mtt stride {k}", f"mtt stride {k}, other patches"]
    if not k or any(n not in rows for n in names):
        return ""
    one, every, chosen, others = (rows[n] for n in names)

    def fig(r):
        return f"{float(r['bal_acc_mean']):.3f} (SD {float(r['bal_acc_sd']):.3f}, macro-F1 {float(r['macro_f1']):.3f})"

    return (f"\n\nOne fold split flatters the best of many designs. Over 5 artist-grouped fold splits "
            f"(`python bench/patch_stride.py`, `bench/results/patch_stride.md`) this design's balanced accuracy "
            f"is {fig(chosen)} on average; with MTT starting at other patches {fig(others)}; with MTT on every "
            f"patch {fig(every)}; without MTT (`prior: msd_proxy`, shipped until 2026-12-02) {fig(one)}. "
            f"Pooled classical recall {float(chosen['classical']):.2f} against {float(one['classical']):.2f} "
            f"without MTT, jazz {float(chosen['jazz']):.2f} against {float(one['jazz']):.2f}. The network's time "
            f"per 30 s clip is {float(chosen['ratio_to_msd_only']):.2f}x that of MSD alone "
            f"({float(every['ratio_to_msd_only']):.2f}x with MTT on every patch), measured in the same run.")


# quoted from bench/results/transfer_cv/tables.md (2026-12-02); edit with a rerun
N_DESIGNS, CHOSEN_ROW = 50, "res-msd_proxy_fill-tags+fma-nestedC"
CHOICE_NOTE = (
    "Each patch is brought to one level before musicnn (`features: {segment_rms_db: -15, max_gain_db: 15}`): "
    "without it the designs averaged 0.073 less (median over 25, `bench/results/transfer_cv/repeated.md` and "
    "`repeated-segment_rms_db-none.md`). Since 2026-12-02 (third change that day) the prior also reads "
    "musicnn-MTT's \"classical\" and \"classic\" tags for classical, which no MSD tag names, and MTT runs on every "
    "2nd patch only (`patch_strides: {MTT_musicnn: 2}`): on every patch it cost 2.02x the network time of MSD "
    "alone (1.54x now), and which patches it hears moves the CV mean by less than the spread between fold splits. "
    "Strides 4 and 8 cost less time but make the graph run 4 or 8 patches at a time (more memory per request), "
    "and where MTT's evidence is weak fewer patches lose more: of 23 classical scores rendered through a General "
    "MIDI soundfont (`tools/render_classical.py`, out of domain) this design calls 9 classical, 12 with MTT on "
    "every patch, 8 and 6 at strides 4 and 8, 11 with MSD alone (`python bench/patch_stride.py --synth "
    "runs/synth_classical`). "
    "Ideas that need MSD only (MTT's classical tags predicted from MSD's outputs, MSD tags "
    "as classical's stand-ins, a residual shrunk harder for genres with few tracks) came within 0.008 of MSD "
    "alone (`python bench/scarce_ideas.py`, `bench/results/scarce_ideas.md`). Weighting the pooled per-genre "
    "recalls by the held-out genre counts of issue 11 gives about 0.80 for this design and 0.76 for MSD alone: "
    "arithmetic on 2-3 DEV tracks per scarce genre, not a measurement. "
    "Since 2026-12-03 the inner CV picks C from [0.005, 0.01, 0.015, 0.02, 0.03, 0.05], finer where it lands, in "
    "place of [0.003, 0.01, 0.03, 0.1, 0.3]: over 10 fold splits balanced accuracy 0.772 (SD 0.025) against 0.748 "
    "(SD 0.020), higher in 9 of the 10; scarce-genre simulation 0.672 recall against 0.665; held-out mix estimate "
    "0.82 against 0.80 (`python bench/c_grid.py`, `bench/results/c_grid.md`). "
    "Since 2026-12-03 (second change that day) the prior's log-odds are multiplied by 0.7 (`prior_scale: 0.7`) "
    "before the residual is fitted: over the same 10 fold splits 0.809 (SD 0.030) against 0.772, higher in 9; "
    "scarce-genre simulation 0.676 recall and 0.896 precision against 0.672 and 0.879; held-out mix estimate 0.87 "
    "against 0.82. The 0.7 was chosen on those splits (0.5-0.85 all scored higher than 1 in most of them); "
    "chosen inside each fold from 0.5-1 by the inner CV, the scale scored 0.784. "
    "Since 2026-12-03 (third change that day) C is fixed at 0.01, the value the inner CV chose most often (so the "
    "head is the one shipped before, only its temperature refitted); chosen in each fold, whose inner folds hold 1-2 "
    "tracks of the scarce genres, C cost the CV 0.02-0.03. On 10 further fold splits (seeds 10-19), which no choice "
    "looked at, this head scores 0.826 (SD 0.018) against 0.796 (SD 0.030) with C chosen in each fold and 0.756 "
    "with the prior at full scale, higher in all 10 splits (`python bench/c_grid.py --first-seed 10`, "
    "`bench/results/c_grid_seeds10-19.md`); fixed C 0.0125-0.015 score the same, 0.02 and above lose disco.")

INPUT_NAMES = {"penultimate": "200-d penultimate embedding", "tags": "50 tag probabilities"}


def _head_inputs(head: dict) -> str:
    names = [INPUT_NAMES.get(k.split("/", 1)[1], k) for k in head["inputs"]]
    return " and ".join(names) or "no learned inputs"


def _weak_genres(cv: dict) -> str:
    """Genres under 0.5 recall, pooled over the fold splits when there are several."""
    per_class = (cv.get("repeated") or cv)["per_class"]
    weak = [f"{g} {m['recall']:.2f} ({m['support']} tracks)" for g, m in per_class.items()
            if m["recall"] is not None and m["recall"] < 0.5]
    return ", ".join(weak) or "none"


def _prior_scale(head: dict) -> str:
    scale = float((head.get("prior") or {}).get("scale", 1.0))
    return "" if scale == 1 else f", times {scale:g}"


def _prior_tags(head: dict) -> str:
    """``blues → "blues"; …; classical, reggae: no tag`` from the prior stored in the head."""
    named, untagged = [], []
    for genre, per_network in ((head.get("prior") or {}).get("genre_tags", {})).items():
        tags = [t for names in per_network.values() for t in names]
        if tags:
            named.append(f"{genre} → " + "/".join(f'"{t}"' for t in tags))
        else:
            untagged.append(genre)
    stand_ins = " Disco has no MSD tag of its own: its stand-ins were picked from the tag names when the prior " \
        "was written." if any(t.startswith('disco →') for t in named) else ""
    return "; ".join(named) + (f"; {', '.join(untagged)}: no tag" if untagged else "") + ")." + stand_ins


def _tuned(meta: dict) -> str:
    """What each CV fold chose inside its own training tracks."""
    grid = meta["recipe"]["head"]["C"]
    if len(grid) == 1:
        return f"C fixed at {grid[0]:g} by the recipe, the temperature fitted inside each fold's training tracks"
    return "C and temperature chosen inside each fold's training tracks"


def _ordinal(k: int) -> str:
    """``2`` → ``"2nd"``, ``4`` → ``"4th"``."""
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def _mtt_line(meta: dict) -> str:
    if "MTT_musicnn" not in (meta.get("networks") or []):
        return ""
    k = (meta["head"].get("patch_strides") or {}).get("MTT_musicnn", 1)
    held = "the next patch takes" if k == 2 else f"the next {k - 1} patches take"
    where = f"on every {_ordinal(k)} patch only ({held} its tags)" if k > 1 else "on every patch"
    return (f"\n  And musicnn pretrained on MagnaTagATune, frozen, run {where}: its tag probabilities, of which the "
            "prior reads \"classical\" and \"classic\".")


def card(meta: dict) -> str:
    cv, data, det = meta["cv_metrics"], meta["training_data"], meta.get("detector_metrics") or {}
    head = meta["head"]
    rep = cv.get("repeated")
    pooled = (lambda g: f" {_score(rep['per_class'][g], 'recall')} | {_score(rep['per_class'][g], 'precision')} |"
              ) if rep else (lambda g: "")
    rows = "\n".join(f"| {g} | {data['per_label'].get(g, 0)} | {m['support']} |{pooled(g)} {_score(m, 'recall')} | "
                     f"{m['precision']:.2f} | {m['f1']:.2f} |" for g, m in cv["per_class"].items())
    nm = _latest(REPO / "bench" / "results" / "not_music.csv")
    nm_line = (f"On {nm['nonmusic_clips']} generated clips held out from the detector's training (other seeds, "
               f"voices, texts, frequencies, tempi and SNRs; `{nm['command']}`, {nm['date']}, {nm['machine']}): "
               f"**{float(nm['not_music_detected']):.3f}** answered not music; per kind {nm['per_kind']}."
               if nm else "Not yet measured on the held-out generated set: run `python bench/not_music.py`.")
    cal = cv["calibration"]
    return f"""# Model card: {meta['name']}

*Generated by `python tools/ship_model.py` from the metadata inside `genrekit/weights/genrekit-gtzan.onnx`
({meta['created']}, genrekit {meta['genrekit_version']}). Every figure below was measured on a 2-core CPU
machine without GPU; the data sets are small and uneven, so read each figure with its interval.*

## What it is
A genre classifier for the 10 GTZAN genres ({', '.join(meta['labels'])}), written into tags as
{', '.join(meta['display_names'].get(g, g) for g in meta['labels'])}. It runs with onnxruntime alone
(the light install), on 16 kHz audio cut into 3 s patches{_level(meta)}.

- **Network:** musicnn pretrained on the Million Song Dataset (Pons & Serra 2019; ISC licence,
  `genrekit/models/weights/MUSICNN_LICENSE.txt`), frozen: its 200-d penultimate embedding (for the
  not-music detector) and 50 tag probabilities per patch.{_mtt_line(meta)}
- **Genre head:** the mean of its {_head_inputs(head)} over the track's patches, standardised; a class-balanced logistic
  regression (L2, C = {head['meta'].get('C')}) fitted as a *residual* on a zero-shot prior: the log-odds of
  musicnn's own tags for each genre{_prior_scale(head)} ({_prior_tags(head)}
  The penalty shrinks it toward the prior where data is thin. Temperature {head['temperature']:.3f}.
  Each patch's vote is the same head on that patch; the track's logits are their mean.
- **Not music:** {_detector_line(meta, det)} The answer is then `"abstain": "not_music"`.
- **Uncertain:** below a top probability of {meta['min_confidence']} the answer is `"abstain": "uncertain"`
  (`--min-confidence` overrides it).

## Training data (exactly what it saw)
{data['n_tracks']} tracks: {', '.join(f"{k}: {v}" for k, v in data['per_source'].items())}.
{'; '.join(data['sources'])}.
Per genre: {', '.join(f"{g} {n}" for g, n in data['per_label'].items())}.
All 87 DEV GTZAN tracks of `../shared/data` (fault-filter "train" and "excluded"), and the FMA small tracks
whose top genre maps onto a GTZAN genre (Hip-Hop → hiphop, Pop → pop, Rock → rock). The model file lists
every track id, artist and SHA-256 of the training files (fingerprint `{data['fingerprint']}`), and of
their audio decoded at 16 kHz, so `genrekit evaluate` refuses them as test data under any name, and in any
lossless container (a FLAC copy of a WAV decodes to the same samples).

## How good it is: artist-grouped, genre-stratified {cv['folds']}-fold CV on DEV GTZAN
{cv['cv_tracks']} GTZAN tracks in the folds ({cv['training_only_tracks']} FMA tracks join every training fold
whose test artists they do not share); {_tuned(meta)}.
{N_DESIGNS} designs compared in this CV (`python bench/transfer_cv.py`,
`bench/results/transfer_cv/tables.md`, row `{CHOSEN_ROW}`); the strong shrinkage and the tags-only inputs
were chosen by a simulation of genres with two training tracks, the regime of blues, classical, country
and disco (`python bench/fewshot_cv.py`, `bench/results/fewshot_cv.md`). {CHOICE_NOTE}{_stride_line(head)}

{_headline(cv)}

| genre | training tracks | CV tracks |{_pooled_head(cv)} recall | precision | F1 |
|---|---:|---:|{"---:|---:|" if rep else ""}---:|---:|---:|
{rows}

Calibration (ECE, 15 bins): {cal['ece_before']:.3f} at T = 1, {cal['ece_after']:.3f} with each fold's own T
(fitted inside the fold). With {cv['cv_tracks']} tracks a perfectly calibrated model would still show an ECE of
about {cal['ece_noise_floor']:.2f} (the median of simulated ones), so neither figure can be told from good
calibration, and the target of 0.05 cannot be measured on this data. At min_confidence {meta['min_confidence']}
the CV answers "uncertain" for {cv['abstention']['uncertain_share']:.3f} of the tracks.

Not music: in CV (music grouped by artist, generated clips by recipe) {_detector_cv_line(det)} {nm_line}

{_noise_from_programs()}

## Limits
- **Genres below 0.5 recall in CV**: {_weak_genres(cv)}. 16 of the 17 reggae tracks are Bob Marley, so
  the fold that holds them trains reggae on one Burning Spear track, and no musicnn tag names reggae; the 3
  blues tracks are Stevie Ray Vaughan (2) and Buckwheat Zydeco. Classical and disco have 2 tracks each. The
  shipped model sees all of them, but its figures for these genres are estimates from one or two artists.
  The other way round, trained on Marley, the Burning Spear track is called reggae in 9 of 10 splits
  (`python bench/reggae_ideas.py`, which also shows three ideas for reggae that did not help): one track,
  but the case the shipped model meets, trained on all of DEV's reggae and heard on other artists.
- The targets of the accuracy issue (CV balanced accuracy ≥ 0.80, no genre below 0.5 recall) are **not met**:
  reggae is far below 0.5. The balanced accuracy's mean over splits 0-9 is flattered by the prior's scale and
  C, fixed after looking at those splits; on splits 10-19, which no choice looked at, it is 0.826 (above).
- GTZAN labels and recordings (1990s–2000s radio and CD rips) are narrow; other music may be put into the
  nearest of these 10 genres. Non-music unlike the generated kinds may get a genre (noise from other
  programs that still does is listed above). Files under 9 s are read by the per-patch head alone, which lets
  more steady noise through: in musicnn's embedding its mean lies near distorted guitars. Music cut to 9 s
  is called not music a little more often than whole tracks (above). Very quiet music may be called not
  music: 0 of 5 DEV tracks played 30 dB softer, 1 of 5 at 40 dB softer (`python bench/level.py`).
- Licences: musicnn weights ISC; GTZAN and FMA audio are not redistributed with genrekit.
"""


def main():
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "runs" / "default_model" / "genrekit-gtzan.onnx"
    _, meta = open_session(source)
    if meta.get("kind") != "track_head":
        sys.exit(f"{source}: not a track-head model")
    if source.resolve() != TARGET.resolve():
        shutil.copyfile(source, TARGET)
    CARD.write_text(card(meta))
    print(f"shipped {TARGET} ({TARGET.stat().st_size / 1e6:.1f} MB); wrote {CARD}")


if __name__ == "__main__":
    main()
