"""The viewer's secondary windows: the model card, the DICOM tag browser and the settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTextBrowser,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop.screening.render import card_html
from desktop.viewer.settings import WL_PRESETS, ViewerSettings, device_choices
from desktop.viewer.tags import TagRow, filter_rows, read_tags
from models.engine import available_devices
from models.errors import DicomError


class HtmlDialog(QDialog):
    """Read-only HTML with a Close button: the model card, About, the keyboard shortcuts."""

    def __init__(self, title: str, text: str, parent: QWidget | None = None, name: str = "",
                 size: tuple[int, int] = (620, 640)) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self.setWindowTitle(title)
        self.resize(*size)
        lay = QVBoxLayout(self)
        self.browser = QTextBrowser(self)
        self.browser.setOpenExternalLinks(False)
        self.browser.setOpenLinks(False)  # offline app: no link leads anywhere
        self.browser.setHtml(text)
        lay.addWidget(self.browser)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, parent=self)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)


class ModelCardDialog(HtmlDialog):
    """The card in words: what the model is, what it learnt from, how it did, what it is for."""

    def __init__(self, card: dict, parent: QWidget | None = None) -> None:
        super().__init__(f"Model card — {card.get('name', '?')} {card.get('version', '')}", card_html(card),
                         parent, "modelCardDialog")


class TagBrowserDialog(QDialog):
    """Every DICOM element of one file in a tree (sequences nested), with a search box.

    The search matches tag numbers ("0028,1050" or "00281050"), keywords, names and values;
    rows on the way to a match stay visible so a match inside a sequence keeps its context.
    """

    COLUMNS = ("Tag", "Keyword", "VR", "Value")

    def __init__(self, path: str | Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("tagBrowserDialog")
        self.resize(860, 640)
        lay = QVBoxLayout(self)
        self.path_label = QLabel(self)
        self.path_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.path_label.setWordWrap(True)
        lay.addWidget(self.path_label)
        self.search = QLineEdit(self)
        self.search.setObjectName("tagSearch")
        self.search.setPlaceholderText("Search keyword, tag (0028,1050) or value…")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self._refill)
        lay.addWidget(self.search)
        self.tree = QTreeWidget(self)
        self.tree.setObjectName("tagTree")
        self.tree.setColumnCount(len(self.COLUMNS))
        self.tree.setHeaderLabels(list(self.COLUMNS))
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        hdr = self.tree.header()
        for col in range(3):
            hdr.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        hdr.setStretchLastSection(True)
        lay.addWidget(self.tree, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, parent=self)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        self.rows: list[TagRow] = []
        self.set_path(path)

    def set_path(self, path: str | Path) -> None:
        """Show another file (the viewer follows the current image)."""
        path = Path(path)
        self.setWindowTitle(f"DICOM tags — {path.name}")
        self.path_label.setText(str(path))
        try:
            self.rows = read_tags(path)
        except DicomError as e:
            self.rows = [TagRow("", "Error", "", "", e.reason)]
        self._refill()

    def _refill(self) -> None:
        needle = self.search.text()
        self.tree.clear()
        self._add(self.tree.invisibleRootItem(), filter_rows(self.rows, needle))
        if needle.strip():
            self.tree.expandAll()
        else:
            self.tree.expandToDepth(0)

    def _add(self, parent: QTreeWidgetItem, rows: list[TagRow]) -> None:
        for r in rows:
            item = QTreeWidgetItem(parent, [r.tag, r.keyword or r.name, r.vr, r.value])
            item.setToolTip(1, r.name)
            item.setToolTip(3, r.value)
            self._add(item, r.children)

    def visible_rows(self) -> list[tuple[str, str, str, str]]:
        """Every row in the tree (depth first), for tests: (tag, keyword, VR, value)."""
        out: list[tuple[str, str, str, str]] = []

        def walk(item: QTreeWidgetItem) -> None:
            for i in range(item.childCount()):
                c = item.child(i)
                out.append(tuple(c.text(k) for k in range(4)))  # type: ignore[arg-type]
                walk(c)

        walk(self.tree.invisibleRootItem())
        return out


class SettingsDialog(QDialog):
    """Device, model bundle and default window. ``settings()`` is what the user chose; the
    window saves it and reloads the engine when the device or the bundle changed."""

    def __init__(self, current: ViewerSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._current = current
        self.setObjectName("settingsDialog")
        self.setWindowTitle("Settings")
        form = QFormLayout(self)
        self.device_combo = QComboBox(self)
        self.device_combo.setObjectName("deviceCombo")
        try:
            found = available_devices()
        except Exception:  # noqa: BLE001 - OpenVINO missing or broken: offer the basics
            found = []
        for d in device_choices(found):
            absent = d not in found and d not in ("AUTO", "CPU")
            self.device_combo.addItem(d + (" (not reported by OpenVINO)" if absent else ""), d)
        self.device_combo.setEditable(False)
        idx = self.device_combo.findData(current.device)
        if idx < 0:  # a device set elsewhere (e.g. in the INI file): keep it selectable
            self.device_combo.addItem(current.device, current.device)
            idx = self.device_combo.count() - 1
        self.device_combo.setCurrentIndex(idx)
        self.device_combo.setToolTip("OpenVINO reports: " + (", ".join(found) or "nothing"))
        form.addRow("Inference device:", self.device_combo)
        row = QHBoxLayout()
        self.model_edit = QLineEdit(current.model_path, self)
        self.model_edit.setObjectName("modelPathEdit")
        self.model_edit.setPlaceholderText("Folder with card.json (empty: the default model)")
        browse = QPushButton("Browse…", self)
        browse.clicked.connect(self._browse)
        row.addWidget(self.model_edit, 1)
        row.addWidget(browse)
        form.addRow("Model bundle:", row)
        self.preset_combo = QComboBox(self)
        self.preset_combo.setObjectName("defaultWindowCombo")
        for key, (label, _prefix) in WL_PRESETS.items():
            self.preset_combo.addItem(label, key)
        self.preset_combo.setCurrentIndex(max(self.preset_combo.findData(current.wl_preset), 0))
        form.addRow("Default window:", self.preset_combo)
        note = QLabel("Changing the device or the bundle reloads the model; studies already "
                      "analysed are analysed again with it.", self)
        note.setWordWrap(True)
        note.setStyleSheet("QLabel { color: #666; }")
        form.addRow(note)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel,
            parent=self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.resize(560, self.sizeHint().height())  # as tall as its rows: no empty band below

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model bundle folder",
                                                  self.model_edit.text())
        if folder:
            self.model_edit.setText(folder)

    def settings(self) -> ViewerSettings:
        """What the reader chose; what the dialog does not edit (the node) as it was."""
        return dataclasses.replace(self._current, device=str(self.device_combo.currentData()),
                                   model_path=self.model_edit.text().strip(),
                                   wl_preset=str(self.preset_combo.currentData()))
