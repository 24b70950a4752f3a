"""Deterministic phantom radiographs: the project's embedded default data.

Real MURA cannot ship with the project (licence, size), yet every stage - training, evaluation,
compression, the desktop screen - needs images in the exact on-disk layouts it will meet in the
field. This package draws radiograph-like phantoms procedurally and writes them as

* the MURA-v1.1 tree with its four headerless CSVs (:func:`write_mura`),
* the external "Bone Fracture Binary Classification" folder layout (:func:`write_external`),
* DICOM studies exercising the encodings a clinic PACS export really contains
  (:func:`write_dicom_studies`).

Only numpy, Pillow, pydicom and the standard library are imported: the generator runs on a clinic
PC that has no torch. Everything is a pure function of the seed, so tests and CI can regenerate
byte-identical data instead of storing it.

The drawing model is a tiny projection radiograph: each bone is a hollow tube (bright cortex,
darker medulla) whose X-ray path length is summed into an attenuation map together with a soft
tissue envelope, then exposed (``1 - exp(-k * attenuation)``), gamma-adjusted and made noisy.

The package lives in ``models/`` (not ``trainer/``) because the runtime's tests, benches and
installer checks need phantoms on machines without torch. Modules by job: :mod:`.anatomy` (bones,
body parts, fractures), :mod:`.render` (projection and exposure), :mod:`.layouts` (MURA and
external folder trees), :mod:`.dicom_writer` (PACS-like DICOM studies), :mod:`.cli`
(``mura-synth``).
"""

from __future__ import annotations

from models.synth.cli import main
from models.synth.dicom_writer import write_dicom_studies
from models.synth.layouts import write_external, write_mura
from models.synth.render import render_radiograph

__all__ = [
    "render_radiograph",
    "write_mura",
    "write_external",
    "write_dicom_studies",
    "main",
]
