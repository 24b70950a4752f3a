"""What the viewer's Help menu says (Qt-free): About, and the keyboard shortcuts.

About names the program's version, the loaded model with where it was trained and how well it
did, the licences of the model's weights and data and of the main components, and the
research-use statement: what a reader or an auditor asks first.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping

from desktop.screening.render import DISCLAIMER
from models.card import INTENDED_USE
from models.trust import BANNER, model_warnings, performance_lines

#: The components the runtime ships and their licences (installers/README.md "Licences").
COMPONENT_LICENCES = (
    ("OpenVINO", "Apache-2.0"), ("Qt for Python (PySide6)", "LGPL-3.0"), ("pydicom", "MIT"),
    ("pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg", "MIT"), ("pyjpegls (CharLS)", "MIT / BSD-3-Clause"),
    ("NumPy", "BSD-3-Clause"), ("Pillow", "MIT-CMU"), ("highdicom", "MIT"),
)


def about_html(version: str, card: Mapping | None) -> str:
    e = html.escape
    parts = [f"<h2>mura-viewer {e(version)}</h2>",
             f"<p><b>{e(DISCLAIMER)}.</b> {e(INTENDED_USE)}</p>",
             "<p>Offline: the viewer opens no network connection.</p>"]
    if card:
        parts.append(f"<h3>Model: {e(str(card.get('name', '?')))} v{e(str(card.get('version', '?')))}</h3>")
        parts += [f"<p style='color:#b3261e'><b>{BANNER}</b>: {e(w)}</p>" for w in model_warnings(card)]
        parts.append("<ul>" + "".join(f"<li>{e(line)}</li>" for line in performance_lines(card)) + "</ul>")
        lic = card.get("licences") or {}
        if lic:
            parts.append("<p>Model licences:</p><ul>" + "".join(
                f"<li>{e(str(k).replace('_', ' '))}: {e(str(v))}</li>" for k, v in lic.items()) + "</ul>")
    else:
        parts.append("<p>No model loaded.</p>")
    parts.append("<h3>Components</h3><ul>" + "".join(
        f"<li>{e(name)}: {e(lic)}</li>" for name, lic in COMPONENT_LICENCES) + "</ul>")
    return "\n".join(parts)


def shortcuts_html(rows: Iterable[tuple[str, list[str]]]) -> str:
    """A table of (command, its key sequences), in menu order; commands without a key left out."""
    e = html.escape
    body = "".join(f"<tr><td>{e(text.replace('&', '').rstrip('…'))}</td><td><b>{e(' or '.join(keys))}</b></td></tr>"
                   for text, keys in rows if keys)
    mouse = ("<p>Mouse: left-drag window/level, wheel zoom, middle-drag pan; drop files or folders on "
             "the window to open them.</p>")
    return f"<h2>Keyboard shortcuts</h2><table cellpadding='3'>{body}</table>{mouse}"
