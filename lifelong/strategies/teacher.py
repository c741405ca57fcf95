"""A frozen teacher snapshot shared by the strategies that distil from an earlier model (``cl2r``, ``hoc``).

:class:`FrozenSnapshot` keeps a copy of a model's tensors as buffers of the strategy (so it moves with
it and lands in its checkpoint) and evaluates them through the live model's structure.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lifelong.models.dsimplex import retrieval_features


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
