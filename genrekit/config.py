"""Feature settings that travel with every cache and every model.

A :class:`FeatureConfig` fixes everything between the audio file and the tensor a
model sees: sample rate, STFT and mel settings, the log scaling, and how a clip is
cut into segments. It is frozen and hashable so a cache or a checkpoint can refuse
features made with other settings.

Presets: the default ``FeatureConfig()`` (log-mel in dB, 10 x 3 s per 30 s clip),
:data:`MUSICNN_FEATURES` (musicnn's input) and :data:`SEED_FEATURES` (the linear STFT
in dB relative to the clip's maximum, cut into 10 equal parts, as the seed notebook).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import operator
from dataclasses import dataclass

from .errors import ConfigError

FRONTENDS = ("logmel_db", "musicnn", "stft_db")

# Fields added after caches and checkpoints were first written: left at these values they
# do not enter the fingerprint, so the fingerprints of older settings stay the same.
_LATER_FIELDS = {"segment_count": None, "clip_seconds": 30.0, "image_size": None, "segment_rms_db": None,
                 "max_gain_db": 30.0}


@dataclass(frozen=True)
class FeatureConfig:
    """Preprocessing settings.

    Parameters
    ----------
    sr : int
        Sample rate the audio is resampled to.
    n_fft, hop_length : int
        STFT frame and hop in samples (Hann window, centred frames).
    n_mels : int
        Number of mel bands (Slaney mel scale and area normalisation, as librosa).
    fmin, fmax : float
        Mel filterbank range in Hz; ``fmax=None`` means ``sr / 2``.
    top_db : float or None
        Floor at ``max - top_db`` as ``librosa.power_to_db``: per segment for ``logmel_db``,
        per clip for ``stft_db``; ``musicnn`` has no floor.
    pad_mode : {"constant", "reflect"}
        How the signal is padded by ``n_fft // 2`` at both ends for centred frames
        (librosa >= 0.10 pads with zeros; musicnn's librosa 0.7 reflected).
    frontend : {"logmel_db", "musicnn", "stft_db"}
        ``logmel_db``: ``10 log10(max(S, 1e-10))`` of the mel power with ``top_db`` per
        segment. ``musicnn``: ``log10(10000 S + 1)``, as musicnn computes it.
        ``stft_db``: the seed's image, the linear STFT power (``1 + n_fft // 2`` bins, no
        mel filters) as ``librosa.amplitude_to_db(abs(S), ref=np.max, top_db=top_db)``
        over each clip, i.e. dB relative to the clip's loudest bin, floored at
        ``-top_db``. Needs ``segment_count``; ``n_mels``, ``fmin`` and ``fmax`` do not
        apply and stay at their defaults.
    segment_seconds, segment_hop_seconds : float
        Length of the segments a clip is cut into and the hop between their starts.
        The default cuts a 30 s clip into 10 segments of 3 s, as the seed did. Not used
        with ``segment_count`` (leave them at 3.0).
    segment_count : int or None
        Equal-parts mode: cut each clip of ``clip_seconds`` into exactly this many
        adjacent parts of ``segment_frames = clip_frames // segment_count`` frames (the
        last ``clip_frames % segment_count`` frames are dropped). A last clip shorter
        than ``clip_seconds`` gives the whole parts it holds; a file shorter than one
        part is padded with silence to one part. ``None``: fixed-length segments.
    clip_seconds : float
        With ``segment_count``: a file is processed in clips of this length, each its
        own STFT (centred and padded at both ends, as a separate file would be) and,
        for ``stft_db``, its own ``ref=max``. This bounds memory for long files.
    image_size : (int, int) or None
        Resize each segment to ``(height, width)`` (bilinear with antialiasing, as PIL
        and ``torch.nn.functional.interpolate(..., antialias=True)``), e.g. ``(224, 224)``
        for ImageNet backbones. Row 0 stays the lowest frequency.
    segment_rms_db : float or None
        Scale each fixed-length segment's waveform to this RMS level in dBFS (e.g. -15)
        before the STFT, so that the same music played louder or softer gives the same
        features; ``None`` (default): the level as decoded. Not with ``segment_count``.
    max_gain_db : float
        With ``segment_rms_db``: the largest boost in dB, so near-silence stays quiet.

    Notes
    -----
    Memory of :data:`SEED_FEATURES`: a frame has ``1 + 2048 // 2 = 1025`` bins; a 30 s
    clip at 44.1 kHz is ``1 + 1323000 // 512 = 2584`` frames, so 10 parts of 258 frames
    (4 frames dropped). In a float16 cache that is ``10 * 1025 * 258 * 2`` bytes = 5.29 MB
    per clip, 42.3 GB for FMA small (8,000 clips). With ``image_size=(224, 224)`` it is
    ``10 * 224 * 224 * 2`` bytes = 1.00 MB per clip, 8.0 GB for FMA small. Computing a
    clip holds its float32 spectrogram (``1025 * 2584 * 4`` bytes = 10.6 MB) and the
    power and parts beside it: about 32 MB at the peak (measured with tracemalloc),
    whatever the length of the file when it is streamed.

    Examples
    --------
    >>> cfg = FeatureConfig()
    >>> cfg.segment_frames
    129
    >>> FeatureConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    sr: int = 22050
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None
    top_db: float | None = 80.0
    frontend: str = "logmel_db"
    pad_mode: str = "constant"
    segment_seconds: float = 3.0
    segment_hop_seconds: float = 3.0
    segment_count: int | None = None
    clip_seconds: float = 30.0
    image_size: tuple[int, int] | None = None
    segment_rms_db: float | None = None
    max_gain_db: float = 30.0

    def __post_init__(self):
        if self.image_size is not None:  # JSON gives a list; keep the config hashable
            object.__setattr__(self, "image_size", _image_size(self.image_size))
        if self.sr <= 0 or self.n_fft <= 0 or self.hop_length <= 0 or self.n_mels <= 0:
            raise ConfigError("sr, n_fft, hop_length and n_mels must be positive")
        if self.frontend not in FRONTENDS:
            raise ConfigError(f"frontend must be one of {FRONTENDS}, not {self.frontend!r}")
        if self.pad_mode not in ("constant", "reflect"):
            raise ConfigError("pad_mode must be 'constant' or 'reflect'")
        nyquist = self.sr / 2
        if not 0 <= self.fmin < (self.fmax or nyquist) <= nyquist:
            raise ConfigError(f"need 0 <= fmin < fmax <= sr/2 ({nyquist} Hz)")
        if self.segment_seconds <= 0 or self.segment_hop_seconds <= 0:
            raise ConfigError("segment_seconds and segment_hop_seconds must be positive")
        if self.frontend == "stft_db":
            self._check_stft_db()
        if self.segment_count is None:
            self._check_fixed_segments()
        else:
            self._check_equal_parts()
        self._check_level()

    def _check_level(self):
        level, gain = self.segment_rms_db, self.max_gain_db
        if level is not None and (isinstance(level, bool) or not isinstance(level, (int, float))
                                  or not -80.0 <= level <= 0.0):
            raise ConfigError(f"segment_rms_db must be a level in dBFS between -80 and 0, or None, not {level!r}")
        if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not 0.0 <= gain <= 80.0:
            raise ConfigError(f"max_gain_db must be between 0 and 80 dB, not {gain!r}")
        if level is not None and self.segment_count is not None:
            raise ConfigError("segment_rms_db applies to fixed-length segments, not with segment_count")

    def _check_stft_db(self):
        if self.segment_count is None:
            raise ConfigError("frontend 'stft_db' needs segment_count (its dB reference is each clip's maximum)")
        if (self.n_mels, self.fmin, self.fmax) != (128, 0.0, None):
            raise ConfigError("frontend 'stft_db' has no mel filterbank: leave n_mels, fmin and fmax at their defaults")

    def _check_fixed_segments(self):
        if self.clip_seconds != 30.0:
            raise ConfigError("clip_seconds applies only with segment_count")
        if self.segment_frames < 1:
            raise ConfigError("segment_seconds is shorter than one STFT hop")

    def _check_equal_parts(self):
        count = self.segment_count
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError(f"segment_count must be a positive integer, not {count!r}")
        if (self.segment_seconds, self.segment_hop_seconds) != (3.0, 3.0):
            raise ConfigError("segment_seconds and segment_hop_seconds do not apply with segment_count "
                              "(parts are clip_seconds / segment_count long)")
        if not self.clip_seconds > 0:
            raise ConfigError(f"clip_seconds must be positive, not {self.clip_seconds}")
        if self.segment_frames < 1:
            raise ConfigError(f"clip_seconds={self.clip_seconds} gives {self.clip_frames} STFT frames, "
                              f"fewer than segment_count={count}")

    @property
    def clip_samples(self) -> int:
        """Samples per clip in equal-parts mode: ``round(clip_seconds * sr)``."""
        return int(round(self.clip_seconds * self.sr))

    @property
    def clip_frames(self) -> int:
        """Centred STFT frames of a whole clip: ``1 + clip_samples // hop_length``."""
        return 1 + self.clip_samples // self.hop_length

    @property
    def segment_frames(self) -> int:
        """Frames per segment: ``floor(segment_seconds * sr / hop_length)``, or
        ``clip_frames // segment_count`` in equal-parts mode."""
        if self.segment_count is not None:
            return self.clip_frames // self.segment_count
        return int(self.segment_seconds * self.sr // self.hop_length)

    @property
    def segment_hop_frames(self) -> int:
        """Frames between segment starts (within a clip, in equal-parts mode)."""
        if self.segment_count is not None:
            return self.segment_frames
        return max(1, int(self.segment_hop_seconds * self.sr // self.hop_length))

    @property
    def n_bins(self) -> int:
        """Frequency rows before any resize: ``n_mels``, or ``1 + n_fft // 2`` for ``stft_db``."""
        return 1 + self.n_fft // 2 if self.frontend == "stft_db" else self.n_mels

    @property
    def segment_shape(self) -> tuple[int, int]:
        """The shape of one model input without channel: ``image_size`` if set, else
        ``(n_bins, segment_frames)``."""
        return self.image_size or (self.n_bins, self.segment_frames)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FeatureConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown FeatureConfig keys: {sorted(unknown)}")
        return cls(**data)

    @property
    def value_unit(self) -> str:
        """What a feature value is: ``"dB"`` (log-mel), ``"dB re clip max"`` (``stft_db``)
        or musicnn's log compression."""
        return {"logmel_db": "dB", "stft_db": "dB re clip max"}.get(self.frontend, "log10(1 + 10^4 mel)")

    def fingerprint(self) -> str:
        """A short stable hash of the settings (the same on every machine).

        Fields added later count only when they differ from their defaults, so the
        fingerprint of settings that existed before them has not changed.
        """
        data = {k: v for k, v in self.to_dict().items() if k not in _LATER_FIELDS or v != _LATER_FIELDS[k]}
        text = json.dumps(data, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _image_size(value) -> tuple[int, int]:
    try:
        height, width = (operator.index(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"image_size must be (height, width) in whole pixels, not {value!r}") from None
    if height < 1 or width < 1 or any(isinstance(v, bool) for v in value):
        raise ConfigError(f"image_size must be two positive integers, not {value!r}")
    return (height, width)


MUSICNN_FEATURES = FeatureConfig(
    sr=16000, n_fft=512, hop_length=256, n_mels=96, fmin=0.0, fmax=None, top_db=None,
    frontend="musicnn", pad_mode="reflect", segment_seconds=3.0, segment_hop_seconds=3.0,
)
"""musicnn's own input: 16 kHz, 96 mel bands, n_fft 512, hop 256, 3 s patches (187 frames)."""


PREPARE_FLAGS = {"sr": "--sr", "n_fft": "--n-fft", "hop_length": "--hop-length", "n_mels": "--n-mels",
                 "fmin": "--fmin", "fmax": "--fmax", "top_db": "--top-db", "segment_seconds": "--segment-seconds",
                 "segment_hop_seconds": "--segment-hop", "segment_count": "--segment-count",
                 "clip_seconds": "--clip-seconds", "image_size": "--image-size", "segment_rms_db": "--segment-rms-db",
                 "max_gain_db": "--max-gain-db"}
"""The ``genrekit prepare`` option of each FeatureConfig field it can set."""


def feature_preset(name: str) -> FeatureConfig:
    """The settings of ``genrekit prepare --features NAME``: ``logmel``, ``musicnn`` or ``seed``."""
    return {"musicnn": MUSICNN_FEATURES, "seed": SEED_FEATURES}.get(name, FeatureConfig())


def prepare_flags(config: FeatureConfig) -> str | None:
    """The ``genrekit prepare`` options that build ``config``; None if its options cannot.

    Examples
    --------
    >>> prepare_flags(dataclasses.replace(MUSICNN_FEATURES, segment_rms_db=-15, max_gain_db=15))
    '--features musicnn --segment-rms-db -15 --max-gain-db 15'
    """
    preset = {"musicnn": "musicnn", "stft_db": "seed"}.get(config.frontend, "logmel")
    base, flags = feature_preset(preset), [] if preset == "logmel" else ["--features", preset]
    for name in (f.name for f in dataclasses.fields(config)):
        value = getattr(config, name)
        if value == getattr(base, name):
            continue
        if name not in PREPARE_FLAGS or value is None:
            return None
        flags += [PREPARE_FLAGS[name], *(_flag_value(v) for v in (value if name == "image_size" else [value]))]
    return " ".join(flags)


def _flag_value(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def check_musicnn_config(config: FeatureConfig) -> None:
    """``config`` must be :data:`MUSICNN_FEATURES`; only the segment level (``segment_rms_db``,
    ``max_gain_db``) may differ."""
    if dataclasses.replace(config, segment_rms_db=None, max_gain_db=MUSICNN_FEATURES.max_gain_db) != MUSICNN_FEATURES:
        raise ConfigError("musicnn needs its own input settings (genrekit.config.MUSICNN_FEATURES); only "
                          "segment_rms_db and max_gain_db may differ")


PATCH_BATCH = 32
"""musicnn patches per batch when a file is classified or its features are extracted."""


def check_patch_strides(strides) -> dict[str, int]:
    """``{network: k}`` checked: that network runs on every k-th musicnn patch of a file only,
    and each of the next k - 1 patches takes its outputs (:func:`genrekit.heads.hold_strided`).

    ``k`` must divide :data:`PATCH_BATCH`, so that how a file's patches are batched never moves
    which patches run. Strides of 1 are dropped.

    Raises
    ------
    ConfigError
        Not a mapping of names to such whole numbers.

    Examples
    --------
    >>> check_patch_strides({"MTT_musicnn": 4, "MSD_musicnn": 1})
    {'MTT_musicnn': 4}
    """
    if strides is None:
        return {}
    if not isinstance(strides, dict):
        raise ConfigError(f"patch_strides must map network names to strides, not {strides!r}")
    for network, k in strides.items():
        if not isinstance(network, str) or isinstance(k, bool) or not isinstance(k, int) or k < 1 or PATCH_BATCH % k:
            raise ConfigError(f"patch stride of {network!r} must be a whole number that divides {PATCH_BATCH} "
                              f"(1, 2, 4, 8, 16 or 32), not {k!r}")
    return {network: k for network, k in sorted(strides.items()) if k > 1}

SEED_FEATURES = FeatureConfig(
    sr=44100, n_fft=2048, hop_length=512, top_db=80.0, frontend="stft_db", pad_mode="constant",
    segment_count=10, clip_seconds=30.0,
)
"""The seed's features: 44.1 kHz, ``librosa.stft`` (n_fft 2048, hop 512) in dB re the
clip's maximum (``amplitude_to_db(abs(S), ref=np.max)``, top_db 80), each 30 s clip cut
into 10 equal parts of 258 frames x 1025 bins. ``dataclasses.replace(SEED_FEATURES,
image_size=(224, 224))`` resizes the parts for ImageNet backbones (see the memory notes
of :class:`FeatureConfig`)."""
