"""The model of a run, logged after each experience and reloaded from the tracking store alone.

A logged model (an MLflow 3 logged model of the run, linked to the experience's step) is a folder::

    weights.pt    {"format", "model": model state_dict, "strategy": strategy state_dict}
    config.yaml   the run's resolved config (what builds the model and the strategy)
    model.json    the stream facts a model needs (classes, input shape, experiences), the classes
                  seen so far, the experience, the run's name and digest

The strategy's state is part of it because some strategies own prediction: SCR predicts the nearest
class mean of its memory's features, PCR/HPCR mask the classes not trained on yet. :func:`load_model`
rebuilds model and strategy with the library's builders (no data is read), loads both states and
returns a :class:`LoadedModel` in eval mode whose ``predict`` is what the run's evaluation computed.
The weights are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

import lifelong
from lifelong import config as config_lib
from lifelong.config import ExperimentConfig
from lifelong.data.types import StreamInfo
from lifelong.errors import ConfigError, TrackingError
from lifelong.models import ContinualClassifier
from lifelong.strategies import STRATEGIES, Strategy

__all__ = ["LoadedModel", "ModelLogger", "load_model", "save_model_folder"]

FORMAT = 1
WEIGHTS, CONFIG, INFO = "weights.pt", "config.yaml", "model.json"


def seen_classes(info: StreamInfo, experience: int) -> list[int]:
    """The classes of experiences ``0..experience`` in the order they came."""
    seen: list[int] = []
    for classes in info.classes_per_experience[: experience + 1]:
        seen += [int(c) for c in classes if int(c) not in seen]
    return seen


def save_model_folder(
    folder: Path, model: nn.Module, strategy: nn.Module, cfg: ExperimentConfig, info: StreamInfo, experience: int
) -> Path:
    """Write the logged-model folder of ``model`` + ``strategy`` after ``experience``."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "model": model.state_dict(), "strategy": strategy.state_dict()}, folder / WEIGHTS)
    (folder / CONFIG).write_text(config_lib.to_yaml(cfg))
    facts = {
        "format": FORMAT,
        "experience": experience,
        "scenario": info.scenario,
        "num_classes": info.num_classes,
        "n_experiences": info.n_experiences,
        "input_shape": list(info.input_shape),
        "classes_per_experience": [[int(c) for c in cs] for cs in info.classes_per_experience],
        "classes_seen": seen_classes(info, experience),
        "strategy": cfg.strategy.name,
        "lifelong_version": lifelong.__version__,
    }
    (folder / INFO).write_text(json.dumps(facts, indent=1))
    return folder


class ModelLogger:
    """Logs the model after each experience as an MLflow logged model (``<run dir>/tracking/models`` meanwhile).

    Args:
        tracker: the run's ``MlflowTracker``.
        model: the classifier being trained.
        strategy: its strategy.
        cfg: the run's config.
        info: the stream's facts.
        run_dir: the run directory (a folder is kept there until it is uploaded).

    """

    def __init__(
        self,
        tracker: Any,
        model: nn.Module,
        strategy: nn.Module,
        cfg: ExperimentConfig,
        info: StreamInfo,
        run_dir: Path,
    ) -> None:
        self.tracker, self.model, self.strategy, self.cfg, self.info = tracker, model, strategy, cfg, info
        self.folder = Path(run_dir) / "tracking" / "models"
        self.logged: dict[int, str] = {}  # experience -> model id

    def __call__(self, experience: int) -> str | None:
        """Log the model after ``experience`` (step = experience); returns the model id (``None``: left for sync)."""
        from lifelong.digest import short_digest
        from lifelong.provenance import resolved_params
        from lifelong.tracking import log_model_folder

        folder = save_model_folder(
            self.folder / f"exp{experience}", self.model, self.strategy, self.cfg, self.info, experience
        )
        tags = {
            "lifelong.experience": str(experience),
            "lifelong.strategy": self.cfg.strategy.name,
            "lifelong.config_digest": short_digest(resolved_params(self.cfg)),
        }
        model_id = log_model_folder(self.tracker, folder, experience, f"{self.cfg.strategy.name}-exp{experience}", tags)
        if model_id is not None:
            shutil.rmtree(folder, ignore_errors=True)
            self.logged[experience] = model_id
        return model_id


