"""Track-level transfer: a head on pretrained musicnn features, chosen and checked by artist-grouped CV.

The recipe behind the shipped model (``genrekit train --config configs/default_model.yaml``):

1. **Data.** Labelled tracks from one or more data sets; a label map lets another
   taxonomy join (FMA's ``Hip-Hop`` → ``hiphop``). Sources marked ``cv`` are dealt into
   folds; the others (``train``) join every training fold whose test artists they do
   not share.
2. **Features.** Every 3 s patch of every track goes once through the shipped musicnn
   ONNX networks (the graphs that run at inference, :mod:`genrekit.tagger`), each patch
   first brought to the recipe's ``features: {segment_rms_db: ...}`` level if it sets one
   (the model keeps that setting, so prediction does the same); the outputs are cached
   per file under ``features_cache``, keyed by the file's SHA-256 and those settings.
3. **Cross-validation.** Artist-grouped, genre-stratified folds. In each outer fold, C
   is chosen from a grid by an inner artist-grouped CV (balanced accuracy); the pooled
   held-out predictions give balanced accuracy, macro-F1 and per-genre recall with
   bootstrap CIs. Temperature: fold k's T is fitted on that inner CV's held-out logits
   (never on the fold it scores), and ECE is reported before and after.
   With ``cv_repeats: R`` this runs on R different fold splits: the first split's figures
   keep their CIs, and each split's figures, their mean and SD, and per-genre recall and
   precision pooled over the splits are reported too (:func:`repeated_report`).
4. **The shipped head** is fitted on all tracks with the C chosen most often (over all
   splits' folds), its T fitted on all outer held-out logits.
5. **Not music.** A binary head (music / not music) on the same features, fitted on
   the music tracks and a generated non-music set (:mod:`genrekit.datasets.nonmusic`),
   per 3 s segment; its threshold keeps CV false alarms on music at or below
   ``max_music_false_alarms``.
6. **The model file**: the musicnn graph(s) the heads need (a network with a
   ``head.patch_strides`` entry run on every k-th patch only), with the heads, thresholds,
   labels, display names, training data (ids, artists, content hashes) and the CV
   figures in its metadata (:func:`genrekit.export.musicnn_onnx_bytes`).

Needs ``genrekit[train]`` (scipy, scikit-learn) for fitting; the model it writes runs
in the light install.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import ConfigError
from .config import strict_from_dict

KINDS = ("penultimate", "tags")
MUSIC, NOT_MUSIC = "music", "not_music"
DETECTOR_CLASSES = ("binary", "families")


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Source:
    """One labelled data set: ``spec`` (``gtzan:…``, ``fma:…``, ``folder:…``, ``manifest:…``) and its metadata.

    ``label_map`` renames labels (those it does not name are dropped when ``only_mapped``);
    ``splits`` keeps only tracks of these splits (None: all); ``role`` is ``cv`` (in the
    CV folds) or ``train`` (training only).
    """

    spec: str
    metadata: str | None = None
    split_file: str | None = None
    artists: str | None = None
    label_map: dict | None = None
    only_mapped: bool = False
    splits: list | None = None
    role: str = "cv"

    def __post_init__(self):
        if self.role not in ("cv", "train"):
            raise ConfigError(f"source role must be 'cv' or 'train', not {self.role!r}")
        if self.splits is not None:
            object.__setattr__(self, "splits", _check_splits(self.splits, self.spec))  # frozen


def _check_splits(splits, spec: str) -> list[str]:
    """A source's ``splits`` in genrekit's names (FMA's ``training`` → ``train``); unknown names refused."""
    from ..datasets.base import check_split
    from ..errors import DatasetError

    if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits):
        raise ConfigError(f"source {spec}: splits must be a list of split names, not {splits!r}")
    try:
        return [check_split(s, f"source {spec}: splits") for s in splits]
    except DatasetError as e:
        raise ConfigError(str(e)) from None


# prior kind -> the taggers whose tag names it uses; "_proxy" adds genrekit.heads.PROXY_TAGS;
# "_fill" takes MSD's tags where MSD names the genre and MTT's only for the others (classical)
PRIORS = {"msd": ("MSD_musicnn",), "msd_proxy": ("MSD_musicnn",), "msd_fill": ("MSD_musicnn", "MTT_musicnn"),
          "msd_proxy_fill": ("MSD_musicnn", "MTT_musicnn"), "both": ("MSD_musicnn", "MTT_musicnn")}


def _check_prior_tags(prior_tags, prior: str | None) -> None:
    """``head.prior_tags``: label → network → a list of tag names, of networks the prior reads."""
    if not prior_tags:
        return
    if prior is None:
        raise ConfigError("head.prior_tags maps labels to tags for the tag prior, and head.prior is null")
    if not isinstance(prior_tags, dict):
        raise ConfigError(f"head.prior_tags must map labels to {{network: [tags]}}, not {prior_tags!r}")
    for label, per in prior_tags.items():
        if not isinstance(per, dict) or not all(
                isinstance(tags, list) and all(isinstance(t, str) for t in tags) for tags in per.values()):
            raise ConfigError(f"head.prior_tags[{label!r}] must map networks to lists of tag names, not {per!r}")
        other = sorted(set(per) - set(PRIORS[prior]))
        if other:
            raise ConfigError(f"head.prior_tags[{label!r}] names {other}; prior {prior} reads "
                              f"{', '.join(PRIORS[prior])}")


