"""Model inputs from the decode workers to the screener through shared memory, not a pipe.

Why: a worker's result travels pickled through a pipe. For a 256 px model the (1, 256, 256)
float32 input is 256 KB: pickled in the worker, pushed through the pipe's 64 KB buffer in
pieces (a context switch each), read and unpickled by the screener's result thread, which holds
the GIL meanwhile. Measured: ~1.0 ms of CPU per file against ~0.2 ms for the same task
returning only a slot number (2 fork-server workers; ~7 % of a FracAtlas JPEG file's whole CPU
cost). So each file in flight gets a slot of one shared block: the worker writes its input
there and returns the slot's number, the screener copies the input out and frees the slot.

Ownership: the screener (:class:`InputSlots`) creates the block, hands out slots for the files
in flight, and unlinks the block when its run ends; a worker still busy with a dropped file
writes into a block no run reads any more. Workers attach without registering the block with
multiprocessing's resource tracker (:func:`_attach`): the tracker is shared with the screener,
which alone owns the block, and which the tracker cleans up if the screener is killed.
Anything unexpected on the worker's side (a block gone, another input shape) sends the input
through the pipe as before: slower, never wrong. A kill -9 of the whole process group (the
tracker too) leaves the block in /dev/shm, in RAM: blocks are named after their owner's pid, and
a new run unlinks those whose owner is gone (:func:`sweep`).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import secrets
from collections import deque
from dataclasses import dataclass
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np

__all__ = ["InputSlots", "Slot", "sweep", "write_slot"]

_DTYPE = np.dtype(np.float32)
PREFIX = "mura_in_"  # + owner pid + "_" + random: what sweep() recognises
SHM_DIR = Path("/dev/shm")  # where Linux keeps POSIX shared memory (macOS and Windows: nowhere to list)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def sweep(shm_dir: Path = SHM_DIR) -> list[str]:
    """Unlink the blocks of screeners that are gone (killed with their resource tracker); returns
    their names. Blocks of live processes, and anything not ours, are left alone."""
    gone = []
    with contextlib.suppress(OSError):
        for p in shm_dir.glob(PREFIX + "*"):
            try:
                pid = int(p.name[len(PREFIX):].split("_")[0])
            except ValueError:
                continue
            if pid != os.getpid() and not _alive(pid):
                with contextlib.suppress(OSError):
                    p.unlink()
                    gone.append(p.name)
    return gone


@dataclass(frozen=True)
class Slot:
    """Where a worker writes one file's model input (pickled with the task: a few bytes)."""

    block: str  # the shared block's name
    index: int
    n: int  # slots in the block
    shape: tuple[int, ...]


class InputSlots:
    """A shared block of ``n`` model inputs of ``shape`` (float32), owned by one screening run."""

    def __init__(self, n: int, shape: tuple[int, ...]) -> None:
        self.n, self.shape = int(n), tuple(int(s) for s in shape)
        self._nbytes = int(np.prod(self.shape)) * _DTYPE.itemsize
        sweep()
        self._shm: shared_memory.SharedMemory | None = shared_memory.SharedMemory(
            f"{PREFIX}{os.getpid()}_{secrets.token_hex(4)}", create=True, size=self.n * self._nbytes)
        self._free = deque(range(self.n))

    @property
    def name(self) -> str:
        assert self._shm is not None, "slots used after close()"
        return self._shm.name

    @property
    def n_free(self) -> int:
        return len(self._free)

    def take(self) -> Slot | None:
        """A free slot, or None when all are taken (the caller sends that input by pipe)."""
        if not self._free or self._shm is None:
            return None
        return Slot(self.name, self._free.popleft(), self.n, self.shape)

    def read(self, slot: Slot) -> np.ndarray:
        """A copy of the input a worker wrote into ``slot`` (the slot can be reused at once)."""
        assert self._shm is not None and slot.block == self.name
        return np.ndarray(self.shape, _DTYPE, buffer=self._shm.buf, offset=slot.index * self._nbytes).copy()

    def give(self, slot: Slot) -> None:
        """``slot`` is free again."""
        if self._shm is not None and slot.block == self.name:
            self._free.append(slot.index)

    def close(self) -> None:
        """Unlink the block (a worker still writing into it writes into memory no one reads)."""
        shm, self._shm = self._shm, None
        if shm is not None:
            shm.close()
            shm.unlink()


# --- the worker's side ----------------------------------------------------------------------------

_attached: tuple[str, mmap.mmap | shared_memory.SharedMemory] | None = None


def _attach(block: str, size: int) -> memoryview:
    """The block's memory, mapped once per worker (the mapping of an earlier run's block is
    dropped when a new block arrives)."""
    global _attached
    if _attached is None or _attached[0] != block:
        _detach()
        if os.name == "nt":  # Windows: named memory, no resource tracker
            _attached = (block, shared_memory.SharedMemory(name=block))
        else:
            import _posixshmem  # type: ignore[import-not-found]  # SharedMemory's, minus the tracker

            fd = _posixshmem.shm_open("/" + block.lstrip("/"), os.O_RDWR, mode=0o600)
            try:
                _attached = (block, mmap.mmap(fd, size))
            finally:
                os.close(fd)
    mem = _attached[1]
    if isinstance(mem, shared_memory.SharedMemory):
        assert mem.buf is not None
        return mem.buf
    return memoryview(mem)


def _detach() -> None:
    global _attached
    if _attached is not None:
        _, mem = _attached
        _attached = None
        try:
            mem.close()
        except (BufferError, OSError):  # a view still alive: the mapping goes with the process
            pass


def write_slot(slot: Slot, x: np.ndarray) -> bool:
    """Write ``x`` into ``slot`` (in a worker); False, with nothing written, when it does not fit
    or the block cannot be mapped: the caller then returns ``x`` through the pipe."""
    if x.dtype != _DTYPE or tuple(x.shape) != slot.shape:
        return False
    nbytes = x.nbytes
    try:
        buf = _attach(slot.block, slot.n * nbytes)
        np.ndarray(slot.shape, _DTYPE, buffer=buf, offset=slot.index * nbytes)[...] = x
    except (OSError, ValueError, TypeError):
        _detach()
        return False
    return True
