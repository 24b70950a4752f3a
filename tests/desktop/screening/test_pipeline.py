"""The pipelined screener (decode processes + asynchronous inference) changes speed, not results."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from desktop.screening import pipeline, prepare, workers
from desktop.screening.discovery import discover
from desktop.screening.run import screen
from models.engine import Engine
from models.imageio import load_image


@pytest.fixture(scope="module")
def engine(tiny_bundle) -> Engine:
    return Engine(tiny_bundle, performance_hint="THROUGHPUT")


@pytest.fixture
def src_with_bad(phantom, tmp_path) -> Path:
    """The phantom DICOM studies plus a truncated DICOM and one without pixel data."""
    src = tmp_path / "src"
    shutil.copytree(phantom / "dicom", src)
    first = sorted(src.rglob("*.dcm"))[0]
    ds = pydicom.dcmread(first)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    buf = io.BytesIO()
    ds.save_as(buf)
    data = buf.getvalue()
    (src / "bad").mkdir()
    (src / "bad" / "truncated.dcm").write_bytes(data[: len(data) // 3])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    del ds.PixelData  # a header-only object
    buf = io.BytesIO()
    ds.save_as(buf)
    (src / "bad" / "no_pixels.dcm").write_bytes(buf.getvalue())
    return src


@pytest.mark.parametrize("workers", [2, 0])
def test_pipeline_equals_predict_image_by_image(phantom, engine, workers):
    res = screen(phantom / "dicom", engine, workers=workers)
    got = {p: prob for r in res.results for p, prob in r.image_probs}
    assert len(got) == res.discovery.n_images == res.n_scored_images > 4
    for path, prob in got.items():
        want = engine.predict([load_image(path).pixels])[0].probability
        assert prob == pytest.approx(want, abs=1e-6), path
    for r in res.results:  # study = mean of its images, as the sequential screener had it
        probs = [p for _, p in r.image_probs]
        assert r.probability == pytest.approx(sum(probs) / len(probs), abs=1e-9)


def test_decode_failures_in_workers_are_reported(src_with_bad, engine):
    res = screen(src_with_bad, engine, workers=2)
    reasons = {Path(p).name: r for p, r in res.failures}
    assert set(reasons) == {"truncated.dcm", "no_pixels.dcm"}
    assert all(reasons.values())
    n_good = res.discovery.n_images - 2
    assert res.n_scored_images == n_good and res.complete


def _crashy_prepare(path, cfg, thumb_size=prepare.REPORT_THUMB_SIZE, fast_decode=False):
    """Stands in for a decoder that segfaults on one file: the worker process dies."""
    if Path(path).name == "truncated.dcm":
        os._exit(3)
    return pipeline.prepare_image(path, cfg, thumb_size, fast_decode)


def test_a_worker_crash_fails_only_its_file(src_with_bad, engine, monkeypatch):
    monkeypatch.setattr(pipeline, "prepare_image", _crashy_prepare)
    res = screen(src_with_bad, engine, workers=2)
    reasons = {Path(p).name: r for p, r in res.failures}
    assert "crashed" in reasons["truncated.dcm"]
    assert set(reasons) == {"truncated.dcm", "no_pixels.dcm"}
    assert res.n_scored_images == res.discovery.n_images - 2


def test_cancel_between_studies_stops_the_workers(phantom, engine):
    import multiprocessing

    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 1  # after the first study

    res = screen(phantom / "dicom", engine, cancel=cancel, workers=2)
    assert not res.complete and len(res.results) == 1
    assert multiprocessing.active_children() == []


def test_generator_yields_in_order_and_skips_resumed(phantom, engine):
    disc = discover(phantom / "dicom")
    todo = {0, len(disc.studies) - 1}
    out = list(pipeline.scored_studies(disc.studies, todo, engine, workers=1))
    assert [i for i, _ in out] == list(range(len(disc.studies)))
    assert {i for i, s in out if s is not None} == todo
    for i, s in out:
        if s is not None:
            assert s.row.key == disc.studies[i].key
            assert len(s.images) == len(disc.studies[i].images) == s.n_worked
            assert all(r.thumbnail and r.thumbnail.startswith(b"\xff\xd8\xff") for r in s.images)


def _die(_x):
    os._exit(3)


def test_submitting_to_a_pool_that_just_broke_hands_the_crash_to_the_caller():
    """A worker died while the feed loop was still submitting: submit() raised
    BrokenProcessPool out of the screener (seen in CI); the crash must come back through the
    future, where the pipeline's retry-alone logic handles it."""
    from concurrent.futures.process import BrokenProcessPool

    w = workers.Workers(1)
    try:
        with pytest.raises(BrokenProcessPool):
            w.submit(_die, 0).result(timeout=60)
        fut = w.submit(abs, -1)  # the pool is broken now: no exception here ...
        with pytest.raises(BrokenProcessPool):
            fut.result(timeout=5)  # ... but from the future
        w.restart()
        assert w.submit(abs, -2).result(timeout=60) == 2
    finally:
        w.close()


