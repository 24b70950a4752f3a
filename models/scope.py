"""Is this image something the model was trained for? If not, it gets no verdict (Qt- and torch-free).

A fracture model trained on extremity radiographs still returns a probability for a chest film,
an ultrasound loop, a dental film or a test pattern, and that number means nothing. Every caller
(the screener, the viewer, the reports, the SR) asks this module first and shows *not indicated*
with the reason instead of a verdict. The checks run in the order they are cheapest:

1. :func:`header_refusal`: the DICOM header, before any pixel is decoded: our own result objects,
   modality (0008,0060), multi-frame cine (0028,0008), palette/colour photometric (0028,0004),
   and the body part from (0018,0015) Body Part Examined, (0008,1030) Study Description,
   (0008,103E) Series Description and (0018,1030) Protocol Name, mapped from common terms in
   several languages to anatomical regions. An unknown or missing body part is never a refusal.
2. :func:`image_refusal`: the decoded pixels: blank/uniform, a synthetic graphic or test
   pattern (a handful of grey levels cover it), a colour photograph.
3. :func:`prediction_refusal`: the model's own body-part head: its top probability below the
   threshold the card fitted on validation images (``indications.min_body_part_confidence``).

The model's indications come from its card (:class:`Indications`); a card written before they
existed gets the regions its body-part names imply and no confidence threshold.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

#: What our own DICOM outputs carry in (0008,0070) Manufacturer: never screened again.
OWN_MANUFACTURER = "mura-fracture"

#: Projection radiography modalities (0008,0060). "DR" is not a defined term but is sent by
#: some modalities. OT (other) and a missing modality go on to the image checks.
RADIOGRAPHY_MODALITIES = frozenset({"CR", "DX", "DR", "RF", "RG", "DF"})
UNDECIDED_MODALITIES = frozenset({"", "OT"})
MODALITY_NAMES = {
    "US": "ultrasound", "MR": "magnetic resonance", "CT": "CT", "PT": "PET", "NM": "nuclear medicine",
    "SR": "structured report", "PR": "presentation state", "KO": "key object selection",
    "MG": "mammography", "XA": "angiography", "IO": "intra-oral dental radiograph",
    "PX": "panoramic dental radiograph", "ES": "endoscopy", "XC": "photograph", "OP": "ophthalmic photograph",
    "ECG": "ECG", "SEG": "segmentation", "DOC": "document", "SM": "slide microscopy",
}

#: Canonical regions: the model's indications and every header term map onto these words.
EXTREMITY_REGIONS = ("finger", "hand", "wrist", "forearm", "elbow", "humerus", "shoulder", "clavicle",
                     "hip", "pelvis", "femur", "knee", "lower leg", "ankle", "foot")
OTHER_REGIONS = ("chest", "abdomen", "head", "teeth", "spine", "breast", "neck", "whole body")

#: A model body-part class -> the regions it covers (MURA's seven, FracAtlas's five).
BODY_PART_REGIONS: dict[str, tuple[str, ...]] = {
    "elbow": ("elbow",), "finger": ("finger",), "forearm": ("forearm",), "humerus": ("humerus",),
    "wrist": ("wrist",),
    "hand": ("hand", "finger", "wrist"),
    "shoulder": ("shoulder", "clavicle", "humerus"),
    "hip": ("hip", "pelvis", "femur"),
    "leg": ("femur", "knee", "lower leg", "ankle", "foot"),
}

# Header words (accents stripped, upper case) -> region. English DICOM defined terms of
# (0018,0015) first, then common words of German, French, Spanish, Italian, Portuguese, Dutch
# and Russian reports. Words that are also parts of other names ("HEAD" of the femur, "NECK" of
# the humerus) count only as the whole Body Part Examined value: see _EXACT_ONLY.
def _fold(text: str) -> str:
    """Upper case without accents (NFKD, combining marks dropped): 'Hüfte' -> 'HUFTE'."""
    return "".join(c for c in unicodedata.normalize("NFKD", str(text)) if not unicodedata.combining(c)).upper()


_TERMS: dict[str, str] = {}
for _region, _region_words in {
    "finger": "FINGER THUMB FINGERS DAUMEN DOIGT POUCE DEDO PULGAR DITO POLLICE VINGER DUIM ПАЛЕЦ",
    "hand": "HAND HANDS MAIN MANO MAO HANDWURZEL CARPUS CARPAL SCAPHOID KAHNBEIN КИСТЬ",
    "wrist": "WRIST HANDGELENK POIGNET MUNECA POLSO PUNHO PULS ЗАПЯСТЬЕ",
    "forearm": "FOREARM RADIUS ULNA UNTERARM AVANTBRAS ANTEBRAZO AVAMBRACCIO ANTEBRACO ONDERARM ПРЕДПЛЕЧЬЕ",
    "elbow": "ELBOW ELLENBOGEN ELLBOGEN COUDE CODO GOMITO COTOVELO ELLEBOOG ЛОКОТЬ ЛОКТЕВОЙ",
    "humerus": "HUMERUS ARM UPPERARM OBERARM BRAS BRAZO BRACCIO BRACO ПЛЕЧО",
    "shoulder": "SHOULDER SCHULTER EPAULE HOMBRO SPALLA OMBRO SCHOUDER ACROMION ПЛЕЧЕВОЙ",
    "clavicle": "CLAVICLE CLAVICULA KLAVIKULA SCHLUSSELBEIN SCAPULA",
    "hip": "HIP HIPS HUFTE HANCHE CADERA ANCA QUADRIL HEUP ТАЗОБЕДРЕННЫЙ",
    "pelvis": "PELVIS BECKEN BASSIN PELVIC ТАЗ",
    "femur": "FEMUR THIGH OBERSCHENKEL CUISSE MUSLO COSCIA COXA DIJBEEN БЕДРО",
    "knee": "KNEE KNIE GENOU RODILLA GINOCCHIO JOELHO PATELLA КОЛЕНО КОЛЕННЫЙ",
    "lower leg": "LEG TIBIA FIBULA UNTERSCHENKEL JAMBE PIERNA GAMBA PERNA ONDERBEEN ГОЛЕНЬ",
    "ankle": "ANKLE SPRUNGGELENK OSG CHEVILLE TOBILLO CAVIGLIA TORNOZELO ENKEL ГОЛЕНОСТОП",
    "foot": "FOOT FEET TOE TOES FUSS PIED PIE PIEDE VOET CALCANEUS FERSE ZEHE СТОПА",
    "chest": "CHEST THORAX THORACIC LUNG LUNGS RIB RIBS RIPPEN TORAX POITRINE PECHO TORACE ГРУДНАЯ ГРУДЬ",
    "abdomen": "ABDOMEN ABDOMINAL BAUCH KUB ABDOMINALE ВРЮШНАЯ ЖИВОТ",
    "head": "SKULL BRAIN SCHADEL KOPF CRANE CRANEO CRANIO CRANIUM SINUS SINUSES FACE ЧЕРЕП",
    "teeth": "TEETH TOOTH DENTAL ZAHN ZAHNE DENT DENTS DIENTE DENTE MANDIBLE MAXILLA JAW OPG",
    "spine": "SPINE CSPINE TSPINE LSPINE SSPINE WIRBELSAULE HWS BWS LWS RACHIS COLUMNA SACRUM COCCYX "
             "VERTEBRA ПОЗВОНОЧНИК",
    "breast": "BREAST MAMMA MAMMO SEIN MAMA",
}.items():
    for _w in _region_words.split():
        _TERMS[_fold(_w)] = _region
_EXACT_ONLY = {"HEAD": "head", "NECK": "neck", "ABDOMENPELVIS": "abdomen", "CHESTABDOMEN": "chest",
               "WHOLEBODY": "whole body", "EXTREMITY": "extremity", "UPREXM": "extremity",
               "LOWEXM": "extremity", "UPPEREXTREMITY": "extremity", "LOWEREXTREMITY": "extremity"}
_GENERIC = {_fold(w) for w in ("EXTREMITY", "EXTREMITIES", "EXTREMITAT", "EXTREMITATEN", "EXTREMITE",
                                "EXTREMIDAD", "SKELETT", "SKELETON", "СКЕЛЕТ", "КОНЕЧНОСТЬ")}


@dataclass(frozen=True)
class Refusal:
    """Why an image or study gets no verdict: ``check`` names the test, ``reason`` says it."""

    check: str  # "own_output", "modality", "frames", "colour", "body_part", "blank", "pattern", "confidence"
    reason: str


@dataclass(frozen=True)
class Indications:
    """What the model is for, from the card's ``indications`` (or implied by its body parts)."""

    regions: tuple[str, ...]
    body_parts: tuple[str, ...] = ()
    views: tuple[str, ...] = ()
    age: str = "not stated"
    min_body_part_confidence: float | None = None
    modalities: tuple[str, ...] = tuple(sorted(RADIOGRAPHY_MODALITIES))

    @classmethod
    def from_card(cls, card: Mapping) -> Indications:
        ind = dict(card.get("indications") or {})
        parts = tuple(str(p) for p in card.get("body_parts", ()))
        regions = tuple(ind.get("regions") or regions_for(parts))
        conf = ind.get("min_body_part_confidence")
        return cls(regions=regions, body_parts=parts, views=tuple(ind.get("views") or ()),
                   age=str(ind.get("age") or "not stated"),
                   min_body_part_confidence=None if conf is None else float(conf),
                   modalities=tuple(ind.get("modalities") or sorted(RADIOGRAPHY_MODALITIES)))

    def summary(self) -> str:
        """One line for the UI: 'Indicated for: CR/DX radiographs of hand, wrist, ... (views ...)'."""
        views = f"; views: {', '.join(self.views)}" if self.views else ""
        return (f"{'/'.join(self.modalities)} radiographs of {', '.join(self.regions)}{views}; "
                f"age: {self.age}")


