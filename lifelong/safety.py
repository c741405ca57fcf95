"""A config is data, not code (DESIGN §8): what it may import, the names that become paths, its size.

- Code named by a config (``package.module:callable``, e.g. ``stream.avalanche.benchmark``) is
  imported only from modules on the allow-list: the ``avalanche.benchmarks`` namespace, plus what
  the user running the command adds with ``--allow-code MODULE`` (or ``LIFELONG_ALLOW_CODE=a,b``;
  ``--trust-config`` allows any module). The allow-list cannot come from the config itself: a
  config that could widen it would be code again.
- Names that become folder names (``name``, ``tracking.experiment``, the run name) are one path
  component: no separators, not ``.`` or ``..``, no control characters, at most ``MAX_NAME_BYTES``.
- A YAML file is at most ``MAX_YAML_BYTES`` and expands (aliases included) to at most
  ``MAX_YAML_NODES`` values, so an alias bomb or a huge list is an error, not minutes of silence.

A leaf module, like :mod:`lifelong.errors`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from lifelong.errors import ConfigError

ALLOW_ENV = "LIFELONG_ALLOW_CODE"
DEFAULT_ALLOWED = ("avalanche.benchmarks",)
ANY = "*"
MAX_NAME_BYTES = 100
MAX_YAML_BYTES = 1 << 20
MAX_YAML_NODES = 100_000


def allowed_modules() -> tuple[str, ...]:
    """The modules a config may name code from (``*``: any)."""
    extra = [m.strip() for m in os.environ.get(ALLOW_ENV, "").split(",") if m.strip()]
    return (*DEFAULT_ALLOWED, *extra)


def allow_code(modules: Iterable[str]) -> None:
    """Add ``modules`` (or ``*``) to the allow-list of this process and the processes it starts (DDP ranks)."""
    current = [m for m in os.environ.get(ALLOW_ENV, "").split(",") if m.strip()]
    os.environ[ALLOW_ENV] = ",".join(dict.fromkeys([*current, *modules]))


def _is_allowed(module: str, allowed: Iterable[str]) -> bool:
    return any(a == ANY or module == a or module.startswith(a + ".") for a in allowed)


def check_code(key: str, name: str | None) -> None:
    """Refuse ``key=name`` when ``name`` is ``module:callable`` with a module outside the allow-list.

    Raises:
        ConfigError: naming the key, the module, the allow-list and how to extend it.

    """
    if not name or ":" not in name:
        return
    module = name.partition(":")[0].strip()
    allowed = allowed_modules()
    if _is_allowed(module, allowed):
        return
    raise ConfigError(
        f"{key}={name!r} names code in {module!r}, which is not on the allow-list ({', '.join(allowed)}); a config "
        f"cannot run code you have not allowed: if you trust it, pass --allow-code {module} to `lifelong run` "
        f"(or set {ALLOW_ENV}={module})"
    )


def check_path_name(key: str, value: str) -> None:
    """Refuse a name that cannot be one folder name under the output directory.

    Raises:
        ConfigError: naming the key, the value and what is allowed.

    """
    allowed = f"use 1 to {MAX_NAME_BYTES} bytes without '/', '\\\\' or control characters, not '.' or '..'"
    shown = value if len(value) <= 60 else value[:57] + "..."
    size = len(value.encode())
    if not value.strip() or value in (".", ".."):
        raise ConfigError(f"{key}={shown!r} is not allowed; {allowed}")
    if "/" in value or "\\" in value or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigError(f"{key}={shown!r} is not allowed (it would be a path, not a name); {allowed}")
    if size > MAX_NAME_BYTES:
        raise ConfigError(f"{key}={shown!r} is {size} bytes long, which is not allowed; {allowed}")


def count_nodes(data: Any, limit: int) -> int:
    """Values in ``data`` counting every alias expansion, stopping once past ``limit`` (cycles included)."""
    count, stack = 0, [data]
    while stack and count <= limit:
        node = stack.pop()
        count += 1
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            stack.extend(node)
    return count


def load_yaml(path: Path) -> Any:
    """``yaml.safe_load`` of ``path`` within the size and expansion bounds.

    Raises:
        ConfigError: the file is too big, expands too far, or is not YAML.

    """
    size = path.stat().st_size
    if size > MAX_YAML_BYTES:
        raise ConfigError(f"{path} is {size} bytes; a config file may have at most {MAX_YAML_BYTES}")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(path.read_bytes(), Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(err).split())}") from None
    except RecursionError:
        raise ConfigError(f"{path} nests too deeply to be a config") from None
    if count_nodes(data, MAX_YAML_NODES) > MAX_YAML_NODES:
        raise ConfigError(
            f"{path} expands to more than {MAX_YAML_NODES} values (YAML aliases count every time they are used); "
            "a config holds settings, not data: point to data files instead"
        )
    return data


def check_writable_dir(key: str, path: str | Path) -> None:
    """Check that the folder ``key`` names can hold new files (nothing is left behind).

    Raises:
        ConfigError: naming the key, the folder and why it cannot be written.

    """
    folder = Path(path)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("/"))
    try:
        if not existing.is_dir():
            raise NotADirectoryError(0, f"{existing} is not a folder")
        if existing == folder:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
                pass
        elif not os.access(existing, os.W_OK | os.X_OK):
            raise PermissionError(0, f"{existing} is read-only")
    except OSError as err:
        raise ConfigError(
            f"{key}={str(path)!r} cannot be written ({err.strerror or err}); choose a writable folder, e.g. {key}=runs"
        ) from None
