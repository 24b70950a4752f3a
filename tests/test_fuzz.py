"""The fuzz campaign's machinery (bench/fuzz_dicom.py) on a few mutants; CI runs 2,000 (.ci/run)."""

from __future__ import annotations

from tests.conftest import load_bench, shared_data


def test_a_small_campaign_finds_no_untyped_error_crash_or_hang():
    data = shared_data()
    fuzz = load_bench("fuzz_dicom")
    res = fuzz.run(count=40, seed=7, workers=1, timeout=60, data=data)
    assert sum(res["counts"].values()) == 40 and res["n_seeds"] >= 20
    assert res["untyped"] == [] and res["counts"]["timeout"] == 0 and res["counts"]["crash"] == 0
    assert res["peak_rss_mb"] < fuzz.WORKER_MEMORY_BYTES / 2**20
    assert "| ok |" in fuzz.table(res, 40, 1.0)


def test_mutations_are_reproducible_from_the_seed():
    import random

    fuzz = load_bench("fuzz_dicom")
    blob = bytes(range(256)) * 8
    a = [fuzz.mutate(blob, random.Random(3)) for _ in range(1)]
    b = [fuzz.mutate(blob, random.Random(3)) for _ in range(1)]
    assert a == b and a[0][1] != blob
