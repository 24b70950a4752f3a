import csv

from trainer.compare import main


def test_compare_two_backbones_writes_tables_and_reuses_runs(phantom, tmp_path, capsys):
    args = ["--data", f"mura:{phantom / 'mura'}", "--out", str(tmp_path), "--input-size", "48", "--epochs", "1",
            "--batch-size", "16", "--archs", "custom_cnn,efficientnet_b0", "--external", f"folder:{phantom / 'external'}"]
    assert main(args) == 0
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert [r["backbone"] for r in rows] == ["custom_cnn", "efficientnet_b0"]
    assert all(0 <= float(r["image_auc"]) <= 1 and 0 <= float(r["external_auc"]) <= 1 for r in rows)
    md = (tmp_path / "results.md").read_text()
    assert md.count("\n") == 4 and "| efficientnet_b0 | no | yes | test |" in md
    capsys.readouterr()
    assert main(args) == 0  # second time: nothing retrained
    assert "training" not in capsys.readouterr().out
