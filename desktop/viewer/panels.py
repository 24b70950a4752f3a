"""What the viewer's panels say: the result box, the model box, the study list's items, the
thumbnail strip and the image's corner overlay, filled from a study's outcome.

Functions of the widgets they fill (:class:`desktop.viewer.window_ui.ViewerUi`) and of plain values,
so the wording of a result changes here, not in the window's state machine. Patient names and
IDs go into the overlay text only; nothing here logs or prints them.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QComboBox, QLabel, QListWidget, QListWidgetItem

from desktop.screening.discovery import Discovery, Study, split_key
from desktop.screening.heat_legend import legend_rgb, legend_text
from desktop.screening.render import (
    VERDICT_STYLES,
    Orientation,
    format_probability,
    operating_points_text,
    plural,
    verdict_text,
)
from desktop.viewer.image_view import SeriesBar
from desktop.viewer.studies import STRIP_THUMB_SIZE, StudyOutcome, ViewImage
from desktop.viewer.window_ui import ViewerUi, thumb_icon, verdict_icon
from models.engine import Engine, StudyPrediction
from models.reduction import codec_names
from models.scope import Indications
from models.trust import BANNER, model_warnings, performance_lines


def format_da(da: str) -> str:
    """DICOM DA "YYYYMMDD" as ISO "YYYY-MM-DD" (left alone when it is anything else)."""
    return f"{da[:4]}-{da[4:6]}-{da[6:8]}" if len(da) == 8 and da.isdigit() else da


def fmt_wl(x: float) -> str:
    """Window values: whole numbers for stored units, 3 decimals for the [0, 1] plain scale."""
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


# -- model and result ---------------------------------------------------------------------------
def show_model_state(ui: ViewerUi, engine: Engine | None, word: str, *, loading: str,
                     error: str) -> None:
    """The model box, the status bar's model name and what needs a model (enabled or not)."""
    ui.study_prob_caption.setText(f"Study P({word}):")
    ui.image_prob_caption.setText(f"Image P({word}):")
    for w in (ui.card_button, ui.card_action, ui.heatmap_check, ui.heatmap_action,
              ui.screen_action, ui.export_dicom_action):
        w.setEnabled(engine is not None)
    ui.model_label.setStyleSheet("")
    set_model_banner(ui, [], "No model loaded" if not loading else f"Loading {loading}…")
    if engine is None and loading:
        ui.operating_label.setText("—")
        ui.model_label.setText(f"Loading {loading}…")
        ui.model_status.setText("loading model…")
        return
    if engine is None:
        ui.operating_label.setText("—")
        msg = (f"Model could not be loaded: {error}" if error
               else "No model loaded (choose a bundle in Settings, or start with "
               "--model BUNDLE): images only.")
        ui.model_label.setText(msg)
        ui.model_status.setText("no model")
        ui.verdict_label.setText("No model")
        style_verdict(ui.verdict_label, "failed")
        if error:
            ui.model_label.setStyleSheet("QLabel { color: #b3261e; }")
        return
    card = engine.bundle.card
    warnings = model_warnings(card)
    set_model_banner(ui, warnings, f"{card['name']}: {performance_lines(card)[0]}")
    legend = np.ascontiguousarray(legend_rgb(card, width=280))
    h, w = legend.shape[:2]
    ui.heat_legend.setPixmap(QPixmap.fromImage(QImage(legend.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()))
    ui.heat_legend.setToolTip(legend_text(card))
    banner = "".join(f"<p style='color:#b3261e'><b>{BANNER}</b>: {html.escape(w)}</p>" for w in warnings)
    perf = "<br>".join(html.escape(line) for line in performance_lines(card))
    ui.model_label.setText(
        f"{banner}<b>{html.escape(str(card['name']))}</b> v{html.escape(str(card['version']))}"
        f" · {engine.device} · {engine.artifact}<br>{perf}<br>"
        f"<i>Indicated for: {html.escape(Indications.from_card(card).summary())}</i>")
    ui.model_status.setText(engine.bundle.model_id)
    ui.operating_label.setText(operating_points_text(engine.thresholds))


def set_model_banner(ui: ViewerUi, warnings: list[str], text: str) -> None:
    """The one-line banner under the disclaimer: red with the warnings, else the model's AUC."""
    if warnings:
        text = f"⚠  {BANNER}: {'; '.join(warnings)}. Its scores must not be read as findings."
    ui.weak_banner.setText(text)
    ui.weak_banner.setToolTip(text)
    bg, fg = ("#b3261e", "#ffffff") if warnings else ("#eceff1", "#263238")
    ui.weak_banner.setStyleSheet(f"QLabel {{ background: {bg}; color: {fg}; font-weight: bold; padding: 4px; }}")


def style_verdict(label: QLabel, verdict: str) -> None:
    bg, fg = VERDICT_STYLES.get(verdict, VERDICT_STYLES["failed"])
    label.setStyleSheet(
        f"QLabel {{ background: {bg}; color: {fg}; font-size: 15pt; font-weight: bold;"
        " padding: 8px; border-radius: 4px; }")


def set_errors(label: QLabel, lines: list[str]) -> None:
    label.setText("\n".join(lines))
    label.setVisible(bool(lines))


def clear_result(ui: ViewerUi, verdict: str) -> None:
    """An empty result panel and strip, ``verdict`` in the badge (e.g. "Analysing…")."""
    ui.verdict_label.setText(verdict)
    style_verdict(ui.verdict_label, "failed")
    for w in (ui.study_prob_label, ui.image_prob_label, ui.body_part_label, ui.images_label):
        w.setText("—")
    set_errors(ui.errors_label, [])
    ui.image_counter.setText("")
    ui.thumb_strip.clear()
    ui.thumb_strip.hide()
    ui.series_bar.set_groups([])
    ui.series_bar.hide()
    ui.preset_combo.clear()


def show_result(ui: ViewerUi, outcome: StudyOutcome, word: str, *, has_engine: bool,
                awaiting: bool) -> None:
    """The result panel for ``outcome``: verdict, study probability, body part, images scored
    and errors; ``awaiting``: its scores are still to come (being computed, or the model is
    loading)."""
    pred = outcome.prediction
    n_ok = len(outcome.images) - len(outcome.failures)
    n_scored = sum(1 for v in outcome.images if v.prediction is not None)
    # a decode error belongs to its image (the canvas says it when that image is shown); the
    # model panel only says which images the result does not rest on
    failed = [v.name for v in outcome.images if v.error]
    errors = [f"Not decoded: {', '.join(failed)} (select it for the reason)"] if failed else []
    errors += [f"Not indicated — {v.name}: {v.refused}" for v in outcome.images if v.refused]
    if outcome.model_error:
        errors.append(f"Model error: {outcome.model_error}")
    set_errors(ui.errors_label, errors)
    ui.images_label.setText(f"{n_scored} of {len(outcome.images)}")
    if pred is None and outcome.scope:
        ui.verdict_label.setText("Not indicated")
        ui.verdict_label.setToolTip(outcome.scope)
        style_verdict(ui.verdict_label, "not_indicated")
        ui.study_prob_label.setText("—")
        ui.body_part_label.setText(outcome.study.body_part_tag or "—")
        return
    ui.verdict_label.setToolTip("")
    if pred is not None:
        reduced = outcome.reduced_side
        if reduced is not None:  # the scores stay those of the validated decode, full images or not
            ui.images_label.setText(f"{n_scored} of {len(outcome.images)} · from a reduced decode")
        ui.images_label.setToolTip("" if reduced is None else (
            f"Scored from a reduced-resolution decode ({codec_names(reduced.codecs)}, long side ≥ "
            f"{reduced.min_side} px), which the model card validated against the full decode; the "
            "images are shown at full resolution."))
        ui.verdict_label.setText(verdict_text(pred.verdict, word))
        style_verdict(ui.verdict_label, pred.verdict)
        ui.study_prob_label.setText(format_probability(pred.probability))
        header = outcome.study.body_part_tag
        ui.body_part_label.setText(
            pred.body_part + (f" · DICOM header: {header}" if header else ""))
        return
    ui.verdict_label.setText(
        ("Analysing…" if has_engine else "Model loading…") if awaiting
        else "No model" if not has_engine else
        ("No result: no image could be decoded" if not n_ok else "No result"))
    style_verdict(ui.verdict_label, "failed")
    ui.study_prob_label.setText("—")
    ui.body_part_label.setText(outcome.study.body_part_tag or "—")
    if awaiting:
        ui.images_label.setText("—")


def show_position(ui: ViewerUi, outcome: StudyOutcome, index: int) -> None:
    """Which image of the study is shown: counter, strip selection, previous / next, and the
    image's own probability."""
    n = len(outcome.images)
    v = outcome.images[min(index, n - 1)]
    series = outcome.series[v.series] if 0 <= v.series < len(outcome.series) else None
    in_series = f" · {series.label}" if series is not None and len(outcome.series) > 1 else ""
    ui.image_counter.setText(f"Image {index + 1} of {n} · {v.name}{in_series}")
    if ui.thumb_strip.currentRow() != index:
        ui.thumb_strip.blockSignals(True)
        ui.thumb_strip.setCurrentRow(index)
        ui.thumb_strip.blockSignals(False)
    ui.prev_button.setEnabled(index > 0)
    ui.next_button.setEnabled(index < n - 1)
    ui.image_prob_label.setText(
        format_probability(v.prediction.probability) if v.prediction is not None else "—")


# -- status bar ---------------------------------------------------------------------------------
def discovery_message(res: Discovery) -> str:
    """What was found: studies and images, and what was skipped or ignored."""
    msg = f"{len(res.studies)} studies, {res.n_images} images"
    if res.skipped:
        first = res.skipped[0]
        msg += (f"; {len(res.skipped)} file(s) skipped (e.g. {Path(first[0]).name}: "
                f"{first[1]})")
    if res.duplicates:
        msg += f"; {plural(len(res.duplicates), 'duplicate')} ignored"
    return msg


def decoded_message(outcome: StudyOutcome, *, model_loading: str = "") -> str:
    """How a study's decoding went; ``model_loading``: the model its scores wait for."""
    n_fail = len(outcome.failures)
    msg = f"{len(outcome.images) - n_fail} of {len(outcome.images)} images decoded"
    if n_fail:
        first = outcome.failures[0]
        msg += f"; {first.name}: {first.error}"
    if outcome.model_error:
        msg += f"; model error: {outcome.model_error}"
    if model_loading:
        msg += f"; scores follow when the model is loaded ({model_loading})"
    return msg


# -- study list ---------------------------------------------------------------------------------
def study_text(st: Study, pred: StudyPrediction | None, word: str) -> str:
    """A study list item: description, folder and image count, then the verdict once scored."""
    if st.is_dicom:
        title = st.description or "Study"
        folder = Path(st.images[0].path).parent.name if st.images else ""
        where = f"{folder} · " if folder else ""
    else:  # the folder is the study: name it once
        title, where = split_key(st.key)[1], ""
    lines = [title, f"{where}{plural(len(st.images), 'image')}"
             + (f" · {st.modality}" if st.modality else "")]
    if pred is not None:
        verdict = verdict_text(pred.verdict, word)
        lines.append(f"{verdict} · {format_probability(pred.probability)}")
    return "\n".join(lines)


def add_study_items(study_list: QListWidget, studies: list[Study], word: str) -> None:
    for st in studies:
        item = QListWidgetItem(study_text(st, None, word))
        item.setData(Qt.ItemDataRole.UserRole, st.key)
        item.setToolTip(st.key)
        item.setIcon(verdict_icon("pending"))
        study_list.addItem(item)


def update_study_item(study_list: QListWidget, st: Study, pred: StudyPrediction | None,
                      word: str, *, pending: bool = False, scope: str = "", n_failed: int = 0) -> None:
    for row in range(study_list.count()):
        item = study_list.item(row)
        if item.data(Qt.ItemDataRole.UserRole) == st.key:
            item.setText(study_text(st, pred, word) + ("\nNot indicated" if scope and pred is None else "")
                         + (f"\n✕ {n_failed} not decoded" if n_failed else ""))
            verdict = "pending" if pending else (pred.verdict if pred is not None else
                                                 "not_indicated" if scope else "failed")
            item.setIcon(verdict_icon(verdict))


# -- thumbnails ---------------------------------------------------------------------------------
def thumb_tooltip(v: ViewImage) -> str:
    if v.preview:
        return f"{v.name} (preview; full resolution follows)"
    if v.refused:
        return f"{v.name}: not indicated ({v.refused})"
    return (v.name if v.image is not None else f"{v.name}: decoding…" if v.pending
            else f"{v.name}: {v.error}")


def set_thumbnail(strip: QListWidget, k: int, v: ViewImage) -> None:
    item = strip.item(k)
    if item is not None:
        item.setIcon(thumb_icon(v))
        item.setToolTip(thumb_tooltip(v))


def fill_thumbnails(strip: QListWidget, bar: SeriesBar, outcome: StudyOutcome,
                    current: int) -> None:
    """One thumbnail per image of the study, row = image index (a dark tile while it is
    decoded, a crossed one for an undecodable image); the series bar captions the groups.
    An existing strip of the same study is updated in place (no flicker, scroll kept)."""
    strip.blockSignals(True)
    same = strip.count() == len(outcome.images) and all(
        strip.item(k).data(Qt.ItemDataRole.UserRole) == v.ref.path
        for k, v in enumerate(outcome.images))
    if same:
        for k, v in enumerate(outcome.images):
            set_thumbnail(strip, k, v)
    else:
        strip.clear()
        for k, v in enumerate(outcome.images):
            item = QListWidgetItem(thumb_icon(v), f"{k + 1}")
            item.setData(Qt.ItemDataRole.UserRole, v.ref.path)
            item.setToolTip(thumb_tooltip(v))
            item.setSizeHint(QSize(STRIP_THUMB_SIZE + 10, STRIP_THUMB_SIZE + 30))
            item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter)
            strip.addItem(item)
    strip.setCurrentRow(min(current, len(outcome.images) - 1))
    strip.blockSignals(False)
    strip.setVisible(bool(outcome.images))
    groups, first = [], 0
    for s in outcome.series:
        groups.append((s.label, first, s.count))
        first += s.count
    bar.set_groups(groups if first == len(outcome.images) else [])
    bar.setVisible(bool(outcome.images) and bool(bar.groups))


