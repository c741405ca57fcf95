"""The analysis hook: enabled from YAML, called at every evaluation point, metrics and artifacts recorded."""

from __future__ import annotations

import pytest
import torch
from mlflow.tracking import MlflowClient

from lifelong import config
from lifelong.analysis import ANALYSES, Analysis, evaluation_mode
from lifelong.errors import ConfigError
from lifelong.run import run


class MeanFeatureNorm(Analysis):
    """Mean L2 norm of the backbone features on the first test experience (a stand-in measurement)."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale
        self.calls: list[int] = []
        self.register_buffer("norms", torch.zeros(0))

    def evaluate(self, after, model, strategy, stream):
        self.calls.append(after)
        with evaluation_mode(model, self.device):
            norm = model.features(stream.test[0].dataset.x).norm(dim=1).mean() * self.scale
        self.norms = torch.cat([self.norms, norm.reshape(1).cpu()])
        return {"norm": float(norm)}

    def write_artifacts(self, directory):
        path = directory / "feature_norms.csv"
        path.write_text("\n".join(f"{v:.6f}" for v in self.norms.tolist()))
        return [path]


@pytest.fixture
def registered():
    ANALYSES.register("feature_norm")(MeanFeatureNorm)
    yield
    del ANALYSES._entries["feature_norm"]


def test_analysis_runs_at_every_evaluation_point_and_is_tracked(registered, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = config.load(
        "experiments/quickstart.yaml",
        [f"output_dir={tmp_path}", f"tracking.uri={uri}", "train.epochs=1", "analysis.feature_norm.scale=2.0"],
    )
    result = run(cfg, quiet=True)
    history = MlflowClient(uri).get_metric_history(result.run_id, "feature_norm/norm")
    # before training (logged at step 0) and after each of the 5 experiences
    assert sorted(m.step for m in history) == [0, 0, 1, 2, 3, 4]
    written = (result.run_dir / "feature_norms.csv").read_text().splitlines()
    assert len(written) == 6
    assert all(float(v) > 0 for v in written)


def test_unknown_analysis_or_parameter_is_a_config_error(registered, tmp_path):
    with pytest.raises(ConfigError, match="feature_norm"):
        run(config.load(overrides=[f"output_dir={tmp_path}", "analysis.feature_nrom={}"]), quiet=True)
    with pytest.raises(ConfigError, match="analysis.feature_norm"):
        run(config.load(overrides=[f"output_dir={tmp_path}", "analysis.feature_norm.scael=2"]), quiet=True)


def test_evaluation_mode_restores_training_mode(tiny_model):
    tiny_model.train()
    with evaluation_mode(tiny_model, torch.device("cpu")) as model:
        assert not model.training
        assert not torch.is_grad_enabled()
    assert tiny_model.training
