"""``mura-screen FOLDER --cluster``: a local Dask cluster of 2 workers on loopback gives the single
PC's worklist (same scores, same order), and a worker killed mid-run loses nothing."""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from desktop.screening.cli import main
from desktop.screening.outputs import screen_to_folder
from models.engine import Engine
from models.errors import ConfigError
from models.synth import write_dicom_studies
from tests.conftest import REPO

pytest.importorskip("distributed")

from desktop.screening.cluster import (  # noqa: E402 - after the skip: needs the cluster extra
    ClusterSpec,
    EngineSpec,
    cluster_screen,
    open_cluster,
    parse_cluster,
)

N_STUDIES = 8


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    """8 phantom studies and a truncated file (a failure, listed in failures.csv)."""
    root = tmp_path_factory.mktemp("cluster") / "src"
    write_dicom_studies(root, seed=27, n_studies=N_STUDIES, jobs=1)
    ds = pydicom.dcmread(sorted(root.rglob("*.dcm"))[0])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    buf = io.BytesIO()
    ds.save_as(buf)
    (root / "bad").mkdir()
    (root / "bad" / "truncated.dcm").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    return root


@pytest.fixture(scope="module")
def engine(tiny_bundle) -> Engine:
    return Engine(tiny_bundle, performance_hint="THROUGHPUT")


@pytest.fixture(scope="module")
def single(src, engine, tmp_path_factory) -> Path:
    """The single-PC run the cluster runs are compared with."""
    out = tmp_path_factory.mktemp("single")
    screen_to_folder(src, engine, out, workers=0)
    return out


@pytest.fixture(scope="module")
def client():
    with open_cluster(ClusterSpec(local=2)) as c:
        yield c


def _spec(bundle: Path, engine: Engine) -> EngineSpec:
    return EngineSpec(str(bundle), engine.bundle.model_id, num_threads=1)


def _state(out: Path) -> tuple[list[str], int, int]:
    with sqlite3.connect(out / "screen.sqlite") as db:
        keys = [k for (k,) in db.execute("SELECT key FROM studies")]
        n, distinct = db.execute("SELECT COUNT(*), COUNT(DISTINCT path) FROM images").fetchone()
    return keys, n, distinct


def _same_outputs(a: Path, b: Path) -> None:
    assert (a / "worklist.csv").read_text() == (b / "worklist.csv").read_text()  # scores, order
    assert (a / "failures.csv").read_text() == (b / "failures.csv").read_text()
    ka, na, _ = _state(a)
    kb, nb, db = _state(b)
    assert sorted(ka) == sorted(kb) and len(kb) == len(set(kb)) == N_STUDIES
    assert na == nb == db  # every image once


def test_local_cluster_gives_the_single_pc_worklist(src, engine, single, client, tiny_bundle, tmp_path):
    out = tmp_path / "cluster"
    run = screen_to_folder(src, engine, out, screen_fn=cluster_screen(client, _spec(tiny_bundle, engine), 3))
    assert run.result.n_scored_images > 0 and run.result.complete
    _same_outputs(single, out)
    # Resumable like any run: nothing left to send
    again = screen_to_folder(src, engine, out, screen_fn=cluster_screen(client, _spec(tiny_bundle, engine), 3))
    assert again.result.n_resumed == N_STUDIES and again.result.n_scored_images == 0
    _same_outputs(single, out)


def test_a_worker_killed_mid_run_loses_nothing(src, engine, single, client, tiny_bundle, tmp_path):
    """SIGKILL a worker that holds a task as soon as the first study is back: the scheduler
    gives its task to the other worker (the nanny restarts the dead one), nothing is lost and
    nothing committed twice."""
    pids = client.run(os.getpid)
    killed: list[str] = []
    lost: list[str] = []

    def progress(done, total, *_):
        if killed:
            return
        busy = [(w, keys) for w, keys in client.processing().items() if keys and w in pids]
        if busy:
            os.kill(pids[busy[0][0]], signal.SIGKILL)
            killed.append(busy[0][0])
            lost.extend(busy[0][1])

    out = tmp_path / "killed"
    fn = cluster_screen(client, _spec(tiny_bundle, engine), 1)  # one image per task: many tasks
    run = screen_to_folder(src, engine, out, screen_fn=fn, progress=progress)
    assert killed, "no worker was busy after the first study: nothing was killed"
    assert run.result.complete
    _same_outputs(single, out)
    # The scheduler's own account: the killed worker's tasks were put back and finished elsewhere
    story = [t for t in client.story(*lost) if t[0] == "scheduler"]
    requeued = {t[1] for t in story if t[2:4] == ("processing", "released") and "worker-cleanup" in t[5]}
    finished = {t[1] for t in story if t[3] == "memory"}
    assert requeued and requeued <= finished
    client.wait_for_workers(2, timeout=60)  # the nanny brought it back


