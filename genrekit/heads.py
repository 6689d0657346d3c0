"""Track-level transfer heads on frozen musicnn features: zero-shot tag priors and linear heads.

A :class:`TrackHead` turns a track's per-segment feature matrices (one row per 3 s musicnn
patch) into genre probabilities, in numpy only, so it runs in the light install:

1. **pool** each input over the segments: ``mean``, or ``mean_std`` (mean and standard
   deviation concatenated);
2. **standardise** with the training tracks' mean and scale;
3. a **linear layer** ``W x + b`` (``W`` may have no columns: a zero-shot head);
4. plus optional fixed **prior logits** from musicnn's own tags (:class:`TagPrior`);
5. divided by a **temperature** and soft-maxed.

Inputs are named ``"<network>/<kind>"``: ``"MSD_musicnn/penultimate"`` (200-d embedding),
``"MSD_musicnn/tags"`` (50 tag probabilities), ``"MSD_musicnn/mean_pool"`` and ``"max_pool"``
(753-d temporal mean / max of the mid-end, see :meth:`genrekit.models.musicnn.MusiCNN.embed`),
and the same for ``MTT_musicnn``: the output names of the shipped ONNX taggers
(:func:`genrekit.tagger.load_tagger`), so ``network.run(patches)`` feeds a head directly.

**Segment votes.** :meth:`TrackHead.segment_logits` scores each segment. For ``mean``
pooling a segment's logits are the same head applied to that segment alone, and because
every step before the softmax is affine in the pooled mean, the track logits are exactly
the mean of the segment logits. For ``mean_std`` a single segment has no spread, so a
segment's vote uses its own features for the mean part and the *track's* standard
deviation for the std part: the vote says what that segment contributes given the track's
variability, and the track logits are again exactly the mean of the votes.

**Zero-shot prior.** :data:`GENRE_TAGS` maps each GTZAN genre to the musicnn tags that
name it or one of its sub-genres (chosen from the tag names alone, before looking at any
result); any other label reads the tags named like it, case and punctuation ignored
(:func:`named_tags`: FMA's "Folk" → "folk"), and a recipe's ``head.prior_tags`` maps the rest.
For each segment and network the genre's score is the log-odds of the largest probability
among its tags; networks are averaged; the track prior is the mean over
segments (so the mean-of-segments property above holds). Genres with no tag get the
constant ``untagged_logit``: **reggae** has no tag in either network, and **disco** none
either (MSD has no "disco"; MTT's "dance" also covers techno and electronic dance music),
and **classical** has none in MSD (MTT has "classical" and "classic"). A zero-shot head
therefore predicts an untagged genre only when no tagged genre's best tag reaches
``sigmoid(untagged_logit)``. :data:`PROXY_TAGS` optionally adds stand-ins (disco →
"dance", "funk"; :meth:`TagPrior.with_proxies`, recipe ``prior: msd_proxy``; the shipped model
uses ``msd_proxy_fill``: the same, and MTT's tags for classical). With a fitted residual
(:func:`fit_track_head` with ``prior=``) the linear layer learns every genre on top of the
prior, and its L2 penalty shrinks it toward the prior rather than toward uniform probabilities.

**Patch strides.** A head may read a network only every k-th patch (``patch_strides``,
e.g. ``{"MTT_musicnn": 2}``): each of the next k - 1 patches takes that patch's outputs
(:func:`hold_strided`), so at inference the model's graph runs that network on 1 / k of
the patches (:func:`genrekit.export.musicnn_onnx_bytes`), and training, which caches every
patch, sees exactly what inference will. Holding is idempotent: a head holds its inputs
itself, whether or not the graph already did.

Fitting (:func:`fit_track_head`) needs scipy (the ``[train]`` extra), imported inside it.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> tracks = [{"MSD_musicnn/penultimate": rng.normal(i % 2, 1, (10, 200)).astype("f4")} for i in range(20)]
>>> head = fit_track_head(tracks, ["jazz", "rock"] * 10, ["jazz", "rock"], ["MSD_musicnn/penultimate"])
>>> head.predict_proba(tracks[1]).round(2).tolist()  # doctest: +SKIP
[0.03, 0.97]
>>> np.allclose(head.segment_logits(tracks[1]).mean(0), head.logits(tracks[1]))
True
>>> TrackHead.from_dict(json.loads(json.dumps(head.to_dict()))).labels
['jazz', 'rock']
"""
from __future__ import annotations

