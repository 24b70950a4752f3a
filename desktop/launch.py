"""The clinic programs' entry points (``mura-screen``, ``mura-viewer``, ``mura-node``): this module
imports nothing at its top, on purpose.

Why: the screener decodes in worker processes (:mod:`desktop.screening.workers`), and a spawned
worker (or the fork server the workers come from) first re-runs the script that started the
program, which imports the module its entry point names. When that was ``desktop.screening.cli`` every worker imported the whole
screener (pydicom, the report, SQLite...) before its first file, and with ``desktop.viewer.app``
PySide6 too: measured 0.1 s and 0.25 s of CPU per worker, per screening run, for nothing a worker
uses. A worker now imports only what its task needs (:mod:`desktop.screening.prepare`).

:func:`runtime_env` is also why the programs start here rather than in their own modules: it
must run before numpy is imported, in the program and (inherited) in its workers.
"""

from __future__ import annotations

import os

#: Environment the runtime sets for itself and its workers unless the user already set it.
#: numpy's OpenBLAS starts a thread per core at import (~0.06 s of CPU each time a process starts,
#: measured) for matrix products the runtime never does: inference runs on OpenVINO's own threads,
#: and the decode workers are already one per core.
RUNTIME_ENV = {"OPENBLAS_NUM_THREADS": "1"}


def runtime_env() -> None:
    """Apply :data:`RUNTIME_ENV` (values the user set win)."""
    for key, value in RUNTIME_ENV.items():
        os.environ.setdefault(key, value)


def screen(argv: list[str] | None = None) -> int:
    """``mura-screen``: :func:`desktop.screening.cli.main`."""
    runtime_env()
    from desktop.screening.cli import main

    return main(argv)


def viewer(argv: list[str] | None = None) -> int:
    """``mura-viewer``: :func:`desktop.viewer.app.main`."""
    runtime_env()
    from desktop.viewer.app import main

    return main(argv)


def node(argv: list[str] | None = None) -> int:
    """``mura-node``: :func:`desktop.node.cli.main`."""
    runtime_env()
    from desktop.node.cli import main

    return main(argv)
