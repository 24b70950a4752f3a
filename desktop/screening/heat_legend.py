"""The heatmap's colour scale, drawn once for every place a heatmap appears (Qt-free).

A heatmap without a scale invites reading colour as certainty. The overlay shows, per cell of the
model's class-activation map, sigmoid(CAM logit): the probability the model's own head would give
that cell alone (:meth:`models.engine.ImagePrediction.heatmap`). The legend says so, in
probability and logit units, and states the grid the model really has (16 x 16 cells for the
stride-16 reference model at 256 px), because the smooth picture is an upsampling of that grid.
The viewer, the PDF/PNG study report, the HTML screening report and the Secondary Capture all
use :func:`legend_rgb` and :func:`legend_text`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from desktop.screening.render import colormap_lut, task_word

#: Probability ticks of the scale, and where logit units are given too.
TICKS = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


def cam_grid(card: Mapping) -> tuple[int, int] | None:
    """(rows, cols) of the model's CAM from the card's ``outputs.cam.shape``; None if unknown."""
    try:
        shape = card["outputs"]["cam"]["shape"]
        return int(shape[-2]), int(shape[-1])
    except (KeyError, TypeError, ValueError, IndexError):
        return None


def legend_text(card: Mapping) -> str:
    """One line: what the colour means and the grid it comes from."""
    word = task_word(card)
    grid = cam_grid(card)
    size = (card.get("input") or {}).get("preprocessing", {}).get("input_size")
    where = ""
    if grid is not None:
        where = f"; the model's map has {grid[0]} × {grid[1]} cells"
        if size:
            where += f" (one per {int(size) // max(grid[1], 1)} px of its {int(size)} px input), smoothed for display"
    return f"Heatmap colour = local P({word}) = sigmoid(CAM logit), 0 (cold) to 1 (hot){where}"


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType
        return ImageFont.load_default()


def legend_rgb(card: Mapping, width: int = 360, cmap: str = "turbo", scale: float = 1.0) -> np.ndarray:
    """(H, width, 3) uint8: a colour bar with probability ticks above and logit values below."""
    word = task_word(card)
    fs = max(9, int(11 * scale))
    pad, bar_h = int(6 * scale), int(14 * scale)
    h = pad + fs + 4 + bar_h + 4 + fs + 4 + fs + pad
    img = Image.new("RGB", (width, h), (255, 255, 255))
    d = ImageDraw.Draw(img)
    font = _font(fs)
    x0, x1 = pad + fs, width - pad - fs
    d.text((pad, pad), f"local P({word})", fill=(30, 30, 30), font=font)
    y_bar = pad + fs + 4
    lut = colormap_lut(cmap)
    cols = np.linspace(0, 255, x1 - x0).astype(int)
    bar = np.repeat(lut[cols][None], bar_h, axis=0)
    img.paste(Image.fromarray(np.ascontiguousarray(bar)), (x0, y_bar))
    for t in TICKS:
        x = x0 + t * (x1 - x0 - 1)
        d.line([(x, y_bar + bar_h), (x, y_bar + bar_h + 3)], fill=(30, 30, 30))
        label = f"{t:g}"
        d.text((x - d.textlength(label, font=font) / 2, y_bar + bar_h + 4), label, fill=(30, 30, 30), font=font)
    y_logit = y_bar + bar_h + 4 + fs + 4
    for t in (0.1, 0.5, 0.9):
        x = x0 + t * (x1 - x0 - 1)
        label = f"logit {math.log(t / (1 - t)):+.1f}".replace("+0.0", "0")
        d.text((x - d.textlength(label, font=font) / 2, y_logit), label, fill=(90, 90, 90), font=font)
    return np.asarray(img, dtype=np.uint8)
