"""Readers of real image datasets: ``DATASETS.get(name)(root, download) -> (train, test)``.

Every reader returns two :class:`TensorSplit` (``x`` float32 ``(N, C, H, W)`` normalised with the
dataset's mean/std, ``y`` int64). Nothing downloads unless ``download=True`` (through torchvision,
imported only then); a missing or unreadable dataset raises :class:`~lifelong.errors.DataError`
naming the paths looked at and how to get the files. Decoded arrays are cached in-process, keyed
by the files' path, size and modification time, so repeated loads cost one normalisation.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from lifelong.data.formats import file_signature, read_cifar_batch, read_idx
from lifelong.errors import DataError
from lifelong.registry import Registry

FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package installs the IDX files."""

DATA_ENV = "LIFELONG_DATA"
IDX_MAX_LABEL = 9  # MNIST and Fashion-MNIST have classes 0..9
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2

# Per-channel mean/std of the training images scaled to [0, 1].
STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "digits": ((0.3053,), (0.3760,)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


@dataclass(frozen=True)
class TensorSplit:
    """One split of a dataset held in memory.

    Attributes:
        x: ``(N, C, H, W)`` float32 images, normalised.
        y: ``(N,)`` int64 class labels.

    """

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: torch.Tensor) -> TensorSplit:
        """Return the samples at ``index`` (a 1-D long tensor), in that order."""
        return TensorSplit(self.x[index], self.y[index])

    def classes(self) -> list[int]:
        """Return the sorted class labels present."""
        return [int(c) for c in torch.unique(self.y)]


Reader = Callable[[Path, bool], tuple[TensorSplit, TensorSplit]]

DATASETS: Registry[Reader] = Registry("stream.dataset")


def resolve_root(root: str | Path | None) -> Path:
    """Return the data root: ``root`` if given, else ``$LIFELONG_DATA``, else ``./data``."""
    chosen = root if root not in (None, "") else os.environ.get(DATA_ENV) or "data"
    return Path(chosen).expanduser().absolute()


# --------------------------------------------------------------------------- helpers


def _normalise(images: torch.Tensor, name: str, scale: float = 255.0) -> torch.Tensor:
    """``(N, C, H, W)`` raw pixels -> float32 normalised with ``STATS[name]``."""
    mean, std = (torch.tensor(v, dtype=torch.float32).view(-1, 1, 1) for v in STATS[name])
    return images.to(torch.float32, copy=True).div_(scale).sub_(mean).div_(std)


def _split(images: torch.Tensor, labels: torch.Tensor, name: str, scale: float = 255.0) -> TensorSplit:
    return TensorSplit(_normalise(images, name, scale), labels.to(torch.int64))


def _download(what: str, root: Path, fetch: Callable[[str], None]) -> None:
    """Run ``fetch(str(root))``; any failure becomes a ``DataError``."""
    root.mkdir(parents=True, exist_ok=True)
    try:
        fetch(str(root))
    except Exception as err:  # noqa: BLE001 - network, checksum or archive errors from torchvision
        raise DataError(f"downloading {what} into {root} failed: {err}") from None


# --------------------------------------------------------------------------- IDX (MNIST, Fashion-MNIST)


def _find_idx(dirs: Sequence[Path]) -> list[Path] | None:
    """Find the four IDX files (plain or ``.gz``) in the first directory that holds all of them."""
    for folder in dirs:
        found = [_first_existing(folder / stem, folder / f"{stem}.gz") for stem in IDX_FILES]
        if all(found):
            return [p for p in found if p is not None]
        if any(found):
            missing = [stem for stem, p in zip(IDX_FILES, found, strict=True) if p is None]
            raise DataError(f"{folder} holds only part of the dataset: missing {', '.join(missing)} (plain or .gz)")
    return None


def _first_existing(*paths: Path) -> Path | None:
    return next((p for p in paths if p.is_file()), None)


@lru_cache(maxsize=8)
def _decode_idx(signature: tuple[tuple[str, int, int], ...]) -> tuple[torch.Tensor, ...]:
    """``(train images, train labels, test images, test labels)`` as uint8 tensors."""
    arrays = [torch.from_numpy(read_idx(Path(path)).copy()) for path, _, _ in signature]
    for i in (0, 2):
        images, labels = arrays[i], arrays[i + 1]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(
                f"{signature[i][0]}: images {tuple(images.shape)} do not match labels {tuple(labels.shape)} "
                f"in {signature[i + 1][0]}"
            )
        bad = (labels > IDX_MAX_LABEL).nonzero()
        if len(bad):
            first = int(bad[0, 0])
            raise DataError(
                f"{signature[i + 1][0]}: label {int(labels[first])} of sample {first} is outside 0..{IDX_MAX_LABEL} "
                f"({len(bad)} such labels): the file is damaged; replace it with an intact copy"
            )
    return tuple(arrays)


def _load_idx(name: str, dirs: Sequence[Path]) -> tuple[TensorSplit, TensorSplit] | None:
    paths = _find_idx(dirs)
    if paths is None:
        return None
    train_x, train_y, test_x, test_y = _decode_idx(file_signature(paths))
    return _split(train_x.unsqueeze(1), train_y, name), _split(test_x.unsqueeze(1), test_y, name)


def _idx_reader(
    name: str, root: Path, dirs: Sequence[Path], download: bool, fetch: Callable[[str], None], how: str
) -> tuple[TensorSplit, TensorSplit]:
    """Load from the first of ``dirs`` holding the files; fetch into ``root`` first when allowed."""
    loaded = _load_idx(name, dirs)
    if loaded is None and download:
        _download(name, root, fetch)
        loaded = _load_idx(name, dirs)
    if loaded is None:
        looked = "\n  ".join(str(d) for d in dirs)
        names = ", ".join(f"{stem}.gz" for stem in IDX_FILES)
        raise DataError(f"{name}: no IDX files found; looked in:\n  {looked}\nPut {names} into {dirs[0]}, or {how}")
    return loaded


