"""The continual pretraining driver: one fresh Lightning ``Trainer`` per task, retrieval after every task.

``run_pretrain(config)`` takes a plain dict (or :func:`load_config` of a YAML such as
``experiments/pretrain/flava_av_digits.yaml``) with the keys ``name``, ``seed``, ``stream`` (``name`` + ``params``),
``model`` (``size``: tiny/base + ``params`` overrides), ``method`` (``name`` + ``params``), ``train``
(``epochs``, ``batch_size``, ``lr``, ``betas``, ``weight_decay``, ``accelerator``, ``precision``,
``schedule``), ``eval`` (``batch_size``), ``init`` (the initialisation stage, :mod:`lifelong.pretrain.init`),
``output_dir`` and ``tracking`` (``enabled``, ``uri``).
All CL state lives in the module (model + method); the Trainer is thrown away after each task.
"""

from __future__ import annotations

import copy
import csv
import inspect
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from lifelong.data.av_cavmae import cavmae_stream
from lifelong.data.av_common import AVStream
from lifelong.data.av_digits import av_digits
from lifelong.data.av_synthetic import av_synthetic
from lifelong.errors import ConfigError, NonFiniteLossError, unknown_choice
from lifelong.metrics import av_retrieval as avr
from lifelong.models.cavmae import CAVMAE, CAVMAEConfig
from lifelong.pretrain.init import initial_state
from lifelong.pretrain.methods import PRETRAIN_METHODS, PretrainMethod, PretrainOutput
from lifelong.schedules import InfiniteSchedule

AV_STREAMS: dict[str, Callable[..., AVStream]] = {
    "av_digits": av_digits,
    "av_synthetic": av_synthetic,
    "cavmae": cavmae_stream,
}


