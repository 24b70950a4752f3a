"""DDP on CPU: 2 gloo processes via torchrun see disjoint data and end with identical weights."""

import json
import os
import subprocess
import sys
from pathlib import Path

from models.nn.checkpoint import load_checkpoint
from tests.conftest import REPO


def test_two_rank_gloo_run(phantom, tmp_path):
    trace = tmp_path / "trace"
    trace.mkdir()
    env = {**os.environ, "MURA_TRAIN_TRACE_DIR": str(trace), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "trainer.cli", "--data", f"mura:{phantom / 'mura'}", "--out", str(tmp_path / "out"),
           "--arch", "custom_cnn", "--input-size", "48", "--epochs", "2", "--batch-size", "4", "--seed", "1"]
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = []
    for k in (0, 1):
        lines = [json.loads(x) for x in (trace / f"rank{k}.jsonl").read_text().splitlines()]
        seen = {e: set() for e in (0, 1)}
        for rec in lines:
            if "idx" in rec:
                seen[rec["epoch"]] |= set(rec["idx"])
        ranks.append((seen, next(rec["final"] for rec in lines if "final" in rec)))
    for epoch in (0, 1):
        a, b = ranks[0][0][epoch], ranks[1][0][epoch]
        assert a and b and not a & b, f"epoch {epoch}: ranks saw overlapping samples"
    assert ranks[0][1] == ranks[1][1], "ranks ended with different weights"
    # rank 0 alone wrote the outputs; the checkpoint is a plain (non-DDP) state dict
    ck = load_checkpoint(tmp_path / "out" / "checkpoint_last.pt")
    assert not any(k.startswith("module.") for k in ck["model"])
    assert json.loads((tmp_path / "out" / "config.json").read_text())["world_size"] == 2
    assert Path(tmp_path / "out" / "summary.json").is_file()
