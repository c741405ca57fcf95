"""PCR: the anchor-to-proxy loss against its closed form and the official SupCon 'proxy' mode, memory, prediction."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lifelong.models import build_model
from lifelong.strategies import build_strategy
from lifelong.strategies.contrastive import proxy_contrastive_loss
from lifelong.strategies.pcr import proxy_scores


def cosine_model(stream, hidden=16):
    torch.manual_seed(0)
    info = stream.info
    return build_model(
        "mlp",
        "cosine",
        num_classes=info.num_classes,
        input_shape=info.input_shape,
        backbone_kwargs={"hidden": [hidden]},
    )


def mixed_batch(experience, size, offset=0):
    """``size`` samples alternating between the experience's two classes."""
    data = experience.dataset
    by_class = [(data.y == c).nonzero().squeeze(1) for c in experience.classes]
    index = torch.stack([by_class[0][offset : offset + size], by_class[1][offset : offset + size]], 1).flatten()
    return data.__getitems__(index[:size].tolist())


def supcon_proxy_mode(z: torch.Tensor, proxies: torch.Tensor, labels: torch.Tensor, tau: float) -> float:
    """The official SupCon(contrast_mode='proxy') written out with loops: column j is the proxy of y_j."""
    n = len(labels)
    total = 0.0
    for i in range(n):
        sims = [float(z[i] @ proxies[labels[j]]) / tau for j in range(n)]
        log_denominator = math.log(sum(math.exp(s) for s in sims))
        positives = [j for j in range(n) if labels[j] == labels[i]]  # the diagonal is not masked in 'proxy' mode
        total += -sum(sims[j] - log_denominator for j in positives) / len(positives)
    return total / n


def test_proxy_loss_equals_its_closed_form_by_hand():
    s = torch.tensor([[2.0, 1.0, 0.0, 7.0], [0.5, -1.0, 3.0, 7.0], [1.0, 1.0, 1.0, 7.0], [0.0, 2.0, -2.0, 7.0]])
    y = torch.tensor([0, 2, 2, 2])  # counts: class 0 once, class 2 three times, classes 1 and 3 absent
    expected = 0.0
    for i in range(4):
        expected += math.log(1 * math.exp(s[i, 0]) + 3 * math.exp(s[i, 2])) - float(s[i, y[i]])
    assert proxy_contrastive_loss(s, y).item() == pytest.approx(expected / 4, rel=1e-6)


def test_proxy_loss_equals_the_official_supcon_proxy_mode():
    torch.manual_seed(1)
    z = F.normalize(torch.randn(7, 5), dim=1)
    proxies = F.normalize(torch.randn(4, 5), dim=1)
    y = torch.tensor([0, 1, 1, 3, 3, 3, 0])
    scores = z @ proxies.T / 0.09
    assert proxy_contrastive_loss(scores, y).item() == pytest.approx(supcon_proxy_mode(z, proxies, y, 0.09), rel=1e-5)


def test_proxy_loss_is_finite_in_half_precision_scores():
    scores = torch.tensor([[11.1, -11.1, 0.0], [-11.1, 11.1, 5.0]]).half()
    loss = proxy_contrastive_loss(scores, torch.tensor([0, 1]))
    assert torch.isfinite(loss)
    assert loss.dtype == torch.float32


def test_training_loss_is_pcr_on_both_views_of_incoming_and_replayed_samples(digits_stream):
    model = cosine_model(digits_stream)
    strategy = build_strategy("pcr", memory_size=30, replay_batch_size=4, augment=False, seed=2)
    strategy.setup(model, digits_stream.info)
    first = digits_stream.train[0]
    strategy.before_experience(model, first)
    warm = mixed_batch(first, 30)
    strategy.memory.add(x=warm[0], y=warm[1], t=warm[2])
    batch = mixed_batch(first, 6, offset=40)
    state = strategy.memory.generator.get_state()
    output = strategy.training_loss(model, batch)
    strategy.memory.generator.set_state(state)
    replay = strategy.memory.sample(4)
    x = torch.cat([batch[0], replay["x"]] * 2)  # identical second view (augment=False)
    y = torch.cat([batch[1], replay["y"]] * 2)
    z = F.normalize(model.features(x), dim=1)
    w = F.normalize(model.head.weight, dim=1)
    expected = supcon_proxy_mode(z.detach(), w.detach(), y, 0.09)
    assert output.loss.item() == pytest.approx(expected, rel=1e-5)
    assert output.logits.shape == (6, digits_stream.info.num_classes)


