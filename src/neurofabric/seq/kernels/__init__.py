"""Kernels of the sequence models: ``reference`` (numpy loops, the spec) and ``torch_ops``."""