class LoadedModel(nn.Module):
    """A run's model and strategy after one experience, ready for inference (eval mode).

    Attributes:
        model: the classifier (backbone + head).
        strategy: the strategy, whose ``eval_logits`` is the run's prediction rule.
        config: the run's resolved config.
        info: the stream facts (``StreamInfo``).
        experience: the experience after which the model was logged.
        classes_seen: the classes trained on up to that experience.

    """

    def __init__(
        self, model: ContinualClassifier, strategy: Strategy, cfg: ExperimentConfig, info: StreamInfo, facts: dict
    ) -> None:
        super().__init__()
        self.model, self.strategy, self.config, self.info = model, strategy, cfg, info
        self.experience = int(facts["experience"])
        self.classes_seen = list(facts["classes_seen"])
        self.model_id: str | None = None
        self.eval()

    @torch.no_grad()
    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """The scores the run's evaluation takes the argmax of, ``(B, num_classes)``."""
        if t is None:
            t = torch.zeros(len(x), dtype=torch.long, device=x.device)
        return self.strategy.eval_logits(self.model, x, t)

    def predict(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted classes, ``(B,)``."""
        return self(x, t).argmax(dim=1)


def rebuild(folder: Path) -> LoadedModel:
    """A :class:`LoadedModel` from a logged-model folder."""
    cfg = config_lib.load(folder / CONFIG)
    facts = json.loads((folder / INFO).read_text())
    info = StreamInfo(
        facts["scenario"],
        int(facts["num_classes"]),
        int(facts["n_experiences"]),
        tuple(facts["input_shape"]),
        [list(c) for c in facts["classes_per_experience"]],
    )
    from lifelong.build import build_run_model  # the run's own builders (build imports the whole library)

    model: Any = build_run_model(cfg, info)
    strategy = STRATEGIES.build(cfg.strategy.name, dict(cfg.strategy.params), "strategy.params", cfg.seed)
    strategy.setup(model, info)
    weights = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
    model.load_state_dict(weights["model"])
    strategy.load_state_dict(weights["strategy"])
    strategy.experience_index = int(facts["experience"])
    return LoadedModel(model, strategy, cfg, info, facts)


def _run_of(target: str, uri: str | None) -> tuple[str, str]:
    """(run id, tracking URI) of a run id or a run directory."""
    from lifelong.journal import RunJournal
    from lifelong.tracking import resolve_uri

    path = Path(target)
    if not path.is_dir():
        return target, resolve_uri(uri)
    meta = RunJournal(path / "tracking").meta
    summary = json.loads((path / "summary.json").read_text()) if (path / "summary.json").is_file() else {}
    run_id = meta.get("run_id") or summary.get("run_id")
    if not run_id:
        raise ConfigError(f"{path} names no MLflow run (was it run with tracking.enabled=false?)")
    return str(run_id), uri or meta.get("uri") or resolve_uri(None, path.parent.parent)


def _pick(records: list[dict[str, Any]], run_id: str, experience: int | None) -> dict[str, Any]:
    by_experience = {int(r["tags"]["lifelong.experience"]): r for r in records if "lifelong.experience" in r["tags"]}
    if not by_experience:
        raise TrackingError(
            f"run {run_id} has no logged model (it predates model logging, or tracking.log_models=false)"
        )
    if experience is None:
        return by_experience[max(by_experience)]
    if experience not in by_experience:
        raise ConfigError(
            f"experience={experience} is not allowed; run {run_id} has models after {sorted(by_experience)}"
        )
    return by_experience[experience]


def load_model(run: str | Path, experience: int | None = None, uri: str | None = None) -> LoadedModel:
    """The model of a run after ``experience`` (default: the last one logged), from the tracking store alone.

    Args:
        run: an MLflow run id, a run directory (its journal names the run and the store), or a
            ``models:/<model id>`` URI.
        experience: which experience's model; ignored for a ``models:/`` URI.
        uri: the tracking URI (default: the run directory's, else ``MLFLOW_TRACKING_URI``, else ``runs/mlflow.db``).

    Returns:
        A :class:`LoadedModel` in eval mode on the CPU; ``predict(x, t)`` applies the run's prediction rule.

    Raises:
        TrackingError: the run or model is not in the store, or the run logged no model.
        ConfigError: no model after ``experience``.

    Example (needs a run; ``tests/e2e/test_load_model.py`` runs it)::

        model = lifelong.load_model("runs/quickstart/er-digits-1a2b3c4d-s0-20260101-120000")
        model.predict(x)

    """
    from lifelong.tracking import download_model, logged_model, logged_models_of_run, resolve_uri

    target = str(run)
    if target.startswith("models:/"):
        store = resolve_uri(uri)
        record = logged_model(store, target.removeprefix("models:/").strip("/"))
    else:
        run_id, store = _run_of(target, uri)
        record = _pick(logged_models_of_run(store, run_id), run_id, experience)
    with tempfile.TemporaryDirectory() as tmp:
        loaded = rebuild(download_model(store, record, Path(tmp)))
    loaded.model_id = record["model_id"]
    return loaded
