from lifelong.cli import main


def test_list_shows_every_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in (
        "er",
        "finetune",
        "joint",
        "digits",
        "fashion_mnist",
        "class_incremental",
        "reduced_resnet18",
        "timm:",
    ):
        assert name in out


def test_show_prints_resolved_config(capsys):
    assert main(["show", "experiments/fmnist_online_er.yaml", "strategy.params.memory_size=100"]) == 0
    out = capsys.readouterr().out
    assert "memory_size: 100" in out
    assert "batch_size: 10" in out
    assert "backbone: mlp" in out


def test_config_error_is_one_line_not_a_traceback(capsys):
    assert main(["run", "experiments/quickstart.yaml", "strategy.name=err"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: strategy.name='err'")
    assert "did you mean 'er'" in err
    assert "Traceback" not in err


def test_unknown_strategy_param_is_named(capsys):
    assert main(["run", "experiments/quickstart.yaml", "strategy.params.memory_sise=3"]) == 2
    assert "strategy.params.memory_sise" in capsys.readouterr().err
