"""Continual-learning streams built with Avalanche: ``build_stream(dataset, scenario, n_experiences, ...)``.

A scenario (``SCENARIOS``) turns the train/test tensors of a dataset into an Avalanche benchmark;
``build_stream`` then materialises it as a :class:`~lifelong.data.types.Stream`. Scenarios:

- ``class_incremental``: disjoint groups of classes, in a seeded (or given) class order; equal-sized, or
  ``classes_per_experience`` classes each (e.g. ``[50, 10, 10, 10, 10, 10]``);
- ``task_incremental``: the same split, with task label = experience index (for multi-head models);
- ``domain_incremental``: permuted images, all classes in every experience; experience 0 is the
  identity, experience i > 0 a fixed seeded pixel permutation shared by its train and test data.

``classes`` / ``exclude_classes`` train on a subset of the dataset's classes: the others never enter any
experience (train or test), so they stay open-set classes for evaluation (e.g. the ``compatibility``
analysis with ``classes: unseen``). The model still gets one output per class id of the dataset.

Avalanche is imported lazily inside the scenario functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lifelong.data.avalanche_streams import RowSource, avalanche_dataset, convert_benchmark
from lifelong.data.datasets import DATASETS, TensorSplit
from lifelong.data.types import Stream
from lifelong.errors import ConfigError
from lifelong.registry import Registry


@dataclass(frozen=True)
class StreamSpec:
    """What a scenario splits.

    Attributes:
        train: training data (already subsampled).
        test: test data (already subsampled).
        n_experiences: number of experiences.
        class_order: the order in which classes appear (seeded, or the user's).
        class_order_given: whether the user fixed ``class_order``.
        seed: seed for anything else random (e.g. permutations).
        classes_per_experience: classes of each experience (class-incremental), or None for equal groups.

    """

    train: TensorSplit
    test: TensorSplit
    n_experiences: int
    class_order: list[int]
    class_order_given: bool
    seed: int
    classes_per_experience: list[int] | None = None


@dataclass
class BuiltBenchmark:
    """An Avalanche benchmark and, per stream and experience, the RowSource its dataset indexes."""

    benchmark: Any
    sources: dict[str, list[RowSource]]


ScenarioBuilder = Callable[[StreamSpec], BuiltBenchmark]
SCENARIOS: Registry[ScenarioBuilder] = Registry("stream.scenario")


def build_stream(
    dataset: str,
    scenario: str,
    n_experiences: int,
    *,
    root: Path,
    download: bool = False,
    seed: int = 0,
    class_order: list[int] | None = None,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    classes: list[int] | None = None,
    exclude_classes: list[int] | None = None,
    classes_per_experience: list[int] | None = None,
) -> Stream:
    """Read ``dataset`` and split it into a continual-learning stream.

    Args:
        dataset: a name in ``DATASETS``.
        scenario: a name in ``SCENARIOS``.
        n_experiences: number of experiences; for class/task-incremental it must divide the classes.
        root: the data root (see ``resolve_root``).
        download: allow fetching a missing dataset.
        seed: seeds the class order, the per-class subsampling and the permutations.
        class_order: a fixed class order (a permutation of the dataset's classes) instead of a seeded one.
        train_per_class: keep at most this many training samples per class (seeded), or all.
        test_per_class: keep at most this many test samples per class (seeded), or all.
        classes: train and test on these classes only (None: all of the dataset's).
        exclude_classes: leave these classes out of every experience (exclusive with ``classes``).
        classes_per_experience: how many classes each experience gets (class/task-incremental; one entry
            per experience, summing to the classes kept); None splits them evenly.

    Returns:
        The stream, with train and test experiences index-aligned.

    Raises:
        ConfigError: an unknown name or an impossible value (the message names the ``stream.*`` key).
        DataError: the dataset is missing or unreadable.

    """
    split = ClassSplit(classes, exclude_classes, classes_per_experience)
    built, num_classes = _build_benchmark(
        dataset, scenario, n_experiences, root, download, seed, class_order, train_per_class, test_per_class, split
    )
    return convert_benchmark(
        built.benchmark, f"{dataset}-{scenario}", scenario, sources=built.sources, num_classes=num_classes
    )


def avalanche_benchmark(
    dataset: str,
    scenario: str,
    n_experiences: int,
    *,
    root: Path,
    download: bool = False,
    seed: int = 0,
    class_order: list[int] | None = None,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    classes: list[int] | None = None,
    exclude_classes: list[int] | None = None,
    classes_per_experience: list[int] | None = None,
) -> Any:
    """The Avalanche benchmark behind :func:`build_stream` (same arguments), for use in Avalanche's own loop."""
    split = ClassSplit(classes, exclude_classes, classes_per_experience)
    built, _ = _build_benchmark(
        dataset, scenario, n_experiences, root, download, seed, class_order, train_per_class, test_per_class, split
    )
    return built.benchmark


def _build_benchmark(
    dataset: str,
    scenario: str,
    n_experiences: int,
    root: Path,
    download: bool,
    seed: int,
    class_order: list[int] | None,
    train_per_class: int | None,
    test_per_class: int | None,
    split: ClassSplit | None = None,
) -> tuple[BuiltBenchmark, int]:
    """The Avalanche benchmark of :func:`build_stream` and the number of classes of the dataset."""
    reader = DATASETS.get(dataset)
    builder = SCENARIOS.get(scenario)
    _require_positive("stream.n_experiences", n_experiences)
    for key, value in (("stream.train_per_class", train_per_class), ("stream.test_per_class", test_per_class)):
        if value is not None:
            _require_positive(key, value)
    split = split or ClassSplit()
    train, test = reader(Path(root), download)
    all_classes = train.classes()
    kept = split.kept(all_classes)
    if len(kept) < len(all_classes):
        train, test = keep_classes(train, kept), keep_classes(test, kept)
    order = resolve_class_order(kept, class_order, seed)
    spec = StreamSpec(
        train=subsample_per_class(train, train_per_class, seed, salt=0),
        test=subsample_per_class(test, test_per_class, seed, salt=1),
        n_experiences=n_experiences,
        class_order=order,
        class_order_given=class_order is not None,
        seed=seed,
        classes_per_experience=split.check_sizes(n_experiences, len(kept)),
    )
    built = builder(spec)
    return built, max(all_classes) + 1


@dataclass(frozen=True)
class ClassSplit:
    """Which classes a stream trains on and how many each experience gets.

    The fields are ``stream.classes``, ``stream.exclude_classes`` and ``stream.classes_per_experience``.
    """

    classes: list[int] | None = None
    exclude_classes: list[int] | None = None
    classes_per_experience: list[int] | None = None

    def kept(self, available: Sequence[int]) -> list[int]:
        """The sorted classes of ``available`` the stream keeps (``ConfigError`` naming the key on a bad list)."""
        if self.classes is not None and self.exclude_classes is not None:
            raise ConfigError("stream.classes and stream.exclude_classes exclude each other; set one of them to null")
        for key, values in (("stream.classes", self.classes), ("stream.exclude_classes", self.exclude_classes)):
            if values is None:
                continue
            _require_class_ids(key, values)
            unknown = sorted(set(values) - set(available))
            if unknown:
                raise ConfigError(
                    f"{key}={list(values)!r} names classes the dataset lacks: {unknown}; "
                    f"its classes are {min(available)}..{max(available)}"
                )
        if self.classes is not None:
            kept = sorted(set(self.classes))
        else:
            kept = sorted(set(available) - set(self.exclude_classes or []))
        if not kept:
            raise ConfigError(f"stream.exclude_classes={self.exclude_classes!r} leaves no class to train on")
        return kept

    def check_sizes(self, n_experiences: int, n_classes: int) -> list[int] | None:
        """``classes_per_experience`` checked against ``n_experiences`` and the kept classes (None: equal groups)."""
        sizes = self.classes_per_experience
        if sizes is None:
            return None
        key = "stream.classes_per_experience"
        if not isinstance(sizes, list | tuple) or any(
            isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in sizes
        ):
            raise ConfigError(f"{key}={sizes!r} is not allowed; use a list of class counts >= 1, e.g. [50, 10, 10]")
        if len(sizes) != n_experiences:
            raise ConfigError(
                f"{key} has {len(sizes)} entries but stream.n_experiences={n_experiences}; "
                "give one count per experience"
            )
        if sum(sizes) != n_classes:
            raise ConfigError(f"{key}={list(sizes)} sums to {sum(sizes)}, but the stream trains {n_classes} classes")
        return [int(n) for n in sizes]


def _require_class_ids(key: str, values: object) -> None:
    if (
        not isinstance(values, list | tuple)
        or not values
        or any(isinstance(c, bool) or not isinstance(c, int) for c in values)
        or len(set(values)) != len(values)
    ):
        raise ConfigError(f"{key}={values!r} is not allowed; use a non-empty list of distinct class ids, or null")


def keep_classes(split: TensorSplit, classes: Sequence[int]) -> TensorSplit:
    """The samples of ``split`` whose class is in ``classes``, in their order."""
    return split.subset(torch.isin(split.y, torch.as_tensor(list(classes))).nonzero(as_tuple=True)[0])


def _require_positive(key: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}={value!r} is not allowed; use an integer >= 1")


def resolve_class_order(classes: Sequence[int], class_order: Sequence[int] | None, seed: int) -> list[int]:
    """Check that ``class_order`` is a permutation of ``classes`` and return it; if None, shuffle ``classes`` (seeded).

    >>> resolve_class_order([0, 1, 2], [2, 0, 1], seed=0)
    [2, 0, 1]
    >>> sorted(resolve_class_order([0, 1, 2], None, seed=3))
    [0, 1, 2]
    """
    if class_order is None:
        generator = torch.Generator().manual_seed(seed)
        return [int(classes[i]) for i in torch.randperm(len(classes), generator=generator)]
    order = list(class_order)
    problems = []
    if any(isinstance(c, bool) or not isinstance(c, int) for c in order):
        problems.append("all entries must be integers")
    else:
        missing = sorted(set(classes) - set(order))
        unknown = sorted(set(order) - set(classes))
        repeated = sorted({c for c in order if order.count(c) > 1})
        for label, values in (("missing", missing), ("unknown", unknown), ("repeated", repeated)):
            if values:
                problems.append(f"{label} {values}")
    if problems:
        raise ConfigError(
            f"stream.class_order={order!r} must be a permutation of the dataset's {len(classes)} classes "
            f"{min(classes)}..{max(classes)}: {'; '.join(problems)}"
        )
    return [int(c) for c in order]


def subsample_per_class(split: TensorSplit, per_class: int | None, seed: int, salt: int = 0) -> TensorSplit:
    """Keep at most ``per_class`` samples of each class, chosen with a seeded generator, in their original order.

    Args:
        split: the data.
        per_class: samples to keep per class; None keeps everything.
        seed: the seed.
        salt: separates the draws of different splits made with the same seed.

    Returns:
        The subsampled split.

    """
    if per_class is None:
        return split
    generator = torch.Generator().manual_seed(seed * 1_000_003 + salt)
    keep = []
    for cls in split.classes():
        members = (split.y == cls).nonzero(as_tuple=True)[0]
        keep.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return split.subset(torch.cat(keep).sort().values)


def _require_divides(n_experiences: int, n_classes: int) -> None:
    if n_classes % n_experiences:
        divisors = [d for d in range(1, n_classes + 1) if n_classes % d == 0]
        raise ConfigError(
            f"stream.n_experiences={n_experiences} does not split the {n_classes} classes evenly; "
            f"allowed: {', '.join(map(str, divisors))}"
        )


# --------------------------------------------------------------------------- scenarios


@SCENARIOS.register("class_incremental")
def class_incremental(spec: StreamSpec) -> BuiltBenchmark:
    """Class-incremental: each experience holds a disjoint group of classes; one head over all classes.

    Avalanche's ``class_incremental_benchmark`` numbers classes ``0..max``, so a stream of a subset of the
    classes (``stream.classes``) is built from per-experience groups with ``benchmark_from_datasets``.
    """
    if spec.classes_per_experience is None:
        _require_divides(spec.n_experiences, len(spec.class_order))
    sizes = spec.classes_per_experience or [len(spec.class_order) // spec.n_experiences] * spec.n_experiences
    if sorted(spec.class_order) != list(range(len(spec.class_order))):
        return _class_groups_benchmark(spec, sizes)
    from avalanche.benchmarks.scenarios import class_incremental_benchmark

    train, test = RowSource(spec.train.x, spec.train.y), RowSource(spec.test.x, spec.test.y)
    benchmark = class_incremental_benchmark(
        {"train": avalanche_dataset(train), "test": avalanche_dataset(test)},
        class_order=spec.class_order,
        num_classes_per_exp=sizes,
    )
    return BuiltBenchmark(benchmark, {"train": [train] * spec.n_experiences, "test": [test] * spec.n_experiences})


def _class_groups_benchmark(spec: StreamSpec, sizes: list[int]) -> BuiltBenchmark:
    """One experience per group of ``sizes`` consecutive classes of ``spec.class_order``, train and test."""
    from avalanche.benchmarks.scenarios import benchmark_from_datasets

    sources: dict[str, list[RowSource]] = {"train": [], "test": []}
    start = 0
    for size in sizes:
        group = spec.class_order[start : start + size]
        start += size
        for name, split in (("train", spec.train), ("test", spec.test)):
            part = keep_classes(split, group)
            sources[name].append(RowSource(part.x, part.y))
    benchmark = benchmark_from_datasets(
        **{name: [avalanche_dataset(s) for s in srcs] for name, srcs in sources.items()}
    )
    return BuiltBenchmark(benchmark, sources)


@SCENARIOS.register("task_incremental")
def task_incremental(spec: StreamSpec) -> BuiltBenchmark:
    """Task-incremental: the class-incremental split with task label = experience index (multi-head)."""
    from avalanche.benchmarks.scenarios import task_incremental_benchmark

    built = class_incremental(spec)
    return BuiltBenchmark(task_incremental_benchmark(built.benchmark, reset_task_labels=True), built.sources)


@SCENARIOS.register("domain_incremental")
def domain_incremental(spec: StreamSpec) -> BuiltBenchmark:
    """Domain-incremental (permuted): all classes every experience, a new seeded pixel permutation each time."""
    if spec.class_order_given:
        raise ConfigError(
            "stream.class_order has no effect in domain_incremental (every experience holds every class); "
            "set it to null"
        )
    if spec.classes_per_experience is not None:
        raise ConfigError(
            "stream.classes_per_experience has no effect in domain_incremental (every experience holds every "
            "class); set it to null"
        )
    from avalanche.benchmarks.scenarios import benchmark_from_datasets

    sources: dict[str, list[RowSource]] = {"train": [], "test": []}
    for permutation in pixel_permutations(spec.n_experiences, spec.train.x.shape[-2:].numel(), spec.seed):
        sources["train"].append(RowSource(spec.train.x, spec.train.y, permutation))
        sources["test"].append(RowSource(spec.test.x, spec.test.y, permutation))
    benchmark = benchmark_from_datasets(
        **{name: [avalanche_dataset(s) for s in srcs] for name, srcs in sources.items()}
    )
    return BuiltBenchmark(benchmark, sources)


def pixel_permutations(n: int, n_pixels: int, seed: int) -> list[torch.Tensor | None]:
    """``n`` pixel orders: None (the identity) first, then seeded random permutations of ``n_pixels``.

    >>> perms = pixel_permutations(3, 4, seed=0)
    >>> perms[0] is None, sorted(perms[1].tolist())
    (True, [0, 1, 2, 3])
    """
    generator = torch.Generator().manual_seed(seed)
    return [None] + [torch.randperm(n_pixels, generator=generator) for _ in range(n - 1)]
