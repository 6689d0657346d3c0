"""Prediction: audio files → genre, with every segment voting.

A file is decoded as a stream and cut into segments in batches, so a file of any
length is covered by windows over the whole of it with bounded memory
(``max_duration`` caps how much is read). The segment probabilities are averaged into
the file's prediction; each segment's own vote is kept.

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .config import FeatureConfig
from .errors import AudioError, CheckpointError, EmptyAudioError, SilentAudioError, TooShortError

DEFAULT_MODEL = Path(__file__).parent / "weights" / "genrekit-gtzan.pt"
SEGMENT_BATCH = 32
MIN_DURATION = 1.0


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
            raise ValueError(f"abstain must be None or one of {ABSTAIN_REASONS}, not {self.abstain!r}")
        if (self.genre is None) != (self.abstain is not None):
            raise ValueError("a prediction has a genre or an abstention reason, not both or neither")

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
    path: str
    error: str

    def to_dict(self) -> dict:
        return {"path": self.path, "error": self.error}


class TorchRunner:
    """Runs segment batches through a PyTorch model."""

    def __init__(self, payload: dict, device: str = "cpu"):
        import torch

        from .training import model_from_checkpoint

        self.torch = torch
        self.device = torch.device(device)
        self.model = model_from_checkpoint(payload).to(self.device)

    def __call__(self, x) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            logits = self.model(torch.as_tensor(x).to(self.device))
            return torch.softmax(logits.float(), dim=1).cpu().numpy()


class OnnxRunner:
    """Runs segment batches through onnxruntime (the exported model outputs probabilities)."""

    def __init__(self, onnx_bytes: bytes):
        import onnxruntime as ort

        import torch

        options = ort.SessionOptions()
        # The same thread budget as PyTorch: genrekit serve divides the cores among its workers.
        options.intra_op_num_threads = torch.get_num_threads()
        self.session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x) -> np.ndarray:
        x = np.asarray(x.numpy() if hasattr(x, "numpy") else x, dtype=np.float32)
        return self.session.run(None, {self.input: x})[0]


RUNTIMES = ("auto", "torch", "onnx")


class GenreClassifier:
    """A loaded model: labels, feature settings and a runner, reusable for many files."""

    def __init__(self, payload: dict, source: str, device: str = "cpu", runtime: str = "torch",
                 onnx_bytes: bytes | None = None, min_confidence: float | None = None):
        self.payload = payload
        self.source = source
        # Below this top probability the answer is "uncertain"; None: the model's own threshold.
        self.min_confidence = payload.get("min_confidence", 0.0) if min_confidence is None else min_confidence
        self.labels: list[str] = list(payload["labels"])
        self.feature_config = FeatureConfig.from_dict(payload["feature_config"])
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, not {runtime!r}")
        if runtime == "auto":
            # onnxruntime (a dependency) is 2× faster than eager PyTorch on CPU (bench/predict.py)
            runtime = "onnx" if onnx_bytes is not None or str(device).startswith("cpu") else "torch"
        self.runtime = runtime
        if runtime == "torch":
            self.runner = TorchRunner(payload, device)
        else:
            if onnx_bytes is None:
                from .export import onnx_bytes_from_payload

                onnx_bytes = onnx_bytes_from_payload(payload)
            self.runner = OnnxRunner(onnx_bytes)
        self._logmel = None

    @property
    def model_id(self) -> str:
        name = self.payload.get("name") or Path(self.source).stem
        return f"{name}@{self.payload.get('genrekit_version', '?')}"

    @property
    def display_names(self) -> dict[str, str]:
        """How each label is written into a file's genre tag (``hiphop`` → ``Hip-Hop``)."""
        names = self.payload.get("display_names") or {}
        return {label: names.get(label) or DISPLAY_NAMES.get(label) or label for label in self.labels}

    @property
    def card(self) -> dict:
        """What the model is: labels, features, backbone, training data and metrics."""
        data = self.payload.get("training_data", {})
        return {"model_id": self.model_id, "source": self.source, "labels": self.labels,
                "feature_config": self.feature_config.to_dict(), "model_config": self.payload.get("model_config"),
                "training_data": {k: v for k, v in data.items() if not k.endswith("_ids") and k != "train_artists"},
                "metrics": self.payload.get("metrics", {}), "test_metrics": self.payload.get("test_metrics"),
                "genrekit_version": self.payload.get("genrekit_version"), "runtime": self.runtime}

    def _segment_batches(self, path, max_duration: float | None) -> Iterator:
        from .audio import SILENCE_PEAK, stream_audio
        from .features import LogMel, iter_segments

        cfg = self.feature_config
        self._logmel = self._logmel or LogMel(cfg)
        stats = {"samples": 0, "peak": 0.0}

        def tracked(blocks):
            for block in blocks:
                stats["samples"] += len(block)
                stats["peak"] = max(stats["peak"], float(np.abs(block).max(initial=0.0)))
                yield block

        blocks = tracked(stream_audio(path, cfg.sr, 0.0, max_duration))
        for batch in iter_segments(blocks, cfg, SEGMENT_BATCH, logmel=self._logmel):
            yield batch, stats
        if stats["samples"] == 0:
            raise EmptyAudioError(path, "decoded to 0 samples")
        if stats["samples"] < MIN_DURATION * cfg.sr:
            raise TooShortError(path, f"{stats['samples'] / cfg.sr:.2f} s < {MIN_DURATION:.2f} s")
        if stats["peak"] < SILENCE_PEAK:
            raise SilentAudioError(path)

    def segment_probabilities(self, path, max_duration: float | None = None) -> tuple[np.ndarray, float]:
        """Probabilities of every segment of a file ``(n_segments, n_labels)`` and its duration (s)."""
        probs, stats = [], None
        for batch, stats in self._segment_batches(path, max_duration):
            probs.append(self.runner(batch))
        if not probs:  # _segment_batches raised for empty input; this is a guard
            raise EmptyAudioError(path)
        return np.concatenate(probs), stats["samples"] / self.feature_config.sr

    def predict_file(self, path, max_duration: float | None = None) -> Prediction:
        """Classify one audio file; raises :class:`~genrekit.errors.AudioError` for bad audio."""
        start = time.perf_counter()
        probs, duration = self.segment_probabilities(path, max_duration)
        return self._prediction(str(path), probs, duration, time.perf_counter() - start)

    def _prediction(self, path: str, probs: np.ndarray, duration: float, seconds: float) -> Prediction:
        cfg = self.feature_config
        mean = probs.mean(axis=0)
        order = np.argsort(-mean)
        seg_len = cfg.segment_frames * cfg.hop_length / cfg.sr
        seg_hop = cfg.segment_hop_frames * cfg.hop_length / cfg.sr
        segments = [{"start": round(i * seg_hop, 3), "end": round(i * seg_hop + seg_len, 3),
                     "genre": self.labels[int(p.argmax())], "confidence": round(float(p.max()), 4)}
                    for i, p in enumerate(probs)]
        probabilities = {self.labels[i]: float(mean[i]) for i in order}
        uncertain = float(mean[order[0]]) < self.min_confidence
        return Prediction(path, None if uncertain else self.labels[int(order[0])], probabilities, segments, duration,
                          seconds, abstain="uncertain" if uncertain else None)

    def predict_files(self, paths: Iterable, max_duration: float | None = None, workers: int = 2) -> Iterator:
        """Classify many files, decoding ahead in threads; yields :class:`Prediction` or :class:`Failure`.

        A failed file is reported and the others go on.
        """
        paths = list(paths)

        def safe(path):
            try:
                return self.predict_file(path, max_duration)
            except AudioError as e:
                return Failure(str(path), f"{e.reason}" + (f" ({e.detail})" if e.detail else ""))
            except Exception as e:  # one bad file must not end a batch
                return Failure(str(path), f"unexpected error: {type(e).__name__}: {e}")

        if workers <= 1 or len(paths) <= 1:
            yield from map(safe, paths)
            return
        with ThreadPoolExecutor(workers) as pool:
            yield from pool.map(safe, paths)


