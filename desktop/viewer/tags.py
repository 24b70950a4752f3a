"""Qt-free model of the DICOM tag browser: rows for every element, sequences nested, a filter.

A reader opens the tag browser to check *what the file says* (acquisition, laterality, window,
transfer syntax) when the picture or the verdict looks odd, so every element is listed, file
meta first, sequences as nested items. Bulk data (pixel data, overlays, private blobs) is shown
as its size, never dumped: a 20 MB value would freeze the dialog and tell the reader nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydicom.datadict import dictionary_description, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import UID

from models.dicom import read_dataset

__all__ = ["TagRow", "dataset_rows", "filter_rows", "read_tags"]

#: Value representations whose values are bulk binary data.
BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN", "OB or OW", "OB/OW"})
PIXEL_DATA = Tag(0x7FE0, 0x0010)
UNDEFINED_LENGTH = 0xFFFFFFFF
#: Longer text values are cut here; the full value is in the row's tooltip.
MAX_VALUE_CHARS = 200
#: Elements larger than this are not read into memory to build the list.
DEFER_SIZE = "4 KB"


@dataclass
class TagRow:
    """One line of the browser. ``children`` holds a sequence's items (each an "Item N" row
    whose children are that item's elements)."""

    tag: str
    keyword: str
    name: str
    vr: str
    value: str
    children: list[TagRow] = field(default_factory=list)

    def matches(self, needle: str) -> bool:
        """Case-insensitive match on tag ("0010,0010" or "00100010"), keyword, name or value."""
        n = needle.strip().lower()
        if not n:
            return True
        tag = self.tag.lower()
        hay = (tag, tag.strip("()").replace(",", ""), self.keyword.lower(), self.name.lower(),
               self.value.lower())
        return any(n in h for h in hay)


def _tag_text(tag: int) -> str:
    t = Tag(tag)
    return f"({t.group:04X},{t.element:04X})"


def _size_text(n: int | None, encapsulated: bool = False) -> str:
    if n is None:
        return "binary data (size unknown)"
    kib = f" ({n / 1024:.1f} KiB)" if n >= 1024 else ""
    return f"binary data, {n:,} bytes{kib}" + (", encapsulated" if encapsulated else "")


def _value_text(elem: DataElement) -> str:
    v = elem.value
    if v is None or v == "":
        return ""
    text = str(v) if not isinstance(v, bytes) else _size_text(len(v))
    if elem.VR == "UI" and isinstance(v, UID) and v.name != str(v):
        text += f" ({v.name})"  # transfer syntax and SOP class names say more than digits
    if len(text) > MAX_VALUE_CHARS:
        text = text[:MAX_VALUE_CHARS] + f"… ({len(text):,} characters)"
    return text


def _names(tag: int, private_creator: str = "") -> tuple[str, str]:
    kw = keyword_for_tag(tag) or ""
    try:
        name = dictionary_description(tag)
    except KeyError:
        t = Tag(tag)
        name = "Private tag" if t.is_private else "Unknown tag"
    return kw, name


def _bulk_row(ds: Dataset, tag: int) -> TagRow | None:
    """A row for a bulk element without reading (or dumping) its value; None if not bulk."""
    raw = ds.get_item(tag)
    vr = str(raw.VR or "") if raw is not None else ""
    if Tag(tag) != PIXEL_DATA and vr not in BINARY_VRS:
        return None
    kw, name = _names(tag)
    if isinstance(raw, RawDataElement):
        if raw.value is None:  # deferred: only its length was read
            n = None if raw.length == UNDEFINED_LENGTH else int(raw.length)
            return TagRow(_tag_text(tag), kw, name, vr, _size_text(n))
        value = raw.value
        encapsulated = raw.length == UNDEFINED_LENGTH
    else:
        value = raw.value
        encapsulated = bool(getattr(raw, "is_undefined_length", False))
    n = len(value) if isinstance(value, (bytes, bytearray)) else None
    return TagRow(_tag_text(tag), kw, name, vr, _size_text(n, encapsulated))


def dataset_rows(ds: Dataset) -> list[TagRow]:
    """Every element of ``ds`` in tag order, sequences expanded into items."""
    rows: list[TagRow] = []
    for tag in sorted(ds.keys()):
        bulk = _bulk_row(ds, tag)
        if bulk is not None:
            rows.append(bulk)
            continue
        try:
            elem = ds[tag]
        except Exception as e:  # noqa: BLE001 - a malformed element is listed, not fatal
            kw, name = _names(tag)
            rows.append(TagRow(_tag_text(tag), kw, name, "?", f"unreadable ({e})"))
            continue
        kw, name = elem.keyword or "", elem.name
        if elem.VR == "SQ":
            items = [TagRow("", f"Item {i}", "", "", f"{len(item)} element(s)",
                            dataset_rows(item))
                     for i, item in enumerate(elem.value, 1)]
            rows.append(TagRow(_tag_text(tag), kw, name, "SQ", f"{len(items)} item(s)", items))
        else:
            rows.append(TagRow(_tag_text(tag), kw, name, str(elem.VR), _value_text(elem)))
    return rows


def read_tags(path: str | Path) -> list[TagRow]:
    """The file meta group and the dataset of ``path``, read without loading bulk data.

    The file is only read; it is never written (nothing here can alter an original). It is read
    through :func:`models.dicom.read_dataset`, the one door with its force policy, so what cannot
    be shown raises that door's typed :class:`~models.errors.DicomError`. ``as_stored``: the
    File Meta as the file holds it, and a truncated file's File Meta even when pydicom had to
    drop its dataset (the image failed to decode; its tags say what it is).
    """
    ds = read_dataset(path, defer_size=DEFER_SIZE, as_stored=True)
    rows: list[TagRow] = []
    meta = getattr(ds, "file_meta", None)
    if meta is not None and len(meta):
        rows.append(TagRow("", "File meta information", "", "", f"{len(meta)} element(s)",
                           dataset_rows(meta)))
    rows += dataset_rows(ds)
    return rows


def filter_rows(rows: list[TagRow], needle: str) -> list[TagRow]:
    """Rows that match ``needle``, with the sequences/items that lead to a matching element.

    A matching row keeps all its children (a matching sequence shows its items); a row that does
    not match is kept only as the path to matching descendants.
    """
    if not needle.strip():
        return rows
    out: list[TagRow] = []
    for r in rows:
        if r.matches(needle):
            out.append(r)
            continue
        kids = filter_rows(r.children, needle)
        if kids:
            out.append(TagRow(r.tag, r.keyword, r.name, r.vr, r.value, kids))
    return out
