"""Dataset readers on real data (digits, Fashion-MNIST) and on tiny files written in the real layouts."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from lifelong.data import DATASETS, TensorSplit, resolve_root
from lifelong.data import datasets as ds
from lifelong.errors import ConfigError, DataError

needs_fmnist = pytest.mark.skipif(
    not ds.FASHION_MNIST_SYSTEM_DIR.exists(),
    reason=f"{ds.FASHION_MNIST_SYSTEM_DIR} is absent (apt-get install dataset-fashion-mnist)",
)


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    """Write ``array`` (uint8) as an IDX file, gzipped when ``gz``."""
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def write_tiny_idx_set(folder: Path, n_train: int = 6, n_test: int = 4, gz: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 3,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(n_test, dtype=np.uint8) % 3,
    }
    for stem, array in arrays.items():
        write_idx(folder / stem, array, gz=gz)
    return arrays


@pytest.fixture
def no_system_fmnist(monkeypatch, tmp_path):
    monkeypatch.setattr(ds, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "system" / "fashion-mnist")


def expected_normalised(raw: np.ndarray, name: str) -> torch.Tensor:
    mean, std = ds.STATS[name]
    return (torch.from_numpy(raw.astype(np.float32)) / 255 - mean[0]) / std[0]


# --------------------------------------------------------------------------- digits (always available)


def test_digits_is_a_stratified_80_20_split():
    train, test = DATASETS.get("digits")(Path("unused"), False)
    assert train.x.shape[1:] == (1, 8, 8)
    assert train.x.dtype == torch.float32
    assert train.y.dtype == torch.int64
    assert len(train) + len(test) == 1797
    assert len(test) == pytest.approx(0.2 * 1797, abs=5)
    train_counts, test_counts = torch.bincount(train.y), torch.bincount(test.y)
    assert len(train_counts) == len(test_counts) == 10
    ratio = test_counts / (train_counts + test_counts)
    assert torch.all((ratio - 0.2).abs() < 0.01)
    assert abs(float(train.x.mean())) < 0.05
    assert float(train.x.std()) == pytest.approx(1.0, abs=0.05)


def test_digits_split_is_deterministic_and_returns_fresh_tensors():
    train_a, test_a = ds.digits(Path("unused"))
    train_a.x.zero_()  # must not leak into the cache
    train_b, test_b = ds.digits(Path("unused"))
    assert torch.equal(test_a.x, test_b.x)
    assert torch.equal(train_a.y, train_b.y)
    assert float(train_b.x.abs().sum()) > 0


def test_stratified_split_covers_every_index_once():
    labels = np.repeat(np.arange(4), [10, 11, 5, 20])
    train, test = ds.stratified_split(labels, 0.2, seed=3)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(labels)))
    assert np.bincount(labels[test]).tolist() == [2, 2, 1, 4]


# --------------------------------------------------------------------------- Fashion-MNIST (real files)


@needs_fmnist
def test_fashion_mnist_reads_the_debian_package(tmp_path):
    train, test = DATASETS.get("fashion_mnist")(tmp_path, False)
    assert train.x.shape == (60000, 1, 28, 28)
    assert test.x.shape == (10000, 1, 28, 28)
    assert torch.bincount(train.y).tolist() == [6000] * 10
    assert torch.bincount(test.y).tolist() == [1000] * 10
    assert abs(float(train.x.mean())) < 0.01
    assert float(train.x.std()) == pytest.approx(1.0, abs=0.01)


@needs_fmnist
def test_fashion_mnist_decodes_once_per_process(tmp_path):
    ds.fashion_mnist(tmp_path)
    hits = ds._decode_idx.cache_info().hits
    train, _ = ds.fashion_mnist(tmp_path)
    assert ds._decode_idx.cache_info().hits == hits + 1
    assert train.x.shape[0] == 60000


# --------------------------------------------------------------------------- IDX layouts under the root


LAYOUTS = [("fashion_mnist", True), ("fashion-mnist", False), ("FashionMNIST/raw", True)]


@pytest.mark.parametrize(("folder", "gz"), LAYOUTS)
def test_fashion_mnist_under_the_root_wins(tmp_path, no_system_fmnist, folder, gz):
    arrays = write_tiny_idx_set(tmp_path / folder, gz=gz)
    train, test = ds.fashion_mnist(tmp_path)
    assert train.x.shape == (6, 1, 28, 28)
    assert torch.equal(test.y, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]).long())
    expected = expected_normalised(arrays["train-images-idx3-ubyte"], "fashion_mnist")
    assert torch.allclose(train.x[:, 0], expected, atol=1e-5)


@pytest.mark.parametrize("folder", ["mnist", "MNIST/raw"])
def test_mnist_reads_plain_and_torchvision_layouts(tmp_path, folder):
    arrays = write_tiny_idx_set(tmp_path / folder, n_train=5, n_test=3)
    train, test = ds.mnist(tmp_path)
    assert (len(train), len(test)) == (5, 3)
    assert torch.allclose(test.x[:, 0], expected_normalised(arrays["t10k-images-idx3-ubyte"], "mnist"), atol=1e-5)


def test_missing_fashion_mnist_says_where_and_how(tmp_path, no_system_fmnist):
    with pytest.raises(DataError) as info:
        ds.fashion_mnist(tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path / "fashion_mnist") in message
    assert str(ds.FASHION_MNIST_SYSTEM_DIR) in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "stream.download=true" in message
    assert "train-images-idx3-ubyte.gz" in message


def test_missing_mnist_and_cifar_say_how_to_get_them(tmp_path):
    with pytest.raises(DataError, match=r"stream\.download=true") as info:
        ds.mnist(tmp_path)
    assert str(tmp_path / "MNIST" / "raw") in str(info.value)
    for name, folder in (("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")):
        with pytest.raises(DataError, match=r"stream\.download=true") as info:
            DATASETS.get(name)(tmp_path, False)
        assert str(tmp_path / folder) in str(info.value)
        assert "https://www.cs.toronto.edu/~kriz/" in str(info.value)


def test_download_fetches_into_the_root_then_reads(tmp_path, no_system_fmnist, monkeypatch):
    calls = []

    def fake_fetch(class_name):
        def fetch(root):
            calls.append((class_name, root))
            write_tiny_idx_set(Path(root) / "FashionMNIST" / "raw")

        return fetch

    monkeypatch.setattr(ds, "_torchvision_fetch", fake_fetch)
    train, _ = ds.fashion_mnist(tmp_path, download=True)
    assert calls == [("FashionMNIST", str(tmp_path))]
    assert len(train) == 6


def test_failed_download_is_a_data_error(tmp_path, no_system_fmnist, monkeypatch):
    def offline(class_name):
        def fetch(root):
            raise OSError("network is unreachable")

        return fetch

    monkeypatch.setattr(ds, "_torchvision_fetch", offline)
    with pytest.raises(DataError, match="downloading fashion_mnist .* network is unreachable"):
        ds.fashion_mnist(tmp_path, download=True)


def test_corrupt_gz_names_the_file(tmp_path, no_system_fmnist):
    write_tiny_idx_set(tmp_path / "fashion_mnist")
    bad = tmp_path / "fashion_mnist" / "train-images-idx3-ubyte.gz"
    bad.write_bytes(b"this is not gzip data at all")
    with pytest.raises(DataError, match="corrupt") as info:
        ds.fashion_mnist(tmp_path)
    assert str(bad) in str(info.value)


def test_truncated_gz_names_the_file(tmp_path, no_system_fmnist):
    write_tiny_idx_set(tmp_path / "fashion_mnist")
    bad = tmp_path / "fashion_mnist" / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-40])
    with pytest.raises(DataError) as info:
        ds.fashion_mnist(tmp_path)
    assert str(bad) in str(info.value)


def test_truncated_idx_payload_names_the_file(tmp_path, no_system_fmnist):
    write_tiny_idx_set(tmp_path / "fashion_mnist", gz=False)
    bad = tmp_path / "fashion_mnist" / "train-labels-idx1-ubyte"
    bad.write_bytes(bad.read_bytes()[:-2])
    with pytest.raises(DataError, match="truncated") as info:
        ds.fashion_mnist(tmp_path)
    assert str(bad) in str(info.value)


def test_wrong_magic_and_mismatched_counts_are_data_errors(tmp_path, no_system_fmnist):
    folder = tmp_path / "fashion_mnist"
    write_tiny_idx_set(folder, gz=False)
    (folder / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x0d\x01" + struct.pack(">I", 0))
    with pytest.raises(DataError, match="not an IDX file"):
        ds.fashion_mnist(tmp_path)
    write_idx(folder / "train-labels-idx1-ubyte", np.zeros(5, np.uint8), gz=False)
    with pytest.raises(DataError, match="do not match"):
        ds.fashion_mnist(tmp_path)


def test_partial_folder_names_the_missing_files(tmp_path, no_system_fmnist):
    write_tiny_idx_set(tmp_path / "fashion_mnist")
    (tmp_path / "fashion_mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte"):
        ds.fashion_mnist(tmp_path)


def test_a_replaced_file_is_read_again(tmp_path, no_system_fmnist):
    write_tiny_idx_set(tmp_path / "fashion_mnist", n_train=6)
    assert len(ds.fashion_mnist(tmp_path)[0]) == 6
    write_tiny_idx_set(tmp_path / "fashion_mnist", n_train=9)
    assert len(ds.fashion_mnist(tmp_path)[0]) == 9


# --------------------------------------------------------------------------- CIFAR pickles


def write_cifar(root: Path, folder: str, files: dict[str, int], label_key: bytes) -> None:
    (root / folder).mkdir(parents=True)
    for offset, (name, n) in enumerate(files.items()):
        data = np.full((n, 3072), 10 * offset, dtype=np.uint8)
        data[:, 1024:2048] = 255  # green plane
        batch = {b"data": data, label_key: [(i + offset) % 4 for i in range(n)], b"batch_label": name.encode()}
        (root / folder / name).write_bytes(pickle.dumps(batch))


def test_cifar10_reads_the_python_batches(tmp_path):
    files = {f"data_batch_{i}": 2 for i in range(1, 6)} | {"test_batch": 3}
    write_cifar(tmp_path, "cifar-10-batches-py", files, b"labels")
    train, test = ds.cifar10(tmp_path)
    assert train.x.shape == (10, 3, 32, 32)
    assert test.x.shape == (3, 3, 32, 32)
    assert train.y.tolist() == [0, 1, 1, 2, 2, 3, 3, 0, 0, 1]
    (mean, std) = ds.STATS["cifar10"]
    assert float(train.x[0, 0, 0, 0]) == pytest.approx((0 - mean[0]) / std[0], abs=1e-5)
    assert float(train.x[0, 1, 5, 7]) == pytest.approx((1 - mean[1]) / std[1], abs=1e-5)
    assert float(test.x[0, 2, 31, 31]) == pytest.approx((50 / 255 - mean[2]) / std[2], abs=1e-5)


def test_cifar100_uses_fine_labels(tmp_path):
    write_cifar(tmp_path, "cifar-100-python", {"train": 4, "test": 2}, b"fine_labels")
    train, test = DATASETS.get("cifar100")(tmp_path, False)
    assert train.y.tolist() == [0, 1, 2, 3]
    assert test.y.tolist() == [1, 2]


def test_corrupt_cifar_batch_names_the_file(tmp_path):
    files = {f"data_batch_{i}": 2 for i in range(1, 6)} | {"test_batch": 2}
    write_cifar(tmp_path, "cifar-10-batches-py", files, b"labels")
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(bad.read_bytes()[:50])
    with pytest.raises(DataError) as info:
        ds.cifar10(tmp_path)
    assert str(bad) in str(info.value)


def test_cifar_folder_missing_a_batch(tmp_path):
    write_cifar(tmp_path, "cifar-10-batches-py", {"data_batch_1": 2, "test_batch": 2}, b"labels")
    with pytest.raises(DataError, match="missing data_batch_2, data_batch_3"):
        ds.cifar10(tmp_path)


# --------------------------------------------------------------------------- root, registry, TensorSplit


def test_resolve_root_prefers_argument_then_env_then_data(monkeypatch, tmp_path):
    monkeypatch.setenv("LIFELONG_DATA", str(tmp_path / "env"))
    assert resolve_root(str(tmp_path / "arg")) == tmp_path / "arg"
    assert resolve_root(None) == tmp_path / "env"
    monkeypatch.delenv("LIFELONG_DATA")
    monkeypatch.chdir(tmp_path)
    assert resolve_root(None) == tmp_path / "data"


def test_registry_lists_readers_and_suggests_names():
    assert {"digits", "fashion_mnist", "mnist", "cifar10", "cifar100"} <= set(DATASETS.names())
    assert all(DATASETS.describe(name) for name in DATASETS.names())
    with pytest.raises(ConfigError, match=r"stream\.dataset='fashion-mnist'.*did you mean 'fashion_mnist'"):
        DATASETS.get("fashion-mnist")


def test_tensor_split_subset_and_classes():
    split = TensorSplit(torch.arange(5.0).view(5, 1, 1, 1), torch.tensor([2, 0, 2, 1, 0]))
    assert split.classes() == [0, 1, 2]
    part = split.subset(torch.tensor([4, 0]))
    assert part.y.tolist() == [0, 2]
    assert len(part) == 2
