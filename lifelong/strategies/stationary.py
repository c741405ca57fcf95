"""Stationary representations on a fixed d-Simplex classifier: CoReS and CL2R (plus shared helpers).

Both need ``model.head=dsimplex`` (``lifelong.models.dsimplex``): the class prototypes never move, so
features learned at different times stay in the same space and remain comparable (compatible)
without mapping old and new features. The helpers here are shared with ``hoc`` and ``bct``: a frozen
teacher snapshot evaluated through the live model (``FrozenSnapshot``), model replacement from a
checkpoint (``load_replacement``) and lazily sized buffers that survive ``load_state_dict``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.data.types import Experience, StreamInfo
from lifelong.models.classifier import ContinualClassifier
from lifelong.models.dsimplex import DSimplexHead, require_dsimplex, retrieval_features
from lifelong.strategies.base import Batch, StepOutput, register_strategy
from lifelong.strategies.er import ExperienceReplay

# --------------------------------------------------------------------------- shared helpers


def resize_buffers(module: nn.Module, state_dict: Mapping[str, Any], prefix: str, names: Iterable[str]) -> None:
    """Before loading, give each buffer in ``names`` the shape the checkpoint holds (for lazily sized state)."""
    for name in names:
        stored = state_dict.get(prefix + name)
        if stored is not None and getattr(module, name).shape != stored.shape:
            setattr(module, name, torch.empty_like(stored, device=getattr(module, name).device))


class _Embedding(nn.Module):
    """``retrieval_features`` of a model as a module, so ``torch.func.functional_call`` can swap its weights."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return retrieval_features(self.model, x)


