"""Study report export: one PDF (QPdfWriter) or PNG with the images, heatmaps, scores and the
model's identity, for the reader's records or a tumour-board slide. Originals are never touched.

What a report must carry so that it cannot be mistaken for a diagnosis or misattributed: the
disclaimer, the model's name/version/id and what it was trained and validated on, the study
probability and the verdict at *both* operating points of the card, each image's probability,
and the task's own word (MURA models say "abnormality", never "fracture").

Patient name and ID are deliberately left out: a report file travels (mail, slides) far more
than the viewer's screen does. The study is named by its description, date and modality.
The content is assembled Qt-free (:func:`report_content`); only the painting uses Qt.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QMarginsF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPageLayout, QPageSize, QPainter, QPdfWriter

from desktop.screening.discovery import split_key
from desktop.screening.heat_legend import legend_rgb, legend_text
from desktop.screening.render import (
    DISCLAIMER,
    VERDICT_STYLES,
    format_probability,
    render_rgb,
    task_word,
    verdict_text,
)
from desktop.viewer.studies import StudyOutcome
from models.fsutil import atomic_write_bytes
from models.scope import Indications
from models.trust import BANNER, model_warnings, performance_lines

__all__ = ["ReportContent", "report_content", "report_file_name", "write_report_pdf", "write_report_png"]

#: Dots per inch of both outputs: A4 at 150 dpi is 1240 x 1754 pixels, sharp on screen and paper.
DPI = 150
PAGE_W, PAGE_H = 1240, 1754
MARGIN = 70
HEAT_OPACITY = 0.5


@dataclass
class ReportImage:
    name: str
    rgb: np.ndarray | None  # the image with its heatmap, None when it could not be decoded
    caption: str


@dataclass
class ReportContent:
    """Everything the report says, in order; the painter only lays it out."""

    title: str
    disclaimer: str
    verdict: str
    verdict_style: str
    study_lines: list[str]
    operating_lines: list[str]
    image_rows: list[tuple[str, str, str, str]]  # (#, file, P(word), body part / error)
    images: list[ReportImage]
    model_lines: list[str]
    footer: str
    word: str = "abnormality"
    legend: np.ndarray | None = None  # the heatmap's colour scale, when a heatmap is shown
    legend_line: str = ""
    warnings: list[str] = field(default_factory=list)  # models.trust: painted as a red banner


def _fmt(v: object) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _data_line(label: str, d: object) -> str:
    if not isinstance(d, Mapping):
        return f"{label}: {d}"
    parts = [str(d.get("dataset", "?"))]
    for key, text in (("n_images", "images"), ("n_studies", "studies"),
                      ("n_patients", "patients")):
        if d.get(key) is not None:
            parts.append(f"{d[key]} {text}")
    return f"{label}: " + ", ".join(parts)


def _metric_lines(metrics: Mapping) -> list[str]:
    """The AUC/kappa/accuracy of each evaluation set of the card, in one line each."""
    keep = ("image_auc", "study_auc", "study_kappa", "study_accuracy", "image_auc_int8")
    out = []
    for name, m in metrics.items():
        if not isinstance(m, Mapping):
            continue
        vals = [f"{k.replace('_', ' ')} {_fmt(m[k])}" for k in keep
                if isinstance(m.get(k), (int, float))]
        if vals:
            n = f" (n={m['n_images']} images)" if m.get("n_images") is not None else ""
            out.append(f"{name}{n}: " + ", ".join(vals))
    return out


def report_file_name(study, fmt: str) -> str:
    """The name the save dialog proposes: ``mura-report_<date>_<accession>_<hash>.<fmt>``.

    Date and accession number let the reader file it beside the study; the hash of the study key
    tells two reports of one day apart. No patient name: report files travel (mail, slides).
    """
    import hashlib
    import re

    parts = [getattr(study, "study_date", "") or "", getattr(study, "accession", "") or "",
             hashlib.sha256(study.key.encode()).hexdigest()[:8]]
    safe = [re.sub(r"[^0-9A-Za-z.-]+", "-", p).strip("-.")[:32] for p in parts]
    return "_".join(["mura-report", *[p for p in safe if p]]) + f".{fmt}"


def _study_lines(outcome: StudyOutcome, word: str) -> list[str]:
    """Which study this is (description, date, modality, the header's body part; no patient
    name or ID), how many of its images were decoded and scored, and, with a result, the study
    probability first."""
    st = outcome.study
    first = next((v.image for v in outcome.images if v.image is not None), None)
    info = first.info if first is not None else None
    date = getattr(info, "study_date", "") or ""
    if len(date) == 8 and date.isdigit():
        date = f"{date[:4]}-{date[4:6]}-{date[6:]}"
    lines = [
        f"Study: {st.description or (split_key(st.key)[1] if not st.is_dicom else '—')}",
        " · ".join(x for x in (f"date {date}" if date else "", st.modality,
                               f"body part (header) {st.body_part_tag}" if st.body_part_tag
                               else "") if x) or "—",
        f"Images: {len(outcome.images)} ({len(outcome.images) - len(outcome.failures)} decoded, "
        f"{sum(1 for v in outcome.images if v.prediction is not None)} scored)",
    ]
    pred = outcome.prediction
    if pred is not None:
        lines.insert(0, f"Study P({word}) = {format_probability(pred.probability)} · "
                        f"body part (model) {pred.body_part}")
    return lines


def _verdict(outcome: StudyOutcome, card: Mapping, word: str) -> tuple[str, list[str]]:
    """The verdict's words and what it means at *each* operating point of the card; or why
    there is none (not indicated, nothing scored, the model failed)."""
    pred = outcome.prediction
    if pred is not None:
        th = card.get("thresholds", {})
        op = []
        for key, label in (("suspicious", "Suspicious"), ("likely", "Likely")):
            if key in th:
                hit = pred.probability >= float(th[key])
                op.append(f"{label} operating point (P ≥ {format_probability(th[key])}): "
                          f"{'POSITIVE' if hit else 'negative'} for {word}")
        return verdict_text(pred.verdict, word), op
    if outcome.scope:
        return "Not indicated", [f"No verdict: not indicated — {outcome.scope}.",
                                 f"The model is indicated for {Indications.from_card(card).summary()}."]
    return ("No result" + (f" — {outcome.model_error}" if outcome.model_error else ""),
            ["No verdict: no image could be scored."])


def _images(outcome: StudyOutcome, word: str) -> tuple[list[tuple[str, str, str, str]],
                                                        list[ReportImage]]:
    """One table row and one picture (with its heatmap, when there is one) per image; an image
    that did not decode keeps its row, with the reason."""
    rows = []
    images = []
    for k, v in enumerate(outcome.images, 1):
        if v.image is None:
            rows.append((str(k), v.name, "—", f"not decoded: {v.error}"))
            images.append(ReportImage(v.name, None, f"{k}. {v.name}: not decoded"))
            continue
        p = v.prediction
        rows.append((str(k), v.name, format_probability(p.probability) if p else "—",
                     p.body_part if p else f"not indicated: {v.refused}" if v.refused else "—"))
        rgb = render_rgb(v.image.pixels, heat01=v.heat, opacity=HEAT_OPACITY) \
            if v.heat is not None else render_rgb(v.image.pixels)
        cap = f"{k}. {v.name}" + (f" · P({word}) {format_probability(p.probability)}" if p
                                  else "") + (" · heatmap" if v.heat is not None else "")
        images.append(ReportImage(v.name, rgb, cap))
    return rows, images


def _model_lines(card: Mapping, model_id: str, word: str) -> list[str]:
    """The model's identity, what it was trained and validated on and how well it did there,
    and its intended use: a report must never be attributable to the wrong model."""
    prov = card.get("provenance", {})
    val = card.get("validation", {})
    lines = [
        f"Model: {card.get('name', '?')} v{card.get('version', '?')} ({model_id})",
        f"Architecture: {card.get('architecture', '?')} · validation {val.get('verdict', '?')}"
        f" · precision {val.get('precision', '?')}",
        f"Output: probability of {word} "
        f"({card.get('task', {}).get('positive_label', '')} vs "
        f"{card.get('task', {}).get('negative_label', '')})",
    ]
    for key, label in (("training_data", "Training data"), ("validation_data", "Validation data"),
                       ("test_data", "Test data")):
        if key in prov:
            lines.append(_data_line(label, prov[key]))
    lines = [f"{BANNER}: {w}" for w in model_warnings(card)] + lines
    lines += performance_lines(card)
    lines += _metric_lines(card.get("metrics", {}))
    lines.append(f"Intended use: {card.get('intended_use', '')}")
    return lines


def report_content(outcome: StudyOutcome, card: Mapping, model_id: str,
                   *, now: _dt.datetime | None = None) -> ReportContent:
    """The report of one analysed study by one model (Qt-free)."""
    word = task_word(card)
    pred = outcome.prediction
    verdict, op = _verdict(outcome, card, word)
    rows, images = _images(outcome, word)
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return ReportContent(
        title=f"Study report — model second opinion ({word})",
        disclaimer=f"{DISCLAIMER}. The model output is not a diagnosis.",
        verdict=verdict, verdict_style=pred.verdict if pred is not None else
        "not_indicated" if outcome.scope else "failed",
        study_lines=_study_lines(outcome, word), operating_lines=op, image_rows=rows,
        images=images, model_lines=_model_lines(card, model_id, word), word=word,
        legend=legend_rgb(card, width=640, scale=1.6) if any(v.heat is not None for v in outcome.images) else None,
        legend_line=legend_text(card),
        warnings=[f"{BANNER}: {w}" for w in model_warnings(card)],
        footer=f"Generated {now:%Y-%m-%d %H:%M} UTC by mura-viewer · source files were only "
               f"read, never altered · {DISCLAIMER}")


# -- painting ---------------------------------------------------------------------------------
class _Pen:
    """A y cursor over pages: ``need(h)`` starts a new page when ``h`` does not fit."""

    def __init__(self, painter: QPainter, new_page: Callable[[], None] | None,
                 page_h: int) -> None:
        self.p, self.new_page, self.page_h = painter, new_page, page_h
        self.y = MARGIN
        self.pages = 1

    def need(self, h: float) -> None:
        if self.new_page is not None and self.y + h > self.page_h - MARGIN:
            self.new_page()
            self.pages += 1
            self.y = MARGIN

    def text(self, s: str, size: float = 11, bold: bool = False,
             color: str = "#1b1b1b", gap: float = 6) -> None:
        f = QFont("DejaVu Sans")
        f.setPixelSize(int(size * DPI / 72))
        f.setBold(bold)
        self.p.setFont(f)
        rect = QRectF(MARGIN, self.y, PAGE_W - 2 * MARGIN, 10_000)
        bound = self.p.boundingRect(rect, int(Qt.TextFlag.TextWordWrap), s)
        self.need(bound.height())
        rect = QRectF(MARGIN, self.y, PAGE_W - 2 * MARGIN, bound.height())
        self.p.setPen(QColor(color))
        self.p.drawText(rect, int(Qt.TextFlag.TextWordWrap), s)
        self.y += bound.height() + gap


def _banner(pen: _Pen, text: str, size: float, bg: str, fg: str, pad: float,
            gap: float) -> None:
    """A full-width coloured band with ``text`` centred in it, bold (the disclaimer, the
    warning about the model, the verdict): what must not be missed is not a line of text."""
    painter, w = pen.p, PAGE_W - 2 * MARGIN
    f = QFont("DejaVu Sans")
    f.setPixelSize(int(size * DPI / 72))
    f.setBold(True)
    painter.setFont(f)
    h = painter.boundingRect(QRectF(0, 0, w - 20, 1000), int(Qt.TextFlag.TextWordWrap),
                             text).height() + 2 * pad
    painter.fillRect(QRectF(MARGIN, pen.y, w, h), QColor(bg))
    painter.setPen(QColor(fg))
    painter.drawText(QRectF(MARGIN + 10, pen.y + pad, w - 20, h - 2 * pad),
                     int(Qt.TextFlag.TextWordWrap | Qt.AlignmentFlag.AlignCenter), text)
    pen.y += h + gap


def _paint_legend(pen: _Pen, legend: np.ndarray, line: str) -> None:
    """The colour scale the heatmaps below are read on, with its explanation."""
    lg = np.ascontiguousarray(legend)
    lh, lw = lg.shape[:2]
    pen.need(lh + 60)
    pen.p.drawImage(QRectF(MARGIN, pen.y, lw, lh),
                    QImage(lg.data, lw, lh, 3 * lw, QImage.Format.Format_RGB888))
    pen.y += lh + 4
    pen.text(line, 9, color="#333333", gap=8)


def _paint_image(painter: QPainter, im: ReportImage, x: float, y: float, side: float) -> None:
    """One picture fitted in a dark ``side`` x ``side`` square at (x, y), its caption below."""
    painter.fillRect(QRectF(x, y, side, side), QColor("#111111"))
    if im.rgb is not None:
        rgb = np.ascontiguousarray(im.rgb)
        ih, iw = rgb.shape[:2]
        q = QImage(rgb.data, iw, ih, 3 * iw, QImage.Format.Format_RGB888)
        s = min(side / iw, side / ih)
        dw, dh = iw * s, ih * s
        painter.drawImage(QRectF(x + (side - dw) / 2, y + (side - dh) / 2, dw, dh), q)
    f = QFont("DejaVu Sans")
    f.setPixelSize(int(9 * DPI / 72))
    painter.setFont(f)
    painter.setPen(QColor("#1b1b1b"))
    painter.drawText(QRectF(x, y + side + 4, side, 30), int(Qt.AlignmentFlag.AlignLeft), im.caption)


def _paint_images(pen: _Pen, images: list[ReportImage]) -> None:
    """The study's images, two per row, a row never split over two pages."""
    col_w = (PAGE_W - 2 * MARGIN - 20) / 2
    for i in range(0, len(images), 2):
        pen.need(col_w + 40)
        for j, im in enumerate(images[i:i + 2]):
            _paint_image(pen.p, im, MARGIN + j * (col_w + 20), pen.y, col_w)
        pen.y += col_w + 40


