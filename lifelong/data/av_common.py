"""Shared pieces of the audio-video data: in-memory pairs, Kaldi fbank features, task streams.

Every audio-video reader (``av_digits``, ``av_synthetic``, ``av_cavmae``) returns an :class:`AVStream`:
one :class:`AVPairs` per task for training and one per task for retrieval evaluation. A pair is a
video clip ``(F, 3, H, W)`` and a log-mel fbank ``(T, M)`` (time-major, as in CAV-MAE); ``group``
says which gallery items count as a correct retrieval for a query (same group = match).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lifelong.errors import DataError


@dataclass(frozen=True)
class AVPairs(Dataset):
    """Audio-video pairs held in memory.

    Attributes:
        video: ``(N, F, 3, H, W)`` float32 frames.
        audio: ``(N, T, M)`` float32 normalised fbank (time frames x mel bins).
        label: ``(N,)`` int64 class of each pair (for task splits and reporting only).
        group: ``(N,)`` int64 retrieval identity: a gallery item is a correct answer for a query iff
            their groups are equal (the pair itself for instance retrieval, the class for ``av_digits``).
        extras: optional per-pair tensors, e.g. ``video_gt``/``audio_gt`` aligned-token masks.

    """

    video: torch.Tensor
    audio: torch.Tensor
    label: torch.Tensor
    group: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {"video": self.video[i], "audio": self.audio[i], "label": self.label[i], "group": self.group[i]}
        item.update({k: v[i] for k, v in self.extras.items()})
        return item

    def subset(self, index: torch.Tensor) -> AVPairs:
        """The pairs at ``index`` (1-D long tensor), in that order."""
        return AVPairs(
            self.video[index],
            self.audio[index],
            self.label[index],
            self.group[index],
            {k: v[index] for k, v in self.extras.items()},
        )


@dataclass(frozen=True)
class AVStream:
    """A continual audio-video pretraining stream.

    Attributes:
        train: one training set per task, in stream order (:class:`AVPairs` or a lazy dataset of the same items).
        test: one retrieval set per task (queries of task k; the gallery is all of them).
        task_labels: the classes (or category names) of each task.
        name: the stream's name.

    """

    train: Sequence[Dataset]
    test: Sequence[Dataset]
    task_labels: list[list]
    name: str

    @property
    def num_tasks(self) -> int:
        """Number of tasks."""
        return len(self.train)


def kaldi_fbank(
    wave: np.ndarray | torch.Tensor,
    sample_rate: int,
    num_mel_bins: int,
    target_frames: int,
    frame_shift_ms: float = 10.0,
    frame_length_ms: float = 25.0,
) -> torch.Tensor:
    """Log-mel Kaldi fbank of a mono waveform, zero-padded or cut to ``target_frames``.

    Same recipe as CAV-MAE (``htk_compat``, Hanning window, no dither, mean removed from the
    waveform), computed with ``torchaudio.compliance.kaldi.fbank``.

    Args:
        wave: ``(S,)`` samples in [-1, 1].
        sample_rate: samples per second.
        num_mel_bins: mel bins (128 in the paper).
        target_frames: frames after padding/cutting (1024 in the paper).
        frame_shift_ms: hop in milliseconds (10 in the paper).
        frame_length_ms: window in milliseconds.

    Returns:
        ``(target_frames, num_mel_bins)`` float32.

    """
    kaldi = audio_module("torchaudio.compliance.kaldi")
    x = torch.as_tensor(np.asarray(wave), dtype=torch.float32).reshape(1, -1)
    x = x - x.mean()
    feats = kaldi.fbank(
        x,
        htk_compat=True,
        sample_frequency=float(sample_rate),
        use_energy=False,
        window_type="hanning",
        num_mel_bins=num_mel_bins,
        dither=0.0,
        frame_shift=frame_shift_ms,
        frame_length=frame_length_ms,
    )
    n = feats.shape[0]
    if n < target_frames:
        feats = torch.nn.functional.pad(feats, (0, 0, 0, target_frames - n))
    return feats[:target_frames].contiguous()


def resample(wave: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Band-limited resampling of a mono waveform with ``torchaudio.functional.resample`` (windowed sinc).

    Linear interpolation (``np.interp``) folds content above the new Nyquist frequency back into the band:
    a 10 kHz tone taken from 48 to 16 kHz keeps most of its power as a 6 kHz alias; the sinc filter removes it.
    """
    if orig_rate == new_rate:
        return np.asarray(wave, dtype=np.float32)
    functional = audio_module("torchaudio.functional")
    x = torch.as_tensor(np.asarray(wave), dtype=torch.float32)
    return functional.resample(x, int(orig_rate), int(new_rate)).numpy()


def audio_module(name: str) -> Any:
    """Import a module of the audio stack (``torchaudio``, ``soundfile``), an optional extra of the package.

    Raises:
        DataError: the module is not installed; the message names the extra that installs it.

    """
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise DataError(
            f"audio-video runs need {name.split('.')[0]} ({err}); "
            "install the audio extra: pip install 'lifelong[audio]'"
        ) from None


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Read a WAV file as mono float32 in [-1, 1] with soundfile (never ``torchaudio.load``)."""
    soundfile = audio_module("soundfile")
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError) as err:  # soundfile raises LibsndfileError (a RuntimeError)
        raise DataError(f"cannot read audio file {path}: {err}") from err
    return data.mean(axis=1), int(rate)


def normalise_fbank(audio: torch.Tensor, mean: float | None = None, std: float | None = None) -> torch.Tensor:
    """CAV-MAE normalisation ``(x - mean) / (2 std)``; statistics from ``audio`` itself when not given."""
    mean = float(audio.mean()) if mean is None else mean
    std = float(audio.std()) if std is None else std
    return (audio - mean) / (2 * std)


def check_tasks(tasks: Sequence[Sequence], allowed: Sequence, key: str) -> list[list]:
    """Validate a task split: non-empty, disjoint groups of allowed classes."""
    out: list[list] = []
    seen: set = set()
    for t, group in enumerate(tasks):
        group = list(group)
        if not group:
            raise ValueError(f"{key}[{t}] is empty; every task needs at least one class")
        for c in group:
            if c not in allowed:
                raise ValueError(f"{key}[{t}] has class {c!r}; allowed: {list(allowed)}")
            if c in seen:
                raise ValueError(f"{key}: class {c!r} appears in more than one task")
            seen.add(c)
        out.append(group)
    if not out:
        raise ValueError(f"{key} is empty; give at least one task")
    return out