class FrozenSnapshot(nn.Module):
    """A frozen copy of a model's parameters and buffers, evaluated through the live model's structure.

    ``capture(model)`` stores every parameter and buffer of ``model`` as a buffer of this module, so the
    snapshot moves with the strategy, lands in its ``state_dict`` and is never optimised. ``features``
    runs ``retrieval_features`` of the live model with the stored tensors swapped in
    (``torch.func.functional_call``), in eval mode (BatchNorm running statistics, no dropout), without
    gradients and in fp32. No second model object is kept, so a fresh strategy can load a snapshot
    from a checkpoint before it has seen any model.
    """

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __len__(self) -> int:
        return len(self.names)

    @property
    def active(self) -> bool:
        """Whether a snapshot is held."""
        return bool(self.names)

    def clear(self) -> None:
        """Drop the held snapshot."""
        for index in range(len(self.names)):
            del self._buffers[f"s{index}"]
        self.names = []

    @torch.no_grad()
    def capture(self, model: nn.Module) -> None:
        """Replace the snapshot with a copy of ``model``'s current parameters and buffers."""
        self.clear()
        tensors = [*model.named_parameters(), *model.named_buffers()]
        for index, (name, tensor) in enumerate(tensors):
            self.register_buffer(f"s{index}", tensor.detach().clone())
            self.names.append(name)

    def state(self) -> dict[str, torch.Tensor]:
        """The held tensors by their name in the model."""
        return {name: getattr(self, f"s{index}") for index, name in enumerate(self.names)}

    @torch.no_grad()
    def features(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``retrieval_features`` of the snapshot on ``x``, ``(B, d)`` in fp32 (not normalised)."""
        if not self.active:
            raise RuntimeError("FrozenSnapshot.features called before capture")
        weights = {
            f"model.{name}": (value.float() if value.is_floating_point() else value)
            for name, value in self.state().items()
        }
        was_training = model.training
        model.eval()
        try:
            with torch.autocast(x.device.type, enabled=False):
                out = torch.func.functional_call(_Embedding(model), weights, (x.float(),))
        finally:
            model.train(was_training)
        return out.float()

    def get_extra_state(self) -> dict[str, Any]:
        return {"names": list(self.names)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.names = list(state["names"])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        # The snapshot's size is known only from the checkpoint: allocate its buffers first.
        self.clear()
        index = 0
        while prefix + f"s{index}" in state_dict:
            self.register_buffer(f"s{index}", torch.empty_like(state_dict[prefix + f"s{index}"]))
            index += 1
        self.names = [""] * index  # real names come with the extra state
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def parse_replacements(replace_at: Mapping[Any, Any] | None, key: str = "strategy.params.replace_at") -> dict[int, str]:
    """``{experience index: checkpoint path}`` from the user's mapping; keys may be ints or digit strings.

    Raises:
        ValueError: not a mapping, a key that is not an experience index >= 0, or a file that does not exist.

    """
    if replace_at is None:
        return {}
    if not isinstance(replace_at, Mapping):
        raise ValueError(f"{key}={replace_at!r} must map experience indices to checkpoint files, e.g. {{2: ckpt.pt}}")
    out: dict[int, str] = {}
    for raw, path in replace_at.items():
        try:
            index = int(raw)
        except (TypeError, ValueError):
            index = -1
        if isinstance(raw, bool) or index < 0 or str(raw).strip() != str(index):
            raise ValueError(f"{key} key {raw!r} must be an experience index >= 0")
        if not Path(str(path)).is_file():
            raise ValueError(f"{key}.{index}={str(path)!r} is not a file; give a checkpoint of the model's weights")
        out[index] = str(path)
    return out


def model_state_from_checkpoint(obj: Any) -> dict[str, torch.Tensor]:
    """The model weights in a loaded checkpoint: a model ``state_dict``, or ``{"state_dict"|"model": ...}``.

    Keys of a whole-module checkpoint (``model.backbone...``, ``strategy...``) are reduced to the model's.
    """
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError("a replacement checkpoint must hold a model state_dict (names -> tensors)")
    if any(k.startswith("model.") for k in obj):
        obj = {k[len("model.") :]: v for k, v in obj.items() if k.startswith("model.")}
    return dict(obj)


@torch.no_grad()
def load_replacement(model: ContinualClassifier, path: str | Path) -> None:
    """Swap the weights stored at ``path`` into ``model``, keeping the model's fixed d-Simplex classifier.

    The checkpoint's ``head.prototypes`` (if any) are ignored, as the official HOC code drops the
    foreign ``fc2``. Every other tensor of the model must be in the checkpoint with the same shape.

    Raises:
        ValueError: missing, unexpected or mis-shaped tensors (the message lists them).

    """
    incoming = model_state_from_checkpoint(torch.load(path, map_location="cpu", weights_only=True))
    own = model.state_dict()
    fixed = {"head.prototypes"}
    incoming = {k: v for k, v in incoming.items() if k not in fixed}
    missing = sorted(set(own) - fixed - set(incoming))
    unexpected = sorted(set(incoming) - set(own))
    shapes = sorted(k for k in set(incoming) & set(own) if incoming[k].shape != own[k].shape)
    if missing or unexpected or shapes:
        raise ValueError(
            f"replacement checkpoint {str(path)!r} does not fit the model: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, different shapes {shapes[:5]}"
        )
    model.load_state_dict({**own, **incoming})


# --------------------------------------------------------------------------- losses


def cosine_distillation(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """CL2R's feature distillation: ``mean_i (1 - cos(new_i, old_i))`` (``cosine_embedding_loss`` with target 1).

    Example:
        >>> cosine_distillation(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
        tensor(0.5000)

    """
    return (1 - F.cosine_similarity(new.float(), old.float(), dim=1)).mean()


def cl2r_lambda(lambda_0: float, n_new: int, n_old: int) -> float:
    """CL2R's distillation weight ``lambda_t = lambda_0 * sqrt(n_new / n_old)`` (0 while nothing is old).

    ``n_new``: classes the current experience brings; ``n_old``: classes seen in earlier experiences.

    Example:
        >>> cl2r_lambda(5.0, 10, 40)
        2.5

    """
    return 0.0 if n_old <= 0 else float(lambda_0) * math.sqrt(n_new / n_old)


# --------------------------------------------------------------------------- strategies


class StationaryReplay(ExperienceReplay):
    """Experience replay on a fixed d-Simplex classifier; base of ``cores``, ``cl2r`` and ``hoc``.

    Checks that the model has a ``DSimplexHead`` (``model.head=dsimplex``) and that every class of the
    stream is one the simplex reserved. Subclasses that use a teacher get model replacement
    (``replace_at``) and a ``FrozenSnapshot`` teacher.

    Attributes:
        requires_head: the ``model.head`` these strategies need (read by the parametrized tests).

    """

    requires_head = "dsimplex"
    strategy_name = "stationary"

    def __init__(
        self,
        memory_size: int = 500,
        replay_batch_size: int | None = None,
        seed: int = 0,
        replace_at: Mapping[Any, Any] | None = None,
    ) -> None:
        super().__init__(memory_size, replay_batch_size, seed)
        self.replacements = parse_replacements(replace_at)
        self.teacher = FrozenSnapshot()
        self.replaced_now = False

    def head(self, model: ContinualClassifier) -> DSimplexHead:
        """The model's d-Simplex head (``ValueError`` naming ``model.head=dsimplex`` otherwise)."""
        return require_dsimplex(model, self.strategy_name)

    def setup(self, model: ContinualClassifier, stream_info: StreamInfo) -> None:
        head = self.head(model)
        head.check_classes(range(stream_info.num_classes), "the stream's classes")
        super().setup(model, stream_info)

    def before_experience(self, model: ContinualClassifier, experience: Experience) -> None:
        """Check the classes; swap in a replacement model if one is scheduled for this experience."""
        super().before_experience(model, experience)
        self.head(model).check_classes(experience.classes, f"experience {experience.index} classes")
        self.replaced_now = experience.index in self.replacements
        if self.replaced_now:
            load_replacement(model, self.replacements[experience.index])

    def classes_before(self, index: int) -> set[int]:
        """The classes of the experiences before ``index`` (from the stream info given to ``setup``)."""
        if self.stream_info is None:
            return set()
        return {int(c) for classes in self.stream_info.classes_per_experience[:index] for c in classes}

    def forward_parts(self, model: ContinualClassifier, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features (B, d), logits (B, K))`` of the d-Simplex model on ``x``."""
        head = self.head(model)
        features = head.embed(model.features(x))
        return features, F.linear(features, head.prototypes)


@register_strategy("cores")
class CoReS(StationaryReplay):
    """CoReS: cross-entropy against the fixed d-Simplex classifier, with a reservoir replay memory.

    Biondi, Pernici, Bruni, Del Bimbo, "CoReS: Compatible Representations via Stationarity", IEEE TPAMI
    2023 (arXiv 2111.07632). Compatibility comes only from the stationary classifier: no old model and
    no pairwise term. Each step minimises CE on the incoming batch plus a same-sized replay batch (as
    ``er``), so it differs from the ER baseline only by the fixed classifier. Needs
    ``model.head=dsimplex``.

    Deviations from the official code: it trains a fresh network per step on the cumulative data of all
    classes seen so far and keeps the best-validation checkpoint; here the model is fine-tuned from the
    previous experience with a reservoir memory and the last state is kept.

    Args:
        memory_size: replay memory slots.
        replay_batch_size: replayed samples per step (``None``: the incoming batch's size).
        replace_at: ``{experience index: checkpoint}``: swap these weights into the model (keeping the
            fixed classifier) at the start of that experience (model replacement; no teacher here).
        seed: seed of the memory.

    """

    strategy_name = "cores"

    def __init__(
        self,
        memory_size: int = 500,
        replay_batch_size: int | None = None,
        replace_at: Mapping[Any, Any] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(memory_size, replay_batch_size, seed, replace_at)


@register_strategy("cl2r")
class CL2R(StationaryReplay):
    """CL2R: d-Simplex cross-entropy + cosine feature distillation on the replayed samples.

    Biondi, Pernici, Bruni, Del Bimbo, "CL2R: Compatible Lifelong Learning Representations", ACM TOMM
    2023 (arXiv 2211.09032). Global stationarity comes from the fixed d-Simplex; local stationarity from
    distilling the previous model's features on the memory samples::

        L_t = CE(W_S h_t(x), y) over the joint batch + lambda_t * mean_{x in replay} [1 - cos(h_t(x), h_{t-1}(x))]
        lambda_t = lambda_0 * sqrt(n_new / n_old)

    with ``n_new`` the classes of experience ``t`` not seen before and ``n_old`` the classes of the
    earlier experiences. The teacher ``h_{t-1}`` is the model as it starts experience ``t`` (the
    previous experience's final state, or the model swapped in by ``replace_at``), frozen, in eval
    mode and fp32. Needs ``model.head=dsimplex``.

    Deviations from the official code: the memory is a reservoir (official: 20 random images per class,
    2000 in all) and each step appends a replay batch to the incoming batch instead of a sampler that
    draws half memory, half new data; the distillation reads the replayed half explicitly, so it does
    not depend on the order inside the batch.

    Args:
        memory_size: replay memory slots.
        replay_batch_size: replayed samples per step (``None``: the incoming batch's size, i.e. half memory).
        lambda_0: base distillation weight (official ``config.yml``: 5).
        replace_at: ``{experience index: checkpoint}``: swap these weights into the model (keeping the
            fixed classifier) at the start of that experience; it then serves as the teacher.
        seed: seed of the memory.

    """

    strategy_name = "cl2r"
    lambda_t: torch.Tensor

    def __init__(
        self,
        memory_size: int = 500,
        replay_batch_size: int | None = None,
        lambda_0: float = 5.0,
        replace_at: Mapping[Any, Any] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(memory_size, replay_batch_size, seed, replace_at)
        if isinstance(lambda_0, bool) or not isinstance(lambda_0, int | float) or lambda_0 < 0:
            raise ValueError(f"strategy.params.lambda_0={lambda_0!r} is not allowed; use a number >= 0")
        self.lambda_0 = float(lambda_0)
        self.register_buffer("lambda_t", torch.zeros(()))

    def before_experience(self, model: ContinualClassifier, experience: Experience) -> None:
        """Set ``lambda_t`` and freeze the model the experience starts from as the teacher."""
        super().before_experience(model, experience)
        old = self.classes_before(experience.index)
        n_new = len({int(c) for c in experience.classes} - old)
        self.lambda_t.fill_(cl2r_lambda(self.lambda_0, n_new, len(old)))
        if experience.index > 0 or self.replaced_now:
            self.teacher.capture(model)
        else:
            self.teacher.clear()

    def training_loss(self, model: ContinualClassifier, batch: Batch) -> StepOutput:
        """CE on the joint batch + ``lambda_t`` x cosine distillation on its replayed part."""
        n_incoming = len(batch[1])
        x, y, _ = self.replay_batch(batch)
        features, logits = self.forward_parts(model, x)
        ce = F.cross_entropy(logits, y)
        parts = {"ce": ce.detach()}
        loss = ce
        if self.teacher.active and len(y) > n_incoming:
            old = self.teacher.features(model, x[n_incoming:])
            distill = cosine_distillation(features[n_incoming:], old)
            loss = ce + self.lambda_t.to(ce.device) * distill
            parts["distill"] = distill.detach()
        return StepOutput(loss=loss, parts=parts, logits=logits[:n_incoming])