def regions_for(body_parts: Iterable[str]) -> tuple[str, ...]:
    """The regions a model's body-part classes cover, in :data:`EXTREMITY_REGIONS` order.

    An unknown class name ("mixed", "unknown") adds nothing; a model whose classes are all
    unknown is taken to cover every extremity region (what it was trained on is not known).
    """
    covered = {r for p in body_parts for r in BODY_PART_REGIONS.get(str(p).lower(), ())}
    return tuple(r for r in EXTREMITY_REGIONS if r in covered) or EXTREMITY_REGIONS


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[^0-9A-ZА-Я]+", _fold(text)) if w]


def regions_in(text: str, *, whole_value: bool = False) -> set[str]:
    """Regions named in a header value; ``whole_value`` also matches (0018,0015)'s exact terms."""
    words = _words(text)
    found = {_TERMS[w] for w in words if w in _TERMS}
    if any(w in _GENERIC for w in words):
        found.add("extremity")
    if whole_value:
        joined = "".join(words)
        if joined in _EXACT_ONLY:
            found.add(_EXACT_ONLY[joined])
    return found


@dataclass(frozen=True)
class HeaderFields:
    """The header values the scope checks read (empty when absent)."""

    modality: str = ""
    body_part: str = ""
    descriptions: tuple[str, ...] = ()
    photometric: str = ""
    frames: int = 1
    manufacturer: str = ""
    sop_class: str = ""
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dataset(cls, ds) -> HeaderFields:
        def s(name: str) -> str:
            try:
                return str(ds.get(name, "") or "").strip()
            except Exception:  # noqa: BLE001 - a value pydicom cannot convert is an absent value
                return ""

        try:
            frames = int(ds.get("NumberOfFrames", 1) or 1)
        except (TypeError, ValueError):
            frames = 1
        return cls(s("Modality").upper(), s("BodyPartExamined"),
                   tuple(v for v in (s("StudyDescription"), s("SeriesDescription"), s("ProtocolName")) if v),
                   s("PhotometricInterpretation").upper(), frames, s("Manufacturer"), s("SOPClassUID"))


