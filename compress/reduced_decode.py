"""May a runtime score from a reduced-resolution decode? The card's ``reduced_decode`` says.

A 2k JPEG 2000 radiograph takes ~0.5 s to decode in full and ~30 ms at the wavelet level whose
long side is still >= twice the model's input (baseline JPEG: DCT scaling); the model sees a
256-512 px image either way. But the reduced pixels are not those of a full decode followed by
the model's resize (a wavelet low-pass, a scaled IDCT), so the scores move a little. Whether
they move too much is a property of the model, measured here like the INT8 gate measures
quantization, with the gate's own numbers (``budget`` and ``min_agreement`` from the card's
``validation``): on every gate set, the bundle's engine scores each image from the exact and
from the reduced decode (``models.imageio.decode_for_model`` with and without ``min_side``:
exactly what the screener and the viewer run), and ``compress.validate.gate`` judges the exact
scores as the reference, the reduced ones as the candidate, and the exact scores of the
mirrored images as the reference's own noise (``compress.decisions``).

Three comparisons per set, each gated: the set as stored (the population the gate validated),
its images that actually decoded reduced (only JPEG 2000 and baseline JPEG large enough do; in
a clinic's 2k archive that is every image, so a small share must not dilute them), and the set's
large images transcoded to 12-bit lossless JPEG 2000 DICOM (the viewer's and PACS exports'
codec, whose reduction is a wavelet one, unlike JPEG's). Each codec is judged on the
comparisons that hold its reduced images (a wavelet low-pass and a scaled IDCT move the scores
differently, so one's failure says nothing of the other): it passes when all of them pass and at
least one of its images was measured, since a check that decoded nothing reduced validates
nothing. The card lists the codecs that passed (``codecs_passed``; ``passed``: all did) and
runtimes reduce only those (``models.reduction.validated_reduction``).

``--rejudge`` applies this verdict again to the comparisons a bundle's validation.json already
holds (nothing is decoded or scored): how a card measured before per-codec verdicts gets them.

    python -m compress.reduced_decode BUNDLE --checkpoint CK [--data SPEC ...]
    python -m compress.reduced_decode BUNDLE --rejudge

updates an existing bundle's card and validation report (model files untouched); the sets
default to the card's ``gate_data``, and ``--checkpoint`` gives the run manifest that splits the
training source. ``mura-compress`` calls :func:`check_reduced_decode` itself.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from compress.evalset import EvalSet, stratified_sample
from compress.sources import resolve_split
from compress.trained import run_manifest
from compress.validate import compare_set, gate, score_inputs
from models import dicom
from models.card import load_bundle, write_bundle
from models.datasources import Record
from models.engine import Engine, verdict_for
from models.errors import ConfigError, ImageDecodeError, MuraError
from models.fsutil import atomic_write_json, atomic_write_text
from models.imageio import decode_for_model, sniff_kind
from models.metrics import aggregate_studies
from models.preprocess import PreprocessConfig, preprocess
from models.reduction import CODECS as _CODECS
from models.reduction import REDUCED_DECODE_FACTOR, codec_names

RULE = (f"long side >= {REDUCED_DECODE_FACTOR} x the model's input size: JPEG 2000 decoded at a "
        "lower resolution level, baseline JPEG by DCT scaling (models.dicom.decode_reduced, "
        "draft_jpeg); every other file decodes in full")
AS_STORED, REDUCED_ONLY, AS_J2K = "as stored", "reduced images only", "as JPEG 2000 (12-bit lossless)"
CODECS = tuple(sorted(_CODECS))
CRITERIA = ("the INT8 gate's checks with the exact decode as the reference: |ΔAUC| <= budget at image and "
            "study level, and firm decision flips <= 1 - min_agreement at each operating point, on every "
            "comparison holding a codec's reduced images; a codec passes when all of them do and it was measured")
_CHUNK = 32  # records decoded, then scored, at a time: memory stays flat on large sets


class RecordSet(Protocol):
    """What the check needs of a gate set (``EvalSet`` and ``DatasetSplit`` both are one)."""

    name: str
    task: str
    records: list[Record]


@dataclass
class Scores:
    """One comparison: the same images scored from the exact and from the reduced decode."""

    name: str
    decoding: str
    task: str
    records: list[Record] = field(default_factory=list)
    exact: list[float] = field(default_factory=list)
    reduced: list[float] = field(default_factory=list)
    mirror: list[float] = field(default_factory=list)  # exact decode, mirrored: its own noise
    is_reduced: list[bool] = field(default_factory=list)
    codecs: Counter = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)

    def subset(self, decoding: str) -> Scores:
        keep = [i for i, r in enumerate(self.is_reduced) if r]
        return Scores(self.name, decoding, self.task, [self.records[i] for i in keep],
                      [self.exact[i] for i in keep], [self.reduced[i] for i in keep],
                      [self.mirror[i] for i in keep], [True] * len(keep), Counter(self.codecs))


def min_side_for(cfg: PreprocessConfig) -> int:
    return REDUCED_DECODE_FACTOR * int(cfg.input_size)


# --- decoding and scoring ---------------------------------------------------------------------


def _codec(path: str) -> str:
    """"jpeg2000" or "jpeg": which reduction a file that did decode reduced went through."""
    if sniff_kind(path) != "dicom":
        return "jpeg"
    ts = str(dicom.read_header(path).file_meta.get("TransferSyntaxUID", ""))
    return "jpeg2000" if ts in dicom.J2K_SYNTAXES else "jpeg"


def _as_jpeg2000(pixels: np.ndarray, path: Path) -> Path:
    """``pixels`` ([0, 1]) as a 12-bit JPEG 2000 lossless DX image: what a PACS stores."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, JPEG2000Lossless, generate_uid

    px = np.rint(np.clip(pixels, 0, 1) * 4095).astype(np.uint16)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = UID("1.2.840.10008.5.1.4.1.1.1.1")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.Modality, ds.PresentationIntentType = "DX", "FOR PRESENTATION"
    ds.set_pixel_data(px, "MONOCHROME2", 12, generate_instance_uid=False)
    ds.compress(JPEG2000Lossless, px, generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)
    return path


