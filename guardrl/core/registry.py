"""Name -> object registries (the verl style, stricter): a duplicate name raises, a miss lists the valid names."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A named set of objects of one kind (``what`` names the kind in errors: "task", "clip schedule").

    >>> r = Registry[int]("number")
    >>> _ = r.add("one", 1)
    >>> r.get("one")
    1
    >>> r.get("two")
    Traceback (most recent call last):
    ...
    KeyError: "unknown number 'two'; valid: ['one']"
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        """Register ``item`` under ``name``.

        Raises:
            ValueError: ``name`` is already registered.
        """
        if name in self._items:
            old = self._items[name]
            by = getattr(old, "__qualname__", None) or repr(old)  # a function's name, else the object
            raise ValueError(f"{self.what} {name!r} is already registered ({by})")
        self._items[name] = item
        return item

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def deco(item: T) -> T:
            return self.add(name, item)

        return deco

    def get(self, name: str) -> T:
        """The object registered under ``name``.

        Raises:
            KeyError: unknown name; the message lists the valid ones.
        """
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.what} {name!r}; valid: {sorted(self._items)}") from None

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __delitem__(self, name: str) -> None:
        """Unregister ``name`` (tests that register a temporary entry).

        Raises:
            KeyError: unknown name; the message lists the valid ones.
        """
        self.get(name)
        del self._items[name]

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))
