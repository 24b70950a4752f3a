"""The viewer's secondary windows: the model card (and, later, tags and settings)."""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

from desktop.render import card_html


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
