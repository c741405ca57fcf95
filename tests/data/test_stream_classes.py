"""``stream.classes`` / ``stream.exclude_classes`` (train on a subset) and ``stream.classes_per_experience``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lifelong import config
from lifelong.build import build_run_stream
from lifelong.data import build_stream
from lifelong.errors import ConfigError

ROOT = Path("unused-for-digits")


def labels_of(experiences) -> set[int]:
    return {int(c) for e in experiences for c in e.dataset.y.unique()}


def test_excluded_classes_never_appear_in_any_experience():
    stream = build_stream("digits", "class_incremental", 4, root=ROOT, exclude_classes=[3, 7])
    held_out = {3, 7}
    for experience in [*stream.train, *stream.test]:
        assert held_out.isdisjoint(experience.dataset.y.tolist())
        assert held_out.isdisjoint(experience.classes)
    assert labels_of(stream.train) == set(range(10)) - held_out
    assert stream.info.num_classes == 10  # the model keeps one output per class id
    assert held_out.isdisjoint(c for cs in stream.info.classes_per_experience for c in cs)


def test_classes_keeps_only_those_classes_in_the_built_stream():
    stream = build_stream("digits", "class_incremental", 3, root=ROOT, classes=[0, 2, 4, 5, 8, 9], seed=1)
    assert labels_of(stream.train) == {0, 2, 4, 5, 8, 9}
    assert labels_of(stream.test) == {0, 2, 4, 5, 8, 9}
    assert [len(e.classes) for e in stream.train] == [2, 2, 2]


def test_classes_per_experience_gives_unequal_tasks():
    stream = build_stream("digits", "class_incremental", 3, root=ROOT, classes_per_experience=[6, 2, 2], seed=2)
    assert [len(e.classes) for e in stream.train] == [6, 2, 2]
    assert [sorted(e.dataset.y.unique().tolist()) for e in stream.train] == [
        sorted(c) for c in stream.info.classes_per_experience
    ]
    assert labels_of(stream.train) == set(range(10))


def test_classes_per_experience_with_held_out_classes():
    stream = build_stream(
        "digits", "class_incremental", 3, root=ROOT, exclude_classes=[8, 9], classes_per_experience=[4, 2, 2]
    )
    assert [len(e.classes) for e in stream.train] == [4, 2, 2]
    assert {8, 9}.isdisjoint(labels_of(stream.train))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"classes": [1, 2], "exclude_classes": [3]}, "exclude each other"),
        ({"classes": [1, 12]}, r"lacks: \[12\]"),
        ({"exclude_classes": list(range(10))}, "leaves no class"),
        ({"classes": [1, 1]}, "distinct class ids"),
        ({"classes_per_experience": [5, 5]}, "one count per experience"),
        ({"classes_per_experience": [5, 4, 2]}, "sums to 11"),
        ({"classes_per_experience": [8, 2, 0]}, "counts >= 1"),
    ],
)
def test_bad_class_selection_is_a_config_error_naming_the_key(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        build_stream("digits", "class_incremental", 3, root=ROOT, **kwargs)


def test_domain_incremental_rejects_classes_per_experience():
    with pytest.raises(ConfigError, match="classes_per_experience has no effect"):
        build_stream("digits", "domain_incremental", 2, root=ROOT, classes_per_experience=[5, 5])


def test_config_keys_reach_the_stream_and_are_validated():
    cfg = config.load(
        None,
        [
            "stream.dataset=digits",
            "stream.n_experiences=2",
            "stream.exclude_classes=[0,1]",
            "stream.classes_per_experience=[6,2]",
        ],
    )
    stream = build_run_stream(cfg)
    assert [len(e.classes) for e in stream.train] == [6, 2]
    assert {0, 1}.isdisjoint(torch.cat([e.dataset.y for e in stream.train]).tolist())
    with pytest.raises(ConfigError, match="stream.classes_per_experience"):
        config.load(None, ["stream.n_experiences=3", "stream.classes_per_experience=[6,4]"])
    with pytest.raises(ConfigError, match="stream.exclude_classes"):
        config.load(None, ["stream.classes=[0,1]", "stream.exclude_classes=[2]"])
