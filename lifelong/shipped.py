"""The experiments shipped with the package: ``lifelong run quickstart`` finds ``experiments/quickstart.yaml``.

In a clone, ``lifelong/experiments`` is a link to the repository's ``experiments/`` folder; the wheel carries
the YAML files themselves (package data), so an installed ``lifelong`` runs them from any working directory.
Files whose name starts with ``_`` are bases for ``extends:`` and are not listed.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from lifelong.errors import ConfigError, did_you_mean


def experiments_dir() -> Path:
    """The folder holding the shipped experiment YAML files."""
    return Path(str(resources.files("lifelong").joinpath("experiments")))


def shipped_names() -> list[str]:
    """The runnable shipped experiments (file stems), sorted; bases (``_x.yaml``) left out."""
    folder = experiments_dir()
    if not folder.is_dir():
        return []
    files = (p.relative_to(folder) for p in folder.rglob("*.yaml") if not p.name.startswith("_"))
    return sorted(str(p.with_suffix("")) for p in files)


def describe(name: str) -> str:
    """The first comment line of a shipped experiment, without the ``#``."""
    for line in (experiments_dir() / f"{name}.yaml").read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
        if line.strip():
            break
    return ""


def resolve(path: str | Path) -> Path:
    """``path`` when it names a file; else the shipped experiment it names.

    ``quickstart``, ``quickstart.yaml``, ``experiments/quickstart.yaml`` (the README's commands, run outside a
    clone) and ``pretrain/flava_av_digits`` all name shipped files.

    Raises:
        ConfigError: neither a file nor a shipped experiment; the message lists the shipped names.

    """
    given = Path(path)
    if given.is_file() or given.is_absolute():
        return given
    relative = Path(*given.parts[1:]) if given.parts[0] == "experiments" and len(given.parts) > 1 else given
    shipped = experiments_dir() / (relative if relative.suffix in (".yaml", ".yml") else f"{relative}.yaml")
    if shipped.is_file():
        return shipped
    names = shipped_names()
    hint = did_you_mean(given.stem, names)
    raise ConfigError(
        f"config file {str(path)!r} does not exist{hint}; give a YAML path or the name of a shipped experiment "
        f"(`lifelong list` shows them: {', '.join(names[:6])}, ...)"
    )