def paint_report(painter: QPainter, c: ReportContent,
                 new_page: Callable[[], None] | None = None, page_h: int = PAGE_H) -> float:
    """Lay the report out from the top; returns the y where it ended (for sizing a PNG)."""
    pen = _Pen(painter, new_page, page_h)
    pen.text(c.title, 16, bold=True, gap=10)
    _banner(pen, c.disclaimer, 10, "#fff3cd", "#5c4400", pad=10, gap=14)
    if c.warnings:  # a model that is not clinically meaningful: said before its verdict
        _banner(pen, " · ".join(c.warnings), 10, "#b3261e", "#ffffff", pad=10, gap=14)
    bg, fg = VERDICT_STYLES.get(c.verdict_style, VERDICT_STYLES["failed"])
    _banner(pen, c.verdict, 15, bg, fg, pad=12, gap=12)
    for line in c.operating_lines:
        pen.text(line, 11, bold=True, gap=3)
    pen.y += 6
    for line in c.study_lines:
        pen.text(line, 10.5, gap=3)
    pen.y += 8
    pen.text("Images", 12, bold=True)
    for row in c.image_rows:
        pen.text(f"{row[0]}.  {row[1]}   P({c.word}) {row[2]}   {row[3]}", 10, gap=2)
    pen.y += 10
    if c.legend is not None:
        _paint_legend(pen, c.legend, c.legend_line)
    _paint_images(pen, c.images)
    pen.y += 6
    pen.text("Model", 12, bold=True)
    for line in c.model_lines:
        pen.text(line, 9.5, gap=2)
    pen.y += 10
    pen.text(c.footer, 8.5, color="#555555")
    return pen.y


