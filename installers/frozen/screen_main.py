"""Frozen ``mura-screen`` executable: the batch screener behind the frozen start-up wrapper."""

import sys

from mura_frozen import run


def _main(argv: list[str]) -> int:
    from desktop.screen import main

    return main(argv)


if __name__ == "__main__":
    sys.exit(run("mura-screen", _main))