@dataclass(frozen=True)
class HeadSpec:
    """The genre head: inputs (``<network>/<kind>``), pooling, tag prior and its scale, C grid, class balance."""

    inputs: list = field(default_factory=lambda: ["MSD_musicnn/penultimate", "MSD_musicnn/tags"])
    pooling: str = "mean"
    prior: str | None = "msd"            # tag-name prior (PRIORS): msd, msd_proxy, msd_fill, msd_proxy_fill, both or none
    C: list = field(default_factory=lambda: [0.01, 0.1, 1.0])
    class_balance: str = "weight"        # weight, artist or none (genrekit.heads.class_weights)
    patch_strides: dict = field(default_factory=dict)  # network -> k: run it on every k-th patch only
    prior_scale: float = 1.0  # multiplies the prior's logits (its tag log-odds) before the residual is fitted
    prior_tags: dict = field(default_factory=dict)  # label -> network -> tags, where a label's name is no tag's

    def __post_init__(self):
        check_inputs(self.inputs, "head.inputs", allow_empty=True)  # [] : the tag prior alone
        if self.prior is not None and self.prior not in PRIORS:
            raise ConfigError(f"head.prior must be one of {', '.join(PRIORS)} or null, not {self.prior!r}")
        if (not isinstance(self.prior_scale, (int, float)) or isinstance(self.prior_scale, bool)
                or not 0 < self.prior_scale < float("inf")):
            raise ConfigError(f"head.prior_scale must be a positive number, not {self.prior_scale!r}")
        if self.prior is None and self.prior_scale != 1:
            raise ConfigError(f"head.prior_scale {self.prior_scale} scales the tag prior, and head.prior is null")
        _check_prior_tags(self.prior_tags, self.prior)
        if not isinstance(self.C, (list, tuple)) or not self.C or any(
                not isinstance(c, (int, float)) or isinstance(c, bool) or c <= 0 for c in self.C):
            raise ConfigError(f"head.C must be a list of positive numbers (the grid CV chooses from), not {self.C!r}")
        from ..heads import CLASS_BALANCES

        if self.class_balance not in CLASS_BALANCES:
            raise ConfigError(f"head.class_balance must be one of {', '.join(CLASS_BALANCES)}, "
                              f"not {self.class_balance!r}")
        from ..config import check_patch_strides

        object.__setattr__(self, "patch_strides", check_patch_strides(self.patch_strides))  # frozen
        unused = sorted(set(self.patch_strides) - set(self.networks))
        if unused:
            raise ConfigError(f"head.patch_strides names {unused}, which the head does not use ({self.networks})")

    @property
    def networks(self) -> list[str]:
        used = {k.split("/")[0] for k in self.inputs}
        used |= set(PRIORS.get(self.prior, ()))
        return sorted(used)


@dataclass(frozen=True)
class DetectorSpec:
    """The music / not-music head: a generated non-music manifest, more music, C, and the false-alarm budget."""

    nonmusic: str | None = None          # manifest:… of generated non-music (label not_music)
    music: list = field(default_factory=list)  # more music sources (any labels) beside the genre tracks
    # The defaults are the shipped model's detector, chosen by CV detection at 1 % false alarms
    # (bench/detector_cv.py); "binary" / "mean" / the head's inputs detected far less.
    inputs: list | None = None           # default: the penultimate embedding of a network the head reads, MSD first
    C: float = 0.3
    max_music_false_alarms: float = 0.01  # CV share of music tracks answered "not music"
    classes: str = "families"            # music against each family of non-music, or "binary"
    pooling: str = "mean_std"            # also the spread of the patch features over the track, or "mean"
    min_segments: int = 3                # mean_std: tracks with fewer patches get a per-patch ("mean") detector

    def __post_init__(self):
        if self.inputs is not None:
            check_inputs(self.inputs, "detector.inputs")
        if not isinstance(self.C, (int, float)) or isinstance(self.C, bool) or self.C <= 0:
            raise ConfigError(f"detector.C must be a positive number, not {self.C!r}")
        if (not isinstance(self.max_music_false_alarms, (int, float))
                or not 0 <= self.max_music_false_alarms < 1):
            raise ConfigError(f"detector.max_music_false_alarms must be in [0, 1), not {self.max_music_false_alarms!r}")
        if self.nonmusic is not None and not isinstance(self.nonmusic, str):
            raise ConfigError(f"detector.nonmusic must be a data set spec (manifest:CSV), not {self.nonmusic!r}")
        if not isinstance(self.music, list):
            raise ConfigError(f"detector.music must be a list of sources, not {self.music!r}")
        for source in self.music:
            strict_from_dict(Source, source, "detector music source")


def check_inputs(inputs, key: str, allow_empty: bool = False) -> None:
    """``inputs`` must be a list of ``<network>/<kind>`` with a musicnn network and a kind of :data:`KINDS`."""
    from ..heads import NETWORKS

    if not isinstance(inputs, (list, tuple)) or not (inputs or allow_empty):
        raise ConfigError(f"{key} must be a list of <network>/<kind> names, not {inputs!r}")
    for name in inputs:
        network, _, kind = str(name).partition("/")
        if network not in NETWORKS or kind not in KINDS:
            raise ConfigError(f"{key}: unknown input {name!r}; use <network>/<kind> with network in "
                              f"{NETWORKS} and kind in {KINDS}")


LEVEL_KEYS = ("segment_rms_db", "max_gain_db")


