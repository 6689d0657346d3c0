"""musicnn in PyTorch: the pretrained music taggers of Pons & Serra (2019), shipped offline.

musicnn ("musician") is a musically motivated CNN for music audio tagging
(J. Pons and X. Serra, *musicnn: pre-trained convolutional neural networks for music
audio tagging*, ISMIR 2019 LBD). This is a port of ``build_musicnn`` from the PyPI
wheel ``musicnn==0.1.0`` (``musicnn/models.py``) with the wheel's ``MSD_musicnn`` and
``MTT_musicnn`` weights converted by ``tools/convert_musicnn.py``; TensorFlow is not
needed. Licence and provenance: ``genrekit/models/weights/MUSICNN_LICENSE.txt`` (ISC).

The network, for a patch of ``T`` frames (187 = 3 s) and 96 mel bands:

* **front-end**: batch norm of the log-mel input, then two *timbral* blocks (vertical
  filters: 7 frames × 38 and × 67 bands, 204 filters each) and three *temporal* blocks
  (horizontal filters: 128, 64 and 32 frames × 1 band, 51 filters each, TF "same"
  padding). Each block is conv → ReLU → batch norm → max over frequency, giving
  ``(B, 561, T)``.
* **mid-end**: three 1-D convolutions over time (7 frames, 64 filters, zero padding 3)
  with residual connections on the 2nd and 3rd; the front-end output and the three
  mid-end outputs are concatenated: ``(B, 753, T)``.
* **back-end**: max and mean over time (interleaved per channel, as TF's flatten of
  ``concat([max, mean], 2)``), batch norm, dense 200 + ReLU, batch norm (the
  *penultimate* embedding), dense 50 (tag logits).

Batch norms run in TensorFlow's inference mode with TF's epsilon 1e-3. The model works
in float32, so it never overflows as musicnn's float16 log-mel does on loud input.

Input features: 16 kHz audio, 96 Slaney mel bands, n_fft 512, hop 256, centred frames
with reflect padding, ``log10(10000 mel + 1)`` — :data:`genrekit.config.MUSICNN_FEATURES`
with :func:`genrekit.features.waveform_segments`.

This module is the network (for training and export); the user API over the shipped
taggers — tags and embeddings of audio files — is :mod:`genrekit.tagger`, which runs
their ONNX export without torch.

Examples
--------
>>> model = load_musicnn("MTT_musicnn")
>>> model.predict(torch.zeros(1, 96, 187)).shape
torch.Size([1, 50])
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..config import MUSICNN_FEATURES
from ..errors import CheckpointError, ConfigError
from .registry import BackboneSpec, register_backbone

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MODEL_NAMES = ("MTT_musicnn", "MSD_musicnn")
ALIASES = {"musicnn-mtt": "MTT_musicnn", "musicnn-msd": "MSD_musicnn", "mtt": "MTT_musicnn", "msd": "MSD_musicnn"}
TF_BN_EPSILON = 1e-3  # tf.compat.v1.layers.batch_normalization default
N_MELS = 96
PATCH_FRAMES = 187
FRONTEND_CHANNELS = 2 * 204 + 3 * 51  # 561
MIDEND_FILTERS = 64
BACKBONE_CHANNELS = FRONTEND_CHANNELS + 3 * MIDEND_FILTERS  # 753
PENULTIMATE_UNITS = 200
N_TAGS = 50
EMBEDDING_LAYERS = ("penultimate", "pool", "max_pool", "mean_pool")
# Exported front-end convs get zero filters up to a multiple of this: onnxruntime pools in its
# blocked layout only when the channels fill whole blocks (8 with AVX2, 16 with AVX-512).
EXPORT_CHANNEL_BLOCK = 16


def _bn2d(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=TF_BN_EPSILON, momentum=0.01)


def _bn1d(channels: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(channels, eps=TF_BN_EPSILON, momentum=0.01)


class FrontEndBlock(nn.Module):
    """conv → ReLU → batch norm → max over all frequencies, on ``(B, 1, T, F)``.

    ``time_pad = (before, after)`` zero-pads time only: ``(3, 3)`` for the timbral
    blocks (musicnn pads before a "valid" conv), TF "same" for the temporal ones
    (``(k - 1) // 2`` before, the rest after). Frequency is never padded for timbral
    blocks ("valid"); the temporal kernels are one band wide, so "same" needs none.
    """

    def __init__(self, filters: int, kernel: tuple[int, int], time_pad: tuple[int, int]):
        super().__init__()
        self.time_pad = tuple(time_pad)
        self.conv = nn.Conv2d(1, filters, kernel)
        self.bn = _bn2d(filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, 0, *self.time_pad))
        if self.bn.training:
            return self.bn(F.relu(self.conv(x))).amax(dim=3)  # (B, filters, T)
        if torch.onnx.is_in_onnx_export():
            return self._exported_forward(x)
        # With fixed statistics, ReLU and batch norm are per-channel monotone maps, so they
        # commute with the max over frequencies (BN with a negative scale turns it into a min).
        # Applying them after the reduction gives the same numbers at a fraction of the cost.
        z = self.conv(x)
        peak = torch.where((self._bn_sign() > 0)[None, :, None], z.amax(dim=3), z.amin(dim=3))
        return self.bn(F.relu(peak).unsqueeze(3)).squeeze(3)

    def _bn_sign(self) -> torch.Tensor:
        """+1 where batch norm's scale is >= 0, -1 where it is negative (a max becomes a min)."""
        scale = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
        return torch.where(scale >= 0, 1.0, -1.0)

    def _exported_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The eval forward in the form onnxruntime runs fastest, with the same numbers.

        The min is the max of the negated conv (negated weights and bias: exact in float),
        so one max serves every channel. The max is a ``MaxPool`` over all frequencies on
        filters padded with zero filters to a multiple of :data:`EXPORT_CHANNEL_BLOCK`:
        onnxruntime then keeps the conv's output in its blocked layout (NCHWc) and pools it
        there, instead of reordering the whole map for a ``ReduceMax`` (0.8x the network's
        time, bench/predict.py).
        """
        sign = self._bn_sign()
        filters, extra = self.conv.out_channels, -self.conv.out_channels % EXPORT_CHANNEL_BLOCK
        weight = self.conv.weight * sign[:, None, None, None]
        weight = torch.cat([weight, weight.new_zeros(extra, *weight.shape[1:])])
        bias = torch.cat([self.conv.bias * sign, self.conv.bias.new_zeros(extra)])
        z = F.conv2d(x, weight, bias)
        bands = int(x.shape[3]) - self.conv.kernel_size[1] + 1  # a constant: the graph's input has 96 bands
        peak = F.max_pool2d(z, (1, bands)).flatten(2)[:, :filters] * sign[:, None]
        return self.bn(F.relu(peak).unsqueeze(3)).flatten(2)


def _same_pad(kernel: int) -> tuple[int, int]:
    """TensorFlow's "same" padding for stride 1: the odd sample goes after."""
    return ((kernel - 1) // 2, kernel - 1 - (kernel - 1) // 2)


class MusicnnFrontEnd(nn.Module):
    """Input batch norm, 2 timbral + 3 temporal blocks: ``(B, 1, T, 96)`` → ``(B, 561, T)``."""

    def __init__(self, n_mels: int = N_MELS, num_filt: float = 1.6):
        super().__init__()
        self.input_bn = _bn2d(1)
        timbral_filters, temporal_filters = int(num_filt * 128), int(num_filt * 32)
        self.timbral = nn.ModuleList([
            FrontEndBlock(timbral_filters, (7, int(0.4 * n_mels)), (3, 3)),
            FrontEndBlock(timbral_filters, (7, int(0.7 * n_mels)), (3, 3)),
        ])
        self.temporal = nn.ModuleList([
            FrontEndBlock(temporal_filters, (k, 1), _same_pad(k)) for k in (128, 64, 32)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_bn(x)
        return torch.cat([block(x) for block in (*self.timbral, *self.temporal)], dim=1)


class MidEndLayer(nn.Module):
    """conv over time (7 frames, zero padding 3) → ReLU → batch norm: ``(B, C, T)`` → ``(B, 64, T)``."""

    def __init__(self, in_channels: int, filters: int = MIDEND_FILTERS):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, filters, 7, padding=3)
        self.bn = _bn1d(filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(x)))


class MusicnnMidEnd(nn.Module):
    """Three dense/residual 1-D conv layers; returns front-end + 3 outputs concatenated (753 channels)."""

    def __init__(self, in_channels: int = FRONTEND_CHANNELS, filters: int = MIDEND_FILTERS):
        super().__init__()
        self.layers = nn.ModuleList([MidEndLayer(in_channels, filters), MidEndLayer(filters, filters),
                                     MidEndLayer(filters, filters)])

    def forward(self, front: torch.Tensor) -> torch.Tensor:
        cnn1 = self.layers[0](front)
        cnn2 = self.layers[1](cnn1) + cnn1
        cnn3 = self.layers[2](cnn2) + cnn2
        return torch.cat([front, cnn1, cnn2, cnn3], dim=1)


class MusicnnBackEnd(nn.Module):
    """Temporal max + mean pooling, batch norm, dense 200 (penultimate), dense 50 (logits)."""

    def __init__(self, in_channels: int = BACKBONE_CHANNELS, units: int = PENULTIMATE_UNITS, n_tags: int = N_TAGS):
        super().__init__()
        self.pool_bn = _bn1d(2 * in_channels)
        self.dropout1 = nn.Dropout(0.5)
        self.dense = nn.Linear(2 * in_channels, units)
        self.dense_bn = _bn1d(units)
        self.dropout2 = nn.Dropout(0.5)
        self.output = nn.Linear(units, n_tags)

    @staticmethod
    def pool(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(max over time, mean over time)`` of ``(B, C, T)``, each ``(B, C)``."""
        return features.amax(dim=2), features.mean(dim=2)

    def penultimate(self, features: torch.Tensor) -> torch.Tensor:
        max_pool, mean_pool = self.pool(features)
        # TF flattens concat([max, mean], axis=2) of (B, C, 1) tensors: max and mean interleave.
        flat = torch.stack([max_pool, mean_pool], dim=2).flatten(1)
        return self.dense_bn(F.relu(self.dense(self.dropout1(self.pool_bn(flat)))))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.output(self.dropout2(self.penultimate(features)))


def _as_patches(x: torch.Tensor) -> torch.Tensor:
    """``(B, 96, T)`` or ``(B, 1, 96, T)`` (genrekit's mel × frames) → ``(B, 1, T, 96)`` (musicnn's time × mel)."""
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4 or x.shape[1] != 1:
        raise ConfigError(f"musicnn expects (B, {N_MELS}, T) or (B, 1, {N_MELS}, T), got {tuple(x.shape)}")
    if x.shape[2] != N_MELS:
        raise ConfigError(f"musicnn expects {N_MELS} mel bands, got {x.shape[2]} (input {tuple(x.shape)})")
    return x.float().transpose(2, 3)


class MusiCNN(nn.Module):
    """The musicnn tagger (``build_musicnn`` with 64 mid-end filters and 200 back-end units).

    ``forward`` returns tag **logits** ``(B, 50)``; ``predict`` applies the sigmoid that
    musicnn's extractor applies (tag probabilities, the "taggram" values).

    Parameters
    ----------
    n_tags : int
        Output tags (50 for both shipped models).
    tags : list of str, optional
        Tag names, in output order.

    Examples
    --------
    >>> model = MusiCNN().eval()
    >>> model(torch.zeros(2, 96, 187)).shape
    torch.Size([2, 50])
    >>> model.embed(torch.zeros(2, 1, 96, 187)).shape
    torch.Size([2, 200])
    """

    def __init__(self, n_tags: int = N_TAGS, tags: list[str] | None = None):
        super().__init__()
        self.frontend = MusicnnFrontEnd()
        self.midend = MusicnnMidEnd()
        self.backend = MusicnnBackEnd(n_tags=n_tags)
        self.tags = list(tags) if tags is not None else None
        self.name: str | None = None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Front-end + mid-end features as the back-end takes them: ``(B, 753, T)``."""
        return self.midend(self.frontend(_as_patches(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tag logits ``(B, 50)`` of log-mel patches ``(B, 96, T)`` or ``(B, 1, 96, T)``."""
        return self.backend(self.features(x))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Tag probabilities (sigmoid of the logits), as musicnn's taggram."""
        return torch.sigmoid(self(x))

    def embed(self, x: torch.Tensor, layer: str = "penultimate") -> torch.Tensor:
        """Per-patch embeddings.

        Parameters
        ----------
        x : torch.Tensor
            Log-mel patches ``(B, 96, T)`` or ``(B, 1, 96, T)``.
        layer : {"penultimate", "pool", "max_pool", "mean_pool"}
            ``penultimate``: the 200-d batch-normalised dense layer before the tag
            layer (musicnn's ``penultimate``). ``max_pool`` / ``mean_pool``: the 753-d
            temporal max / mean of the mid-end output (musicnn's ``max_pool`` /
            ``mean_pool``). ``pool``: both concatenated, ``[max, mean]`` (1506-d).

        Returns
        -------
        torch.Tensor, shape (B, D)
        """
        if layer not in EMBEDDING_LAYERS:
            raise ConfigError(f"layer must be one of {EMBEDDING_LAYERS}, not {layer!r}")
        feats = self.features(x)
        if layer == "penultimate":
            return self.backend.penultimate(feats)
        max_pool, mean_pool = self.backend.pool(feats)
        if layer == "max_pool":
            return max_pool
        if layer == "mean_pool":
            return mean_pool
        return torch.cat([max_pool, mean_pool], dim=1)


class MusicnnBackbone(nn.Module):
    """musicnn's front-end and mid-end as a genrekit backbone.

    ``(B, 1, 96, T)`` → ``(B, 753, 1, T)``: the 753 channels musicnn's back-end pools,
    laid out so that genrekit's head (concatenated max + mean pooling over ``H × W``)
    pools over time exactly as musicnn's back-end does.

    The first layer is musicnn's own input batch norm, so the backbone wants the raw
    ``log10(10000 mel + 1)`` features, not standardised ones (``norm_mean = 0``,
    ``norm_std = 1``): its spec says ``standardise_input=False``.
    """

    num_features = BACKBONE_CHANNELS

    def __init__(self, tagger: MusiCNN | None = None):
        super().__init__()
        tagger = tagger or MusiCNN()
        self.frontend = tagger.frontend
        self.midend = tagger.midend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.midend(self.frontend(_as_patches(x))).unsqueeze(2)


# --- weights ---------------------------------------------------------------------

def canonical_name(name: str) -> str:
    """``'MTT_musicnn'``, ``'musicnn-mtt'`` or ``'mtt'`` → ``'MTT_musicnn'`` (same for MSD)."""
    key = ALIASES.get(name.lower(), name) if isinstance(name, str) else name
    if key not in MODEL_NAMES:
        raise ConfigError(f"unknown musicnn model {name!r}; choose one of {', '.join(MODEL_NAMES + tuple(ALIASES))}")
    return key


def weights_path(name: str) -> Path:
    """Path of the shipped safetensors file of model ``name``."""
    return WEIGHTS_DIR / f"{canonical_name(name)}.safetensors"


def load_tags(name: str) -> list[str]:
    """The 50 tag names of model ``name``, in output order (``<name>.tags.txt``, one per line)."""
    path = WEIGHTS_DIR / f"{canonical_name(name)}.tags.txt"
    if not path.is_file():
        raise CheckpointError(f"musicnn tag list not found: {path} (run tools/convert_musicnn.py)")
    return path.read_text(encoding="utf-8").splitlines()


def load_state(name: str) -> dict[str, torch.Tensor]:
    """The shipped state dict of model ``name`` (PyTorch layout, ready for ``load_state_dict``)."""
    from safetensors.torch import load_file

    path = weights_path(name)
    if not path.is_file():
        raise CheckpointError(f"musicnn weights not found: {path} (run tools/convert_musicnn.py)")
    return load_file(str(path))


def load_musicnn(name: str = "MTT_musicnn", device="cpu") -> MusiCNN:
    """The pretrained tagger ``'MTT_musicnn'`` or ``'MSD_musicnn'``, in eval mode, offline.

    Examples
    --------
    >>> model = load_musicnn("MSD_musicnn")
    >>> model.tags[:3]
    ['rock', 'pop', 'alternative']
    """
    name = canonical_name(name)
    model = MusiCNN(tags=load_tags(name))
    model.load_state_dict(load_state(name))
    model.name = name
    return model.to(device).eval()


# --- genrekit backbones ------------------------------------------------------------

def _backbone_builder(name: str):
    def build(pretrained: bool = False, weights: str | None = None) -> MusicnnBackbone:
        tagger = MusiCNN()
        if weights:
            if not os.path.isfile(weights):
                raise ConfigError(f"weights file not found: {weights}")
            from safetensors.torch import load_file

            tagger.load_state_dict(load_file(weights))
        elif pretrained:
            tagger.load_state_dict(load_state(name))
        return MusicnnBackbone(tagger)

    return build


for _name, _model, _data in [("musicnn-msd", "MSD_musicnn", "Million Song Dataset"),
                             ("musicnn-mtt", "MTT_musicnn", "MagnaTagATune")]:
    register_backbone(BackboneSpec(
        _name, _backbone_builder(_model),
        f"musicnn front- and mid-end (0.47 M params) pretrained on the {_data} (Pons & Serra 2019)",
        feature_config=MUSICNN_FEATURES, pretrained_source="shipped", aliases=(_model,),
        standardise_input=False))  # musicnn normalises its raw input with its own first BatchNorm
