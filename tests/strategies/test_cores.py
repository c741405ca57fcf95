"""The real CoReS: fresh weights every step, cumulative data, the best-validation weights kept."""

from __future__ import annotations

import pytest
import torch

from lifelong import config
from lifelong.errors import ConfigError
from lifelong.models import build_model
from lifelong.run import run
from lifelong.strategies import build_strategy
from lifelong.strategies.cores import split_validation, validation_accuracy
from tests.compat_runs import TINY_COMPAT_RUN


@pytest.fixture
def simplex_model(digits_stream):
    torch.manual_seed(0)
    info = digits_stream.info
    return build_model("mlp", "dsimplex", info.num_classes, info.input_shape, backbone_kwargs={"hidden": [16]})


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_every_step_starts_from_fresh_weights_not_the_previous_ones(digits_stream, simplex_model):
    strategy = build_strategy("cores", seed=3)
    strategy.setup(simplex_model, digits_stream.info)
    strategy.before_experience(simplex_model, digits_stream.train[0])
    start_0 = weights(simplex_model)
    with torch.no_grad():  # "training": move every learnable weight far away
        for p in simplex_model.parameters():
            p.add_(5.0)
    trained_0 = weights(simplex_model)
    strategy.after_experience(simplex_model, digits_stream.train[0])
    strategy.before_experience(simplex_model, digits_stream.train[1])
    start_1 = weights(simplex_model)
    prototypes = "head.prototypes"
    assert torch.equal(start_1[prototypes], trained_0[prototypes])  # the fixed classifier is not re-drawn
    for name, value in start_1.items():
        if name == prototypes:
            continue
        assert not torch.allclose(value, trained_0[name]), f"{name} carried over from step 0"
        assert not torch.equal(value, start_0[name]), f"{name}: step 1 reuses step 0's initialisation"
        assert float(value.abs().max()) < 2.0, f"{name} is not a fresh initialisation"


def test_cumulative_training_data_and_held_out_validation(digits_stream, simplex_model):
    strategy = build_strategy("cores", val_fraction=0.2, seed=0)
    strategy.setup(simplex_model, digits_stream.info)
    for index in range(2):
        experience = digits_stream.train[index]
        strategy.before_experience(simplex_model, experience)
        train = strategy.train_dataset(experience)
        strategy.after_experience(simplex_model, experience)
    both = torch.cat([digits_stream.train[0].dataset.y, digits_stream.train[1].dataset.y])
    assert len(train) + len(strategy.validation) == len(both)
    assert set(train.y.tolist()) == set(both.tolist()) == set(strategy.validation.y.tolist())
    assert abs(len(strategy.validation) - 0.2 * len(both)) <= 4


def test_keeps_the_weights_of_the_best_validation_epoch(digits_stream, simplex_model):
    strategy = build_strategy("cores", val_fraction=0.3)
    strategy.setup(simplex_model, digits_stream.info)
    experience = digits_stream.train[0]
    strategy.before_experience(simplex_model, experience)
    strategy.train_dataset(experience)
    strategy.after_epoch(simplex_model)  # epoch 1: the fresh weights
    first = weights(simplex_model)
    with torch.no_grad():  # epoch 2: weights that predict one class only (worse on two classes)
        simplex_model.head.projection.weight.zero_()
    strategy.after_epoch(simplex_model)
    assert strategy.epoch_accuracies[1] < strategy.epoch_accuracies[0]
    strategy.after_experience(simplex_model, experience)
    assert all(torch.equal(simplex_model.state_dict()[k], v) for k, v in first.items())
    assert validation_accuracy(simplex_model, strategy.validation) == strategy.epoch_accuracies[0]


def test_split_validation_is_per_class_and_seeded(digits_stream):
    data = digits_stream.train[0].dataset
    train, val = split_validation(data, 0.25, seed=1)
    again, _ = split_validation(data, 0.25, seed=1)
    assert torch.equal(train.y, again.y)
    assert torch.equal(train.x, again.x)
    for cls in data.y.unique():
        assert int((val.y == cls).sum()) == round(0.25 * int((data.y == cls).sum()))


def test_old_replay_parameters_point_to_cores_replay():
    with pytest.raises(ValueError, match="'cores_replay'"):
        build_strategy("cores", memory_size=500)
    with pytest.raises(ValueError, match="val_fraction"):
        build_strategy("cores", val_fraction=1.0)


def test_end_to_end_run_retrains_from_scratch(tmp_path):
    overrides = [
        f"output_dir={tmp_path}",
        "tracking.enabled=false",
        "checkpoint.enabled=false",
        *TINY_COMPAT_RUN,
        "train.epochs=2",
    ]
    result = run(config.load("experiments/compat_fmnist_cores.yaml", overrides), quiet=True)
    assert 0.0 <= result.metrics["avg_acc"] <= 1.0
    with pytest.raises(ConfigError, match="cores_replay"):
        run(config.load("experiments/compat_fmnist_cores.yaml", [*overrides, "strategy.params.memory_size=500"]))
