"""bench/train_throughput.py still runs and prints its table (tiny settings; no timing asserted)."""

import subprocess
import sys

from tests.conftest import REPO


def test_train_throughput_bench_prints_its_table(phantom):
    r = subprocess.run([sys.executable, "bench/train_throughput.py", "--data", f"mura:{phantom / 'mura'}",
                        "--size", "32", "--batch", "4", "--steps", "1", "--workers", "0",
                        "--backbones", "custom_cnn", "--amp", "bf16"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "amp torch.bfloat16" in r.stdout
    row = [line for line in r.stdout.splitlines() if line.startswith("| custom_cnn |")]
    assert len(row) == 1 and row[0].rstrip().endswith("% |")
