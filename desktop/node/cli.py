"""``mura-node``: the DICOM network node's command line (Qt-free, opt-in, LAN only).

``mura-node CONFIG`` listens, screens and sends until SIGTERM or Ctrl+C; ``--check`` validates
the configuration and its files without opening a socket; ``--list`` prints the received studies
(read-only); ``--echo`` tests the link to the destination with a C-ECHO; ``--example`` prints an
annotated configuration; ``--version`` and ``--card`` answer as ``mura-screen``'s do. Exit status: 0 success, 1 a run or an echo failed, 2 the configuration
is invalid. Log lines go to stderr (the journal, under systemd) and ``DATA/logs/node.log``; they
name studies by their key and peers by AE title and address, never by patient.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import signal
import sys
import threading
import time
from pathlib import Path

from desktop.node.config import NodeConfig, check_environment, load_config
from desktop.node.example import EXAMPLE_CONFIG
from desktop.node.layout import logs_dir
from models.errors import ConfigError, DicomNetworkError, MuraError

log = logging.getLogger("mura.node")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="mura-node",
        description="DICOM node: receive radiograph studies from a PACS (C-STORE), screen each "
        "complete study like mura-screen --dicom-out, send the SR and SC results back. Listens "
        "only when started, on the configured address. Research use only - not for diagnostic use.")
    ap.add_argument("config", nargs="?", help="the node's TOML configuration (see --example)")
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--check", action="store_true",
                      help="validate CONFIG (values, data folder, model bundle, TLS files) and exit; "
                      "opens no socket")
    what.add_argument("--list", action="store_true",
                      help="list the received studies and their results (read-only) and exit")
    what.add_argument("--echo", action="store_true",
                      help="C-ECHO the configured destination (is the PACS reachable and does it "
                      "accept our AE title?) and exit")
    what.add_argument("--example", action="store_true", help="print an annotated configuration")
    return ap


def setup_logging(cfg: NodeConfig) -> None:
    """stderr plus a rotating file in the data folder; library warnings (pydicom's, which name
    spool paths) go to the file only."""
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    folder = logs_dir(cfg.data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    handlers: list[logging.Handler] = [
        logging.StreamHandler(sys.stderr),
        logging.handlers.RotatingFileHandler(folder / "node.log", maxBytes=1 << 20, backupCount=3,
                                             encoding="utf-8"),
    ]
    for h in handlers:
        h.setFormatter(fmt)
    log.handlers, log.propagate = handlers, False
    log.setLevel(logging.INFO)
    # pynetdicom's lines quote UIDs and repeat what we log ourselves (rejections, aborts, an
    # unreachable PACS); highdicom's INFO lines quote UIDs too.
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    logging.getLogger("highdicom").setLevel(logging.WARNING)
    from desktop.screening.support import silence_library_warnings

    silence_library_warnings(None if cfg.screening.anonymize else folder / "libraries.log")


def run_node(cfg: NodeConfig) -> int:
    """Start the node and run it until SIGTERM/SIGINT; 0 after a clean stop."""
    from desktop.node.service import Node

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    node = Node(cfg)
    node.start()
    try:
        node.run(stop)
    finally:
        node.stop()
    log.info("stopped")
    return 0


def echo(cfg: NodeConfig) -> int:
    from desktop.node.scu import destination_name, echo_destination

    t0 = time.monotonic()
    try:
        echo_destination(cfg)
    except DicomNetworkError as e:
        print(f"mura-node: echo failed: {e}", file=sys.stderr)
        return 1
    print(f"{destination_name(cfg)}: C-ECHO succeeded in {time.monotonic() - t0:.2f} s")
    return 0


def print_list(cfg: NodeConfig) -> int:
    from desktop.node.received import received_studies

    rows = received_studies(cfg.data_dir)
    print(f"{'study key':<24}  {'status':<9}  {'imgs':>4}  {'verdict':<13}  {'P':>6}  results sent")
    for s in rows:
        p = "" if s.probability is None else f"{s.probability:.3f}"
        sent = f"{s.results_sent}/{s.results_sent + s.results_pending}"
        print(f"{s.key:<24}  {s.status:<9}  {s.n_instances:>4}  {s.verdict:<13}  {p:>6}  {sent}"
              + (f"  ({s.send_error})" if s.send_error else ""))
    print(f"{len(rows)} studies in {cfg.data_dir}")
    return 0


def accepted_lines() -> list[str]:
    """What the node accepts, for the PACS administrator (--check prints it)."""
    from pydicom.uid import UID

    from desktop.node.scp import STORAGE_SOP_CLASSES, accepted_transfer_syntaxes

    names = [UID(ts).name for ts in accepted_transfer_syntaxes()]
    return [f"accepts: {', '.join(STORAGE_SOP_CLASSES.values())} (and C-ECHO)",
            f"in {len(names)} transfer syntaxes: {'; '.join(names)}"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    from desktop.screening.support import dispatch

    rc = dispatch("mura-node", argv)  # --version, --card, --check-decode: as mura-screen answers them
    if rc is not None:
        return rc
    a = build_parser().parse_args(argv)
    if a.example:
        print(EXAMPLE_CONFIG, end="")
        return 0
    if not a.config:
        build_parser().print_usage(sys.stderr)
        print("mura-node: error: CONFIG is required (mura-node --example prints one)", file=sys.stderr)
        return 2
    try:
        cfg = load_config(a.config)
        if a.check:
            for line in check_environment(cfg) + accepted_lines():
                print(line)
            print(f"{Path(a.config)}: OK (listens on {cfg.listen.address}:{cfg.listen.port} as "
                  f"{cfg.listen.ae_title}; results to {cfg.destination.ae_title}@"
                  f"{cfg.destination.host}:{cfg.destination.port})")
            return 0
        if a.list:
            return print_list(cfg)
        if a.echo:
            return echo(cfg)
        setup_logging(cfg)
        return run_node(cfg)
    except ConfigError as e:
        print(f"mura-node: configuration error: {e}", file=sys.stderr)
        return 2
    except MuraError as e:
        print(f"mura-node: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # the data folder, a log file: name it, no traceback
        print(f"mura-node: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