def _torchvision_fetch(class_name: str) -> Callable[[str], None]:
    def fetch(root: str) -> None:
        import torchvision.datasets as tvd

        for train in (True, False):
            getattr(tvd, class_name)(root, train=train, download=True)

    return fetch


@DATASETS.register("fashion_mnist")
def fashion_mnist(root: Path, download: bool = False) -> tuple[TensorSplit, TensorSplit]:
    """Fashion-MNIST: 60k/10k 28x28 grey clothing images, 10 classes (Debian dataset-fashion-mnist)."""
    root = Path(root)
    dirs = [root / "fashion_mnist", root / "fashion-mnist", root / "FashionMNIST" / "raw", FASHION_MNIST_SYSTEM_DIR]
    how = "run `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or set stream.download=true"
    return _idx_reader("fashion_mnist", root, dirs, download, _torchvision_fetch("FashionMNIST"), how)


@DATASETS.register("mnist")
def mnist(root: Path, download: bool = False) -> tuple[TensorSplit, TensorSplit]:
    """MNIST: 60k/10k 28x28 grey handwritten digits, 10 classes (IDX files under the data root)."""
    root = Path(root)
    dirs = [root / "mnist", root / "MNIST" / "raw"]
    how = "set stream.download=true to fetch them with torchvision (into <root>/MNIST/raw)"
    return _idx_reader("mnist", root, dirs, download, _torchvision_fetch("MNIST"), how)


# --------------------------------------------------------------------------- CIFAR (python pickles)


@dataclass(frozen=True)
class _CifarLayout:
    name: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: bytes
    url: str
    torchvision_class: str


CIFAR10 = _CifarLayout(
    "cifar10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
    b"labels", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "CIFAR10",
)  # fmt: skip
CIFAR100 = _CifarLayout(
    "cifar100", "cifar-100-python", ("train",), ("test",),
    b"fine_labels", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "CIFAR100",
)  # fmt: skip


@lru_cache(maxsize=4)
def _decode_cifar(signature: tuple[tuple[str, int, int], ...], label_key: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [read_cifar_batch(Path(path), label_key) for path, _, _ in signature]
    images, labels = (np.concatenate([part[k] for part in parts]) for k in (0, 1))
    return torch.from_numpy(images), torch.from_numpy(labels)


def _load_cifar(layout: _CifarLayout, root: Path) -> tuple[TensorSplit, TensorSplit] | None:
    folder = root / layout.folder
    wanted = [folder / f for f in layout.train_files + layout.test_files]
    present = [p.is_file() for p in wanted]
    if not any(present):
        return None
    if not all(present):
        missing = [p.name for p, ok in zip(wanted, present, strict=True) if not ok]
        raise DataError(f"{folder} holds only part of {layout.name}: missing {', '.join(missing)}")
    n_train = len(layout.train_files)
    train = _decode_cifar(file_signature(wanted[:n_train]), layout.label_key)
    test = _decode_cifar(file_signature(wanted[n_train:]), layout.label_key)
    return _split(*train, layout.name), _split(*test, layout.name)


def _cifar_reader(layout: _CifarLayout, root: Path, download: bool) -> tuple[TensorSplit, TensorSplit]:
    root = Path(root)
    loaded = _load_cifar(layout, root)
    if loaded is None and download:
        _download(layout.name, root, _torchvision_fetch(layout.torchvision_class))
        loaded = _load_cifar(layout, root)
    if loaded is None:
        files = ", ".join(layout.train_files + layout.test_files)
        raise DataError(
            f"{layout.name}: {root / layout.folder} not found (it should hold {files}). "
            f"Set stream.download=true to fetch it with torchvision, or download {layout.url} "
            f"and extract it under {root}"
        )
    return loaded


@DATASETS.register("cifar10")
def cifar10(root: Path, download: bool = False) -> tuple[TensorSplit, TensorSplit]:
    """CIFAR-10: 50k/10k 32x32 colour images, 10 classes (torchvision layout under the data root)."""
    return _cifar_reader(CIFAR10, root, download)


@DATASETS.register("cifar100")
def cifar100(root: Path, download: bool = False) -> tuple[TensorSplit, TensorSplit]:
    """CIFAR-100: 50k/10k 32x32 colour images, 100 fine classes (torchvision layout under the data root)."""
    return _cifar_reader(CIFAR100, root, download)


# --------------------------------------------------------------------------- scikit-learn digits


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded per-class split of sample indices.

    Args:
        labels: ``(N,)`` class labels.
        test_fraction: share of each class (rounded) that goes to the test split.
        seed: seed of the shuffle inside each class.

    Returns:
        Sorted train and test indices.

    """
    rng = np.random.default_rng(seed)
    train, test = [], []
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        n_test = round(test_fraction * len(members))
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1), torch.as_tensor(bunch.target)


@DATASETS.register("digits")
def digits(root: Path, download: bool = False) -> tuple[TensorSplit, TensorSplit]:
    """Digits: 1,797 8x8 grey handwritten digits, 10 classes, bundled with scikit-learn (seeded 80/20 split)."""
    del root, download  # bundled with scikit-learn: nothing to find or fetch
    images, labels = _digits_arrays()
    train_idx, test_idx = stratified_split(labels.numpy(), DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
    train, test = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    return _split(images[train], labels[train], "digits", 16.0), _split(images[test], labels[test], "digits", 16.0)
