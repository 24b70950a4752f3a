"""desktop.screening.paths: per-user folders and the bundled model, as a frozen install sees them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from desktop.screening import paths


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for var in ("MURA_MODEL", "MURA_USER_DIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.fixture
def frozen_install(monkeypatch, clean_env) -> Path:
    """Pretend to be a PyInstaller build installed in a folder with a model next to it."""
    inst = clean_env / "opt" / "mura-fracture"
    (inst / "model").mkdir(parents=True)
    (inst / "model" / "card.json").write_text("{}")
    (inst / "mura-screen").write_text("")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(inst / "mura-screen"))
    return inst


def test_from_source_there_is_no_install_and_no_default_model(clean_env):
    assert not paths.is_frozen()
    assert paths.install_dir() is None
    assert paths.default_model_dir() is None


def test_frozen_finds_the_model_next_to_the_executable(frozen_install):
    assert paths.install_dir() == frozen_install.resolve()
    assert paths.default_model_dir() == frozen_install.resolve() / "model"


def test_frozen_through_a_symlinked_launcher(frozen_install, monkeypatch, clean_env):
    """/usr/bin/mura-screen -> /opt/mura-fracture/mura-screen still finds /opt's model."""
    link = clean_env / "bin" / "mura-screen"
    link.parent.mkdir()
    link.symlink_to(frozen_install / "mura-screen")
    monkeypatch.setattr(sys, "executable", str(link))
    assert paths.default_model_dir() == frozen_install.resolve() / "model"


def test_model_env_wins_even_when_missing(frozen_install, monkeypatch, tmp_path):
    monkeypatch.setenv("MURA_MODEL", str(tmp_path / "nowhere"))
    assert paths.default_model_dir() == tmp_path / "nowhere"


def test_no_model_in_install_means_none(frozen_install):
    (frozen_install / "model" / "card.json").unlink()
    assert paths.default_model_dir() is None


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="XDG layout is Linux's")
def test_xdg_locations_created_under_home(clean_env):
    home = clean_env / "home"
    assert paths.settings_dir() == home / ".config" / "mura-fracture"
    assert paths.cache_dir() == home / ".cache" / "mura-fracture"
    assert paths.log_dir() == home / ".local" / "state" / "mura-fracture" / "logs"
    assert all(p.is_dir() for p in (paths.settings_dir(), paths.cache_dir(), paths.log_dir()))


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="XDG layout is Linux's")
def test_xdg_overrides_and_relative_values_ignored(clean_env, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(clean_env / "xc"))
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/not/allowed")
    assert paths.cache_dir() == clean_env / "xc" / "mura-fracture"
    assert paths.settings_dir() == clean_env / "home" / ".config" / "mura-fracture"


def test_user_dir_override(clean_env, monkeypatch):
    monkeypatch.setenv("MURA_USER_DIR", str(clean_env / "portable"))
    assert paths.log_dir() == clean_env / "portable" / "logs"
    assert paths.cache_dir() == clean_env / "portable" / "cache"


def test_never_inside_the_install_folder(frozen_install, monkeypatch):
    """A user dir that would land in the install folder goes to the temp dir instead."""
    monkeypatch.setenv("MURA_USER_DIR", str(frozen_install / "data"))
    logs = paths.log_dir()
    assert not str(logs.resolve()).startswith(str(frozen_install.resolve()))
    assert logs.is_dir() and logs.name == "logs"


def test_unwritable_home_falls_back_to_temp(clean_env, monkeypatch):
    blocker = clean_env / "file-not-dir"
    blocker.write_text("x")
    monkeypatch.setenv("MURA_USER_DIR", str(blocker / "sub"))
    d = paths.cache_dir()
    assert d.is_dir() and "mura-fracture-" in str(d)


def test_unknown_kind_is_an_error():
    with pytest.raises(ValueError, match="unknown per-user folder kind 'models'"):
        paths.user_dir("models")
