import pytest
import torch

from models.errors import ConfigError
from models.nn.networks import (
    ExportWrapper,
    create_model,
    list_models,
    load_pretrained_backbone,
    pool_cam,
)


def test_registry_lists_the_backbones():
    assert set(list_models()) == {"custom_cnn", "resnet50", "densenet169", "efficientnet_b0",
                                  "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"}
    with pytest.raises(ConfigError, match="vit_huge"):
        create_model("vit_huge", 7)


@pytest.mark.parametrize("name", ["custom_cnn", "resnet50", "densenet169", "efficientnet_b0"])
def test_forward_shapes_and_cam_identity(name):
    torch.manual_seed(0)
    net = create_model(name, num_body_parts=7).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        logit, bp = net(x)
        logit2, bp2, cam = net.forward_with_cam(x)
        prob, bpp, cam3 = ExportWrapper(net)(x)
    assert logit.shape == (2,) and bp.shape == (2, 7) and cam.ndim == 3 and cam.shape[0] == 2
    torch.testing.assert_close(logit, logit2)
    torch.testing.assert_close(pool_cam(cam, net.cam_pool), logit)  # the heatmap is the evidence
    torch.testing.assert_close(prob, torch.sigmoid(logit))
    torch.testing.assert_close(bpp.sum(1), torch.ones(2))


def test_pool_cam_modes():
    cam = torch.tensor([[[0.0, 0.0], [0.0, 4.0]]])
    assert pool_cam(cam, "mean").item() == pytest.approx(1.0)
    assert pool_cam(cam, "max").item() == pytest.approx(4.0)
    assert 1.0 < pool_cam(cam, "lse").item() < 4.0
    with pytest.raises(ConfigError):
        pool_cam(cam, "median")


def test_pretrained_rgb_weights_are_summed_into_one_channel(tmp_path):
    import timm

    rgb = timm.create_model("resnet50", pretrained=False, in_chans=3, num_classes=1000)
    torch.save(rgb.state_dict(), tmp_path / "imagenet.pth")
    net = create_model("resnet50", 7, pretrained_weights=tmp_path / "imagenet.pth")
    conv = net.backbone.model.conv1.weight
    torch.testing.assert_close(conv, rgb.conv1.weight.sum(dim=1, keepdim=True))
    torch.testing.assert_close(net.backbone.model.layer4[0].conv1.weight, rgb.layer4[0].conv1.weight)


def test_bad_pretrained_files(tmp_path):
    net = create_model("custom_cnn", 7)
    with pytest.raises(ConfigError, match="not found"):
        load_pretrained_backbone(net.backbone, tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(ConfigError, match="not a loadable"):
        load_pretrained_backbone(net.backbone, tmp_path / "junk.pth")
    torch.save({"unrelated.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="no tensor matches"):
        load_pretrained_backbone(net.backbone, tmp_path / "other.pth")


# --- --pretrained (timm hub) -----------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    """Every socket connection and name lookup fails at once, as on an offline machine.

    Also counts the attempts, and clears the variables that would skip the probe.
    """
    import socket

    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[:1])
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    for k in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HF_ENDPOINT"):
        monkeypatch.delenv(k, raising=False)
    return attempts


def test_pretrained_offline_fails_fast_naming_the_local_file_option(no_network, monkeypatch):
    import time

    import timm

    def must_not_download(*a, **kw):
        if kw.get("pretrained"):
            raise AssertionError("timm was asked to download although the hub is unreachable")
        return real(*a, **kw)

    real = timm.create_model
    monkeypatch.setattr(timm, "create_model", must_not_download)
    t = time.perf_counter()
    with pytest.raises(ConfigError, match="hub cannot be reached") as e:
        create_model("efficientnet_b0", 3, pretrained=True)
    assert time.perf_counter() - t < 10
    assert "--pretrained-weights PATH" in str(e.value) and "huggingface.co" in str(e.value)
    assert no_network  # it did probe (and the probe was refused)


def test_pretrained_hub_errors_become_config_errors(no_network, monkeypatch):
    """When the probe is skipped (HF_HUB_OFFLINE, proxy) the hub client's own failure is wrapped."""
    import timm

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def offline_cache_miss(*a, **kw):
        raise FileNotFoundError("resnet50.a1_in1k not in the local cache")

    monkeypatch.setattr(timm, "create_model", offline_cache_miss)
    with pytest.raises(ConfigError, match="--pretrained-weights PATH") as e:
        create_model("resnet50", 3, pretrained=True)
    assert "not in the local cache" in str(e.value) and isinstance(e.value.__cause__, FileNotFoundError)
    assert not no_network  # HF_HUB_OFFLINE: no probe


def test_pretrained_asks_timm_for_one_channel_imagenet_weights(monkeypatch):
    """Online (probe answered), timm is called with pretrained=True and in_chans=1."""
    import timm

    import models.nn.networks as networks

    monkeypatch.setattr(networks, "hub_unreachable_reason", lambda *a, **k: None)
    calls = []
    real = timm.create_model

    def fake(name, **kw):
        calls.append((name, kw))
        return real(name, **{**kw, "pretrained": False})

    monkeypatch.setattr(timm, "create_model", fake)
    net = create_model("densenet169", 4, pretrained=True)
    assert calls == [("densenet169", {"pretrained": True, "in_chans": 1, "num_classes": 0, "global_pool": ""})]
    assert net.body_part_head.out_features == 4


def test_pretrained_flag_errors():
    with pytest.raises(ConfigError, match="custom_cnn.*no pretrained weights"):
        create_model("custom_cnn", 3, pretrained=True)
    with pytest.raises(ConfigError, match="not both"):
        create_model("resnet50", 3, pretrained=True, pretrained_weights="x.pth")


def test_hub_probe_answers_quickly_when_blocked(no_network):
    from models.nn.networks import hub_unreachable_reason

    reason = hub_unreachable_reason(timeout=1.0)
    assert reason and "huggingface.co:443" in reason


def test_cam_stride_16_doubles_the_heatmap_with_the_same_weights():
    """Dilated last stages: a 2x finer CAM from the very same parameters (a stride-32 checkpoint
    loads into it), and the score is still the pooled CAM."""
    torch.manual_seed(0)
    coarse = create_model("efficientnet_lite0", num_body_parts=3).eval()
    fine = create_model("efficientnet_lite0", num_body_parts=3, cam_stride=16).eval()
    fine.load_state_dict(coarse.state_dict())  # strict: no parameter added or reshaped
    x = torch.randn(1, 1, 128, 128)
    with torch.no_grad():
        _, _, cam32 = coarse.forward_with_cam(x)
        logit, _, cam16 = fine.forward_with_cam(x)
    assert cam32.shape[-2:] == (4, 4) and cam16.shape[-2:] == (8, 8)
    torch.testing.assert_close(pool_cam(cam16, fine.cam_pool), logit)


def test_cam_stride_is_refused_where_the_backbone_cannot_dilate():
    with pytest.raises(ConfigError, match="custom_cnn.*stride"):
        create_model("custom_cnn", 3, cam_stride=16)
    with pytest.raises(ConfigError, match="8, 16 or 32"):
        create_model("efficientnet_lite0", 3, cam_stride=12)
