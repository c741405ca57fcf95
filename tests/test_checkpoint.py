"""Checkpoint building blocks, and a state_dict round trip of every registered strategy."""

from __future__ import annotations

import io
import json
import random

import numpy as np
import pytest
import torch

from lifelong.buffers import ReservoirBuffer
from lifelong.checkpoint import check_same_config, memory_report, rng_state, set_rng_state
from lifelong.errors import ConfigError
from lifelong.journal import RunJournal
from lifelong.loop import ShardSampler
from lifelong.models import build_model
from lifelong.strategies import STRATEGIES, build_strategy, strategy_names


def draws():
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_rng_state_restores_python_numpy_and_torch():
    torch.manual_seed(1)
    random.seed(2)
    np.random.seed(3)
    state = rng_state()
    first = draws()
    draws()
    set_rng_state(torch.load(_through_file(state), weights_only=True))
    assert draws() == first


def _through_file(obj) -> io.BytesIO:
    """What a checkpoint file does to ``obj``: torch.save, then torch.load(weights_only=True) reads it."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return buffer


# ------------------------------------------------------------------ every registered strategy


def fresh_model(stream, name):
    info = stream.info
    head = STRATEGIES.get(name).requires_head or "linear"  # e.g. the d-Simplex strategies
    torch.manual_seed(0)
    return build_model(
        "mlp", head, num_classes=info.num_classes, input_shape=info.input_shape, backbone_kwargs={"hidden": [32]}
    )


def steps(strategy, model, experience, n=3, size=8):
    data = experience.dataset
    for i in range(n):
        batch = data.__getitems__(list(range(i * size, (i + 1) * size)))
        output = strategy.training_loss(model, batch)
        strategy.after_training_step(model, batch, output)
    return output


def _text(value) -> str:
    return json.dumps(value, default=str, sort_keys=True)


def same_state(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, torch.Tensor):
            if not (isinstance(y, torch.Tensor) and x.shape == y.shape and torch.equal(x, y)):
                return False
        elif key.endswith("_extra_state") and _text(x) != _text(y):
            return False
    return True


@pytest.mark.parametrize("name", strategy_names("classifier"))
def test_strategy_state_dict_round_trip_continues_identically(name, digits_stream):
    """Two experiences, checkpoint through a file, restore into a fresh strategy: the third goes the same."""
    model, strategy = fresh_model(digits_stream, name), build_strategy(name)
    strategy.setup(model, digits_stream.info)
    for experience in digits_stream.train[:2]:
        strategy.before_experience(model, experience)
        steps(strategy, model, experience)
        strategy.after_experience(model, experience)
    saved = torch.load(
        _through_file({"model": model.state_dict(), "strategy": strategy.state_dict()}), weights_only=True
    )

    model_b, strategy_b = fresh_model(digits_stream, name), build_strategy(name)
    model_b.load_state_dict(saved["model"])
    strategy_b.setup(model_b, digits_stream.info)
    strategy_b.load_state_dict(saved["strategy"])
    strategy_b.on_resume(model_b, digits_stream)
    assert same_state(strategy.state_dict(), strategy_b.state_dict())

    third = digits_stream.train[2]
    outputs, sizes = [], []
    for s, m in ((strategy, model), (strategy_b, model_b)):
        torch.manual_seed(5)
        random.seed(5)
        np.random.seed(5)
        s.before_experience(m, third)
        sizes.append(len(s.train_dataset(third)))
        outputs.append(steps(s, m, third).loss.detach())
        s.after_experience(m, third)
    assert sizes[0] == sizes[1]
    assert torch.equal(outputs[0], outputs[1])
    assert same_state(strategy.state_dict(), strategy_b.state_dict())
    x = digits_stream.test[0].dataset.x[:16]
    t = torch.zeros(16, dtype=torch.long)
    assert torch.equal(strategy.eval_logits(model, x, t), strategy_b.eval_logits(model_b, x, t))


# ------------------------------------------------------------------ sharded replay memory


def test_shard_splits_the_capacity_and_reseeds_ranks_apart():
    shares = []
    for rank in range(3):
        buffer = ReservoirBuffer(10, seed=4)
        buffer.shard(rank, 3)
        shares.append(buffer.capacity)
        buffer.add(x=torch.arange(30.0).unsqueeze(1))
        assert len(buffer) == buffer.capacity
    assert shares == [4, 3, 3]
    alone, rank0 = ReservoirBuffer(10, seed=4), ReservoirBuffer(10, seed=4)
    rank0.shard(0, 1)
    assert torch.equal(alone.generator.get_state(), rank0.generator.get_state())
    first, second = ReservoirBuffer(10, seed=4), ReservoirBuffer(10, seed=4)
    first.shard(0, 2)
    second.shard(1, 2)
    assert not torch.equal(torch.rand(5, generator=first.generator), torch.rand(5, generator=second.generator))


def test_a_used_shard_keeps_its_state_and_refuses_another_world():
    buffer = ReservoirBuffer(10, seed=0)
    buffer.shard(1, 2)
    buffer.add(x=torch.arange(8.0).unsqueeze(1))
    restored = ReservoirBuffer(10, seed=0)
    restored.load_state_dict(buffer.state_dict())
    assert restored.capacity == 5
    restored.shard(1, 2)  # same world: a no-op
    assert torch.equal(restored.get("x"), buffer.get("x"))
    with pytest.raises(ValueError, match="resume with the number of processes"):
        restored.shard(0, 4)
    assert memory_report(build_strategy("er", memory_size=10)) == {
        "memory": {"capacity": 10, "total_capacity": 10, "stored": 0, "seen": 0}
    }


def test_shard_sampler_covers_every_index_once_without_padding():
    data = list(range(11))
    shards = [list(ShardSampler(data, 3, rank)) for rank in range(3)]
    assert [len(s) for s in shards] == [4, 4, 3]
    assert sorted(i for s in shards for i in s) == data


# ------------------------------------------------------------------ config comparison and journal


def test_check_same_config_names_each_changed_key(tmp_path):
    check_same_config({"a": "1", "b": "x"}, {"a": "1", "b": "y"}, ("b",), "--resume r", tmp_path)
    with pytest.raises(ConfigError, match=r"--resume r: .*a: '1' then, '2' now.*c: None then, '3' now"):
        check_same_config({"a": "1"}, {"a": "2", "c": "3"}, (), "--resume r", tmp_path)


def test_journal_counts_lines_and_drops_a_torn_last_line(tmp_path):
    journal = RunJournal(tmp_path)
    journal.meta["run_id"] = "abc"
    journal.save()
    journal.append([{"key": "a", "value": float(i), "timestamp": 1, "step": i} for i in range(3)])
    with journal.metrics_path.open("a") as f:
        f.write('{"key": "a", "val')  # the process died mid-write
    reopened = RunJournal(tmp_path)
    assert len(reopened) == 3
    assert [v["step"] for v in reopened.values(1)] == [1, 2]
    assert reopened.sent == {"params": False, "metrics": 0, "artifacts": False, "status": False}
    with pytest.raises(ConfigError, match="holds no tracking journal"):
        RunJournal.open(tmp_path / "elsewhere")
