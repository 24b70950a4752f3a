import pytest
import torch

from models.errors import ConfigError
from models.networks import (
    ExportWrapper,
    create_model,
    list_models,
    load_pretrained_backbone,
    pool_cam,
)


def test_registry_lists_the_four_backbones():
    assert set(list_models()) == {"custom_cnn", "resnet50", "densenet169", "efficientnet_b0"}
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
