"""Wire formats as pure functions over bytes and dicts: no HTTP, no I/O."""
