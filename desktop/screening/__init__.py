"""The Qt-free screening core: folder -> triaged worklist (mura-screen), its state, reports and
DICOM outputs. Never imports Qt or torch (tests/test_architecture.py)."""