class PretrainModule(L.LightningModule):
    """Model + method; Adam as in FLAVA (lr 1e-4, betas (0.95, 0.999), wd 5e-7), optional infinite schedule."""

    def __init__(
        self,
        model: CAVMAE,
        method: PretrainMethod,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.95, 0.999),
        weight_decay: float = 5e-7,
        schedule: InfiniteSchedule | None = None,
    ) -> None:
        super().__init__()
        self.model, self.method = model, method
        method.setup(model)
        self.lr, self.betas, self.weight_decay, self.schedule = lr, tuple(betas), weight_decay, schedule
        self.main_step = 0  # steps of the main (pre-anneal) branch across tasks
        self.task_step, self.task_steps = 0, 0
        self.fork: dict[str, torch.Tensor] | None = None
        self.samples = 0
        self._last: PretrainOutput | None = None

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """A fresh Adam per task (FLAVA uses no scheduler; see ``train.schedule``)."""
        betas = (float(self.betas[0]), float(self.betas[1]))
        return torch.optim.Adam(self.parameters(), lr=self.lr, betas=betas, weight_decay=self.weight_decay)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Set the scheduled learning rate; fork the weights where the anneal branch starts."""
        if self.schedule is None:
            return
        anneal = round(self.schedule.anneal_fraction * self.task_steps)
        start = self.task_steps - anneal
        if self.task_step < start:
            lr = self.schedule.lr(self.main_step)
            self.main_step += 1
        else:
            if self.fork is None and anneal > 0:
                self.fork = copy.deepcopy(self.state_dict())
            lr = self.schedule.anneal_lr(self.task_step - start + 1, anneal)
        optimizer = self.optimizers()
        assert not isinstance(optimizer, list)  # one optimiser (configure_optimizers)
        for group in optimizer.optimizer.param_groups:
            group["lr"] = lr
        self.task_step += 1

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """The method's loss."""
        out = self.method.training_loss(self.model, batch)
        if not torch.isfinite(out.loss):
            raise NonFiniteLossError(f"non-finite pretraining loss at step {self.global_step}: {out.parts}")
        self._last = out
        return out.loss

    def on_train_batch_end(self, outputs: Any, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Memory updates after the optimiser step."""
        assert self._last is not None  # set by training_step of the same batch
        self.method.after_training_step(self.model, batch, self._last)
        self.samples += len(batch["video"])

    def restore_fork(self) -> bool:
        """Go back to the pre-anneal weights (after evaluating the annealed branch); True if there was a fork."""
        if self.fork is None:
            return False
        self.load_state_dict(self.fork)
        self.fork = None
        return True


@torch.no_grad()
def embed_dataset(model: CAVMAE, data: Dataset, batch_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Unmasked retrieval embeddings and groups of every pair in ``data``."""
    was = model.training
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {"a": [], "v": [], "group": []}
    for batch in DataLoader(data, batch_size=batch_size):
        a, v = model.embed_clip(batch["video"].to(device), batch["audio"].to(device))
        parts["a"].append(a.cpu())
        parts["v"].append(v.cpu())
        parts["group"].append(batch["group"])
    model.train(was)
    return {k: torch.cat(v) for k, v in parts.items()}


def evaluate_retrieval(model: CAVMAE, tests: Sequence[Dataset], batch_size: int, device: torch.device) -> list[dict]:
    """Per task: a2v and v2a R@1/5/10 and median rank; queries of that task, gallery = every task's pairs."""
    embs = [embed_dataset(model, t, batch_size, device) for t in tests]
    gallery = {k: torch.cat([e[k] for e in embs]) for k in ("a", "v", "group")}
    out = []
    for e in embs:
        pos = e["group"][:, None] == gallery["group"][None]
        a2v = avr.retrieval_scores(avr.cosine_similarity(e["a"], gallery["v"]), pos)
        v2a = avr.retrieval_scores(avr.cosine_similarity(e["v"], gallery["a"]), pos)
        out.append({**{f"a2v/{k}": v for k, v in a2v.items()}, **{f"v2a/{k}": v for k, v in v2a.items()}})
    return out


def build_model(cfg: dict) -> CAVMAE:
    """``model.size`` (tiny/base) with ``model.params`` overrides."""
    size = cfg.get("size", "tiny")
    if size not in ("tiny", "base"):
        raise unknown_choice("model.size", size, ["tiny", "base"])
    return CAVMAE(getattr(CAVMAEConfig, size)(**cfg.get("params", {})))


def build_stream(cfg: dict, seed: int = 0) -> AVStream:
    """``stream.name`` with ``stream.params``; the run's ``seed`` is the default of a stream's own ``seed``.

    So ``seed=1`` on the command line also redraws a random stream's renditions (augmentation, images,
    motion), as the benchmark's seeds do; ``stream.params.seed`` still fixes them explicitly.
    """
    name = cfg.get("name", "av_digits")
    if name not in AV_STREAMS:
        raise unknown_choice("stream.name", name, AV_STREAMS)
    factory, params = AV_STREAMS[name], dict(cfg.get("params", {}))
    if "seed" in inspect.signature(factory).parameters:
        params.setdefault("seed", seed)
    return factory(**params)


def _schedule(train: dict, steps_first_task: int) -> InfiniteSchedule | None:
    sched = train.get("schedule")
    if not sched:
        return None
    sched = dict(sched)
    if sched.pop("name", "infinite") != "infinite":
        raise ConfigError("train.schedule.name must be 'infinite' (or leave train.schedule empty)")
    warmup, cooldown = sched.pop("warmup", 0.05), sched.pop("cooldown", 0.5)
    return InfiniteSchedule.for_first_task(float(train.get("lr", 1e-4)), steps_first_task, warmup, cooldown, **sched)


def make_trainer(train: dict, epochs: int) -> L.Trainer:
    """A bare Lightning ``Trainer`` for one task (no logger, checkpoints or progress bar)."""
    return L.Trainer(
        max_epochs=epochs,
        accelerator=train.get("accelerator", "cpu"),
        devices=1,
        precision=train.get("precision", "32-true"),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )


def task_loader(data: Dataset, batch_size: int, seed: int) -> DataLoader:
    """Shuffled, seeded, full batches only."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=True, generator=generator)


def make_module(model: CAVMAE, method: PretrainMethod, train: dict, schedule: InfiniteSchedule | None = None):
    """The LightningModule with ``train``'s optimiser settings."""
    return PretrainModule(
        model,
        method,
        float(train.get("lr", 1e-4)),
        tuple(train.get("betas", (0.95, 0.999))),
        float(train.get("weight_decay", 5e-7)),
        schedule,
    )


def fit_task(model: CAVMAE, method: PretrainMethod, data: Dataset, train: dict, epochs: int, seed: int) -> None:
    """Train ``model`` with ``method`` on ``data`` for ``epochs`` (a fresh optimiser, no schedule)."""
    make_trainer(train, epochs).fit(
        make_module(model, method, train), task_loader(data, int(train.get("batch_size", 16)), seed)
    )


def load_initial_state(cfg: dict, model: CAVMAE, method: PretrainMethod) -> bool:
    """Load the ``init`` checkpoint (trained and cached on first use) into the model and, for FLAVA, its AVM."""
    state = initial_state(cfg)
    if state is None:
        return False
    model.load_state_dict(state["model"])
    method.setup(model)
    avm = getattr(method, "avm", None)
    if avm is not None and state.get("avm"):
        avm.load_state_dict(state["avm"])
    return True


def _size(data: Dataset) -> int:
    """Length of a stream dataset (all of them are sized; torch types them as plain ``Dataset``)."""
    return len(data)  # type: ignore[arg-type]


def train_stream(cfg: dict, stream: AVStream | None = None) -> dict[str, Any]:
    """Run the continual pretraining described by ``cfg``; returns matrices, summaries and throughput."""
    seed = int(cfg.get("seed", 0))
    L.seed_everything(seed, workers=True, verbose=False)
    model = build_model(cfg.get("model", {}))
    mcfg = cfg.get("method", {})
    method = PRETRAIN_METHODS.get(mcfg.get("name", "finetune"))(**mcfg.get("params", {}))
    initialised = load_initial_state(cfg, model, method)
    if initialised:  # the same stream and batches whether the init checkpoint was trained now or loaded
        L.seed_everything(seed, workers=True, verbose=False)
    stream = stream or build_stream(cfg.get("stream", {}), seed)
    train = cfg.get("train", {})
    bs, epochs = int(train.get("batch_size", 16)), int(train.get("epochs", 1))
    module = make_module(model, method, train, _schedule(train, epochs * (_size(stream.train[0]) // bs)))
    eval_bs = int(cfg.get("eval", {}).get("batch_size", 64))
    initial = evaluate_retrieval(model, stream.test, eval_bs, module.device) if initialised else None
    rows, train_time = [], 0.0
    for task, data in enumerate(stream.train):
        module.task_step, module.task_steps = 0, epochs * (_size(data) // bs)
        start = time.perf_counter()
        make_trainer(train, epochs).fit(module, task_loader(data, bs, seed + task))
        train_time += time.perf_counter() - start
        method.after_experience(model, task)
        rows.append(evaluate_retrieval(model, stream.test, eval_bs, module.device))
        module.restore_fork()
    result = summarise(rows, module.samples / max(train_time, 1e-9), train_time)
    if initial is not None:
        result["initial"] = initial
    return result


def summarise(rows: list[list[dict]], samples_per_s: float, train_time: float) -> dict[str, Any]:
    """Retrieval matrices ``R[after task i][task j]`` per metric, FLAVA average/forgetting of the R@k."""
    metrics = list(rows[0][0])
    matrices = {m: [[r[j][m] for j in range(len(r))] for r in rows] for m in metrics}
    summary: dict[str, float] = {}
    for m, mat in matrices.items():
        if "MdR" in m:
            continue
        summary[f"{m}/average"] = avr.average_final(mat)
        summary[f"{m}/forgetting"] = avr.flava_forgetting(mat)
    return {"matrices": matrices, "summary": summary, "samples_per_s": samples_per_s, "train_time_s": train_time}


def write_artifacts(result: dict[str, Any], out_dir: Path) -> list[Path]:
    """Retrieval matrices as CSV + PNG heatmaps and ``summary.json``; returns the files written."""
    from lifelong.plots import matrix_heatmap

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for m, mat in result["matrices"].items():
        stem = "retrieval_" + m.replace("/", "_").replace("@", "")
        path = out_dir / f"{stem}.csv"
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["after_task", *[f"task{j}" for j in range(len(mat[0]))]])
            w.writerows([[i, *row] for i, row in enumerate(mat)])
        written.append(path)
        if m.endswith("R@1"):
            fmt = ".2f"
            written.append(
                matrix_heatmap(mat, out_dir / f"{stem}.png", f"{m} (after task i, task j)", value_format=fmt)
            )
    path = out_dir / "summary.json"
    path.write_text(json.dumps({k: v for k, v in result.items() if k != "matrices"}, indent=2))
    written.append(path)
    return written


TOP_KEYS = ("name", "seed", "stream", "model", "method", "train", "eval", "init", "output_dir", "tracking")
SECTION_KEYS = {
    "stream": ("name", "params"),
    "model": ("size", "params"),
    "method": ("name", "params"),
    "train": ("epochs", "batch_size", "lr", "betas", "weight_decay", "accelerator", "precision", "schedule"),
    "eval": ("batch_size",),
    "tracking": ("enabled", "uri"),
}


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> dict:
    """Read a pretraining YAML into a plain dict, apply ``key=value`` overrides, refuse unknown top-level keys."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from lifelong.safety import check_path_name, load_yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"pretraining config {path} does not exist")
    try:
        merged = OmegaConf.merge(OmegaConf.create(load_yaml(path) or {}), OmegaConf.from_dotlist(list(overrides)))
        cfg = OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as err:
        raise ConfigError(f"{path}: {err}".splitlines()[0]) from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path} must hold a mapping of the keys {', '.join(TOP_KEYS)}")
    check_path_name("name", str(cfg.get("name", "pretrain")))  # it becomes a folder name
    for key, value in cfg.items():
        if key not in TOP_KEYS:
            raise unknown_choice("top-level key", key, TOP_KEYS)
        for inner in value if key in SECTION_KEYS and isinstance(value, dict) else ():
            if inner not in SECTION_KEYS[key]:
                raise unknown_choice(f"key in {key}", inner, SECTION_KEYS[key])
    return cfg  # type: ignore[return-value]


def run_pretrain(cfg: dict) -> dict[str, Any]:
    """Train, write artifacts under ``output_dir`` and, if ``tracking.enabled``, log them to MLflow."""
    result = train_stream(cfg)
    name = cfg.get("name", "pretrain")
    method, stream = cfg.get("method", {}).get("name", "finetune"), cfg.get("stream", {}).get("name", "av_digits")
    run_name = f"{method}-{stream}-s{cfg.get('seed', 0)}"
    out_dir = Path(cfg.get("output_dir", f"runs/pretrain/{name}/{run_name}"))
    files = write_artifacts(result, out_dir)
    result["output_dir"] = str(out_dir)
    tracking = cfg.get("tracking", {})
    if tracking.get("enabled", False):
        from lifelong.tracking import MlflowTracker, resolve_uri

        tracker = MlflowTracker(resolve_uri(tracking.get("uri")), name, run_name)
        flat = {f"{k}.{kk}": str(vv) for k, v in cfg.items() if isinstance(v, dict) for kk, vv in v.items()}
        tracker.start(flat, {"kind": "av-pretrain"})
        if "initial" in result:  # retrieval of the init checkpoint, before the stream
            initial = {f"eval/init/{m}/task{j}": v for j, row in enumerate(result["initial"]) for m, v in row.items()}
            tracker.log_metrics(initial, step=0)
        for i in range(len(next(iter(result["matrices"].values())))):
            step_metrics = {
                f"eval/{m}/task{j}": v for m, mat in result["matrices"].items() for j, v in enumerate(mat[i])
            }
            tracker.log_metrics(step_metrics, step=i)
        tracker.log_metrics({f"stream/{k}": v for k, v in result["summary"].items()}, step=len(files))
        for f in files:
            tracker.log_artifact(f)
        tracker.end()
    return result
