"""The read-only listing's helpers: finding the node's data folder and the words of the list."""

from __future__ import annotations

import time

import pytest

from desktop.node.received import (
    NODE_ENV,
    RECEIVING,
    REFUSED,
    SCREENED,
    SENT,
    ReceivedStudy,
    default_node_location,
    node_data_dir,
    status_text,
    when_text,
)
from models.errors import ConfigError, NodeConfigError
from tests.desktop.node.conftest import write_config


def test_node_data_dir_from_the_configuration_or_the_folder(tmp_path):
    cfg = write_config(tmp_path, dest_port=11112)
    assert node_data_dir(cfg) == (tmp_path / "data").resolve()
    (tmp_path / "data" / "spool").mkdir(parents=True)
    assert node_data_dir(tmp_path / "data") == tmp_path / "data"


@pytest.mark.parametrize("what", ["missing", "empty folder", "bad toml"])
def test_node_data_dir_names_what_is_wrong(tmp_path, what):
    if what == "missing":
        where, error, words = tmp_path / "nope.toml", ConfigError, "no such file or folder"
    elif what == "empty folder":
        where, error, words = tmp_path, ConfigError, "not a mura-node data folder"
    else:
        where, error, words = tmp_path / "node.toml", NodeConfigError, "not valid TOML"
        where.write_text("[node\n")
    with pytest.raises(error, match=words) as e:
        node_data_dir(where)
    assert str(where) in str(e.value)


def test_default_node_location_prefers_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(NODE_ENV, str(tmp_path / "node.toml"))
    assert default_node_location() == tmp_path / "node.toml"


def _study(status: str, **kw) -> ReceivedStudy:
    return ReceivedStudy(key="k", status=status, n_instances=kw.pop("n", 2), received_at=None, **kw)


def test_status_text_says_where_the_results_are():
    assert status_text(_study(RECEIVING, n=1)) == "Receiving (1 image so far)"
    assert status_text(_study(REFUSED)).startswith("Refused: over the node's study size limit")
    assert status_text(_study(SENT, results_sent=3)) == "Results sent to the PACS (3/3)"
    waiting = _study(SCREENED, results_sent=1, results_pending=2, send_error="association refused")
    assert status_text(waiting) == ("Screened; 2 of 3 results waiting for the PACS; "
                                    "last error: association refused")


def test_when_text_shows_the_time_today_and_the_date_before():
    now = time.mktime((2026, 12, 4, 15, 30, 0, 0, 0, -1))
    assert when_text(now - 60, now) == "15:29:00"
    assert when_text(now - 3 * 86400, now) == "2026-12-01 15:30"
    assert when_text(None, now) == ""
