"""A tiny name -> factory registry (timm style): ``register(name)``, ``get(name)``, ``names()``.

Strategies, datasets, scenarios and backbones are built only through their registry, so that
configs carry a name and tests can be parametrized over every registered entry.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Generic, TypeVar

from lifelong.errors import ConfigError, did_you_mean, unknown_choice

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories (classes or functions) with a one-line description each."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator filing ``obj`` under ``name``; registering a name twice is a programming error."""

        def add(obj: T) -> T:
            if name in self._entries:
                raise KeyError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        """The factory registered as ``name``; an unknown name raises ``ConfigError`` with a did-you-mean."""
        if name not in self._entries:
            raise unknown_choice(self.kind, name, self._entries)
        return self._entries[name]

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._entries)

    def describe(self, name: str) -> str:
        """The first line of the factory's docstring."""
        doc = getattr(self.get(name), "__doc__", None) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    def __contains__(self, name: object) -> bool:
        return name in self._entries


def check_kwargs(factory: Callable[..., object], kwargs: dict[str, object], key: str) -> None:
    """Raise ``ConfigError`` if ``kwargs`` holds a name ``factory`` does not accept.

    Args:
        factory: the class or function the kwargs are for.
        kwargs: the user's keyword arguments.
        key: the config key they came from, e.g. ``strategy.params``.

    """
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for name in kwargs:
        if name not in allowed:
            listed = ", ".join(allowed) if allowed else "none"
            raise ConfigError(
                f"{key}.{name} is not a parameter of {getattr(factory, '__name__', factory)}"
                f"{did_you_mean(name, allowed)}; allowed: {listed}"
            )
