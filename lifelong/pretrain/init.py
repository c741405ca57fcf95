"""The initialisation stage before a continual pretraining stream (FLAVA's initialisation chain, scaled down).

FLAVA never starts from random weights: an audio-video model is first pretrained on a separate pool
(AudioSet-20K, itself initialised from ImageNet MAE weights), then the AVM is warmed up on that pool with
the backbone frozen, and only then does the continual stream begin (``../shared/research/flava.md`` §1).
``init:`` in a pretraining config reproduces the last two links at CPU scale:

.. code-block:: yaml

    init:
      stream: {name: av_digits, params: {tasks: [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]], train_voices: [it]}}
      epochs: 20            # CAV-MAE objective (finetune method) on the init pool
      lr: 1.0e-3
      model_params: {}      # loss-only overrides for this stage (contrastive_weight, visible_ratio, tau)
      contrast: masked      # InfoNCE on the masked clip (CAV-MAE) or on the unmasked clip (see UnmaskedContrast)
      avm_epochs: 3         # AVM warm-up, backbone frozen (BCE on matched / deranged pairs)
      cache_dir: runs/pretrain/init   # one checkpoint per (init config, model, seed), shared by every method
      # checkpoint: path.pt  # or load a ready one

The checkpoint holds ``model`` (the backbone's state dict) and ``avm`` (the warmed-up AVM's), and every
method of a comparison starts from the same file; only FLAVA uses the AVM.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from lifelong.errors import ConfigError
from lifelong.models.cavmae import CAVMAE, CAVMAEConfig, info_nce
from lifelong.pretrain.methods import PretrainMethod, PretrainOutput

INIT_KEYS = {
    "stream",
    "epochs",
    "lr",
    "batch_size",
    "model_params",
    "contrast",
    "avm_epochs",
    "cache_dir",
    "checkpoint",
}
CONTRASTS = ("masked", "unmasked")
LOSS_ONLY = {"contrastive_weight", "visible_ratio", "tau"}


def initial_state(cfg: dict) -> dict[str, Any] | None:
    """The init checkpoint of ``cfg`` (``{"model": ..., "avm": ...}``), trained and cached on first use.

    Returns None when ``cfg`` has no ``init`` section.
    """
    init = cfg.get("init")
    if not init:
        return None
    unknown = set(init) - INIT_KEYS
    if unknown:
        raise ConfigError(f"unknown key(s) init.{', init.'.join(sorted(unknown))}; allowed: {sorted(INIT_KEYS)}")
    if init.get("checkpoint"):
        path = Path(init["checkpoint"])
        if not path.is_file():
            raise ConfigError(f"init.checkpoint={path} does not exist; remove it to train the init stage instead")
        return torch.load(path, map_location="cpu", weights_only=True)
    path = Path(init.get("cache_dir", "runs/pretrain/init")) / f"init-{init_key(cfg)}.pt"
    if path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True)
    state = train_init(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    return state


def init_key(cfg: dict) -> str:
    """A short hash of what determines the init checkpoint: the init section, the model and the seed."""
    what = {k: v for k, v in cfg["init"].items() if k not in ("cache_dir", "checkpoint")}
    blob = json.dumps([what, cfg.get("model", {}), int(cfg.get("seed", 0))], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def init_model(cfg: dict) -> CAVMAE:
    """The stream's model with the init stage's loss-only overrides (same architecture, same state dict keys)."""
    from lifelong.pretrain.loop import build_model

    overrides = dict(cfg["init"].get("model_params") or {})
    bad = set(overrides) - LOSS_ONLY
    if bad:
        raise ConfigError(f"init.model_params may only change {sorted(LOSS_ONLY)}, not {sorted(bad)}")
    model = build_model(cfg.get("model", {}))
    if overrides:
        values = {**model.config.__dict__, **overrides}
        model = CAVMAE(CAVMAEConfig(**values))
    return model


def train_init(cfg: dict) -> dict[str, Any]:
    """Pretrain the backbone on the init pool (finetune method), then warm up an AVM on it with the backbone frozen."""
    from lifelong.pretrain.flava import FLAVA
    from lifelong.pretrain.loop import build_stream, fit_task

    init = cfg["init"]
    seed = int(cfg.get("seed", 0))
    L.seed_everything(seed, workers=True, verbose=False)
    stream = build_stream(init.get("stream") or {}, seed)
    data: torch.utils.data.Dataset = torch.utils.data.ConcatDataset(stream.train)
    model = init_model(cfg)
    train = {**cfg.get("train", {}), **{k: init[k] for k in ("lr", "batch_size") if k in init}}
    contrast = init.get("contrast", "masked")
    if contrast not in CONTRASTS:
        raise ConfigError(f"init.contrast={contrast!r} is not allowed; choose one of {CONTRASTS}")
    objective = PretrainMethod() if contrast == "masked" else UnmaskedContrast()
    fit_task(model, objective, data, train, int(init.get("epochs", 10)), seed)
    avm = FLAVA(**_avm_params(cfg))
    avm.setup(model)
    warm_up_avm(model, avm, data, int(train.get("batch_size", 16)), int(init.get("avm_epochs", 0)), seed, train)
    return {"model": model.state_dict(), "avm": avm.avm.state_dict() if avm.avm is not None else {}}


class UnmaskedContrast(PretrainMethod):
    """Init objective: MAE on the masked clip + InfoNCE on the *unmasked* clip's embeddings (same weight and tau).

    A deliberate departure for tiny from-scratch models: on the av_digits init pool, InfoNCE on 20 % visible
    tokens stays at ln(batch) for 2250 steps, while on the unmasked clip it starts aligning after ~1000.
    FLAVA's own init starts from ImageNet MAE weights, which this stage stands in for.
    """

    def training_loss(self, model: CAVMAE, batch: dict[str, torch.Tensor]) -> PretrainOutput:
        out = model.pretrain_forward(batch["video"], batch["audio"])
        codes = model.full_codes(batch["video"], batch["audio"])
        emb = {m: model.unimodal_embedding(codes[m], m) for m in ("a", "v")}
        nce = info_nce(emb["a"], emb["v"], model.config.tau)
        loss = out["mae_a"] + out["mae_v"] + model.config.contrastive_weight * nce
        parts = {"mae_a": out["mae_a"].detach(), "mae_v": out["mae_v"].detach(), "nce": nce.detach()}
        return PretrainOutput(loss, parts)


def _avm_params(cfg: dict) -> dict[str, Any]:
    method = cfg.get("method", {})
    heads = (method.get("params") or {}).get("avm_heads") if method.get("name") == "flava" else None
    return {"avm_heads": heads}


def warm_up_avm(
    model: CAVMAE, method: Any, data: torch.utils.data.Dataset, batch_size: int, epochs: int, seed: int, train: dict
) -> None:
    """Train only ``method.avm`` (BCE on matched / deranged pairs) for ``epochs``; the backbone is not updated."""
    if epochs <= 0:
        return
    model.eval()  # frozen backbone: no dropout, no updates
    opt = torch.optim.Adam(method.avm.parameters(), lr=float(train.get("lr", 1e-4)), betas=(0.95, 0.999))
    loader = DataLoader(data, batch_size, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(seed))
    for _ in range(epochs):
        for batch in loader:
            a, v = method.joint_tokens(model, batch["video"], batch["audio"])
            loss = method.avm_loss(a, v)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.train()