# -- the image ----------------------------------------------------------------------------------
def fill_presets(combo: QComboBox, v: ViewImage) -> None:
    """"File default" and the image's window presets, labelled with their W/L values."""
    combo.clear()
    combo.setPlaceholderText("Custom (dragged)")  # shown when a drag leaves every preset
    combo.addItem("File default", None)
    if v.image is not None:
        for name, c, w in v.image.window_presets():
            combo.addItem(f"{name} (W {fmt_wl(w)} / L {fmt_wl(c)})", (c, w))


def overlay_texts(v: ViewImage, *, index: int, n: int, window: tuple[float, float] | None,
                  zoom: float, inverted: bool, orientation: Orientation, heat_shown: bool,
                  word: str) -> dict[str, str]:
    """The four corner texts over decoded image ``v`` (``index`` of ``n``): who and when top
    left, what top right, how it is displayed bottom left, the model's score bottom right."""
    assert v.image is not None
    info = v.image.info
    tl, tr = [], []
    if info is not None:
        # identifying data: shown on screen only, never logged
        tl += [x for x in (info.patient_name.replace("^", " ").strip(),
                           f"ID {info.patient_id}" if info.patient_id else "") if x]
        tl += [x for x in (format_da(info.study_date), info.study_description) if x]
        tr += [" · ".join(x for x in (info.modality, info.body_part_examined) if x)]
    tr.append(f"Image {index + 1}/{n}")
    h, w = v.image.pixels.shape
    bl = [f"{w}×{h} · zoom {zoom * 100:.0f}%",
          "W/L: file default" if window is None
          else f"W {fmt_wl(window[1])} / L {fmt_wl(window[0])}"]
    if inverted:
        bl.append("inverted")
    if not orientation.is_identity:
        bl.append(orientation.describe())
    if v.preview:
        bl.append("preview · full resolution follows")
    br = []
    if v.prediction is not None:
        br.append(f"P({word}) {format_probability(v.prediction.probability)}")
    if heat_shown:
        br.append("heatmap on")
    return {"top_left": "\n".join(tl), "top_right": "\n".join(t for t in tr if t),
            "bottom_left": "\n".join(bl), "bottom_right": "\n".join(br)}
