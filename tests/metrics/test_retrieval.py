"""Retrieval, identification and verification scores against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from lifelong.metrics.retrieval import (
    class_templates,
    make_pairs,
    retrieval_scores,
    template_identification,
    verification_accuracy,
)


def unit(*angles_deg):
    """Unit 2-d vectors at the given angles."""
    return torch.tensor([[math.cos(math.radians(a)), math.sin(math.radians(a))] for a in angles_deg])


def test_cmc_and_map_by_hand():
    # one query at 0 deg; gallery at 10 (class 1), 20 (class 0), 90 (class 0), 170 (class 1)
    query, gallery = unit(0), unit(10, 20, 90, 170)
    scores = retrieval_scores(query, gallery, torch.tensor([0]), torch.tensor([1, 0, 0, 1]), ks=(1, 2, 3))
    # ranking: 10 (miss), 20 (hit at rank 2), 90 (hit at rank 3), 170
    assert scores["top1"] == 0.0
    assert scores["top2"] == 1.0
    assert scores["top3"] == 1.0
    assert scores["map"] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_leave_one_out_excludes_the_query_itself():
    f = unit(0, 5, 80)
    y = torch.tensor([0, 1, 0])
    with_self = retrieval_scores(f, f, y, y, ks=(1,))
    loo = retrieval_scores(f, f, y, y, ks=(1,), leave_one_out=True)
    assert with_self["top1"] == 1.0  # every query finds itself
    # query 0: nearest other is 5 deg (class 1) -> miss; query 1 has no other class-1 item -> left out;
    # query 2: nearest other is 5 deg (class 1) -> miss
    assert loo["top1"] == 0.0
    assert loo["map"] == pytest.approx(0.5)  # queries 0 and 2 find each other at rank 2


def test_batching_does_not_change_the_result():
    generator = torch.Generator().manual_seed(0)
    f = torch.randn(37, 5, generator=generator)
    y = torch.randint(0, 4, (37,), generator=generator)
    one = retrieval_scores(f, f, y, y, ks=(1, 5), leave_one_out=True, batch_size=1000)
    many = retrieval_scores(f, f, y, y, ks=(1, 5), leave_one_out=True, batch_size=4)
    assert one == pytest.approx(many)


def test_no_relevant_item_is_an_error():
    with pytest.raises(ValueError, match="no query has a relevant"):
        retrieval_scores(unit(0), unit(10), torch.tensor([0]), torch.tensor([1]))


def test_templates_are_renormalised_means_of_normalised_features():
    templates, classes = class_templates(torch.tensor([[3.0, 0.0], [0.0, 0.5], [5.0, 0.0]]), torch.tensor([2, 2, 4]))
    assert classes.tolist() == [2, 4]
    assert torch.allclose(templates, torch.tensor([[1 / math.sqrt(2), 1 / math.sqrt(2)], [1.0, 0.0]]))


def test_template_identification_by_hand():
    gallery = unit(0, 20, 90, 100)
    gallery_labels = torch.tensor([0, 0, 1, 1])  # templates at 10 and 95 deg
    query = unit(40, 60, 170, 5)
    query_labels = torch.tensor([0, 0, 1, 2])  # 40 -> 0 ok; 60 -> 1 miss; 170 -> 1 ok; class 2 has no template
    assert template_identification(query, gallery, query_labels, gallery_labels) == pytest.approx(2 / 4)


def test_verification_threshold_chosen_on_other_folds():
    # squared distances of unit vectors: 2 - 2 cos(angle); same pairs close, different pairs far,
    # except pair 3 (same class, far apart) which no threshold gets right
    first = unit(0, 0, 0, 0, 0, 0)
    second = unit(5, 120, 5, 170, 5, 100)
    same = torch.tensor([True, False, True, True, True, False])
    # folds of 2 pairs each: (0,1), (2,3), (4,5); a threshold between the close and the far pairs is
    # learnt on every training set, so only pair 3 is wrong: fold accuracies 1, 0.5, 1
    assert verification_accuracy(first, second, same, n_folds=3) == pytest.approx(2.5 / 3)


def test_verification_needs_enough_pairs_for_the_folds():
    with pytest.raises(ValueError, match="n_folds=10"):
        verification_accuracy(unit(0, 0), unit(0, 0), torch.tensor([True, False]), n_folds=10)


def test_make_pairs_counts_and_kinds():
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    first, second, same = make_pairs(labels, 20, 30, torch.Generator().manual_seed(0))
    assert int(same.sum()) == 20
    assert int((~same).sum()) == 30
    assert bool((first != second).all())
    assert torch.equal(labels[first] == labels[second], same)
    with pytest.raises(ValueError, match="same-class"):
        make_pairs(torch.tensor([0, 1, 2]), 1, 1, torch.Generator().manual_seed(0))
