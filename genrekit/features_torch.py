"""The transform of :mod:`genrekit.features` in torch, batched, on any device (GPU use).

Import it only from code that already needs torch (training, GPU preprocessing);
the inference path uses the numpy :class:`genrekit.features.FeatureExtractor`.
:class:`TorchFeatureExtractor` plugs into :func:`genrekit.features.iter_segments`, which
then yields torch tensors on the extractor's device:

>>> from genrekit.config import FeatureConfig
>>> from genrekit.features import iter_segments
>>> import numpy as np
>>> extractor = TorchFeatureExtractor(FeatureConfig(), "cpu")  # or "cuda"
>>> batch = next(iter_segments([np.zeros(30 * 22050, np.float32)], FeatureConfig(), 4, extractor))
>>> batch.shape, batch.device.type
(torch.Size([4, 128, 129]), 'cpu')

The values agree with the numpy transform to float32 rounding (tests/test_features.py).
"""
from __future__ import annotations

import numpy as np
import torch

from .config import FeatureConfig
from .features import AMIN, iter_segments, mel_filterbank, resize_matrix


class TorchFeatureExtractor:
    """Padded signals → features in torch: the same methods as :class:`genrekit.features.FeatureExtractor`.

    Parameters
    ----------
    config : FeatureConfig
    device : str or torch.device
        Where the window, filters and results live.
    """

    def __init__(self, config: FeatureConfig, device="cpu"):
        self.config = config
        self.device = torch.device(device)
        self.window = torch.hann_window(config.n_fft, periodic=True, device=self.device)
        self.filters = None
        if config.frontend != "stft_db":
            fb = mel_filterbank(config.sr, config.n_fft, config.n_mels, config.fmin, config.fmax)
            self.filters = torch.tensor(fb, device=self.device)

    def _tensor(self, x) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            x = np.ascontiguousarray(x, dtype=np.float32)
            x = torch.from_numpy(x if x.flags.writeable else x.copy())  # views of the stream are read-only
        return x.to(self.device, torch.float32)

    def frames_to_features(self, padded) -> torch.Tensor:
        """Uncentred STFT of padded signals ``(B, n)`` → ``(B, n_bins, frames)``: the front
        end's log scale without floor or reference (see the numpy extractor)."""
        cfg = self.config
        spec = torch.stft(self._tensor(padded), cfg.n_fft, cfg.hop_length, window=self.window, center=False,
                          return_complex=True)
        power = spec.real.square() + spec.imag.square()
        if self.filters is not None:
            power = torch.matmul(self.filters, power)
        if cfg.frontend == "musicnn":
            return torch.log10(10000.0 * power + 1.0)
        return 10.0 * torch.log10(torch.clamp(power, min=AMIN))

    def segment_features(self, padded) -> torch.Tensor:
        """Fixed-length segments ``(B, span)`` → ``(B, *segment_shape)`` (level, floor, resize)."""
        return self._finish(self.frames_to_features(self._to_level(padded))[..., : self.config.segment_frames])

    def _to_level(self, padded) -> torch.Tensor:
        """:func:`genrekit.features.scale_to_level` on the device."""
        x, cfg = self._tensor(padded), self.config
        if cfg.segment_rms_db is None:
            return x
        rms = x.double().square().mean(dim=-1, keepdim=True).sqrt()
        gain = torch.clamp(10.0 ** (cfg.segment_rms_db / 20.0) / rms.clamp(min=1e-12), max=10.0 ** (cfg.max_gain_db / 20.0))
        return (x * gain).float()

    def clip_parts(self, padded_clip, count: int) -> torch.Tensor:
        """One padded clip → its first ``count`` equal parts (``stft_db``: dB re the clip's max)."""
        cfg = self.config
        spec = self.frames_to_features(self._tensor(padded_clip)[None])[0]
        if cfg.frontend == "stft_db":
            spec = spec - spec.max()
            if cfg.top_db is not None:
                spec = spec.clamp(min=-cfg.top_db)
        length = cfg.segment_frames
        parts = spec[:, : count * length].reshape(spec.shape[0], count, length).transpose(0, 1)
        return self._finish(parts.contiguous())

    def _finish(self, segments: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if cfg.frontend == "logmel_db" and cfg.top_db is not None:
            segments = apply_top_db(segments, cfg)
        if cfg.image_size is not None:
            rows = torch.tensor(resize_matrix(segments.shape[-2], cfg.image_size[0]), device=self.device)
            cols = torch.tensor(resize_matrix(segments.shape[-1], cfg.image_size[1]), device=self.device)
            segments = torch.matmul(torch.matmul(rows, segments), cols.T)
        return segments

    @staticmethod
    def concatenate(parts: list) -> torch.Tensor:
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def empty(self) -> torch.Tensor:
        return torch.zeros((0, *self.config.segment_shape), device=self.device)


def apply_top_db(segments: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """Floor each segment at its own maximum minus ``top_db`` (``logmel_db`` only)."""
    if config.frontend != "logmel_db" or config.top_db is None:
        return segments
    peak = segments.amax(dim=(-2, -1), keepdim=True)
    return segments.maximum(peak - config.top_db)


def waveform_segments(y, config: FeatureConfig, device="cpu") -> torch.Tensor:
    """All segments of one waveform as a float32 tensor on ``device``."""
    extractor = TorchFeatureExtractor(config, device)
    parts = list(iter_segments([np.asarray(y, np.float32)], config, 10**9, extractor))
    return extractor.concatenate(parts) if parts else extractor.empty()
