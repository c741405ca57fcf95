"""Model replacement for the ER baseline (``strategy.params.replace_at``), as for the d-Simplex methods."""

from __future__ import annotations

import csv

import torch

from lifelong import config
from lifelong.models import build_model
from lifelong.run import run
from lifelong.strategies import build_strategy
from tests.compat_runs import TINY_COMPAT_RUN


def test_er_swaps_the_whole_model_in_at_the_scheduled_experience_only(digits_stream, tiny_model, tmp_path):
    info = digits_stream.info
    torch.manual_seed(1)
    other = build_model("mlp", "linear", info.num_classes, info.input_shape, backbone_kwargs={"hidden": [32]})
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in other.state_dict().items()}}, path)
    strategy = build_strategy("er", memory_size=20, replace_at={1: str(path)})
    strategy.setup(tiny_model, info)
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    strategy.before_experience(tiny_model, digits_stream.train[0])
    assert not strategy.replaced_now
    assert all(torch.equal(tiny_model.state_dict()[k], v) for k, v in before.items())
    x, y, t = digits_stream.train[0].dataset.__getitems__(list(range(8)))
    strategy.after_training_step(tiny_model, (x, y, t), strategy.training_loss(tiny_model, (x, y, t)))
    strategy.before_experience(tiny_model, digits_stream.train[1])
    assert strategy.replaced_now
    for name, value in other.state_dict().items():  # the learnable classifier too: ER has no fixed one
        assert torch.equal(tiny_model.state_dict()[name], value), name
    assert len(strategy.memory) == 8  # the replay memory is kept


def test_er_replacement_through_the_config(tmp_path):
    overrides = [
        f"output_dir={tmp_path}",
        "tracking.enabled=false",
        "checkpoint.enabled=false",
        *TINY_COMPAT_RUN,
    ]
    base = config.load("experiments/compat_fmnist_er.yaml", overrides)
    first = run(base, quiet=True)
    info_model = build_model("mlp", "linear", 10, (1, 28, 28), backbone_kwargs={"hidden": [256, 256]})
    path = tmp_path / "replacement.pt"
    torch.save(info_model.state_dict(), path)
    replaced = run(
        config.load("experiments/compat_fmnist_er.yaml", [*overrides, f"strategy.params.replace_at={{1: {path}}}"]),
        quiet=True,
    )
    rows = [list(csv.reader((r.run_dir / "compatibility_matrix.csv").open())) for r in (first, replaced)]
    assert rows[0][1] == rows[1][1]  # experience 0 is the same run
    assert rows[0][2] != rows[1][2]  # experience 1 started from the replacement


def test_bct_takes_the_swapped_in_head_as_its_old_classifier(digits_stream, tiny_model, tmp_path):
    info = digits_stream.info
    torch.manual_seed(2)
    other = build_model("mlp", "linear", info.num_classes, info.input_shape, backbone_kwargs={"hidden": [32]})
    path = tmp_path / "other.pt"
    torch.save(other.state_dict(), path)
    strategy = build_strategy("bct", memory_size=20, replace_at={1: str(path)})
    strategy.setup(tiny_model, info)
    strategy.before_experience(tiny_model, digits_stream.train[0])
    strategy.after_experience(tiny_model, digits_stream.train[0])
    strategy.before_experience(tiny_model, digits_stream.train[1])
    seen = digits_stream.train[0].classes
    assert torch.equal(strategy.old_weight[seen], other.head.weight[seen].detach())
