"""The model every strategy trains: a backbone (features) followed by a head (logits)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn

from lifelong.errors import ConfigError
from lifelong.models.backbones import build_backbone
from lifelong.models.heads import MultiHead, build_head


class ContinualClassifier(nn.Module):
    """Backbone + head, with features and logits available separately.

    With a ``MultiHead`` (task-incremental learning) the model also keeps, per task label, the classes
    that task may predict (the ``task_classes`` buffer, saved in checkpoints); a task whose classes
    were never set may predict every class.

    Args:
        backbone: maps ``(B, *input_shape)`` to ``(B, out_dim)`` features and has an ``out_dim`` attribute.
        head: maps ``(B, out_dim)`` features to ``(B, num_classes)`` logits and has ``num_classes``;
            a ``MultiHead`` also takes the task labels.

    """

    task_classes: torch.Tensor

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        if isinstance(head, MultiHead):
            self.register_buffer("task_classes", torch.ones(head.n_tasks, head.num_classes, dtype=torch.bool))

    @property
    def multi_head(self) -> bool:
        """Whether each task label has its own head (task-incremental learning)."""
        return isinstance(self.head, MultiHead)

    @property
    def num_classes(self) -> int:
        """Number of logits per sample."""
        return cast(int, self.head.num_classes)

    @property
    def feature_dim(self) -> int:
        """Width of the backbone features."""
        return cast(int, self.backbone.out_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, *input_shape)`` inputs to ``(B, feature_dim)`` features."""
        return self.backbone(x)

    def logits_from_features(self, features: torch.Tensor, task_labels: torch.Tensor | None = None) -> torch.Tensor:
        """Map ``(B, feature_dim)`` features to ``(B, num_classes)`` logits.

        Args:
            features: backbone features.
            task_labels: ``(B,)`` task label per sample; required with a multi-head, ignored otherwise.

        """
        if not self.multi_head:
            return self.head(features)
        if task_labels is None:
            raise ValueError("a multi-head model needs the task label of every sample")
        return self.head(features, task_labels, self.task_classes)

    def forward(self, x: torch.Tensor, task_labels: torch.Tensor | None = None) -> torch.Tensor:
        """Map ``(B, *input_shape)`` inputs to ``(B, num_classes)`` logits (see ``logits_from_features``)."""
        return self.logits_from_features(self.features(x), task_labels)

    def set_task_classes(self, task_label: int, classes: Sequence[int]) -> None:
        """Let task ``task_label`` predict only ``classes`` (global class ids) from now on."""
        if not self.multi_head:
            raise ValueError("set_task_classes needs a multi-head model (build_model(..., multi_head=True))")
        if not 0 <= task_label < self.task_classes.shape[0]:
            raise ValueError(f"task label {task_label} is outside 0..{self.task_classes.shape[0] - 1}")
        index = torch.as_tensor(list(classes), dtype=torch.long)
        if index.numel() == 0 or index.min() < 0 or index.max() >= self.num_classes:
            raise ValueError(f"classes {list(classes)} must be a non-empty subset of 0..{self.num_classes - 1}")
        row = torch.zeros(self.num_classes, dtype=torch.bool)
        row[index] = True
        self.task_classes[task_label] = row.to(self.task_classes.device)


def build_model(
    backbone: str,
    head: str,
    num_classes: int,
    input_shape: tuple[int, ...],
    multi_head: bool = False,
    n_tasks: int = 1,
    backbone_kwargs: dict[str, Any] | None = None,
    head_kwargs: dict[str, Any] | None = None,
) -> ContinualClassifier:
    """Build a ``ContinualClassifier`` from registry names.

    Args:
        backbone: a backbone name (``lifelong.models.backbone_names()``) or ``timm:<model_name>``.
        head: a head name in ``HEADS``.
        num_classes: number of classes of the whole stream.
        input_shape: shape of one sample, e.g. ``(1, 28, 28)``.
        multi_head: one head per task label (task-incremental) instead of one shared head.
        n_tasks: number of task labels, used when ``multi_head``.
        backbone_kwargs: options of the backbone (``model.backbone_kwargs``).
        head_kwargs: options of the head (``model.head_kwargs``), applied to every task's head.

    Raises:
        ConfigError: a name is unknown, an option is not accepted, or a number is out of range.

    """
    if num_classes < 1:
        raise ConfigError(f"num_classes={num_classes} must be at least 1")
    if multi_head and n_tasks < 1:
        raise ConfigError(f"n_tasks={n_tasks} must be at least 1 for a multi-head model")
    net = build_backbone(backbone, tuple(input_shape), **(backbone_kwargs or {}))
    dim = cast(int, net.out_dim)
    options = head_kwargs or {}

    def make_head(in_dim: int, classes: int) -> nn.Module:
        return build_head(head, in_dim, classes, **options)

    if multi_head:
        return ContinualClassifier(net, MultiHead(dim, num_classes, n_tasks, make_head))
    return ContinualClassifier(net, make_head(dim, num_classes))
