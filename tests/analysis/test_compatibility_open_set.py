"""Open-set compatibility: held-out classes, a foreign dataset fitted to the model, and the papers' protocols
(identification: train-split queries of the new model against test-split templates of the old one;
verification: image 1 through the new model, image 2 through the old one) on hand-made features."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lifelong.analysis import compatibility as compat
from lifelong.analysis.compatibility import Compatibility
from lifelong.data import build_stream, resolve_root
from lifelong.data.reshape import fit_images
from lifelong.data.types import Experience, Stream, StreamInfo, TensorExperienceDataset
from lifelong.metrics.retrieval import verification_accuracy
from lifelong.models import build_model

CPU = torch.device("cpu")


def angles_stream(train: dict[int, list[float]], test: dict[int, list[float]]) -> Stream:
    """One experience per class; each sample's input is its angle in degrees (hand-made features below)."""

    def experience(index: int, cls: int, angles: list[float]) -> Experience:
        x = torch.tensor(angles).reshape(-1, 1, 1, 1)
        return Experience(index, TensorExperienceDataset(x, torch.full((len(angles),), cls)), [cls])

    classes = sorted(train)
    info = StreamInfo("class_incremental", len(classes), len(classes), (1, 1, 1), [[c] for c in classes])
    return Stream(
        "angles",
        info,
        [experience(i, c, train[c]) for i, c in enumerate(classes)],
        [experience(i, c, test[c]) for i, c in enumerate(classes)],
    )


@pytest.fixture
def angle_features(monkeypatch):
    """``embed`` of a model ``SimpleNamespace(shift=deg)``: the unit vector at (input angle + shift)."""

    def embed(model, x, device, batch_size):
        radians = torch.deg2rad(x.flatten().double() + model.shift)
        return torch.stack([radians.cos(), radians.sin()], dim=1).float()

    monkeypatch.setattr(compat, "embed", embed)


def fill(analysis: Compatibility, stream: Stream, *models) -> torch.Tensor:
    analysis.setup(stream, CPU)
    for after, model in enumerate(models):
        analysis.evaluate(after, model, None, stream)
    return analysis.matrix


def test_identification_queries_train_split_of_new_model_against_test_templates_of_old(angle_features):
    # test split (gallery): class 0 at 0 and 40 deg -> template 20; class 1 at 90 -> template 90
    # train split (queries): class 0 at 30, class 1 at 60
    stream = angles_stream(train={0: [30.0], 1: [60.0]}, test={0: [0.0, 40.0], 1: [90.0]})
    old, new = SimpleNamespace(shift=0.0), SimpleNamespace(shift=30.0)
    matrix = fill(Compatibility(protocol="identification", query_split="train"), stream, old, new)
    assert float(matrix[0, 0]) == 1.0  # 30 -> 20 (class 0), 60 -> 90 (class 1)
    assert float(matrix[1, 1]) == 1.0  # both rotated by 30: same answers
    # new queries at 60 and 90 against the old templates 20 and 90: 60 -> class 1 (wrong), 90 -> class 1
    assert float(matrix[1, 0]) == 0.5


def test_verification_first_image_through_the_query_model_second_through_the_gallery_model(angle_features):
    stream = angles_stream(train={0: [0.0], 1: [90.0]}, test={0: [0.0, 10.0], 1: [90.0, 100.0]})
    analysis = Compatibility(protocol="verification", n_pairs=2, n_folds=2)
    analysis.setup(stream, CPU)
    # gallery order: 0, 10 (class 0), 90, 100 (class 1); folds: pairs (0, 1) and (2, 3)
    first, second = torch.tensor([0, 0, 2, 1]), torch.tensor([1, 2, 3, 3])
    analysis.pairs = (first, second, torch.tensor([True, False, True, False]))
    old, new = SimpleNamespace(shift=0.0), SimpleNamespace(shift=90.0)
    analysis.evaluate(0, old, None, stream)
    analysis.evaluate(1, new, None, stream)
    # same model: same pairs 10 deg apart (0.03), different pairs 90 deg apart (2): any threshold between
    assert float(analysis.matrix[0, 0]) == 1.0
    # new first (rotated 90) vs old second: same pairs 80 deg apart (1.65), different pairs 0 apart (0):
    # no threshold beats 0.5 on either training fold; the smallest (0) says "different" to all -> 0.5
    assert float(analysis.matrix[1, 0]) == 0.5
    # the other way round (old first, new second) the different pairs are 180 deg apart and the same pairs
    # 100 deg apart, which a threshold separates: the wiring matters
    old_features, new_features = analysis.galleries[0], analysis.galleries[1]
    assert verification_accuracy(old_features[first], new_features[second], analysis.pairs[2], 2) == 1.0


