"""Model inputs through shared memory (desktop.screening.slots): the same numbers as the pipe,
slots reused and freed, the block unlinked when the run ends, and the pipe whenever a slot
cannot be used."""

from __future__ import annotations

import os
from multiprocessing import resource_tracker, shared_memory

import numpy as np
import pytest

from desktop.screening import pipeline, slots
from desktop.screening.discovery import discover
from desktop.screening.prepare import prepare_image, prepare_to_slot
from desktop.screening.slots import InputSlots, Slot, write_slot
from desktop.screening.workers import Workers
from models.engine import Engine

SHAPE = (1, 64, 64)


def _gone(name: str) -> bool:
    try:
        shared_memory.SharedMemory(name=name).close()  # (registers: only ever on a missing name)
    except FileNotFoundError:
        return True
    return False


def test_slots_are_handed_out_read_freed_and_unlinked():
    s = InputSlots(3, SHAPE)
    try:
        got = [s.take() for _ in range(3)]
        assert [g.index for g in got if g] == [0, 1, 2] and s.take() is None  # all taken: the pipe
        x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
        assert write_slot(got[1], x)
        y = s.read(got[1])
        np.testing.assert_array_equal(y, x)
        s.give(got[1])
        again = s.take()
        assert again is not None and again.index == 1
        assert write_slot(again, -x)  # reused: the copy read before is untouched
        np.testing.assert_array_equal(y, x)
        np.testing.assert_array_equal(s.read(again), -x)
        name = s.name
    finally:
        s.close()
    assert _gone(name)
    s.close()  # twice: nothing to do


def test_what_does_not_fit_or_cannot_be_mapped_goes_by_pipe(tmp_path):
    s = InputSlots(2, SHAPE)
    slot = s.take()
    assert slot is not None
    assert not write_slot(slot, np.zeros((1, 32, 32), np.float32))  # another input size
    assert not write_slot(slot, np.zeros(SHAPE, np.float64))  # another dtype
    s.close()
    assert not write_slot(slot, np.zeros(SHAPE, np.float32))  # the block is gone
    stale = Slot("psm_no_such_block", 0, 2, SHAPE)
    assert not write_slot(stale, np.zeros(SHAPE, np.float32))


def test_a_worker_attaches_without_registering_the_block(monkeypatch):
    """The resource tracker is shared with the screener, which alone owns (and unlinks) the block:
    a worker's registration would make the tracker unlink it, or warn, on its own account."""
    calls = []
    monkeypatch.setattr(resource_tracker, "register", lambda *a: calls.append(a))
    s = InputSlots(1, SHAPE)
    try:
        calls.clear()
        slots._detach()
        assert write_slot(s.take(), np.ones(SHAPE, np.float32))
        assert calls == []
    finally:
        slots._detach()
        s.close()


def test_prepare_to_slot_in_a_worker_gives_prepare_images_input(phantom, tiny_bundle):
    cfg = Engine(tiny_bundle).cfg
    size = int(cfg.input_size)
    path = next(iter(sorted((phantom / "dicom").rglob("*.dcm"))))
    want = prepare_image(str(path), cfg)
    s, pool = InputSlots(2, (1, size, size)), Workers(1)
    try:
        slot = s.take()
        pr = pool.submit(prepare_to_slot, slot, prepare_image, str(path), cfg).result(timeout=60)
        assert pr.x is None and pr.slot == slot
        np.testing.assert_array_equal(s.read(slot), want.x)
        assert pr.placement == want.placement and pr.stamp == want.stamp
        # an input the slot does not fit comes back through the pipe, unchanged
        small = Slot(s.name, 1, 2, (1, size // 2, size // 2))
        pr = pool.submit(prepare_to_slot, small, prepare_image, str(path), cfg).result(timeout=60)
        assert pr.slot is None
        np.testing.assert_array_equal(pr.x, want.x)
    finally:
        pool.close()
        s.close()


@pytest.mark.parametrize("n_workers", [2, 0])
def test_the_pipeline_passes_inputs_through_slots_and_frees_them(phantom, tiny_bundle, monkeypatch, n_workers):
    engine = Engine(tiny_bundle, performance_hint="THROUGHPUT")
    made: list[InputSlots] = []
    real = pipeline.InputSlots

    names: list[str] = []

    def record(*a, **kw):
        made.append(real(*a, **kw))
        names.append(made[-1].name)
        return made[-1]

    monkeypatch.setattr(pipeline, "InputSlots", record)
    taken = []
    monkeypatch.setattr(pipeline._Scheduler, "release", _spy(pipeline._Scheduler.release, taken))
    disc = discover(phantom / "dicom")
    out = dict(pipeline.scored_studies(disc.studies, set(range(len(disc.studies))), engine, workers=n_workers))
    scored = [p for s in out.values() if s is not None for _, p in s.image_probs]
    assert len(scored) == disc.n_images
    if n_workers == 0:  # decoded in this thread: nothing to pass between processes
        assert made == [] and not any(taken)
        return
    assert len(made) == 1 and all(taken) and len(taken) == disc.n_images
    assert made[0].n_free == made[0].n  # every slot given back
    assert _gone(names[0])  # and the block unlinked when the run ended


def _spy(release, taken: list):
    def spied(self, i, k, pr=None):
        if pr is not None:
            taken.append(pr.slot is not None)
        return release(self, i, k, pr)
    return spied


def test_blocks_of_dead_screeners_are_swept_and_live_ones_kept(tmp_path):
    """A kill -9 of the whole group (resource tracker too) leaves the block behind: the next run
    unlinks those whose owner is gone, never a live screener's or anything not ours."""
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(dead.stdout)
    for name in (f"{slots.PREFIX}{dead_pid}_ab12", f"{slots.PREFIX}{os.getpid()}_cd34",
                 f"{slots.PREFIX}{os.getppid()}_ef56", f"{slots.PREFIX}x_1", "psm_other"):
        (tmp_path / name).write_bytes(b"\0" * 16)
    assert slots.sweep(tmp_path) == [f"{slots.PREFIX}{dead_pid}_ab12"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{slots.PREFIX}{os.getpid()}_cd34", f"{slots.PREFIX}{os.getppid()}_ef56", f"{slots.PREFIX}x_1",
         "psm_other"])


@pytest.mark.skipif(not slots.SHM_DIR.is_dir(), reason="no /dev/shm to list")
def test_a_new_block_sweeps_what_a_killed_group_left(monkeypatch):
    left = shared_memory.SharedMemory(f"{slots.PREFIX}999999999_dead", create=True, size=64)
    resource_tracker.unregister(left._name, "shared_memory")  # as if its tracker had died too
    left.close()
    assert (slots.SHM_DIR / left.name.lstrip("/")).exists()
    s = InputSlots(1, SHAPE)
    try:
        assert not (slots.SHM_DIR / left.name.lstrip("/")).exists()
        assert s.name.startswith(f"{slots.PREFIX}{os.getpid()}_")
    finally:
        s.close()
