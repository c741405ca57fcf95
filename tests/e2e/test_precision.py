"""Mixed precision on CPU: bf16-mixed end to end, and every strategy keeps its stored targets in fp32."""

from __future__ import annotations

import pytest
import torch
from mlflow.tracking import MlflowClient

from lifelong import config
from lifelong.loop import LoaderSettings, train_experience
from lifelong.models import build_model
from lifelong.module import ContinualModule
from lifelong.run import run, trainer_factory
from lifelong.strategies import STRATEGIES, build_strategy, strategy_names


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])  # 16-mixed becomes bf16-mixed on CPU (Lightning)
def test_mixed_precision_runs_end_to_end_on_cpu(precision, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = config.load(
        "experiments/quickstart.yaml",
        [
            f"output_dir={tmp_path}",
            f"tracking.uri={uri}",
            f"trainer.precision={precision}",
            "model.backbone_kwargs={hidden: [64]}",
            "train.epochs=2",
        ],
    )
    result = run(cfg, quiet=True)
    assert result.matrix.is_complete
    assert result.metrics["avg_acc"] > 0.4  # chance is 0.1
    logged = MlflowClient(uri).get_run(result.run_id)
    assert logged.data.tags["precision"] == precision
    losses = [m.value for m in MlflowClient(uri).get_metric_history(result.run_id, "train/loss")]
    assert losses
    assert all(torch.isfinite(torch.tensor(losses)))


@pytest.mark.parametrize("name", strategy_names("classifier"))
def test_every_strategy_trains_under_bf16_and_stores_fp32(name, digits_stream):
    info = digits_stream.info
    head = STRATEGIES.get(name).requires_head or "linear"
    model = build_model("mlp", head, info.num_classes, info.input_shape, backbone_kwargs={"hidden": [32]})
    strategy = build_strategy(name)
    autocast = []
    loss_of = strategy.training_loss

    def training_loss(model, batch):
        autocast.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return loss_of(model, batch)

    strategy.training_loss = training_loss
    module = ContinualModule(model, strategy, lambda p: torch.optim.SGD(p, lr=0.05), len(digits_stream))
    losses = []
    module.step_reporter = lambda step, metrics: losses.append(metrics["train/loss"])
    strategy.setup(model, info)
    make = trainer_factory(config.load(overrides=["trainer.precision=bf16-mixed"]))
    for experience in digits_stream.train[:2]:
        train_experience(module, experience, make(), LoaderSettings(batch_size=64, eval_batch_size=256))
    assert autocast
    assert all(autocast)
    assert losses
    assert all(torch.isfinite(torch.tensor(losses)))
    low = {
        k: v.dtype
        for k, v in strategy.state_dict().items()
        if torch.is_tensor(v) and v.dtype in (torch.bfloat16, torch.float16)
    }
    assert not low, f"{name} keeps half-precision state (targets must be fp32): {low}"
    assert all(p.dtype == torch.float32 for p in model.parameters())
