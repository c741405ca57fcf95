"""The compatibility analysis: galleries embedded once and kept, the matrix, protocols, state, an end-to-end run."""

from __future__ import annotations

import csv

import pytest
import torch
from mlflow.tracking import MlflowClient

from lifelong import config
from lifelong.analysis import compatibility as compat
from lifelong.analysis.compatibility import Compatibility
from lifelong.metrics.retrieval import retrieval_scores
from lifelong.models import build_model
from lifelong.run import run
from tests.compat_runs import TINY_COMPAT_RUN

CPU = torch.device("cpu")


@pytest.fixture
def simplex_model(digits_stream):
    torch.manual_seed(0)
    info = digits_stream.info
    return build_model("mlp", "dsimplex", info.num_classes, info.input_shape, backbone_kwargs={"hidden": [16]})


def perturb(model):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))


@pytest.fixture
def count_embeds(monkeypatch):
    calls = []
    original = compat.embed

    def counting(model, x, device, batch_size):
        calls.append(len(x))
        return original(model, x, device, batch_size)

    monkeypatch.setattr(compat, "embed", counting)
    return calls


def test_old_galleries_are_embedded_once_and_never_recomputed(digits_stream, simplex_model, count_embeds):
    analysis = Compatibility(gallery_per_class=6)
    analysis.setup(digits_stream, CPU)
    assert analysis.evaluate(-1, simplex_model, None, digits_stream) == {}
    assert count_embeds == []
    analysis.evaluate(0, simplex_model, None, digits_stream)
    first = analysis.galleries[0].clone()
    assert analysis.galleries.shape == (1, 60, 9)
    perturb(simplex_model)
    metrics = analysis.evaluate(1, simplex_model, None, digits_stream)
    # one extraction per model (query set = gallery set: the current gallery is reused as queries)
    assert count_embeds == [60, 60]
    assert analysis.extractions == 2
    assert torch.equal(analysis.galleries[0], first)
    assert not torch.allclose(analysis.galleries[1], first, atol=1e-3)
    labels = analysis.gallery.y
    cross = retrieval_scores(analysis.galleries[1], first, labels, labels, ks=(1,), leave_one_out=True)["top1"]
    assert float(analysis.matrix[1, 0]) == pytest.approx(cross)
    assert torch.isnan(analysis.matrix[0, 1])
    assert metrics["cross_prev"] == pytest.approx(cross)
    assert metrics["ecc/g0"] == float(cross > float(analysis.matrix[0, 0]))
    assert set(metrics) == {"am", "self_test", "ac", "bc", "fc", "cross_prev", "ecc/g0"}
    # evaluating the same model again reuses its kept gallery too
    analysis.evaluate(1, simplex_model, None, digits_stream)
    assert analysis.extractions == 2


def test_separate_query_set_is_embedded_by_the_current_model_only(digits_stream, simplex_model, count_embeds):
    analysis = Compatibility(protocol="identification", query_split="train", gallery_per_class=5, query_per_class=4)
    analysis.setup(digits_stream, CPU)
    for after in range(3):
        analysis.evaluate(after, simplex_model, None, digits_stream)
        perturb(simplex_model)
    assert count_embeds == [50, 40] * 3  # gallery then queries, once per model
    assert analysis.extractions == 3
    filled = analysis.matrix[:3, :3][torch.tril(torch.ones(3, 3, dtype=torch.bool))]
    assert bool(((filled >= 0) & (filled <= 1)).all())


def test_verification_protocol_and_seen_classes(digits_stream, simplex_model):
    analysis = Compatibility(protocol="verification", n_pairs=200, gallery_classes="seen")
    analysis.setup(digits_stream, CPU)
    analysis.evaluate(0, simplex_model, None, digits_stream)
    assert 0.0 <= float(analysis.matrix[0, 0]) <= 1.0
    assert analysis.seen[0].tolist() == sorted(digits_stream.train[0].classes)


def test_state_round_trip_continues_the_matrix(digits_stream, simplex_model, count_embeds):
    analysis = Compatibility(gallery_per_class=4)
    analysis.setup(digits_stream, CPU)
    for after in range(2):
        analysis.evaluate(after, simplex_model, None, digits_stream)
        perturb(simplex_model)
    fresh = Compatibility(gallery_per_class=4)
    fresh.setup(digits_stream, CPU)
    fresh.load_state_dict(analysis.state_dict())
    assert torch.equal(fresh.galleries, analysis.galleries)
    assert torch.equal(fresh.matrix.nan_to_num(-1), analysis.matrix.nan_to_num(-1))
    count_embeds.clear()
    fresh.evaluate(2, simplex_model, None, digits_stream)
    assert count_embeds == [40]
    assert torch.equal(fresh.galleries[:2], analysis.galleries)


def test_artifacts(digits_stream, simplex_model, tmp_path):
    analysis = Compatibility(gallery_per_class=4)
    analysis.setup(digits_stream, CPU)
    assert analysis.write_artifacts(tmp_path) == []
    analysis.evaluate(0, simplex_model, None, digits_stream)
    analysis.evaluate(1, simplex_model, None, digits_stream)
    paths = analysis.write_artifacts(tmp_path)
    assert [p.name for p in paths] == ["compatibility_matrix.csv", "compatibility_matrix.png"]
    rows = list(csv.reader(paths[0].open()))
    assert len(rows) == 1 + len(digits_stream)
    assert rows[2][1] != ""
    assert rows[2][3] == ""
    assert rows[3][1] == ""
    assert paths[1].stat().st_size > 0


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"protocol": "ranking"}, "protocol"),
        ({"metric": "top0"}, "metric"),
        ({"protocol": "identification", "metric": "map"}, "metric"),
        ({"protocol": "verification", "query_split": "train"}, "query_split"),
        ({"gallery_split": "val"}, "gallery_split"),
        ({"gallery_classes": "old"}, "gallery_classes"),
        ({"gallery_classes": "seen", "dataset": "cifar10"}, "gallery_classes"),
        ({"gallery_per_class": 0}, "gallery_per_class"),
        ({"n_folds": 1}, "n_folds"),
    ],
)
def test_bad_parameters_name_the_key(params, match):
    with pytest.raises(ValueError, match=f"analysis.compatibility.{match}"):
        Compatibility(**params)


def test_open_set_dataset_must_fit_the_model(digits_stream):
    with pytest.raises(ValueError, match=r"dataset='fashion_mnist' has inputs of shape \(1, 28, 28\)"):
        Compatibility(dataset="fashion_mnist").setup(digits_stream, CPU)


def test_end_to_end_run_logs_metrics_and_writes_the_matrix(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    overrides = [
        f"output_dir={tmp_path}",
        f"tracking.uri={uri}",
        *TINY_COMPAT_RUN,
    ]
    result = run(config.load("experiments/compat_fmnist_cl2r.yaml", overrides), quiet=True)
    rows = list(csv.reader((result.run_dir / "compatibility_matrix.csv").open()))
    assert len(rows) == 3
    assert all(cell != "" for cell in rows[2][1:])
    assert (result.run_dir / "compatibility_matrix.png").exists()
    client = MlflowClient(uri)
    assert [m.step for m in client.get_metric_history(result.run_id, "compatibility/am")] == [0, 1]
    (ac,) = client.get_metric_history(result.run_id, "compatibility/ac")
    (ecc,) = client.get_metric_history(result.run_id, "compatibility/ecc/g0")
    assert ac.step == 1
    assert ac.value == ecc.value
