"""Building the parts of a run from its config (DESIGN §1); ``lifelong.run`` executes them.

The parts: the stream, the model, the strategy, the module, the Trainer factory and the analyses.

One path for every kind of run: a labelled stream with a classifier and a classification strategy (scored
by accuracy), or an audio-video stream with an audio-video model and a pretraining strategy (scored by
retrieval). The model family (``model.backbone``) picks the evaluator; the strategy declares the family it
trains (``Strategy.model_family``) and the head it needs (``requires_head``), both checked before anything
is built.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import replace

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from torch import nn

from lifelong import config as config_lib
from lifelong.analysis import ANALYSES, Analysis
from lifelong.annealing import InfiniteLR
from lifelong.compile import compile_backbone
from lifelong.config import ExperimentConfig, StreamConfig
from lifelong.data import (
    AV_DATASETS,
    DATASETS,
    SCENARIOS,
    benchmark_from_name,
    build_av_stream,
    build_stream,
    resolve_root,
    stream_from_avalanche,
)
from lifelong.data.types import Stream, StreamInfo
from lifelong.errors import ConfigError, unknown_choice
from lifelong.init_stage import apply_initial_state, initial_state
from lifelong.loop import LoaderSettings
from lifelong.metrics.evaluators import EVALUATORS
from lifelong.models import HEADS, build_av_model, build_model, model_family, validate_backbone
from lifelong.models.av_models import AUDIO_VIDEO, AV_MODELS, av_model_config
from lifelong.module import ContinualModule
from lifelong.progress import LiveBar
from lifelong.safety import check_code
from lifelong.schedules import InfiniteSchedule
from lifelong.strategies import STRATEGIES, Strategy, check_head

EVALUATOR_OF_FAMILY = {"classifier": "accuracy", AUDIO_VIDEO: "retrieval"}
# Stream keys that only split a labelled dataset; an audio-video dataset defines its own tasks.
CLASS_SPLIT_KEYS = (
    "scenario",
    "n_experiences",
    "class_order",
    "train_per_class",
    "test_per_class",
    "classes",
    "exclude_classes",
    "classes_per_experience",
)


def check_names(cfg: ExperimentConfig) -> None:
    """Every registry name and strategy parameter in ``cfg`` exists and fits together (before anything is built)."""
    check_code("stream.avalanche.benchmark", cfg.stream.avalanche.benchmark)
    family = _check_model(cfg)
    _check_dataset(cfg, family)
    strategy = STRATEGIES.check(cfg.strategy.name, dict(cfg.strategy.params), "strategy.params")
    if strategy.model_family != family:
        raise ConfigError(
            f"strategy.name={cfg.strategy.name!r} trains {strategy.model_family} models, but "
            f"model.backbone={cfg.model.backbone!r} is a {family} model; `lifelong list` shows which go together"
        )
    if family != AUDIO_VIDEO:
        check_head(cfg.strategy.name, cfg.model.head)
    for name, params in cfg.analysis.items():
        ANALYSES.check(name, params or {}, f"analysis.{name}")
    if cfg.init.dataset is not None or cfg.init.checkpoint is not None:
        if family != AUDIO_VIDEO:
            raise ConfigError("init: the init stage is for audio-video models; remove the init section")
        _check_init(cfg)


def _check_model(cfg: ExperimentConfig) -> str:
    family = model_family(cfg.model.backbone)
    if family == AUDIO_VIDEO:
        av_model_config(cfg.model.backbone, dict(cfg.model.backbone_kwargs))
        defaults = config_lib.ModelConfig()
        for key in ("head", "head_kwargs", "multi_head"):
            if getattr(cfg.model, key) != getattr(defaults, key):
                raise ConfigError(
                    f"model.{key} does not apply to the audio-video model {cfg.model.backbone!r}; remove it"
                )
        return family
    validate_backbone(cfg.model.backbone)
    HEADS.get(cfg.model.head)
    return family


def _check_dataset(cfg: ExperimentConfig, family: str) -> None:
    stream = cfg.stream
    if stream.avalanche.benchmark is not None:
        return
    if stream.dataset in AV_DATASETS:
        defaults = StreamConfig()
        for key in CLASS_SPLIT_KEYS:
            if getattr(stream, key) != getattr(defaults, key):
                raise ConfigError(
                    f"stream.{key} does not apply to the audio-video dataset {stream.dataset!r}: it defines its "
                    "own tasks (stream.params.tasks); remove the key"
                )
        AV_DATASETS.check(stream.dataset, dict(stream.params), "stream.params")
        if family != AUDIO_VIDEO:
            raise ConfigError(
                f"stream.dataset={stream.dataset!r} is an audio-video dataset; use an audio-video model "
                f"(model.backbone: one of {', '.join(AV_MODELS.names())})"
            )
        return
    if stream.dataset not in DATASETS:
        raise unknown_choice("stream.dataset", stream.dataset, DATASETS.names() + AV_DATASETS.names())
    if stream.params:
        raise ConfigError(f"stream.params applies to audio-video datasets only; remove it for {stream.dataset!r}")
    SCENARIOS.get(stream.scenario)
    if family == AUDIO_VIDEO:
        raise ConfigError(
            f"model.backbone={cfg.model.backbone!r} is an audio-video model; stream.dataset must be one of "
            f"{', '.join(AV_DATASETS.names())}"
        )


def _check_init(cfg: ExperimentConfig) -> None:
    init = cfg.init
    if init.dataset is not None:
        AV_DATASETS.check(init.dataset, dict(init.params), "init.params")
    if STRATEGIES.get(init.strategy).model_family != AUDIO_VIDEO:
        raise unknown_choice("init.strategy", init.strategy, ["av_finetune", "av_contrast"])


def analysis_device(cfg: ExperimentConfig) -> torch.device:
    """Where analyses run the model: the first GPU when the trainer may use one, else the CPU."""
    wants_gpu = cfg.trainer.accelerator in ("auto", "gpu", "cuda")
    return torch.device("cuda") if wants_gpu and torch.cuda.is_available() else torch.device("cpu")


def build_enabled_analyses(cfg: ExperimentConfig, stream: Stream) -> dict[str, Analysis]:
    """The analyses the config's ``analysis:`` section enables, set up for ``stream``."""
    analyses = {name: ANALYSES.build(name, params or {}, f"analysis.{name}") for name, params in cfg.analysis.items()}
    for analysis in analyses.values():
        analysis.setup(stream, analysis_device(cfg))
    return analyses


