"""--anonymize: study keys, paths and free text as the outputs show them.

Folder names and even UIDs can carry patient names or accession numbers, so every output (the
state database included) goes through :class:`Aliases`; without --anonymize it is the identity.
"""

from __future__ import annotations

import dataclasses
import hashlib

from desktop.screening.discovery import Study
from desktop.screening.state import ImageRow, StudyRow


class Aliases:
    """Study keys and paths as they appear in outputs: as they are, or salted hashes (--anonymize).

    Folder names and even UIDs can carry patient names or accession numbers; a salted hash keeps
    rows distinct and stable across resumes (the salt lives in the state) without revealing them.
    """

    def __init__(self, salt: str, anonymize: bool) -> None:
        self.salt, self.anonymize = salt, anonymize

    def __call__(self, text: str, prefix: str = "anon") -> str:
        if not self.anonymize or not text:
            return text
        return f"{prefix}-{hashlib.sha256((self.salt + text).encode()).hexdigest()[:16]}"

    def text(self, text: str) -> str:
        """Free text (study descriptions) is dropped entirely when anonymizing."""
        return "" if self.anonymize else text

    def reason(self, text: str, paths: list[str]) -> str:
        """An error message with the source paths it names replaced by their aliases."""
        if self.anonymize:
            for p in paths:
                text = text.replace(p, self(p, "file"))
        return text

    def identity(self, st: Study) -> dict[str, str]:
        """The study's :data:`IDENTITY_FIELDS` as outputs show them: as they are, or with the
        patient ID, name, accession number and date replaced by salted hashes (an empty value
        stays empty) and the description dropped."""
        ids = {"patient_id": self(st.patient_id, "pid"), "patient_name": self(st.patient_name, "name"),
               "accession": self(st.accession, "acc"), "study_date": self(st.study_date, "date")}
        return {**ids, "modality": st.modality, "body_part_header": st.body_part_tag,
                "description": self.text(st.description)}


def stored_rows(srow: StudyRow, rows: list[ImageRow], st: Study, alias: Aliases) -> tuple[StudyRow, list[ImageRow]]:
    """The rows as the state keeps them: with ``--anonymize`` the study key, paths and reasons
    aliased and the description dropped, so screen.sqlite holds no name a folder or file carried."""
    if not alias.anonymize:
        return srow, rows
    paths = [ref.path for ref in st.images]
    out = [dataclasses.replace(r, stamp=dataclasses.replace(r.stamp, path=alias(r.stamp.path, "file")),
                               error=None if r.error is None else alias.reason(r.error, paths),
                               refused=None if r.refused is None else alias.reason(r.refused, paths))
           for r in rows]
    return dataclasses.replace(srow, key=alias(srow.key, "study"), description="",
                               first_image=alias(srow.first_image, "file"),
                               scope=alias.reason(srow.scope, paths)), out