def header_refusal(h: HeaderFields, ind: Indications) -> Refusal | None:
    """The first header reason not to score this image, or None (see the module docstring)."""
    if h.manufacturer == OWN_MANUFACTURER:
        return Refusal("own_output", "a result object written by mura-fracture (not screened again)")
    mod = h.modality
    if mod not in UNDECIDED_MODALITIES and mod not in ind.modalities:
        what = MODALITY_NAMES.get(mod, "not a projection radiograph")
        return Refusal("modality", f"modality {mod} ({what}): the model reads {'/'.join(ind.modalities)} radiographs")
    if h.frames > 1:
        return Refusal("frames", f"multi-frame object ({h.frames} frames, cine or a stack): "
                                 "the model reads single radiographs")
    if h.photometric == "PALETTE COLOR" or (h.photometric.startswith(("RGB", "YBR")) and mod not in ind.modalities):
        return Refusal("colour", f"colour image ({h.photometric}{', modality ' + mod if mod else ''}): "
                                 "not a radiograph")
    return body_part_refusal(h, ind)


def body_part_refusal(h: HeaderFields, ind: Indications) -> Refusal | None:
    """Refuse only a body part that is named and is not indicated; unknown is not a refusal."""
    named = regions_in(h.body_part, whole_value=True)
    for text in h.descriptions:
        named |= regions_in(text)
    if not named or "extremity" in named or named & set(ind.regions):
        return None
    where = h.body_part or next(iter(h.descriptions), "")
    return Refusal("body_part", f"body part {where!r} ({', '.join(sorted(named))}) is not among the model's "
                                f"indications ({', '.join(ind.regions)})")


