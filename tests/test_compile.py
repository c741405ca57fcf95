"""``trainer.compile``: every classifier strategy trains and evaluates with a compiled backbone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lifelong import config
from lifelong.build import trainer_factory
from lifelong.compile import compile_backbone
from lifelong.loop import LoaderSettings, evaluate, train_experience
from lifelong.models import build_model
from lifelong.module import ContinualModule
from lifelong.strategies import STRATEGIES, build_strategy, strategy_names


class CountingBackend:
    """A torch.compile backend that runs each captured graph eagerly and counts the graphs it was given."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, graph: torch.fx.GraphModule, example_inputs: list) -> object:
        self.graphs += 1
        return graph.forward


def trained(name: str, stream, compiled: bool) -> tuple[ContinualModule, CountingBackend]:
    torch.manual_seed(0)
    torch._dynamo.reset()
    info = stream.info
    head = STRATEGIES.get(name).requires_head or "linear"
    model = build_model("mlp", head, info.num_classes, info.input_shape, backbone_kwargs={"hidden": [32]})
    keys = list(model.state_dict())
    backend = CountingBackend()
    if compiled:
        assert compile_backbone(model, backend)
        assert list(model.state_dict()) == keys  # in place: checkpoints and teachers see the same module
    strategy = build_strategy(name)
    module = ContinualModule(model, strategy, lambda p: torch.optim.SGD(p, lr=0.1), len(stream))
    strategy.setup(model, info)
    make = trainer_factory(config.load(overrides=["train.epochs=1"]))
    settings = LoaderSettings(batch_size=32, eval_batch_size=100)
    for experience in stream.train[:2]:
        train_experience(module, experience, make(1), settings)
    evaluate(make(1), module, stream, settings)
    return module, backend


@pytest.mark.parametrize("name", strategy_names("classifier"))
def test_every_classifier_strategy_runs_compiled(name, digits_stream):
    module, backend = trained(name, digits_stream, compiled=True)
    assert backend.graphs >= 1, "the backbone never went through torch.compile"
    assert all(0.0 <= a <= 1.0 for a in module.accuracies())


def test_a_compiled_backbone_gives_the_eager_updates(digits_stream):
    eager, _ = trained("er", digits_stream, compiled=False)
    compiled, _ = trained("er", digits_stream, compiled=True)
    for (name, a), b in zip(eager.model.state_dict().items(), compiled.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_a_model_without_backbone_runs_uncompiled_with_a_warning():
    with pytest.warns(UserWarning, match="no classifier backbone to compile; it runs uncompiled"):
        assert not compile_backbone(nn.Linear(2, 2))
