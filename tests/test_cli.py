import signal

import pytest

from lifelong.cli import main, parse_args
from lifelong.signals import StopRequest


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


def test_overrides_may_follow_options():
    args = parse_args(["run", "x.yaml", "a=1", "--seeds", "0,1", "b=2", "--quiet", "c=3"])
    assert (args.config, args.overrides, args.seeds, args.quiet) == ("x.yaml", ["a=1", "b=2", "c=3"], [0, 1], True)


def test_an_unknown_option_is_still_an_error(capsys):
    with pytest.raises(SystemExit) as stop:
        parse_args(["run", "x.yaml", "--nope"])
    assert stop.value.code == 2
    assert "unrecognized arguments: --nope" in capsys.readouterr().err


def test_every_rank_reports_the_signal_that_was_sent():
    """SIGTERM to rank 1 only: rank 0 (no signal of its own) stops with SIGTERM's name and exit code, not SIGINT's."""
    rank0, rank1 = StopRequest(), StopRequest()
    rank1.signum = signal.SIGTERM
    signals = [rank0.signum or 0, rank1.signum or 0]
    assert rank0.agree(lambda n: max(signals))
    assert rank1.agree(lambda n: max(signals))
    assert (rank0.interrupted().signal_name, rank0.interrupted().exit_code) == ("SIGTERM", 143)
    assert not StopRequest().agree(lambda n: n)
