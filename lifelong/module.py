"""ContinualModule: the LightningModule that drives a model and a Strategy (DESIGN §3, §4)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import lightning as L
import torch
from torch import nn

from lifelong.annealing import InfiniteLR
from lifelong.errors import NonFiniteLossError
from lifelong.loss_sums import LossSums
from lifelong.metrics.evaluators import AccuracyEvaluator, Evaluator
from lifelong.minibatches import mini_batches
from lifelong.optimizer_carry import CarriedOptimizer
from lifelong.progress import LiveBar
from lifelong.signals import StopRequest
from lifelong.strategies.base import StepOutput, Strategy
from lifelong.update_path import direct_update, direct_updates_allowed

OptimizerFactory = Callable[[Iterator[nn.Parameter]], torch.optim.Optimizer]
StepReporter = Callable[[int, dict[str, float]], None]


class ContinualModule(L.LightningModule):
    """Model + strategy + evaluator. Lightning owns precision, devices and DDP; the strategy owns the CL logic.

    The only LightningModule of the suite: a classifier with a classification strategy and an audio-video
    model with a pretraining strategy go through the same steps; the batch is whatever the stream yields.

    Args:
        model: the model being trained (a ``ContinualClassifier`` or an audio-video model).
        strategy: the continual-learning method.
        optimizer: builds the optimizer over the parameters at the start of every experience.
        n_eval_experiences: number of test experiences evaluated by ``validate``.
        log_every_n_steps: average the training losses over this many steps per report.
        evaluator: scores each ``validate`` pass (default: accuracy over ``n_eval_experiences``).
        lr_schedule: sets each step's learning rate (``optim.schedule``); ``None``: the optimizer's own.
        carry_optimizer_state: each experience's optimizer starts from the state the previous one ended with
            (``optim.fresh_per_experience: false``; :mod:`lifelong.optimizer_carry`).

    """

    train_steps: torch.Tensor
    model: Any  # a ContinualClassifier, or an audio-video model: the strategy knows which

    def __init__(
        self,
        model: nn.Module,
        strategy: Strategy,
        optimizer: OptimizerFactory,
        n_eval_experiences: int,
        log_every_n_steps: int = 20,
        evaluator: Evaluator | None = None,
        lr_schedule: InfiniteLR | None = None,
        carry_optimizer_state: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.strategy = strategy
        self.optimizer_factory = optimizer
        self.log_every_n_steps = log_every_n_steps
        self.evaluator = evaluator if evaluator is not None else AccuracyEvaluator(n_eval_experiences)
        self.lr_schedule = lr_schedule
        self.optimizer_carry = CarriedOptimizer(carry_optimizer_state)
        self.register_buffer("train_steps", torch.zeros((), dtype=torch.long))
        self.automatic_optimization = False  # one update per mini-batch in ``training_step`` (see there)
        self.step_reporter: StepReporter | None = None
        self.progress: LiveBar | None = None  # the live bar of an interactive terminal (rank 0)
        self.stop_request: StopRequest | None = None
        self.loss_sums = LossSums()  # since the last report; a checkpoint inside an experience saves them
        self.direct_updates: bool | None = None  # None: decided per fit (:mod:`lifelong.update_path`); False: never
        self._direct = False

    def setup(self, stage: str) -> None:
        """Shard the strategy's memories for this rank and keep all strategy buffers out of DDP's broadcasts.

        DDP copies rank 0's buffers to every rank when it wraps the model and before each forward;
        a strategy's buffers (replay memories, counters) are rank-local, so they are excluded.
        """
        self.strategy.distribute(self.global_rank, self.trainer.world_size)
        self._ddp_params_and_buffers_to_ignore = [f"strategy.{name}" for name, _ in self.strategy.named_buffers()]

    def on_train_start(self) -> None:
        self._direct = self.direct_updates is not False and direct_updates_allowed(self.trainer)
        if self.stop_request is not None:
            self.stop_request.arm()
        if self.progress is not None and self.global_rank == 0:
            info = self.strategy.stream_info
            loader = self.trainer.train_dataloader  # a BatchChunks: its mini-batches are the steps
            self.progress.on_fit_start(
                self.strategy.experience_index,
                info.n_experiences if info is not None else 0,
                getattr(loader, "batches", 0) * int(self.trainer.max_epochs or 1),
                getattr(loader, "batch_size", None),
            )

    def on_validation_start(self) -> None:
        if self.stop_request is not None:
            self.stop_request.arm()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        optimizer = self.optimizer_factory(p for p in self.parameters() if p.requires_grad)
        return self.optimizer_carry.attach(optimizer, self.strategy.experience_index)

    def get_extra_state(self) -> dict[str, Any]:
        """The carried optimizer state (empty unless ``optim.fresh_per_experience`` is false)."""
        return self.optimizer_carry.state()

    def set_extra_state(self, state: Any) -> None:
        self.optimizer_carry.load(state)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Load a state; one saved before the module had an extra state (no ``_extra_state``) loads as empty."""
        if "_extra_state" not in state_dict:
            state_dict = {**state_dict, "_extra_state": {}}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        """Consecutive mini-batches (:mod:`lifelong.minibatches`): one optimizer update each, in order.

        Optimisation is manual so that several online mini-batches share one call of Lightning's per-step machinery;
        every update still goes through Lightning (``manual_backward`` and the optimizer wrapper), so precision
        plugins, gradient scaling and DDP's gradient reduction apply to each as they would to an automatic step.
        Where that dispatch is provably empty (one device, fp32 or bf16 autocast, no hooks, no profiler), an
        update calls ``backward`` and the optimizer's step directly (:mod:`lifelong.update_path`).
        """
        optimizer = self.optimizers()
        for one in mini_batches(batch):
            self._update(one, optimizer)

    def _update(self, batch: Any, optimizer: Any) -> None:
        """One optimizer update on one mini-batch, then the strategy's memory update and the step's bookkeeping."""
        if self.lr_schedule is not None:  # this step's learning rate (``optim.schedule``)
            lr = self.lr_schedule.next_lr(self)
            for group in optimizer.param_groups:
                group["lr"] = lr
        output = self.strategy.training_loss(self.model, batch)
        loss_value = None
        if output.loss.device.type == "cpu":  # free on CPU; on accelerators checked per report (no sync per step)
            loss_value = output.loss.detach().item()
            self._check_finite(loss_value)
        optimizer.zero_grad()
        if self._direct:
            direct_update(output.loss, optimizer)
        else:
            self.manual_backward(output.loss)
            optimizer.step()
        self._accumulate(output, loss_value)
        with torch.no_grad():
            self.strategy.after_training_step(self.model, batch, output)
        self.train_steps.add_(1)  # in place: no module attribute assignment per step
        if self.progress is not None and self.global_rank == 0:
            self.progress.on_step()
        if self.loss_sums.steps >= self.log_every_n_steps:
            self.flush_train_metrics()
        if self.stop_request is not None and self._stop_agreed(self.stop_request.requested):
            self.flush_train_metrics()
            raise self.stop_request.interrupted()

    def _stop_agreed(self, requested: bool) -> bool:
        """Whether any rank was asked to stop (one small all-reduce per step under DDP, so all ranks stop together)."""
        if self.trainer.world_size > 1 and self.stop_request is not None:
            reduce = self.trainer.strategy.reduce
            return self.stop_request.agree(lambda n: int(reduce(torch.tensor(n, device=self.device), None, "max")))
        return requested

    def on_train_epoch_end(self) -> None:
        self.strategy.after_epoch(self.model)

    def on_train_end(self) -> None:
        self.flush_train_metrics()
        self.optimizer_carry.detach()

    def _check_finite(self, loss: torch.Tensor | float, where: str | None = None) -> None:
        """Raise ``NonFiniteLossError`` if ``loss`` is not finite; ``where`` defaults to the current global step."""
        value = loss if isinstance(loss, float) else loss.detach().float().mean()
        if not math.isfinite(value):  # a tensor: read once (a sync on accelerators, so not done per step there)
            where = where or f"global step {int(self.train_steps)}"
            raise NonFiniteLossError(
                f"training loss is {float(value)} at experience "
                f"{self.strategy.experience_index}, {where}; lower optim.lr, check the data for NaNs, "
                "or use trainer.precision=32-true"
            )

    def _accumulate(self, output: StepOutput, loss_value: float | None = None) -> None:
        """Add this step's losses to the pending sums: Python floats on CPU, on-device tensors elsewhere (no sync).

        ``loss_value``: the loss already read as a float on CPU (it is not read twice); ``None`` (accelerators):
        the values stay tensors, read when reported.
        """
        on_cpu = loss_value is not None
        values: dict[str, Any] = {"train/loss": loss_value if on_cpu else output.loss.detach().float()}
        for key, value in output.parts.items():
            values[f"train/{key}"] = value.detach().item() if on_cpu else value.detach().float()
        self.loss_sums.add(values)

    def flush_train_metrics(self) -> None:
        """Report the mean of the pending training losses at the current global step."""
        pending = self.loss_sums
        if pending.steps and "train/loss" in pending.sums:  # checked before they are taken: a failure keeps them
            first = int(self.train_steps) - pending.steps
            self._check_finite(pending.sums["train/loss"], f"between global steps {first} and {int(self.train_steps)}")
        sums, steps = pending.take()
        if steps and self.step_reporter is not None:
            self.step_reporter(int(self.train_steps), {k: float(v) / steps for k, v in sums.items()})

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.evaluator.update(self.model, self.strategy, batch, dataloader_idx)

    def on_validation_epoch_start(self) -> None:
        self.evaluator.reset()

    def eval_totals(self) -> list[int]:
        """How many test samples the last ``validate`` scored per test experience (summed over ranks)."""
        return self.evaluator.totals()

    def scores(self) -> dict[str, list[float]]:
        """Score name -> one value per test experience, from the last ``validate`` (reduced over ranks)."""
        return self.evaluator.compute()

    def accuracies(self) -> list[float]:
        """Sample-weighted accuracy per test experience from the last ``validate`` (an accuracy evaluator's)."""
        return self.scores()["acc"]
