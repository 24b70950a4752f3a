"""bench/train_throughput.py still runs and prints its table (tiny settings; no timing asserted)."""

import subprocess
import sys

from tests.conftest import REPO


def test_train_throughput_bench_prints_its_table(phantom):
    r = subprocess.run([sys.executable, "bench/train_throughput.py", "--data", f"mura:{phantom / 'mura'}",
                        "--size", "32", "--batch", "4", "--steps", "1", "--rounds", "2", "--workers", "1",
                        "--backbones", "custom_cnn", "--amp", "bf16"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "amp torch.bfloat16" in r.stdout
    assert "cache warmed" in r.stdout and "medians of 2 interleaved rounds" in r.stdout
    rows = [line for line in r.stdout.splitlines() if line.startswith("| custom_cnn |")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("| \n").split("|")]
    model, first, later = (float(c) for c in cells[1:4])
    assert model > 0 and first > 0 and later > 0
    # the ratios printed are the rates printed (up to their rounding), not numbers of their own
    assert abs(float(cells[5].rstrip("%")) - 100 * first / model) <= 1.5
    assert abs(float(cells[6].rstrip("%")) - 100 * later / model) <= 1.5
