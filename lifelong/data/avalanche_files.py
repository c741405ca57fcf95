"""The files of Avalanche's classic benchmarks, staged from the system's dataset packages (no download).

Avalanche reads torchvision's layout (``<dataset_root>/FashionMNIST/raw/<name>-ubyte``) and downloads what
is missing. :func:`stage_benchmark_files` fills that layout from the Debian package's gzipped IDX files
first, so ``SplitFMNIST`` runs offline; when neither the layout nor the package is there it raises a
``DataError`` naming both fixes.
"""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lifelong.data.datasets import FASHION_MNIST_SYSTEM_DIR
from lifelong.errors import DataError

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass(frozen=True)
class SystemFiles:
    """Where a torchvision dataset's raw files come from on this system.

    Attributes:
        folder: torchvision's folder under the dataset root (``FashionMNIST``).
        avalanche_name: Avalanche's default location name (``~/.avalanche/data/<name>``).
        system_dir: the gzipped IDX files of the system package.
        package: the Debian package that installs them.

    """

    folder: str
    avalanche_name: str
    system_dir: Path
    package: str


STAGED = {
    "SplitFMNIST": SystemFiles("FashionMNIST", "fashionmnist", FASHION_MNIST_SYSTEM_DIR, "dataset-fashion-mnist"),
}


def dataset_root(files: SystemFiles, kwargs: Mapping[str, Any]) -> Path:
    """The benchmark's ``dataset_root``, or Avalanche's default location for it."""
    if kwargs.get("dataset_root"):
        return Path(kwargs["dataset_root"])
    from avalanche.benchmarks.datasets.dataset_utils import default_dataset_location

    return Path(default_dataset_location(files.avalanche_name))


def stage_benchmark_files(name: str, kwargs: Mapping[str, Any]) -> None:
    """Fill the raw folder of benchmark ``name`` from the system package (a no-op for other benchmarks).

    Raises:
        DataError: a file is neither in the raw folder nor in the system package.

    """
    files = STAGED.get(name)
    if files is None:
        return
    raw = dataset_root(files, kwargs) / files.folder / "raw"
    for stem in IDX_FILES:
        target = raw / stem
        if target.is_file():
            continue
        source = files.system_dir / f"{stem}.gz"
        if not source.is_file():
            raise DataError(
                f"stream.avalanche.benchmark={name!r} needs {target} and there is no network download here: "
                f"install the Debian package (`apt-get install {files.package}`, files in {files.system_dir}) "
                f"or put the unzipped IDX files in {raw}"
            )
        raw.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        with gzip.open(source, "rb") as zipped, partial.open("wb") as out:
            shutil.copyfileobj(zipped, out)
        os.replace(partial, target)
