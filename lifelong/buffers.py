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

    Under DDP the driver calls :meth:`shard` on every rank, so each rank keeps
    ``capacity / world_size`` slots filled from its own share of the data.

    Args:
        capacity: number of slots in total (over all ranks, see :meth:`shard`).
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
        self.total_capacity = capacity
        self.seed = seed
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

    def shard(self, rank: int, world_size: int) -> None:
        """Keep this rank's share of the total capacity: ``total // world_size`` slots, one more on low ranks.

        A memory that has not seen any sample yet also reseeds its generator on ranks > 0 (rank 0's
        generator is left alone, so a single process behaves exactly as without sharding). A memory that has seen
        samples (e.g. restored from a checkpoint) keeps its generator, and its share must not change.

        Raises:
            ValueError: ``rank`` is not in ``[0, world_size)``, or the share of a used memory would change.

        """
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in a world of {world_size} process(es)")
        base, extra = divmod(self.total_capacity, world_size)
        capacity = base + (1 if rank < extra else 0)
        if int(self.n_seen) > 0:
            if capacity != self.capacity:
                raise ValueError(
                    f"this rank's replay memory holds {self.capacity} of {self.total_capacity} slots; a world of "
                    f"{world_size} would give it {capacity}: resume with the number of processes the run started with"
                )
            return
        if capacity != self.capacity:  # storage is allocated lazily at the next ``add``
            for name in self.fields:
                delattr(self, name)
            self.fields, self.capacity = [], capacity
        if rank > 0:  # rank 0 keeps its generator untouched: one process behaves exactly as without sharding
            self.generator.manual_seed(self.seed + 1_000_003 * rank)

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
        return {"generator": self.generator.get_state(), "fields": list(self.fields), "capacity": self.capacity}

    def set_extra_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.capacity = int(state.get("capacity", self.capacity))

    def extra_repr(self) -> str:
        return f"capacity={self.capacity} of {self.total_capacity}, fields={self.fields}"
