"""Run any lifelong strategy inside Avalanche's own training loop (DESIGN §3).

``as_avalanche(strategy, model, optimizer, ...)`` returns a ``SupervisedTemplate`` whose
``train(experience)`` and ``eval(stream)`` drive the very same :class:`~lifelong.strategies.Strategy`
object that :class:`~lifelong.module.ContinualModule` drives under Lightning. Avalanche keeps its
loop, plugins, EvaluationPlugin and loggers; the strategy supplies the loss, the training data of
an experience and the prediction scores:

=====================================  ==================================================
Avalanche                              lifelong strategy
=====================================  ==================================================
first ``train`` call                   ``setup(model, stream_info)``
``train_dataset_adaptation``           ``before_experience`` then ``train_dataset``
``forward`` + ``criterion`` (train)    ``training_loss`` (``mb_output`` = its logits)
``after_training_iteration``           ``after_training_step`` (under ``no_grad``)
``after_training_epoch``               ``after_epoch``
``after_training_exp``                 ``after_experience``
``forward`` (eval)                     ``eval_logits``
=====================================  ==================================================

Each training experience is read once into memory with its eval transforms, as lifelong streams
are (``lifelong.data.experience_from_avalanche``): a strategy brings its own augmentation (HPCR
does), so Avalanche train-time transforms are not applied. Evaluation uses Avalanche's own data
loaders. This module imports Avalanche; ``import lifelong`` does not import this module.
"""

from __future__ import annotations

from typing import Any

import torch
from avalanche.training.templates import SupervisedTemplate
from torch import nn

from lifelong.data.avalanche_streams import experience_from_avalanche
from lifelong.data.types import Experience, StreamInfo
from lifelong.loop import make_loader
from lifelong.models.classifier import ContinualClassifier
from lifelong.strategies.base import StepOutput, Strategy

__all__ = ["LifelongTemplate", "as_avalanche", "stream_info_of"]


def stream_info_of(experience: Any, model: ContinualClassifier) -> StreamInfo:
    """What ``Strategy.setup`` needs, read from an Avalanche experience's origin stream and the model."""
    stream = list(experience.origin_stream)
    classes = [_classes_of(exp) for exp in stream]
    x = experience.dataset.eval()[0][0]
    return StreamInfo(
        scenario="task_incremental" if model.multi_head else "class_incremental",
        num_classes=model.num_classes,
        n_experiences=len(stream),
        input_shape=tuple(x.shape),
        classes_per_experience=classes,
    )


def _classes_of(experience: Any) -> list[int]:
    """The classes of an experience: its class timeline when the benchmark has one, else its targets."""
    known = getattr(experience, "classes_in_this_experience", None)
    values = known if known is not None else experience.dataset.targets
    return sorted({int(c) for c in values})


