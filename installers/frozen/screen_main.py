"""Frozen ``mura-screen`` executable: the batch screener behind the frozen start-up wrapper."""

import multiprocessing
import sys

from mura_frozen import run


def _main(argv: list[str]) -> int:
    from desktop.screen import main

    return main(argv)


if __name__ == "__main__":
    # The screening pipeline decodes in "spawn" worker processes: in a frozen app each worker
    # starts this executable again, and freeze_support() turns that start into the worker.
    multiprocessing.freeze_support()
    sys.exit(run("mura-screen", _main))
