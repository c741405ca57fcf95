"""A run's logged model, reloaded from a copy of the MLflow store alone, predicts what the run evaluated.

Real runs on Split Digits into a SQLite store; the store (``mlflow.db`` + ``artifacts/``) is copied
elsewhere and everything the run wrote is deleted before ``lifelong.load_model`` reads the copy.
"""

from __future__ import annotations

import shutil
import time

import pytest
import torch
from mlflow.tracking import MlflowClient

import lifelong
from lifelong import config
from lifelong.data import build_stream, resolve_root
from lifelong.run import run

T = 2
BASE = ["stream.n_experiences=2", "stream.train_per_class=60", "train.epochs=1", "tracking.system_metrics=false"]
SETTINGS = {
    "er": ["strategy.params={memory_size: 50}"],
    # SCR owns prediction: the nearest class mean of its memory's features (state of the strategy, not the model)
    "scr": ["strategy.name=scr", "strategy.params={memory_size: 50, replay_batch_size: 16}"],
    # PCR: nearest proxy among the classes trained on so far (the mask is the strategy's state)
    "pcr": ["strategy.name=pcr", "model.head=cosine", "strategy.params={memory_size: 50, replay_batch_size: 16}"],
}


@pytest.fixture(scope="module")
def moved_store(tmp_path_factory):
    """Runs of ER and SCR, then only a copy of their store is left: {name: (run id, accuracy matrix, config)}."""
    root = tmp_path_factory.mktemp("original")
    uri = f"sqlite:///{root}/mlflow.db"
    done = {}
    for name, overrides in SETTINGS.items():
        cfg = config.load(
            "experiments/quickstart.yaml", [*BASE, *overrides, f"output_dir={root}", f"tracking.uri={uri}"]
        )
        result = run(cfg, quiet=True)
        done[name] = (result.run_id, result.matrix.as_tensor().clone(), cfg)
    copy = tmp_path_factory.mktemp("copy")
    shutil.copy(root / "mlflow.db", copy / "mlflow.db")
    shutil.copytree(root / "artifacts", copy / "artifacts")
    shutil.rmtree(root)  # the run directories, the journal and the original artifact folders are gone
    return f"sqlite:///{copy}/mlflow.db", done


def accuracies(model: lifelong.model_io.LoadedModel, cfg: config.ExperimentConfig) -> list[float]:
    """Accuracy on every test experience, batched as the run evaluated (eval_batch_size)."""
    stream = build_stream(
        "digits",
        "class_incremental",
        T,
        root=resolve_root(None),
        seed=cfg.seed,
        train_per_class=cfg.stream.train_per_class,
    )
    out = []
    for experience in stream.test:
        data, correct = experience.dataset, 0
        for i in range(0, len(data), cfg.train.eval_batch_size):
            x, y, t = data[list(range(i, min(i + cfg.train.eval_batch_size, len(data))))]
            correct += int((model.predict(x, t) == y).sum())
        out.append(correct / len(data))
    return out


@pytest.mark.parametrize("name", list(SETTINGS))
def test_reloaded_model_reproduces_the_last_row_exactly(moved_store, name):
    uri, done = moved_store
    run_id, matrix, cfg = done[name]
    started = time.perf_counter()
    model = lifelong.load_model(run_id, uri=uri)
    seconds = time.perf_counter() - started
    assert model.experience == T - 1
    assert not model.training
    assert model.config.strategy.name == name
    assert sorted(model.classes_seen) == list(range(10))  # 2 experiences of 5 classes: all seen
    stored = MlflowClient(uri).get_run(run_id).data.metrics
    assert [stored[f"eval/acc/exp{j}"] for j in range(T)] == matrix[T - 1].tolist()
    assert accuracies(model, cfg) == matrix[T - 1].tolist()
    assert seconds < 30


@pytest.mark.parametrize("name", ["scr", "pcr"])
def test_the_model_after_the_first_experience_reproduces_its_row(moved_store, name):
    uri, done = moved_store
    run_id, matrix, cfg = done[name]
    model = lifelong.load_model(run_id, experience=0, uri=uri)
    assert accuracies(model, cfg) == matrix[0].tolist()
    assert matrix[0, 1] == 0.0  # the classes of experience 1 are never predicted yet


def test_each_experience_has_its_model_linked_to_its_step(moved_store):
    uri, done = moved_store
    run_id, matrix, cfg = done["er"]
    outputs = MlflowClient(uri).get_run(run_id).outputs.model_outputs
    assert sorted(o.step for o in outputs) == list(range(T))
    first = lifelong.load_model(run_id, experience=0, uri=uri)
    assert first.experience == 0
    assert sorted(first.classes_seen) == sorted(first.info.classes_per_experience[0])
    assert accuracies(first, cfg) == matrix[0].tolist()
    by_uri = lifelong.load_model(f"models:/{first.model_id}", uri=uri)
    assert by_uri.experience == 0
    x = torch.randn(4, *first.info.input_shape)
    assert torch.equal(by_uri(x), first(x))


def test_missing_experience_is_a_config_error(moved_store):
    uri, done = moved_store
    with pytest.raises(lifelong.ConfigError, match="experience=7"):
        lifelong.load_model(done["er"][0], experience=7, uri=uri)