def test_a_study_that_kills_every_worker_fails_alone(src, engine, single, tiny_bundle, tmp_path, monkeypatch):
    """A decoder that crashes its process crashes every worker that tries: its batch is split,
    and that study alone is committed as failed, with the reason; the others are scored."""
    import dask

    victim = sorted(p for p in (src / "study_0003").iterdir())[0]
    monkeypatch.setenv("MURA_CLUSTER_CRASH_ON", str(victim.parent))  # the workers inherit it
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), \
            open_cluster(ClusterSpec(local=2)) as crashy:
        out = tmp_path / "crash"
        run = screen_to_folder(src, engine, out, screen_fn=cluster_screen(crashy, _spec(tiny_bundle, engine), 8))
    lost = [r for r in run.result.results if r.study.images[0].path.startswith(str(victim.parent))]
    assert len(lost) == 1 and lost[0].verdict == "failed" and lost[0].probability is None
    assert "ended its cluster worker" in (out / "failures.csv").read_text()
    keys, n, distinct = _state(out)
    assert len(keys) == len(set(keys)) == N_STUDIES and n == distinct
    ref = {r.study.key: r.probability for r in screen_to_folder(src, engine, tmp_path / "ref", workers=0).result.results}
    assert {r.study.key: r.probability for r in run.result.results if r is not lost[0]} == {
        k: p for k, p in ref.items() if k != lost[0].study.key}


def test_cli_cluster_local(src, single, tiny_bundle, tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main([str(src), "--model", str(tiny_bundle), "--out", str(out), "--cluster", "local:2",
               "--cluster-batch", "4", "--no-progress"])
    assert rc == 1  # the truncated file, as without --cluster
    printed = capsys.readouterr()
    assert "images failed" in printed.out and "PHANTOM" not in printed.out + printed.err
    _same_outputs(single, out)


def test_parse_cluster():
    assert parse_cluster("local:2") == ClusterSpec(local=2)
    assert parse_cluster("10.0.0.5:8786") == ClusterSpec(address="tcp://10.0.0.5:8786")
    assert parse_cluster("tls://pacs-farm:8786") == ClusterSpec(address="tls://pacs-farm:8786")
    for bad in ("local:0", "local:x", "farm", "missing.json"):
        with pytest.raises(ConfigError):
            parse_cluster(bad)


def test_single_pc_path_never_imports_dask():
    """Dask is an optional extra: the CLI, the watcher and the batch code must import without it."""
    code = ("import sys\n"
            "import desktop.screening.cli, desktop.screening.watch, desktop.screening.cluster, "
            "desktop.screening.cluster_tasks\n"
            "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed'))))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""


def test_no_static_import_reaches_dask():
    """PyInstaller bundles whatever a static import names, inside functions too: the modules the
    clinic app reaches import Dask (and the worker module, which does) only by name at run time."""
    import ast

    banned = ("dask", "distributed", "desktop.screening.cluster_worker")
    for name in ("cli", "watch", "cluster", "cluster_tasks", "outputs", "run", "pipeline"):
        path = REPO / "desktop" / "screening" / f"{name}.py"
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not [n for n in names if n.startswith(banned)], f"{path.name} imports {names}"


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("MURA_CAMPAIGNS") != "1", reason="campaign: .ci/run runs it (MURA_CAMPAIGNS=1)")
def test_worker_kill_campaign(engine, tiny_bundle, tmp_path):
    """Workers SIGKILLed at 6 random moments of one local:2 run (one image per task, so every
    kill lands on work in flight): the worklist is still the single PC's, nothing twice."""
    import random

    root = tmp_path / "src"
    write_dicom_studies(root, seed=29, n_studies=24, jobs=1)
    ref = tmp_path / "single"
    screen_to_folder(root, engine, ref, workers=0)
    import dask

    rng = random.Random(20261919)
    kills: list[int] = []
    # A task may be on the killed worker more than once: it must be retried, not given up on
    with dask.config.set({"distributed.scheduler.allowed-failures": 10}), \
            open_cluster(ClusterSpec(local=2)) as c:
        moments = set(rng.sample(range(1, 24), 6))

        def progress(done, *_):
            if done in moments and len(kills) < len(moments):
                pids = c.run(os.getpid)
                busy = [w for w, keys in c.processing().items() if keys and w in pids]
                if busy:
                    os.kill(pids[rng.choice(busy)], signal.SIGKILL)
                    kills.append(done)

        out = tmp_path / "campaign"
        run = screen_to_folder(root, engine, out, progress=progress,
                               screen_fn=cluster_screen(c, _spec(tiny_bundle, engine), 1))
    assert len(kills) >= 3 and run.result.complete, kills
    assert (out / "worklist.csv").read_text() == (ref / "worklist.csv").read_text()
    keys, n, distinct = _state(out)
    assert len(keys) == len(set(keys)) == 24 and n == distinct
