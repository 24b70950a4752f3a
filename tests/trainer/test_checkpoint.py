"""Rebuilding a network from a checkpoint's meta."""

import torch

from models.networks import create_model
from trainer.checkpoint import model_from_checkpoint


def test_a_checkpoint_rebuilds_its_cam_stride():
    net = create_model("efficientnet_lite0", num_body_parts=2, cam_pool="mean", cam_stride=16)
    meta = {"architecture": "efficientnet_lite0", "body_parts": ["hand", "leg"], "cam_pool": "mean",
            "cam_stride": 16}
    rebuilt = model_from_checkpoint({"meta": meta, "model": net.state_dict()})
    with torch.no_grad():
        _, _, cam = rebuilt.forward_with_cam(torch.zeros(1, 1, 128, 128))
    assert cam.shape[-2:] == (8, 8)
    # checkpoints written before cam_stride existed rebuild at the backbone's own stride
    old = model_from_checkpoint({"meta": {k: v for k, v in meta.items() if k != "cam_stride"},
                                 "model": net.state_dict()})
    with torch.no_grad():
        assert old.forward_with_cam(torch.zeros(1, 1, 128, 128))[2].shape[-2:] == (4, 4)


def test_initialisation_follows_init_from_to_its_origin(tiny_checkpoint):
    """Stage 2 of the reference model was fine-tuned from an ImageNet-initialised checkpoint; its
    card called the weights 'trained from random initialisation' because the chain was lost."""
    from trainer.train import TrainConfig, initialisation

    assert initialisation(TrainConfig()) == "random"
    assert initialisation(TrainConfig(pretrained_weights="imagenet")) == "ImageNet (imagenet)"
    chained = initialisation(TrainConfig(init_from=str(tiny_checkpoint)))
    assert chained.startswith("checkpoint ") and chained.endswith("itself initialised from random")
