"""mura-node's configuration: one TOML file, read with :mod:`tomllib`, every value checked.

Why so strict: the file is written by a PACS administrator, not a developer, and a typo
(``alowed_callers``) silently ignored would leave the node open to every caller or sending results
nowhere. So unknown keys are errors, every value is type- and range-checked, and each error is a
:class:`~models.errors.NodeConfigError` naming the file and the dotted key. ``mura-node --check``
runs :func:`load_config` and then :func:`check_environment` (folders writable, model bundle
intact, TLS files loadable) without opening any socket.

Relative paths are resolved against the configuration file's folder, so a config moved together
with its certificates keeps working.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from desktop.node.tls import TlsConfig, server_context
from models.errors import MuraError, NodeConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the project runs 3.11; tomli is tomllib's backport
    import tomli as tomllib

MB = 1 << 20


@dataclass(frozen=True)
class ListenConfig:
    """Who may send us studies, and where we listen."""

    ae_title: str = "MURA_NODE"
    address: str = "127.0.0.1"
    port: int = 11112
    allowed_callers: tuple[str, ...] = ()
    max_associations: int = 4
    tls: TlsConfig | None = None


@dataclass(frozen=True)
class DestinationConfig:
    """Where the SR and SC results go (usually the PACS that sent the study)."""

    ae_title: str
    host: str
    port: int
    tls: bool = False
    retry_seconds: float = 10.0
    retry_max_seconds: float = 600.0


@dataclass(frozen=True)
class StudyConfig:
    """When a study counts as complete, and how much the spool may hold."""

    quiet_seconds: float = 30.0
    max_study_bytes: int = 2048 * MB
    max_spool_bytes: int = 20480 * MB
    retain_hours: float = 168.0


@dataclass(frozen=True)
class ScreeningConfig:
    """How studies are screened: the same options as ``mura-screen``."""

    model: Path | None = None  # None: the default bundle (models.reference)
    device: str = "CPU"
    workers: int = 1
    anonymize: bool = False
    # neither: the model card's validated decoding, as mura-screen's default
    fast_decode: bool = False  # every JPEG 2000 / baseline JPEG at reduced resolution, validated or not
    exact_decode: bool = False  # every file in full


@dataclass(frozen=True)
class NodeConfig:
    path: Path
    data_dir: Path
    listen: ListenConfig
    destination: DestinationConfig
    study: StudyConfig = field(default_factory=StudyConfig)
    screening: ScreeningConfig = field(default_factory=ScreeningConfig)


#: Every key of every table: anything else is a typo, reported before a "missing" key it explains.
KNOWN = {
    "node": ("ae_title", "address", "port", "allowed_callers", "max_associations", "data_dir"),
    "destination": ("ae_title", "host", "port", "tls", "retry_seconds", "retry_max_seconds"),
    "study": ("quiet_seconds", "max_study_mb", "max_spool_mb", "retain_hours"),
    "screening": ("model", "device", "workers", "anonymize", "fast_decode", "exact_decode"),
    "tls": ("certificate", "private_key", "ca"),
}


class _Table:
    """One TOML table being read: unknown keys refused at once, then typed getters."""

    def __init__(self, path: Path, name: str, data: Any) -> None:
        self.path, self.name = path, name
        if not isinstance(data, dict):
            raise self.error(name, f"must be a table ([{name}]), got {type(data).__name__}")
        unknown = sorted(set(data) - set(KNOWN[name]))
        if unknown:
            raise self.error(f"{name}.{unknown[0]}", "unknown key (a typo?); known keys: "
                             + ", ".join(KNOWN[name]))
        self.data = data

    def error(self, key: str, reason: str) -> NodeConfigError:
        return NodeConfigError(self.path, key, reason)

    def _get(self, key: str, kinds: tuple[type, ...], what: str, default: Any) -> Any:
        if key not in self.data:
            if default is _REQUIRED:
                raise self.error(f"{self.name}.{key}", f"missing (expected {what})")
            return default
        value = self.data[key]
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            raise self.error(f"{self.name}.{key}", f"expected {what}, got {value!r}")
        return value

    def text(self, key: str, default: Any = None) -> str:
        return self._get(key, (str,), "a string", _REQUIRED if default is None else default)

    def number(self, key: str, default: Any, lo: float, hi: float, integer: bool = False) -> Any:
        kinds: tuple[type, ...] = (int,) if integer else (int, float)
        v = self._get(key, kinds, "an integer" if integer else "a number", default)
        if not lo <= v <= hi:
            raise self.error(f"{self.name}.{key}", f"{v} is out of range ({lo:g} to {hi:g})")
        return v

    def flag(self, key: str, default: bool) -> bool:
        return self._get(key, (bool,), "true or false", default)

    def strings(self, key: str) -> list[str]:
        v = self._get(key, (list,), "a list of strings", _REQUIRED)
        bad = [x for x in v if not isinstance(x, str)]
        if bad:
            raise self.error(f"{self.name}.{key}", f"expected a list of strings, got {bad[0]!r} in it")
        return v

    def file(self, key: str, required: bool = True) -> Path | None:
        v = self._get(key, (str,), "a file path", _REQUIRED if required else "")
        return _resolve(self.path, v) if v else None


_REQUIRED = object()
SECTIONS = tuple(KNOWN)


def _resolve(config_path: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (config_path.parent / p).resolve()


def valid_ae_title(v: str) -> bool:
    """An AE title as PS3.5 allows it: 1-16 characters of printable ASCII, no backslash, not
    only spaces (leading/trailing spaces are not significant)."""
    return 1 <= len(v) <= 16 and bool(v.strip()) and "\\" not in v and all(32 <= ord(c) < 127 for c in v)


def _ae(t: _Table, key: str, value: str) -> str:
    if not valid_ae_title(value):
        raise t.error(key, f"{value!r} is not a valid AE title (1 to 16 printable ASCII "
                      "characters, no backslash, not only spaces)")
    return value.strip()


def _listen(t: _Table, tls: TlsConfig | None) -> ListenConfig:
    title = _ae(t, "node.ae_title", t.text("ae_title", "MURA_NODE"))
    address = t.text("address", "127.0.0.1")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise t.error("node.address", f"{address!r} is not an IP address (the address to listen "
                      "on: 127.0.0.1 for this machine only, or one of its LAN addresses)") from None
    port = t.number("port", 11112, 1, 65535, integer=True)
    callers = t.strings("allowed_callers")
    if not callers:
        raise t.error("node.allowed_callers", "empty: list the calling AE titles allowed to send "
                      "studies (the PACS's own AE title)")
    callers = [_ae(t, f"node.allowed_callers[{i}]", c) for i, c in enumerate(callers)]
    assoc = t.number("max_associations", 4, 1, 64, integer=True)
    return ListenConfig(title, address, port, tuple(callers), assoc, tls)


def _destination(t: _Table, tls: TlsConfig | None) -> DestinationConfig:
    title = _ae(t, "destination.ae_title", t.text("ae_title"))
    host = t.text("host")
    if not host.strip() or any(c.isspace() for c in host):
        raise t.error("destination.host", f"{host!r} is not a host name or IP address")
    port = t.number("port", _REQUIRED, 1, 65535, integer=True)
    use_tls = t.flag("tls", False)
    if use_tls and tls is None:
        raise t.error("destination.tls", "true, but there is no [tls] table with the certificate")
    first = float(t.number("retry_seconds", 10.0, 0.1, 86400))
    most = float(t.number("retry_max_seconds", 600.0, 0.1, 7 * 86400))
    if most < first:
        raise t.error("destination.retry_max_seconds", f"{most:g} is below retry_seconds ({first:g})")
    return DestinationConfig(title, host.strip(), port, use_tls, first, most)


def _study(t: _Table) -> StudyConfig:
    quiet = float(t.number("quiet_seconds", 30.0, 0.1, 86400))
    study_mb = t.number("max_study_mb", 2048, 1, 1 << 20)
    spool_mb = t.number("max_spool_mb", 20480, 1, 1 << 24)
    if spool_mb < study_mb:
        raise t.error("study.max_spool_mb", f"{spool_mb} is below max_study_mb ({study_mb}): "
                      "no study of the allowed size would fit")
    retain = float(t.number("retain_hours", 168.0, 0, 24 * 3650))
    return StudyConfig(quiet, int(study_mb * MB), int(spool_mb * MB), retain)


def _screening(t: _Table) -> ScreeningConfig:
    device = t.text("device", "CPU")
    if device.split(":")[0].split(".")[0] not in ("CPU", "GPU", "AUTO", "NPU"):
        raise t.error("screening.device", f"{device!r}: expected CPU, GPU or AUTO")
    fast, exact = t.flag("fast_decode", False), t.flag("exact_decode", False)
    if fast and exact:
        raise t.error("screening.exact_decode", "fast_decode and exact_decode contradict each other: set one")
    return ScreeningConfig(t.file("model", required=False), device,
                           t.number("workers", 1, 0, 64, integer=True),
                           t.flag("anonymize", False), fast, exact)


def _tls(t: _Table) -> TlsConfig:
    cert, key = t.file("certificate"), t.file("private_key")
    assert cert is not None and key is not None  # required=True
    return TlsConfig(cert, key, t.file("ca", required=False))


def load_config(path: str | Path) -> NodeConfig:
    """Read and check ``path``; raises :class:`NodeConfigError` naming the file and key."""
    path = Path(path).expanduser().resolve()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise NodeConfigError(path, "<file>", f"cannot read it ({e.strerror or e})") from e
    except UnicodeDecodeError as e:
        raise NodeConfigError(path, "<file>", f"not UTF-8 text ({e.reason})") from e
    except tomllib.TOMLDecodeError as e:
        raise NodeConfigError(path, "<file>", f"not valid TOML ({e})") from e
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise NodeConfigError(path, unknown[0], "unknown table or key; expected the tables "
                              + ", ".join(f"[{s}]" for s in SECTIONS))
    for required in ("node", "destination"):
        if required not in raw:
            raise NodeConfigError(path, required, f"missing: the [{required}] table is required")
    tables = {s: _Table(path, s, raw.get(s, {})) for s in SECTIONS}
    tls = _tls(tables["tls"]) if "tls" in raw else None
    node = tables["node"]
    data_dir = node.file("data_dir")
    assert data_dir is not None
    return NodeConfig(path, data_dir, _listen(node, tls), _destination(tables["destination"], tls),
                      _study(tables["study"]), _screening(tables["screening"]))


def check_environment(cfg: NodeConfig) -> list[str]:
    """What ``--check`` verifies beyond the file itself, without opening a socket: the data
    folder can be created and written, the model bundle loads with its checksums, the TLS files
    make an SSL context. Returns one line per check passed; raises on the first failure."""
    lines = [_check_data_dir(cfg)]
    lines.append(_check_model(cfg))
    if cfg.listen.tls is not None:
        server_context(cfg.listen.tls, cfg.path)
        lines.append(f"TLS: certificate {cfg.listen.tls.certificate} loads"
                     + (f", peers verified against {cfg.listen.tls.ca}" if cfg.listen.tls.ca else ""))
    return lines


def _check_data_dir(cfg: NodeConfig) -> str:
    d = cfg.data_dir
    parent = next((p for p in (d, *d.parents) if p.exists()), None)
    if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise NodeConfigError(cfg.path, "node.data_dir", f"{d} cannot be created or written "
                              f"(nearest existing folder: {parent})")
    return f"data folder: {d}" + ("" if d.exists() else " (created at start)")


def _check_model(cfg: NodeConfig) -> str:
    from models.card import load_bundle
    from models.reference import require_default_bundle

    try:
        where = cfg.screening.model or require_default_bundle().path
        bundle = load_bundle(where)
    except MuraError as e:
        raise NodeConfigError(cfg.path, "screening.model", str(e)) from e
    return f"model: {bundle.model_id} ({where})"
