"""Typed experiment configuration: dataclass schemas merged with YAML files and CLI dotlist overrides.

``load(paths, overrides)`` returns a validated :class:`ExperimentConfig`. A YAML file may name a
parent with ``extends: other.yaml`` (relative to itself); the parent is merged first. Structural
mistakes (an unknown key, a wrong type, an impossible value) raise :class:`ConfigError` naming
the key, the bad value and what is allowed. Names that live in registries (strategy, dataset,
backbone ...) are checked by ``lifelong.run.check_names`` before anything is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from lifelong.errors import ConfigError, did_you_mean, unknown_choice
from lifelong.safety import check_path_name, load_yaml
from lifelong.shipped import resolve as resolve_shipped

PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")
OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclass
class OnlineConfig:
    """Single-pass (online) learning: each experience is seen once in mini-batches of ``batch_size``.

    Attributes:
        batch_size: incoming samples per step of a single pass; ``null`` trains offline (``train.batch_size``
            for ``train.epochs`` epochs).
        shuffle: shuffle each training experience (the default); ``false`` keeps the order the stream gives
            (temporally ordered streams, pre-ordered benchmarks), online or offline (every epoch the same order).
            Under DDP with ``false``, rank ``r`` of ``w`` reads samples ``r, r + w, r + 2w, ...`` in that order
            (the shard is padded with the first samples so every rank takes as many steps).

    """

    batch_size: int | None = None
    shuffle: bool = True


@dataclass
class AvalancheConfig:
    """An Avalanche benchmark as the stream: a class of ``avalanche.benchmarks.classic`` or ``module:callable``."""

    benchmark: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class StreamConfig:
    """What to learn: a labelled dataset split by ``scenario``, or an audio-video dataset with ``params``.

    An audio-video dataset (``lifelong list``) splits itself into tasks: its keyword arguments go in
    ``params`` (e.g. ``tasks``), and ``scenario``, ``n_experiences``, ``class_order`` and the per-class
    subsampling keys do not apply.

    ``classes`` (or ``exclude_classes``) trains on a subset of the dataset's classes, leaving the others
    out of every experience (open-set evaluation); ``classes_per_experience`` gives each class-incremental
    experience its number of classes (e.g. ``[50, 10, 10, 10, 10, 10]``), one entry per experience.
    """

    dataset: str = "digits"
    scenario: str = "class_incremental"
    n_experiences: int = 5
    root: str | None = None
    download: bool = False
    class_order: list[int] | None = None
    train_per_class: int | None = None
    test_per_class: int | None = None
    classes: list[int] | None = None
    exclude_classes: list[int] | None = None
    classes_per_experience: list[int] | None = None
    online: OnlineConfig = field(default_factory=OnlineConfig)
    avalanche: AvalancheConfig = field(default_factory=AvalancheConfig)
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelConfig:
    backbone: str = "mlp"
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    head: str = "linear"
    head_kwargs: dict[str, Any] = field(default_factory=dict)
    multi_head: bool = False


@dataclass
class StrategyConfig:
    name: str = "finetune"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ScheduleConfig:
    """A learning-rate schedule (``name: infinite``; ``null``: the constant ``optim.lr``).

    The infinite schedule (``lifelong/schedules.py``): warmup over ``warmup`` and cooldown until ``cooldown``
    (fractions of the first experience's steps) to ``const_ratio`` x ``optim.lr``, then constant; each
    experience's last ``anneal_fraction`` of steps anneals a fork of the weights to ``min_ratio`` x ``optim.lr``
    for its evaluation, and training continues from the fork.
    """

    name: str | None = None
    warmup: float = 0.05
    cooldown: float = 0.5
    const_ratio: float = 0.75
    min_ratio: float = 0.05
    shape: str = "cosine"
    anneal_fraction: float = 0.2


@dataclass
class OptimConfig:
    """The optimizer; ``betas`` apply to adam/adamw, ``momentum`` to sgd.

    ``fresh_per_experience`` (default): every experience starts a fresh optimizer; ``false`` keeps one optimizer
    state (moments, step counts) for the whole stream, as the official FLAVA run does.
    """

    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.0
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    fresh_per_experience: bool = True


@dataclass
class TrainConfig:
    epochs: int = 1
    batch_size: int = 32
    eval_batch_size: int = 100  # 100 keeps a reduced ResNet-18's activations in cache: 1.8x faster than 1000 on CPU
    num_workers: int = 0
    log_every_n_steps: int = 20
    drop_last: bool = False  # train on full batches only (the last partial batch of each epoch is dropped)
    batches_per_call: int = 64  # mini-batches per call of Lightning's training_step, one optimizer update each


@dataclass
class TrainerConfig:
    accelerator: str = "cpu"
    devices: Any = 1
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    deterministic: bool = False
    progress_bar: bool = False
    compile: bool = False  # torch.compile the classifier's backbone (lifelong.compile)
    compile_backend: str = "inductor"  # torch.compile's backend, e.g. "eager" to check tracing without codegen


@dataclass
class TrackingConfig:
    """``log_models``: log the model after each experience; ``system_metrics``: CPU/GPU/memory as ``system/*``."""

    enabled: bool = True
    uri: str | None = None
    experiment: str | None = None
    log_models: bool = True
    system_metrics: bool = True


@dataclass
class CheckpointConfig:
    """``enabled``: write ``<run dir>/checkpoints`` after every experience (needed by ``--resume``).

    ``every_n_steps``: also every N training steps inside an experience (0: off), so that a kill in a long
    (online) experience loses at most N steps; resuming gives the uninterrupted run's result.
    """

    enabled: bool = True
    every_n_steps: int = 0


@dataclass
class InitConfig:
    """An initialisation stage before the stream (FLAVA's init chain at small scale; audio-video runs only).

    When ``dataset`` is set, the model is first trained on that pool (every task of it at once) with the
    ``strategy`` objective for ``epochs``, then, for ``avm_epochs``, an AVM is warmed up on the same pool with
    the backbone frozen (loaded into FLAVA's AVM). The result is cached in ``cache_dir`` under a hash of this
    section, the model and the seed, so every method of a comparison starts from the same weights;
    ``checkpoint`` loads a ready file instead. ``lr`` / ``batch_size`` default to ``optim.lr`` /
    ``train.batch_size``; ``model_kwargs`` may change only loss settings of the model for this stage.
    """

    dataset: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    strategy: str = "av_finetune"
    epochs: int = 10
    lr: float | None = None
    batch_size: int | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    avm_epochs: int = 0
    cache_dir: str | None = None  # default: <output_dir>/init
    checkpoint: str | None = None


@dataclass
class ExperimentConfig:
    name: str = "default"
    seed: int = 0
    output_dir: str = "runs"
    stream: StreamConfig = field(default_factory=StreamConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    analysis: dict[str, Any] = field(default_factory=dict)  # analysis name -> its parameters (null: defaults)
    init: InitConfig = field(default_factory=InitConfig)

    @property
    def experiment_name(self) -> str:
        """The MLflow experiment: ``tracking.experiment`` if set, else ``name``."""
        return self.tracking.experiment or self.name

    @property
    def stream_name(self) -> str:
        """The dataset, or the Avalanche benchmark when ``stream.avalanche.benchmark`` is set."""
        benchmark = self.stream.avalanche.benchmark
        return benchmark.rpartition(":")[2] if benchmark else self.stream.dataset

    @property
    def run_name(self) -> str:
        """``<strategy>-<stream>-s<seed>`` (DESIGN §6)."""
        return f"{self.strategy.name}-{self.stream_name}-s{self.seed}"


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read one YAML file, following ``extends:`` chains (parents first, cycles rejected)."""
    return _read_yaml(Path(path), seen=())


def _read_yaml(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"extends: cycle through {path}")
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    data = load_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys, got {type(data).__name__}")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    base = OmegaConf.create(_read_yaml(path.parent / str(parent), seen + (path,)))
    update = OmegaConf.create(data)
    _drop_arguments_of_renamed_parts(base, update)
    return OmegaConf.to_container(OmegaConf.merge(base, update))  # type: ignore[return-value]


def load(paths: list[str | Path] | str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Merge defaults, YAML files (in order) and ``key=value`` overrides into a validated config.

    Raises:
        ConfigError: on an unknown key, a wrong type or an invalid value.

    """
    if paths is None:
        paths = []
    elif isinstance(paths, str | Path):
        paths = [paths]
    merged: DictConfig = OmegaConf.structured(ExperimentConfig)
    for path in paths:
        merged = _merge(merged, read_yaml(resolve_shipped(path)), source=str(path))
    if overrides:
        _check_override_syntax(overrides)
        merged = _merge(merged, _parse_overrides(overrides), source="command line")
    try:
        cfg: ExperimentConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as err:  # e.g. an interpolation ``${...}`` that does not resolve
        raise _translate(err, "the merged config") from None
    validate(cfg)
    return cfg


def _parse_overrides(overrides: list[str]) -> DictConfig:
    """The ``key=value`` overrides as one config; a value OmegaConf cannot parse is named."""
    for item in overrides:
        try:
            OmegaConf.from_dotlist([item])
        except Exception as err:  # noqa: BLE001 - YAML and OmegaConf grammar errors alike
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(
                f"override {item!r} cannot be parsed ({first}); close brackets and quote text with "
                "special characters, e.g. key='a b' or key=[1,2]"
            ) from None
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except Exception as err:  # noqa: BLE001 - overrides that contradict each other, e.g. a=1 a.b=2
        raise ConfigError(f"overrides {' '.join(overrides)!r} contradict each other: {err}") from None


# A name and the keyword arguments that belong to it: a layer naming another one starts from no arguments.
NAMED_WITH_ARGUMENTS = {
    "strategy.name": "strategy.params",
    "model.backbone": "model.backbone_kwargs",
    "model.head": "model.head_kwargs",
}


def _drop_arguments_of_renamed_parts(merged: DictConfig, update: DictConfig) -> None:
    """A layer (YAML or command line) that names another strategy, backbone or head starts it from its defaults.

    ``strategy.params`` (``model.backbone_kwargs``, ``model.head_kwargs``) of the layers below belong to the
    strategy (backbone, head) they named; the new layer's own arguments (if any) are then merged as usual.
    A layer may also clear a mapping of arguments by setting it to ``null`` (``model.backbone_kwargs=null``).
    """
    for name_key, args_key in NAMED_WITH_ARGUMENTS.items():
        new = OmegaConf.select(update, name_key)
        renamed = new is not None and new != OmegaConf.select(merged, name_key)
        cleared = OmegaConf.select(update, args_key, default=0) is None
        if (renamed or cleared) and OmegaConf.select(merged, args_key) is not None:
            OmegaConf.update(merged, args_key, {}, merge=False)
        if cleared:
            parent, leaf = args_key.rsplit(".", 1)
            del OmegaConf.select(update, parent)[leaf]


def _check_override_syntax(overrides: list[str]) -> None:
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override {item!r} must look like key=value, e.g. strategy.name=er")


def _merge(base: DictConfig, layer: DictConfig | dict[str, Any], source: str) -> DictConfig:
    """``layer`` (a YAML file or the overrides) merged over ``base``; any failure is a ``ConfigError``."""
    try:
        update = layer if isinstance(layer, DictConfig) else OmegaConf.create(layer)
        _drop_arguments_of_renamed_parts(base, update)
        return OmegaConf.merge(base, update)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        raise _translate(err, source) from None
    except (TypeError, ValueError, AttributeError) as err:  # e.g. a list where the schema has a mapping
        raise ConfigError(f"{source}: {err}") from None


def _translate(err: OmegaConfBaseException, source: str) -> ConfigError:
    """Turn an OmegaConf error into a ConfigError naming the key and what is allowed."""
    key = getattr(err, "full_key", None) or "?"
    if isinstance(err, ConfigKeyError):
        parent, _, leaf = key.rpartition(".")
        allowed = _allowed_keys(parent)
        return ConfigError(
            f"unknown config key {key!r} (from {source}){did_you_mean(leaf, allowed)}; "
            f"keys allowed here: {', '.join(allowed)}"
        )
    if isinstance(err, ValidationError):
        expected = _expected_type(key)
        return ConfigError(f"{key}: {str(err.msg).splitlines()[0]} (from {source}); expected {expected}")
    message = str(getattr(err, "msg", None) or err).strip().splitlines() or [type(err).__name__]
    return ConfigError(f"{key}: {message[0]} (from {source})")


def _schema_node(dotted: str) -> Any:
    node: Any = ExperimentConfig()
    for part in filter(None, dotted.split(".")):
        node = getattr(node, part, None)
    return node


def _allowed_keys(dotted_parent: str) -> list[str]:
    node = _schema_node(dotted_parent)
    fields = getattr(node, "__dataclass_fields__", None)
    return sorted(fields) if fields else []


def _expected_type(key: str) -> str:
    parent, _, leaf = key.rpartition(".")
    fields = getattr(_schema_node(parent), "__dataclass_fields__", {})
    return str(fields[leaf].type) if leaf in fields else "a value of the schema's type"


def _require(condition: bool, key: str, value: object, allowed: str) -> None:
    if not condition:
        raise ConfigError(f"{key}={value!r} is not allowed; {allowed}")


def validate(cfg: ExperimentConfig) -> None:
    """Value checks that types alone cannot express."""
    _require(cfg.stream.n_experiences >= 1, "stream.n_experiences", cfg.stream.n_experiences, "use an integer >= 1")
    online = cfg.stream.online.batch_size
    _require(online is None or online >= 1, "stream.online.batch_size", online, "use null (offline) or >= 1")
    for key in ("train_per_class", "test_per_class"):
        value = getattr(cfg.stream, key)
        _require(value is None or value >= 1, f"stream.{key}", value, "use null (all samples) or >= 1")
    _require(
        cfg.stream.classes is None or cfg.stream.exclude_classes is None,
        "stream.exclude_classes",
        cfg.stream.exclude_classes,
        "stream.classes is set too; set one of them to null",
    )
    sizes = cfg.stream.classes_per_experience
    _require(
        sizes is None or len(sizes) == cfg.stream.n_experiences,
        "stream.classes_per_experience",
        sizes,
        f"give one class count per experience (stream.n_experiences={cfg.stream.n_experiences})",
    )
    _require(cfg.train.epochs >= 1, "train.epochs", cfg.train.epochs, "use an integer >= 1")
    _require(cfg.train.batch_size >= 1, "train.batch_size", cfg.train.batch_size, "use an integer >= 1")
    _require(cfg.train.eval_batch_size >= 1, "train.eval_batch_size", cfg.train.eval_batch_size, "use >= 1")
    _require(cfg.train.batches_per_call >= 1, "train.batches_per_call", cfg.train.batches_per_call, "use >= 1")
    _require(cfg.train.num_workers >= 0, "train.num_workers", cfg.train.num_workers, "use >= 0")
    _require(cfg.train.log_every_n_steps >= 1, "train.log_every_n_steps", cfg.train.log_every_n_steps, "use >= 1")
    steps = cfg.checkpoint.every_n_steps
    _require(steps >= 0, "checkpoint.every_n_steps", steps, "use 0 (off) or a number of steps >= 1")
    _require(0 <= cfg.seed < 2**32, "seed", cfg.seed, "use an integer in [0, 2**32)")
    _require(math.isfinite(cfg.optim.lr) and cfg.optim.lr > 0, "optim.lr", cfg.optim.lr, "use a learning rate > 0")
    for key in ("momentum", "weight_decay"):
        value = getattr(cfg.optim, key)
        _require(math.isfinite(value) and value >= 0, f"optim.{key}", value, "use a finite number >= 0")
    _require(
        len(cfg.optim.betas) == 2 and all(0 <= b < 1 for b in cfg.optim.betas),
        "optim.betas",
        cfg.optim.betas,
        "use two numbers in [0, 1), e.g. [0.9, 0.999]",
    )
    if cfg.optim.schedule.name not in (None, "infinite"):
        raise unknown_choice("optim.schedule.name", cfg.optim.schedule.name, ["infinite"])
    _require(cfg.init.epochs >= 0, "init.epochs", cfg.init.epochs, "use an integer >= 0")
    _require(cfg.init.avm_epochs >= 0, "init.avm_epochs", cfg.init.avm_epochs, "use an integer >= 0")
    _check_devices(cfg.trainer.devices)
    _require(cfg.trainer.num_nodes >= 1, "trainer.num_nodes", cfg.trainer.num_nodes, "use an integer >= 1")
    if cfg.optim.name not in OPTIMIZERS:
        raise unknown_choice("optim.name", cfg.optim.name, OPTIMIZERS)
    if cfg.trainer.precision not in PRECISIONS:
        raise unknown_choice("trainer.precision", cfg.trainer.precision, PRECISIONS)
    for name, params in cfg.analysis.items():
        allowed = "use a mapping of parameters or null"
        _require(params is None or isinstance(params, dict), f"analysis.{name}", params, allowed)
    check_path_names(cfg)


def check_path_names(cfg: ExperimentConfig) -> None:
    """``name``, ``tracking.experiment`` and the run name become folder names: one safe path component each."""
    check_path_name("name", cfg.name)
    if cfg.tracking.experiment is not None:
        check_path_name("tracking.experiment", cfg.tracking.experiment)
    check_path_name("run name (strategy.name, the stream's name, seed)", cfg.run_name)


def _check_devices(devices: Any) -> None:
    """``trainer.devices``: a count >= 1, -1 (all), "auto", a list of device indices or a string such as "0,1"."""
    allowed = 'use a count >= 1, -1 (all), "auto", a list of device indices, or a string such as "0,1"'
    if isinstance(devices, bool):
        ok = False
    elif isinstance(devices, int):
        ok = devices >= 1 or devices == -1
    elif isinstance(devices, str):
        ok = devices == "auto" or all(part.strip().lstrip("-").isdigit() for part in devices.split(",") if part.strip())
        ok = ok and bool(devices.strip())
    elif isinstance(devices, list | tuple):
        ok = bool(devices) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices)
    else:
        ok = False
    _require(ok, "trainer.devices", devices, allowed)


def to_dict(cfg: Any) -> dict[str, Any]:
    """The resolved config (or one of its sections) as plain Python containers."""
    return OmegaConf.to_container(OmegaConf.structured(cfg))  # type: ignore[return-value]


def to_yaml(cfg: ExperimentConfig) -> str:
    """The resolved config as YAML text (what ``lifelong show`` prints and runs log)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def flatten(cfg: ExperimentConfig) -> dict[str, str]:
    """``{"stream.dataset": "digits", ...}``: the resolved config as MLflow params."""
    return flatten_mapping(to_dict(cfg))


def flatten_mapping(mapping: dict[str, Any]) -> dict[str, str]:
    """Nested mappings as ``{"a.b": "value"}`` (an empty mapping stays one key, ``"{}"``)."""
    out: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            out[prefix[:-1]] = str(node)

    walk(mapping, "")
    return out