class LifelongTemplate(SupervisedTemplate):
    """A ``SupervisedTemplate`` whose loss, training data and predictions come from a lifelong strategy.

    Args:
        strategy: any registered classification strategy (``lifelong.strategies.build_strategy``).
        model: the ``ContinualClassifier`` the strategy trains.
        optimizer: the optimizer over ``model``'s parameters (Avalanche resets or keeps it as usual).
        stream_info: the stream's description for ``Strategy.setup``; read from the first training
            experience's origin stream when omitted.
        seed: seeds the shuffling of the training loader (one order per experience index).
        **template_kwargs: passed to ``SupervisedTemplate`` (``train_mb_size``, ``train_epochs``,
            ``eval_mb_size``, ``device``, ``plugins``, ``evaluator``, ``eval_every``).

    """

    def __init__(
        self,
        *,
        strategy: Strategy,
        model: ContinualClassifier,
        optimizer: torch.optim.Optimizer,
        stream_info: StreamInfo | None = None,
        seed: int = 0,
        **template_kwargs: Any,
    ) -> None:
        if not isinstance(model, ContinualClassifier):
            raise TypeError(
                "model must be a lifelong ContinualClassifier (lifelong.models.build_model), "
                f"got {type(model).__name__}"
            )
        super().__init__(model=model, optimizer=optimizer, criterion=nn.CrossEntropyLoss(), **template_kwargs)
        self.lifelong_strategy = strategy.to(self.device)
        self.stream_info = stream_info
        self.seed = seed
        self._is_set_up = False
        self._experience: Experience | None = None
        self._step: StepOutput | None = None

    # ----------------------------------------------------------------- experience boundaries
    def train_dataset_adaptation(self, **kwargs: Any) -> None:
        """Convert the experience, run ``before_experience`` and train on the strategy's dataset."""
        assert self.experience is not None
        model = self._classifier()
        if not self._is_set_up:
            self.stream_info = self.stream_info or stream_info_of(self.experience, model)
            self.lifelong_strategy.setup(model, self.stream_info)
            self._optimize_strategy_parameters()
            self._is_set_up = True
        index = int(self.experience.current_experience)
        self._experience = experience_from_avalanche(self.experience, index, f"training experience {index}")
        self.lifelong_strategy.before_experience(model, self._experience)
        self.adapted_dataset = self.lifelong_strategy.train_dataset(self._experience)

    def _optimize_strategy_parameters(self) -> None:
        """Add the strategy's own trainable parameters (e.g. SCR's projection head) to the optimizer.

        Under Lightning they are part of the module; here the user's optimizer only knows the model.
        """
        known = {id(p) for group in self.optimizer.param_groups for p in group["params"]}
        extra = [p for p in self.lifelong_strategy.parameters() if p.requires_grad and id(p) not in known]
        if extra:
            self.optimizer.add_param_group({"params": extra})

    def make_train_dataloader(self, num_workers: int = 0, shuffle: bool = True, **kwargs: Any) -> None:
        """Batches of ``(x, y, t)`` tensors from the strategy's dataset (lifelong's loader)."""
        assert self._experience is not None
        seed = self.seed + self._experience.index
        self.dataloader = make_loader(self.adapted_dataset, self.train_mb_size, shuffle, num_workers, seed)

    def _after_training_epoch(self, **kwargs: Any) -> None:
        self.lifelong_strategy.after_epoch(self._classifier())
        super()._after_training_epoch(**kwargs)

    def _after_training_exp(self, **kwargs: Any) -> None:
        assert self._experience is not None
        self.lifelong_strategy.after_experience(self._classifier(), self._experience)
        super()._after_training_exp(**kwargs)

    # ------------------------------------------------------------------------- iterations
    def forward(self) -> torch.Tensor:
        """Training: the strategy's step (its logits for the incoming batch); eval: ``eval_logits``."""
        model = self._classifier()
        x, y, t = self._batch()
        if not self.is_training:
            return self.lifelong_strategy.eval_logits(model, x, t)
        self._step = self.lifelong_strategy.training_loss(model, (x, y, t))
        if self._step.logits is not None:
            return self._step.logits
        with torch.no_grad():
            return model(x, t)

    def criterion(self) -> torch.Tensor:
        """Training: the strategy's loss; eval: cross-entropy of the evaluation scores."""
        if self.is_training:
            assert self._step is not None
            return self._step.loss
        return super().criterion()

    def _after_training_iteration(self, **kwargs: Any) -> None:
        assert self._step is not None
        batch = self._batch()
        with torch.no_grad():
            self.lifelong_strategy.after_training_step(self._classifier(), batch, self._step)
        self._step = None
        super()._after_training_iteration(**kwargs)

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x, y, t)`` of the current mini-batch; task label 0 when the benchmark's samples carry none."""
        assert self.mbatch is not None
        x, y = self.mbatch[0], self.mbatch[1]
        t = self.mbatch[2] if len(self.mbatch) >= 3 else torch.zeros_like(y)
        return x, y, t

    def _classifier(self) -> ContinualClassifier:
        model = self.model
        assert isinstance(model, ContinualClassifier)
        return model


def as_avalanche(
    strategy: Strategy,
    model: ContinualClassifier,
    optimizer: torch.optim.Optimizer,
    *,
    train_mb_size: int = 32,
    train_epochs: int = 1,
    eval_mb_size: int = 256,
    device: str | torch.device = "cpu",
    **template_kwargs: Any,
) -> LifelongTemplate:
    """Wrap a lifelong strategy as an Avalanche ``SupervisedTemplate`` (see the module docstring).

    Example (an Avalanche benchmark ``benchmark`` with 10 classes of 1x28x28 images)::

        from lifelong.interop.avalanche import as_avalanche
        from lifelong.models import build_model
        from lifelong.strategies import build_strategy

        model = build_model("mlp", "linear", num_classes=10, input_shape=(1, 28, 28))
        learner = as_avalanche(
            build_strategy("er", memory_size=200),
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            train_mb_size=10,
            evaluator=EvaluationPlugin(accuracy_metrics(experience=True), loggers=[MlflowLogger(...)]),
        )
        for experience in benchmark.train_stream:
            learner.train(experience)
            learner.eval(benchmark.test_stream)

    """
    return LifelongTemplate(
        strategy=strategy,
        model=model,
        optimizer=optimizer,
        train_mb_size=train_mb_size,
        train_epochs=train_epochs,
        eval_mb_size=eval_mb_size,
        device=device,
        **template_kwargs,
    )