def _allocate(n_bytes: int) -> int:
    import numpy as np

    return int(np.ones(n_bytes, dtype=np.uint8).sum())


def test_a_decode_worker_has_a_memory_ceiling():
    """Issue 16 §1: each worker gets a memory ceiling; a runaway allocation fails that task
    with a MemoryError instead of taking the machine's memory."""
    import sys

    if sys.platform == "win32":
        pytest.skip("RLIMIT_AS is POSIX")
    w = workers.Workers(1)
    try:
        assert w.submit(_allocate, 50 * 2**20).result(timeout=120) == 50 * 2**20
        with pytest.raises(MemoryError):
            w.submit(_allocate, workers.WORKER_MEMORY_BYTES + 2**30).result(timeout=120)
        assert w.submit(_allocate, 10).result(timeout=60) == 10  # the worker lives on
    finally:
        w.close()


def _touch_until(n_bytes: int) -> int:
    """A runaway decoder: memory grows 32 MB at a time, each page touched, at ~3 GB/s (paced so
    that a loaded CI machine still gives the watchdog thread its turns)."""
    import time

    import numpy as np

    held = []
    while len(held) * 32 * 2**20 < n_bytes:
        held.append(np.ones(32 * 2**20, dtype=np.uint8))
        time.sleep(0.01)
    return len(held)


def test_the_memory_ceiling_holds_where_there_is_no_rlimit():
    """Issue 16 §1 on Windows (no RLIMIT_AS): the resident-memory watchdog ends a worker that
    passes its ceiling, the parent says why, and a new pool works. Without the watchdog the
    allocation below (3 GB) succeeds."""
    from concurrent.futures.process import BrokenProcessPool

    w = workers.Workers(1, memory_limit=600 * 2**20, address_limit=False)
    try:
        assert w.submit(_touch_until, 64 * 2**20).result(timeout=120) == 2
        with pytest.raises(BrokenProcessPool):
            w.submit(_touch_until, 3 * 2**30).result(timeout=120)
        assert "more than 0.6 GB of memory" in w.death_reason()
        w.restart()
        assert w.submit(abs, -3).result(timeout=60) == 3
    finally:
        w.close()


def _memory_hog_prepare(path, cfg, thumb_size=prepare.REPORT_THUMB_SIZE, fast_decode=False):
    """Stands in for a decoder the memory watchdog ends on one file."""
    if Path(path).name == "truncated.dcm":
        os._exit(workers.MEMORY_EXIT)
    return pipeline.prepare_image(path, cfg, thumb_size, fast_decode)


def test_a_file_over_the_memory_ceiling_is_reported_as_such(src_with_bad, engine, monkeypatch):
    monkeypatch.setattr(pipeline, "prepare_image", _memory_hog_prepare)
    res = screen(src_with_bad, engine, workers=2)
    reasons = {Path(p).name: r for p, r in res.failures}
    assert "GB of memory" in reasons["truncated.dcm"]
    assert res.n_scored_images == res.discovery.n_images - 2


