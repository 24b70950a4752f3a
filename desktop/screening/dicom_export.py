"""DICOM results to send back to the PACS: Secondary Captures and a Comprehensive SR (Qt-free).

Why DICOM: a clinic reads images in its PACS viewer, not in our report. Each scored source image
gets a Secondary Capture (RGB: the image with its heatmap, the score and "not for diagnostic use"
burned in), and the study gets one Comprehensive SR with the study probability, the verdict, the
body part and the model's name and version, referencing every source instance it was inferred
from. Both join the *source* study (StudyInstanceUID and the patient module are copied from the
source, as a PACS needs to file them) in new series with new UIDs.

These files carry patient identifiers because the PACS needs them; nothing here logs or prints
any. Sources are only read, never modified; every output is written atomically
(:mod:`models.fsutil`), the SR last, so an SR on disk means the study's export is complete.
Both the screener (``mura-screen --dicom-out``) and the viewer call :func:`write_study_dicom`.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from desktop.screening.heat_legend import legend_rgb
from desktop.screening.render import blend_heatmap, format_probability, to_uint8, verdict_text
from models.dicom import read_dataset
from models.engine import ImagePrediction, StudyPrediction
from models.errors import ExportError, ImageDecodeError
from models.fsutil import atomic_write_bytes
from models.imageio import sniff_kind
from models.scope import OWN_MANUFACTURER

__all__ = ["SC_SERIES_NUMBER", "SR_NAME", "SR_SERIES_NUMBER", "write_not_indicated_sr", "write_study_dicom"]

SR_NAME = "SR.dcm"
SC_SERIES_NUMBER = 9901  # high numbers keep the results after the source series in PACS lists
SR_SERIES_NUMBER = 9902
MANUFACTURER = OWN_MANUFACTURER  # how discovery and the viewer know our outputs: never re-scored
DISCLAIMER = "RESEARCH USE ONLY - NOT FOR DIAGNOSTIC USE"
_TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                 "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName")
PRIVATE_SCHEME = "99MURA"  # local coding scheme ("99" prefix, PS3.16 8.2) for our probability


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def render_capture(pixels: np.ndarray, pred: ImagePrediction, word: str,
                   card: Mapping | None = None) -> np.ndarray:
    """The Secondary Capture's RGB pixels: heatmap over the image, text burned into a top band,
    and, with the model's ``card``, the heatmap's colour scale (desktop.screening.heat_legend) in the band.

    The band is added above the image rather than drawn over it, so no anatomy is hidden.
    """
    gray = to_uint8(np.asarray(pixels, dtype=np.float32))
    rgb = blend_heatmap(gray, pred.heatmap(gray.shape), opacity=0.45)
    h, w = gray.shape
    size = max(10, min(48, w // 32))
    lines = [DISCLAIMER,
             f"P({word}) = {format_probability(pred.probability)}   body part: {pred.body_part}"]
    text_h = int(size * 1.4) * len(lines) + size // 2
    legend = None
    if card is not None:
        legend = Image.fromarray(legend_rgb(card, width=max(120, min(w - size, 24 * size)), scale=size / 12))
    band = text_h + (legend.height + size // 2 if legend is not None else 0)
    canvas = Image.new("RGB", (w, h + band), (0, 0, 0))
    canvas.paste(Image.fromarray(rgb), (0, band))
    if legend is not None:
        canvas.paste(legend, (size // 2, text_h))
    draw = ImageDraw.Draw(canvas)
    font = _font(size)
    for k, line in enumerate(lines):
        draw.text((size // 2, size // 4 + k * int(size * 1.4)), line, fill=(255, 255, 0), font=font)
    return np.ascontiguousarray(np.asarray(canvas, dtype=np.uint8))


def _save(ds: Dataset, path: Path) -> Path:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return atomic_write_bytes(path, buf.getvalue())


def _header(path: Path, header_only: bool = False) -> Dataset:
    try:
        ds = read_dataset(path, stop_before_pixels=header_only)
    except ImageDecodeError as e:
        raise ExportError(f"{path}: cannot read the source DICOM header ({e.reason})") from e
    for kw in ("StudyInstanceUID", "SOPInstanceUID", "SOPClassUID"):
        if not str(ds.get(kw, "") or ""):
            raise ExportError(f"{path}: source has no {kw}; results cannot be filed with it")
    # Old (ACR-NEMA) files may lack type 2 patient/study attributes the outputs must carry:
    # empty means unknown. This changes the in-memory copy only, never the source file.
    for kw in _TYPE2_COPIED:
        if kw not in ds:
            setattr(ds, kw, "")
    return ds


def write_study_dicom(sources: Sequence[tuple[Path, np.ndarray, ImagePrediction]],
                      study: StudyPrediction, card: Mapping, out_dir: Path, *,
                      word: str = "fracture") -> list[Path]:
    """Per source DICOM image a Secondary Capture (heatmap + score + 'not for diagnostic use'
    burned in), plus one Comprehensive SR for the study referencing the source
    study/series/instances, with the study probability, verdict, body part and the model
    name/version. Returns the written paths (SR last).

    ``sources``: (source path, decoded display pixels in [0, 1], that image's prediction).
    Non-DICOM sources are skipped; raises :class:`ExportError` if none is DICOM, or if a source
    cannot be used (no UIDs, sources from different studies).
    """
    import highdicom as hd

    out_dir = Path(out_dir)
    dicom_sources = [(Path(p), px, pred) for p, px, pred in sources if sniff_kind(p) == "dicom"]
    if not dicom_sources:
        names = ", ".join(str(p) for p, _, _ in sources) or "no sources"
        raise ExportError(f"DICOM outputs need at least one DICOM source image ({names})")
    headers = [_header(p) for p, _, _ in dicom_sources]
    studies = {str(h.StudyInstanceUID) for h in headers}
    if len(studies) != 1:
        raise ExportError(f"{dicom_sources[0][0]}: sources belong to {len(studies)} different "
                          "studies; DICOM outputs are written per study")
    written: list[Path] = []
    sc_series = generate_uid()
    version = f"{card.get('version', '')}"
    for k, ((path, pixels, pred), ref) in enumerate(zip(dicom_sources, headers, strict=True), 1):
        rgb = render_capture(pixels, pred, word, card)
        try:
            # highdicom insists on a valid orientation; many sources have none, so build with a
            # placeholder and put the source's own value back (type 2C: empty means unknown).
            sc = hd.sc.SCImage.from_ref_dataset(
                ref, rgb, "RGB", 8, "PATIENT", sc_series, SC_SERIES_NUMBER, generate_uid(), k,
                MANUFACTURER, patient_orientation=("A", "F"),
                transfer_syntax_uid=ExplicitVRLittleEndian)
        except (ValueError, TypeError, AttributeError) as e:
            raise ExportError(f"{path}: cannot build a Secondary Capture from it ({e})") from e
        sc.PatientOrientation = ref.get("PatientOrientation", "") or ""  # type: ignore[assignment]  # pydicom takes a str
        sc.BurnedInAnnotation = "YES"
        sc.SeriesDescription = f"{word} heatmaps (research use only)"
        sc.ImageComments = f"{DISCLAIMER}. P({word}) = {pred.probability:.6f}"
        sc.DerivationDescription = f"{card.get('name', 'model')} {version}: heatmap and score"
        src_ref = Dataset()
        src_ref.ReferencedSOPClassUID = ref.SOPClassUID
        src_ref.ReferencedSOPInstanceUID = ref.SOPInstanceUID
        sc.SourceImageSequence = [src_ref]
        written.append(_save(sc, out_dir / f"SC_{k:03d}.dcm"))
    content = _sr_content(hd, study, dicom_sources, headers, card, word)
    written.append(_write_sr(hd, headers, content, out_dir, word, dicom_sources[0][0]))
    return written


def _write_sr(hd, headers: Sequence[Dataset], content, out_dir: Path, word: str, first: Path) -> Path:
    try:
        sr = hd.sr.ComprehensiveSR(
            evidence=headers, content=content, series_instance_uid=generate_uid(),
            series_number=SR_SERIES_NUMBER, sop_instance_uid=generate_uid(), instance_number=1,
            manufacturer=MANUFACTURER, is_complete=True, is_final=False, is_verified=False)
    except (ValueError, TypeError, AttributeError) as e:
        raise ExportError(f"{first}: cannot build the study's SR ({e})") from e
    sr.SeriesDescription = f"{word} screening result (research use only)"
    return _save(sr, Path(out_dir) / SR_NAME)


def write_not_indicated_sr(paths: Sequence[str | Path], reason: str, card: Mapping, out_dir: Path, *,
                           word: str = "fracture") -> list[Path]:
    """The SR of a study the model is not indicated for: no probability, no verdict, the reason.

    Sent back like any result, so the PACS shows that the study was seen and why it got no
    verdict, instead of a silence a reader could take for "negative".
    """
    import highdicom as hd
    from highdicom.sr import (
        CodedConcept,
        ContainerContentItem,
        RelationshipTypeValues,
        TextContentItem,
    )

    sources = [Path(p) for p in paths if sniff_kind(p) == "dicom"]
    if not sources:
        raise ExportError(f"DICOM outputs need at least one DICOM source image ({len(paths)} given)")
    headers = [_header(p, header_only=True) for p in sources]
    if len({str(h.StudyInstanceUID) for h in headers}) != 1:
        raise ExportError(f"{sources[0]}: sources belong to different studies; DICOM outputs are written per study")

    def text(code: tuple[str, str, str], value: str) -> TextContentItem:
        return TextContentItem(name=CodedConcept(*code), value=value or "-",
                               relationship_type=RelationshipTypeValues.CONTAINS)

    root = ContainerContentItem(name=CodedConcept("126000", "DCM", "Imaging Measurement Report"))
    root.ContentSequence = [  # type: ignore[assignment]  # pydicom makes a Sequence of a list
        text(("111001", "DCM", "Algorithm Name"), str(card.get("name", ""))),
        text(("111003", "DCM", "Algorithm Version"), str(card.get("version", ""))),
        text(("121106", "DCM", "Comment"), DISCLAIMER),
        text(("121071", "DCM", "Finding"), verdict_text("not_indicated", word)),
        text(("121106", "DCM", "Comment"), f"Not indicated: {reason}"),
    ]
    return [_write_sr(hd, headers, root, out_dir, word, sources[0])]


def _sr_content(hd, study: StudyPrediction, sources, headers: Sequence[Dataset],
                card: Mapping, word: str):
    """The SR tree: title container with the model, the study result, and per-image results.

    Every probability is a NUM item inferred from the image(s) it was computed on, so a PACS or
    a script can trace each number back to its source instance.
    """
    from highdicom.sr import (
        CodedConcept,
        ContainerContentItem,
        ImageContentItem,
        NumContentItem,
        RelationshipTypeValues,
        TextContentItem,
    )

    contains = RelationshipTypeValues.CONTAINS
    inferred = RelationshipTypeValues.INFERRED_FROM
    prob_name = CodedConcept("P-FINDING", PRIVATE_SCHEME, f"Probability of {word}")
    unit = CodedConcept("1", "UCUM", "no units")

    def image_item(ref: Dataset) -> ImageContentItem:
        return ImageContentItem(
            name=CodedConcept("260753009", "SCT", "Source"),
            referenced_sop_class_uid=str(ref.SOPClassUID),
            referenced_sop_instance_uid=str(ref.SOPInstanceUID),
            relationship_type=inferred)

    def num(value: float, refs: Sequence[Dataset]) -> NumContentItem:
        item = NumContentItem(name=prob_name, value=float(value), unit=unit,
                              relationship_type=contains)
        item.ContentSequence = [image_item(r) for r in refs]  # type: ignore[assignment]
        return item

    def text(code: tuple[str, str, str], value: str) -> TextContentItem:
        return TextContentItem(name=CodedConcept(*code), value=value or "-",
                               relationship_type=contains)

    thr = card.get("thresholds", {})
    items = [
        text(("111001", "DCM", "Algorithm Name"), str(card.get("name", ""))),
        text(("111003", "DCM", "Algorithm Version"), str(card.get("version", ""))),
        text(("121106", "DCM", "Comment"), DISCLAIMER),
        num(study.probability, headers),
        text(("121071", "DCM", "Finding"), verdict_text(study.verdict, word)),
        text(("363698007", "SCT", "Finding Site"), study.body_part),
    ]
    if thr:
        items.append(text(("121106", "DCM", "Comment"), "operating points: " + ", ".join(
            f"{k} >= {float(v):.4f}" for k, v in thr.items())))
    for (_, _, pred), ref in zip(sources, headers, strict=True):
        items.append(num(pred.probability, [ref]))
    root = ContainerContentItem(name=CodedConcept("126000", "DCM", "Imaging Measurement Report"))
    root.ContentSequence = items  # type: ignore[assignment]
    return root
