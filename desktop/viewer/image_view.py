"""The image canvas of the viewer, the series captions of its thumbnail strip, and the
numpy <-> QImage conversions they need."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QEvent, QPoint, QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPixmap, QTransform
from PySide6.QtWidgets import (
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QListWidget,
    QToolTip,
    QWidget,
)


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    """(H, W, 3) uint8 -> a QImage that owns its pixels (the array may be freed afterwards)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = rgb.shape
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def qimage_to_rgb(img: QImage) -> np.ndarray:
    """QImage -> (H, W, 3) uint8 copy, for tests and exports."""
    img = img.convertToFormat(QImage.Format.Format_RGB888)
    h, w, bpl = img.height(), img.width(), img.bytesPerLine()
    buf = np.frombuffer(img.constBits(), dtype=np.uint8, count=h * bpl).reshape(h, bpl)
    return buf[:, : 3 * w].reshape(h, w, 3).copy()


class ImageView(QGraphicsView):
    """The image canvas: left-drag window/level, wheel zoom, middle-drag pan, corner overlay.

    Window/level is only reported (``window_dragged``); the window decides what it means for
    the current image, so the canvas stays a dumb display that a later version can reuse for
    side-by-side comparison.
    """

    window_dragged = Signal(float, float)  # dx, dy in screen pixels since the last event
    zoom_changed = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("imageView")
        self._scene = QGraphicsScene(self)
        self.pixmap_item = QGraphicsPixmapItem()
        self.pixmap_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self._scene.addItem(self.pixmap_item)
        self.setScene(self._scene)
        self.setBackgroundBrush(QColor("#111111"))
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        # The overlay is painted in viewport coordinates: a partial (scrolled) update would
        # smear it, so always repaint the whole viewport.
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.FullViewportUpdate)
        self.setFrameShape(QGraphicsView.Shape.NoFrame)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(320, 240)
        self._auto_fit = True
        self._drag_last: QPointF | None = None
        self._pan_last: QPointF | None = None
        self._placeholder = "Open a folder or a DICOM file (File → Open folder…)"
        self._overlay: dict[str, str] = {}

    # -- content ----------------------------------------------------------------------------
    @property
    def has_image(self) -> bool:
        return not self.pixmap_item.pixmap().isNull()

    def set_image(self, img: QImage, *, new: bool) -> None:
        """Show ``img``; ``new`` re-fits the view (a new image), else zoom and pan are kept.

        A picture of another size (a quarter turn swaps width and height) gets a new scene
        rectangle, and is fitted again unless the user has zoomed.
        """
        old = self.pixmap_item.pixmap().size()
        self.pixmap_item.setPixmap(QPixmap.fromImage(img))
        if new or old != img.size():
            self._scene.setSceneRect(QRectF(self.pixmap_item.pixmap().rect()))
            if new:
                self._auto_fit = True
            if self._auto_fit:
                self.fit()
        self.viewport().update()

    def visible_region(self) -> tuple[float, float, float] | None:
        """Where the reader is looking, whatever the picture's resolution: the zoom in screen
        pixels per picture width, and the centre of the view as fractions of the picture's
        width and height. None when the picture is fitted to the window (nothing to keep)."""
        if self._auto_fit or not self.has_image:
            return None
        rect = self._scene.sceneRect()
        centre = self.mapToScene(self.viewport().rect()).boundingRect().center()
        return (self.zoom * rect.width(), centre.x() / rect.width(),
                centre.y() / rect.height())

    def show_region(self, region: tuple[float, float, float] | None) -> None:
        """Look at ``region`` (from :meth:`visible_region`) of the picture shown now, which may
        be the same picture at another resolution (a preview replaced by the full decode):
        the zoom scales by the resolution ratio, so the same part of it stays in view."""
        if region is None or not self.has_image:
            return
        per_width, fx, fy = region
        rect = self._scene.sceneRect()
        z = per_width / rect.width()
        self._auto_fit = False
        self.setTransform(QTransform.fromScale(z, z))
        self.centerOn(QPointF(fx * rect.width(), fy * rect.height()))
        self.zoom_changed.emit(self.zoom)

    def reset_zoom(self) -> None:
        """Back to "fit in window", as after opening the image."""
        self._auto_fit = True
        self.fit()

    def clear(self, message: str = "") -> None:
        self.pixmap_item.setPixmap(QPixmap())
        self._placeholder = message
        self._overlay = {}
        self.viewport().update()

    def set_overlay(self, **corners: str) -> None:
        """Corner texts: ``top_left``, ``top_right``, ``bottom_left``, ``bottom_right``."""
        self._overlay = dict(corners)
        self.viewport().update()

    # -- zoom -------------------------------------------------------------------------------
    @property
    def zoom(self) -> float:
        return float(self.transform().m11())

    def fit(self) -> None:
        if self.has_image:
            self.fitInView(self.pixmap_item, Qt.AspectRatioMode.KeepAspectRatio)
            self.zoom_changed.emit(self.zoom)

    def zoom_by(self, factor: float) -> None:
        new = min(max(self.zoom * factor, 0.02), 40.0)
        f = new / max(self.zoom, 1e-9)
        self._auto_fit = False
        self.scale(f, f)
        self.zoom_changed.emit(self.zoom)

    # -- events -----------------------------------------------------------------------------
    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        if self._auto_fit:
            self.fit()

    def wheelEvent(self, event) -> None:  # noqa: N802
        steps = event.angleDelta().y() / 120.0
        if steps and self.has_image:
            self.zoom_by(1.15**steps)
        event.accept()

    def mousePressEvent(self, event) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton and self.has_image:
            self._drag_last = event.position()
            self.viewport().setCursor(Qt.CursorShape.SizeAllCursor)
            event.accept()
            return
        if event.button() == Qt.MouseButton.MiddleButton:
            self._pan_last = event.position()
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        pos = event.position()
        if self._drag_last is not None:
            d = pos - self._drag_last
            self._drag_last = pos
            if d.x() or d.y():
                self.window_dragged.emit(float(d.x()), float(d.y()))
            event.accept()
            return
        if self._pan_last is not None:
            d = pos - self._pan_last
            self._pan_last = pos
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - int(d.x()))
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - int(d.y()))
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if self._drag_last is not None or self._pan_last is not None:
            self._drag_last = self._pan_last = None
            self.viewport().unsetCursor()
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802
        self._auto_fit = True
        self.fit()

    def drawForeground(self, painter: QPainter, rect) -> None:  # noqa: N802
        painter.save()
        painter.resetTransform()
        vp = self.viewport().rect()
        font = QFont(self.font())
        font.setPointSizeF(max(font.pointSizeF(), 9.0))
        painter.setFont(font)
        margin = 8
        if not self.has_image:
            painter.setPen(QColor("#b0b0b0"))
            painter.drawText(vp, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                             self._placeholder)
        flags = {
            "top_left": Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft,
            "top_right": Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignRight,
            "bottom_left": Qt.AlignmentFlag.AlignBottom | Qt.AlignmentFlag.AlignLeft,
            "bottom_right": Qt.AlignmentFlag.AlignBottom | Qt.AlignmentFlag.AlignRight,
        }
        box = vp.adjusted(margin, margin, -margin, -margin)
        for corner, text in self._overlay.items():
            if not text:
                continue
            # a translucent plate keeps the text legible on white bone and on inverted images
            bound = painter.boundingRect(box, flags[corner], text).adjusted(-4, -2, 4, 2)
            painter.fillRect(bound, QColor(0, 0, 0, 130))
            painter.setPen(QColor("#f2e394"))
            painter.drawText(box, flags[corner], text)
        painter.restore()


