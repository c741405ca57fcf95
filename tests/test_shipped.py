from pathlib import Path

import pytest

from lifelong import config, shipped
from lifelong.cli import main
from lifelong.errors import ConfigError

ROOT = Path(__file__).parents[1]


def test_shipped_folder_is_the_clone_experiments_folder():
    assert shipped.experiments_dir().resolve() == (ROOT / "experiments").resolve()
    assert "quickstart" in shipped.shipped_names()
    assert "pretrain/flava_av_digits" in shipped.shipped_names()
    assert not [n for n in shipped.shipped_names() if Path(n).name.startswith("_")]


@pytest.mark.parametrize("name", ["quickstart", "quickstart.yaml", "experiments/quickstart.yaml"])
def test_bare_names_resolve_from_any_folder(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config.load(name).name == "quickstart"


def test_a_shipped_child_follows_extends_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config.load("fmnist_online_er").stream.dataset == "fashion_mnist"


def test_a_local_file_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quickstart.yaml").write_text("name: mine\n")
    assert config.load("quickstart.yaml").name == "mine"


def test_unknown_name_suggests_and_lists(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"did you mean 'quickstart'\?.*lifelong list"):
        shipped.resolve("quickstrat")
    assert main(["show", "quickstrat"]) == 2
    assert "quickstart" in capsys.readouterr().err


def test_list_shows_shipped_experiments_with_their_first_comment(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "experiments (lifelong run NAME" in out
    assert "  quickstart  " in out
    assert "Quickstart: Experience Replay on Split Digits" in out
