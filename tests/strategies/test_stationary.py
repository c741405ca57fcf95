"""cores_replay and CL2R on the fixed d-Simplex, the frozen teacher snapshot and model replacement."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from lifelong.models import build_model
from lifelong.models.dsimplex import dsimplex_prototypes, retrieval_features
from lifelong.strategies import STRATEGIES, build_strategy
from lifelong.strategies.replacement import parse_replacements
from lifelong.strategies.stationary import cl2r_lambda, cosine_distillation
from lifelong.strategies.teacher import FrozenSnapshot


@pytest.fixture
def simplex_model(digits_stream):
    torch.manual_seed(0)
    info = digits_stream.info
    return build_model("mlp", "dsimplex", info.num_classes, info.input_shape, backbone_kwargs={"hidden": [16]})


def batch(experience, start, size):
    return experience.dataset.__getitems__(list(range(start, start + size)))


def perturb(model):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))


def finish_experience(strategy, model, experience, n=4, size=8):
    strategy.before_experience(model, experience)
    for i in range(n):
        b = batch(experience, i * size, size)
        strategy.after_training_step(model, b, strategy.training_loss(model, b))
    strategy.after_experience(model, experience)


def test_cosine_distillation_and_lambda_by_hand():
    new = torch.tensor([[1.0, 0.0], [2.0, 2.0]])
    old = torch.tensor([[0.0, 3.0], [1.0, 1.0]])
    assert float(cosine_distillation(new, old)) == pytest.approx((1 - 0) / 2 + (1 - 1) / 2)
    assert cl2r_lambda(5.0, 10, 40) == pytest.approx(2.5)
    assert cl2r_lambda(5.0, 10, 0) == 0.0


@pytest.mark.parametrize("name", ["cores", "cores_replay", "cl2r", "hoc"])
def test_d_simplex_strategies_refuse_a_linear_head(name, digits_stream, tiny_model):
    assert STRATEGIES.get(name).requires_head == "dsimplex"
    with pytest.raises(ValueError, match="model.head=dsimplex"):
        build_strategy(name).setup(tiny_model, digits_stream.info)


def test_cores_replay_is_cross_entropy_on_the_fixed_simplex_with_replay(digits_stream, simplex_model):
    strategy = build_strategy("cores_replay", memory_size=20, replay_batch_size=4, seed=1)
    strategy.setup(simplex_model, digits_stream.info)
    finish_experience(strategy, simplex_model, digits_stream.train[0])
    strategy.before_experience(simplex_model, digits_stream.train[1])
    b = batch(digits_stream.train[1], 0, 6)
    state = strategy.memory.generator.get_state()
    output = strategy.training_loss(simplex_model, b)
    strategy.memory.generator.set_state(state)
    replay = strategy.memory.sample(4)
    x, y = torch.cat([b[0], replay["x"]]), torch.cat([b[1], replay["y"]])
    features = simplex_model.head.embed(simplex_model.features(x))
    expected = F.cross_entropy(features @ dsimplex_prototypes(10).T, y)
    assert torch.allclose(output.loss, expected, atol=1e-6)


def test_cl2r_loss_is_ce_plus_lambda_times_distillation_on_the_replayed_part(digits_stream, simplex_model):
    strategy = build_strategy("cl2r", memory_size=20, replay_batch_size=4, lambda_0=3.0, seed=1)
    strategy.setup(simplex_model, digits_stream.info)
    finish_experience(strategy, simplex_model, digits_stream.train[0])
    strategy.before_experience(simplex_model, digits_stream.train[1])
    teacher = copy.deepcopy(simplex_model).eval()
    # 2 new classes, 2 old ones: lambda_1 = 3 * sqrt(2 / 2)
    assert float(strategy.lambda_t) == pytest.approx(3.0)
    perturb(simplex_model)  # the student moves away from the teacher
    b = batch(digits_stream.train[1], 0, 6)
    state = strategy.memory.generator.get_state()
    output = strategy.training_loss(simplex_model, b)
    strategy.memory.generator.set_state(state)
    replay = strategy.memory.sample(4)
    x, y = torch.cat([b[0], replay["x"]]), torch.cat([b[1], replay["y"]])
    ce = F.cross_entropy(simplex_model(x), y)
    new = retrieval_features(simplex_model, x)[6:]
    with torch.no_grad():
        old = retrieval_features(teacher, x)[6:]
    distill = (1 - F.cosine_similarity(new, old)).mean()
    assert float(distill.detach()) > 1e-3
    assert torch.allclose(output.loss, ce + 3.0 * distill, atol=1e-5)
    assert torch.allclose(output.parts["distill"], distill, atol=1e-6)


def test_no_teacher_and_no_distillation_in_the_first_experience(digits_stream, simplex_model):
    strategy = build_strategy("cl2r")
    strategy.setup(simplex_model, digits_stream.info)
    strategy.before_experience(simplex_model, digits_stream.train[0])
    assert not strategy.teacher.active
    assert float(strategy.lambda_t) == 0.0
    output = strategy.training_loss(simplex_model, batch(digits_stream.train[0], 0, 8))
    assert set(output.parts) == {"ce"}


def test_snapshot_is_frozen_and_survives_a_state_dict_round_trip(digits_stream, simplex_model):
    x = digits_stream.train[0].dataset.x[:5]
    snapshot = FrozenSnapshot()
    snapshot.capture(simplex_model)
    expected = retrieval_features(copy.deepcopy(simplex_model).eval(), x).detach()
    perturb(simplex_model)
    assert torch.allclose(snapshot.features(simplex_model, x), expected, atol=1e-6)
    assert not torch.allclose(retrieval_features(simplex_model, x), expected, atol=1e-3)
    assert not any(p.requires_grad for p in snapshot.buffers())
    fresh = FrozenSnapshot()
    fresh.load_state_dict(snapshot.state_dict())
    assert fresh.names == snapshot.names
    assert torch.allclose(fresh.features(simplex_model, x), expected, atol=1e-6)


def test_cl2r_state_round_trip(digits_stream, simplex_model):
    strategy = build_strategy("cl2r", memory_size=20)
    strategy.setup(simplex_model, digits_stream.info)
    finish_experience(strategy, simplex_model, digits_stream.train[0])
    strategy.before_experience(simplex_model, digits_stream.train[1])
    fresh = build_strategy("cl2r", memory_size=20)
    fresh.load_state_dict(strategy.state_dict())
    for key, value in strategy.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, fresh.state_dict()[key]), key
    x = digits_stream.train[1].dataset.x[:4]
    assert torch.equal(fresh.teacher.features(simplex_model, x), strategy.teacher.features(simplex_model, x))


def test_replacement_swaps_weights_keeps_the_classifier_and_becomes_the_teacher(digits_stream, simplex_model, tmp_path):
    info = digits_stream.info
    other = build_model("mlp", "dsimplex", info.num_classes, info.input_shape, backbone_kwargs={"hidden": [16]})
    state = other.state_dict()
    state["head.prototypes"] = state["head.prototypes"].flip(0)  # a foreign classifier: must be ignored
    path = tmp_path / "other.pt"
    torch.save(state, path)
    prototypes = simplex_model.head.prototypes.clone()
    strategy = build_strategy("cl2r", replace_at={1: str(path)})
    strategy.setup(simplex_model, info)
    finish_experience(strategy, simplex_model, digits_stream.train[0])
    strategy.before_experience(simplex_model, digits_stream.train[1])
    assert torch.equal(simplex_model.head.prototypes, prototypes)
    for name, value in other.state_dict().items():
        if name != "head.prototypes":
            assert torch.equal(simplex_model.state_dict()[name], value), name
    x = digits_stream.train[1].dataset.x[:4]
    assert torch.allclose(strategy.teacher.features(simplex_model, x), retrieval_features(other.eval(), x), atol=1e-6)


def test_replacement_schedule_errors(tmp_path):
    path = tmp_path / "m.pt"
    path.write_bytes(b"")
    assert parse_replacements({"2": str(path), 0: str(path)}) == {2: str(path), 0: str(path)}
    with pytest.raises(ValueError, match="is not a file"):
        parse_replacements({1: str(tmp_path / "missing.pt")})
    with pytest.raises(ValueError, match="experience index"):
        parse_replacements({"first": str(path)})
    with pytest.raises(ValueError, match="must map"):
        parse_replacements([str(path)])


def test_replacement_that_does_not_fit_is_an_error(digits_stream, simplex_model, tmp_path):
    info = digits_stream.info
    wider = build_model("mlp", "dsimplex", info.num_classes, info.input_shape, backbone_kwargs={"hidden": [32]})
    path = tmp_path / "wider.pt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in wider.state_dict().items()}}, path)
    strategy = build_strategy("hoc", replace_at={0: str(path)})
    strategy.setup(simplex_model, info)
    with pytest.raises(ValueError, match="different shapes"):
        strategy.before_experience(simplex_model, digits_stream.train[0])
