"""Kill after epoch 1 and resume == 2 epochs straight (weights, optimizer, schedule, RNG)."""

import os
import subprocess
import sys

import torch

from models.nn.checkpoint import load_checkpoint
from tests.conftest import REPO


def _train(out, data, extra_env=None, resume=False):
    env = {**os.environ, **(extra_env or {})}
    cmd = [sys.executable, "-m", "trainer.cli", "--data", data, "--out", str(out), "--arch", "custom_cnn",
           "--input-size", "48", "--epochs", "2", "--batch-size", "8", "--seed", "5", "--patience", "5"]
    if resume:
        cmd += ["--resume", "true"]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_kill_and_resume_gives_identical_weights(phantom, tmp_path):
    data = f"mura:{phantom / 'mura'}"
    straight = _train(tmp_path / "a", data)
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed = _train(tmp_path / "b", data, {"MURA_TRAIN_DIE_AFTER_EPOCH": "1"})
    assert killed.returncode == 137
    assert load_checkpoint(tmp_path / "b" / "checkpoint_last.pt")["epoch"] == 0
    resumed = _train(tmp_path / "b", data, resume=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout
    a = load_checkpoint(tmp_path / "a" / "checkpoint_last.pt")
    b = load_checkpoint(tmp_path / "b" / "checkpoint_last.pt")
    assert a["epoch"] == b["epoch"] == 1
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=1e-6, msg=k)
    assert a["history"][-1]["val_study_auc"] == b["history"][-1]["val_study_auc"]
