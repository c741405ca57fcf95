"""The outer loop's training order: ``stream.online.shuffle`` keeps or shuffles each experience's order."""

from __future__ import annotations

import pytest
import torch

from lifelong import config
from lifelong.build import loader_settings, trainer_factory
from lifelong.data.types import Experience, TensorExperienceDataset
from lifelong.errors import ConfigError
from lifelong.loop import LoaderSettings, train_experience, training_sampler
from lifelong.models import build_model
from lifelong.module import ContinualModule
from lifelong.strategies import Strategy

N = 23  # not a multiple of the batch size: the last batch is partial


class Recording(Strategy):
    """Cross-entropy, recording the sample indices (encoded in the inputs) of every batch it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[list[int]] = []

    def training_loss(self, model, batch):
        self.seen.append(batch[0][:, 0].round().long().tolist())
        return super().training_loss(model, batch)


def ordered_experience(index: int = 0) -> Experience:
    """An experience whose sample ``i`` is ``x = (i, 0)``, in the order 0, 1, ..., N - 1."""
    x = torch.stack([torch.arange(N, dtype=torch.float32), torch.zeros(N)], dim=1)
    return Experience(index, TensorExperienceDataset(x, torch.arange(N) % 2), [0, 1])


def batches_seen(shuffle: bool, epochs: int = 1, per_call: int = 16, drop_last: bool = False) -> list[list[int]]:
    model = build_model("mlp", "linear", 2, (2,), backbone_kwargs={"hidden": [4]})
    strategy = Recording()
    module = ContinualModule(model, strategy, lambda p: torch.optim.SGD(p, lr=0.01), 1)
    cfg = config.load(overrides=[f"train.epochs={epochs}"])
    settings = LoaderSettings(5, 64, shuffle=shuffle, drop_last=drop_last, batches_per_call=per_call)
    train_experience(module, ordered_experience(), trainer_factory(cfg)(epochs), settings)
    return strategy.seen


def test_shuffle_off_keeps_the_stream_order_batch_by_batch():
    order = list(range(N))
    expected = [order[i : i + 5] for i in range(0, N, 5)]
    assert batches_seen(shuffle=False) == expected
    assert batches_seen(shuffle=False, epochs=2) == expected + expected  # every epoch the same order


@pytest.mark.parametrize("drop_last", [False, True])
def test_several_batches_per_call_keep_every_batch_and_its_order_over_epochs(drop_last):
    reference = batches_seen(shuffle=True, epochs=2, per_call=1, drop_last=drop_last)  # the data loader's batches
    assert [len(b) for b in reference] == ([5, 5, 5, 5] if drop_last else [5, 5, 5, 5, 3]) * 2
    for per_call in (3, 16):
        assert batches_seen(shuffle=True, epochs=2, per_call=per_call, drop_last=drop_last) == reference


def test_shuffle_on_sees_every_sample_once_in_another_order():
    seen = batches_seen(shuffle=True)
    flat = [i for b in seen for i in b]
    assert sorted(flat) == list(range(N))
    assert flat != list(range(N))
    assert [len(b) for b in seen] == [5, 5, 5, 5, 3]


@pytest.mark.parametrize("rank", [0, 1, 2])
def test_ddp_shard_in_order_is_every_world_size_th_sample(rank):
    dataset = ordered_experience().dataset
    indices = list(training_sampler(dataset, 3, rank, shuffle=False, seed=0))
    padded = list(range(N)) + [0]  # 23 -> 24: padded with the first sample so the three shards are equal
    assert indices == padded[rank::3]


def test_ddp_shards_shuffled_cover_the_experience():
    dataset = ordered_experience().dataset
    shards = [list(training_sampler(dataset, 2, r, shuffle=True, seed=0)) for r in range(2)]
    assert shards[0] != list(range(0, N, 2))  # not the in-order shard
    assert set(shards[0]) | set(shards[1]) == set(range(N))


@pytest.mark.parametrize(("override", "expected"), [([], True), (["stream.online.shuffle=false"], False)])
def test_the_config_key_reaches_the_loader_settings(override, expected):
    assert loader_settings(config.load(overrides=override)).shuffle is expected


def test_shuffle_must_be_a_boolean():
    with pytest.raises(ConfigError, match="shuffle"):
        config.load(overrides=["stream.online.shuffle=sometimes"])
