"""Prediction: audio files → genre (or an abstention), with every segment voting.

A file is decoded as a stream and cut into segments in batches, which go through the
model's network in fixed-size chunks (:mod:`genrekit.runtime`), so a file of any length
is covered with bounded memory (``max_duration`` caps how much is read). The
segments' outputs become the file's prediction (their mean probability, or a track
head over their pooled features); each segment's own vote is kept. A model may abstain:
``genre`` is then None and ``abstain`` says why, ``"not_music"`` or ``"uncertain"``.

The shipped model and ``.onnx`` files run with onnxruntime alone: this module imports
no torch unless a training checkpoint is loaded.

Examples
--------
>>> import genrekit
>>> result = genrekit.predict("song.mp3")  # doctest: +SKIP
>>> result.genre, round(result.probabilities[result.genre], 2)  # doctest: +SKIP
('jazz', 0.81)
>>> model = genrekit.load_model()            # load once, reuse for many files  # doctest: +SKIP
>>> [model.predict_file(p).genre for p in ["a.mp3", "b.flac"]]  # doctest: +SKIP
['rock', 'classical']
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import PATCH_BATCH, FeatureConfig
from .errors import AudioError, CheckpointError, ConfigError, EmptyAudioError

DEFAULT_MODEL = Path(__file__).parent / "weights" / "genrekit-gtzan.onnx"
SEGMENT_BATCH = PATCH_BATCH  # a multiple of every patch stride (genrekit.config.check_patch_strides)
FILE_WORKERS = 2  # files decoded and classified at a time by predict_files


ABSTAIN_REASONS = ("not_music", "uncertain")
DISPLAY_NAMES = {"blues": "Blues", "classical": "Classical", "country": "Country", "disco": "Disco",
                 "hiphop": "Hip-Hop", "jazz": "Jazz", "metal": "Metal", "pop": "Pop", "reggae": "Reggae",
                 "rock": "Rock"}


@dataclass
class Prediction:
    """The result for one file.

    ``genre`` is the predicted label, or None when the model abstains; ``abstain`` then
    says why (``"not_music"`` or ``"uncertain"``) and is None otherwise.
    ``probabilities`` maps every label to its track probability, highest first (kept
    when the model abstains); ``segments`` holds each segment's start/end (s), its own
    top genre and confidence.
    """

    path: str
    genre: str | None
    probabilities: dict[str, float]
    segments: list[dict] = field(default_factory=list)
    duration: float = 0.0
    seconds: float = 0.0
    abstain: str | None = None
    music_probability: float | None = None

    def __post_init__(self):
        if self.abstain is not None and self.abstain not in ABSTAIN_REASONS:
            raise ConfigError(f"abstain must be None or one of {ABSTAIN_REASONS}, not {self.abstain!r}")
        if (self.genre is None) != (self.abstain is not None):
            raise ConfigError("a prediction has a genre or an abstention reason, not both or neither")

    @property
    def best_guess(self) -> str:
        """The most probable label, also when the model abstains."""
        return next(iter(self.probabilities))

    @property
    def confidence(self) -> float:
        """The probability of the most probable label."""
        return self.probabilities[self.best_guess]

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        return list(self.probabilities.items())[:k]

    def votes(self) -> dict[str, int]:
        """How many segments voted for each genre."""
        counts: dict[str, int] = {}
        for seg in self.segments:
            counts[seg["genre"]] = counts.get(seg["genre"], 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def to_dict(self, top_k: int | None = None) -> dict:
        probs = self.probabilities if top_k is None else dict(self.top(top_k))
        data = {"path": self.path, "genre": self.genre, "abstain": self.abstain,
                "confidence": round(self.confidence, 6),
                "probabilities": {k: round(v, 6) for k, v in probs.items()}, "votes": self.votes(),
                "segments": self.segments, "duration": round(self.duration, 3)}
        if self.music_probability is not None:
            data["music_probability"] = round(self.music_probability, 6)
        return data


@dataclass
class Failure:
    """A file that got no prediction, and why; ``abstain`` is ``"not_music"`` for all-silent audio,
    which is an answer (there is no music in it), not a fault of the file."""

    path: str
    error: str
    abstain: str | None = None

    def to_dict(self) -> dict:
        if self.abstain == "not_music":
            return silent_answer(self.path, self.error)
        return {"path": self.path, "error": self.error} | ({"abstain": self.abstain} if self.abstain else {})


def silent_answer(path: str, reason: str) -> dict:
    """The JSON answer for all-silent audio, in the shape of :meth:`Prediction.to_dict` where it can be.

    ``predict --format json`` and the service's ``/v1/predict`` both give it.

    >>> silent_answer("gap.wav", "audio is all silent")["abstain"]
    'not_music'
    """
    return {"path": path, "genre": None, "abstain": "not_music", "reason": reason, "confidence": 0.0,
            "probabilities": {}, "votes": {}, "segments": [], "duration": None, "music_probability": 0.0}


@dataclass(frozen=True)
class ShortDetector:
    """The per-patch not-music detector for files with fewer than ``below_segments`` patches.

    A model whose detector reads the spread of the patch features over time carries it:
    that spread is 0 for one patch and noisy for two, whatever the audio.
    """

    head: object  # genrekit.heads.TrackHead
    threshold: float
    below_segments: int

    @classmethod
    def from_dict(cls, d, source: str) -> ShortDetector | None:
        if not d:
            return None
        from .heads import TrackHead

        try:
            short = cls(TrackHead.from_dict(d["head"], source), float(d["threshold"]), int(d["below_segments"]))
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{source}: invalid short_detector in the model metadata ({e})") from None
        if short.head.pooling != "mean" or "music" not in short.head.labels or short.below_segments < 2:
            raise CheckpointError(f"{source}: the short_detector must be a per-patch (mean) head with a 'music' "
                                  f"label for files under at least 2 patches")
        return short


class TorchNetwork:
    """A checkpoint's network in PyTorch (``genrekit[train]``), with the interface of
    :class:`~genrekit.runtime.OnnxNetwork`: used on CUDA, or when asked for."""

    output_names = ["probabilities"]

    def __init__(self, payload: dict, device: str = "cpu"):
        import torch

        from .checkpoint import model_from_checkpoint

        self.torch = torch
        self.device = torch.device(device)
        self.model = model_from_checkpoint(payload).to(self.device)

    def run(self, segments, outputs=None) -> dict[str, np.ndarray]:
        torch = self.torch
        with torch.inference_mode():
            logits = self.model(torch.as_tensor(np.asarray(segments, dtype=np.float32)).to(self.device))
            return {"probabilities": torch.softmax(logits.float(), dim=1).cpu().numpy()}


RUNTIMES = ("auto", "torch", "onnx")
KINDS = ("segment_classifier", "track_head")


class GenreClassifier:
    """A loaded model: labels, feature settings, its network and heads, reusable for many files.

    Two kinds of model file exist. A *segment classifier* (the seed's recipe, exported
    from a checkpoint) gives each segment genre probabilities; the track's are their
    mean. A *track head* model's network gives each segment features (musicnn's
    embeddings and tags); a :class:`~genrekit.heads.TrackHead` pools them into the
    track's probabilities, and may carry a music/not-music detector and a calibration
    temperature. Either may carry ``min_confidence``: below it the answer is "uncertain".
    """

    def __init__(self, network, metadata: dict, source: str, min_confidence: float | None = None):
        self.network = network
        self.payload = metadata
        self.source = source
        self.kind = metadata.get("kind", "segment_classifier")
        if self.kind not in KINDS:
            raise CheckpointError(f"{source}: unknown model kind {self.kind!r}")
        try:
            self.labels: list[str] = list(metadata["labels"])
            self.feature_config = FeatureConfig.from_dict(metadata["feature_config"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{source}: model metadata without valid labels or feature settings ({e})") from None
        self.head = self.detector = self.short_detector = None
        if self.kind == "track_head":
            from .heads import TrackHead

            self.head = TrackHead.from_dict(metadata.get("head") or {}, source)
            if self.head.labels != self.labels:
                raise CheckpointError(f"{source}: the head's labels {self.head.labels} are not the model's "
                                      f"{self.labels}")
            if metadata.get("detector"):
                self.detector = TrackHead.from_dict(metadata["detector"], source)
                self.short_detector = ShortDetector.from_dict(metadata.get("short_detector"), source)
            graph_strides = getattr(network, "patch_strides", self.head.patch_strides)
            if graph_strides != self.head.patch_strides:  # the head would read outputs it was not fitted on
                raise CheckpointError(f"{source}: the graph's patch strides {graph_strides} are not the head's "
                                      f"{self.head.patch_strides}")
        elif "probabilities" not in network.output_names:
            raise CheckpointError(f"{source}: a segment classifier must output 'probabilities'")
        self.not_music_threshold = float(metadata.get("not_music_threshold", 0.5))
        self.min_confidence = float(metadata.get("min_confidence", 0.0) if min_confidence is None else min_confidence)
        self.runtime = "torch" if isinstance(network, TorchNetwork) else "onnx"

    @property
    def model_id(self) -> str:
        """``name@genrekit-version+created``: the training time tells apart two models of one name
        (a retrained recipe, a new shipped model), whose predictions ``tag`` must not reuse."""
        name = self.payload.get("name") or Path(self.source).stem
        created = "".join(ch for ch in str(self.payload.get("created") or "") if ch not in "-:")
        return f"{name}@{self.payload.get('genrekit_version', '?')}" + (f"+{created}" if created else "")

    @property
    def display_names(self) -> dict[str, str]:
        """How each label is written into a file's genre tag (``hiphop`` → ``Hip-Hop``)."""
        names = self.payload.get("display_names") or {}
        return {label: names.get(label) or DISPLAY_NAMES.get(label) or label for label in self.labels}

    @property
    def abstention(self) -> dict:
        """When the model answers "not music" or "uncertain"."""
        rules = {"min_confidence": self.min_confidence, "detects_not_music": self.detector is not None,
                 "not_music_threshold": self.not_music_threshold if self.detector is not None else None}
        if self.short_detector is not None:
            rules["short_files"] = {"below_segments": self.short_detector.below_segments,
                                    "not_music_threshold": self.short_detector.threshold}
        return rules

    @property
    def card(self) -> dict:
        """What the model is: labels, features, architecture, training data (without per-track lists), metrics."""
        from .checkpoint import public_card

        return {"model_id": self.model_id, "source": self.source, "kind": self.kind, "labels": self.labels,
                "display_names": self.display_names, "runtime": self.runtime, "abstention": self.abstention,
                **{k: v for k, v in public_card(self.payload).items() if k not in ("labels", "display_names")},
                "min_confidence": self.min_confidence,  # the one in force (a caller may override the model's)
                "feature_config": self.feature_config.to_dict(), **self._head_card()}

    def _head_card(self) -> dict:
        """A track head's zero-shot tag prior (which tags each label reads) and its labels without tracks."""
        if self.head is None or self.head.prior is None:
            return {}
        return {"tag_prior": {"genre_tags": self.head.prior.genre_tags, "scale": self.head.prior.scale},
                "labels_without_tracks": list(self.head.meta.get("genres_without_tracks") or [])}

    # ------------------------------------------------------------ segments

    def _segment_batches(self, path, max_duration: float | None) -> Iterator:
        """Feature segments of a file in batches, then the audio policy's verdict (too short, silent)."""
        from .audio import CheckedStream, stream_audio
        from .features import FeatureExtractor, iter_segments

        cfg = self.feature_config
        self._extractor = getattr(self, "_extractor", None) or FeatureExtractor(cfg)
        stream = CheckedStream(stream_audio(path, cfg.sr, 0.0, max_duration), cfg.sr, path)
        for batch in iter_segments(stream, cfg, SEGMENT_BATCH, extractor=self._extractor):
            yield batch, stream

    def segment_outputs(self, path, max_duration: float | None = None,
                        on_batch=None) -> tuple[dict[str, np.ndarray], float]:
        """The network's outputs for every segment of a file, and its duration (s).

        The file is decoded as a stream and its segments go through the network in
        chunks, so memory does not grow with the file's length. ``on_batch`` is called
        with each batch of feature segments before the network sees it (e.g. to draw the
        spectrogram without decoding the file twice).
        """
        parts: dict[str, list] = {}
        stream = None
        for batch, stream in self._segment_batches(path, max_duration):  # noqa: B007 (the stream's totals are read below)
            if on_batch is not None:
                on_batch(batch)
            for name, value in self.network.run(batch).items():
                parts.setdefault(name, []).append(value)
        if not parts:  # the stream raised for empty input; this is a guard
            raise EmptyAudioError(path)
        return {k: np.concatenate(v) for k, v in parts.items()}, stream.seconds

    def score(self, outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``(track probabilities (K,), segment probabilities (n, K))`` from the network's outputs."""
        if self.head is None:
            segments = np.asarray(outputs["probabilities"], dtype=np.float64)
            return segments.mean(axis=0), segments
        segment_logits = self.head.segment_logits(outputs)
        return self.head.predict_proba(outputs), _softmax(segment_logits)

    def score_segments(self, segments) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`score` of a track's feature segments ``(n, bins, frames)`` (from a cache)."""
        return self.score(self.network.run(segments))

    def music_probability(self, outputs: dict[str, np.ndarray]) -> float | None:
        """P(music) from the model's detector, None for a model without one."""
        chosen = self._detector_for(outputs)
        if chosen is None:
            return None
        head = chosen[0]
        return float(head.predict_proba(outputs)[head.labels.index("music")])

    def _detector_for(self, outputs: dict[str, np.ndarray]):
        """``(detector head, threshold)`` for a track with these outputs, None without a detector.

        A detector that reads the spread of the patches over time says nothing of a file too
        short for it; such a file gets the model's per-patch detector.
        """
        if self.detector is None:
            return None
        short = self.short_detector
        if short is not None and len(outputs[self.detector.inputs[0]]) < short.below_segments:
            return short.head, short.threshold
        return self.detector, self.not_music_threshold

    # ------------------------------------------------------------ files

    def predict_file(self, path, max_duration: float | None = None, on_batch=None) -> Prediction:
        """Classify one audio file; raises :class:`~genrekit.errors.AudioError` for bad audio.

        ``on_batch``: see :meth:`segment_outputs`.
        """
        start = time.perf_counter()
        outputs, duration = self.segment_outputs(path, max_duration, on_batch)
        return self.decide(str(path), outputs, duration, time.perf_counter() - start)

    def decide(self, path: str, outputs: dict[str, np.ndarray], duration: float, seconds: float) -> Prediction:
        """The prediction for a file from its segments' network outputs: genre, or an abstention."""
        track, segment_probs = self.score(outputs)
        music = self.music_probability(outputs)
        order = np.argsort(-track)
        probabilities = {self.labels[i]: float(track[i]) for i in order}
        abstain = None
        if music is not None and 1.0 - music >= self._detector_for(outputs)[1]:
            abstain = "not_music"
        elif float(track[order[0]]) < self.min_confidence:
            abstain = "uncertain"
        return Prediction(path, None if abstain else self.labels[int(order[0])], probabilities,
                          self._segments(segment_probs, duration), duration, seconds, abstain=abstain, music_probability=music)

    def _segments(self, segment_probs: np.ndarray, duration: float) -> list[dict]:
        from .features import segment_starts

        cfg = self.feature_config
        seg_len = cfg.segment_frames * cfg.hop_length / cfg.sr
        starts = segment_starts(int(round(duration * cfg.sr)), cfg)
        if len(starts) != len(segment_probs):  # scored from a cache, without the audio's length
            starts = np.arange(len(segment_probs)) * cfg.segment_hop_frames * cfg.hop_length / cfg.sr
        return [{"start": round(float(s), 3), "end": round(float(s) + seg_len, 3),
                 "genre": self.labels[int(p.argmax())], "confidence": round(float(p.max()), 4)}
                for s, p in zip(starts, segment_probs)]

    def predict_files(self, paths: Iterable, max_duration: float | None = None,
                      workers: int = FILE_WORKERS) -> Iterator:
        """Classify many files, decoding ahead in threads; yields :class:`Prediction` or :class:`Failure`.

        A failed file is reported and the others go on.
        """
        paths = list(paths)

        def safe(path):
            try:
                return self.predict_file(path, max_duration)
            except AudioError as e:
                return Failure(str(path), f"{e.reason}" + (f" ({e.detail})" if e.detail else ""),
                               abstain="not_music" if getattr(e, "no_sound", False) else None)
            except Exception as e:  # one bad file must not end a batch
                return Failure(str(path), f"unexpected error: {type(e).__name__}: {e}")

        if workers <= 1 or len(paths) <= 1:
            yield from map(safe, paths)
            return
        with ThreadPoolExecutor(workers) as pool:
            yield from pool.map(safe, paths)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def load_model(model=None, device: str = "cpu", runtime: str = "auto", min_confidence: float | None = None,
               threads: int | None = None) -> GenreClassifier:
    """Load a model file (``.onnx``) or a training checkpoint; ``None`` loads the shipped model.

    Parameters
    ----------
    model : path, optional
        An ``.onnx`` model file (runs with onnxruntime alone), or a checkpoint
        (``.safetensors``, legacy ``.pt``) from ``genrekit train``, which needs the
        ``train`` extra: it is exported in memory (about 0.3 s) or run in PyTorch.
    device : str
        ``cpu`` or ``cuda`` (checkpoints only).
    runtime : {"auto", "onnx", "torch"}
        For checkpoints: ``auto`` is onnxruntime on CPU and PyTorch on CUDA.
    min_confidence : float, optional
        Below this top probability the answer is "uncertain" (default: the model's own).
    threads : int, optional
        onnxruntime intra-op threads (default: all cores).

    Examples
    --------
    >>> clf = load_model()  # doctest: +SKIP
    >>> clf.labels  # doctest: +SKIP
    ['blues', 'classical', 'country', 'disco', 'hiphop', 'jazz', 'metal', 'pop', 'reggae', 'rock']
    """
    from .runtime import OnnxNetwork

    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {RUNTIMES}, not {runtime!r}")
    if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
        raise ConfigError(f"min_confidence must be between 0 and 1, not {min_confidence!r}")
    device = str(device)
    if not (device == "cpu" or device.startswith("cuda")):
        raise ConfigError(f"device must be cpu or cuda (cuda:N), not {device!r}")
    path = _model_path(model)
    if path.suffix.lower() == ".onnx":
        if runtime == "torch" or device != "cpu":
            raise ConfigError(f"{path}: an .onnx model runs with onnxruntime on the CPU; --device and --runtime "
                              f"apply to training checkpoints (.safetensors)")
        network = OnnxNetwork(path, threads=threads)
        return GenreClassifier(network, network.metadata, str(path), min_confidence)
    from .checkpoint import load_checkpoint

    payload = load_checkpoint(path)
    if runtime == "torch" or (runtime == "auto" and not str(device).startswith("cpu")):
        return GenreClassifier(TorchNetwork(payload, device), payload, str(path), min_confidence)
    from .export import onnx_bytes_from_payload

    network = OnnxNetwork(onnx_bytes_from_payload(payload), threads=threads)
    return GenreClassifier(network, network.metadata, str(path), min_confidence)


def _model_path(model) -> Path:
    if model is None:
        if not DEFAULT_MODEL.is_file():
            raise CheckpointError(f"{DEFAULT_MODEL}: the shipped model is missing: reinstall genrekit")
        return DEFAULT_MODEL
    if not isinstance(model, (str, Path)):
        raise ConfigError(f"model must be a path (str or Path), not {type(model).__name__}")
    path = Path(model)
    if not path.exists():
        raise CheckpointError(f"{path}: model not found")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file")
    return path


def predict(paths, model=None, device: str = "cpu", max_duration: float | None = None):
    """Classify one file (returns a :class:`Prediction`) or several (returns a list).

    ``paths`` is a path (str or Path) or a list of them; ``model`` a path or a loaded
    :class:`GenreClassifier` (default: the shipped model).

    Examples
    --------
    >>> genrekit.predict("song.mp3").genre  # doctest: +SKIP
    'jazz'
    """
    single = isinstance(paths, (str, Path))
    if not single:
        if paths is None or isinstance(paths, (bytes, bytearray)) or not hasattr(paths, "__iter__"):
            raise ConfigError(f"paths must be a path (str or Path) or a list of them, not {type(paths).__name__}")
        paths = list(paths)
        bad = [p for p in paths if not isinstance(p, (str, Path))]
        if bad:
            raise ConfigError(f"paths must be str or Path, not {type(bad[0]).__name__} ({bad[0]!r})")
    if isinstance(model, GenreClassifier):
        classifier = model
    else:
        classifier = load_model(model, device, threads=file_threads(1 if single else len(paths)))
    if single:
        return classifier.predict_file(paths, max_duration)
    return list(classifier.predict_files(paths, max_duration))


def file_threads(n_files: int) -> int | None:
    """onnxruntime threads per network run for ``n_files`` files: all cores for one file; for several,
    each of the :data:`FILE_WORKERS` files at a time gets its share (1.2x the throughput of all
    threads per file on 2 cores, bench/predict.py)."""
    from .runtime import available_cores

    return None if n_files <= 1 else max(1, available_cores() // FILE_WORKERS)


def to_json(results: list) -> str:
    return json.dumps([r.to_dict() for r in results], indent=2)
