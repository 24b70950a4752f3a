"""Mixed precision: --amp resolution, a bf16-autocast CPU run that resumes exactly, and the
GradScaler state surviving the checkpoint (weights_only) and being restored on resume.

No GPU is lent to CI, so the CUDA recipe (float16 autocast + GradScaler) is run on the CPU with
``--amp fp16``: the same trainer code, killed and resumed, with its scaler state checked."""

import os
import subprocess
import sys

import pytest
import torch

from models.errors import ConfigError
from models.nn.checkpoint import load_checkpoint, save_checkpoint
from tests.conftest import REPO
from trainer.train import TrainConfig, resolve_amp, train


def test_amp_modes_resolve_per_device():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert resolve_amp("auto", cpu) is None  # CPU stays float32 unless asked
    assert resolve_amp("auto", cuda) is torch.float16
    assert resolve_amp("off", cuda) is None and resolve_amp("false", cuda) is None
    assert resolve_amp("bf16", cpu) is torch.bfloat16
    assert resolve_amp("fp16", cuda) is torch.float16 and resolve_amp("on", cuda) is torch.float16
    assert resolve_amp("fp16", cpu) is torch.float16  # on request: the CUDA path, testable here
    with pytest.raises(ConfigError, match="--amp"):
        TrainConfig(data="csv:x", amp="fp8").validate()
    with pytest.raises(ConfigError, match="not both"):
        TrainConfig(data="csv:x", pretrained=True, pretrained_weights="w.pth").validate()


def test_scaler_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    net = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    sc = torch.amp.GradScaler("cpu", init_scale=2.0**20, growth_interval=1)
    for _ in range(3):  # change scale and growth tracker away from their defaults
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = net(torch.randn(8, 4)).float().mean()
        sc.scale(loss).backward()
        sc.step(opt)
        sc.update()
    state = sc.state_dict()
    assert state["scale"] != 2.0**20
    save_checkpoint(tmp_path / "ck.pt", {"scaler": state, "off": torch.amp.GradScaler("cpu", enabled=False).state_dict()})
    ck = load_checkpoint(tmp_path / "ck.pt")  # weights_only=True inside
    assert ck["off"] == {}
    restored = torch.amp.GradScaler("cpu")
    restored.load_state_dict(ck["scaler"])
    assert restored.state_dict() == state


def _train(out, data, amp, extra_env=None, resume=False):
    env = {**os.environ, **(extra_env or {})}
    cmd = [sys.executable, "-m", "trainer.cli", "--data", data, "--out", str(out), "--arch", "custom_cnn",
           "--input-size", "32", "--epochs", "2", "--batch-size", "8", "--seed", "3", "--amp", amp]
    if resume:
        cmd += ["--resume"]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_bf16_autocast_cpu_run_resumes_exactly(phantom, tmp_path):
    data = f"mura:{phantom / 'mura'}"
    straight = _train(tmp_path / "a", data, "bf16")
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed = _train(tmp_path / "b", data, "bf16", {"MURA_TRAIN_DIE_AFTER_EPOCH": "1"})
    assert killed.returncode == 137
    resumed = _train(tmp_path / "b", data, "bf16", resume=True)
    assert resumed.returncode == 0 and "resumed from" in resumed.stdout, resumed.stderr[-2000:]
    a = load_checkpoint(tmp_path / "a" / "checkpoint_last.pt")
    b = load_checkpoint(tmp_path / "b" / "checkpoint_last.pt")
    assert a["epoch"] == b["epoch"] == 1 and a["scaler"] == {}  # bf16 needs no loss scaling
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=1e-6, msg=k)
    fp32 = _train(tmp_path / "c", data, "off")  # bf16 really changed the arithmetic
    assert fp32.returncode == 0, fp32.stderr[-2000:]
    c = load_checkpoint(tmp_path / "c" / "checkpoint_last.pt")
    assert any(not torch.equal(a["model"][k], c["model"][k]) for k in a["model"] if a["model"][k].is_floating_point())
    assert '"amp_dtype": "torch.bfloat16"' in (tmp_path / "a" / "config.json").read_text()


def test_fp16_scaler_state_is_saved_and_restored_on_resume(phantom, tmp_path, monkeypatch):
    """The CUDA path (float16 + GradScaler), run on the CPU: torch's CPU autocast does float16 too."""
    import trainer.train as tt

    monkeypatch.setattr(tt, "resolve_amp", lambda mode, device: torch.float16)
    cfg = TrainConfig(data=f"mura:{phantom / 'mura'}", out=str(tmp_path), arch="custom_cnn", input_size=32,
                      epochs=1, batch_size=8, augment=False, max_train_images=32, seed=1)
    train(cfg)
    saved = load_checkpoint(tmp_path / "checkpoint_last.pt")["scaler"]
    assert {"scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"} <= set(saved)
    loaded = []
    real = torch.amp.GradScaler.load_state_dict
    monkeypatch.setattr(torch.amp.GradScaler, "load_state_dict",
                        lambda self, sd: (loaded.append(dict(sd)), real(self, sd))[1])
    cfg.epochs, cfg.resume = 2, True
    train(cfg)
    assert loaded == [saved]
    assert load_checkpoint(tmp_path / "checkpoint_last.pt")["epoch"] == 1


@pytest.mark.slow
def test_fp16_autocast_with_loss_scaling_resumes_exactly(phantom, tmp_path):
    """The CUDA mixed-precision recipe, on the CPU: the scaler is live (its state is saved and
    restored) and a kill after epoch 1 plus --resume ends with the straight run's weights."""
    data = f"mura:{phantom / 'mura'}"
    straight = _train(tmp_path / "a", data, "fp16")
    assert straight.returncode == 0, straight.stderr[-2000:]
    assert "--amp fp16 on a CPU" in straight.stdout
    killed = _train(tmp_path / "b", data, "fp16", {"MURA_TRAIN_DIE_AFTER_EPOCH": "1"})
    assert killed.returncode == 137
    first = load_checkpoint(tmp_path / "b" / "checkpoint_last.pt")
    assert first["epoch"] == 0 and first["scaler"]["scale"] > 0  # a live scaler, checkpointed
    resumed = _train(tmp_path / "b", data, "fp16", resume=True)
    assert resumed.returncode == 0 and "resumed from" in resumed.stdout, resumed.stderr[-2000:]
    a = load_checkpoint(tmp_path / "a" / "checkpoint_last.pt")
    b = load_checkpoint(tmp_path / "b" / "checkpoint_last.pt")
    assert a["epoch"] == b["epoch"] == 1
    assert a["scaler"] == b["scaler"] and set(a["scaler"]) >= {"scale", "_growth_tracker"}
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=1e-6, msg=k)
    assert '"amp_dtype": "torch.float16"' in (tmp_path / "a" / "config.json").read_text()
