"""The one frozen executable: ``mura-viewer`` and ``mura-screen`` are names for it.

Why one program: PyInstaller appends the whole Python archive (8 MB) to every executable, so two
executables carried it twice. On Linux the package ships ``mura-fracture`` plus two symlinks and
the program dispatches on the name it was started as; ``mura-fracture viewer ...`` and
``mura-fracture screen ...`` work too. On Windows the spec builds two copies of this script,
because only the viewer may be a windowed (no console) program there.
"""

import multiprocessing
import ntpath
import sys

from mura_frozen import run

APPS = ("mura-viewer", "mura-screen")
USAGE = ("usage: mura-fracture {viewer,screen} [ARGS...]\n"
         "  viewer   the radiograph viewer (same as mura-viewer)\n"
         "  screen   the batch screener (same as mura-screen)\n"
         "  --version, --card: see `mura-fracture screen --help`")


def _viewer(argv: list[str]) -> int:
    from desktop.viewer.app import main

    return main(argv)


def _screen(argv: list[str]) -> int:
    from desktop.screening.cli import main

    return main(argv)


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
    return run(app, _viewer if app == "mura-viewer" else _screen, args)


if __name__ == "__main__":
    # The screening pipeline decodes in "spawn" worker processes: in a frozen app each worker
    # starts this executable again, and freeze_support() turns that start into the worker
    # (before any dispatch: a worker's argv is multiprocessing's, not the user's).
    multiprocessing.freeze_support()
    sys.exit(main())
