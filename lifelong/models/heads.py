"""Classifier heads on top of backbone features: expandable linear and cosine heads, and a multi-head.

``LinearHead`` and ``CosineHead`` can grow (``expand``) when a class-incremental stream brings new
classes; the existing rows are kept bit for bit. ``MultiHead`` is the task-incremental head: one head
per task label, each scoring only its task's classes.

Heads are built by name through ``HEADS``; a factory takes ``(in_dim, num_classes)`` positionally and
its options (``model.head_kwargs``) as keywords.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.errors import ConfigError
from lifelong.registry import Registry, check_kwargs

HeadFactory = Callable[..., nn.Module]

HEADS: Registry[HeadFactory] = Registry("model.head")


def mask_value(dtype: torch.dtype) -> float:
    """Return the logit given to masked-out classes: very negative but finite in ``dtype``.

    Half of ``torch.finfo(dtype).min`` rather than ``-inf``: ``softmax`` gives it probability 0, yet
    ``0 * log_softmax`` stays 0 instead of NaN, and subtracting a row's maximum cannot overflow, in
    fp16 and bf16 as in fp32.
    """
    return torch.finfo(dtype).min / 2


def linear_init(weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
    """Initialize in place as ``nn.Linear`` does: Kaiming-uniform weight, bias uniform in +-1/sqrt(fan_in)."""
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        bound = 1 / math.sqrt(weight.shape[1]) if weight.shape[1] > 0 else 0.0
        nn.init.uniform_(bias, -bound, bound)


class _ExpandableHead(nn.Module):
    """Rows of ``weight`` (and ``bias``) are classes; ``expand`` appends freshly initialized rows."""

    weight: nn.Parameter
    bias: nn.Parameter | None

    @property
    def num_classes(self) -> int:
        """Number of classes (output logits)."""
        return self.weight.shape[0]

    def expand(self, num_classes: int) -> None:
        """Grow to ``num_classes`` outputs; the old rows are copied exactly, new ones initialized as usual.

        The parameters are replaced, so build the optimizer after expanding.
        """
        if num_classes < self.num_classes:
            raise ValueError(f"cannot shrink a head from {self.num_classes} to {num_classes} classes")
        if num_classes == self.num_classes:
            return
        old = dict(self.named_parameters(recurse=False))
        self._init_parameters(num_classes, device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            for name, value in old.items():
                getattr(self, name)[: value.shape[0]] = value

    def _init_parameters(self, num_classes: int, **factory: Any) -> None:
        """Create fresh parameters for ``num_classes`` rows (``factory``: device and dtype)."""
        raise NotImplementedError

    def _load_from_state_dict(self, state_dict: Mapping[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        """Expand first when the checkpoint holds more classes, so a grown head can be reloaded."""
        stored = state_dict.get(prefix + "weight")
        if stored is not None and stored.ndim == 2 and stored.shape[0] > self.num_classes:
            self.expand(stored.shape[0])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class LinearHead(_ExpandableHead):
    """Expandable linear classifier (weight and bias per class).

    Args:
        in_dim: feature width.
        num_classes: number of classes to start with.

    """

    def __init__(self, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.in_dim = in_dim
        self._init_parameters(num_classes)

    def _init_parameters(self, num_classes: int, **factory: Any) -> None:
        self.weight = nn.Parameter(torch.empty(num_classes, self.in_dim, **factory))
        self.bias = nn.Parameter(torch.empty(num_classes, **factory))
        linear_init(self.weight, self.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Map ``(B, in_dim)`` features to ``(B, num_classes)`` logits."""
        return F.linear(features, self.weight, self.bias)


