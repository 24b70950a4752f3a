"""DICOM decoding and the grayscale display pipeline, free of Qt and torch.

The trainer, the batch screener and the viewer must see the *same* gray image for a file, so the
whole chain lives here as small pure functions applied in the order of PS3.3 C.11 / PS3.4 N.2:

    stored values --decode_pixels--> apply_modality_lut --> apply_voi_lut --> apply_presentation

Each step reads only the tags its docstring names. The end result (:func:`to_display`) is float32
in [0, 1] with *high attenuation bright* (bone white, air black) whatever the Photometric
Interpretation, because the models are trained on radiographs that look that way.

Colour input (RGB, YBR_*, PALETTE COLOR) is converted to luminance instead of being refused: a
clinic occasionally sends a secondary capture or an ultrasound with a palette, and a gray
rendering of it is more useful to the screener than an error. Only photometric interpretations we
cannot interpret at all raise :class:`UnsupportedPhotometricError`.

Nothing here logs. :class:`DicomInfo` carries patient identifiers for the viewer's overlay only.

Modules by job, as pydicom splits its own: :mod:`.reading` (the one door that reads a file,
with its force policy and typed errors), :mod:`.header` (photometric, size and budget checks,
per-frame attributes, spacing, the summary), :mod:`.codecs` (exact and reduced-resolution pixel
decoding), :mod:`.lut` (the display chain). Everything public is re-exported here, so
``from models.dicom import X`` is the way in (``import ... as`` marks the few private helpers the
tests call). A test that patches a function patches it in the module that calls it
(``models.dicom.codecs``, ``models.dicom.lut``): patching this package changes nothing.
"""

from __future__ import annotations

from models.dicom.codecs import (
    J2K_SYNTAXES,
    JPEG_BASELINE,
    JPEG_SCALES,
    PREFERRED_PLUGINS,
    ReducedFrame,
    check_frame_complete,
    decode_pixels,
    decode_reduced,
    draft_jpeg,
    render_reduced,
    to_display,
)
from models.dicom.codecs import _j2k_header as _j2k_header
from models.dicom.codecs import _j2k_reduced as _j2k_reduced
from models.dicom.codecs import _luminance as _luminance
from models.dicom.codecs import _pixel_array as _pixel_array
from models.dicom.header import (
    COLOUR,
    MAX_FRAME_BYTES,
    MONOCHROME,
    DicomInfo,
    Window,
    check_pixel_budget,
    dicom_info,
    frame_dataset,
    is_monochrome,
    number_of_frames,
    photometric,
    pixel_spacing,
    validate_pixel_header,
)
from models.dicom.lut import (
    BONE_WINDOW_HU,
    SOFT_TISSUE_WINDOW_HU,
    apply_modality_lut,
    apply_presentation,
    apply_voi_lut,
    needs_inversion,
    render_frame,
    voi_count,
    window_presets,
)
from models.dicom.lut import _window as _window
from models.dicom.reading import looks_like_dicom, read_dataset, read_header

__all__ = [
    "BONE_WINDOW_HU",
    "COLOUR",
    "J2K_SYNTAXES",
    "JPEG_BASELINE",
    "JPEG_SCALES",
    "MAX_FRAME_BYTES",
    "MONOCHROME",
    "PREFERRED_PLUGINS",
    "SOFT_TISSUE_WINDOW_HU",
    "DicomInfo",
    "ReducedFrame",
    "Window",
    "apply_modality_lut",
    "apply_presentation",
    "apply_voi_lut",
    "check_frame_complete",
    "check_pixel_budget",
    "decode_pixels",
    "decode_reduced",
    "dicom_info",
    "draft_jpeg",
    "frame_dataset",
    "is_monochrome",
    "looks_like_dicom",
    "needs_inversion",
    "number_of_frames",
    "photometric",
    "pixel_spacing",
    "read_dataset",
    "read_header",
    "render_frame",
    "render_reduced",
    "to_display",
    "validate_pixel_header",
    "voi_count",
    "window_presets",
]
