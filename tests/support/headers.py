"""Request headers for tests that check which names a piece of code reads."""

from __future__ import annotations

from typing import Any


class Reading(dict[str, str]):
    """Headers that remember every name looked up."""

    def __init__(self, items: dict[str, str]) -> None:
        super().__init__(items)
        self.read: set[str] = set()

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        self.read.add(name)
        return super().get(name, default)
