"""Retrieval math, FLAVA's forgetting, the infinite schedule and a tiny end-to-end run on av_synthetic."""

import math

import pytest
import torch

from lifelong.data.av_synthetic import av_synthetic
from lifelong.metrics import av_retrieval as avr
from lifelong.pretrain import PRETRAIN_METHODS
from lifelong.pretrain.loop import train_stream, write_artifacts
from lifelong.schedules import InfiniteSchedule


def test_ranks_recall_and_median_by_hand():
    sim = torch.tensor([[0.1, 0.9, 0.3], [0.5, 0.4, 0.6], [0.2, 0.2, 0.1]])
    pos = torch.tensor([[True, False, False], [False, True, True], [False, True, False]])
    assert avr.first_positive_rank(sim, pos).tolist() == [3, 1, 2]  # tie at 0.2 counts against the query
    assert avr.retrieval_scores(sim, pos, ks=(1, 2)) == pytest.approx({"R@1": 1 / 3, "R@2": 2 / 3, "MdR": 2.0})


def test_flava_average_and_forgetting_by_hand():
    r = [[0.6, 0.2, 0.1], [0.4, 0.5, 0.3], [0.3, 0.4, 0.5]]
    assert avr.average_final(r) == pytest.approx(0.4)
    # task0: max(0.6,0.4)-0.3=0.3; task1: max(0.2,0.5)-0.4=0.1; task2: max(0.1,0.3)-0.5=-0.2 -> 0.2/2
    assert avr.flava_forgetting(r) == pytest.approx(0.1)


def test_infinite_schedule_continuity_and_anneal():
    s = InfiniteSchedule(lr_max=1e-3, warmup_steps=5, cooldown_steps=20, const_ratio=0.75, min_ratio=0.05)
    for boundary in (5, 20):
        assert s.lr(boundary) == pytest.approx(s.lr(boundary + 1), abs=2e-5)
    assert all(s.lr(n) >= s.lr(n + 1) for n in range(5, 100))
    assert s.lr(10_000) == pytest.approx(7.5e-4)
    assert s.anneal_lr(0, 10) == pytest.approx(7.5e-4)
    assert s.anneal_lr(10, 10) == pytest.approx(5e-5)
    assert s.anneal_lr(5, 10) == pytest.approx(math.sqrt(7.5e-4 * 5e-5))
    with pytest.raises(ValueError, match="warmup_steps"):
        InfiniteSchedule(1.0, 10, 5)


@pytest.mark.parametrize("name", PRETRAIN_METHODS.names())
def test_methods_state_dict_round_trip(name):
    from lifelong.models.cavmae import CAVMAE

    model = CAVMAE()
    kwargs = {} if name == "finetune" else {"memory_size": 8}
    a = PRETRAIN_METHODS.get(name)(**kwargs)
    a.setup(model)
    batch = {"video": torch.randn(4, 2, 3, 32, 32), "audio": torch.randn(4, 64, 32)}
    for _ in range(2):
        out = a.training_loss(model, batch)
        a.after_training_step(model, batch, out)
    b = PRETRAIN_METHODS.get(name)(**kwargs)
    b.setup(model)
    b.load_state_dict(a.state_dict())
    for k, v in a.state_dict().items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, b.state_dict()[k]), k
        else:
            assert str(v) == str(b.state_dict()[k]), k


def test_end_to_end_flava_with_infinite_schedule(tmp_path):
    stream = av_synthetic(tasks=((0, 1), (2, 3)), train_per_task=32, test_per_task=8)
    cfg = {
        "seed": 0,
        "method": {"name": "flava", "params": {"memory_size": 16}},
        "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "schedule": {"warmup": 0.25, "cooldown": 0.5}},
    }
    result = train_stream(cfg, stream)
    r1 = result["matrices"]["a2v/R@1"]
    assert len(r1) == 2
    assert len(r1[0]) == 2
    assert all(0 <= x <= 1 for row in r1 for x in row)
    assert result["summary"]["a2v/R@1/forgetting"] == pytest.approx(avr.flava_forgetting(r1))
    files = write_artifacts(result, tmp_path)
    assert (tmp_path / "retrieval_a2v_R1.csv").is_file()
    assert (tmp_path / "retrieval_a2v_R1.png").is_file()
    assert len(files) >= 10


def test_the_run_seed_is_the_default_stream_seed():
    from lifelong.pretrain.loop import build_stream

    cfg = {"name": "av_synthetic", "params": {"tasks": [[0, 1]], "train_per_task": 8, "test_per_task": 4}}
    first = build_stream(cfg, seed=1).train[0][0]["video"]
    assert torch.equal(
        first, av_synthetic(tasks=[[0, 1]], train_per_task=8, test_per_task=4, seed=1).train[0][0]["video"]
    )
    assert not torch.equal(first, build_stream(cfg, seed=2).train[0][0]["video"])
    pinned = {**cfg, "params": {**cfg["params"], "seed": 2}}
    assert torch.equal(
        build_stream(pinned, seed=1).train[0][0]["video"], build_stream(cfg, seed=2).train[0][0]["video"]
    )
