"""Choosing and trying upstream targets: pure decisions over injected I/O."""
