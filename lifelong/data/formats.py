"""Decoders of the on-disk dataset formats (IDX, CIFAR python pickles); every failure names the file."""

from __future__ import annotations

import gzip
import math
import pickle
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lifelong.errors import DataError


def file_signature(paths: Sequence[Path]) -> tuple[tuple[str, int, int], ...]:
    """Return the path, size and mtime of each file: the cache key (a replaced file is read again)."""
    stats = [p.stat() for p in paths]
    return tuple((str(p), s.st_size, s.st_mtime_ns) for p, s in zip(paths, stats, strict=True))


def read_bytes(path: Path) -> bytes:
    """Read a file, gunzipped when it ends in ``.gz``; a broken file raises ``DataError`` naming it."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"cannot read {path}: {err} (corrupt or truncated? delete it and get it again)") from None


def read_idx(path: Path) -> np.ndarray:
    """Decode one IDX file of unsigned bytes (plain or ``.gz``).

    Args:
        path: the file.

    Returns:
        A uint8 array shaped as the header says.

    Raises:
        DataError: the file is unreadable, not IDX, or shorter/longer than its header says.

    """
    data = read_bytes(path)
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise DataError(f"{path} is not an IDX file of unsigned bytes (magic {data[:4].hex() or 'missing'})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path} is truncated: the IDX header needs {header} bytes, the file has {len(data)}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) - header != math.prod(dims):
        raise DataError(
            f"{path} is truncated or corrupt: header says {dims} = {math.prod(dims)} bytes, found {len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_cifar_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Decode one CIFAR python batch (a pickled dict with ``data`` and labels).

    Args:
        path: the batch file.
        label_key: ``b"labels"`` (CIFAR-10) or ``b"fine_labels"`` (CIFAR-100).

    Returns:
        ``(N, 3, 32, 32)`` uint8 images and ``(N,)`` int64 labels.

    Raises:
        DataError: the file is unreadable or does not hold a CIFAR batch.

    """
    try:
        with path.open("rb") as f:
            batch = pickle.load(f, encoding="bytes")  # noqa: S301 - the dataset's own format
        images = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError, IndexError) as err:
        raise DataError(f"cannot read CIFAR batch {path}: {type(err).__name__}: {err} (corrupt?)") from None
    if len(images) != len(labels):
        raise DataError(f"{path}: {len(images)} images but {len(labels)} labels")
    return images, labels
