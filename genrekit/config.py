"""Feature settings that travel with every cache and every model.

A :class:`FeatureConfig` fixes everything between the audio file and the tensor a
model sees: sample rate, STFT and mel settings, the log scaling, and how a clip is
cut into segments. It is frozen and hashable so a cache or a checkpoint can refuse
features made with other settings.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from .errors import ConfigError

FRONTENDS = ("logmel_db", "musicnn")


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
        ``logmel_db`` only: clip to ``max - top_db`` per clip, as ``librosa.power_to_db``.
    pad_mode : {"constant", "reflect"}
        How the signal is padded by ``n_fft // 2`` at both ends for centred frames
        (librosa >= 0.10 pads with zeros; musicnn's librosa 0.7 reflected).
    frontend : {"logmel_db", "musicnn"}
        ``logmel_db``: ``10 log10(max(S, 1e-10))`` with ``top_db`` (the seed's log-scaled
        mel spectrogram). ``musicnn``: ``log10(10000 S + 1)``, as musicnn computes it.
    segment_seconds, segment_hop_seconds : float
        Length of the segments a clip is cut into and the hop between their starts.
        The default cuts a 30 s clip into 10 segments of 3 s, as the seed did.

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

    def __post_init__(self):
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
        if self.segment_frames < 1:
            raise ConfigError("segment_seconds is shorter than one STFT hop")

    @property
    def segment_frames(self) -> int:
        """Frames per segment: ``floor(segment_seconds * sr / hop_length)``."""
        return int(self.segment_seconds * self.sr // self.hop_length)

    @property
    def segment_hop_frames(self) -> int:
        return max(1, int(self.segment_hop_seconds * self.sr // self.hop_length))

    @property
    def segment_shape(self) -> tuple[int, int]:
        """``(n_mels, segment_frames)``: the shape of one model input without channel."""
        return (self.n_mels, self.segment_frames)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown FeatureConfig keys: {sorted(unknown)}")
        return cls(**data)

    @property
    def value_unit(self) -> str:
        """What a feature value is: ``"dB"`` for the log-mel front end, musicnn's log compression otherwise."""
        return "dB" if self.frontend == "logmel_db" else "log10(1 + 10^4 mel)"

    def fingerprint(self) -> str:
        """A short stable hash of the settings (the same on every machine)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


MUSICNN_FEATURES = FeatureConfig(
    sr=16000, n_fft=512, hop_length=256, n_mels=96, fmin=0.0, fmax=None, top_db=None,
    frontend="musicnn", pad_mode="reflect", segment_seconds=3.0, segment_hop_seconds=3.0,
)
"""musicnn's own input: 16 kHz, 96 mel bands, n_fft 512, hop 256, 3 s patches (187 frames)."""
