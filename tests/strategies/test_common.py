"""Helpers several strategies share (``lifelong.strategies.common``)."""

from __future__ import annotations

import math

import pytest
import torch

from lifelong.buffers import ReservoirBuffer
from lifelong.strategies.common import (
    SeenClasses,
    append_replay,
    classes_before,
    non_negative_number,
    positive_integer,
    positive_mask,
    positive_number,
    resize_buffers,
    same_label,
)


def test_pair_masks_by_hand():
    labels = torch.tensor([3, 1, 3, 3])
    same = same_label(labels)
    assert same.tolist() == [
        [True, False, True, True],
        [False, True, False, False],
        [True, False, True, True],
        [True, False, True, True],
    ]
    positive = positive_mask(labels)
    assert not positive.diagonal().any()
    assert torch.equal(positive, same & ~torch.eye(4, dtype=torch.bool))
    assert positive.sum(dim=1).tolist() == [2, 0, 2, 2]


def test_append_replay_puts_the_replayed_samples_after_the_incoming_ones():
    memory = ReservoirBuffer(8, seed=0)
    batch = (torch.arange(6.0).reshape(3, 2), torch.tensor([0, 1, 2]), torch.zeros(3, dtype=torch.long))
    assert append_replay(memory, batch, None) == (batch, {})  # empty memory: unchanged
    memory.add(x=torch.full((4, 2), 9.0), y=torch.tensor([5, 6, 7, 8]), t=torch.ones(4, dtype=torch.long))
    (x, y, t), replayed = append_replay(memory, batch, 2)
    assert len(y) == 5
    assert set(replayed) == {"x", "y", "t"}
    assert torch.equal(x[:3], batch[0])
    assert torch.equal(y[:3], batch[1])
    assert torch.equal(t[:3], batch[2])
    assert torch.equal(y[3:], replayed["y"])
    assert set(y[3:].tolist()) <= {5, 6, 7, 8}
    (_, y, _), _ = append_replay(memory, batch, None)  # None: as many as the incoming batch
    assert len(y) == 6


def test_classes_before(digits_stream):
    info = digits_stream.info
    assert classes_before(None, 3) == set()
    assert classes_before(info, 0) == set()
    expected = {int(c) for classes in info.classes_per_experience[:2] for c in classes}
    assert classes_before(info, 2) == expected
    assert len(expected) == 4


def test_seen_classes_mask_and_state_round_trip():
    seen = SeenClasses()
    logits = torch.zeros(2, 5)
    assert torch.equal(seen.mask(logits), logits)  # nothing seen: unchanged
    seen.update(torch.tensor([1, 3]), num_classes=5)
    masked = seen.mask(logits)
    assert (masked[:, [1, 3]] == 0).all()
    assert (masked[:, [0, 2, 4]] < -1e3).all()
    fresh = SeenClasses()  # size 0 until loaded: the checkpoint's shape is taken
    fresh.load_state_dict(seen.state_dict())
    assert torch.equal(fresh.seen, seen.seen)


def test_resize_buffers_takes_the_checkpoints_shape():
    module = torch.nn.Module()
    module.register_buffer("a", torch.zeros(0))
    module.register_buffer("b", torch.zeros(2))
    resize_buffers(module, {"p.a": torch.ones(3, 4), "p.b": torch.ones(2)}, "p.", ("a", "b", "c"))
    assert module.a.shape == (3, 4)
    assert module.b.shape == (2,)


def test_parameter_checks():
    assert positive_number(2, "temperature") == 2.0
    assert non_negative_number(0, "alpha") == 0.0
    assert positive_integer(3, "period") == 3
    for bad in (0, -1.0, math.inf, math.nan, True, "1"):
        with pytest.raises(
            ValueError, match=rf"^strategy.params.temperature={bad!r} is not allowed; use a number > 0$"
        ):
            positive_number(bad, "temperature")
    for bad in (-0.1, math.nan, False, None):
        with pytest.raises(ValueError, match=r"strategy.params.alpha=.* use a number >= 0"):
            non_negative_number(bad, "alpha")
    for bad in (0, 1.0, True):
        with pytest.raises(ValueError, match=r"strategy.params.period=.* use >= 1"):
            positive_integer(bad, "period")