@dataclass
class TransferConfig:
    """A transfer recipe (a YAML file maps onto these names)."""

    name: str = "genrekit-transfer"
    out: str = "runs/transfer/model.onnx"
    labels: list | None = None
    display_names: dict | None = None
    sources: list = field(default_factory=list)
    head: HeadSpec = field(default_factory=HeadSpec)
    detector: DetectorSpec = field(default_factory=DetectorSpec)
    min_confidence: float = 0.25
    folds: int = 5
    cv_repeats: int = 1          # fold splits (seeds seed, seed + 1, ...): one split's figures are noisy
    seed: int = 0
    n_boot: int = 2000
    features_cache: str = "runs/transfer/features"
    features: dict = field(default_factory=dict)  # overrides of musicnn's input: segment_rms_db, max_gain_db

    def __post_init__(self):
        self.sources = [strict_from_dict(Source, s, "source") for s in self.sources]
        self.head = strict_from_dict(HeadSpec, self.head, "head")
        self.detector = strict_from_dict(DetectorSpec, self.detector, "detector")
        if not self.sources:
            raise ConfigError("a transfer recipe needs at least one source")
        if self.labels is not None and (not isinstance(self.labels, list) or not self.labels
                                        or not all(isinstance(g, str) and g for g in self.labels)):
            raise ConfigError(f"labels must be a list of label names, not {self.labels!r}")
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"labels name a label twice: {sorted(g for g, n in Counter(self.labels).items() if n > 1)}")
        if not isinstance(self.min_confidence, (int, float)) or not 0 <= self.min_confidence < 1:
            raise ConfigError(f"min_confidence must be in [0, 1), not {self.min_confidence!r}")
        if not isinstance(self.folds, int) or isinstance(self.folds, bool) or self.folds < 2:
            raise ConfigError(f"folds must be an integer >= 2, not {self.folds!r}")
        if not isinstance(self.cv_repeats, int) or isinstance(self.cv_repeats, bool) or self.cv_repeats < 1:
            raise ConfigError(f"cv_repeats must be an integer >= 1, not {self.cv_repeats!r}")
        self.feature_config()  # checks the overrides
        if self.detector.classes not in DETECTOR_CLASSES:
            raise ConfigError(f"detector.classes must be one of {DETECTOR_CLASSES}, not {self.detector.classes!r}")
        if self.detector.pooling not in ("mean", "mean_std"):
            raise ConfigError(f"detector.pooling must be mean or mean_std, not {self.detector.pooling!r}")
        if not isinstance(self.detector.min_segments, int) or self.detector.min_segments < 2:
            raise ConfigError(f"detector.min_segments must be an integer >= 2 (the spread of one patch is 0), "
                              f"not {self.detector.min_segments!r}")
        detector_networks = {k.split("/")[0] for k in self.detector_inputs()}
        strided = sorted(detector_networks & set(self.head.patch_strides))
        if strided:
            raise ConfigError(f"detector.inputs use {strided}, which head.patch_strides runs on some patches only")

    def detector_inputs(self) -> list[str]:
        """``detector.inputs``, or by default the penultimate embedding of a network the head reads
        in full (not strided), musicnn-MSD first; the head's inputs if there is none."""
        if self.detector.inputs:
            return list(self.detector.inputs)
        full = [n for n in self.head.networks if n not in self.head.patch_strides]
        if not full:
            return list(self.head.inputs)
        return [f"{'MSD_musicnn' if 'MSD_musicnn' in full else full[0]}/penultimate"]

    def feature_config(self):
        """musicnn's input settings with the recipe's ``features`` overrides (the segment level)."""
        from ..config import MUSICNN_FEATURES

        unknown = sorted(set(self.features or {}) - set(LEVEL_KEYS))
        if unknown:
            raise ConfigError(f"features: only {', '.join(LEVEL_KEYS)} can be set for musicnn, not {unknown}")
        return dataclasses.replace(MUSICNN_FEATURES, **(self.features or {}))

    @classmethod
    def from_file(cls, path) -> TransferConfig:
        import yaml

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not a readable YAML file ({str(e).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a transfer config must be a YAML mapping")
        data.pop("kind", None)
        return strict_from_dict(cls, data, "transfer")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- data and features


@dataclass
class LabeledTrack:
    track_id: str
    path: str
    label: str
    artist: str | None
    role: str
    source: str
    features: dict = field(default_factory=dict)


def gather(sources: list[Source]) -> tuple[list[LabeledTrack], list[str]]:
    """The tracks of every source with mapped labels; notes on what was left out."""
    from ..datasets import open_dataset

    tracks, notes = [], []
    for source in sources:
        dataset = open_dataset(source.spec, metadata=source.metadata, splits=source.split_file,
                               artists=source.artists)
        kept = 0
        for t in dataset.tracks:
            if source.splits is not None and t.split not in source.splits:
                continue
            label = (source.label_map or {}).get(t.label, None if source.only_mapped else t.label)
            if label is None:
                continue
            tracks.append(LabeledTrack(t.track_id, t.path, label, t.artist, source.role, dataset.name))
            kept += 1
        notes.append(f"{source.spec}: {kept} of {len(dataset.tracks)} tracks")
    return tracks, notes


def file_sha256(path) -> str:
    """SHA-256 of a file's bytes, read once per run while its size and modification time stay the same
    (a recipe asks for each track's hash for its cache entry, the leakage guard and the model file)."""
    stat = os.stat(path)
    return _sha256_of(os.path.realpath(path), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


@lru_cache(maxsize=65536)
def _sha256_of(path: str, *stat_key: int) -> str:  # the key: any change to the file makes a new entry
    from ..cache.featurize import file_sha256 as sha

    return sha(path)


def audio_sha256(path, sr: int) -> str:
    """SHA-256 of a file's decoded audio at ``sr`` (:func:`genrekit.cache.featurize.decoded_sha256`),
    decoded once per run while the file stays the same."""
    stat = os.stat(path)
    return _audio_sha256_of(os.path.realpath(path), sr, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


@lru_cache(maxsize=65536)
def _audio_sha256_of(path: str, sr: int, *stat_key: int) -> str:
    from ..cache.featurize import decoded_sha256

    return decoded_sha256(path, sr)


def _fingerprint(hashes: list[str]) -> str:
    return hashlib.sha256("".join(hashes).encode()).hexdigest()[:16]


def extract_features(tracks: list, networks: list[str], cache_dir, progress: bool = True,
                     config=None) -> list[str]:
    """Fill each track's ``features`` (``"<network>/<kind>"`` → ``(n_segments, dim)``); returns failures.

    One file per track in ``cache_dir`` (``<sha256>.npz``, or ``<sha256>-<settings
    fingerprint>.npz`` for ``config`` other than musicnn's own), written atomically, so a
    run resumes and a changed file is recomputed. A track that fails is left out
    (its reason returned) and the others go on.
    """
    from tqdm import tqdm

    from ..config import MUSICNN_FEATURES
    from ..errors import AudioError
    from ..io import atomic_path
    from ..tagger import iter_patches, load_tagger

    config = config or MUSICNN_FEATURES
    suffix = "" if config == MUSICNN_FEATURES else f"-{config.fingerprint()}"
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    names = [f"{n}/{k}" for n in networks for k in KINDS]
    failures = []
    for track in tqdm(tracks, desc="features", unit="track", disable=not progress):
        path = cache_dir / f"{file_sha256(track.path)}{suffix}.npz"
        cached = {}
        if path.is_file():
            with np.load(path) as z:
                cached = {key.replace("__", "/"): z[key] for key in z.files}
        missing = [net for net in networks if any(f"{net}/{k}" not in cached for k in KINDS)]
        if missing:
            try:
                cached |= _network_outputs(track.path, missing, partial(iter_patches, config=config), load_tagger)
            except AudioError as e:
                failures.append(f"{track.path}: {e.reason}")
                continue
            with atomic_path(path) as tmp:  # keeps the networks cached before, adds the new ones
                with open(tmp, "wb") as f:
                    np.savez(f, **{n.replace("/", "__"): v for n, v in cached.items()})
        track.features = {n: cached[n] for n in names}
    return failures


def _network_outputs(path, networks: list[str], iter_patches, load_tagger) -> dict[str, np.ndarray]:
    parts: dict[str, list] = {f"{n}/{k}": [] for n in networks for k in KINDS}
    for batch in iter_patches(path):
        for net in networks:
            for key, value in load_tagger(net.split("_")[0].lower()).run(batch, [f"{net}/{k}" for k in KINDS]).items():
                parts[key].append(value)
    return {n: np.concatenate(v).astype(np.float32) for n, v in parts.items()}


# ---------------------------------------------------------------- heads and folds


def make_prior(kind: str | None, labels: list[str], scale: float = 1.0, tags: dict | None = None):
    """The tag-name prior (:func:`genrekit.heads.named_tags`: a GTZAN genre's tags under any spelling,
    else the tags named like the label) restricted to the taggers of ``kind`` (:data:`PRIORS`);
    ``msd_proxy`` also gives genres without a tag their :data:`~genrekit.heads.PROXY_TAGS`; ``msd_fill``
    uses MTT's tags only for genres that no MSD tag names (classical); ``msd_proxy_fill`` both.
    ``tags`` (label → network → tags, the recipe's ``head.prior_tags``) replaces a label's mapping.
    ``scale`` multiplies its logits (:class:`~genrekit.heads.TagPrior`)."""
    from ..heads import TagPrior, named_tags, proxy_tags

    if kind is None:
        return None
    networks = PRIORS[kind]
    mapping = {g: named_tags(g, networks) for g in labels}
    if "_proxy" in kind:
        for g in labels:
            if not mapping[g]:
                mapping[g] = {n: t for n, t in proxy_tags(g).items() if n in networks}
    if kind.endswith("_fill"):
        mapping = {g: {"MSD_musicnn": per["MSD_musicnn"]} if per.get("MSD_musicnn") else per
                   for g, per in mapping.items()}
    mapping |= {g: {n: list(t) for n, t in per.items()} for g, per in (tags or {}).items()}
    return TagPrior(labels, mapping, scale=scale)


def fit_head(spec: HeadSpec, tracks: list, labels: list[str], C: float):
    from ..heads import fit_track_head

    return fit_track_head([t.features for t in tracks], [t.label for t in tracks], labels, spec.inputs,
                          spec.pooling, C, spec.class_balance,
                          make_prior(spec.prior, labels, spec.prior_scale, spec.prior_tags),
                          groups=[group_of(t) for t in tracks], patch_strides=spec.patch_strides)


def logits_of(head, tracks: list) -> np.ndarray:
    return np.stack([head.logits(t.features) for t in tracks])


def group_folds(labels: list[str], groups: list[str], n_folds: int, seed: int) -> np.ndarray:
    """Fold per track: groups (artists) kept whole, labels spread over the folds (StratifiedGroupKFold)."""
    import warnings

    from sklearn.model_selection import StratifiedGroupKFold

    n_groups, largest = len(set(groups)), max(Counter(labels).values(), default=0)
    if n_folds > min(n_groups, largest):
        from ..errors import DatasetError

        raise DatasetError(f"{n_folds} folds need {n_folds} artists (tracks without one count alone) and a label "
                           f"with {n_folds} tracks; {len(labels)} tracks have {n_groups} artists and at most "
                           f"{largest} tracks of a label")
    fold = np.empty(len(labels), dtype=int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the least populated class has only N members" is expected
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        for k, (_, test) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
            fold[test] = k
    return fold


def group_of(track) -> str:
    return f"artist:{track.artist}" if track.artist else f"track:{track.source}:{track.track_id}"


def _artist_names(track) -> set[str]:
    from ..datasets.base import credit_names, name_key

    return {name_key(n) for n in credit_names(track.artist)} if track.artist else set()


def extra_for(extra: list, test: list) -> list:
    """Training-only tracks that share no credited artist name with the test tracks."""
    test_names = set().union(*(_artist_names(t) for t in test)) if test else set()
    return [t for t in extra if not (_artist_names(t) & test_names)]


def choose_C(spec: HeadSpec, train: list, extra: list, labels: list[str], seed: int, n_folds: int = 4):
    """C from ``spec.C`` by an inner artist-grouped CV of ``train`` (balanced accuracy, then NLL);
    returns ``(C, inner held-out logits at that C, their labels)``."""
    from ..metrics import encode

    y = encode([t.label for t in train], labels)
    groups = [group_of(t) for t in train]
    # a small training set gets fewer inner folds: as many as its artists and its largest label allow
    n_folds = min(n_folds, len(set(groups)), max(Counter(t.label for t in train).values(), default=0))
    if n_folds < 2:
        from ..errors import DatasetError

        raise DatasetError(f"an outer fold's {len(train)} training tracks are too few to choose C from "
                           f"{spec.C} by inner CV; add tracks or lower folds")
    fold = group_folds([t.label for t in train], groups, n_folds, seed + 1)
    inner = {c: np.zeros((len(train), len(labels))) for c in spec.C}
    for k in range(n_folds):
        test = [t for t, f in zip(train, fold) if f == k]
        fit_on = [t for t, f in zip(train, fold) if f != k] + extra_for(extra, test)
        for c in spec.C:
            inner[c][fold == k] = logits_of(fit_head(spec, fit_on, labels, c), test)
    best = max(spec.C, key=lambda c: inner_cv_rank(inner[c], y))
    return best, inner[best], y


def inner_cv_rank(logits: np.ndarray, y: np.ndarray) -> tuple:
    """How an inner CV's held-out logits rank against another setting's: balanced accuracy, then NLL."""
    from ..metrics import balanced_accuracy, nll_logits

    return round(balanced_accuracy(y, logits.argmax(1), logits.shape[1]), 6), -nll_logits(logits, y)


def cross_validate(spec: HeadSpec, tracks: list, extra: list, labels: list[str], n_folds: int, seed: int) -> dict:
    """Held-out logits (T = 1) of every CV track, with the C and T of each outer fold.

    Both are chosen inside the fold's training tracks (nested): C by the inner CV, T
    fitted on the inner CV's held-out logits at that C, so neither sees the fold it scores.
    """
    from ..metrics import encode, fit_temperature

    y = encode([t.label for t in tracks], labels)
    fold = group_folds([t.label for t in tracks], [group_of(t) for t in tracks], n_folds, seed)
    logits, chosen = np.zeros((len(tracks), len(labels))), []
    temperature = np.ones(len(tracks))
    for k in range(n_folds):
        test = [t for t, f in zip(tracks, fold) if f == k]
        train = [t for t, f in zip(tracks, fold) if f != k]
        C, inner, y_inner = choose_C(spec, train, extra, labels, seed)
        chosen.append(C)
        temperature[fold == k] = fit_temperature(inner, y_inner)
        logits[fold == k] = logits_of(fit_head(spec, train + extra_for(extra, test), labels, C), test)
    return {"logits": logits, "y": y, "fold": fold, "C": chosen, "temperature": temperature}


def cv_report(cv: dict, labels: list[str], n_boot: int, seed: int, min_confidence: float) -> dict:
    """Balanced accuracy, macro-F1, per-genre recall with CIs; ECE before/after; abstention at the threshold."""
    from ..metrics import classification_report, ece, ece_noise_floor, softmax

    y, logits = cv["y"], cv["logits"]
    report = classification_report(y, logits.argmax(1), labels, n_boot=n_boot, seed=seed)
    calibrated = softmax(logits / cv["temperature"][:, None])
    confident = calibrated.max(1) >= min_confidence
    report["calibration"] = {"ece_before": ece(softmax(logits), y), "ece_after": ece(calibrated, y),
                             "ece_noise_floor": ece_noise_floor(calibrated),
                             "temperature_per_fold": sorted({round(float(t), 3) for t in cv["temperature"]})}
    report["abstention"] = {"min_confidence": min_confidence, "uncertain_share": float(1 - confident.mean()),
                            "accuracy_when_answering": float((logits.argmax(1) == y)[confident].mean())
                            if confident.any() else None}
    report["C_per_fold"] = cv["C"]
    return report


def repeated_report(cvs: list[dict], labels: list[str], seed: int) -> dict:
    """Figures over several fold splits: balanced accuracy, macro-F1 and accuracy of each split with their
    mean and SD, and per-genre recall and precision pooled over the splits' held-out predictions."""
    from ..metrics import accuracy, balanced_accuracy, macro_f1, per_class_scores

    k = len(labels)
    preds = [cv["logits"].argmax(1) for cv in cvs]
    per_split = {name: [metric(cv["y"], p, k) for cv, p in zip(cvs, preds)] for name, metric in
                 (("balanced_accuracy", balanced_accuracy), ("macro_f1", macro_f1), ("accuracy", accuracy))}
    pooled = per_class_scores(np.concatenate([cv["y"] for cv in cvs]), np.concatenate(preds), k)
    per_class = {g: {"recall": float(pooled["recall"][i]) if pooled["support"][i] else None,
                     "precision": float(pooled["precision"][i]), "support": int(pooled["support"][i]) // len(cvs)}
                 for i, g in enumerate(labels)}
    return {"splits": len(cvs), "seeds": [seed + r for r in range(len(cvs))],
            **{f"{name}_per_split": [round(float(v), 4) for v in values] for name, values in per_split.items()},
            **{f"{name}_mean": float(np.mean(values)) for name, values in per_split.items()},
            **{f"{name}_sd": float(np.std(values)) for name, values in per_split.items()},
            "per_class": per_class,
            "C_chosen": {f"{c:g}": n for c, n in sorted(Counter(c for cv in cvs for c in cv["C"]).items())}}


# ---------------------------------------------------------------- the music / not-music detector


def segment_samples(tracks: list, inputs: list[str]) -> list[dict]:
    """Each 3 s segment of each track as a one-segment sample."""
    return [{k: t.features[k][i:i + 1] for k in inputs} for t in tracks for i in range(len(t.features[inputs[0]]))]


def fit_detector(music: list, nonmusic: list, inputs: list[str], C: float, classes: str = "binary",
                 pooling: str = "mean"):
    """A music / not-music head.

    ``pooling="mean"`` fits it on single segments (a track's score is the mean of its
    segments'). ``pooling="mean_std"`` fits it on whole tracks, pooled into the mean and the
    standard deviation of their segment features: steady noise barely moves from one patch to
    the next, music does, and in musicnn's embedding the mean alone puts pink noise beside
    distorted guitars. Such a head needs several patches per track (see
    :func:`long_enough`); give it only tracks it will score.

    ``classes="families"`` fits music against each family of generated non-music (steady noise,
    tones, impulses, speech: :data:`genrekit.datasets.nonmusic.FAMILIES`, read from the clip's
    manifest group, which a manifest track carries as its artist; "other" for unknown groups).
    The softmax over several linear scores bounds music by several planes, where one plane let
    steady noise pass as distorted guitars; P(not music) is still 1 - P(music).
    """
    from ..datasets.nonmusic import family_of
    from ..heads import fit_track_head

    def label(track):
        return NOT_MUSIC if classes == "binary" else family_of(track.artist)

    if pooling == "mean_std":
        y = [MUSIC] * len(music) + [label(t) for t in nonmusic]
        samples = [t.features for t in music + nonmusic]
    else:
        samples = segment_samples(music, inputs) + segment_samples(nonmusic, inputs)
        y = [MUSIC] * sum(len(t.features[inputs[0]]) for t in music)
        for t in nonmusic:
            y += [label(t)] * len(t.features[inputs[0]])
    labels = [MUSIC] + sorted(set(y) - {MUSIC})
    return fit_track_head(samples, y, labels, inputs, pooling, C, "weight")


def long_enough(tracks: list, inputs: list[str], min_segments: int) -> list:
    """The tracks with at least ``min_segments`` segments (those a mean_std detector scores)."""
    return [t for t in tracks if len(t.features[inputs[0]]) >= min_segments]


def detector_cv(music: list, nonmusic: list, inputs: list[str], C: float, n_folds: int, seed: int,
                classes: str = "binary", pooling: str = "mean", cut_music_to: int | None = None) -> dict:
    """Held-out P(not music) of every music and non-music track (folds by artist / recipe group).

    ``cut_music_to``: also score each music track cut to its first that many segments, as a short
    file of it would be (``"p_cut_music"``).
    """
    from ..metrics import softmax

    everything = music + nonmusic
    labels = [MUSIC] * len(music) + [NOT_MUSIC] * len(nonmusic)
    fold = group_folds(labels, [group_of(t) for t in everything], n_folds, seed)
    p, p_cut = np.zeros(len(everything)), np.zeros(len(music))

    def p_not_music(head, features):
        return 1.0 - softmax(head.logits(features))[head.labels.index(MUSIC)]

    for k in range(n_folds):
        train = [i for i, f in enumerate(fold) if f != k]
        head = fit_detector([everything[i] for i in train if labels[i] == MUSIC],
                            [everything[i] for i in train if labels[i] == NOT_MUSIC], inputs, C, classes, pooling)
        for i in np.flatnonzero(fold == k):
            p[i] = p_not_music(head, everything[i].features)
            if cut_music_to and i < len(music):
                p_cut[i] = p_not_music(head, {key: v[:cut_music_to] for key, v in music[i].features.items()})
    cv = {"p_not_music": p, "is_music": np.array([lab == MUSIC for lab in labels])}
    return cv | ({"p_cut_music": p_cut} if cut_music_to else {})


def detector_threshold(cv: dict, max_false_alarms: float) -> float:
    """The lowest P(not music) threshold whose CV false alarms on music stay within the budget."""
    music_p = np.sort(cv["p_not_music"][cv["is_music"]])
    allowed = int(np.floor(max_false_alarms * len(music_p)))
    above = music_p[len(music_p) - allowed - 1] if allowed < len(music_p) else 0.0
    return float(min(max(0.5, np.nextafter(above, 1.0)), 0.99))


def detector_report(cv: dict, threshold: float, kinds: list[str] | None = None) -> dict:
    flagged = cv["p_not_music"] >= threshold
    report = {"threshold": threshold, "music_false_alarms": float(flagged[cv["is_music"]].mean()),
              "not_music_detected": float(flagged[~cv["is_music"]].mean()),
              "n_music": int(cv["is_music"].sum()), "n_not_music": int((~cv["is_music"]).sum())}
    if kinds is not None:
        per = {}
        for kind in sorted(set(kinds)):
            idx = [i for i, k in enumerate(kinds) if k == kind]
            per[kind] = float(flagged[np.array(idx) + report["n_music"]].mean())
        report["per_kind"] = per
    return report


# ---------------------------------------------------------------- the whole recipe


@dataclass
class TransferResult:
    model: Path
    cv: dict
    detector: dict | None
    metadata: dict


def train_transfer(config: TransferConfig, progress: bool = True) -> TransferResult:
    """Run the recipe (see the module notes) and write the model file ``config.out``."""
    from ..heads import with_temperature
    from ..metrics import fit_temperature

    started = time.time()
    tracks, notes = gather(config.sources)
    labels = config.labels or sorted({t.label for t in tracks})
    unknown = sorted({t.label for t in tracks} - set(labels))
    if unknown:
        raise ConfigError(f"labels {unknown} of the data are not among the recipe's labels {labels}")
    check_labels(config, tracks, labels)
    failures = extract_features(tracks, config.head.networks, config.features_cache, progress, config.feature_config())
    tracks = [t for t in tracks if t.features]
    cv_tracks = [t for t in tracks if t.role == "cv"]
    extra = [t for t in tracks if t.role == "train"]
    _check_folds(cv_tracks, config.folds)
    cvs = [cross_validate(config.head, cv_tracks, extra, labels, config.folds, config.seed + r)
           for r in range(config.cv_repeats)]
    report = cv_report(cvs[0], labels, config.n_boot, config.seed, config.min_confidence)
    if len(cvs) > 1:
        report["repeated"] = repeated_report(cvs, labels, config.seed)
    C = Counter(c for cv in cvs for c in cv["C"]).most_common(1)[0][0]
    T = fit_temperature(np.concatenate([cv["logits"] for cv in cvs]), np.concatenate([cv["y"] for cv in cvs]))
    head = with_temperature(fit_head(config.head, tracks, labels, C), T)
    detector, detector_summary, threshold, short_detector = _detector(config, tracks, progress)
    metadata = {
        "kind": "track_head", "name": config.name, "genrekit_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "labels": labels,
        "display_names": config.display_names or {}, "head": head.to_dict(),
        "detector": detector.to_dict() if detector is not None else None, "not_music_threshold": threshold,
        "short_detector": short_detector,
        "min_confidence": config.min_confidence, "recipe": _public_recipe(config),
        "training_data": _training_data(tracks, notes, failures, labels, config.feature_config().sr),
        "cv_metrics": {k: v for k, v in report.items() if k != "confusion_matrix"} | {
            "design": f"{'+'.join(config.head.inputs)}, {config.head.pooling} pooling, prior "
                      f"{config.head.prior}{_scale_note(config.head)}, {_C_note(config.head.C)}",
            "folds": config.folds, "cv_repeats": config.cv_repeats, "cv_tracks": len(cv_tracks),
            "training_only_tracks": len(extra),
            "confusion_matrix": report["confusion_matrix"]},
        "detector_metrics": detector_summary, "train_seconds": round(time.time() - started, 1),
    }
    out = _write_model(config, metadata)
    return TransferResult(out, report, detector_summary, metadata)


def _C_note(grid: list) -> str:
    return f"C fixed at {grid[0]:g}" if len(grid) == 1 else f"C chosen per fold from {grid}"


def _scale_note(spec: HeadSpec) -> str:
    return f" scaled by {spec.prior_scale:g}" if spec.prior is not None and spec.prior_scale != 1 else ""


def check_labels(config: TransferConfig, tracks: list, labels: list[str]) -> None:
    """Refuse labels the recipe could not learn: a label without tracks that the tag prior does not name
    either (never predicted), a ``head.prior`` that names none of the labels (it would only add a network),
    ``display_names`` of other labels, and CV tracks too few for ``folds``."""
    unknown = sorted(set(config.head.prior_tags) - set(labels))
    if unknown:
        raise ConfigError(f"head.prior_tags names {unknown}, which are not among the labels {labels}")
    prior = make_prior(config.head.prior, labels, tags=config.head.prior_tags)
    tagged = {g for g, per in prior.genre_tags.items() if per} if prior is not None else set()
    if prior is not None and not tagged:
        raise ConfigError(f"head.prior {config.head.prior}: musicnn's tags name none of the labels {labels}, "
                          f"so the prior cannot apply to them; map them to tags in head.prior_tags "
                          f"or set head.prior: null")
    empty = [g for g in labels if g not in {t.label for t in tracks} and g not in tagged]
    if empty:
        raise ConfigError(f"labels {empty} have no tracks in the sources"
                          f"{'' if prior is None else ' and no tags in head.prior ' + config.head.prior}, "
                          f"so the model could never learn them; add their tracks or drop them from labels")
    named = sorted(set(config.display_names or {}) - set(labels))
    if named:
        raise ConfigError(f"display_names names {named}, which are not among the labels {labels}")
    if not any(t.role == "cv" for t in tracks):
        raise ConfigError("no CV tracks: at least one source needs role: cv (the default)")
    _check_folds([t for t in tracks if t.role == "cv"], config.folds)


def _check_folds(cv_tracks: list, folds: int) -> None:
    from ..errors import DatasetError

    try:
        group_folds([t.label for t in cv_tracks], [group_of(t) for t in cv_tracks], folds, 0)
    except DatasetError as e:
        raise DatasetError(f"folds {folds}: too few CV tracks ({e}); lower folds or add tracks") from None


def _detector(config: TransferConfig, music: list, progress: bool):
    spec = config.detector
    if spec.nonmusic is None:
        return None, None, 0.5, None
    nonmusic, _ = gather([Source(spec.nonmusic, role="train")])
    more, _ = gather([strict_from_dict(Source, s, "detector music source") for s in spec.music])
    inputs = config.detector_inputs()
    failures = extract_features(nonmusic + more, sorted({k.split("/")[0] for k in inputs}), config.features_cache,
                                progress, config.feature_config())
    nonmusic = [t for t in nonmusic if t.features]
    seen = {file_sha256(t.path) for t in music}
    music = music + [t for t in more if t.features and file_sha256(t.path) not in seen]
    fallback, fallback_cv, fallback_threshold = _detector_stage(music, nonmusic, inputs, spec, "mean", config, 1)
    summary = {"failures": failures, "C": spec.C, "inputs": inputs, "classes": spec.classes,
               "pooling": spec.pooling,
               "trained_on": f"{len(music)} music tracks, {len(nonmusic)} generated non-music clips ({spec.nonmusic})",
               "training_data": _detector_data(music, nonmusic, spec.nonmusic)}
    if spec.pooling == "mean":
        return fallback, _stage_report(fallback_cv, fallback_threshold) | summary, fallback_threshold, None
    long_music, long_nonmusic = (long_enough(ts, inputs, spec.min_segments) for ts in (music, nonmusic))
    if min(len(long_music), len(long_nonmusic)) < config.folds:
        from ..errors import DatasetError

        raise DatasetError(f"detector.min_segments {spec.min_segments}: {len(long_music)} music tracks and "
                           f"{len(long_nonmusic)} non-music clips are that long, too few for {config.folds} folds")
    head, cv, threshold = _detector_stage(long_music, long_nonmusic, inputs, spec, spec.pooling, config,
                                          spec.min_segments)
    summary |= {"min_segments": spec.min_segments, "short": _stage_report(fallback_cv, fallback_threshold),
                "all_lengths": detector_report(_as_shipped(fallback_cv, fallback_threshold, cv, threshold,
                                                           [len(t.features[inputs[0]]) >= spec.min_segments
                                                            for t in music + nonmusic]), 0.5)}
    short = {"below_segments": spec.min_segments, "threshold": fallback_threshold, "head": fallback.to_dict()}
    return head, _stage_report(cv, threshold) | summary, threshold, short


def _detector_stage(music: list, nonmusic: list, inputs: list[str], spec: DetectorSpec, pooling: str,
                    config: TransferConfig, cut_music_to: int):
    """One detector head fitted on all of ``music`` and ``nonmusic``, its CV scores and threshold."""
    cv = detector_cv(music, nonmusic, inputs, spec.C, config.folds, config.seed, spec.classes, pooling,
                     cut_music_to)
    threshold = detector_threshold(cv, spec.max_music_false_alarms)
    return fit_detector(music, nonmusic, inputs, spec.C, spec.classes, pooling), cv, threshold


def _stage_report(cv: dict, threshold: float) -> dict:
    """:func:`detector_report` and the false alarms on music cut short (the shortest file the head reads)."""
    cut = cv["p_cut_music"]
    return detector_report(cv, threshold) | {"cut_music_false_alarms": float((cut >= threshold).mean())}


def _as_shipped(short_cv: dict, short_threshold: float, long_cv: dict, long_threshold: float, long: list) -> dict:
    """CV verdicts of every track as the model gives them: the spread detector for tracks long enough for
    it (``long``, in the order of ``short_cv``, whose tracks are a superset of ``long_cv``'s in the same
    order), the per-patch one for the rest; as 0/1 scores, so that a threshold of 0.5 reads them."""
    flagged = short_cv["p_not_music"] >= short_threshold
    flagged[np.flatnonzero(long)] = long_cv["p_not_music"] >= long_threshold
    return {"p_not_music": flagged.astype(float), "is_music": short_cv["is_music"]}


def _detector_data(music: list, nonmusic: list, nonmusic_spec: str) -> dict:
    """The detector's music and non-music by content hash, and how the non-music set was made."""
    from ..io import read_json

    hashes = {name: sorted(file_sha256(t.path) for t in tracks) for name, tracks in
              (("music_hashes", music), ("nonmusic_hashes", nonmusic))}
    made = Path(nonmusic_spec.partition(":")[2]).parent / "nonmusic.json"  # spec: manifest:CSV
    return {**hashes, "nonmusic_set": read_json(made) if made.is_file() else None,
            "fingerprint": _fingerprint(hashes["music_hashes"] + hashes["nonmusic_hashes"])}


def _public_recipe(config: TransferConfig) -> dict:
    recipe = config.to_dict()
    recipe.pop("out", None)
    recipe.pop("features_cache", None)
    return recipe


def _training_data(tracks: list, notes: list[str], failures: list[str], labels: list[str], sr: int) -> dict:
    """What the model saw: per label and source counts, ids, artists and content hashes (for the leakage guard):
    of each file, and of its audio decoded at the model's rate ``sr`` (a lossless copy of a training file in
    another container decodes to the same samples)."""
    hashes = sorted({file_sha256(t.path) for t in tracks})
    per_label = Counter(t.label for t in tracks)
    per_source = Counter(f"{t.source} ({t.role})" for t in tracks)
    return {"n_tracks": len(tracks), "per_label": {g: per_label.get(g, 0) for g in labels},
            "per_source": dict(per_source), "sources": notes, "failures": failures,
            "train_track_ids": sorted({str(t.track_id) for t in tracks}),
            "train_artists": sorted({t.artist for t in tracks if t.artist}), "train_hashes": hashes,
            "train_audio_hashes": sorted({audio_sha256(t.path, sr) for t in tracks}),
            "fingerprint": _fingerprint(hashes)}


def _write_model(config: TransferConfig, metadata: dict) -> Path:
    from ..export import musicnn_onnx_bytes
    from ..io import atomic_path

    networks = sorted(set(config.head.networks))
    out = Path(config.out)
    if out.is_dir():
        raise ConfigError(f"{out}: out must be the path of the .onnx file to write, not a folder")
    with atomic_path(out) as tmp:
        tmp.write_bytes(musicnn_onnx_bytes(networks, metadata, kinds=KINDS, feature_config=config.feature_config(),
                                           patch_strides=config.head.patch_strides))
    return out