import base64
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path

import numpy as np

from .config import check_patch_strides
from .errors import CheckpointError, ConfigError

FORMAT = "genrekit.track_head"
FORMAT_VERSION = 1
NETWORKS = ("MSD_musicnn", "MTT_musicnn")
FEATURE_KINDS = {"penultimate": 200, "tags": 50, "mean_pool": 753, "max_pool": 753}
POOLINGS = ("mean", "mean_std")
CLASS_BALANCES = ("weight", "artist", "none")
TAGS_DIR = Path(__file__).resolve().parent / "models" / "weights"
# log-odds of 0.05: a tagged genre must reach 5 % on its best tag to beat an untagged one
UNTAGGED_LOGIT = math.log(0.05 / 0.95)
_EPS = 1e-6

GENRE_TAGS: dict[str, dict[str, list[str]]] = {
    "blues": {"MSD_musicnn": ["blues"]},
    "classical": {"MTT_musicnn": ["classical", "classic"]},
    "country": {"MSD_musicnn": ["country"], "MTT_musicnn": ["country"]},
    "disco": {},
    "hiphop": {"MSD_musicnn": ["Hip-Hop"]},
    "jazz": {"MSD_musicnn": ["jazz"]},
    "metal": {"MSD_musicnn": ["metal", "heavy metal"], "MTT_musicnn": ["metal"]},
    "pop": {"MSD_musicnn": ["pop", "indie pop"], "MTT_musicnn": ["pop"]},
    "reggae": {},
    "rock": {"MSD_musicnn": ["rock", "classic rock", "hard rock", "alternative rock", "indie rock",
                             "Progressive rock"], "MTT_musicnn": ["rock"]},
}
"""Genre → network → tags naming the genre or a sub-genre of it (see the module docstring)."""

PROXY_TAGS: dict[str, dict[str, list[str]]] = {
    "disco": {"MSD_musicnn": ["dance", "funk"], "MTT_musicnn": ["dance"]},
}
"""Optional stand-ins for genres without a tag of their own (reggae has none at all)."""


def label_key(name: str) -> str:
    """How a label is matched to a genre or tag name: case and punctuation ignored.

    >>> label_key("Hip-Hop"), label_key("hip hop"), label_key("Old-Time / Historic")
    ('hiphop', 'hiphop', 'oldtimehistoric')
    """
    return "".join(ch for ch in name.casefold() if ch.isalnum())


def _entry(table: Mapping[str, dict], label: str) -> dict[str, list[str]] | None:
    """``table``'s entry for ``label`` under any spelling (a copy), or None."""
    for key, per in table.items():
        if label_key(key) == label_key(label):
            return {network: list(tags) for network, tags in per.items()}
    return None


def named_tags(label: str, networks: Sequence[str] = NETWORKS) -> dict[str, list[str]]:
    """The tags of ``networks`` that name ``label``: the zero-shot prior's mapping for it.

    A GTZAN genre under any spelling ("Hip-Hop", "hip hop") takes its :data:`GENRE_TAGS` entry,
    which adds sub-genres ("rock" → "classic rock", "hard rock", ...). Any other label takes each
    network's tags whose name is the label's, case and punctuation ignored: FMA's "Folk" → MSD's
    "folk", "Electronic" → "electronic" in both networks. A recipe's ``head.prior_tags`` maps the rest.

    >>> named_tags("Hip-Hop")
    {'MSD_musicnn': ['Hip-Hop']}
    >>> named_tags("Electronic")
    {'MSD_musicnn': ['electronic'], 'MTT_musicnn': ['electronic']}
    >>> named_tags("International")
    {}
    """
    curated = _entry(GENRE_TAGS, label)
    if curated is None:
        curated = {n: [t for t in musicnn_tags(n) if label_key(t) == label_key(label)] for n in NETWORKS}
    return {n: tags for n, tags in curated.items() if n in networks and tags}


def proxy_tags(label: str) -> dict[str, list[str]]:
    """:data:`PROXY_TAGS`' stand-ins for ``label`` under any spelling ("Disco" → disco's)."""
    return _entry(PROXY_TAGS, label) or {}


