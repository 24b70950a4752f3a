"""The viewer's secondary windows: the model card, the DICOM tag browser and the settings."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QLineEdit,
    QTextBrowser,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop.render import card_html
from desktop.tags import TagRow, filter_rows, read_tags
from models.errors import DicomError


class ModelCardDialog(QDialog):
    """The card in words: what the model is, what it learnt from, how it did, what it is for."""

    def __init__(self, card: dict, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelCardDialog")
        self.setWindowTitle(f"Model card — {card.get('name', '?')} {card.get('version', '')}")
        self.resize(620, 640)
        lay = QVBoxLayout(self)
        self.browser = QTextBrowser(self)
        self.browser.setOpenExternalLinks(False)
        self.browser.setOpenLinks(False)  # offline app: no link leads anywhere
        self.browser.setHtml(card_html(card))
        lay.addWidget(self.browser)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, parent=self)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)


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
