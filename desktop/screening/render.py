"""Qt-free display logic of the viewer: windowing to 8 bits, heatmap blending, result wording.

Kept apart from the widgets so the exact pixels and words a user sees can be tested without a
display, and so a later renderer (a report export, a web view) can reuse them unchanged. Nothing
here imports Qt.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from models.labels import TASK_WORDS

__all__ = [
    "HEAT_FLOOR",
    "DISCLAIMER",
    "VERDICT_STYLES",
    "Orientation",
    "blend_heatmap",
    "card_html",
    "colormap_lut",
    "drag_window",
    "format_probability",
    "gray_to_rgb",
    "operating_points_text",
    "plural",
    "render_rgb",
    "task_word",
    "thumbnail_u8",
    "to_uint8",
    "verdict_text",
]

#: Shown permanently in the window and in every export: the model output is not a diagnosis.
DISCLAIMER = "Research use only — not for diagnostic use"

#: (background, text) colours of the verdict badge.
VERDICT_STYLES: dict[str, tuple[str, str]] = {
    "likely": ("#b3261e", "#ffffff"),
    "suspicious": ("#e8a317", "#1b1b1b"),
    "negative": ("#3c6e47", "#ffffff"),
    "failed": ("#5f6368", "#ffffff"),
    "not_indicated": ("#3f51b5", "#ffffff"),
}


def to_uint8(display01: np.ndarray, invert: bool = False) -> np.ndarray:
    """Quantise a [0, 1] display image to uint8, optionally inverted.

    Windowing happens before this (in :meth:`LoadedImage.display`), because Qt shows 12/16-bit
    data as Grayscale16 nearly black; inversion happens after, on the 8-bit values, so that
    "invert" is exactly ``255 - v`` and toggling it twice gives the same pixels back.
    """
    # one float32 buffer, worked in place: the same values as rint(clip(x, 0, 1) * 255) (scaling
    # by 255 and clipping to [0, 255] commute exactly in float32), a third of the memory traffic
    buf = np.multiply(np.asarray(display01, dtype=np.float32), np.float32(255.0),
                      dtype=np.float32)
    np.clip(buf, 0.0, 255.0, out=buf)
    np.rint(buf, out=buf)
    if invert:
        np.subtract(np.float32(255.0), buf, out=buf)
    return buf.astype(np.uint8)


def thumbnail_u8(display01: np.ndarray, size: int) -> np.ndarray:
    """A small uint8 copy, at most ``size`` pixels on the long side, by block averaging.

    Averaging (not striding) keeps thin bright cortex visible in a 96-pixel thumbnail; it runs
    in the worker so the thumbnail strip costs the UI thread nothing.
    """
    a = np.asarray(display01, dtype=np.float32)
    f = max(1, int(np.ceil(max(a.shape) / max(int(size), 1))))
    h, w = (a.shape[0] // f) * f, (a.shape[1] // f) * f
    if f > 1 and h and w:
        # rows first (contiguous runs), then columns: 2-3x faster than one mean over two
        # strided axes of the full image
        rows = a[:h, :w].reshape(h // f, f, w).sum(axis=1, dtype=np.float32)
        a = rows.reshape(h // f, w // f, f).sum(axis=2, dtype=np.float32) / np.float32(f * f)
    return to_uint8(a)


def gray_to_rgb(gray_u8: np.ndarray) -> np.ndarray:
    """(H, W) uint8 -> (H, W, 3) uint8, C-contiguous, ready for a QImage of Format_RGB888."""
    g = np.asarray(gray_u8, dtype=np.uint8)
    out = np.empty((*g.shape, 3), dtype=np.uint8)
    for k in range(3):  # one strided copy per channel: twice as fast as np.repeat
        out[..., k] = g
    return out


# Anchors of a perceptually ordered "turbo"-like map: dark blue (cold) -> red (hot). A handful of
# anchors interpolated linearly is enough for an overlay and avoids a matplotlib dependency.
_COLORMAPS: dict[str, list[tuple[float, tuple[int, int, int]]]] = {
    "turbo": [
        (0.00, (48, 18, 59)),
        (0.15, (70, 107, 227)),
        (0.30, (40, 188, 235)),
        (0.45, (50, 241, 151)),
        (0.60, (164, 252, 60)),
        (0.75, (251, 185, 56)),
        (0.90, (228, 70, 10)),
        (1.00, (122, 4, 3)),
    ],
    "hot": [
        (0.00, (0, 0, 0)),
        (0.40, (230, 0, 0)),
        (0.75, (255, 210, 0)),
        (1.00, (255, 255, 255)),
    ],
}


def colormap_lut(name: str = "turbo") -> np.ndarray:
    """A (256, 3) uint8 lookup table for the named colormap ("turbo" or "hot")."""
    try:
        anchors = _COLORMAPS[name]
    except KeyError:
        raise ValueError(f"unknown colormap {name!r}; choose one of {sorted(_COLORMAPS)}") from None
    xs = np.array([a for a, _ in anchors], dtype=np.float64)
    cols = np.array([c for _, c in anchors], dtype=np.float64)
    t = np.linspace(0.0, 1.0, 256)
    lut = np.stack([np.interp(t, xs, cols[:, k]) for k in range(3)], axis=1)
    return np.rint(lut).astype(np.uint8)


#: The least colour weight of the overlay, as a share of the opacity: the heat of a negative
#: image is ~0 everywhere, and without a floor the opacity slider changed nothing one could see.
#: A faint tint of the scale's cold end says "the model looked here and found nothing".
HEAT_FLOOR = 0.2


@functools.lru_cache(maxsize=8)
def _blend_lut(opacity: float, cmap: str) -> np.ndarray:
    """(256 gray x 256 heat, 3) uint8: every blend of an 8-bit gray with an 8-bit heat.

    Cached (read-only): building it took ~0.8 ms, paid for every report thumbnail of a screening
    run and every repaint of the viewer's overlay."""
    color = colormap_lut(cmap).astype(np.float32)[None, :, :]  # (1, 256 heat, 3)
    gray = np.arange(256, dtype=np.float32)[:, None, None]  # (256 gray, 1, 1)
    heat = np.arange(256, dtype=np.float32) / 255.0
    alpha = float(np.clip(opacity, 0.0, 1.0)) * (HEAT_FLOOR + (1.0 - HEAT_FLOOR) * heat)
    alpha = alpha[None, :, None]
    out = gray * (1.0 - alpha) + color * alpha
    lut = np.rint(out).astype(np.uint8).reshape(256 * 256, 3)
    lut.flags.writeable = False
    return lut


