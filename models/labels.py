"""Label vocabularies shared by every stage.

MURA's label is *abnormality* (fractures, hardware, degenerative disease, ...), not fracture: the
task name travels in the model card so that every screen says the right word.
"""

from __future__ import annotations

#: The seven MURA v1.1 body parts, in the order of the folder names ``XR_<PART>``.
MURA_BODY_PARTS: tuple[str, ...] = (
    "elbow",
    "finger",
    "forearm",
    "hand",
    "humerus",
    "shoulder",
    "wrist",
)

#: Task names a card may declare, with the word a user interface shows for a positive finding.
TASK_WORDS: dict[str, str] = {
    "abnormality": "abnormality",  # MURA: abnormal vs normal study
    "fracture": "fracture",  # external set, FracAtlas: fractured vs not
}

#: The positive and negative class names of each task, as cards and reports write them.
TASK_LABELS: dict[str, tuple[str, str]] = {
    "abnormality": ("abnormal", "normal"),
    "fracture": ("fractured", "not fractured"),
}