def online_settings(cfg: ExperimentConfig) -> tuple[int, int]:
    """(batch size, epochs): an online stream is one pass in mini-batches of ``stream.online.batch_size``."""
    if cfg.stream.online.batch_size is not None:
        return cfg.stream.online.batch_size, 1
    return cfg.train.batch_size, cfg.train.epochs


def loader_settings(cfg: ExperimentConfig) -> LoaderSettings:
    """How the loop turns the stream's datasets into loaders."""
    batch_size, _ = online_settings(cfg)
    t = cfg.train
    return LoaderSettings(
        batch_size,
        t.eval_batch_size,
        t.num_workers,
        cfg.seed,
        drop_last=t.drop_last,
        shuffle=cfg.stream.online.shuffle,
        batches_per_call=t.batches_per_call,
    )


def make_optimizer(cfg: config_lib.OptimConfig):  # noqa: ANN201
    """A factory building ``cfg.name`` over given parameters."""

    def build(params):  # noqa: ANN001, ANN202
        if cfg.name == "sgd":
            return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        kind = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
        betas = (float(cfg.betas[0]), float(cfg.betas[1]))
        return kind(params, lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay)

    return build


def build_parts(
    cfg: ExperimentConfig, *, say: Callable[[str], None] | None = None, progress: LiveBar | None = None
) -> tuple[Stream, ContinualModule]:
    """The stream and the module (model + strategy + evaluator) a config describes.

    An audio-video run with an ``init`` section starts from the init stage's weights (trained and cached
    on first use), after which the global random generators are re-seeded, so training draws the same
    numbers whether the init checkpoint was trained now or loaded. ``say`` and ``progress`` report the
    init stage (:func:`lifelong.init_stage.initial_state`).
    """
    stream = build_run_stream(cfg)
    model = build_run_model(cfg, stream.info)
    if cfg.trainer.compile:
        compile_backbone(model, cfg.trainer.compile_backend)
    strategy: Strategy = STRATEGIES.build(cfg.strategy.name, dict(cfg.strategy.params), "strategy.params", cfg.seed)
    if cfg.init.dataset is not None or cfg.init.checkpoint is not None:
        init = cfg.init
        optimizer = make_optimizer(cfg.optim if init.lr is None else replace(cfg.optim, lr=init.lr))
        batch_size = init.batch_size or cfg.train.batch_size
        make_trainer = trainer_factory(cfg)
        state = initial_state(
            init, cfg.model, optimizer, batch_size, cfg.seed, cfg.output_dir, make_trainer, say=say, progress=progress
        )
        apply_initial_state(model, strategy, stream.info, state)
        L.seed_everything(cfg.seed, workers=True, verbose=False)
    family = model_family(cfg.model.backbone)
    evaluator = EVALUATORS.build(EVALUATOR_OF_FAMILY[family], {"n_experiences": len(stream)})
    module = ContinualModule(
        model,
        strategy,
        make_optimizer(cfg.optim),
        len(stream),
        log_every_n_steps=cfg.train.log_every_n_steps,
        evaluator=evaluator,
        lr_schedule=lr_schedule(cfg, len(stream.train[0].dataset)),
        carry_optimizer_state=not cfg.optim.fresh_per_experience,
    )
    return stream, module


