"""Continual audio-video pretraining (FLAVA and baselines) on a CAV-MAE-style model.

``PRETRAIN_METHODS`` is this package's own registry (kept apart from the classification ``STRATEGIES``,
whose contract and tests assume labelled batches); :func:`lifelong.pretrain.loop.run_pretrain` drives a
method over an audio-video stream with one fresh Lightning ``Trainer`` per task and scores zero-shot
audio<->video retrieval after every task.
"""

from lifelong.pretrain import flava as _flava  # noqa: F401  (registers "flava")
from lifelong.pretrain.methods import PRETRAIN_METHODS, PretrainMethod, PretrainOutput

__all__ = ["PRETRAIN_METHODS", "PretrainMethod", "PretrainOutput"]