def musicnn_tags(network: str) -> list[str]:
    """The 50 tag names of a shipped musicnn network, read without importing torch."""
    if network not in NETWORKS:
        raise ConfigError(f"unknown musicnn network {network!r}; choose one of {', '.join(NETWORKS)}")
    return list(_read_tags(network))


@cache
def _read_tags(network: str) -> tuple[str, ...]:
    # read once: every head fitted in a CV builds its prior from these lists
    path = TAGS_DIR / f"{network}.tags.txt"
    if not path.is_file():
        raise CheckpointError(f"{path}: musicnn tag list not found")
    return tuple(path.read_text(encoding="utf-8").splitlines())


def describe_tags(genre_tags: Mapping[str, Mapping[str, list]]) -> str:
    """A prior's mapping in one line: the tags each label reads, then the labels it cannot read.

    >>> describe_tags({"Folk": {"MSD_musicnn": ["folk"]}, "International": {}})
    'Folk ← folk; no tag for International'
    """
    named = [f"{g} ← {'/'.join(dict.fromkeys(t for tags in per.values() for t in tags))}"
             for g, per in genre_tags.items() if per]
    untagged = [g for g, per in genre_tags.items() if not per]
    return ", ".join(named) + (f"; no tag for {', '.join(untagged)}" if untagged else "")


def feature_key(network: str, kind: str) -> str:
    """``("MSD_musicnn", "tags")`` → ``"MSD_musicnn/tags"``."""
    return f"{network}/{kind}"


# --- array (de)serialisation ----------------------------------------------------------

