"""The init stage: trained once per (init section, model, seed) through the shared module/Trainer, cached, shared."""

import pytest
import torch

from lifelong import config, init_stage
from lifelong.build import build_parts
from lifelong.errors import ConfigError
from lifelong.run import check_names

SMALL = "{train_per_task: 32, test_per_task: 8, tasks: [[0, 1], [2, 3]]}"


def cfg(tmp_path, *extra):
    return config.load(
        overrides=[
            "stream.dataset=av_synthetic",
            f"stream.params={SMALL}",
            "model.backbone=cavmae_tiny",
            "strategy.name=av_finetune",
            "optim.name=adam",
            "optim.lr=0.001",
            "train.batch_size=8",
            "train.drop_last=true",
            "seed=3",
            f"output_dir={tmp_path}",
            "init.dataset=av_synthetic",
            "init.params={train_per_task: 32, test_per_task: 8, tasks: [[4, 5]]}",
            "init.epochs=1",
            "init.avm_epochs=1",
            *extra,
        ]
    )


def test_init_is_trained_once_and_every_method_starts_from_it(tmp_path, monkeypatch):
    _, first = build_parts(cfg(tmp_path))
    files = list((tmp_path / "init").glob("init-*.pt"))
    assert len(files) == 1
    state = torch.load(files[0], weights_only=True)
    assert state["avm"], "the AVM warm-up result is stored"
    for k, v in first.model.state_dict().items():
        assert torch.equal(v, state["model"][k]), k
    monkeypatch.setattr(init_stage, "train_init", lambda *a, **k: pytest.fail("the cached checkpoint was not reused"))
    _, flava = build_parts(cfg(tmp_path, "strategy.name=flava", "strategy.params={memory_size: 8}"))
    for k, v in flava.model.state_dict().items():
        assert torch.equal(v, state["model"][k]), k
    for k, v in flava.strategy.avm.state_dict().items():  # FLAVA starts from the warmed-up AVM
        assert torch.equal(v, state["avm"][k]), k


def test_the_avm_warm_up_moves_only_the_avm(tmp_path):
    c = cfg(tmp_path, "init.epochs=0")  # no backbone training: the model stays at its seeded initialisation
    state = init_stage.train_init(c.init, c.model, lambda p: torch.optim.Adam(p, lr=1e-2), 8, 3, _trainer(c))
    torch.manual_seed(3)
    from lifelong.models.av_models import build_av_model

    fresh = build_av_model("cavmae_tiny")
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, state["model"][k]), f"backbone parameter {k} moved during the AVM warm-up"


def _trainer(c):
    from lifelong.build import trainer_factory

    return trainer_factory(c)


def test_the_key_changes_with_what_shapes_the_checkpoint(tmp_path):
    c = cfg(tmp_path)
    base = init_stage.init_key(c.init, c.model, c.seed)
    assert init_stage.init_key(cfg(tmp_path, "init.cache_dir=elsewhere").init, c.model, c.seed) == base
    assert init_stage.init_key(cfg(tmp_path, "init.epochs=2").init, c.model, c.seed) != base
    assert init_stage.init_key(c.init, c.model, 4) != base


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("init.epoch=1", "unknown config key 'init.epoch'.*did you mean 'epochs'"),
        ("init.model_kwargs={embed_dim: 32}", "may only change"),
        ("init.strategy=er", "init.strategy"),
        ("init.checkpoint=/nonexistent/init.pt", "does not exist"),
        ("init.params={tasks: [[0, 1]], colour: 3}", "init.params.colour"),
    ],
)
def test_bad_init_sections_are_named(tmp_path, override, message):
    def check_and_build():
        c = cfg(tmp_path, override)
        check_names(c)
        build_parts(c)

    with pytest.raises(ConfigError, match=message):
        check_and_build()