def lr_schedule(cfg: ExperimentConfig, first_experience_size: int) -> InfiniteLR | None:
    """The run's learning-rate schedule (``optim.schedule``), its phases sized on the first experience."""
    s = cfg.optim.schedule
    if s.name is None:
        return None
    batch_size, epochs = online_settings(cfg)
    batches = first_experience_size // batch_size if cfg.train.drop_last else -(-first_experience_size // batch_size)
    extra = {"const_ratio": s.const_ratio, "min_ratio": s.min_ratio, "shape": s.shape}
    try:
        schedule = InfiniteSchedule.for_first_task(
            cfg.optim.lr, epochs * batches, s.warmup, s.cooldown, anneal_fraction=s.anneal_fraction, **extra
        )
    except ValueError as err:
        raise ConfigError(f"optim.{err}") from None
    return InfiniteLR(schedule)


def build_run_stream(cfg: ExperimentConfig) -> Stream:
    """The stream of ``cfg``: an Avalanche benchmark, an audio-video dataset, or a labelled dataset split."""
    s = cfg.stream
    if s.avalanche.benchmark is not None:
        benchmark = benchmark_from_name(s.avalanche.benchmark, s.avalanche.kwargs, seed=cfg.seed)
        return stream_from_avalanche(benchmark, cfg.stream_name, s.scenario)
    if s.dataset in AV_DATASETS:
        try:
            return build_av_stream(s.dataset, dict(s.params), cfg.seed, s.root)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"stream.params of {s.dataset!r}: {err}") from None
    return build_stream(
        s.dataset,
        s.scenario,
        s.n_experiences,
        root=resolve_root(s.root),
        download=s.download,
        seed=cfg.seed,
        class_order=s.class_order,
        train_per_class=s.train_per_class,
        test_per_class=s.test_per_class,
        classes=s.classes,
        exclude_classes=s.exclude_classes,
        classes_per_experience=s.classes_per_experience,
    )


def build_run_model(cfg: ExperimentConfig, info: StreamInfo) -> nn.Module:
    """The model of ``cfg`` for a stream described by ``info`` (freshly initialised; no data is read)."""
    m = cfg.model
    if model_family(m.backbone) == AUDIO_VIDEO:
        return build_av_model(m.backbone, dict(m.backbone_kwargs))
    return build_model(
        m.backbone,
        m.head,
        num_classes=info.num_classes,
        input_shape=info.input_shape,
        multi_head=m.multi_head,
        n_tasks=info.n_experiences,
        backbone_kwargs=dict(m.backbone_kwargs),
        head_kwargs=dict(m.head_kwargs),
    )


def quiet_lightning() -> None:
    """Silence Lightning's per-Trainer banners and the warnings that do not apply to this loop."""
    import logging

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for message in (
        ".*does not have many workers.*",
        ".*but have no `val_dataloader`.*",
        ".*LeafSpec.*",
        ".*GPU available but not used.*",
        ".*litlogger.*",
    ):
        warnings.filterwarnings("ignore", message=message)


def trainer_factory(cfg: ExperimentConfig):  # noqa: ANN201
    """Builds the fresh Trainer used for each experience (DESIGN §4): ``make(epochs=None)``.

    The only place of the suite that constructs a ``lightning.Trainer``. ``epochs`` defaults to the run's
    (one for an online stream); the init stage asks for its own.
    """
    quiet_lightning()
    _, run_epochs = online_settings(cfg)
    strategy = cfg.trainer.strategy
    unused = cfg.model.multi_head or model_family(cfg.model.backbone) == AUDIO_VIDEO
    if strategy == "ddp" and unused:  # other tasks' heads / the other passes' LayerNorms get no gradient in a step
        strategy = "ddp_find_unused_parameters_true"

    def make(epochs: int | None = None) -> L.Trainer:
        try:
            return _trainer(cfg, run_epochs if epochs is None else epochs, strategy)
        except (MisconfigurationException, ImportError, ValueError, TypeError) as err:
            t = cfg.trainer
            raise ConfigError(
                f"trainer: {str(err).strip().splitlines()[0]} (trainer.accelerator={t.accelerator!r}, "
                f"trainer.devices={t.devices!r}, trainer.strategy={t.strategy!r}, trainer.precision={t.precision!r})"
            ) from None

    return make


def _trainer(cfg: ExperimentConfig, epochs: int, strategy: str) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs,
        accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices,
        num_nodes=cfg.trainer.num_nodes,
        strategy=strategy,
        precision=cfg.trainer.precision,  # type: ignore[arg-type]
        deterministic=cfg.trainer.deterministic,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=cfg.trainer.progress_bar,
        num_sanity_val_steps=0,
    )
