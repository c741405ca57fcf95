"""Audio-video streams as ordinary :class:`Stream` objects, built by name through ``AV_DATASETS``.

An audio-video reader (``av_digits``, ``av_synthetic``, ``cavmae``) defines its own task split (its
``tasks`` / ``categories`` parameter), so a config names it as ``stream.dataset`` and passes the reader's
keyword arguments as ``stream.params``; ``stream.scenario`` and the class-split keys do not apply. Each
experience's dataset yields dicts (``video``, ``audio``, ``label``, ``group`` ...), which the default
collate stacks into the batch an audio-video strategy receives.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from lifelong.data.av_cavmae import cavmae_stream
from lifelong.data.av_common import AVStream
from lifelong.data.av_digits import av_digits
from lifelong.data.av_synthetic import av_synthetic
from lifelong.data.types import Experience, Stream, StreamInfo
from lifelong.registry import Registry

AV_SCENARIO = "audio_video"
AV_DATASETS: Registry[Callable[..., AVStream]] = Registry("stream.dataset")
AV_DATASETS.register("av_digits")(av_digits)
AV_DATASETS.register("av_synthetic")(av_synthetic)
AV_DATASETS.register("cavmae")(cavmae_stream)


def build_av_stream(name: str, params: dict[str, Any], seed: int = 0, root: str | None = None) -> Stream:
    """The audio-video stream ``name`` built with ``params``, as a :class:`Stream`.

    The run's ``seed`` is the default of a reader's own ``seed`` (so ``seed=k`` also redraws a random
    stream's renditions); ``root`` (``stream.root``) is the default of a reader's ``root``.
    """
    factory = AV_DATASETS.get(name)
    accepted = inspect.signature(factory).parameters
    params = dict(params)
    if "seed" in accepted:
        params.setdefault("seed", seed)
    if "root" in accepted and root is not None:
        params.setdefault("root", root)
    return as_stream(factory(**params))


def as_stream(av: AVStream) -> Stream:
    """Wrap the train/test task datasets of ``av`` as experiences (task labels are the tasks' classes)."""
    first = av.train[0][0]
    classes = [list(labels) for labels in av.task_labels]
    info = StreamInfo(
        scenario=AV_SCENARIO,
        num_classes=sum(len(c) for c in classes),
        n_experiences=av.num_tasks,
        input_shape=tuple(first["video"].shape),
        classes_per_experience=classes,
    )
    train = [Experience(i, data, classes[i]) for i, data in enumerate(av.train)]  # type: ignore[arg-type]
    test = [Experience(i, data, classes[i]) for i, data in enumerate(av.test)]  # type: ignore[arg-type]
    return Stream(av.name, info, train, test)
