"""When an update skips Lightning's per-update dispatch (``lifelong.update_path``); hooks still run when it does not."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from lifelong import config
from lifelong.build import build_parts, loader_settings, trainer_factory
from lifelong.loop import train_experience
from lifelong.module import ContinualModule
from lifelong.update_path import plain_precision, update_hooks_overridden


class BackwardCounter(L.Callback):
    """Counts Lightning's ``on_after_backward`` and ``on_before_optimizer_step`` calls."""

    def __init__(self) -> None:
        self.backwards = self.steps = 0

    def on_after_backward(self, trainer, pl_module) -> None:  # noqa: ANN001
        self.backwards += 1

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:  # noqa: ANN001
        self.steps += 1


def one_experience(
    overrides: list[str],
    callbacks: list[L.Callback] | None = None,
    trainer: L.Trainer | None = None,
    direct_updates: bool | None = None,
) -> tuple[ContinualModule, L.Trainer]:
    """ER on the first Split Fashion-MNIST task (40 samples, batches of 10: 4 updates) with ``overrides``."""
    base = ["stream.train_per_class=20", "stream.test_per_class=1", "model.backbone_kwargs.hidden=[16]"]
    cfg = config.load("experiments/fmnist_online_er.yaml", [*base, *overrides])
    torch.manual_seed(0)
    stream, module = build_parts(cfg)
    module.direct_updates = direct_updates
    module.strategy.setup(module.model, stream.info)
    trainer = trainer or trainer_factory(cfg)()
    for callback in callbacks or []:
        trainer.callbacks.append(callback)
    train_experience(module, stream.train[0], trainer, loader_settings(cfg))
    return module, trainer


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_plain_precision_on_one_device_takes_the_direct_path(precision):
    module, trainer = one_experience([f"trainer.precision={precision}"])
    assert module._direct
    assert trainer.global_step == 4  # the manual loop's step counter still advanced once per update


def test_a_callback_that_watches_updates_keeps_lightnings_path_and_sees_every_update():
    counter = BackwardCounter()
    module, trainer = one_experience([], [counter])
    assert not module._direct
    assert update_hooks_overridden(trainer) == [
        "BackwardCounter.on_after_backward",
        "BackwardCounter.on_before_optimizer_step",
    ]
    assert (counter.backwards, counter.steps) == (4, 4)


def test_a_profiler_or_a_non_plain_precision_keeps_lightnings_path():
    module, _ = one_experience(["trainer.precision=64-true"])
    assert not module._direct
    profiled = L.Trainer(
        max_epochs=1, profiler="simple", logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    module, trainer = one_experience([], trainer=profiled)
    assert not module._direct
    assert trainer.global_step == 4


def test_plain_precision_is_fp32_or_autocast_without_a_scaler():
    from lightning.pytorch.plugins.precision import DoublePrecision, MixedPrecision, Precision

    assert plain_precision(Precision())
    assert plain_precision(MixedPrecision("bf16-mixed", "cpu"))
    assert not plain_precision(MixedPrecision("16-mixed", "cuda", scaler=torch.amp.GradScaler("cuda", enabled=False)))
    assert not plain_precision(DoublePrecision())


def test_direct_updates_false_forces_lightnings_path():
    module, _ = one_experience([], direct_updates=False)
    assert not module._direct