def write_report_pdf(content: ReportContent, path: str | Path) -> Path:
    """An A4 PDF (one page or more), written atomically next to ``path``."""
    path = Path(path)
    buf = QByteArray()
    dev = QBuffer(buf)
    dev.open(QIODevice.OpenModeFlag.WriteOnly)
    writer = QPdfWriter(dev)
    writer.setResolution(DPI)
    writer.setPageLayout(QPageLayout(QPageSize(QPageSize.PageSizeId.A4),
                                     QPageLayout.Orientation.Portrait, QMarginsF(0, 0, 0, 0)))
    writer.setTitle(content.title)
    writer.setCreator("mura-viewer")
    painter = QPainter(writer)
    try:
        paint_report(painter, content, new_page=writer.newPage)
    finally:
        painter.end()
    dev.close()
    return atomic_write_bytes(path, bytes(buf.data()))


def write_report_png(content: ReportContent, path: str | Path) -> Path:
    """One tall PNG of the whole report (page width), written atomically."""
    path = Path(path)
    probe = QImage(PAGE_W, 20_000, QImage.Format.Format_RGB32)
    p = QPainter(probe)
    try:
        end = paint_report(p, content, new_page=None, page_h=20_000)
    finally:
        p.end()
    img = QImage(PAGE_W, int(end + MARGIN), QImage.Format.Format_RGB32)
    img.fill(QColor("white"))
    p = QPainter(img)
    try:
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        paint_report(p, content, new_page=None, page_h=int(end + MARGIN))
    finally:
        p.end()
    buf = QByteArray()
    dev = QBuffer(buf)
    dev.open(QIODevice.OpenModeFlag.WriteOnly)
    if not img.save(dev, "PNG"):
        raise OSError(f"{path}: could not encode the report as PNG")
    dev.close()
    return atomic_write_bytes(path, bytes(buf.data()))
