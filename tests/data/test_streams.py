"""Streams built with Avalanche: class-, task- and domain-incremental splits of real data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lifelong
from lifelong.data import SCENARIOS, Stream, build_stream, stream_from_avalanche
from lifelong.data import datasets as ds
from lifelong.data.avalanche_streams import convert_benchmark
from lifelong.data.streams import StreamSpec, pixel_permutations, resolve_class_order, subsample_per_class
from lifelong.errors import ConfigError

ROOT = Path("unused-for-digits")


def digits_stream(scenario: str = "class_incremental", n: int = 5, **kwargs) -> Stream:
    return build_stream("digits", scenario, n, root=ROOT, **kwargs)


def all_labels(experiences) -> torch.Tensor:
    return torch.cat([e.dataset.y for e in experiences])


def test_importing_lifelong_data_does_not_import_avalanche():
    code = "import lifelong.data, sys; assert 'avalanche' not in sys.modules, 'avalanche imported'"
    repo = Path(lifelong.__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- class-incremental


def test_class_incremental_splits_classes_disjointly():
    stream = digits_stream()
    train_full, test_full = ds.digits(ROOT)
    assert len(stream) == 5
    seen: set[int] = set()
    for train, test in zip(stream.train, stream.test, strict=True):
        assert len(train.classes) == 2
        assert seen.isdisjoint(train.classes)
        seen |= set(train.classes)
        assert train.classes == test.classes
        assert set(train.dataset.y.tolist()) == set(train.classes)
        assert set(test.dataset.y.tolist()) == set(test.classes)
        assert torch.all(train.dataset.t == 0)
        assert train.task_label == 0
    assert seen == set(range(10))
    assert len(all_labels(stream.train)) == len(train_full)
    assert len(all_labels(stream.test)) == len(test_full)
    assert torch.equal(torch.bincount(all_labels(stream.train)), torch.bincount(train_full.y))
    assert stream.info.num_classes == 10
    assert stream.info.n_experiences == 5
    assert stream.info.input_shape == (1, 8, 8)
    assert stream.info.scenario == "class_incremental"
    assert stream.info.classes_per_experience == [e.classes for e in stream.train]


def test_experience_samples_are_the_datasets_samples():
    stream = digits_stream()
    train_full, _ = ds.digits(ROOT)
    exp = stream.train[0]
    members = torch.isin(train_full.y, torch.tensor(exp.classes))
    expected = train_full.x[members]
    got = exp.dataset.x
    assert got.shape == expected.shape
    # the same multiset of images: compare after sorting by a content key
    key = torch.arange(64, dtype=torch.float32)

    def by_content(x):
        return x.flatten(1)[torch.argsort(x.flatten(1) @ key)]

    assert torch.allclose(by_content(got), by_content(expected))


def test_class_order_is_seeded_reproducible_and_seed_dependent():
    a = digits_stream(seed=0).info.classes_per_experience
    b = digits_stream(seed=0).info.classes_per_experience
    c = digits_stream(seed=1).info.classes_per_experience
    assert a == b
    assert a != c
    assert torch.equal(digits_stream(seed=0).train[2].dataset.x, digits_stream(seed=0).train[2].dataset.x)


def test_class_order_is_respected():
    order = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    stream = digits_stream(n=5, class_order=order, seed=123)
    assert stream.info.classes_per_experience == [[8, 9], [6, 7], [4, 5], [2, 3], [0, 1]]
    stream = digits_stream(n=2, class_order=[1, 3, 5, 7, 9, 0, 2, 4, 6, 8])
    assert stream.info.classes_per_experience == [[1, 3, 5, 7, 9], [0, 2, 4, 6, 8]]


@pytest.mark.parametrize(
    ("order", "problem"),
    [
        ([0, 1, 2], "missing \\[3, 4, 5, 6, 7, 8, 9\\]"),
        ([0, 1, 2, 3, 4, 5, 6, 7, 8, 8], "missing \\[9\\]; repeated \\[8\\]"),
        ([0, 1, 2, 3, 4, 5, 6, 7, 8, 10], "unknown \\[10\\]"),
        ([0, 1, 2, 3, 4, 5, 6, 7, 8, "9"], "integers"),
    ],
)
def test_bad_class_order_is_a_config_error(order, problem):
    with pytest.raises(ConfigError, match=rf"stream\.class_order=.*permutation.*{problem}"):
        digits_stream(class_order=order)


@pytest.mark.parametrize("scenario", ["class_incremental", "task_incremental"])
def test_n_experiences_must_divide_the_classes(scenario):
    with pytest.raises(ConfigError, match=r"stream\.n_experiences=3 .* 10 classes.*allowed: 1, 2, 5, 10"):
        digits_stream(scenario, n=3)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"n_experiences": 0}, "n_experiences"), ({"train_per_class": 0}, "train_per_class"),
     ({"test_per_class": -1}, "test_per_class")],
)  # fmt: skip
def test_non_positive_sizes_are_config_errors(kwargs, key):
    n = kwargs.pop("n_experiences", 5)
    with pytest.raises(ConfigError, match=rf"stream\.{key}=.*>= 1"):
        digits_stream(n=n, **kwargs)


def test_unknown_scenario_suggests_a_name():
    with pytest.raises(ConfigError, match=r"stream\.scenario='class_incremantal'.*did you mean 'class_incremental'"):
        digits_stream("class_incremantal")
    assert all(SCENARIOS.describe(name) for name in SCENARIOS.names())


def test_resolve_class_order_helper():
    assert resolve_class_order([0, 1, 2, 3], None, seed=5) == resolve_class_order([0, 1, 2, 3], None, seed=5)
    assert sorted(resolve_class_order([0, 1, 2, 3], None, seed=5)) == [0, 1, 2, 3]


# --------------------------------------------------------------------------- task-incremental


def test_task_incremental_labels_each_experience_with_its_index():
    stream = digits_stream("task_incremental", seed=4)
    reference = digits_stream("class_incremental", seed=4)
    assert stream.info.scenario == "task_incremental"
    assert stream.info.classes_per_experience == reference.info.classes_per_experience
    for i, (train, test) in enumerate(zip(stream.train, stream.test, strict=True)):
        assert train.task_label == test.task_label == i
        assert torch.all(train.dataset.t == i)
        assert torch.all(test.dataset.t == i)
        assert torch.equal(train.dataset.x, reference.train[i].dataset.x)
        _, _, t = train.dataset.__getitems__([0, 1])
        assert t.tolist() == [i, i]


# --------------------------------------------------------------------------- domain-incremental


def test_domain_incremental_permutes_pixels_per_experience():
    stream = digits_stream("domain_incremental", n=3, seed=7)
    train_full, test_full = ds.digits(ROOT)
    assert stream.info.classes_per_experience == [list(range(10))] * 3
    assert stream.info.num_classes == 10
    # experience 0 is the identity
    assert torch.equal(stream.train[0].dataset.x, train_full.x)
    assert torch.equal(stream.test[0].dataset.x, test_full.x)
    for train, test in zip(stream.train, stream.test, strict=True):
        assert torch.equal(train.dataset.y, train_full.y)
        assert torch.equal(test.dataset.y, test_full.y)
        assert torch.all(train.dataset.t == 0)
        # each image is a rearrangement of the original's pixels
        assert torch.equal(train.dataset.x.flatten(1).sort(1).values, train_full.x.flatten(1).sort(1).values)
    x1, x2 = stream.train[1].dataset.x, stream.train[2].dataset.x
    assert not torch.equal(x1, train_full.x)
    assert not torch.equal(x1, x2)


def _columns_found_in(data: torch.Tensor, reference: torch.Tensor) -> bool:
    """Every column of ``data`` (N, P) equals some column of ``reference`` (N, P)."""
    return bool(torch.all((data.T[:, None, :] == reference.T[None, :, :]).all(-1).any(1)))


def test_domain_permutation_is_shared_by_train_and_test_of_an_experience():
    stream = digits_stream("domain_incremental", n=3, seed=7)
    base = torch.cat([stream.train[0].dataset.x, stream.test[0].dataset.x]).flatten(1)  # (N, 64)
    for i in (1, 2):
        both = torch.cat([stream.train[i].dataset.x, stream.test[i].dataset.x]).flatten(1)
        assert _columns_found_in(both, base)
        # mixing the train of one experience with the test of another breaks the column match
        other = stream.test[3 - i].dataset.x
        assert not _columns_found_in(torch.cat([stream.train[i].dataset.x, other]).flatten(1), base)
    permutations = pixel_permutations(3, 64, seed=7)
    for i in (1, 2):
        for split, full in ((stream.train[i], stream.train[0]), (stream.test[i], stream.test[0])):
            assert torch.equal(split.dataset.x.flatten(1), full.dataset.x.flatten(1)[:, permutations[i]])


def test_domain_incremental_reproducible_and_rejects_class_order():
    a = digits_stream("domain_incremental", n=2, seed=1).train[1].dataset.x
    b = digits_stream("domain_incremental", n=2, seed=1).train[1].dataset.x
    c = digits_stream("domain_incremental", n=2, seed=2).train[1].dataset.x
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    with pytest.raises(ConfigError, match=r"stream\.class_order has no effect"):
        digits_stream("domain_incremental", n=2, class_order=list(range(10)))


# --------------------------------------------------------------------------- per-class subsampling


def test_per_class_subsampling_counts():
    stream = digits_stream(train_per_class=20, test_per_class=5, seed=3)
    assert torch.bincount(all_labels(stream.train)).tolist() == [20] * 10
    assert torch.bincount(all_labels(stream.test)).tolist() == [5] * 10
    assert all(len(e.dataset) == 40 for e in stream.train)
    domain = digits_stream("domain_incremental", n=2, train_per_class=7)
    assert all(torch.bincount(e.dataset.y).tolist() == [7] * 10 for e in domain.train)


def test_per_class_subsampling_is_seeded():
    train, _ = ds.digits(ROOT)
    a = subsample_per_class(train, 10, seed=0)
    b = subsample_per_class(train, 10, seed=0)
    c = subsample_per_class(train, 10, seed=1)
    assert torch.equal(a.x, b.x)
    assert not torch.equal(a.x, c.x)
    assert subsample_per_class(train, None, seed=0) is train
    assert len(subsample_per_class(train, 10_000, seed=0)) == len(train)  # "at most": small classes keep all


# --------------------------------------------------------------------------- any Avalanche benchmark


def _spec(scenario: str, n: int) -> StreamSpec:
    train, test = ds.digits(ROOT)
    train, test = subsample_per_class(train, 15, 0), subsample_per_class(test, 4, 0, salt=1)
    return StreamSpec(train, test, n, resolve_class_order(train.classes(), None, 0), False, seed=0)


@pytest.mark.parametrize("scenario", ["class_incremental", "task_incremental", "domain_incremental"])
def test_generic_materialisation_matches_the_row_gather(scenario):
    built = SCENARIOS.get(scenario)(_spec(scenario, 5 if scenario != "domain_incremental" else 3))
    fast = convert_benchmark(built.benchmark, "fast", scenario, sources=built.sources)
    generic = stream_from_avalanche(built.benchmark, "generic", scenario, batch_size=7)
    assert fast.info == generic.info
    for a, b in zip(fast.train + fast.test, generic.train + generic.test, strict=True):
        assert (a.index, a.classes, a.task_label) == (b.index, b.classes, b.task_label)
        assert torch.equal(a.dataset.x, b.dataset.x)
        assert torch.equal(a.dataset.y, b.dataset.y)
        assert torch.equal(a.dataset.t, b.dataset.t)


def test_stream_from_avalanche_accepts_a_plain_avalanche_benchmark():
    from avalanche.benchmarks.scenarios import class_incremental_benchmark, task_incremental_benchmark
    from torch.utils.data import TensorDataset

    class Labelled(TensorDataset):
        def __init__(self, x, y):
            super().__init__(x, y)
            self.targets = y.tolist()

    x = torch.randn(24, 2, 3, 3)
    y = torch.arange(24) % 4
    benchmark = class_incremental_benchmark(
        {"train": Labelled(x, y), "test": Labelled(x[:8], y[:8])}, class_order=[3, 2, 1, 0], num_experiences=2
    )
    benchmark = task_incremental_benchmark(benchmark, reset_task_labels=True)
    stream = stream_from_avalanche(benchmark, "toy", "task_incremental")
    assert stream.info.input_shape == (2, 3, 3)
    assert stream.info.num_classes == 4
    assert stream.info.classes_per_experience == [[2, 3], [0, 1]]
    assert [e.task_label for e in stream.test] == [0, 1]
    assert len(stream.train[0].dataset) == 12
    rows = [int(torch.nonzero((x == s).flatten(1).all(1))[0]) for s in stream.train[1].dataset.x]
    assert torch.equal(y[rows], stream.train[1].dataset.y)


# --------------------------------------------------------------------------- real Fashion-MNIST


@pytest.mark.skipif(
    not ds.FASHION_MNIST_SYSTEM_DIR.exists(),
    reason=f"{ds.FASHION_MNIST_SYSTEM_DIR} is absent (apt-get install dataset-fashion-mnist)",
)
def test_split_fashion_mnist_real(tmp_path):
    stream = build_stream("fashion_mnist", "class_incremental", 5, root=tmp_path, seed=0)
    assert [len(e.dataset) for e in stream.train] == [12000] * 5
    assert [len(e.dataset) for e in stream.test] == [2000] * 5
    assert sorted(c for e in stream.train for c in e.classes) == list(range(10))
    assert stream.info.input_shape == (1, 28, 28)