def blend_heatmap(
    gray_u8: np.ndarray,
    heat01: np.ndarray,
    opacity: float = 0.5,
    cmap: str = "turbo",
) -> np.ndarray:
    """Blend a [0, 1] heatmap over a gray image, (H, W, 3) uint8.

    The colour's weight grows with the heat (``opacity * (HEAT_FLOOR + (1 - HEAT_FLOOR) * heat)``),
    so cold regions keep the radiograph readable under a faint tint of the map's coldest colour. The heat is
    quantised to 8 bits (as the colour index already was), so the blend is one lookup in a
    256 x 256 table: a 2k x 2k overlay costs a gather, not a dozen float passes over 4 M pixels.
    """
    return np.ascontiguousarray(_blend_lut(opacity, cmap)[_blend_index(gray_u8, heat01)])


def _blend_index(gray_u8: np.ndarray, heat01: np.ndarray) -> np.ndarray:
    """Each pixel's row in the blend table: gray in the high byte, 8-bit heat in the low."""
    if gray_u8.shape != heat01.shape:
        raise ValueError(f"heatmap shape {heat01.shape} differs from image shape {gray_u8.shape}")
    h8 = np.rint(np.clip(np.asarray(heat01, dtype=np.float32), 0.0, 1.0) * 255.0).astype(np.uint16)
    return ((np.asarray(gray_u8, dtype=np.uint16) << 8) | h8).astype(np.intp)


@functools.lru_cache(maxsize=8)
def _blend_lut_rgbx(opacity: float, cmap: str) -> np.ndarray:
    """:func:`_blend_lut` with a fourth (255) byte, viewed as one uint32 per entry."""
    rgbx = np.full((256 * 256, 4), 255, dtype=np.uint8)
    rgbx[:, :3] = _blend_lut(opacity, cmap)
    lut = rgbx.view(np.uint32).ravel()
    lut.flags.writeable = False
    return lut


def blend_heatmap_rgbx(gray_u8: np.ndarray, heat01: np.ndarray, opacity: float = 0.5,
                       cmap: str = "turbo") -> np.ndarray:
    """:func:`blend_heatmap`'s colours as (H, W, 4) RGBX uint8, for an encoder that takes RGBX
    (the report's JPEG thumbnails, one per scored image).

    Why: gathering one 4-byte word per pixel is ~10x faster than gathering a 3-byte row (0.2 ms
    of the screener's main thread per thumbnail, measured), and repacking to RGB would cost most
    of that back.
    """
    words = np.take(_blend_lut_rgbx(opacity, cmap), _blend_index(gray_u8, heat01))
    return words.view(np.uint8).reshape(*words.shape, 4)


