"""Where mura-node keeps things under its ``[node] data_dir``, in one place.

``spool/<key>/`` received instances, ``results/<key>/`` the screening outputs (``screen.sqlite``,
``worklist.csv``, ``report.html``, ``dicom/``) plus ``node.json`` (what the node screened and
concluded), ``outbox/`` the results waiting for the PACS, ``logs/`` the node's log. The node
writes them; :mod:`desktop.node.received` and the viewer only read them.
"""

from __future__ import annotations

import json
from pathlib import Path

NODE_JSON = "node.json"


def spool_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "spool"


def results_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "results"


def outbox_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "outbox"


def logs_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "logs"


def read_node_json(folder: Path) -> dict:
    """``folder/node.json`` as a dict; {} when absent or unreadable (not screened yet)."""
    try:
        v = json.loads((Path(folder) / NODE_JSON).read_text(encoding="utf-8"))
        return v if isinstance(v, dict) else {}
    except (OSError, ValueError):
        return {}
