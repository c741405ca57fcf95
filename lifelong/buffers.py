"""Replay memories that live in the module: their tensors move with it and land in its state_dict."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


class ReservoirBuffer(nn.Module):
    """Reservoir sampling (Vitter's algorithm R) over a stream of samples.

    After ``n`` samples have been offered, every one of them is in memory with probability
    ``capacity / n``. Storage is allocated on the first ``add`` from the samples' shapes and
    dtypes; extra per-sample fields (e.g. logits for DER) are stored alongside.

    Args:
        capacity: number of slots (on this rank).
        seed: seed of the buffer's own random generator, so replay does not depend on
            unrelated random draws elsewhere.

    """

    n_seen: torch.Tensor
    n_stored: torch.Tensor

    def __init__(self, capacity: int, seed: int = 0) -> None:
        super().__init__()
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self.generator = torch.Generator().manual_seed(seed)
        self.register_buffer("n_seen", torch.zeros((), dtype=torch.long))
        self.register_buffer("n_stored", torch.zeros((), dtype=torch.long))
        self.fields: list[str] = []

    def __len__(self) -> int:
        return int(self.n_stored)

    @property
    def num_seen(self) -> int:
        """Samples offered so far."""
        return int(self.n_seen)

    def _allocate(self, samples: Mapping[str, torch.Tensor]) -> None:
        for name, value in samples.items():
            self.register_buffer(name, value.new_zeros((self.capacity, *value.shape[1:])))
        self.fields = list(samples)

    def slots_for(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Reservoir decisions for ``batch_size`` new samples: (which samples, which slots).

        Sample k of the batch is the ``seen + k``-th of the stream (0-based); it fills the next
        free slot while memory is not full, otherwise replaces a uniform slot in
        ``[0, seen + k]`` if that slot index is below ``capacity``.
        """
        position = int(self.n_seen) + torch.arange(batch_size)
        draws = (torch.rand(batch_size, generator=self.generator) * (position + 1)).long()
        slots = torch.where(position < self.capacity, position, draws)
        keep = slots < self.capacity
        return keep.nonzero().squeeze(1), slots[keep]

    @torch.no_grad()
    def add(self, **samples: torch.Tensor) -> torch.Tensor:
        """Offer a batch of samples; returns the slots written (for callers that track them).

        All fields must have the same leading batch size; later calls must give the same fields.
        """
        batch_size = len(next(iter(samples.values())))
        if self.capacity == 0 or batch_size == 0:
            self.n_seen += batch_size
            return torch.empty(0, dtype=torch.long)
        if not self.fields:
            self._allocate(samples)
        elif set(samples) != set(self.fields):
            raise ValueError(f"buffer stores {self.fields}, got {sorted(samples)}")
        which, slots = self.slots_for(batch_size)
        # Later samples of the same batch overwrite earlier ones in the same slot, as sequentially.
        for name in self.fields:
            store: torch.Tensor = getattr(self, name)
            store[slots.to(store.device)] = samples[name][which.to(samples[name].device)].to(store.dtype)
        self.n_seen += batch_size
        self.n_stored.fill_(min(int(self.n_seen), self.capacity))
        return slots

    def sample(self, n: int, device: torch.device | None = None) -> dict[str, torch.Tensor]:
        """Up to ``n`` stored samples drawn uniformly without replacement (empty dict if memory is empty)."""
        size = int(self.n_stored)
        if size == 0 or n <= 0:
            return {}
        index = torch.randperm(size, generator=self.generator)[: min(n, size)]
        out = {}
        for name in self.fields:
            store: torch.Tensor = getattr(self, name)
            out[name] = store[index.to(store.device)]
            if device is not None:
                out[name] = out[name].to(device, non_blocking=True)
        return out

    def get(self, name: str) -> torch.Tensor:
        """The filled part of one field."""
        return getattr(self, name)[: int(self.n_stored)]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        # Storage is lazy: allocate the fields a checkpoint holds before the regular load.
        reserved = {"n_seen", "n_stored", "_extra_state"}
        names = [k[len(prefix) :] for k in state_dict if k.startswith(prefix) and "." not in k[len(prefix) :]]
        for name in names:
            if name not in reserved and name not in self.fields:
                value = state_dict[prefix + name]
                self.register_buffer(name, torch.empty_like(value))
                self.fields.append(name)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def get_extra_state(self) -> dict:
        """The random generator's state, so a resumed run draws the same replay batches."""
        return {"generator": self.generator.get_state(), "fields": list(self.fields)}

    def set_extra_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    def extra_repr(self) -> str:
        return f"capacity={self.capacity}, fields={self.fields}"
