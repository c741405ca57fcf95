"""``av_synthetic``: audio-video pairs with known aligned patch locations (for tests and sanity checks).

Each class owns a visual sprite (a fixed random ``patch x patch`` RGB pattern) and an audio "tone" (a
fixed random mel profile). A pair of class ``c`` shows the sprite on one random grid cell of every frame,
among distractor patches of random patterns, and plays the tone on a random run of ``tone_steps``
contiguous audio time-patches, among a distractor burst with a random profile, over low noise. The
aligned tokens are returned as boolean masks ``video_gt`` ``(N, F*g*g)`` (frame-major, row-major) and
``audio_gt`` ``(N, n_time*n_freq)`` (time-major), matching the patch order of
:mod:`lifelong.models.cavmae`. Retrieval is by instance (``group`` = pair index).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lifelong.data.av_common import AVPairs, AVStream, check_tasks


def _make(
    n: int,
    classes: Sequence[int],
    protos: tuple[torch.Tensor, torch.Tensor],
    shape: dict,
    gen: torch.Generator,
    offset: int,
) -> AVPairs:
    sprites, tones = protos
    frames, size, patch, t_len, mels, steps = (
        shape[k] for k in ("frames", "image_size", "patch", "target_frames", "mel_bins", "tone_steps")
    )
    g, n_time, n_freq = size // patch, t_len // patch, mels // patch
    labels = torch.tensor(classes)[torch.randint(len(classes), (n,), generator=gen)]
    video = 0.1 * torch.randn(n, frames, 3, size, size, generator=gen)
    audio = 0.1 * torch.randn(n, t_len, mels, generator=gen)
    video_gt = torch.zeros(n, frames, g, g, dtype=torch.bool)
    audio_gt = torch.zeros(n, n_time, n_freq, dtype=torch.bool)
    for i in range(n):
        cells = torch.randperm(g * g, generator=gen)[: 1 + shape["distractors"]]
        for k, cell in enumerate(cells.tolist()):
            r, c = divmod(cell, g)
            pattern = sprites[labels[i]] if k == 0 else torch.randn(3, patch, patch, generator=gen)
            video[i, :, :, r * patch : (r + 1) * patch, c * patch : (c + 1) * patch] += pattern
            if k == 0:
                video_gt[i, :, r, c] = True
        start = int(torch.randint(n_time - steps + 1, (1,), generator=gen))
        audio[i, start * patch : (start + steps) * patch] += tones[labels[i]]
        audio_gt[i, start : start + steps] = True
        free = [t for t in range(n_time) if t < start or t >= start + steps]
        burst = free[int(torch.randint(len(free), (1,), generator=gen))]
        audio[i, burst * patch : (burst + 1) * patch] += torch.randn(mels, generator=gen)
    extras = {"video_gt": video_gt.flatten(1), "audio_gt": audio_gt.flatten(1)}
    return AVPairs(video, audio, labels, torch.arange(n) + offset, extras)


def av_synthetic(
    tasks: Sequence[Sequence[int]] = ((0, 1), (2, 3)),
    train_per_task: int = 64,
    test_per_task: int = 16,
    frames: int = 2,
    image_size: int = 32,
    patch: int = 8,
    target_frames: int = 64,
    mel_bins: int = 32,
    tone_steps: int = 2,
    distractors: int = 2,
    seed: int = 0,
) -> AVStream:
    """Build a synthetic stream with one task per group of classes (see the module docstring)."""
    n_classes = 1 + max(c for t in tasks for c in t)
    tasks = check_tasks(tasks, list(range(n_classes)), "stream.tasks")
    for key, value in (("image_size", image_size), ("target_frames", target_frames), ("mel_bins", mel_bins)):
        if value % patch:
            raise ValueError(f"stream.{key}={value} must be a multiple of patch={patch}")
    if not 1 <= tone_steps < target_frames // patch:
        raise ValueError(f"stream.tone_steps={tone_steps} must be in [1, {target_frames // patch - 1}]")
    gen = torch.Generator().manual_seed(seed)
    sprites = torch.randn(n_classes, 3, patch, patch, generator=gen)
    tones = torch.randn(n_classes, mel_bins, generator=gen).abs() * 1.5
    shape = {
        "frames": frames,
        "image_size": image_size,
        "patch": patch,
        "target_frames": target_frames,
        "mel_bins": mel_bins,
        "tone_steps": tone_steps,
        "distractors": distractors,
    }
    train, test = [], []
    for t, classes in enumerate(tasks):
        train.append(_make(train_per_task, classes, (sprites, tones), shape, gen, offset=10_000 * t))
        test.append(_make(test_per_task, classes, (sprites, tones), shape, gen, offset=10_000 * t + 5_000))
    return AVStream(train, test, [list(t) for t in tasks], "av_synthetic")