# --- the image -----------------------------------------------------------------------------

#: A colour image whose mean chroma (max - min of R, G, B, on [0, 1]) exceeds this is a colour
#: picture, not a radiograph saved as RGB. Measured: real radiographs stored as RGB JPEG
#: (FracAtlas, the Kaggle set) reach 0.041 (JPEG chroma noise); photographs 0.17-0.30.
MAX_CHROMA = 0.08
#: Fewer than this many of 256 grey levels holding >= 0.1 % of the pixels each, or the 8 most
#: frequent levels covering more than MAX_TOP8 of them: a graphic or test pattern. Measured on
#: real radiographs: at least 34 levels, top-8 mass at most 0.84; DICOM test patterns 17 / 0.92.
MIN_GREY_LEVELS = 24
MAX_TOP8 = 0.90
MIN_STD = 0.01


def chroma(rgb: np.ndarray) -> float:
    """Mean (max - min) over the colour channels of an (..., 3) image on [0, 1] (subsampled)."""
    a = np.asarray(rgb)
    step = max(1, max(a.shape[:2]) // 512)
    a = a[::step, ::step, :3]
    if not a.size:
        return 0.0
    # channel by channel, not a.max(axis=-1): numpy's reduction over a last axis of length 3
    # is ~6x slower (it was 14 ms of each colour JPEG's decode); the values are the same
    r, g, b = (a[..., i].astype(np.float32, copy=False) for i in range(3))
    return float((np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)).mean())


def image_refusal(pixels: np.ndarray, colour: float = 0.0) -> Refusal | None:
    """Is this decoded image (float [0, 1], bone bright) a radiograph at all? None if it may be."""
    if colour > MAX_CHROMA:
        return Refusal("colour", f"colour picture (mean chroma {colour:.2f}): not a radiograph")
    a = np.asarray(pixels, dtype=np.float32)
    step = max(1, max(a.shape) // 512)
    a = a[::step, ::step]
    if a.size == 0 or float(a.std()) < MIN_STD:
        return Refusal("blank", "blank or uniform image: nothing to read")
    q = np.clip(np.rint(a * 255), 0, 255).astype(np.int64)
    hist = np.bincount(q.ravel(), minlength=256) / q.size
    levels = int((hist >= 0.001).sum())
    top8 = float(np.sort(hist)[-8:].sum())
    if levels < MIN_GREY_LEVELS or top8 > MAX_TOP8:
        return Refusal("pattern", f"synthetic graphic or test pattern ({levels} grey levels, the 8 most "
                                  f"frequent cover {top8:.0%} of it): not a radiograph")
    return None


def prediction_refusal(body_part_probs: Mapping[str, float], ind: Indications) -> Refusal | None:
    """The body-part head unsure which trained body part this is: below the card's threshold."""
    if ind.min_body_part_confidence is None or not body_part_probs:
        return None
    top, p = max(body_part_probs.items(), key=lambda kv: kv[1])
    if p >= ind.min_body_part_confidence:
        return None
    return Refusal("confidence", f"the model does not recognise a trained body part (best {top} "
                                 f"{p:.2f} < {ind.min_body_part_confidence:.2f}, fitted on validation images)")
