"""The registries' names and parameters as data, so a config is checked before torch is imported.

``catalog.json`` (package data) holds, for every registry the config names (strategies, datasets, scenarios,
backbones, heads, audio-video models, analyses), each entry's parameters and their types, and each strategy's
model family and required head. :func:`check_config` checks a loaded config against it in milliseconds;
``lifelong run`` and ``lifelong show`` call it before importing torch, and ``run`` checks again against the
real registries (``lifelong.build.check_names``) before building anything.

The file is written from the registries by ``python -m lifelong.catalog``; a test fails when it drifts.
"""

from __future__ import annotations

import collections.abc
import inspect
import json
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from lifelong.errors import ConfigError, check_required_head, did_you_mean, unknown_choice
from lifelong.registry import check_values

if typing.TYPE_CHECKING:
    from lifelong.config import ExperimentConfig

CATALOG_FILE = "catalog.json"
TIMM_PREFIX = "timm:"
# The names an annotation is written with in the catalog (anything else is written as ``Any``).
_PLAIN = {"int": int, "float": float, "str": str, "bool": bool, "None": None, "list": list, "dict": dict}
_SEQUENCES = (list, tuple, collections.abc.Sequence)


def write_annotation(hint: Any) -> str:
    """An annotation as the catalog's text: plain types, ``|`` unions, ``Literal[...]``, ``list`` for sequences."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(dict.fromkeys(write_annotation(h) for h in typing.get_args(hint)))
    if origin is Literal:
        return f"Literal[{', '.join(repr(a) for a in typing.get_args(hint))}]"
    if hint is type(None):
        return "None"
    if hint in _SEQUENCES or origin in _SEQUENCES:
        return "list"
    if hint is dict or origin is dict:
        return "dict"
    return hint.__name__ if hint in _PLAIN.values() else "Any"


def read_annotation(text: str) -> Any:
    """The annotation of the catalog's text ``text`` (the inverse of :func:`write_annotation`)."""
    return eval(text, {"__builtins__": {}}, {**_PLAIN, "Literal": Literal, "Any": Any})  # noqa: S307 - own file


def describe_factory(factory: Any) -> dict[str, Any]:
    """The parameters (name -> annotation text) a registered factory accepts; ``**kwargs`` as ``"**"``."""
    target = factory.__init__ if isinstance(factory, type) else factory  # type: ignore[misc]
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - unresolvable annotations are not checked (the registry skips them too)
        hints = {}
    params: dict[str, str] = {}
    for name, p in inspect.signature(factory).parameters.items():
        if p.kind is p.VAR_KEYWORD:
            params["**"] = "Any"
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            params[name] = write_annotation(hints[name]) if name in hints else "Any"
    return params


def snapshot() -> dict[str, Any]:
    """The catalog built from the live registries (imports torch; used to write and to test the file)."""
    from lifelong.analysis import ANALYSES
    from lifelong.data import AV_DATASETS, DATASETS, SCENARIOS
    from lifelong.models import AV_MODELS, BACKBONES, HEADS
    from lifelong.strategies import STRATEGIES

    named: dict[str, Any] = {"datasets": DATASETS, "av_datasets": AV_DATASETS, "scenarios": SCENARIOS}
    named.update(backbones=BACKBONES, heads=HEADS, av_models=AV_MODELS)
    catalog: dict[str, Any] = {kind: {name: {} for name in registry.names()} for kind, registry in named.items()}
    catalog["analyses"] = {name: {"params": describe_factory(ANALYSES.get(name))} for name in ANALYSES.names()}
    catalog["strategies"] = {
        name: {
            "params": describe_factory(STRATEGIES.get(name)),
            "model_family": STRATEGIES.get(name).model_family,
            "requires_head": STRATEGIES.get(name).requires_head,
        }
        for name in STRATEGIES.names()
    }
    return catalog


def catalog_path() -> Path:
    return Path(str(resources.files("lifelong").joinpath(CATALOG_FILE)))


def load_catalog() -> dict[str, Any]:
    """The catalog shipped with the package."""
    return json.loads(catalog_path().read_text())


def check_params(entry: dict[str, Any], params: dict[str, Any], key: str, owner: str) -> None:
    """``params`` are parameters of the catalog ``entry`` (names and types); the message names ``key``."""
    declared: dict[str, str] = entry["params"]
    if "**" not in declared:
        allowed = list(declared)
        for name in params:
            if name not in declared:
                raise ConfigError(
                    f"{key}.{name} is not a parameter of {owner}{did_you_mean(name, allowed)}; "
                    f"allowed: {', '.join(allowed) if allowed else 'none'}"
                )
    hints = {name: read_annotation(declared[name]) for name in params if name in declared}
    check_values(hints, params, key)


def check_config(cfg: ExperimentConfig, catalog: dict[str, Any] | None = None) -> None:
    """Check the registry names and parameters of ``cfg`` against the catalog (no torch import).

    Raises:
        ConfigError: an unknown strategy, dataset, scenario, backbone, head or analysis, a parameter a strategy
            or analysis does not take, or a wrongly typed one; the message names the key and what is allowed.

    """
    catalog = catalog if catalog is not None else load_catalog()
    strategies = catalog["strategies"]
    if cfg.strategy.name not in strategies:
        raise unknown_choice("strategy.name", cfg.strategy.name, strategies)
    strategy = strategies[cfg.strategy.name]
    check_params(strategy, dict(cfg.strategy.params), "strategy.params", f"strategy {cfg.strategy.name!r}")
    for name, params in cfg.analysis.items():
        if name not in catalog["analyses"]:
            raise unknown_choice("analysis", name, catalog["analyses"])
        check_params(catalog["analyses"][name], dict(params or {}), f"analysis.{name}", f"analysis {name!r}")
    _check_names(cfg, catalog)
    if strategy["model_family"] == "classifier":
        check_required_head(cfg.strategy.name, strategy["requires_head"], cfg.model.head)


def _check_names(cfg: ExperimentConfig, catalog: dict[str, Any]) -> None:
    """The dataset, scenario, backbone and head of ``cfg`` are registered."""
    backbones = [*catalog["backbones"], *catalog["av_models"]]
    name = cfg.model.backbone
    if name not in backbones and not name.startswith(TIMM_PREFIX):
        hint = did_you_mean(name, backbones) or f" (a timm model is written {TIMM_PREFIX}{name})"
        raise ConfigError(
            f"model.backbone={name!r} is not a known backbone{hint}; "
            f"choose one of: {', '.join(sorted(backbones))}, or {TIMM_PREFIX}<timm model name>"
        )
    if cfg.model.head not in catalog["heads"]:
        raise unknown_choice("model.head", cfg.model.head, catalog["heads"])
    if cfg.stream.avalanche.benchmark is not None or cfg.stream.dataset in catalog["av_datasets"]:
        return
    if cfg.stream.dataset not in catalog["datasets"]:
        raise unknown_choice("stream.dataset", cfg.stream.dataset, [*catalog["datasets"], *catalog["av_datasets"]])
    if cfg.stream.scenario not in catalog["scenarios"]:
        raise unknown_choice("stream.scenario", cfg.stream.scenario, catalog["scenarios"])


if __name__ == "__main__":
    catalog_path().write_text(json.dumps(snapshot(), indent=1, sort_keys=True) + "\n")
    print(f"written {catalog_path()}")
