"""The outer loop over experiences (DESIGN §4): a fresh Trainer per experience, evaluation after each.

All continual-learning state lives in the module and its strategy; a Trainer only runs one
``fit`` (and the evaluations around it) and is then dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from lifelong.analysis import Analysis
from lifelong.data.types import Experience, Stream, TensorExperienceDataset, identity_collate
from lifelong.errors import ConfigError
from lifelong.metrics.score_matrices import ScoreMatrices
from lifelong.minibatches import GatheredBatches
from lifelong.module import ContinualModule
from lifelong.step_checkpoint import EpochsLoader, StepCheckpoint, start_snapshot

TrainerFactory = Callable[[], L.Trainer]


class LoopListener(Protocol):
    """What the loop reports; ``run.py`` connects it to printing and tracking."""

    def on_train_metrics(self, step: int, metrics: dict[str, float]) -> None: ...

    def on_evaluated(self, after: int, scores: dict[str, list[float]], matrices: ScoreMatrices) -> None: ...

    def on_experience_end(self, experience: Experience, seconds: float, samples: int) -> None: ...

    def on_analysis(self, after: int, metrics: dict[str, float]) -> None: ...

    def on_resumed(self, completed: int, matrices: ScoreMatrices, steps: int | None = None) -> None: ...


class Checkpointer(Protocol):
    """Saves the run after each evaluation point and restores it once at the start (``lifelong.checkpoint``)."""

    def restore(self) -> tuple[int, ScoreMatrices] | None: ...

    def save(self, completed: int, matrix: ScoreMatrices) -> None: ...


@dataclass
class LoaderSettings:
    """How the loop turns datasets into loaders."""

    batch_size: int
    eval_batch_size: int
    num_workers: int = 0
    seed: int = 0
    drop_last: bool = False  # training batches: full batches only (the last partial batch of an epoch is dropped)
    shuffle: bool = True  # training batches: shuffled, or in the order the experience's dataset gives (``False``)
    batches_per_call: int = 64  # training mini-batches per call of Lightning's training_step (one update each)


class ShardSampler(DistributedSampler):
    """Rank ``r`` of ``w`` reads indices ``r, r + w, r + 2w, ...``: every sample exactly once over the ranks.

    Unlike Lightning's default ``DistributedSampler`` for evaluation it does not pad the last
    shard with repeated samples, so counts summed over the ranks are exact.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.num_samples = len(range(rank, len(dataset), num_replicas))  # type: ignore[arg-type]
        self.total_size = len(dataset)  # type: ignore[arg-type]

    def __iter__(self):  # noqa: ANN204
        return iter(range(self.rank, self.total_size, self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples


class BatchChunks:
    """The mini-batches of ``loader`` in lists of ``size`` consecutive ones (the last list may be shorter).

    Lightning trains on one list per ``training_step`` call, one optimizer update per mini-batch
    (:meth:`ContinualModule.training_step`): the same updates in the same order as one mini-batch per call,
    with Lightning's fixed per-call work (hooks, data fetcher, loop bookkeeping) shared by ``size`` of them.
    """

    def __init__(self, loader: Iterable[Any], size: int) -> None:
        if size < 1:
            raise ValueError(f"train.batches_per_call={size} is not allowed; use an integer >= 1")
        self.loader, self.size = loader, size
        self.batches = len(loader)  # type: ignore[arg-type]
        self.batch_size = getattr(loader, "batch_size", None)
        self.sampler = getattr(loader, "sampler", None)  # Lightning sets a DistributedSampler's epoch through it

    def __len__(self) -> int:
        return -(-self.batches // self.size)

    def __iter__(self) -> Iterator[list[Any]]:
        batches, remaining = iter(self.loader), self.batches
        while remaining > 0:  # never asks for a batch past the last one, as Lightning reading the loader would not
            size = min(self.size, remaining)
            yield [next(batches) for _ in range(size)]
            remaining -= size


class GatheredChunks:
    """An in-memory experience read ``per_call`` mini-batches at a time: one gather per chunk, split into views.

    ``loader`` yields chunks of ``per_call * batch_size`` samples drawn by the same sampler and generator as a
    loader of ``batch_size`` would draw them (a permutation does not depend on the batch size), so the
    mini-batches are the same, in the same order, without the data loader's per-batch work; a chunk goes to the
    device as one :class:`GatheredBatches` and is split there.
    """

    def __init__(self, loader: DataLoader, batch_size: int) -> None:
        self.loader, self.batch_size = loader, batch_size
        self.batches = -(-len(loader.sampler) // batch_size)  # type: ignore[arg-type]
        self.sampler = loader.sampler  # Lightning sets a DistributedSampler's epoch through it

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[GatheredBatches]:
        for x, y, t in self.loader:
            yield GatheredBatches(x, y, t, self.batch_size)


def training_batches(
    dataset: Dataset, loaders: LoaderSettings, seed: int, sampler: Sampler | None, loader: DataLoader, epochs: int
) -> BatchChunks | GatheredChunks:
    """What one ``fit`` iterates: ``loader``'s mini-batches, ``loaders.batches_per_call`` per ``training_step`` call.

    A single pass over an in-memory experience read in the main process is gathered a chunk at a time
    (:class:`GatheredChunks`). Over several epochs the batches come from ``loader`` itself: whether a pass reads
    its sampler to the end (it does when the last chunk is partial) decides the next epoch's permutation.
    """
    per_call = loaders.batches_per_call
    in_memory = isinstance(dataset, TensorExperienceDataset) and loaders.num_workers == 0
    if in_memory and per_call > 1 and epochs == 1 and not loaders.drop_last:
        chunks = make_loader(dataset, loaders.batch_size * per_call, loaders.shuffle, 0, seed, sampler)
        return GatheredChunks(chunks, loaders.batch_size)
    return BatchChunks(loader, per_call)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int,
    seed: int,
    sampler: Sampler | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader; in-memory experience datasets are gathered a whole batch at a time.

    With a ``sampler`` (DDP: this rank's share) ``shuffle`` and ``seed`` are the sampler's business.
    """
    batched = isinstance(dataset, TensorExperienceDataset)
    shuffle = shuffle and sampler is None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=identity_collate if batched else None,  # type: ignore[arg-type]
        # Always an own generator: iterating a loader draws its base seed from it, so neither shuffling nor
        # evaluation ever consumes the global random stream that training draws from (masks, dropout).
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=num_workers > 0,
        drop_last=drop_last,
    )


def evaluate(
    trainer: L.Trainer, module: ContinualModule, stream: Stream, loaders: LoaderSettings
) -> dict[str, list[float]]:
    """The evaluator's scores of the current model on every test experience (DDP: each rank scores a share).

    Evaluation goes through ``trainer.validate``, so it runs on the Trainer's device and precision.
    """
    world, rank = trainer.world_size, trainer.global_rank
    test_loaders = [
        make_loader(
            e.dataset,
            loaders.eval_batch_size,
            False,
            loaders.num_workers,
            loaders.seed,
            ShardSampler(e.dataset, world, rank) if world > 1 else None,
        )
        for e in stream.test
    ]
    trainer.validate(module, dataloaders=test_loaders, verbose=False)
    return module.scores()


def run_stream(
    module: ContinualModule,
    stream: Stream,
    make_trainer: TrainerFactory,
    loaders: LoaderSettings,
    listener: LoopListener,
    analyses: Mapping[str, Analysis] | None = None,
    checkpoints: Checkpointer | None = None,
) -> ScoreMatrices:
    """Train ``module`` on each experience of ``stream`` in order and fill the evaluator's score matrices.

    The test stream is evaluated once before training (row "init", for forward transfer) and
    after every experience; the ``analyses`` run at each of those points too, and then the
    ``checkpoints`` are saved. A resumed run (``checkpoints.restore()`` returns the last
    experience it saved) continues with the next experience.
    """
    analyses = analyses or {}
    module.step_reporter = listener.on_train_metrics
    module.strategy.setup(module.model, stream.info)
    resumed = checkpoints.restore() if checkpoints is not None else None
    if resumed is None:
        matrix = ScoreMatrices(module.evaluator.score_names, len(stream))
        initial = evaluate(make_trainer(), module, stream, loaders)
        matrix.set_initial(initial)
        listener.on_evaluated(-1, initial, matrix)
        run_analyses(-1, module, stream, analyses, listener)
        if checkpoints is not None:
            checkpoints.save(-1, matrix)
        start = 0
    else:
        completed, matrix = resumed
        module.strategy.on_resume(module.model, stream)
        step = getattr(checkpoints, "step", None)  # a checkpoint inside the next experience (lifelong.step_checkpoint)
        listener.on_resumed(completed, matrix, steps=int(step["steps"]) if step is not None else None)
        start = completed + 1
    for experience in stream.train[start:]:
        started = time.perf_counter()
        stepping = step_checkpoints(module, experience, checkpoints, matrix)
        samples = train_experience(module, experience, make_trainer(), loaders, stepping)
        seconds = time.perf_counter() - started
        scores = evaluate(make_trainer(), module, stream, loaders)
        matrix.set_row(experience.index, scores)
        listener.on_experience_end(experience, seconds, samples)
        listener.on_evaluated(experience.index, scores, matrix)
        run_analyses(experience.index, module, stream, analyses, listener)
        if module.lr_schedule is not None:  # evaluated at the end of the annealed branch: continue from its fork
            module.lr_schedule.restore(module)
        if checkpoints is not None:
            checkpoints.save(experience.index, matrix)
    return matrix


def run_analyses(
    after: int, module: ContinualModule, stream: Stream, analyses: Mapping[str, Analysis], listener: LoopListener
) -> None:
    """Run every analysis at this evaluation point; metrics are reported as ``<analysis>/<metric>``."""
    metrics: dict[str, float] = {}
    for name, analysis in analyses.items():
        values = analysis.evaluate(after, module.model, module.strategy, stream)
        metrics.update({f"{name}/{key}": value for key, value in values.items()})
    if analyses:
        listener.on_analysis(after, metrics)


def training_sampler(dataset: Dataset, world_size: int, rank: int, shuffle: bool, seed: int) -> DistributedSampler:
    """Rank ``rank``'s share of a training experience under DDP; every rank takes as many steps.

    Shuffled: a fresh permutation every epoch (Lightning calls ``set_epoch``), split over the ranks. In order
    (``shuffle=False``): rank ``r`` of ``w`` reads samples ``r, r + w, r + 2w, ...`` of the dataset's order, so
    global step ``k`` covers the samples ``k * B * w`` to ``(k + 1) * B * w - 1`` between them; when ``w``
    does not divide the dataset, the shards are padded with its first samples (``DistributedSampler``'s rule).
    """
    return DistributedSampler(dataset, world_size, rank, shuffle=shuffle, seed=seed)


def step_checkpoints(
    module: ContinualModule, experience: Experience, checkpoints: Checkpointer | None, matrix: ScoreMatrices
) -> StepCheckpoint | None:
    """The callback that checkpoints inside this experience (``checkpoint.every_n_steps``), or ``None``.

    It resumes the experience when the run was restored from a checkpoint inside it.
    """
    every = int(getattr(checkpoints, "every_n_steps", 0) or 0)
    if every <= 0 or not getattr(checkpoints, "enabled", False):
        return None
    if module.lr_schedule is not None:
        raise ConfigError("checkpoint.every_n_steps does not support optim.schedule yet: use one of them")
    resumed: dict[str, Any] | None = getattr(checkpoints, "step", None)
    if resumed is not None and resumed["experience"] != experience.index:
        resumed = None
    if checkpoints is not None:
        setattr(checkpoints, "step", None)  # noqa: B010 - used once
    return StepCheckpoint(every, checkpoints, matrix, experience.index, start_snapshot(module), resumed)


def train_experience(
    module: ContinualModule,
    experience: Experience,
    trainer: L.Trainer,
    loaders: LoaderSettings,
    steps: StepCheckpoint | None = None,
) -> int:
    """One experience: the strategy's hooks around one ``fit``; returns the samples seen by all ranks together.

    Under DDP each rank reads its shard, so the global count (what the printed samples/s reports) is the
    shard's count times the world size.
    """
    strategy = module.strategy
    strategy.before_experience(module.model, experience)
    dataset = strategy.train_dataset(experience)
    seed = loaders.seed + experience.index
    sampler = None
    if trainer.world_size > 1:
        sampler = training_sampler(dataset, trainer.world_size, trainer.global_rank, loaders.shuffle, seed)
    loader = make_loader(
        dataset, loaders.batch_size, loaders.shuffle, loaders.num_workers, seed, sampler, drop_last=loaders.drop_last
    )
    epochs = int(trainer.max_epochs or 0)
    if module.lr_schedule is not None:
        module.lr_schedule.begin_experience(len(loader) * epochs)
    if steps is None:
        trainer.fit(module, train_dataloaders=training_batches(dataset, loaders, seed, sampler, loader, epochs))
    else:  # the epochs as one pass of one mini-batch per call, so the callback can checkpoint (and resume) at any step
        trainer.fit_loop.max_epochs = 1
        trainer.callbacks.append(steps)  # type: ignore[attr-defined]
        trainer.fit(module, train_dataloaders=BatchChunks(EpochsLoader(loader, epochs, steps.skip), 1))
    strategy.after_experience(module.model, experience)
    per_epoch = len(loader) * loaders.batch_size if loaders.drop_last else len(loader.sampler)  # type: ignore[arg-type]
    return per_epoch * epochs * trainer.world_size
