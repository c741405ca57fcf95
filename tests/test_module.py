import pytest
import torch

from lifelong.errors import NonFiniteLossError
from lifelong.module import ContinualModule
from lifelong.strategies import StepOutput, build_strategy


def make_module(tiny_model):
    return ContinualModule(tiny_model, build_strategy("finetune"), lambda p: torch.optim.SGD(p, lr=0.1), 2, 3)


def test_reports_average_the_pending_losses_at_the_global_step(tiny_model):
    module = make_module(tiny_model)
    reports = []
    module.step_reporter = lambda step, metrics: reports.append((step, metrics))
    for value in (1.0, 2.0, 6.0):
        module._accumulate(StepOutput(loss=torch.tensor(value), parts={"ce": torch.tensor(value / 2)}))
        module.train_steps += 1
    module.flush_train_metrics()
    assert reports == [(3, {"train/loss": pytest.approx(3.0), "train/ce": pytest.approx(1.5)})]


def test_a_nan_that_slipped_past_the_step_check_is_caught_at_the_report(tiny_model):
    # On accelerators the per-step check is skipped (it would sync every step); the report catches it.
    module = make_module(tiny_model)
    for value in (1.0, float("nan")):
        module._accumulate(StepOutput(loss=torch.tensor(value)))
        module.train_steps += 1
    with pytest.raises(NonFiniteLossError, match="between global steps 0 and 2"):
        module.flush_train_metrics()
