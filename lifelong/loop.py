"""The outer loop over experiences (DESIGN §4): a fresh Trainer per experience, evaluation after each.

All continual-learning state lives in the module and its strategy; a Trainer only runs one
``fit`` (and the evaluations around it) and is then dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from lifelong.analysis import Analysis
from lifelong.data.types import Experience, Stream, TensorExperienceDataset, identity_collate
from lifelong.metrics.accuracy_matrix import AccuracyMatrix
from lifelong.module import ContinualModule

TrainerFactory = Callable[[], L.Trainer]


class LoopListener(Protocol):
    """What the loop reports; ``run.py`` connects it to printing and tracking."""

    def on_train_metrics(self, step: int, metrics: dict[str, float]) -> None: ...

    def on_evaluated(self, after: int, accuracies: list[float], matrix: AccuracyMatrix) -> None: ...

    def on_experience_end(self, experience: Experience, seconds: float, samples: int) -> None: ...

    def on_analysis(self, after: int, metrics: dict[str, float]) -> None: ...


@dataclass
class LoaderSettings:
    """How the loop turns datasets into loaders."""

    batch_size: int
    eval_batch_size: int
    num_workers: int = 0
    seed: int = 0


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, num_workers: int, seed: int) -> DataLoader:
    """A DataLoader; in-memory experience datasets are gathered a whole batch at a time."""
    batched = isinstance(dataset, TensorExperienceDataset)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        collate_fn=identity_collate if batched else None,  # type: ignore[arg-type]
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
        persistent_workers=num_workers > 0,
    )


def evaluate(trainer: L.Trainer, module: ContinualModule, loaders: list[DataLoader]) -> list[float]:
    """Accuracy of the current model on every test experience."""
    trainer.validate(module, dataloaders=loaders, verbose=False)
    return module.accuracies()


def run_stream(
    module: ContinualModule,
    stream: Stream,
    make_trainer: TrainerFactory,
    loaders: LoaderSettings,
    listener: LoopListener,
    analyses: Mapping[str, Analysis] | None = None,
) -> AccuracyMatrix:
    """Train ``module`` on each experience of ``stream`` in order and fill the accuracy matrix.

    The test stream is evaluated once before training (row "init", for forward transfer) and
    after every experience; the ``analyses`` run at each of those points too.
    """
    analyses = analyses or {}
    matrix = AccuracyMatrix(len(stream))
    test_loaders = [
        make_loader(e.dataset, loaders.eval_batch_size, False, loaders.num_workers, loaders.seed) for e in stream.test
    ]
    module.step_reporter = listener.on_train_metrics
    module.strategy.setup(module.model, stream.info)
    initial = evaluate(make_trainer(), module, test_loaders)
    matrix.set_initial(initial)
    listener.on_evaluated(-1, initial, matrix)
    run_analyses(-1, module, stream, analyses, listener)
    for experience in stream.train:
        started = time.perf_counter()
        samples = train_experience(module, experience, make_trainer(), loaders)
        seconds = time.perf_counter() - started
        accuracies = evaluate(make_trainer(), module, test_loaders)
        matrix.set_row(experience.index, accuracies)
        listener.on_experience_end(experience, seconds, samples)
        listener.on_evaluated(experience.index, accuracies, matrix)
        run_analyses(experience.index, module, stream, analyses, listener)
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


def train_experience(
    module: ContinualModule, experience: Experience, trainer: L.Trainer, loaders: LoaderSettings
) -> int:
    """One experience: the strategy's hooks around one ``fit``; returns the number of samples seen."""
    strategy = module.strategy
    strategy.before_experience(module.model, experience)
    dataset = strategy.train_dataset(experience)
    loader = make_loader(dataset, loaders.batch_size, True, loaders.num_workers, loaders.seed + experience.index)
    trainer.fit(module, train_dataloaders=loader)
    strategy.after_experience(module.model, experience)
    return len(dataset) * trainer.max_epochs  # type: ignore[arg-type, operator]