def load_model(model=None, device: str = "cpu", runtime: str = "auto",
               min_confidence: float | None = None) -> GenreClassifier:
    """Load a checkpoint (``.pt``) or an exported ``.onnx`` model; ``None`` loads the shipped default.

    ``runtime``: ``"torch"``, ``"onnx"`` (onnxruntime, CPU; the checkpoint is exported in
    memory at load, about 0.3 s) or ``"auto"``: onnxruntime on CPU, PyTorch on CUDA.

    Examples
    --------
    >>> clf = load_model()  # doctest: +SKIP
    >>> clf.labels  # doctest: +SKIP
    ['blues', 'classical', 'country', 'disco', 'hiphop', 'jazz', 'metal', 'pop', 'reggae', 'rock']
    """
    path = Path(model) if model is not None else DEFAULT_MODEL
    if not path.is_file():
        hint = "" if model is not None else " (the shipped model is missing: reinstall genrekit)"
        raise CheckpointError(f"model not found: {path}{hint}")
    if path.suffix == ".onnx":
        from .export import read_onnx_metadata

        payload = read_onnx_metadata(path)
        return GenreClassifier(payload, str(path), device, "onnx", onnx_bytes=path.read_bytes(),
                               min_confidence=min_confidence)
    from .training import load_checkpoint

    return GenreClassifier(load_checkpoint(path), str(path), device, runtime, min_confidence=min_confidence)


def predict(paths, model=None, device: str = "cpu", max_duration: float | None = None):
    """Classify one file (returns a :class:`Prediction`) or several (returns a list).

    Examples
    --------
    >>> genrekit.predict("song.mp3").genre  # doctest: +SKIP
    'jazz'
    """
    classifier = model if isinstance(model, GenreClassifier) else load_model(model, device)
    if isinstance(paths, (str, Path)):
        return classifier.predict_file(paths, max_duration)
    return list(classifier.predict_files(paths, max_duration))


def to_json(results: list) -> str:
    return json.dumps([r.to_dict() for r in results], indent=2)
