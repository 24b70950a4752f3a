"""installers/linux/slim_icu.py: the English-only ICU data still serves what Qt asks of it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "installers" / "linux" / "slim_icu.py"

QT_CHECK = """
from PySide6.QtCore import QCollator, QLocale, QStringDecoder
from PySide6.QtWidgets import QApplication, QLabel
app = QApplication([])
print("collate", QCollator(QLocale("en_US")).compare("apple", "Banana"),
      QCollator(QLocale("de_DE")).compare("\\u00c4pfel", "Zebra"))
print("upper", QLocale("tr_TR").toUpper("istanbul"), QLocale("en_US").toUpper("stra\\u00dfe"))
print("cp1252", QStringDecoder("windows-1252").isValid())
label = QLabel("Research use only \\u2014 not for diagnostic use")
label.show()
app.processEvents()
print("label", label.grab().width() > 50)
"""


def _icudata() -> Path:
    import PySide6

    libs = sorted((Path(PySide6.__file__).parent / "Qt" / "lib").glob("libicudata.so.*"))
    if not libs:
        pytest.skip("this PySide6 build has no bundled ICU data library")
    return libs[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux Qt builds only")
def test_slim_icu_keeps_collation_casing_and_cp1252(tmp_path):
    for tool in ("icupkg", "gcc", "readelf"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed (icu-devtools, gcc, binutils)")
    lib = _icudata()
    r = subprocess.run([sys.executable, str(SCRIPT), str(lib), str(tmp_path)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    slim = tmp_path / lib.name
    assert slim.stat().st_size < lib.stat().st_size / 4
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "LD_PRELOAD": str(slim)}
    out = subprocess.run([sys.executable, "-c", QT_CHECK], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Could not create collator" not in out.stderr, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert lines["collate"] == "-1 -1"  # apple < Banana; Äpfel < Zebra (root rules)
    assert lines["upper"] == "\u0130STANBUL STRASSE"  # Turkish dotted I is ICU's, not Qt's own
    assert lines["cp1252"] == "True" and lines["label"] == "True"
