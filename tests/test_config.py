from pathlib import Path

import pytest

from lifelong import ConfigError, config

EXPERIMENTS = sorted(Path(__file__).parents[1].joinpath("experiments").glob("[!_]*.yaml"))


def test_defaults_and_overrides_merge():
    cfg = config.load(overrides=["strategy.name=er", "strategy.params.memory_size=200", "optim.lr=0.05"])
    assert cfg.strategy.name == "er"
    assert cfg.strategy.params == {"memory_size": 200}
    assert cfg.optim.lr == pytest.approx(0.05)
    assert cfg.run_name == "er-digits-s0"


def test_yaml_extends_parent_and_child_wins(tmp_path):
    (tmp_path / "base.yaml").write_text("name: base\noptim: {lr: 0.3, momentum: 0.9}\ntrain: {epochs: 4}\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nname: child\noptim: {lr: 0.01}\n")
    cfg = config.load(tmp_path / "child.yaml", ["train.epochs=2"])
    assert (cfg.name, cfg.optim.lr, cfg.optim.momentum, cfg.train.epochs) == ("child", 0.01, 0.9, 2)


def test_extends_cycle_is_an_error(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        config.load(tmp_path / "a.yaml")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["optim.lrr=0.1"], r"'optim.lrr'.*did you mean 'lr'"),
        (["strem.dataset=digits"], r"'strem'.*did you mean 'stream'"),
        (["train.epochs=three"], r"train.epochs.*expected int"),
        (["stream.n_experiences=0"], r"stream.n_experiences=0"),
        (["trainer.precision=bf16"], r"trainer.precision='bf16'.*did you mean"),
        (["optim.name=sgdd"], r"optim.name='sgdd'.*did you mean 'sgd'"),
        (["epochs"], r"key=value"),
    ],
)
def test_bad_values_name_the_key(overrides, expected):
    with pytest.raises(ConfigError, match=expected):
        config.load(overrides=overrides)


def test_typo_in_yaml_names_the_file(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("stream:\n  datasett: digits\n")
    with pytest.raises(ConfigError, match=r"stream.datasett.*x.yaml.*did you mean 'dataset'"):
        config.load(path)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(tmp_path / "bad.yaml")


def test_flatten_gives_dotted_params():
    flat = config.flatten(config.load(overrides=["strategy.params.memory_size=7"]))
    assert flat["strategy.params.memory_size"] == "7"
    assert flat["stream.dataset"] == "digits"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_every_experiment_yaml_loads_and_names_exist(path):
    from lifelong.run import check_names

    cfg = config.load(path)
    check_names(cfg)
    assert cfg.name


def test_naming_another_strategy_drops_the_old_strategys_params(tmp_path):
    (tmp_path / "base.yaml").write_text("strategy: {name: er, params: {memory_size: 100}}\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nstrategy: {name: finetune}\n")
    assert config.load(tmp_path / "child.yaml").strategy.params == {}
    assert config.load(tmp_path / "base.yaml", ["strategy.name=joint"]).strategy.params == {}
    kept = config.load(tmp_path / "base.yaml", ["strategy.params.replay_batch_size=5"])
    assert kept.strategy.params == {"memory_size": 100, "replay_batch_size": 5}
    renamed = config.load(tmp_path / "base.yaml", ["strategy.name=er", "strategy.params.memory_size=7"])
    assert renamed.strategy.params == {"memory_size": 7}


def test_naming_another_backbone_or_head_drops_the_old_ones_kwargs():
    cfg = config.load("quickstart", ["model.backbone=timm:resnet18"])
    assert (cfg.model.backbone, cfg.model.backbone_kwargs) == ("timm:resnet18", {})
    kept = config.load("quickstart", ["model.backbone=mlp"])
    assert kept.model.backbone_kwargs == {"hidden": [256, 256]}
    head = config.load("quickstart", ["model.head=cosine", "model.head_kwargs={scale: 16.0}", "model.head=linear"])
    assert head.model.head_kwargs == {"scale": 16.0}  # one layer: its own kwargs are kept


def test_null_clears_a_mapping_of_arguments():
    assert config.load("quickstart", ["model.backbone_kwargs=null"]).model.backbone_kwargs == {}
    assert config.load("quickstart", ["strategy.params=null"]).strategy.params == {}
    merged = config.load("quickstart", ["model.backbone_kwargs={}"]).model.backbone_kwargs
    assert merged == {"hidden": [256, 256]}  # {} merges (nothing to add); null replaces


def test_a_negative_step_checkpoint_interval_is_refused():
    with pytest.raises(ConfigError, match=r"checkpoint.every_n_steps=-1 is not allowed; use 0 \(off\)"):
        config.load("experiments/quickstart.yaml", ["checkpoint.every_n_steps=-1"])
    assert config.load("experiments/quickstart.yaml", []).checkpoint.every_n_steps == 0  # off by default
