"""``mura-screen``: screen a folder of studies and write a worklist sorted by suspicion (Qt-free).

Every decodable image gets a score; every file that cannot be used is listed with its reason and
the run goes on. Exit status: 0 every image was scored, 1 some images failed to decode, 2 fatal
error. Files that are not images at all (notes, CSVs) are listed but are not failures.
Patient names and IDs are never printed or logged.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from desktop.discovery import Discovery, Study, discover
from models.engine import Engine, aggregate_study
from models.errors import ImageDecodeError, MuraError
from models.fsutil import atomic_write_text
from models.imageio import load_image

WORKLIST_FIELDS = ["rank", "study", "verdict", "probability", "body_part", "n_images", "n_failed",
                   "modality", "description", "first_image", "model"]


@dataclass
class StudyResult:
    study: Study
    probability: float | None
    verdict: str
    body_part: str
    n_failed: int
    image_probs: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class ScreenResult:
    discovery: Discovery
    results: list[StudyResult]
    failures: list[tuple[str, str]]
    seconds: float
    n_scored_images: int

    @property
    def ranked(self) -> list[StudyResult]:
        scored = [r for r in self.results if r.probability is not None]
        return sorted(scored, key=lambda r: -r.probability) + [r for r in self.results if r.probability is None]


def screen(root: str | Path, engine: Engine, progress=None, cancel=None) -> ScreenResult:
    """Decode, score and aggregate every study under ``root``.

    ``progress(done, total)`` is called after each study; ``cancel()`` returning True stops early.
    """
    t0 = time.time()
    disc = discover(root)
    failures: list[tuple[str, str]] = []
    results: list[StudyResult] = []
    n_scored = 0
    for i, st in enumerate(disc.studies):
        if cancel is not None and cancel():
            break
        pixels, paths = [], []
        for ref in st.images:
            try:
                pixels.append(load_image(ref.path).pixels)
                paths.append(ref.path)
            except ImageDecodeError as e:
                failures.append((ref.path, e.reason))
        n_failed = len(st.images) - len(pixels)
        if pixels:
            preds = engine.predict(pixels)
            agg = aggregate_study(preds, engine.thresholds)
            n_scored += len(preds)
            results.append(StudyResult(st, agg.probability, agg.verdict, agg.body_part, n_failed,
                                       [(p, x.probability) for p, x in zip(paths, preds, strict=True)]))
        else:
            results.append(StudyResult(st, None, "failed", "", n_failed))
        if progress is not None:
            progress(i + 1, len(disc.studies))
    return ScreenResult(disc, results, failures, time.time() - t0, n_scored)


def worklist_rows(res: ScreenResult, model_id: str) -> list[dict]:
    rows = []
    for rank, r in enumerate(res.ranked, 1):
        rows.append({
            "rank": rank,
            "study": r.study.key,
            "verdict": r.verdict,
            "probability": "" if r.probability is None else f"{r.probability:.4f}",
            "body_part": r.body_part,
            "n_images": len(r.study.images),
            "n_failed": r.n_failed,
            "modality": r.study.modality,
            "description": r.study.description,
            "first_image": r.study.images[0].path if r.study.images else "",
            "model": model_id,
        })
    return rows


def write_outputs(res: ScreenResult, out: Path, model_id: str) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=WORKLIST_FIELDS)
    w.writeheader()
    w.writerows(worklist_rows(res, model_id))
    wl = atomic_write_text(out / "worklist.csv", buf.getvalue())
    buf = io.StringIO()
    fw = csv.writer(buf)
    fw.writerow(["path", "kind", "reason"])
    fw.writerows([(p, "failed", r) for p, r in res.failures])
    fw.writerows([(p, "skipped", r) for p, r in res.discovery.skipped])
    fw.writerows([(p, "duplicate", f"same SOP Instance UID as {q}") for p, q in res.discovery.duplicates])
    fl = atomic_write_text(out / "failures.csv", buf.getvalue())
    return wl, fl


def format_table(res: ScreenResult, word: str, top: int = 10) -> str:
    lines = [f"{'rank':>4}  {'verdict':<10}  {f'P({word})':>14}  {'body part':<9}  {'imgs':>4}  study"]
    for rank, r in enumerate(res.ranked[:top], 1):
        p = "-" if r.probability is None else f"{r.probability:.3f}"
        key = r.study.key if len(r.study.key) <= 48 else "…" + r.study.key[-47:]
        lines.append(f"{rank:>4}  {r.verdict:<10}  {p:>14}  {r.body_part:<9}  {len(r.study.images):>4}  {key}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="mura-screen",
        description="Screen every study under a folder (DICOM by content, PNG, JPEG) with a model bundle and "
        "write a worklist sorted by suspicion. Research use only — not for diagnostic use.",
    )
    ap.add_argument("src", help="folder (searched recursively) or a single file")
    ap.add_argument("--model", required=True, help="model bundle folder (card.json + model files)")
    ap.add_argument("--out", default=None, help="output folder for worklist.csv and failures.csv (default: no files)")
    ap.add_argument("--device", default="CPU", help="OpenVINO device: CPU, GPU or AUTO (default CPU)")
    ap.add_argument("--backend", choices=["openvino", "onnxruntime"], default="openvino", help="inference backend")
    ap.add_argument("--top", type=int, default=10, help="rows of the worklist to print (default 10)")
    return ap


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        engine = Engine(a.model, backend=a.backend, device=a.device)
        if not Path(a.src).exists():
            raise MuraError(f"{a.src}: no such file or folder")
        res = screen(a.src, engine)
    except MuraError as e:
        print(f"mura-screen: error: {e}", file=sys.stderr)
        return 2
    card = engine.bundle.card
    word = card["task"].get("display_word", card["task"]["name"])
    print(f"Model {engine.bundle.model_id} ({card['validation']['verdict']}); {card['intended_use']}")
    print(format_table(res, word, a.top))
    rate = res.n_scored_images / max(res.seconds, 1e-9)
    print(f"{len(res.results)} studies, {res.n_scored_images} images scored in {res.seconds:.1f}s "
          f"({rate:.1f} images/s); {len(res.failures)} images failed, "
          f"{len(res.discovery.skipped)} non-image files skipped, {len(res.discovery.duplicates)} duplicates")
    for path, reason in res.failures[:20]:
        print(f"  failed: {path}: {reason}")
    if len(res.failures) > 20:
        print(f"  … and {len(res.failures) - 20} more (see failures.csv with --out)")
    if a.out:
        wl, fl = write_outputs(res, Path(a.out), engine.bundle.model_id)
        print(f"worklist: {wl}\nfailures: {fl}")
    return 1 if res.failures else 0


if __name__ == "__main__":
    sys.exit(main())
