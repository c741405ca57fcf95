"""The package version, from the installed distribution's metadata (``pyproject.toml`` is the one source).

A leaf module: the modules of the package import the version from here, never from the package root.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lifelong")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0+unknown"
