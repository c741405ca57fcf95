"""The initialisation stage before an audio-video stream (FLAVA's initialisation chain, scaled down).

FLAVA never starts from random weights: an audio-video model is first pretrained on a separate pool
(AudioSet-20K, itself initialised from ImageNet MAE weights), then the AVM is warmed up on that pool with
the backbone frozen, and only then does the continual stream begin (``../shared/research/flava.md`` §1).
The ``init:`` section of a config reproduces the last two links at CPU scale:

.. code-block:: yaml

    init:
      dataset: av_digits
      params: {tasks: [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]], train_voices: [it]}
      strategy: av_contrast   # or av_finetune (InfoNCE on the masked clip, as CAV-MAE)
      epochs: 20              # the objective on the whole pool
      model_kwargs: {}        # loss-only overrides for this stage (contrastive_weight, visible_ratio, tau)
      avm_epochs: 3           # AVM warm-up, backbone frozen (strategy avm_warmup)
      # checkpoint: path.pt   # or load a ready one

Both steps train through the suite's own module and Trainer factory (one ``fit`` each; the pool is one
experience). The result, ``{"model": ..., "avm": ...}``, is cached under ``cache_dir`` (default
``<output_dir>/init``) by a hash of the init section, the model and the seed, so every method of a
comparison starts from the same file; only FLAVA uses the AVM.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import ConcatDataset

from lifelong.config import InitConfig, ModelConfig, to_dict
from lifelong.data import build_av_stream
from lifelong.data.types import Experience, StreamInfo
from lifelong.errors import ConfigError
from lifelong.loop import LoaderSettings, train_experience
from lifelong.models.av_models import build_av_model
from lifelong.module import ContinualModule, OptimizerFactory
from lifelong.progress import LiveBar
from lifelong.strategies import STRATEGIES, Strategy

LOSS_ONLY = ("contrastive_weight", "visible_ratio", "tau")
TrainerFor = Callable[[int], L.Trainer]


def initial_state(
    init: InitConfig,
    model: ModelConfig,
    optimizer: OptimizerFactory,
    batch_size: int,
    seed: int,
    output_dir: str,
    make_trainer: TrainerFor,
    *,
    say: Callable[[str], None] | None = None,
    progress: LiveBar | None = None,
) -> dict[str, Any]:
    """The init checkpoint (``{"model": ..., "avm": ...}``): loaded from ``init.checkpoint`` or the cache, else trained.

    Args:
        init: the init section.
        model: the run's model section (the init stage trains the same architecture).
        optimizer: the optimizer factory of both steps (the run's, with ``init.lr``).
        batch_size: the batch size of both steps.
        seed: the run's seed.
        output_dir: the default cache is ``<output_dir>/init``.
        make_trainer: builds a Trainer for a number of epochs (the run's Trainer factory).
        say: writes a line of the run (which file is loaded, or what is trained: it may take minutes).
        progress: the live bar of an interactive terminal, drawn while the init stage trains.

    """
    say = say or (lambda line: None)
    if init.checkpoint:
        path = Path(init.checkpoint)
        if not path.is_file():
            raise ConfigError(f"init.checkpoint={path} does not exist; remove it to train the init stage instead")
        say(f"init: loading {path}")
        return torch.load(path, map_location="cpu", weights_only=True)
    path = Path(init.cache_dir or Path(output_dir) / "init") / f"init-{init_key(init, model, seed)}.pt"
    if path.is_file():
        say(f"init: loading the cached init stage {path}")
        return torch.load(path, map_location="cpu", weights_only=True)
    say(
        f"init: training {init.strategy} on the {init.dataset} pool for {init.epochs} epoch(s)"
        + (f" and an AVM warm-up for {init.avm_epochs}" if init.avm_epochs > 0 else "")
        + f" before the stream (once: cached as {path})"
    )
    started = time.perf_counter()
    state = train_init(init, model, optimizer, batch_size, seed, make_trainer, progress)
    say(f"init: trained in {time.perf_counter() - started:.0f} s")
    if not (torch.distributed.is_initialized() and torch.distributed.get_rank() > 0):  # rank 0 writes the cache
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(path)
    return state


def init_key(init: InitConfig, model: ModelConfig, seed: int) -> str:
    """A short hash of what determines the init checkpoint: the init section, the model and the seed."""
    what = {k: v for k, v in to_dict(init).items() if k not in ("cache_dir", "checkpoint")}
    blob = json.dumps([what, to_dict(model), int(seed)], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def train_init(
    init: InitConfig,
    model_cfg: ModelConfig,
    optimizer: OptimizerFactory,
    batch_size: int,
    seed: int,
    make_trainer: TrainerFor,
    progress: LiveBar | None = None,
) -> dict[str, Any]:
    """Train the model on the init pool with ``init.strategy``, then warm up an AVM on it with the backbone frozen."""
    bad = sorted(set(init.model_kwargs) - set(LOSS_ONLY))
    if bad:
        raise ConfigError(f"init.model_kwargs may only change {list(LOSS_ONLY)}, not {bad}")
    if init.dataset is None:
        raise ConfigError("init.dataset is not set; name the pool the init stage trains on (or init.checkpoint)")
    L.seed_everything(seed, workers=True, verbose=False)
    stream = build_av_stream(init.dataset, dict(init.params), seed)
    classes = sorted({c for e in stream.train for c in e.classes})
    pool = Experience(0, ConcatDataset([e.dataset for e in stream.train]), classes)  # type: ignore[arg-type]
    model: Any = build_av_model(model_cfg.backbone, {**model_cfg.backbone_kwargs, **init.model_kwargs})
    loaders = LoaderSettings(batch_size, batch_size, 0, seed, drop_last=True)
    objective = STRATEGIES.build(init.strategy, {}, "init.strategy")
    fit = partial(_fit, model, info=stream.info, pool=pool, opt=optimizer, loaders=loaders, progress=progress)
    fit(objective, make_trainer(init.epochs), label=f"init {init.strategy}")
    warmup = STRATEGIES.build("avm_warmup", {}, "init")
    if init.avm_epochs > 0:
        for p in model.parameters():
            p.requires_grad_(False)
        fit(warmup, make_trainer(init.avm_epochs), label="init AVM warm-up")
        for p in model.parameters():
            p.requires_grad_(True)
    return {"model": model.state_dict(), "avm": warmup.avm_state() if init.avm_epochs > 0 else {}}


def _fit(
    model: Any,
    strategy: Strategy,
    trainer: L.Trainer,
    *,
    info: StreamInfo,
    pool: Experience,
    opt: OptimizerFactory,
    loaders: LoaderSettings,
    progress: LiveBar | None,
    label: str,
) -> None:
    """One ``fit`` of ``strategy`` on the whole pool, drawn on ``progress`` (if any) as ``label``."""
    strategy.setup(model, info)
    module = ContinualModule(model, strategy, opt, 0, log_every_n_steps=10**9)
    module.progress = progress
    if progress is not None:
        progress.label = label
    if trainer.max_epochs:
        train_experience(module, pool, trainer, loaders)
    if progress is not None:
        progress.clear()
        progress.label = None


def apply_initial_state(model: Any, strategy: Strategy, info: StreamInfo, state: dict[str, Any]) -> None:
    """Load the init checkpoint into ``model`` and, when the strategy has an AVM (FLAVA), the warmed-up AVM."""
    model.load_state_dict(state["model"])
    strategy.setup(model, info)  # builds an AVM if the strategy has one (idempotent for audio-video strategies)
    avm = getattr(strategy, "avm", None)
    if avm is not None and state.get("avm"):
        avm.load_state_dict(state["avm"])
