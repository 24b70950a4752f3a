"""Fracture boxes as an auxiliary training signal for the CAM (``--box-loss``).

Why: the heatmap a radiologist sees is the CAM the score is pooled from. Trained on image labels
alone, the reference model's CAM put its maximum inside a FracAtlas fracture box on 6 of 87
validation images: it finds *that* an image is fractured far better than *where*. FracAtlas
draws a box around each fracture; this module turns them into a target for the CAM.

The loss is the cross-entropy between the box coverage of each CAM cell (as a distribution over
the cells) and the CAM's spatial softmax: it moves the CAM's mass, and so its maximum, into the
boxes, without touching how the CAM is pooled into the score. Only fractured images with boxes
contribute; the others train exactly as before.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from models.preprocess import placement_for

Box = tuple[float, float, float, float]  # x, y, width, height in original image pixels


def stored_size(path: str | Path) -> tuple[int, int] | None:
    """(height, width) from the file's header, or None where the reader would rotate it (EXIF) or
    cannot tell without decoding: then its boxes are left out rather than misplaced."""
    try:
        with Image.open(path) as im:
            if im.getexif().get(0x0112, 1) != 1:  # Orientation: load_image transposes these
                return None
            return im.height, im.width
    except OSError:
        return None


def box_mask(boxes: list[Box], h: int, w: int, size: int) -> np.ndarray:
    """The boxes of an ``h`` x ``w`` image as a (size, size) uint8 mask in model-input coordinates."""
    pl = placement_for(h, w, size)
    mask = np.zeros((size, size), dtype=np.uint8)
    for x, y, bw, bh in boxes:
        x0 = int(np.floor(pl.offset_x + x * pl.scale))
        y0 = int(np.floor(pl.offset_y + y * pl.scale))
        x1 = int(np.ceil(pl.offset_x + (x + bw) * pl.scale))
        y1 = int(np.ceil(pl.offset_y + (y + bh) * pl.scale))
        mask[max(y0, 0) : max(y1, y0 + 1), max(x0, 0) : max(x1, x0 + 1)] = 1
    return mask


def box_loss(cam: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over images with a box of H(box coverage of the cells, spatial softmax of the CAM).

    ``cam`` (N, h, w) in logit units; ``mask`` (N, S, S) with S a multiple of h and w. Images with
    an empty mask are left out; with none in the batch the loss is 0 (and keeps the graph).
    """
    cover = F.adaptive_avg_pool2d(mask.float().unsqueeze(1), cam.shape[-2:]).flatten(1)  # (N, h*w)
    total = cover.sum(1)
    has = total > 0
    if not bool(has.any()):
        return cam.sum() * 0.0
    target = cover[has] / total[has, None]
    logp = F.log_softmax(cam[has].flatten(1).float(), dim=1)
    return -(target * logp).sum(1).mean()


def training_boxes(cfg, split) -> dict[str, list[Box]]:
    """The boxes of the training images (file name -> boxes): ``cfg.boxes``, or for a FracAtlas
    source its own ``boxes.csv``. Boxes of validation images are never used."""
    from models.datasources import read_fracatlas_boxes
    from models.errors import ConfigError

    if cfg.boxes:
        src = Path(cfg.boxes)
        root = src.parent if src.name == "boxes.csv" else src
    elif str(cfg.data).startswith("fracatlas:"):
        root = Path(str(cfg.data).split(":", 1)[1])
    else:
        raise ConfigError("--box-loss needs fracture boxes: give --boxes PATH/boxes.csv "
                          "(FracAtlas sources use their own boxes.csv)")
    every = read_fracatlas_boxes(root)
    names = {Path(r.path).name for r in split.records if r.label == 1}
    return {k: v for k, v in every.items() if k in names}


def init_network(net: torch.nn.Module, cfg) -> None:
    """Start from a mura-train checkpoint's whole network (``--init-from``): fine-tuning, e.g. a
    second stage that adds box supervision. The architecture and body parts must match; the CAM
    stride may differ (it changes no weight)."""
    from models.errors import ConfigError
    from models.nn.checkpoint import load_checkpoint

    ck = load_checkpoint(cfg.init_from)
    if ck["meta"]["architecture"] != cfg.arch:
        raise ConfigError(f"--init-from {cfg.init_from}: a {ck['meta']['architecture']} checkpoint, "
                          f"this run trains {cfg.arch}")
    try:
        net.load_state_dict(ck["model"])
    except RuntimeError as e:
        raise ConfigError(f"--init-from {cfg.init_from}: its weights do not fit this network "
                          f"(different body parts?): {str(e).splitlines()[0]}") from e
