"""Evaluation figures as PNG, drawn with Pillow only: ROC curves, confusion matrices, reliability.

Why Pillow: neither the runtime nor the training environment carries matplotlib, and these are
simple line and grid drawings. Numpy + Pillow, no torch and no Qt, so the trainer, the compress
gate and (later) the desktop report can all use them. Every function takes numbers already
computed by :mod:`models.metrics` (the tests check those numbers) and writes the file atomically.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from models.fsutil import atomic_write_bytes
from models.metrics import confusion_matrix, reliability_bins, roc_auc, roc_curve

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189)]
SHADE_RANGE = 150  # a cell's shade: 255 - SHADE_RANGE x its row fraction (black text stays legible)
_PAD_L, _PAD_B, _PAD_T, _PAD_R = 46, 40, 40, 12


def _fmt(x: float, spec: str) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _save(img: Image.Image, path: str | Path) -> Path:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())


def _unit_axes(d: ImageDraw.ImageDraw, k: int, size: int, title: str, xlabel: str, ylabel: str):
    """Square panel ``k`` with [0, 1] x [0, 1] axes and ticks; returns the data -> pixel map."""
    x0, y0 = k * size + _PAD_L, _PAD_T
    w, h = size - _PAD_L - _PAD_R, size - _PAD_T - _PAD_B

    def pt(fx: float, fy: float) -> tuple[float, float]:
        return x0 + fx * w, y0 + (1 - fy) * h

    d.rectangle([x0, y0, x0 + w, y0 + h], outline="black")
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        tx, ty = pt(t, 0)
        d.line([tx, ty, tx, ty + 4], fill="black")
        d.text((tx - 8, ty + 6), f"{t:.2f}"[:4], fill="black")
        lx, ly = pt(0, t)
        d.line([lx - 4, ly, lx, ly], fill="black")
        d.text((lx - 30, ly - 5), f"{t:.2f}"[:4], fill="black")
    d.line([pt(0, 0), pt(1, 1)], fill=(160, 160, 160))
    d.text((x0 + w / 2 - 50, y0 + h + 22), xlabel, fill="black")
    d.text((x0 - 44, y0 - 16), ylabel, fill="black")
    d.text((x0 - 44, 4), str(title)[:56], fill="black")
    return pt, (x0, y0, w, h)


def draw_roc_png(path: str | Path, curves: list[dict], size: int = 360) -> Path:
    """ROC curves, one panel per entry, side by side.

    ``curves``: ``{"title": str, "labels": array, "series": {name: scores}}`` per panel (the same
    layout as ``compress.validate.draw_roc_png``). Each panel has axes, ticks, the chance diagonal
    and a legend with the AUCs; the first series is drawn thick.
    """
    panels = max(len(curves), 1)
    img = Image.new("RGB", (size * panels, size), "white")
    d = ImageDraw.Draw(img)
    for k, c in enumerate(curves):
        pt, (x0, y0, w, h) = _unit_axes(d, k, size, c["title"], "false positive rate", "true positive rate")
        y = np.asarray(c["labels"]).astype(int)
        for j, (name, scores) in enumerate(c["series"].items()):
            col = COLOURS[j % len(COLOURS)]
            if len(y) and 0 < y.sum() < len(y):
                fpr, tpr, _ = roc_curve(y, scores)
                d.line([pt(float(a), float(b)) for a, b in zip(fpr, tpr, strict=True)], fill=col,
                       width=3 if j == 0 else 1)
            auc = roc_auc(y, scores) if len(y) else float("nan")
            ly = y0 + h - 14 * (len(c["series"]) - j) - 4
            d.line([x0 + w - 120, ly + 6, x0 + w - 104, ly + 6], fill=col, width=3)
            d.text((x0 + w - 100, ly), f"{name} AUC {_fmt(auc, '.3f')}", fill=col)
    return _save(img, path)


def draw_confusion_png(path: str | Path, panels: list[dict], cell: int = 56) -> list[np.ndarray]:
    """Confusion matrices, one panel per entry; returns the matrices drawn (rows = truth).

    ``panels``: ``{"title": str, "labels": [class names], "y_true": ints, "y_pred": ints}``; the
    counts come from :func:`models.metrics.confusion_matrix`. Cells are shaded by the fraction of
    their row (so a rare class's errors stay visible) and print the count and that fraction.
    """
    matrices = [confusion_matrix(p["y_true"], p["y_pred"], len(p["labels"])) for p in panels]
    left, top = 110, 60
    sizes = [(left + cell * len(p["labels"]) + 16, top + cell * len(p["labels"]) + 30) for p in panels]
    img = Image.new("RGB", (max(sum(w for w, _ in sizes), 1), max((h for _, h in sizes), default=1)), "white")
    d = ImageDraw.Draw(img)
    ox = 0
    for p, m, (pw, _) in zip(panels, matrices, sizes, strict=True):
        names = [str(n) for n in p["labels"]]
        d.text((ox + 6, 4), str(p["title"])[:60], fill="black")
        d.text((ox + left, top - 34), "predicted", fill="black")
        d.text((ox + 6, top - 16), "true \\ pred", fill="black")
        rows = m.sum(axis=1, keepdims=True)
        frac = np.divide(m, rows, out=np.zeros(m.shape, dtype=np.float64), where=rows > 0)
        for i, name in enumerate(names):
            d.text((ox + left + i * cell + 3, top - 16), name[:8], fill="black")
            d.text((ox + 6, top + i * cell + cell / 2 - 5), name[:16], fill="black")
            for j in range(len(names)):
                x, y = ox + left + j * cell, top + i * cell
                shade = int(255 - SHADE_RANGE * frac[i, j])
                fill = (shade, shade, 255) if i != j else (shade, 255, shade)  # errors blue, hits green
                d.rectangle([x, y, x + cell, y + cell], fill=fill, outline="black")
                d.text((x + 5, y + cell / 2 - 12), str(int(m[i, j])), fill="black")
                d.text((x + 5, y + cell / 2 + 2), f"{100 * frac[i, j]:.0f} %", fill="black")
        ox += pw
    _save(img, path)
    return matrices


def draw_reliability_png(path: str | Path, panels: list[dict], bins: int = 10, size: int = 360) -> list[dict]:
    """Reliability diagrams, one panel per entry; returns the bins drawn.

    ``panels``: ``{"title": str, "labels": ints, "probs": floats}``. Bars show the observed
    fraction of positives per equal-width probability bin (:func:`models.metrics.reliability_bins`,
    the ECE's bins), dots the mean predicted probability; a calibrated model sits on the diagonal.
    The bin's image count is printed above each bar.
    """
    n = max(len(panels), 1)
    img = Image.new("RGB", (size * n, size), "white")
    d = ImageDraw.Draw(img)
    drawn = []
    for k, p in enumerate(panels):
        rb = reliability_bins(p["labels"], p["probs"], bins)
        drawn.append(rb)
        pt, _ = _unit_axes(d, k, size, p["title"], "predicted probability", "observed fraction positive")
        for b in range(bins):
            if rb["count"][b] == 0:
                continue
            lo, hi = rb["edges"][b], rb["edges"][b + 1]
            (xa, ya), (xb, yb) = pt(lo, rb["frac_pos"][b]), pt(hi, 0)
            d.rectangle([xa + 1, ya, xb - 1, yb], fill=(158, 202, 225), outline=COLOURS[0])
            mx, my = pt(rb["mean_prob"][b], rb["frac_pos"][b])
            d.ellipse([mx - 3, my - 3, mx + 3, my + 3], fill=COLOURS[1])
            d.text((xa + 2, ya - 12), str(int(rb["count"][b])), fill="black")
    _save(img, path)
    return drawn


def binary_confusion_panel(title: str, y_true: Sequence[int], probs: Sequence[float], threshold: float) -> dict:
    """A 2x2 confusion panel for the finding at ``threshold`` (0 = negative, 1 = positive)."""
    y = np.asarray(y_true).astype(int)
    return {"title": f"{title} @ {threshold:.3f}", "labels": ["negative", "positive"], "y_true": y,
            "y_pred": (np.asarray(probs, dtype=np.float64) >= threshold).astype(int)}