class SeriesBar(QWidget):
    """Captions over a thumbnail strip: one band per series, spanning its thumbnails.

    The strip keeps one item per image (its row is the image's index, so keys and clicks walk
    the images in order); the grouping is drawn here, aligned with the items as the strip
    scrolls. ``groups`` are ``(label, first row, count)``, contiguous and in strip order.
    """

    COLOURS = ("#2f4a6b", "#5a3f6b")  # alternate, so neighbouring series stay apart

    def __init__(self, strip: QListWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("seriesBar")
        self._strip = strip
        self.groups: list[tuple[str, int, int]] = []
        font = QFont(self.font())
        font.setPointSizeF(max(font.pointSizeF() * 0.85, 7.0))
        self.setFont(font)
        self.setFixedHeight(self.fontMetrics().height() + 6)
        self.setAutoFillBackground(True)
        self.setStyleSheet("background: #1b1b1b;")
        strip.horizontalScrollBar().valueChanged.connect(self.update)
        strip.viewport().installEventFilter(self)  # re-laid out or repainted: follow it

    def eventFilter(self, obj, ev) -> bool:  # noqa: N802 - Qt override
        if ev.type() in (QEvent.Type.Paint, QEvent.Type.Resize) and self.groups:
            self.update()
        return False

    def set_groups(self, groups: list[tuple[str, int, int]]) -> None:
        self.groups = list(groups)
        self.update()

    def group_rects(self) -> list[QRect]:
        """Where each group's band is, in this widget's coordinates (empty when off screen)."""
        out = []
        vp = self._strip.viewport()
        for _label, first, count in self.groups:
            a, b = self._strip.item(first), self._strip.item(first + count - 1)
            if a is None or b is None:
                out.append(QRect())
                continue
            ra, rb = self._strip.visualItemRect(a), self._strip.visualItemRect(b)
            left = self.mapFromGlobal(vp.mapToGlobal(QPoint(ra.left(), 0))).x()
            right = self.mapFromGlobal(vp.mapToGlobal(QPoint(rb.right(), 0))).x()
            out.append(QRect(left + 1, 1, max(right - left - 2, 0), self.height() - 2))
        return out

    def group_at(self, x: int) -> int | None:
        return next((i for i, r in enumerate(self.group_rects()) if r.left() <= x <= r.right()),
                    None)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#1b1b1b"))
        fm = self.fontMetrics()
        for i, ((label, _first, _count), r) in enumerate(zip(self.groups, self.group_rects(),
                                                             strict=True)):
            if r.width() <= 0 or r.right() < 0 or r.left() > self.width():
                continue
            p.fillRect(r, QColor(self.COLOURS[i % len(self.COLOURS)]))
            p.setPen(QColor("#e8e8e8"))
            text = fm.elidedText(label, Qt.TextElideMode.ElideRight, max(r.width() - 8, 0))
            p.drawText(r.adjusted(4, 0, -4, 0),
                       Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, text)
        p.end()

    def event(self, ev) -> bool:  # the full label of an elided caption
        if ev.type() == QEvent.Type.ToolTip:
            i = self.group_at(ev.pos().x())
            if i is not None:
                QToolTip.showText(ev.globalPos(), self.groups[i][0], self)
            else:
                QToolTip.hideText()
            return True
        return super().event(ev)