def _encode(a) -> dict:
    a = np.ascontiguousarray(a, dtype="<f4")
    return {"dtype": "float32", "shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode("ascii")}


def _decode(value, name: str, shape: tuple, source: str) -> np.ndarray:
    """A float array from ``{"shape", "b64"}`` or nested lists, checked for shape and finiteness."""
    try:
        if isinstance(value, dict):
            raw = base64.b64decode(value["b64"], validate=True)
            a = np.frombuffer(raw, dtype="<f4").reshape(value["shape"])
        else:
            a = np.asarray(value, dtype=np.float64)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: track head field {name!r} is not a float array ({e})") from None
    if a.shape != shape:
        raise CheckpointError(f"{source}: track head field {name!r} has shape {a.shape}, expected {shape}")
    if not np.isfinite(a).all():
        raise CheckpointError(f"{source}: track head field {name!r} contains NaN or Inf")
    return a.astype(np.float64)


# --- the tag prior ----------------------------------------------------------------------

class TagPrior:
    """Fixed genre logits from musicnn tag probabilities (zero-shot; see the module docstring).

    Parameters
    ----------
    labels : list of str
        The head's genres, in output order.
    genre_tags : dict
        genre → network → tag names. Genres of ``labels`` missing here are untagged. Default:
        :func:`named_tags` of each label.
    tags : dict
        network → that network's 50 tag names in output order (default: the shipped lists).
    untagged_logit : float
        Prior logit of a genre without tags.
    scale : float
        Multiplies the prior logits (1 = tag log-odds as they are).
    """

    def __init__(self, labels: Sequence[str], genre_tags: Mapping | None = None, tags: Mapping | None = None,
                 untagged_logit: float = UNTAGGED_LOGIT, scale: float = 1.0):
        self.labels = list(labels)
        genre_tags = {g: named_tags(g) for g in labels} if genre_tags is None else genre_tags
        self.genre_tags = {g: {n: list(t) for n, t in genre_tags.get(g, {}).items() if t} for g in self.labels}
        networks = sorted({n for per in self.genre_tags.values() for n in per})
        self.tags = {n: list(tags[n]) if tags and n in tags else musicnn_tags(n) for n in networks}
        self.untagged_logit, self.scale = float(untagged_logit), float(scale)
        for g, per in self.genre_tags.items():
            for n, names in per.items():
                missing = sorted(set(names) - set(self.tags[n]))
                if missing:
                    raise ConfigError(f"tag prior: genre {g!r} maps to {missing} which {n} does not have")

    @classmethod
    def with_proxies(cls, labels: Sequence[str], **kwargs) -> TagPrior:
        """:func:`named_tags` plus :data:`PROXY_TAGS` for genres that have no tag."""
        return cls(labels, {g: named_tags(g) or proxy_tags(g) for g in labels}, **kwargs)

    @property
    def inputs(self) -> list[str]:
        return [feature_key(n, "tags") for n in self.tags]

    def segment_logits(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """Prior logits of each segment, ``(n_segments, K)``."""
        n = next(iter(features[k] for k in self.inputs)).shape[0] if self.inputs else _n_segments(features)
        out = np.full((n, len(self.labels)), self.untagged_logit)
        for j, genre in enumerate(self.labels):
            per = self.genre_tags[genre]
            if not per:
                continue
            scores = []
            for network, names in per.items():
                probs = np.asarray(features[feature_key(network, "tags")], dtype=np.float64)
                columns = [self.tags[network].index(t) for t in names]
                best = np.clip(probs[:, columns].max(axis=1), _EPS, 1 - _EPS)
                scores.append(np.log(best) - np.log1p(-best))
            out[:, j] = np.mean(scores, axis=0)
        return self.scale * out

    def to_dict(self) -> dict:
        return {"genre_tags": self.genre_tags, "tags": self.tags, "untagged_logit": self.untagged_logit,
                "scale": self.scale}

    @classmethod
    def from_dict(cls, d: Mapping, labels: Sequence[str], source: str = "<dict>") -> TagPrior:
        try:
            prior = cls(labels, d["genre_tags"], d["tags"], float(d["untagged_logit"]), float(d["scale"]))
        except (AttributeError, KeyError, TypeError, ValueError, ConfigError) as e:
            raise CheckpointError(f"{source}: track head prior is invalid ({e})") from None
        unknown = sorted(set(d["genre_tags"]) - set(labels))
        if unknown:
            raise CheckpointError(f"{source}: track head prior names genres not in its labels: {unknown}")
        if any(len(t) != FEATURE_KINDS["tags"] for t in prior.tags.values()):
            raise CheckpointError(f"{source}: track head prior tag lists must have {FEATURE_KINDS['tags']} names")
        return prior


def hold_strided(features: Mapping[str, np.ndarray], strides: Mapping[str, int]) -> dict[str, np.ndarray]:
    """``features`` with the rows of each network in ``strides`` (network → k) replaced by those
    of every k-th patch: row i takes row ``(i // k) * k``, what a network run on every k-th patch
    gives. Idempotent.

    >>> hold_strided({"MTT_musicnn/tags": np.arange(5)[:, None]}, {"MTT_musicnn": 2})["MTT_musicnn/tags"].ravel()
    array([0, 0, 2, 2, 4])
    """
    out = dict(features)
    for key, value in features.items():
        k = strides.get(key.split("/", 1)[0], 1)
        if k > 1:
            value = np.asarray(value)
            out[key] = value[(np.arange(len(value)) // k) * k]
    return out


def _patch_strides(strides: Mapping | None) -> dict[str, int]:
    strides = check_patch_strides(dict(strides) if isinstance(strides, Mapping) else strides)
    unknown = sorted(set(strides) - set(NETWORKS))
    if unknown:
        raise ConfigError(f"patch strides name {unknown}, not musicnn networks {NETWORKS}")
    return strides


def _n_segments(features: Mapping[str, np.ndarray]) -> int:
    return next(iter(features.values())).shape[0] if features else 1


# --- the head ---------------------------------------------------------------------------

class TrackHead:
    """Pooled, standardised, linear (+ prior) genre head over per-segment features.

    Parameters
    ----------
    labels : list of str
        Genres in output order.
    inputs : list of str
        Feature keys pooled (in this order) into the linear layer's input; may be empty.
    pooling : {"mean", "mean_std"}
    mean, scale : array (D,)
        Standardisation of the pooled vector (``D`` = sum of input dims, × 2 for mean_std).
    weight : array (K, D); bias : array (K,)
    dims : list of int
        Dimension of each input (per segment).
    prior : TagPrior, optional
    temperature : float
    meta : dict, optional
        Free JSON-able notes (how it was fitted).
    patch_strides : dict, optional
        Network → k: that network is read every k-th patch only (see the module docstring).
    """

    def __init__(self, labels, inputs, dims, pooling, mean, scale, weight, bias, prior: TagPrior | None = None,
                 temperature: float = 1.0, meta: dict | None = None, patch_strides: Mapping | None = None):
        self.labels, self.inputs, self.dims = list(labels), list(inputs), [int(d) for d in dims]
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
        if not temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        self.pooling, self.prior, self.temperature = pooling, prior, float(temperature)
        self.mean, self.scale = np.asarray(mean, dtype=np.float64), np.asarray(scale, dtype=np.float64)
        self.weight, self.bias = np.asarray(weight, dtype=np.float64), np.asarray(bias, dtype=np.float64)
        self.meta = dict(meta or {})
        self.patch_strides = _patch_strides(patch_strides)

    @property
    def n_pooled(self) -> int:
        return sum(self.dims) * (2 if self.pooling == "mean_std" else 1)

    @property
    def required_features(self) -> list[str]:
        """Every feature key :meth:`logits` reads (linear inputs and prior tags)."""
        return list(dict.fromkeys(self.inputs + (self.prior.inputs if self.prior else [])))

    @property
    def networks(self) -> list[str]:
        """The musicnn networks a track must go through: the cost of this head at inference."""
        return sorted({k.split("/", 1)[0] for k in self.required_features})

    # inference

    def check_features(self, features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The required feature matrices as float64, checked (present, 2-D, same segment count, dims,
        finite) and held at the head's patch strides."""
        out, n = {}, None
        for key in self.required_features:
            if key not in features:
                raise ConfigError(f"track head needs feature {key!r}; got {sorted(features)}")
            a = np.asarray(features[key], dtype=np.float64)
            expected = self.dims[self.inputs.index(key)] if key in self.inputs else FEATURE_KINDS["tags"]
            if a.ndim != 2 or a.shape[1] != expected or a.shape[0] == 0:
                raise ConfigError(f"feature {key!r} must be (n_segments >= 1, {expected}), got {a.shape}")
            if n is not None and a.shape[0] != n:
                raise ConfigError(f"features disagree on the number of segments: {key!r} has {a.shape[0]}, not {n}")
            if not np.isfinite(a).all():
                raise ConfigError(f"feature {key!r} contains NaN or Inf")
            n, out[key] = a.shape[0], a
        return hold_strided(out, self.patch_strides)

    def _standardised_segments(self, feats: dict[str, np.ndarray]) -> np.ndarray:
        """Per-segment standardised input rows ``(n, D)`` whose mean over segments is the pooled track vector."""
        if not self.inputs:
            return np.zeros((_n_segments(feats), 0))
        x = np.concatenate([feats[k] for k in self.inputs], axis=1)
        if self.pooling == "mean_std":
            x = np.concatenate([x, np.broadcast_to(x.std(axis=0), x.shape)], axis=1)
        return (x - self.mean) / self.scale

    def segment_logits(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """Logits of every segment ``(n_segments, K)`` (temperature applied); their mean is :meth:`logits`."""
        feats = self.check_features(features)
        z = self._standardised_segments(feats) @ self.weight.T + self.bias
        if self.prior is not None:
            z = z + self.prior.segment_logits(feats)
        return z / self.temperature

    def logits(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """Track logits ``(K,)`` (temperature applied)."""
        return self.segment_logits(features).mean(axis=0)

    def predict_proba(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """Track genre probabilities ``(K,)``, in the order of :attr:`labels`."""
        z = self.logits(features)
        e = np.exp(z - z.max())
        return e / e.sum()

    # serialisation

    def to_dict(self) -> dict:
        """A JSON-able dict (arrays as base64 little-endian float32)."""
        return {"format": FORMAT, "version": FORMAT_VERSION, "labels": self.labels, "inputs": self.inputs,
                "dims": self.dims, "pooling": self.pooling, "mean": _encode(self.mean), "scale": _encode(self.scale),
                "weight": _encode(self.weight), "bias": _encode(self.bias),
                "prior": self.prior.to_dict() if self.prior else None, "temperature": self.temperature,
                "meta": self.meta, "patch_strides": self.patch_strides}

    @classmethod
    def from_dict(cls, d: Mapping, source: str = "<dict>") -> TrackHead:
        """Rebuild a head from :meth:`to_dict`'s output, checking every field.

        Raises
        ------
        genrekit.errors.CheckpointError
            One line naming ``source`` and the field that is wrong.
        """
        if not isinstance(d, Mapping) or d.get("format") != FORMAT:
            raise CheckpointError(f"{source}: not a genrekit track head (format is not {FORMAT!r})")
        if d.get("version") != FORMAT_VERSION:
            raise CheckpointError(f"{source}: track head version {d.get('version')!r} is not {FORMAT_VERSION}")
        missing = [k for k in ("labels", "inputs", "dims", "pooling", "mean", "scale", "weight", "bias", "temperature")
                   if k not in d]
        if missing:
            raise CheckpointError(f"{source}: track head lacks field(s) {missing}")
        labels, inputs, dims = d["labels"], d["inputs"], d["dims"]
        if (not isinstance(labels, list) or len(labels) < 2 or len(set(labels)) != len(labels)
                or not all(isinstance(x, str) and x for x in labels)):
            raise CheckpointError(f"{source}: track head labels must be 2+ distinct non-empty names, got {labels!r}")
        if not isinstance(inputs, list) or not isinstance(dims, list) or len(inputs) != len(dims):
            raise CheckpointError(f"{source}: track head inputs and dims must be lists of one length")
        for key, dim in zip(inputs, dims):
            network, _, kind = str(key).partition("/")
            if network not in NETWORKS or FEATURE_KINDS.get(kind) != dim:
                known = ", ".join(f"{k}: {v}" for k, v in FEATURE_KINDS.items())
                raise CheckpointError(f"{source}: track head input {key!r} of dim {dim!r} is not a musicnn feature "
                                      f"(<network>/<kind> with network in {NETWORKS}, kind: dim in {{{known}}})")
        if d["pooling"] not in POOLINGS:
            raise CheckpointError(f"{source}: track head pooling {d['pooling']!r} is not one of {POOLINGS}")
        k, n = len(labels), sum(dims) * (2 if d["pooling"] == "mean_std" else 1)
        arrays = {name: _decode(d[name], name, shape, source)
                  for name, shape in (("mean", (n,)), ("scale", (n,)), ("weight", (k, n)), ("bias", (k,)))}
        if (arrays["scale"] <= 0).any():
            raise CheckpointError(f"{source}: track head scale must be > 0")
        try:
            temperature = float(d["temperature"])
        except (TypeError, ValueError):
            temperature = float("nan")
        if not (math.isfinite(temperature) and temperature > 0):
            raise CheckpointError(f"{source}: track head temperature must be a finite number > 0, "
                                  f"got {d['temperature']!r}")
        prior = TagPrior.from_dict(d["prior"], labels, source) if d.get("prior") is not None else None
        if n == 0 and prior is None:
            raise CheckpointError(f"{source}: track head has neither inputs nor a prior")
        try:
            strides = _patch_strides(d.get("patch_strides"))
        except ConfigError as e:
            raise CheckpointError(f"{source}: track head {e}") from None
        return cls(labels, inputs, dims, d["pooling"], prior=prior, temperature=temperature,
                   meta=d.get("meta") or {}, patch_strides=strides, **arrays)

    def save(self, path) -> Path:
        """Write the head as JSON (atomically)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict()), encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path) -> TrackHead:
        """Read a head written by :meth:`save`.

        Raises
        ------
        genrekit.errors.CheckpointError
            The file is missing, not JSON, or not a valid head (one line naming the path).
        """
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CheckpointError(f"{path}: track head file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path}: track head is not readable JSON ({e})") from None
        return cls.from_dict(d, source=str(path))


# --- building heads -------------------------------------------------------------------------

def zero_shot_head(labels: Sequence[str], prior: TagPrior | None = None, temperature: float = 1.0) -> TrackHead:
    """A head with no trained weights: the tag prior alone (default :data:`GENRE_TAGS`)."""
    prior = prior or TagPrior(labels)
    k = len(prior.labels)
    return TrackHead(prior.labels, [], [], "mean", np.zeros(0), np.ones(0), np.zeros((k, 0)), np.zeros(k),
                     prior=prior, temperature=temperature, meta={"fit": "zero-shot"})


def pool_tracks(tracks: Sequence[Mapping[str, np.ndarray]], inputs: Sequence[str], pooling: str) -> np.ndarray:
    """Pooled (not standardised) input vectors of many tracks, ``(n_tracks, D)``."""
    rows = []
    for feats in tracks:
        x = np.concatenate([np.asarray(feats[k], dtype=np.float64) for k in inputs], axis=1)
        rows.append(np.concatenate([x.mean(0), x.std(0)]) if pooling == "mean_std" else x.mean(0))
    return np.stack(rows) if rows else np.zeros((0, 0))


def _input_dim(key: str) -> int:
    network, _, kind = key.partition("/")
    if network not in NETWORKS or kind not in FEATURE_KINDS:
        raise ConfigError(f"unknown head input {key!r}; use <network>/<kind> with network in {NETWORKS} "
                          f"and kind in {tuple(FEATURE_KINDS)}")
    return FEATURE_KINDS[kind]


def class_weights(y: np.ndarray, n_classes: int, class_balance: str, groups: Sequence | None = None) -> np.ndarray:
    """Per-track weights: ``"weight"`` → ``n / (n_present_classes · n_class)`` (scikit-learn's
    "balanced"), ``"none"`` → 1, ``"artist"`` → the same class totals as ``"weight"``, shared
    equally by the class's artists (``groups``), so that one prolific artist does not stand for
    a genre."""
    if class_balance not in CLASS_BALANCES:
        raise ConfigError(f"class_balance must be one of {CLASS_BALANCES}, not {class_balance!r}")
    if class_balance == "none":
        return np.ones(len(y))
    counts = np.bincount(y, minlength=n_classes)
    balanced = len(y) / ((counts > 0).sum() * counts[y])
    if class_balance == "weight":
        return balanced
    if groups is None or len(groups) != len(y):
        raise ConfigError("class_balance 'artist' needs one artist (group) per track")
    pairs = list(zip(y.tolist(), groups))
    tracks_of = Counter(pairs)  # (genre, artist) -> tracks
    artists_of = Counter(c for c, _ in tracks_of)  # genre -> artists
    return np.array([counts[c] / (artists_of[c] * tracks_of[c, g]) for c, g in pairs]) * balanced


def fit_track_head(tracks: Sequence[Mapping[str, np.ndarray]], y: Sequence[str], labels: Sequence[str],
                   inputs: Sequence[str] = ("MSD_musicnn/penultimate",), pooling: str = "mean", C: float = 1.0,
                   class_balance: str = "weight", prior: TagPrior | None = None, max_iter: int = 2000,
                   groups: Sequence | None = None, patch_strides: Mapping | None = None) -> TrackHead:
    """Fit a class-balanced multinomial logistic regression with L2 on pooled track features.

    The objective is scikit-learn's ``LogisticRegression(C=C, class_weight=...)``:
    ``C · Σ_i s_i · CE(softmax(W x_i + b + prior_i), y_i) + ½ ‖W‖²`` with ``b`` not
    penalised, solved with L-BFGS (scipy). With ``prior`` the fixed prior logits are an
    offset: ``W, b`` are a residual that the penalty shrinks toward the zero-shot prior.

    A genre of ``labels`` without training tracks gets ``W = 0`` and, without a prior, a
    bias 10 below the smallest fitted one (never predicted); with a prior, the median
    fitted bias (the prior alone decides it).

    Parameters
    ----------
    tracks : sequence of dict
        Per-track feature matrices ``{key: (n_segments, dim)}``.
    y : sequence of str
        Genre of each track (all in ``labels``).
    labels : sequence of str
        Output genres, in order.
    inputs, pooling : see :class:`TrackHead`.
    C : float
        Inverse L2 strength (larger = weaker penalty).
    class_balance : {"weight", "artist", "none"}
        See :func:`class_weights`.
    prior : TagPrior, optional
    groups : sequence, optional
        Artist of each track (needed by ``class_balance="artist"``).
    patch_strides : dict, optional
        Network → k: read that network every k-th patch only (:func:`hold_strided`).
    """
    from scipy.optimize import minimize

    labels, inputs = list(labels), list(inputs)
    if pooling not in POOLINGS:
        raise ConfigError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
    if not C > 0:
        raise ConfigError(f"C must be > 0, got {C}")
    if prior is not None and prior.labels != labels:
        raise ConfigError(f"prior labels {prior.labels} differ from the head's {labels}")
    unknown = sorted(set(y) - set(labels))
    if unknown or not len(tracks) or len(tracks) != len(y):
        raise ConfigError(f"need one genre of {labels} per track; got {len(tracks)} tracks, {len(y)} genres, "
                          f"unknown {unknown}")
    strides = _patch_strides(patch_strides)
    tracks = [hold_strided(t, strides) for t in tracks]
    yi = np.array([labels.index(g) for g in y])
    dims = [_input_dim(k) for k in inputs]
    bad = [(i, k) for i, t in enumerate(tracks) for k, d in zip(inputs, dims)
           if np.ndim(t[k]) != 2 or np.shape(t[k])[1] != d or not len(t[k])]
    if bad:
        i, key = bad[0]
        raise ConfigError(f"track {i}: feature {key!r} must be (n_segments >= 1, {dims[inputs.index(key)]})")
    x = pool_tracks(tracks, inputs, pooling) if inputs else np.zeros((len(tracks), 0))
    mean, scale = x.mean(0), x.std(0)
    scale = np.where(scale > 1e-8, scale, 1.0)
    xs = (x - mean) / scale
    offset = (np.stack([prior.segment_logits(t).mean(0) for t in tracks]) if prior is not None
              else np.zeros((len(tracks), len(labels))))
    present = np.flatnonzero(np.bincount(yi, minlength=len(labels)))
    remap = -np.ones(len(labels), dtype=int)
    remap[present] = np.arange(len(present))
    weights = class_weights(yi, len(labels), class_balance, groups)
    w, b, converged = _fit_softmax(xs, remap[yi], offset[:, present], weights, C, max_iter, minimize)
    weight, bias = np.zeros((len(labels), xs.shape[1])), np.empty(len(labels))
    weight[present], bias[present] = w, b
    absent = np.setdiff1d(np.arange(len(labels)), present)
    bias[absent] = np.median(b) if prior is not None else b.min() - 10.0
    meta = {"fit": "logistic regression", "C": C, "class_balance": class_balance, "n_tracks": len(tracks),
            "genres_without_tracks": [labels[i] for i in absent], "converged": converged}
    return TrackHead(labels, list(inputs), dims, pooling, mean, scale, weight, bias, prior=prior, meta=meta,
                     patch_strides=strides)


def _fit_softmax(x, y, offset, weights, C, max_iter, minimize, penalty=None):
    """L-BFGS on ``C Σ s_i CE_i + ½ Σ_k p_k ‖W_k‖²``; returns ``(W (K, D), b (K,), converged)``.
    ``penalty``: the factors ``p_k`` per class (default 1)."""
    n, d = x.shape
    k = offset.shape[1]
    onehot = np.eye(k)[y]
    sw = weights / weights.sum()  # rescaled objective: same minimiser, better conditioned
    reg = 1.0 / (C * weights.sum())
    if penalty is not None:
        reg = reg * np.asarray(penalty, dtype=np.float64)[:, None]

    def loss_grad(theta):
        w, b = theta[:k * d].reshape(k, d), theta[k * d:]
        z = x @ w.T + b + offset
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss = -(sw * (onehot * logp).sum(axis=1)).sum() + 0.5 * (reg * w * w).sum()
        residual = sw[:, None] * (np.exp(logp) - onehot)
        grad_w = residual.T @ x + reg * w
        return loss, np.concatenate([grad_w.ravel(), residual.sum(axis=0)])

    res = minimize(loss_grad, np.zeros(k * d + k), jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter, "gtol": 1e-7, "ftol": 1e-11})
    return res.x[:k * d].reshape(k, d), res.x[k * d:], bool(res.success)


def with_temperature(head: TrackHead, temperature: float) -> TrackHead:
    """A copy of ``head`` with another temperature (e.g. fitted by :func:`genrekit.metrics.fit_temperature`
    on held-out logits computed at temperature 1)."""
    return TrackHead(head.labels, head.inputs, head.dims, head.pooling, head.mean, head.scale, head.weight,
                     head.bias, prior=head.prior, temperature=temperature, meta=head.meta,
                     patch_strides=head.patch_strides)
