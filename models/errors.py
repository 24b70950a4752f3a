"""Every error the project raises on purpose lives here, so callers can catch by kind.

Messages always name the offending file or value: a user reading a screening report or a CI log
must be able to act on the message alone.
"""

from __future__ import annotations


class MuraError(Exception):
    """Base of all deliberate errors of mura-fracture."""


class ConfigError(MuraError):
    """A configuration value or command-line option is invalid."""


class ManifestError(ConfigError):
    """A run manifest (``run_manifest.json``, the trainer's hand-over to compress) is malformed,
    misses a field or describes another checkpoint. ``path`` is the file, ``field`` the JSON path
    of the offending value (``"model/architecture"``; ``"<root>"`` for the whole document)."""

    def __init__(self, path: object, field: str, reason: str) -> None:
        self.path = str(path)
        self.field = field
        self.reason = reason
        super().__init__(f"{self.path}: invalid run manifest at '{field}': {reason}")


class DataError(MuraError):
    """A dataset (root folder, CSV, label table) is missing or malformed."""


class ImageDecodeError(MuraError):
    """A file could not be turned into a grayscale image."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class UnsupportedImageError(ImageDecodeError):
    """The file is readable but not an image kind we handle (not DICOM/PNG/JPEG/GIF/...)."""


class DicomError(ImageDecodeError):
    """A DICOM file is malformed, truncated or uses something we cannot decode."""


class MissingPixelDataError(DicomError):
    """The DICOM object has no Pixel Data (7FE0,0010): a header-only or non-image object."""


class UnsupportedPhotometricError(DicomError):
    """Photometric Interpretation (0028,0004) is not MONOCHROME1/2 or a convertible colour space."""


class TruncatedPixelDataError(DicomError):
    """The file ends before its data does (cut-off transfer): re-send the study, don't re-read it."""


class ImageTooLargeError(ImageDecodeError):
    """The header claims more pixels than a radiograph has (:data:`models.dicom.MAX_FRAME_BYTES`):
    refused before any decoder allocates them, so a hostile or corrupt header cannot exhaust memory."""


class BundleError(MuraError):
    """A model bundle is missing, incomplete or inconsistent."""


class NoModelError(BundleError):
    """No ``--model`` was given and no default bundle exists (no ``MURA_DEFAULT_MODEL``, no
    installed model, no shipped reference model in this checkout)."""


class ChecksumError(BundleError):
    """A bundle file's sha256 differs from the one its card records: it was altered."""


class CardValidationError(BundleError):
    """card.json does not satisfy the card's JSON schema."""


class ModelIOMismatchError(BundleError):
    """The network's real inputs/outputs differ from what the card declares."""


class GateFailedError(MuraError):
    """A quantized model lost more accuracy than the budget allows."""


class InferenceError(MuraError):
    """The inference runtime failed on an input it had accepted (device lost, runtime bug)."""


class ExportError(MuraError):
    """Results could not be written in the requested form (e.g. DICOM outputs for no DICOM source)."""


class NodeConfigError(ConfigError):
    """mura-node's TOML configuration is invalid. ``path`` is the file, ``key`` the dotted key of
    the offending value (``"destination.port"``; ``"<file>"`` for the whole document), so an
    administrator can fix the line the message names without reading code."""

    def __init__(self, path: object, key: str, reason: str) -> None:
        self.path = str(path)
        self.key = key
        self.reason = reason
        super().__init__(f"{self.path}: {key}: {reason}")


class DicomNetworkError(MuraError):
    """A DICOM network exchange failed or was refused. ``peer`` names the association
    (``AE@host:port``), ``status`` is the DIMSE status when the peer answered one (else None)."""

    def __init__(self, peer: str, reason: str, status: int | None = None) -> None:
        self.peer = peer
        self.reason = reason
        self.status = status
        super().__init__(f"{peer}: {reason}")
