"""Fit images of one dataset to another's input shape (open-set evaluation on a foreign dataset)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def fit_images(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """``x`` ``(N, C, H, W)`` resized (bilinear) to ``shape`` ``(C', H', W')`` with its channels fitted.

    Channels: one channel is repeated to ``C'``; ``C`` channels become one by their mean; other
    combinations are a ``ValueError``. Values keep the source dataset's normalisation.

    Example:
        >>> fit_images(torch.ones(2, 1, 8, 8), (3, 28, 28)).shape
        torch.Size([2, 3, 28, 28])

    """
    if x.ndim != 4 or len(shape) != 3:
        raise ValueError(f"fit_images needs (N, C, H, W) images and a (C, H, W) shape; got {tuple(x.shape)}, {shape}")
    channels, height, width = shape
    if tuple(x.shape[2:]) != (height, width):
        x = F.interpolate(x.float(), size=(height, width), mode="bilinear", align_corners=False)
    if x.shape[1] == channels:
        return x.contiguous()
    if x.shape[1] == 1:
        return x.expand(-1, channels, -1, -1).contiguous()
    if channels == 1:
        return x.mean(dim=1, keepdim=True)
    raise ValueError(f"cannot fit {x.shape[1]}-channel images to {channels} channels")
