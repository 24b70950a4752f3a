"""The networks (PyTorch): the only part of models/ that imports torch; training and export use it,
the runtime never does (tests/test_architecture.py)."""