def _j2k_reducible(shape: tuple[int, ...], min_side: int) -> bool:
    return -(-max(shape) // 2) >= min_side


@dataclass
class _Chunk:
    """Inputs of up to ``_CHUNK`` records, before they are scored."""

    stored: list[tuple[Record, np.ndarray, np.ndarray | None, str]] = field(default_factory=list)
    j2k: list[tuple[Record, np.ndarray, np.ndarray]] = field(default_factory=list)


def _decode_one(r: Record, cfg: PreprocessConfig, min_side: int, tmp: Path, chunk: _Chunk) -> None:
    """Both decodings of one file (and of its JPEG 2000 transcode when it is large enough)."""
    exact = decode_for_model(r.path)[0]
    reduced = decode_for_model(r.path, min_side=min_side)[0]
    was_reduced = reduced.shape != exact.shape
    chunk.stored.append((r, preprocess(exact, cfg), preprocess(reduced, cfg) if was_reduced else None,
                         _codec(r.path) if was_reduced else ""))
    if _j2k_reducible(exact.shape, min_side):
        j2k = _as_jpeg2000(exact, tmp / "transcoded.dcm")
        j_exact = decode_for_model(j2k)[0]
        j_reduced = decode_for_model(j2k, min_side=min_side)[0]
        if j_reduced.shape != j_exact.shape:
            chunk.j2k.append((r, preprocess(j_exact, cfg), preprocess(j_reduced, cfg)))


def _score_chunk(engine: Engine, chunk: _Chunk, stored: Scores, j2k: Scores) -> None:
    """Exact, mirrored-exact and reduced scores of a chunk, appended to its comparisons. An
    image that decoded in full both ways keeps its exact score: its pixels are the same."""
    if chunk.stored:
        x = np.stack([c[1] for c in chunk.stored])
        p, m = score_inputs(engine, x), score_inputs(engine, np.ascontiguousarray(x[..., ::-1]))
        reduced = [(k, c[2]) for k, c in enumerate(chunk.stored) if c[2] is not None]
        red = p.copy()
        if reduced:
            red[[k for k, _ in reduced]] = score_inputs(engine, np.stack([xr for _, xr in reduced]))
        for k, (r, _x, xr, codec) in enumerate(chunk.stored):
            stored.records.append(r)
            stored.exact.append(float(p[k]))
            stored.mirror.append(float(m[k]))
            stored.reduced.append(float(red[k]))
            stored.is_reduced.append(xr is not None)
            if codec:
                stored.codecs[codec] += 1
    if chunk.j2k:
        x = np.stack([c[1] for c in chunk.j2k])
        p, m = score_inputs(engine, x), score_inputs(engine, np.ascontiguousarray(x[..., ::-1]))
        red = score_inputs(engine, np.stack([c[2] for c in chunk.j2k]))
        for k, (r, _x, _xr) in enumerate(chunk.j2k):
            j2k.records.append(r)
            j2k.exact.append(float(p[k]))
            j2k.mirror.append(float(m[k]))
            j2k.reduced.append(float(red[k]))
            j2k.is_reduced.append(True)
            j2k.codecs["jpeg2000"] += 1


def measure_set(engine: Engine, rs: RecordSet, min_side: int) -> list[Scores]:
    """The set as stored, its reduced images alone, and its large images as JPEG 2000."""
    stored = Scores(rs.name, AS_STORED, rs.task)
    j2k = Scores(rs.name, AS_J2K, rs.task)
    with tempfile.TemporaryDirectory(prefix="mura_reduced_") as tmp:
        for start in range(0, len(rs.records), _CHUNK):
            chunk = _Chunk()
            for r in rs.records[start : start + _CHUNK]:
                try:
                    _decode_one(r, engine.cfg, min_side, Path(tmp), chunk)
                except ImageDecodeError as e:  # the gate leaves such files out too
                    stored.failed.append(str(e))
            _score_chunk(engine, chunk, stored, j2k)
    return [s for s in (stored, stored.subset(REDUCED_ONLY), j2k) if s.records]


# --- judging ------------------------------------------------------------------------------------


def _verdict_agreement(s: Scores, thresholds: dict[str, float]) -> dict[str, float]:
    """Share of images and of studies whose three-way verdict is the same from both decodings."""
    y = np.array([r.label for r in s.records])
    ids = [r.study_id for r in s.records]
    out = {}
    for level in ("image", "study"):
        a, b = np.asarray(s.exact), np.asarray(s.reduced)
        if level == "study":
            a, b = aggregate_studies(ids, y, a)[2], aggregate_studies(ids, y, b)[2]
        out[level] = float(np.mean([verdict_for(float(u), thresholds) == verdict_for(float(v), thresholds)
                                    for u, v in zip(a, b, strict=True)]))
    return out


def compare(s: Scores, thresholds: dict[str, float], input_size: int, seed: int = 0) -> dict:
    """The gate's row (``compress.validate.compare_set``: exact as the reference, reduced as the
    candidate) plus the |Δp| figures and counts the card keeps."""
    # compare_set reads the labels, studies and name of the set; the scores come from here
    es = EvalSet(f"{s.name} · {s.decoding}", s.task, s.records,
                 np.zeros((0, 1, input_size, input_size), np.float32), s.failed)
    row = compare_set(es, np.asarray(s.exact), np.asarray(s.reduced), thresholds, "exact", "reduced",
                      seed=seed, ref_mirror=np.asarray(s.mirror))
    dp = np.abs(np.asarray(s.exact) - np.asarray(s.reduced))
    row.update(decoding=s.decoding, set=s.name, n_reduced=int(sum(s.is_reduced)),
               codecs=dict(s.codecs), max_abs_dp=float(dp.max()), p99_abs_dp=float(np.percentile(dp, 99)),
               verdict_agreement=_verdict_agreement(s, thresholds))
    return row


def card_row(row: dict, thresholds: Sequence[str]) -> dict:
    """What the card keeps of one comparison (the whole row goes to validation.json)."""
    levels = ("image", "study")
    return {"dataset": row["set"], "decoding": row["decoding"], "n_images": row["n_images"],
            "n_studies": row.get("n_studies", 0), "n_reduced": row["n_reduced"], "codecs": row["codecs"],
            "max_abs_dp": row["max_abs_dp"], "p99_abs_dp": row["p99_abs_dp"],
            "image_auc_exact": row["image_auc_exact"], "image_auc_reduced": row["image_auc_reduced"],
            "image_auc_delta": row["image_auc_delta"], "study_auc_delta": row["study_auc_delta"],
            "agreement": {t: {lv: row[f"{lv}_agreement_{t}"] for lv in levels} for t in thresholds},
            "firm_flips": {t: {lv: row[f"{lv}_decisions_{t}"]["firm_flips"] for lv in levels}
                           for t in thresholds},
            "verdict_agreement": row["verdict_agreement"]}


def judge(rows: Sequence[dict], budget: float, min_agreement: float, measured: Mapping[str, int],
          min_side: int) -> dict:
    """The verdict fields of the card's section: each codec judged by the gate on the comparisons
    holding its reduced images (``by_codec``), the codecs that passed, and ``passed`` when all did."""
    by_codec: dict[str, dict] = {}
    for c in CODECS:
        mine = [r for r in rows if (r.get("codecs") or {}).get(c)]
        if not measured.get(c) or not mine:
            by_codec[c] = {"passed": False, "n_reduced": 0, "max_abs_dp": 0.0,
                           "reasons": [f"no image of the sets decoded reduced (long side >= {2 * min_side} "
                                       "px needed): nothing validated"]}
            continue
        ok, reasons = gate(list(mine), budget, min_agreement)
        by_codec[c] = {"passed": bool(ok), "n_reduced": int(measured[c]),
                       "max_abs_dp": float(max(r["max_abs_dp"] for r in mine)), "reasons": reasons}
    passed = [c for c in CODECS if by_codec[c]["passed"]]
    return {"passed": len(passed) == len(CODECS), "codecs_passed": passed, "by_codec": by_codec,
            "reasons": [f"{codec_names([c])}: {x}" for c in CODECS for x in by_codec[c]["reasons"]]}


def check_reduced_decode(engine: Engine, sets: Sequence[RecordSet], *, budget: float, min_agreement: float,
                         seed: int = 0) -> tuple[dict, list[dict]]:
    """The card's ``reduced_decode`` section and the full rows (for validation.json)."""
    min_side = min_side_for(engine.cfg)
    scores = [s for rs in sets for s in measure_set(engine, rs, min_side)]
    rows = [compare(s, engine.thresholds, int(engine.cfg.input_size), seed) for s in scores]
    measured = Counter[str]()
    for s in scores:
        if s.decoding != REDUCED_ONLY:
            measured.update(s.codecs)
    verdict = judge(rows, budget, min_agreement, measured, min_side)
    dps = np.concatenate([np.abs(np.asarray(s.exact) - np.asarray(s.reduced))[np.asarray(s.is_reduced)]
                          for s in scores if s.decoding != REDUCED_ONLY] or [np.zeros(0)])
    stored = [s for s in scores if s.decoding == AS_STORED]
    section = {
        **verdict, "rule": RULE, "min_side": min_side,
        "engine": f"{engine.artifact} ({engine.precision})",
        "n_images": sum(len(s.records) for s in stored), "n_reduced": sum(sum(s.is_reduced) for s in stored),
        "n_jpeg2000": sum(len(s.records) for s in scores if s.decoding == AS_J2K),
        "codecs": dict(measured),
        "abs_dp_reduced": {"max": float(dps.max()) if len(dps) else 0.0,
                           "p99": float(np.percentile(dps, 99)) if len(dps) else 0.0},
        "criteria": {"budget": budget, "min_agreement": min_agreement, "text": CRITERIA},
        "sets": [card_row(r, list(engine.thresholds)) for r in rows],
        "measured": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "report": "validation.md",
    }
    return section, rows


# --- the report, and updating an existing bundle -------------------------------------------------

REPORT_HEADING = "## Reduced-resolution decode"


def _pct(x: float) -> str:
    return "—" if x != x else f"{x:.3f}"  # NaN (one class only) as a dash


def markdown_section(section: dict) -> str:
    """The validation report's account of the check: what was measured, and the verdict."""
    ops = list(section["sets"][0]["agreement"]) if section["sets"] else []
    lines = [REPORT_HEADING, "", verdict_line(section) + "  ",
             f"Measured {section['measured']} with {section['engine']} on {section['n_images']} images "
             f"({section['n_reduced']} of them decoded reduced as stored; {section['n_jpeg2000']} large ones "
             f"also as 12-bit lossless JPEG 2000; reduced decodes per codec: {section['codecs'] or 'none'}). "
             "Criteria: "
             f"{section['criteria']['text']} (budget {section['criteria']['budget']}, min_agreement "
             f"{section['criteria']['min_agreement']}). Over every reduced decode: max |Δp| "
             f"{section['abs_dp_reduced']['max']:.4f}, p99 {section['abs_dp_reduced']['p99']:.4f}.", "",
             "| set | decoding | n | reduced | max / p99 \\|Δp\\| | ΔAUC image / study | "
             + " | ".join(f"agreement '{t}' image / study" for t in ops)
             + " | verdict agreement image / study | firm flips |",
             "| --- " * (8 + len(ops)) + "|"]
    for r in section["sets"]:
        flips = sum(v for t in r["firm_flips"].values() for v in t.values())
        lines.append(f"| {r['dataset']} | {r['decoding']} | {r['n_images']} | {r['n_reduced']} | "
                     f"{r['max_abs_dp']:.4f} / {r['p99_abs_dp']:.4f} | "
                     f"{r['image_auc_delta']:+.4f} / {r['study_auc_delta']:+.4f} | "
                     + " | ".join(f"{_pct(r['agreement'][t]['image'])} / {_pct(r['agreement'][t]['study'])}"
                                  for t in ops)
                     + f" | {_pct(r['verdict_agreement']['image'])} / {_pct(r['verdict_agreement']['study'])}"
                     f" | {flips} |")
    lines += [""] + [f"- {codec_names([c])}: **{'passed' if v['passed'] else 'failed'}**, "
                     f"{v.get('n_reduced', 0)} reduced decodes, max |Δp| {v.get('max_abs_dp', 0.0):.4f}"
                     for c, v in sorted((section.get("by_codec") or {}).items())]
    lines += [f"- {x}" for x in section["reasons"]]
    return "\n".join(lines).rstrip() + "\n"


def verdict_line(section: dict) -> str:
    """The report's first line: which codecs runtimes may decode reduced, and which not."""
    rule = f"({section['rule']}; here long side >= {section['min_side']} px)"
    ok = [c for c in CODECS if c in (section.get("codecs_passed") or ())]
    if section["passed"] or len(ok) == len(CODECS):
        return f"Verdict: **PASSED** — scoring from a reduced-resolution decode {rule} is validated: runtimes may use it."
    if not ok:
        return (f"Verdict: **FAILED** — scoring from a reduced-resolution decode {rule} is not validated: "
                "runtimes decode exactly.")
    rest = [c for c in CODECS if c not in ok]
    return (f"Verdict: **PASSED for {codec_names(ok)} only** — scoring from a reduced-resolution decode {rule} "
            f"is validated for {codec_names(ok)}: runtimes reduce those and decode {codec_names(rest)} "
            "exactly.")


def rejudge_bundle(root: str | Path) -> dict:
    """The verdict applied again to the comparisons the bundle's validation.json holds (nothing
    decoded or scored): card and report rewritten, model files untouched."""
    root = Path(root)
    card = load_bundle(root).card
    try:
        stored = json.loads((root / "validation.json").read_text(encoding="utf-8"))["reduced_decode"]
        rows, section = stored["rows"], card["reduced_decode"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{root}: no reduced-decode measurement to judge again ({e}); run the check") from e
    crit = section["criteria"]
    section = {**section, **judge(rows, float(crit["budget"]), float(crit["min_agreement"]),
                                  section.get("codecs") or {}, int(section["min_side"])),
               "criteria": {**crit, "text": CRITERIA}}
    write_bundle(root, {**card, "reduced_decode": section})
    write_report(root, section, rows)
    return section


def write_report(root: Path, section: dict, rows: list[dict]) -> None:
    """validation.json gets the section and the full rows, validation.md the section (replacing
    an earlier one): the card says where to read what was measured."""
    js, md = root / "validation.json", root / "validation.md"
    report = json.loads(js.read_text(encoding="utf-8")) if js.is_file() else {}
    atomic_write_json(js, {**report, "reduced_decode": {**section, "rows": rows}})
    text = md.read_text(encoding="utf-8") if md.is_file() else ""
    text = text.split("\n" + REPORT_HEADING, 1)[0].rstrip("\n")
    atomic_write_text(md, (text + "\n\n" if text else "") + markdown_section(section))


def _manifest_data(checkpoint: str | None, card: dict, specs: list[str]) -> dict:
    """The run manifest's ``data`` (how the training source was split), or {} when no set is
    the training source. Without it the whole training source would be scored, training images
    included, so that is refused."""
    if checkpoint:
        return run_manifest(checkpoint)["data"]
    train = str((card["provenance"].get("training_data") or {}).get("source") or "")
    for spec in specs:
        kind, _, path = spec.partition(":")
        if kind != "mura" and train and Path(path).resolve() == Path(train).resolve():
            raise ConfigError(f"{spec} is the model's training source: pass --checkpoint (its run manifest "
                              "splits it), or the check would score the model's training images")
    return {}


def update_bundle(root: str | Path, specs: Sequence[str] = (), *, checkpoint: str | None = None,
                  limit: int = 0, seed: int = 0) -> dict:
    """Measure an existing bundle and write its card (model files untouched) and report."""
    bundle = load_bundle(root)
    card = bundle.card
    specs = list(specs) or list(card["provenance"].get("gate_data") or [])
    if not specs:
        raise ConfigError(f"{root}: no --data given and the card names no gate_data")
    data = _manifest_data(checkpoint, card, specs)
    sets = []
    for spec in specs:
        split = resolve_split(spec, "validation", data)
        sets.append(split.subset(stratified_sample(split.records, limit, seed) if limit else split.records,
                                 split.name))
    val = card["validation"]
    section, rows = check_reduced_decode(Engine(bundle), sets, budget=float(val.get("budget", 0.005)),
                                         min_agreement=float(val.get("min_agreement", 0.99)), seed=seed)
    write_bundle(Path(root), {**card, "reduced_decode": section})
    write_report(Path(root), section, rows)
    return section


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m compress.reduced_decode", description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", help="bundle folder whose card gets the reduced_decode section")
    ap.add_argument("--data", action="append", default=None,
                    help="a gate set (source spec, its validation part); default: the card's gate_data")
    ap.add_argument("--checkpoint", default=None,
                    help="the checkpoint the bundle was made from: its run manifest splits the training "
                    "source (needed when a set is the training source)")
    ap.add_argument("--limit", type=int, default=0, help="images per set, stratified (0 = all, as the gate)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rejudge", action="store_true",
                    help="judge the comparisons validation.json holds again (per codec), measuring nothing")
    a = ap.parse_args(argv)
    try:
        section = (rejudge_bundle(a.bundle) if a.rejudge else
                   update_bundle(a.bundle, a.data or (), checkpoint=a.checkpoint, limit=a.limit, seed=a.seed))
    except MuraError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(markdown_section(section))
    return 0


if __name__ == "__main__":
    sys.exit(main())