def test_first_step_uses_the_incoming_views_only(digits_stream):
    model = cosine_model(digits_stream)
    strategy = build_strategy("pcr", augment=False)
    strategy.setup(model, digits_stream.info)
    batch = mixed_batch(digits_stream.train[0], 8)
    loss = strategy.training_loss(model, batch).loss
    scores = proxy_scores(model, model.features(torch.cat([batch[0]] * 2)), None, 0.09)
    assert loss.item() == pytest.approx(proxy_contrastive_loss(scores, torch.cat([batch[1]] * 2)).item(), rel=1e-6)


def test_memory_stores_the_unaugmented_samples_after_the_step(digits_stream):
    model = cosine_model(digits_stream)
    strategy = build_strategy("pcr", memory_size=100)
    strategy.setup(model, digits_stream.info)
    batch = mixed_batch(digits_stream.train[0], 8)
    output = strategy.training_loss(model, batch)
    assert len(strategy.memory) == 0  # nothing stored before the step
    strategy.after_training_step(model, batch, output)
    assert torch.equal(strategy.memory.get("x"), batch[0])
    assert torch.equal(strategy.memory.get("y"), batch[1])


def test_prediction_is_the_nearest_proxy_among_the_classes_seen(digits_stream):
    model = cosine_model(digits_stream)
    strategy = build_strategy("pcr")
    strategy.setup(model, digits_stream.info)
    x = digits_stream.test[0].dataset.x[:50]
    t = torch.zeros(50, dtype=torch.long)
    before = strategy.eval_logits(model, x, t)
    cosines = F.normalize(model.features(x), dim=1) @ F.normalize(model.head.weight, dim=1).T
    assert torch.equal(before.argmax(1), cosines.argmax(1))  # nothing seen yet: every class may be predicted
    first = digits_stream.train[0]
    batch = mixed_batch(first, 8)
    strategy.after_training_step(model, batch, strategy.training_loss(model, batch))
    predicted = set(strategy.eval_logits(model, x, t).argmax(1).tolist())
    assert predicted <= set(first.classes)


def test_state_dict_restores_memory_and_seen_classes(digits_stream):
    model = cosine_model(digits_stream)
    strategy = build_strategy("pcr", memory_size=20, seed=4)
    strategy.setup(model, digits_stream.info)
    batch = mixed_batch(digits_stream.train[0], 8)
    strategy.after_training_step(model, batch, strategy.training_loss(model, batch))
    fresh = build_strategy("pcr", memory_size=20, seed=4)
    fresh.load_state_dict(strategy.state_dict())
    assert torch.equal(fresh.memory.get("x"), strategy.memory.get("x"))
    assert torch.equal(fresh.seen_classes.seen, strategy.seen_classes.seen)
    assert torch.equal(fresh.memory.sample(5)["y"], strategy.memory.sample(5)["y"])


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"memory_size": 0}, "memory_size"),
        ({"replay_batch_size": 0}, "replay_batch_size"),
        ({"temperature": 0}, "temperature"),
        ({"pixel_stats": "nope"}, "pixel_stats"),
    ],
)
def test_bad_parameters_are_rejected(params, match):
    with pytest.raises(ValueError, match=match):
        build_strategy("pcr", **params)


def test_non_image_inputs_need_augment_off(digits_stream):
    model = build_model("mlp", "cosine", num_classes=10, input_shape=(64,), backbone_kwargs={"hidden": [8]})
    strategy = build_strategy("pcr")
    batch = (torch.randn(4, 64), torch.tensor([0, 1, 0, 1]), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="augment=false"):
        strategy.training_loss(model, batch)
    assert torch.isfinite(build_strategy("pcr", augment=False).training_loss(model, batch).loss)
