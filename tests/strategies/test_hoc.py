"""d-Simplex-HOC: the contrastive loss by hand, its combination with CE, the teacher, label reversal."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from lifelong.models import build_model
from lifelong.models.dsimplex import retrieval_features
from lifelong.strategies import build_strategy
from lifelong.strategies.hoc import hoc_loss

E1, E2 = [1.0, 0.0], [0.0, 1.0]


def test_hoc_loss_official_mask_by_hand():
    new = torch.tensor([E1, E2, E1])
    old = torch.tensor([E1, E1, E2])
    labels = torch.tensor([0, 0, 1])
    # s_ij = <old_i, new_j>: rows [1, 0, 1], [1, 0, 1], [0, 1, 0]; same-class entries (incl. i = j) -> exp(0)
    rows = [-1 + math.log(1 + 1 + math.e), -0 + math.log(1 + 1 + math.e), -0 + math.log(1 + math.e + 1)]
    assert float(hoc_loss(new, old, labels, mu=1.0)) == pytest.approx(sum(rows) / 3, abs=1e-6)


def test_hoc_loss_exclude_keeps_the_positive_and_drops_other_same_class_entries():
    new = torch.tensor([E1, E2, E1])
    old = torch.tensor([E1, E1, E2])
    labels = torch.tensor([0, 0, 1])
    rows = [-1 + math.log(math.e + math.e), -0 + math.log(1 + math.e), -0 + math.log(1 + math.e + 1)]
    assert float(hoc_loss(new, old, labels, mu=1.0, same_class="exclude")) == pytest.approx(sum(rows) / 3, abs=1e-6)


def test_hoc_loss_scales_with_mu_and_normalises():
    new, old, labels = torch.tensor([[3.0, 0.0], E2]), torch.tensor([[0.5, 0.0], E2]), torch.tensor([0, 1])
    # s = 10 * I; official: row i -> -10 + log(exp(0) + exp(0))
    assert float(hoc_loss(new, old, labels, mu=10.0)) == pytest.approx(-10 + math.log(2), abs=1e-5)
    with pytest.raises(ValueError, match="same_class"):
        hoc_loss(new, old, labels, same_class="mask")


@pytest.fixture
def simplex_model(digits_stream):
    torch.manual_seed(0)
    info = digits_stream.info
    return build_model("mlp", "dsimplex", info.num_classes, info.input_shape, backbone_kwargs={"hidden": [16]})


def test_first_experience_without_replacement_is_plain_ce(digits_stream, simplex_model):
    strategy = build_strategy("hoc")
    strategy.setup(simplex_model, digits_stream.info)
    strategy.before_experience(simplex_model, digits_stream.train[0])
    x, y, t = digits_stream.train[0].dataset.__getitems__(list(range(8)))
    output = strategy.training_loss(simplex_model, (x, y, t))
    assert set(output.parts) == {"ce"}
    assert torch.allclose(output.loss, F.cross_entropy(simplex_model(x), y))


def test_loss_combines_ce_and_hoc_against_the_starting_model(digits_stream, simplex_model):
    strategy = build_strategy("hoc", memory_size=10, replay_batch_size=2, ce_weight=0.25, mu=5.0, seed=3)
    strategy.setup(simplex_model, digits_stream.info)
    first, second = digits_stream.train[:2]
    strategy.before_experience(simplex_model, first)
    warm = first.dataset.__getitems__(list(range(10)))
    strategy.after_training_step(simplex_model, warm, strategy.training_loss(simplex_model, warm))
    strategy.after_experience(simplex_model, first)
    strategy.before_experience(simplex_model, second)
    teacher = copy.deepcopy(simplex_model).eval()
    with torch.no_grad():
        for p in simplex_model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    b = second.dataset.__getitems__(list(range(6)))
    state = strategy.memory.generator.get_state()
    output = strategy.training_loss(simplex_model, b)
    strategy.memory.generator.set_state(state)
    replay = strategy.memory.sample(2)
    x, y = torch.cat([b[0], replay["x"]]), torch.cat([b[1], replay["y"]])
    ce = F.cross_entropy(simplex_model(x), y)
    with torch.no_grad():
        old = retrieval_features(teacher, x)
    contrastive = hoc_loss(retrieval_features(simplex_model, x), old, y, mu=5.0)
    assert torch.allclose(output.loss, 0.25 * ce + 0.75 * contrastive, atol=1e-5)


def test_replacement_at_the_first_experience_activates_the_teacher(digits_stream, simplex_model, tmp_path):
    path = tmp_path / "pretrained.pt"
    torch.save(simplex_model.state_dict(), path)
    strategy = build_strategy("hoc", replace_at={0: str(path)})
    strategy.setup(simplex_model, digits_stream.info)
    strategy.before_experience(simplex_model, digits_stream.train[0])
    assert strategy.teacher.active
    output = strategy.training_loss(simplex_model, digits_stream.train[0].dataset.__getitems__(list(range(8))))
    assert set(output.parts) == {"ce", "hoc"}


def test_reverse_labels_trains_on_mirrored_prototypes_and_predicts_original_labels(digits_stream, simplex_model):
    strategy = build_strategy("hoc", reverse_labels=True)
    strategy.setup(simplex_model, digits_stream.info)
    strategy.before_experience(simplex_model, digits_stream.train[0])
    x, y, t = digits_stream.train[0].dataset.__getitems__(list(range(8)))
    logits = simplex_model(x)
    assert torch.allclose(strategy.training_loss(simplex_model, (x, y, t)).loss, F.cross_entropy(logits, 9 - y))
    assert torch.equal(strategy.eval_logits(simplex_model, x, t).argmax(1), 9 - logits.argmax(1))


@pytest.mark.parametrize(
    ("params", "match"), [({"ce_weight": 1.5}, "ce_weight"), ({"mu": 0}, "mu"), ({"same_class": "x"}, "same_class")]
)
def test_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        build_strategy("hoc", **params)
