"""Avalanche benchmarks <-> lifelong streams.

``stream_from_avalanche`` turns any Avalanche benchmark (``train_stream`` + ``test_stream`` of
experiences with a ``dataset``) into a :class:`~lifelong.data.types.Stream` of in-memory tensors.
Benchmarks built here from tensors (``avalanche_dataset``) carry a ``lifelong_row`` data attribute,
the row of each sample in its :class:`RowSource`, so their experiences are gathered with one tensor
index instead of one ``__getitem__`` per sample.

Avalanche is imported inside functions only: importing it takes seconds and patches torch.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from lifelong.data.avalanche_files import stage_benchmark_files
from lifelong.data.types import Experience, Stream, StreamInfo, TensorExperienceDataset
from lifelong.errors import DataError

ROW_ATTRIBUTE = "lifelong_row"
STREAM_NAMES = ("train", "test")


class RowSource(Dataset):
    """Tensors that an Avalanche dataset indexes, optionally seen through a fixed pixel permutation.

    Args:
        x: ``(N, C, H, W)`` inputs.
        y: ``(N,)`` int64 labels.
        permutation: ``(H * W,)`` pixel order applied to every channel, or None for the identity.

    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, permutation: torch.Tensor | None = None) -> None:
        self.x, self.y, self.permutation = x, y, permutation
        self.targets = y.tolist()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.x[i]  # (C, H, W)
        if self.permutation is not None:
            x = x.flatten(1)[:, self.permutation].reshape(x.shape)
        return x, self.targets[i]

    def gather(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the ``(x, y)`` of ``rows`` in one index (``x`` permuted when a permutation is set)."""
        x = self.x[rows]  # (n, C, H, W)
        if self.permutation is not None:
            x = x.flatten(2)[:, :, self.permutation].reshape(x.shape)
        return x, self.y[rows]


def avalanche_dataset(source: RowSource) -> Any:
    """Wrap ``source`` as an Avalanche ``ClassificationDataset`` with ``targets`` and ``lifelong_row`` attributes."""
    from avalanche.benchmarks.utils import DataAttribute
    from avalanche.benchmarks.utils.classification_dataset import ClassificationDataset

    return ClassificationDataset(
        [source],
        data_attributes=[
            DataAttribute(source.targets, "targets"),
            DataAttribute(list(range(len(source))), ROW_ATTRIBUTE),
        ],
    )


def stream_from_avalanche(benchmark: Any, name: str, scenario: str, *, batch_size: int = 4096) -> Stream:
    """Materialise an Avalanche benchmark's train and test streams as in-memory experiences.

    Each experience's dataset is read once in eval mode (eval transforms, so no random augmentation
    is frozen into the tensors) with a DataLoader of ``batch_size``. Samples must be ``(x, y)`` or
    ``(x, y, t)`` with tensor inputs. Experience classes are the sorted labels present; task labels
    come from the samples (0 when the benchmark has none).

    Args:
        benchmark: an Avalanche ``CLScenario`` (or anything with ``train_stream`` and ``test_stream``).
        name: the stream's name.
        scenario: the scenario recorded in ``StreamInfo``.
        batch_size: samples per DataLoader batch while materialising.

    Returns:
        The stream, with ``info`` filled from the data.

    """
    return convert_benchmark(benchmark, name, scenario, sources=None, batch_size=batch_size)


def benchmark_from_name(name: str, kwargs: Mapping[str, Any] | None = None, seed: int | None = None) -> Any:
    """Build an Avalanche benchmark from its name, as a config's ``stream.avalanche`` gives it.

    Args:
        name: a benchmark of ``avalanche.benchmarks.classic`` (e.g. ``SplitMNIST``, ``SplitFMNIST``,
            ``PermutedMNIST``) or ``package.module:callable`` for a function returning a benchmark, from a
            module on the allow-list of :mod:`lifelong.safety` (``avalanche.benchmarks`` unless the user adds one).
        kwargs: its keyword arguments (e.g. ``n_experiences``, ``seed``, ``dataset_root``).
        seed: the run's seed, passed as ``seed`` when the benchmark takes one and ``kwargs`` does not set it.

    Raises:
        ConfigError: the name does not resolve, its module is not allowed, or the benchmark rejects the arguments.
        DataError: its files are missing and cannot be staged from the system (nor downloaded).

    """
    import importlib

    from lifelong.errors import ConfigError, unknown_choice
    from lifelong.safety import check_code

    check_code("stream.avalanche.benchmark", name)  # before anything is imported
    if ":" in name:
        module_name, _, attribute = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"stream.avalanche.benchmark={name!r} cannot be imported: {err}") from None
    else:
        classic = importlib.import_module("avalanche.benchmarks.classic")
        choices = sorted(n for n in dir(classic) if n[:1].isupper() and callable(getattr(classic, n)))
        if name not in choices:
            raise unknown_choice("stream.avalanche.benchmark", name, choices)
        factory = getattr(classic, name)
    kwargs = dict(kwargs or {})
    if seed is not None and "seed" not in kwargs and "seed" in _parameters(factory):
        kwargs["seed"] = seed
    stage_benchmark_files(name, kwargs)
    try:
        return factory(**kwargs)
    except TypeError as err:
        raise ConfigError(f"stream.avalanche.kwargs do not fit {name}: {err}") from None
    except (OSError, RuntimeError) as err:  # torchvision's download (offline) or a missing file
        raise DataError(
            f"stream.avalanche.benchmark={name!r} could not read or download its data ({err}); "
            "put its files under stream.avalanche.kwargs.dataset_root in torchvision's layout"
        ) from None


def _parameters(factory: Any) -> Mapping[str, Any]:
    try:
        return inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin or a class without a signature
        return {}


def convert_benchmark(
    benchmark: Any,
    name: str,
    scenario: str,
    *,
    sources: Mapping[str, Sequence[RowSource]] | None,
    batch_size: int = 4096,
    num_classes: int | None = None,
) -> Stream:
    """Like ``stream_from_avalanche``; with ``sources[stream][i]`` (the RowSource of experience i) rows are gathered."""
    streams = {}
    for split in STREAM_NAMES:
        experiences = list(getattr(benchmark, f"{split}_stream"))
        split_sources = sources[split] if sources is not None else [None] * len(experiences)
        streams[split] = [
            experience_from_avalanche(exp, i, f"{split} experience {i}", split_sources[i], batch_size)
            for i, exp in enumerate(experiences)
        ]
    train, test = streams["train"], streams["test"]
    if not train:
        raise ValueError(f"{name}: the benchmark has no training experiences")
    labels = torch.cat([e.dataset.y for e in train + test])
    info = StreamInfo(
        scenario=scenario,
        num_classes=num_classes if num_classes is not None else int(labels.max()) + 1,
        n_experiences=len(train),
        input_shape=tuple(train[0].dataset.x.shape[1:]),
        classes_per_experience=[list(e.classes) for e in train],
    )
    return Stream(name=name, info=info, train=train, test=test)


def experience_from_avalanche(
    exp: Any, index: int, what: str, source: RowSource | None = None, batch_size: int = 4096
) -> Experience:
    """One Avalanche experience as an in-memory :class:`Experience` (read once, with eval transforms)."""
    data = exp.dataset
    if len(data) == 0:
        raise ValueError(f"{what} is empty")
    x, y, t = _gather_rows(data, source) if source is not None else _load_all(data, what, batch_size)
    dataset = TensorExperienceDataset(x.contiguous(), y, t)
    task_labels = torch.unique(dataset.t).tolist()
    task_label = int(task_labels[0]) if len(task_labels) == 1 else 0
    return Experience(index=index, dataset=dataset, classes=torch.unique(dataset.y).tolist(), task_label=task_label)


def _task_labels(data: Any, n: int) -> torch.Tensor:
    attribute = getattr(data, "targets_task_labels", None)
    if attribute is None:
        return torch.zeros(n, dtype=torch.long)
    return torch.as_tensor(list(attribute), dtype=torch.long)


def _gather_rows(data: Any, source: RowSource) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Read the ``lifelong_row`` attribute and index the source once."""
    rows = torch.as_tensor(list(getattr(data, ROW_ATTRIBUTE)), dtype=torch.long)
    x, y = source.gather(rows)
    return x, y, _task_labels(data, len(rows))


def _load_all(data: Any, what: str, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Read every sample of an Avalanche dataset in eval mode through a DataLoader."""
    data = data.eval() if hasattr(data, "eval") else data
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=getattr(data, "collate_fn", None))
    xs, ys, ts = [], [], []
    try:
        batches = list(loader)
    except TypeError as err:
        raise ValueError(
            f"{what}: cannot batch its samples ({err}); give the dataset a ToTensor eval transform"
        ) from None
    for batch in batches:
        if len(batch) < 2 or not isinstance(batch[0], torch.Tensor):
            raise ValueError(f"{what}: samples must be (x, y[, t]) with tensor x; got {type(batch[0]).__name__}")
        xs.append(batch[0])
        ys.append(torch.as_tensor(batch[1], dtype=torch.long))
        ts.append(torch.as_tensor(batch[2], dtype=torch.long) if len(batch) > 2 else torch.zeros_like(ys[-1]))
    return torch.cat(xs), torch.cat(ys), torch.cat(ts)
