"""Every console command explains every option, and bad input gives one clear line, exit 2."""

import argparse

import pytest

from compress.cli import build_parser as compress_parser
from compress.cli import main as compress_main
from desktop.screening.cli import build_parser as screen_parser
from desktop.viewer.app import build_parser as viewer_parser
from models.synth.cli import _parser as synth_parser
from trainer.cli import build_parser as train_parser
from trainer.cli import main as train_main
from trainer.compare import build_parser as compare_parser
from trainer.evaluate import build_parser as evaluate_parser
from trainer.evaluate import main as evaluate_main


@pytest.mark.parametrize("parser", [train_parser, compress_parser, screen_parser, viewer_parser,
                                    evaluate_parser, synth_parser, compare_parser])
def test_every_option_has_help(parser):
    p = parser()
    assert p.description
    for action in p._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{p.prog}: option {action.option_strings or action.dest} has no help"


def test_train_bad_inputs_are_one_clear_line(tmp_path, capsys):
    assert train_main(["--data", f"mura:{tmp_path}", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mura-train: error:") and str(tmp_path) in err and "Traceback" not in err
    assert train_main(["--data", "mura:x", "--arch", "alexnet"]) == 2
    assert "alexnet" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("epochs: 3\nlearning_rate: 1\n")
    assert train_main(["--config", str(tmp_path / "bad.yaml")]) == 2
    assert "learning_rate" in capsys.readouterr().err


def test_compress_and_evaluate_missing_checkpoint(tmp_path, capsys):
    assert compress_main(["--checkpoint", str(tmp_path / "x.pt"), "--out", str(tmp_path / "b"),
                          "--calib-data", f"mura:{tmp_path}"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    (tmp_path / "evil.pt").write_bytes(b"\x80\x04not a checkpoint")
    assert evaluate_main(["--checkpoint", str(tmp_path / "evil.pt"), "--data", f"mura:{tmp_path}"]) == 2
    assert "not a loadable" in capsys.readouterr().err


def test_evaluate_prints_both_levels(tiny_checkpoint, phantom, capsys):
    assert evaluate_main(["--checkpoint", str(tiny_checkpoint), "--data", f"mura:{phantom / 'mura'}"]) == 0
    out = capsys.readouterr().out
    assert "image " in out and "study " in out and "kappa" in out


def test_long_jobs_end_saying_where_the_outputs_are_and_whether_the_model_is_any_good(tiny_bundle):
    """Issue 15 §5: compress ended on 'gate PASSED' — true of a chance-level model too."""
    import json

    from compress.cli import closing_lines as compress_lines
    from trainer.cli import closing_lines as train_lines

    card = json.loads((tiny_bundle / "card.json").read_text())
    lines = compress_lines(card, str(tiny_bundle), True)
    assert lines[0].startswith(f"[compress] gate PASSED; bundle: {tiny_bundle} (card.json, model.xml")
    assert any(line.startswith("[compress] AUC ") for line in lines)
    assert any("WARNING: NOT A CLINICALLY MEANINGFUL MODEL: trained on phantom images" in line for line in lines)
    summary = {"checkpoint": "runs/x/checkpoint_best.pt", "best_epoch": 3, "metrics": {"internal_validation": {
        "n_studies": 40, "study": {"auc": 0.61, "auc_ci95": [0.5, 0.72]}}}}
    lines = train_lines(summary, "runs/x")
    assert "best checkpoint runs/x/checkpoint_best.pt (epoch 3)" in lines[0]
    assert "study AUC 0.610 (95 % CI 0.50–0.72) on 40 studies" in lines[1]
    assert "below 0.75" in lines[2] and lines[3].startswith("[train] next: mura-compress")
