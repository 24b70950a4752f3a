"""mura-node's TOML configuration and ``mura-node --check``: every mistake an administrator can
make is a NodeConfigError naming the file and the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from desktop.node.cli import main
from desktop.node.config import MB, load_config
from desktop.node.example import EXAMPLE_CONFIG
from models.errors import ConfigError, NodeConfigError
from tests.conftest import REPO

GOOD = """
[node]
ae_title = "MURA_NODE"
port = 11112
allowed_callers = ["PACS"]
data_dir = "data"
[destination]
ae_title = "PACS"
host = "127.0.0.1"
port = 4242
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "node.toml"
    p.write_text(text)
    return p


def test_the_example_configuration_is_valid(tmp_path):
    cfg = load_config(_write(tmp_path, EXAMPLE_CONFIG))
    assert cfg.listen.address == "127.0.0.1"  # loopback unless the administrator says otherwise
    assert cfg.listen.allowed_callers == ("PACS",) and cfg.destination.port == 104
    assert cfg.listen.tls is None and cfg.study.quiet_seconds == 30


def test_defaults_and_relative_paths(tmp_path):
    cfg = load_config(_write(tmp_path, GOOD))
    assert cfg.data_dir == tmp_path / "data"  # relative to the file, not the working folder
    assert cfg.listen.address == "127.0.0.1" and cfg.listen.max_associations == 4
    assert cfg.study.max_study_bytes == 2048 * MB and cfg.screening.model is None
    assert cfg.destination.retry_seconds == 10 and not cfg.destination.tls


@pytest.mark.parametrize("change, key, words", [
    (("allowed_callers = [\"PACS\"]", "alowed_callers = [\"PACS\"]"), "node.alowed_callers", "unknown key"),
    (("allowed_callers = [\"PACS\"]", "allowed_callers = []"), "node.allowed_callers", "empty"),
    (("allowed_callers = [\"PACS\"]", "allowed_callers = [\"A\\\\B\"]"), "node.allowed_callers[0]",
     "not a valid AE title"),
    (("ae_title = \"MURA_NODE\"", "ae_title = \"THIS_TITLE_IS_TOO_LONG\""), "node.ae_title", "AE title"),
    (("port = 11112", "port = 70000"), "node.port", "out of range"),
    (("port = 11112", "port = \"11112\""), "node.port", "expected an integer"),
    (("port = 4242", "port = true"), "destination.port", "expected an integer"),
    (("data_dir = \"data\"", "data_dir = \"data\"\naddress = \"pacs.local\""), "node.address",
     "not an IP address"),
    (("host = \"127.0.0.1\"", "host = \"\""), "destination.host", "not a host name"),
    (("port = 4242", "port = 4242\ntls = true"), "destination.tls", "no [tls] table"),
    (("[destination]", "[destinaton]"), "destinaton", "unknown table"),
    (("port = 4242", "port = 4242\n[study]\nmax_study_mb = 100\nmax_spool_mb = 10"),
     "study.max_spool_mb", "below max_study_mb"),
    (("port = 4242", "port = 4242\n[tls]\ncertificate = \"a.crt\""), "tls.private_key", "missing"),
    (("[node]", "[node\n"), "<file>", "not valid TOML"),
])
def test_each_mistake_names_the_file_and_key(tmp_path, change, key, words):
    p = _write(tmp_path, GOOD.replace(*change, 1))
    with pytest.raises(NodeConfigError) as err:
        load_config(p)
    assert err.value.key == key and words in err.value.reason
    assert str(err.value).startswith(f"{p}: {key}: ")
    assert isinstance(err.value, ConfigError)


def test_a_missing_table_and_a_missing_file(tmp_path):
    with pytest.raises(NodeConfigError, match=r"destination: missing"):
        load_config(_write(tmp_path, GOOD.split("[destination]")[0]))
    with pytest.raises(NodeConfigError, match=r"nothing\.toml: <file>: cannot read it"):
        load_config(tmp_path / "nothing.toml")


def test_check_validates_model_data_dir_and_tls(tmp_path, capsys):
    p = _write(tmp_path, GOOD)
    assert main(["--check", str(p)]) == 0
    out = capsys.readouterr().out
    assert "model: fracatlas-lite0" in out and "OK (listens on 127.0.0.1:11112" in out
    assert not (tmp_path / "data").exists()  # --check creates nothing
    bad_model = GOOD + '[screening]\nmodel = "no-such-bundle"\n'
    assert main(["--check", str(_write(tmp_path, bad_model))]) == 2
    assert "screening.model: " in capsys.readouterr().err
    (tmp_path / "node.crt").write_text("not a certificate")
    (tmp_path / "node.key").write_text("not a key")
    with_tls = GOOD + '[tls]\ncertificate = "node.crt"\nprivate_key = "node.key"\n'
    assert main(["--check", str(_write(tmp_path, with_tls))]) == 2
    assert "tls.certificate: " in capsys.readouterr().err


def test_decoding_options(tmp_path, capsys):
    """Neither flag: the card's validated decoding; exact_decode / fast_decode force one; both: refused."""
    from desktop.node.config import load_config

    plain = load_config(_write(tmp_path, GOOD)).screening
    assert (plain.fast_decode, plain.exact_decode) == (False, False)
    exact = load_config(_write(tmp_path, GOOD + "[screening]\nexact_decode = true\n")).screening
    assert exact.exact_decode and not exact.fast_decode
    both = GOOD + "[screening]\nexact_decode = true\nfast_decode = true\n"
    assert main(["--check", str(_write(tmp_path, both))]) == 2
    assert "screening.exact_decode: fast_decode and exact_decode contradict" in capsys.readouterr().err


def test_the_command_line(tmp_path):
    """The installed entry point: --example, --check, an invalid file (exit 2), no CONFIG."""
    run = [sys.executable, "-m", "desktop.node.cli"]
    ex = subprocess.run([*run, "--example"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert ex.returncode == 0 and ex.stdout == EXAMPLE_CONFIG
    bad = _write(tmp_path, GOOD.replace("port = 11112", "port = 0"))
    r = subprocess.run([*run, "--check", str(bad)], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 2 and f"{bad}: node.port: 0 is out of range" in r.stderr
    r = subprocess.run(run, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 2 and "CONFIG is required" in r.stderr
