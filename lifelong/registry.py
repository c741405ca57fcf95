"""A tiny name -> factory registry (timm style): ``register(name)``, ``get(name)``, ``names()``.

Strategies, datasets, scenarios and backbones are built only through their registry, so that
configs carry a name and tests can be parametrized over every registered entry.
"""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any, Generic, TypeVar

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

    def check(self, name: str, params: dict[str, Any], key: str = "") -> T:
        """The factory of ``name`` after checking that it accepts ``params`` (names and types), without building.

        Raises:
            ConfigError: an unknown name, an unknown parameter or a wrongly typed value, naming ``key``.

        """
        factory = self.get(name)
        check_kwargs(factory, params, key or f"{self.kind}.params")  # type: ignore[arg-type]
        check_param_types(factory, params, key or f"{self.kind}.params")
        return factory

    def build(self, name: str, params: dict[str, Any] | None = None, key: str = "", seed: int | None = None) -> Any:
        """Build ``name`` with ``params`` after checking their names and types; ``seed`` is injected once.

        Args:
            name: the registered name.
            params: keyword arguments from the config.
            key: the config key the params come from (e.g. ``strategy.params``), named in errors.
            seed: the run's seed, passed as ``seed`` when the factory takes one and ``params`` does not set it.

        Raises:
            ConfigError: an unknown name or parameter, a wrongly typed value, or a value the factory refuses.

        """
        factory: Any = self.check(name, params or {}, key)
        params = dict(params or {})
        if seed is not None and "seed" not in params and "seed" in inspect.signature(factory).parameters:
            params["seed"] = seed
        try:
            return factory(**params)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{self.kind} {name!r}: {err}") from None

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


def _matches(value: object, hint: Any) -> bool:
    """Whether a config value fits a parameter annotation (plain types, unions, sequences; others pass)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint in (list, tuple) or origin in (list, tuple, collections.abc.Sequence):
        return isinstance(value, list | tuple)
    return True


def check_param_types(factory: Any, params: dict[str, Any], key: str) -> None:
    """Raise ``ConfigError`` naming ``key.<param>`` when a value does not fit the factory's annotation."""
    try:
        hints = typing.get_type_hints(factory.__init__ if isinstance(factory, type) else factory)  # type: ignore[misc]
    except Exception:  # noqa: BLE001 - unresolvable annotations: leave the checks to the factory
        return
    check_values(hints, params, key)


def check_values(hints: dict[str, Any], params: dict[str, Any], key: str) -> None:
    """Raise ``ConfigError`` naming ``key.<param>`` when a value does not fit its annotation in ``hints``."""
    for name, value in params.items():
        if name in hints and not _matches(value, hints[name]):
            hint = hints[name]
            shown = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
            raise ConfigError(f"{key}.{name}={value!r} is not allowed; expected {shown}")
