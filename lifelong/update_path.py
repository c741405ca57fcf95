"""When one optimizer update may skip Lightning's per-update dispatch: the direct update path.

Each update of :class:`lifelong.module.ContinualModule` goes through ``manual_backward`` and Lightning's optimizer
wrapper. Their work is: the strategy's and the precision plugin's ``pre_backward`` / ``post_backward``, the
callbacks' and the module's ``on_before_backward`` / ``on_after_backward`` / ``on_before_optimizer_step`` hooks,
``LightningModule.backward``, the optimizer step inside the precision plugin's closure, and the profiler and
step-progress counters around the step. With one device, a precision plugin that neither scales the loss nor
wraps the step (``32-true``; ``bf16-mixed``, whose autocast applies to the forward, which Lightning still wraps),
no profiler and none of those hooks overridden, all of it but the counters is empty, and an update is exactly
``loss.backward()`` then ``optimizer.step()``: on a small model that dispatch is ~10% of the step.

Anything else keeps Lightning's path: DDP (its strategy prepares the reducer before each backward), ``16-mixed``
(gradient scaling), ``64-true``/``16-true`` and other plugins, a profiler, or a callback or module hook that
wants to see the update.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.utilities.model_helpers import is_overridden

UPDATE_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")


def plain_precision(plugin: Any) -> bool:
    """The plugin adds nothing to backward or the step: fp32, or autocast without a gradient scaler."""
    if type(plugin) is Precision:
        return True
    return type(plugin) is MixedPrecision and plugin.scaler is None


def update_hooks_overridden(trainer: L.Trainer) -> list[str]:
    """``Owner.hook`` for every callback or module hook that Lightning would call around an update."""
    owners: list[tuple[Any, type]] = [(callback, Callback) for callback in trainer.callbacks]  # type: ignore[attr-defined]
    owners.append((trainer.lightning_module, L.LightningModule))
    found = [
        f"{type(owner).__name__}.{hook}"
        for owner, base in owners
        for hook in UPDATE_HOOKS
        if is_overridden(hook, owner, base)
    ]
    if is_overridden("backward", trainer.lightning_module, L.LightningModule):
        found.append(f"{type(trainer.lightning_module).__name__}.backward")
    return found


def direct_updates_allowed(trainer: L.Trainer) -> bool:
    """Whether ``loss.backward()`` + ``optimizer.step()`` are exactly what Lightning's path would do (see above)."""
    strategy = trainer.strategy
    return (
        type(strategy) is SingleDeviceStrategy
        and plain_precision(strategy.precision_plugin)
        and isinstance(trainer.profiler, PassThroughProfiler)  # type: ignore[attr-defined]
        and not update_hooks_overridden(trainer)
    )


def direct_update(loss: Any, optimizer: Any) -> None:
    """One update on the direct path; ``optimizer`` is Lightning's wrapper, whose step counters still advance."""
    loss.backward()
    optimizer._on_before_step()  # the manual loop's counters (``trainer.global_step``), as the wrapper's step does
    optimizer.optimizer.step()
    optimizer._on_after_step()