def render_rgb(
    display01: np.ndarray,
    *,
    invert: bool = False,
    heat01: np.ndarray | None = None,
    opacity: float = 0.5,
    cmap: str = "turbo",
) -> np.ndarray:
    """The exact (H, W, 3) uint8 picture the viewer shows for one image and its view settings.

    One function for the whole chain, so the tests and the widget cannot disagree on the order
    (window -> 8 bits -> invert -> heatmap): the heatmap is drawn on the inverted gray so its
    colours keep their meaning when the gray scale is flipped.
    """
    gray = to_uint8(display01, invert=invert)
    if heat01 is None:
        return gray_to_rgb(gray)
    return blend_heatmap(gray, heat01, opacity=opacity, cmap=cmap)


@dataclass(frozen=True)
class Orientation:
    """How the picture is turned on screen: ``rotation`` quarter turns clockwise of the image
    mirrored left-right when ``mirror`` is set (the mirror is applied first).

    Every combination of the keys r/l/h/v is one of these eight states, so the state stays two
    small numbers however many keys are pressed, and "reset" is simply ``Orientation()``. The
    transform is applied to the finished RGB picture, so the heatmap turns with the image.
    """

    rotation: int = 0
    mirror: bool = False

    def rotated(self, quarter_turns_cw: int) -> Orientation:
        """Turn the picture on screen by ``quarter_turns_cw`` (negative: counter-clockwise)."""
        return Orientation((self.rotation + quarter_turns_cw) % 4, self.mirror)

    def flipped_horizontally(self) -> Orientation:
        """Mirror the picture left-right *as shown*: fliplr . rot^k = rot^-k . fliplr."""
        return Orientation((-self.rotation) % 4, not self.mirror)

    def flipped_vertically(self) -> Orientation:
        """Mirror the picture top-bottom as shown: flipud = rot180 . fliplr."""
        return Orientation((2 - self.rotation) % 4, not self.mirror)

    @property
    def is_identity(self) -> bool:
        return self.rotation == 0 and not self.mirror

    def apply(self, img: np.ndarray) -> np.ndarray:
        """The (H, W[, C]) array as shown, C-contiguous (QImage needs it)."""
        out = img[:, ::-1] if self.mirror else img
        return np.ascontiguousarray(np.rot90(out, -self.rotation))

    def describe(self) -> str:
        """Short text for the image overlay; empty when the image is shown as stored."""
        parts = [f"rotated {90 * self.rotation}°"] if self.rotation else []
        if self.mirror:
            parts.append("mirrored")
        return ", ".join(parts)


def drag_window(
    window: tuple[float, float],
    dx: float,
    dy: float,
    span: float,
    *,
    pixels_per_span: float = 600.0,
    min_width: float = 1.0,
) -> tuple[float, float]:
    """New (center, width) after a mouse drag of (dx, dy) screen pixels.

    Right widens the window (less contrast), down raises the center (darker on MONOCHROME2),
    as in most PACS viewers. The step scales with ``span`` (the data's full range) so a drag
    across ``pixels_per_span`` pixels sweeps the whole range whether the data is 8-bit or 16-bit.
    ``min_width`` keeps the window valid: VOI LINEAR needs a width of at least 1 in stored units,
    plain images (scale [0, 1]) need a small positive width.
    """
    center, width = window
    step = max(float(span), 1e-6) / pixels_per_span
    return float(center + dy * step), float(max(width + dx * step, min_width))


def task_word(card: Mapping) -> str:
    """The word for a positive finding: MURA-trained models say "abnormality", never "fracture"."""
    task = card.get("task", {})
    return str(task.get("display_word") or TASK_WORDS.get(task.get("name", ""), "abnormality"))


def verdict_text(verdict: str, word: str) -> str:
    """The badge wording for a study verdict at the card's operating points."""
    if verdict == "likely":
        return f"Likely {word}"
    if verdict == "suspicious":
        return f"Suspicious for {word}"
    if verdict == "negative":
        return f"Negative for {word}"
    if verdict == "not_indicated":
        return "Not indicated (outside what the model was trained for)"
    return "No result"


