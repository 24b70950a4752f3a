"""Frozen ``mura-viewer`` executable: the PySide6 viewer behind the frozen start-up wrapper."""

import sys

from mura_frozen import run


def _main(argv: list[str]) -> int:
    from desktop.viewer import main

    return main(argv)


if __name__ == "__main__":
    sys.exit(run("mura-viewer", _main))
