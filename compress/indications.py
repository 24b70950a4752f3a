"""What the model is for, measured: the card's ``indications`` (read by :mod:`models.scope`).

The body-part head's top probability falls on images the model was not trained for (a chest film
scores ~0.5-0.65 on the FracAtlas model, its own validation images mostly > 0.95). The threshold
below which an image is refused is the ``refuse_rate`` quantile of that value on the first
evaluation set (internal validation), measured with the shipped INT8 model itself; the refused
share of every set is recorded beside it, so a clinic reads how many in-scope images it costs.

    python -m compress.indications --bundle B --checkpoint CK --data fracatlas:PATH [--data folder:PATH]

updates an existing bundle's card (its model files are untouched); ``mura-compress`` calls
:func:`fit_indications` itself.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from compress.evalset import EvalSet, build_evalset
from compress.sources import resolve_split
from compress.trained import run_manifest
from models.card import load_bundle, write_bundle
from models.engine import Engine
from models.errors import MuraError
from models.scope import RADIOGRAPHY_MODALITIES, regions_for

#: Share of in-scope validation images the confidence check may refuse (the issue's bound is 2 %).
REFUSE_RATE = 0.015
#: Below this body-part accuracy on the fitting set the head's confidence says nothing about
#: scope (a near-random head would refuse images at random): no threshold is set then.
MIN_HEAD_ACCURACY = 0.90

#: What each data source says about views and age (none of them publishes ages).
SOURCE_FACTS = {
    "fracatlas": (("frontal", "lateral", "oblique"), "not published (FracAtlas: adults and children)"),
    "mura": (("MURA's standard views, several per study",), "not published (MURA: Stanford patients)"),
    "phantom": (("phantom",), "phantom images: no patients"),
}


def body_part_probs(engine: Engine, es: EvalSet, batch_size: int = 16) -> np.ndarray:
    """The body-part head's probabilities, (N, classes), for every image of ``es``."""
    out = [engine.infer(es.inputs[i : i + batch_size])["body_part_prob"]
           for i in range(0, len(es.inputs), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, len(engine.body_parts)))


def head_accuracy(probs: np.ndarray, es: EvalSet, body_parts: list[str]) -> float | None:
    """Share of the labelled images whose top body part is their label (None: none labelled)."""
    idx = {b: i for i, b in enumerate(body_parts)}
    pairs = [(k, idx[r.body_part]) for k, r in enumerate(es.records) if r.body_part in idx]
    if not pairs:
        return None
    return float(np.mean([int(np.argmax(probs[k])) == j for k, j in pairs]))


def fit_indications(card: dict, engine: Engine, evalsets: list[EvalSet], data_source: str,
                    refuse_rate: float = REFUSE_RATE) -> dict:
    """The card's ``indications``: regions, views, age, modalities, and the fitted threshold."""
    kind = "phantom" if "phantom" in str(card.get("provenance", {}).get("training_data", "")).lower() \
        else data_source.partition(":")[0]
    views, age = SOURCE_FACTS.get(kind, ((), "not stated by the training data"))
    ind: dict = {"regions": list(regions_for(card["body_parts"])), "body_parts": list(card["body_parts"]),
                 "views": list(views), "age": age, "modalities": sorted(RADIOGRAPHY_MODALITIES)}
    probs = [body_part_probs(engine, es) for es in evalsets]
    if not probs or not len(probs[0]):
        return ind
    accuracy = head_accuracy(probs[0], evalsets[0], list(card["body_parts"]))
    ind["body_part_accuracy"] = accuracy
    if accuracy is None or accuracy < MIN_HEAD_ACCURACY:
        ind["confidence_check"] = (f"off: body-part accuracy {accuracy if accuracy is None else round(accuracy, 3)} "
                                   f"on {evalsets[0].name} is below {MIN_HEAD_ACCURACY}")
        return ind
    tops = [p.max(axis=1) for p in probs]
    threshold = float(np.quantile(tops[0], refuse_rate))
    ind["min_body_part_confidence"] = threshold
    ind["confidence_fitted_on"] = evalsets[0].name
    ind["refused_by_confidence"] = {es.name: {"n_images": int(len(t)), "refused": int((t < threshold).sum()),
                                              "fraction": float((t < threshold).mean())}
                                    for es, t in zip(evalsets, tops, strict=True) if len(t)}
    return ind


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m compress.indications", description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", required=True, help="bundle folder whose card gets the indications")
    ap.add_argument("--checkpoint", required=True,
                    help="the checkpoint the bundle was made from (its run manifest holds the splits)")
    ap.add_argument("--data", action="append", required=True,
                    help="evaluation sets, the first one fits the threshold (its validation split)")
    ap.add_argument("--refuse-rate", type=float, default=REFUSE_RATE)
    a = ap.parse_args(argv)
    try:
        bundle = load_bundle(a.bundle)
        engine = Engine(bundle)
        source = bundle.card["provenance"].get("calibration_data") or a.data[0]
        data = run_manifest(a.checkpoint)["data"]
        sets = [build_evalset(resolve_split(d, "validation", data), engine.cfg) for d in a.data]
        card = {**bundle.card, "indications": fit_indications(bundle.card, engine, sets, source, a.refuse_rate)}
        write_bundle(Path(a.bundle), card)
    except MuraError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, r in card["indications"].get("refused_by_confidence", {}).items():
        print(f"{name}: {r['refused']}/{r['n_images']} refused ({r['fraction']:.1%})")
    print(f"min body-part confidence {card['indications'].get('min_body_part_confidence')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
