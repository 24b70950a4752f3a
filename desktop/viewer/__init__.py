"""The PySide6 viewer (mura-viewer). The only package that imports Qt."""