def test_held_out_classes_are_the_open_set():
    stream = build_stream("digits", "class_incremental", 2, root=resolve_root(None), exclude_classes=[2, 5])
    analysis = Compatibility(protocol="identification", dataset="digits", classes="unseen", query_split="train")
    analysis.setup(stream, CPU)
    assert analysis.gallery.classes() == [2, 5]
    assert analysis.query.classes() == [2, 5]
    trained = {c for e in stream.train for c in e.dataset.y.tolist()}
    assert trained.isdisjoint({2, 5})
    torch.manual_seed(0)
    model = build_model("mlp", "dsimplex", 10, stream.info.input_shape, backbone_kwargs={"hidden": [16]})
    analysis.evaluate(0, model, None, stream)
    assert 0.0 <= float(analysis.matrix[0, 0]) <= 1.0


def test_unseen_needs_a_dataset_and_held_out_classes(digits_stream):
    with pytest.raises(ValueError, match="classes='unseen' reads the held-out classes"):
        Compatibility(classes="unseen")
    with pytest.raises(ValueError, match="stream.exclude_classes"):
        Compatibility(dataset="digits", classes="unseen").setup(digits_stream, CPU)


def test_digits_fitted_to_fashion_mnist_shape_as_the_open_set():
    stream = build_stream(
        "fashion_mnist", "class_incremental", 2, root=resolve_root(None), classes=[0, 1, 2, 3], test_per_class=5
    )
    with pytest.raises(ValueError, match="match_shape=true"):
        Compatibility(dataset="digits").setup(stream, CPU)
    analysis = Compatibility(protocol="identification", dataset="digits", match_shape=True, query_split="train")
    analysis.setup(stream, CPU)
    assert tuple(analysis.gallery.x.shape[1:]) == (1, 28, 28)
    assert analysis.gallery.classes() == list(range(10))


def test_fit_images_resizes_and_fits_channels():
    x = torch.arange(4.0).reshape(1, 1, 2, 2)
    same = fit_images(x, (1, 2, 2))
    assert torch.equal(same, x)
    up = fit_images(x, (3, 4, 4))
    assert up.shape == (1, 3, 4, 4)
    assert torch.equal(up[:, 0], up[:, 2])
    assert float(up.mean()) == pytest.approx(float(x.mean()))  # bilinear upsampling keeps the mean here
    assert fit_images(torch.ones(1, 3, 2, 2), (1, 2, 2)).shape == (1, 1, 2, 2)
    with pytest.raises(ValueError, match="cannot fit 2-channel"):
        fit_images(torch.ones(1, 2, 2, 2), (3, 2, 2))


@pytest.mark.parametrize(("ties", "expected"), [("fail", 0.0), ("pass", 1.0)])
def test_tie_rule_of_the_analysis(angle_features, ties, expected):
    # the same features twice: M[1][0] = M[0][0], a tie
    stream = angles_stream(train={0: [30.0], 1: [60.0]}, test={0: [0.0, 40.0], 1: [90.0]})
    model = SimpleNamespace(shift=0.0)
    analysis = Compatibility(protocol="identification", query_split="train", ties=ties)
    analysis.setup(stream, CPU)
    analysis.evaluate(0, model, None, stream)
    metrics = analysis.evaluate(1, model, None, stream)
    assert float(analysis.matrix[1, 0]) == float(analysis.matrix[0, 0])
    assert metrics["ac"] == expected
    assert metrics["ecc/g0"] == expected
