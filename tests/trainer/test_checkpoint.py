"""Where a checkpoint's weights came from (the card's licence depends on it)."""


def test_initialisation_follows_init_from_to_its_origin(tiny_checkpoint):
    """Stage 2 of the reference model was fine-tuned from an ImageNet-initialised checkpoint; its
    card called the weights 'trained from random initialisation' because the chain was lost."""
    from trainer.train import TrainConfig, initialisation

    assert initialisation(TrainConfig()) == "random"
    assert initialisation(TrainConfig(pretrained_weights="imagenet")) == "ImageNet (imagenet)"
    chained = initialisation(TrainConfig(init_from=str(tiny_checkpoint)))
    assert chained.startswith("checkpoint ") and chained.endswith("itself initialised from random")
