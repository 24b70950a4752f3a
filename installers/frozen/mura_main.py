"""The one frozen executable: ``mura-viewer``, ``mura-screen`` and ``mura-node`` are names for it.

Why one program: PyInstaller appends the whole Python archive (8 MB) to every executable, so two
executables carried it twice. On Linux the package ships ``mura-fracture`` plus symlinks and
the program dispatches on the name it was started as; ``mura-fracture viewer ...``,
``mura-fracture screen ...`` and ``mura-fracture node ...`` work too. On Windows the spec builds
two copies of this script (viewer and screener: only the viewer may be a windowed program
there); the DICOM node (``mura-node``, a systemd service) is packaged for Linux only.
"""

import multiprocessing
import ntpath
import sys

from mura_frozen import run

APPS = ("mura-viewer", "mura-screen", "mura-node")
USAGE = ("usage: mura-fracture {viewer,screen,node} [ARGS...]\n"
         "  viewer   the radiograph viewer (same as mura-viewer)\n"
         "  screen   the batch screener (same as mura-screen)\n"
         "  node     the DICOM node a PACS sends studies to (same as mura-node)\n"
         "  --version, --card: see `mura-fracture screen --help`")


def _viewer(argv: list[str]) -> int:
    from desktop.launch import viewer

    return viewer(argv)


def _screen(argv: list[str]) -> int:
    from desktop.launch import screen

    return screen(argv)


def _node(argv: list[str]) -> int:
    from desktop.launch import node

    return node(argv)


MAINS = {"mura-viewer": _viewer, "mura-screen": _screen, "mura-node": _node}


def resolve(argv0: str, args: list[str]) -> tuple[str | None, list[str]]:
    """Which app to run for this start: by the executable's name, else by the first argument."""
    name = ntpath.basename(argv0).lower()  # splits on "/" and on backslashes
    if name.endswith(".exe"):
        name = name[:-4]
    if name in APPS:
        return name, args
    if args and f"mura-{args[0]}" in APPS:
        return f"mura-{args[0]}", args[1:]
    return None, args


def main() -> int:
    app, args = resolve(sys.argv[0], sys.argv[1:])
    if app is None:
        print(USAGE, file=sys.stderr)
        return 2
    return run(app, MAINS[app], args)


if __name__ == "__main__":
    # The screening pipeline decodes in "spawn" worker processes: in a frozen app each worker
    # starts this executable again, and freeze_support() turns that start into the worker
    # (before any dispatch: a worker's argv is multiprocessing's, not the user's).
    multiprocessing.freeze_support()
    sys.exit(main())