def plural(n: int, one: str, many: str | None = None) -> str:
    """'1 study', '2 studies', '1 duplicate', '3 duplicates'."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def format_probability(p: float | None) -> str:
    """Three decimals: enough to rank studies, few enough not to suggest false precision."""
    return "—" if p is None else f"{p:.3f}"


def operating_points_text(thresholds: Mapping[str, float]) -> str:
    """The two operating points of the card, so the verdict can be checked against the number."""
    return (f"suspicious ≥ {format_probability(thresholds['suspicious'])}, "
            f"likely ≥ {format_probability(thresholds['likely'])}")


def _fmt_value(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt_value(x) for x in v)
    if isinstance(v, Mapping):
        return ", ".join(f"{k} {_fmt_value(x)}" for k, x in v.items())
    return "—" if v is None else str(v)


def card_html(card: Mapping) -> str:
    """The model card as escaped HTML for the "Model card" dialog.

    Shows what a reader needs to judge the number on screen: which model, what it was trained
    and validated on, how well it did there, and what it is (not) for.
    """
    e = html.escape
    task = card.get("task", {})
    val = card.get("validation", {})
    prov = card.get("provenance", {})
    th = card.get("thresholds", {})
    name, version = e(str(card.get("name", "?"))), e(str(card.get("version", "?")))
    pos, neg = e(str(task.get("positive_label", ""))), e(str(task.get("negative_label", "")))
    parts = [
        f"<h2>{name} <small>v{version}</small></h2>",
        f"<p><b>{e(DISCLAIMER)}.</b></p>",
        f"<p><b>Intended use.</b> {e(str(card.get('intended_use', '')))}</p>",
        "<h3>Task</h3><ul>",
        f"<li>Output: probability of <b>{e(task_word(card))}</b> ({pos} vs {neg})</li>",
        f"<li>Architecture: {e(str(card.get('architecture', '?')))}</li>",
    ]
    if th:
        parts.append(f"<li>Operating points: {e(operating_points_text(th))}</li>")
    parts.append(f"<li>Body parts: {e(', '.join(card.get('body_parts', [])))}</li></ul>")
    from models.scope import Indications
    from models.trust import BANNER, model_warnings, performance_lines

    parts += [f"<p style='color:#b3261e'><b>{BANNER}</b>: {e(w)}</p>" for w in model_warnings(card)]
    parts.append("<h3>Validated performance</h3><ul>"
                 + "".join(f"<li>{e(line)}</li>" for line in performance_lines(card)) + "</ul>")
    ind = card.get("indications") or {}
    parts.append(f"<h3>Indications</h3><p>{e(Indications.from_card(card).summary())}.")
    if ind.get("min_body_part_confidence") is not None:
        parts.append(f" Images whose top body-part probability is below "
                     f"{float(ind['min_body_part_confidence']):.2f} are refused as not indicated "
                     f"(fitted on {e(str(ind.get('confidence_fitted_on', 'validation')))}).")
    parts.append(" Anything else (other modalities, chest, skull, spine, photographs, test patterns) "
                 "gets no verdict.</p>")
    parts.append("<h3>Data provenance</h3><ul>")
    for key, label in (("training_data", "Training data"), ("validation_data", "Validation data"),
                       ("test_data", "Test data"), ("calibration_data", "Calibration data"),
                       ("gate_data", "Quantisation gate data")):
        value = prov.get(key)
        if value is None:
            continue
        if isinstance(value, Mapping):
            # one line per field: a dataset's name, source and counts must be readable at a glance
            sub = "".join(f"<li>{e(str(k).replace('_', ' '))}: {e(_fmt_value(v))}</li>"
                          for k, v in value.items())
            parts.append(f"<li><b>{label}</b><ul>{sub}</ul></li>")
        else:
            parts.append(f"<li><b>{label}:</b> {e(_fmt_value(value))}</li>")
    parts.append("</ul><h3>Validation</h3><ul>")
    parts.append(f"<li>Verdict: <b>{e(str(val.get('verdict', 'not_validated')))}</b>, "
                 f"precision {e(str(val.get('precision', '?')))}"
                 + (f", inference precision {e(str(val['inference_precision']))}"
                    if val.get("inference_precision") else "") + "</li>")
    for reason in val.get("reasons", []) or []:
        parts.append(f"<li>{e(str(reason))}</li>")
    parts.append("</ul><h3>Metrics</h3>")
    metrics = card.get("metrics", {})
    if not metrics:
        parts.append("<p>None recorded.</p>")
    for name, m in metrics.items():
        shown = {k: v for k, v in m.items() if isinstance(v, (int, float, str)) and k != "dataset"}
        rows = "".join(f"<tr><td>{e(str(k))}</td><td>{e(_fmt_value(v))}</td></tr>"
                       for k, v in shown.items())
        parts.append(f"<p><b>{e(str(name))}</b></p><table cellpadding='2'>{rows}</table>")
    return "\n".join(parts)