def _hanging_prepare(path, cfg, thumb_size=prepare.REPORT_THUMB_SIZE, fast_decode=False):
    """Stands in for a decoder that never returns on one file."""
    import time

    if Path(path).name == "truncated.dcm":
        time.sleep(3600)
    return pipeline.prepare_image(path, cfg, thumb_size, fast_decode)


def test_a_decoder_that_never_returns_fails_its_file_not_the_run(src_with_bad, engine, monkeypatch):
    """Issue 16 §7: fut.result() had no timeout, so one stuck decoder stalled the whole run."""
    import time

    from desktop.screening.discovery import discover

    monkeypatch.setattr(pipeline, "prepare_image", _hanging_prepare)
    disc = discover(src_with_bad)
    t0 = time.time()
    out = dict(pipeline.scored_studies(disc.studies, set(range(len(disc.studies))), engine, workers=2,
                                       decode_timeout=5))
    assert time.time() - t0 < 120
    reasons = {Path(r.stamp.path).name: r.error for s in out.values() for r in s.images if r.error}
    assert "took longer than 5 s" in reasons["truncated.dcm"]
    scored = sum(len(s.predictions) for s in out.values())
    assert scored == disc.n_images - 2  # everything else (no_pixels.dcm fails as before)


def test_a_shared_pool_outlives_the_runs_that_use_it(phantom, engine):
    """A node or a watched folder keeps one pool: the same worker process decodes run after run
    (its start is paid once), a cancelled run leaves it running, and only its owner closes it."""
    import multiprocessing

    def probs(res) -> list[float]:
        return sorted(p for s in res.results for _, p in s.image_probs)

    pool = workers.Workers(1)
    try:
        first = screen(phantom / "dicom", engine, workers=pool)
        pids = {p.pid for p in multiprocessing.active_children()}
        assert len(pids) == 1
        calls: list[int] = []

        def cancel() -> bool:
            calls.append(1)
            return len(calls) > 1  # after the first study

        assert not screen(phantom / "dicom", engine, workers=pool, cancel=cancel).complete
        second = screen(phantom / "dicom", engine, workers=pool)
        assert {p.pid for p in multiprocessing.active_children()} == pids
        assert probs(second) == probs(first) and len(probs(first)) == first.discovery.n_images
    finally:
        pool.close()
    assert multiprocessing.active_children() == []


@pytest.mark.skipif("forkserver" not in __import__("multiprocessing").get_all_start_methods(),
                    reason="no fork server on this platform: workers are spawned")
def test_workers_are_forked_from_a_server_with_the_decode_modules_loaded():
    """Not spawned (a fresh interpreter importing numpy, Pillow, pydicom per worker, per pool),
    not forked from this process (OpenVINO's threads): forked from the fork server."""
    pool = workers.Workers(1)
    try:
        parent, preloaded = pool.submit(
            eval, "(__import__('os').getppid(), 'desktop.screening.prepare' in __import__('sys').modules)").result()
    finally:
        pool.close()
    assert parent != os.getpid() and preloaded


@pytest.mark.skipif("forkserver" not in __import__("multiprocessing").get_all_start_methods(),
                    reason="no fork server on this platform: workers are spawned")
def test_prestart_starts_the_fork_server_the_workers_come_from():
    """mura-screen and mura-node start the server before compiling the model, so its imports
    overlap the compilation; the first pool's workers are its children."""
    import psutil

    workers.prestart()
    servers = [c.pid for c in psutil.Process().children() if "forkserver" in " ".join(c.cmdline())]
    assert len(servers) == 1
    pool = workers.Workers(1)
    try:
        assert pool.submit(eval, "__import__('os').getppid()").result() == servers[0]
    finally:
        pool.close()