class CosineHead(_ExpandableHead):
    """Expandable bias-free cosine classifier: logits are ``scale * cos(feature, weight row)``.

    The class rows act as proxies (as in PCR, which uses ``scale = 1 / 0.09``).

    Args:
        in_dim: feature width.
        num_classes: number of classes to start with.
        scale: fixed multiplier of the cosines (an inverse temperature); ``None`` gives raw cosines.

    """

    def __init__(self, in_dim: int, num_classes: int, scale: float | None = None) -> None:
        super().__init__()
        if scale is not None and not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale={scale!r} must be a positive number or None")
        self.in_dim = in_dim
        self.scale = None if scale is None else float(scale)
        self._init_parameters(num_classes)

    def _init_parameters(self, num_classes: int, **factory: Any) -> None:
        self.weight = nn.Parameter(torch.empty(num_classes, self.in_dim, **factory))
        linear_init(self.weight)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Map ``(B, in_dim)`` features to ``(B, num_classes)`` scaled cosine similarities."""
        cosines = F.linear(F.normalize(features, dim=1), F.normalize(self.weight, dim=1))  # (B, C)
        return cosines if self.scale is None else cosines * self.scale


class MultiHead(nn.Module):
    """Task-incremental head: one head per task label, each scoring only its own task's classes.

    Every head is ``num_classes`` wide over the global class ids; the classes outside a sample's task
    get ``mask_value`` so the softmax ignores them. Samples of different tasks in one batch each go
    through their own head.

    Args:
        in_dim: feature width.
        num_classes: total number of classes over all tasks.
        n_tasks: number of task labels (``0 .. n_tasks - 1``).
        make_head: builds one task's head from ``(in_dim, num_classes)``; ``LinearHead`` by default.

    """

    def __init__(
        self, in_dim: int, num_classes: int, n_tasks: int, make_head: Callable[[int, int], nn.Module] = LinearHead
    ) -> None:
        super().__init__()
        if n_tasks < 1:
            raise ValueError(f"n_tasks={n_tasks} must be at least 1")
        self.in_dim = in_dim
        self.num_classes = num_classes
        self.heads = nn.ModuleList(make_head(in_dim, num_classes) for _ in range(n_tasks))

    @property
    def n_tasks(self) -> int:
        """Number of task heads."""
        return len(self.heads)

    def forward(self, features: torch.Tensor, task_labels: torch.Tensor, task_classes: torch.Tensor) -> torch.Tensor:
        """Score each sample with its task's head, masking the classes of other tasks.

        Args:
            features: ``(B, in_dim)`` backbone features.
            task_labels: ``(B,)`` task label of each sample.
            task_classes: ``(n_tasks, num_classes)`` bool, True where a class belongs to the task.

        Returns:
            ``(B, num_classes)`` logits; classes outside a sample's task hold ``mask_value(dtype)``.

        """
        task_labels = task_labels.reshape(-1)
        if task_labels.shape[0] != features.shape[0]:
            raise ValueError(f"{task_labels.shape[0]} task labels for a batch of {features.shape[0]}")
        out: torch.Tensor | None = None
        for task in task_labels.unique().tolist():
            self._check_task(task)
            rows = (task_labels == task).nonzero(as_tuple=True)[0]  # (b,)
            logits = self.heads[task](features[rows])  # (b, C)
            logits = logits.masked_fill(~task_classes[task].to(logits.device), mask_value(logits.dtype))
            if out is None:
                out = logits.new_empty(features.shape[0], self.num_classes)
            out = out.index_copy(0, rows, logits)
        if out is None:  # an empty batch
            return features.new_empty(0, self.num_classes)
        return out

    def _check_task(self, task: int) -> None:
        if not 0 <= task < self.n_tasks:
            raise ValueError(f"task label {task} has no head: this MultiHead has task labels 0..{self.n_tasks - 1}")


@HEADS.register("linear")
def linear(in_dim: int, num_classes: int, /) -> LinearHead:
    """Linear classifier with a weight row and a bias per class; expandable."""
    return LinearHead(in_dim, num_classes)


@HEADS.register("cosine")
def cosine(in_dim: int, num_classes: int, /, scale: float | None = None) -> CosineHead:
    """Cosine classifier, bias-free and expandable: logits = scale * cos(feature, class proxy)."""
    return CosineHead(in_dim, num_classes, scale=scale)


def build_head(name: str, in_dim: int, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build the head ``name`` for ``in_dim``-d features and ``num_classes`` classes.

    Args:
        name: a name in ``HEADS``.
        in_dim: feature width of the backbone.
        num_classes: number of classes.
        **kwargs: options of the head (``model.head_kwargs``).

    Raises:
        ConfigError: the name is unknown or an option is not accepted.

    """
    factory = HEADS.get(name)
    check_kwargs(factory, kwargs, "model.head_kwargs")
    try:
        return factory(in_dim, num_classes, **kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model.head={name!r} with model.head_kwargs={kwargs}: {err}") from None
