"""The Dask side of a ``--cluster`` run: a worker plugin that builds the engine once per worker.

Imported only by :mod:`desktop.screening.cluster` when a cluster is asked for, and by the Dask
workers themselves; the single-PC path never imports it (it imports ``distributed``).

Why a plugin: the scheduler hands it to every worker, the ones that join later and the ones a
nanny restarts after a crash included, so each loads and checks the bundle once, before its
first task, and a worker that cannot (no bundle at that path, another model) fails at the start
of the run with the reason, not halfway through the archive.
"""

from __future__ import annotations

from distributed import WorkerPlugin

from desktop.screening.cluster_tasks import (
    Batch,
    BatchResult,
    EngineSpec,
    screen_batch,
    worker_engine,
)

PLUGIN_NAME = "mura-screen-engine"


class EnginePlugin(WorkerPlugin):
    """Build (and keep) the worker's engine for ``spec`` as the worker starts."""

    name = PLUGIN_NAME

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec

    def setup(self, worker) -> None:  # noqa: ANN001 - distributed.Worker
        worker_engine(self.spec)


def run_batch(batch: Batch) -> BatchResult:
    """The task the client submits: :func:`screen_batch`, told which worker ran it."""
    from distributed import get_worker

    try:
        address = get_worker().address
    except ValueError:  # called outside a worker (tests, a local fallback)
        address = ""
    return screen_batch(batch, address)
