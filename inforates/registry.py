"""One registry per kind of thing (models, loaders, synthetic classes, ...).

A name is registered once; a second registration is an error, and a failed lookup lists the
valid names, so CLI choices and error messages come from the same place. A name that exists
but cannot work on this machine (an optional dependency that does not load) is marked
unavailable with the reason, which its lookup then gives instead of "unknown".
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._unavailable: dict[str, str] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@LOADERS.register("dali")``."""

        def deco(obj: T) -> T:
            self.add(name, obj)
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = obj

    def mark_unavailable(self, name: str, reason: str) -> None:
        """``name`` exists but cannot be used here, because ``reason`` (one line)."""
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered; it cannot also be unavailable")
        self._unavailable[name] = reason

    def unavailable(self) -> dict[str, str]:
        """Names that cannot be used here, with the reason for each."""
        return dict(self._unavailable)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            if name in self._unavailable:
                raise ValueError(f"{self.kind} {name!r} is not available here: {self._unavailable[name]}") from None
            raise ValueError(
                f"unknown {self.kind} {name!r}; choose from: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
