"""Several online mini-batches per Lightning ``training_step`` call give the updates of one mini-batch per step.

The reference is a bare PyTorch loop over the same loader: the strategy's loss, ``zero_grad``, ``backward``,
``step``, the strategy's memory update, one mini-batch at a time. The Lightning path must produce the same
per-step losses and the same final weights, bit for bit (CPU, fp32, fixed seed), for any chunk size, both through
Lightning's ``manual_backward`` and optimizer wrapper and on the direct update path (:mod:`lifelong.update_path`).
"""

from __future__ import annotations

import pytest
import torch

from lifelong import config
from lifelong.build import build_parts, loader_settings, trainer_factory
from lifelong.loop import make_loader, train_experience
from lifelong.module import ContinualModule

EXPERIENCES = 2  # the second one exercises replay from a filled memory and HPCR's distillation


def parts(method: str, per_call: int = 1) -> tuple[config.ExperimentConfig, list, ContinualModule]:
    overrides = [
        "stream.train_per_class=37",  # 74 samples a task: 8 batches, the last one partial
        "stream.test_per_class=1",
        "train.log_every_n_steps=1",
        f"train.batches_per_call={per_call}",
        "model.backbone_kwargs.hidden=[32]",
        "trainer.deterministic=true",
    ]
    cfg = config.load(f"experiments/fmnist_online_{method}.yaml", overrides)
    torch.manual_seed(0)
    stream, module = build_parts(cfg)
    module.strategy.setup(module.model, stream.info)
    return cfg, stream.train[:EXPERIENCES], module


def lightning_run(method: str, per_call: int, direct: bool) -> tuple[list[float], dict[str, torch.Tensor]]:
    """Losses and final weights through Lightning; ``direct=False`` forces Lightning's own update dispatch."""
    cfg, experiences, module = parts(method, per_call)
    module.direct_updates = None if direct else False
    losses: list[float] = []
    module.step_reporter = lambda step, metrics: losses.append(metrics["train/loss"])
    for experience in experiences:
        trainer = trainer_factory(cfg)()
        train_experience(module, experience, trainer, loader_settings(cfg))
        assert module._direct is direct  # the path this run claims to test was the one taken
        assert trainer.global_step == 8  # Lightning counted every update on either path
    return losses, module.model.state_dict()


def bare_run(method: str) -> tuple[list[float], dict[str, torch.Tensor]]:
    cfg, experiences, module = parts(method)
    model, strategy, settings = module.model, module.strategy, loader_settings(cfg)
    losses: list[float] = []
    model.train()
    for experience in experiences:
        strategy.before_experience(model, experience)
        optimizer = module.configure_optimizers()
        seed = settings.seed + experience.index
        for batch in make_loader(experience.dataset, settings.batch_size, True, 0, seed):
            output = strategy.training_loss(model, batch)
            optimizer.zero_grad()
            output.loss.backward()
            optimizer.step()
            with torch.no_grad():
                strategy.after_training_step(model, batch, output)
            losses.append(float(output.loss.detach()))
        strategy.after_experience(model, experience)
    return losses, model.state_dict()


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "lightning-dispatch"])
@pytest.mark.parametrize("method", ["er", "hpcr"])
def test_chunked_steps_match_a_bare_loop_step_by_step(method, direct):
    reference_losses, reference_weights = bare_run(method)
    assert len(reference_losses) == 8 * EXPERIENCES
    for per_call in (1, 3, 16):  # one per call; chunks with a short last one; the whole task in one call
        losses, weights = lightning_run(method, per_call, direct)
        assert losses == reference_losses, f"batches_per_call={per_call}"
        assert weights.keys() == reference_weights.keys()
        for name, value in weights.items():
            assert torch.equal(value, reference_weights[name]), f"batches_per_call={per_call}: {name} differs"
