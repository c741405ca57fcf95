"""Batched image augmentation on the device, with random parameters drawn per sample.

:class:`ContrastiveAugment` makes the second view used by contrastive replay methods (SCR, PCR, HPCR):
``RandomResizedCrop(scale=(0.2, 1)) -> RandomHorizontalFlip -> RandomApply(ColorJitter(0.4, 0.4, 0.4, 0.1),
p=0.8) -> RandomGrayscale(p=0.2)``, the torchvision pipeline of the official PCR/HPCR code and the kornia one
of the official SCR code. The image operations run on the batch's device in plain torch (no kornia, no PIL, no
loop over samples), and every sample draws its own crop, flip, jitter factors, jitter order and grayscale decision.

Colour operations follow torchvision's definitions on ``[0, 1]`` pixels (clamped after each operation).
Inputs in this library are normalised with a dataset's mean/std, so the module maps them back to pixels
first: with ``mean``/``std`` given exactly, otherwise with the per-channel minimum and maximum of the batch
(a natural-image batch spans nearly the whole ``[0, 1]`` range; this is an approximation, documented on the
class). One-channel images get brightness and contrast; saturation, hue and grayscale leave them unchanged,
exactly as torchvision does for single-channel tensors.

Speed: the per-sample parameters (crop boxes, sampling grids' coordinates, jitter factors and order) are
drawn from torch's CPU generator and computed with numpy, then sent to the device in one non-blocking copy;
the device then runs about 30 whole-batch kernels (no host-device synchronisation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as torchvision's rgb_to_grayscale
EPS = 1e-8
CROP_ATTEMPTS = 10
CROP_DRAWS = 2 * CROP_ATTEMPTS + 2  # area and aspect per attempt, then top and left


def _uniforms(shape: tuple[int, ...], generator: torch.Generator | None) -> np.ndarray:
    """``U[0, 1)`` draws from torch's CPU generator (the global one unless ``generator`` is given), as float64."""
    return torch.rand(shape, generator=generator, dtype=torch.float64).numpy()


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` -> ``(B, 1, H, W)`` luma; one-channel images are returned as they are."""
    if images.shape[1] == 1:
        return images
    weights = images.new_tensor(LUMA).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def _blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``clamp(factor * images + (1 - factor) * other, 0, 1)`` with one factor per sample."""
    factor = factor.view(-1, 1, 1, 1).to(images.dtype)
    return (factor * images + (1 - factor) * other).clamp_(0, 1)


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale pixel values by ``factor`` (per sample) and clamp to ``[0, 1]``."""
    return _blend(images, torch.zeros_like(images), factor)


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend each image with the mean of its grayscale version (torchvision's contrast)."""
    mean = grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(images, mean, factor)


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend each RGB image with its grayscale version; one-channel images are unchanged."""
    if images.shape[1] == 1:
        return images
    return _blend(images, grayscale(images), factor)


def rgb_to_hsv(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB in ``[0, 1]`` -> HSV with every channel in ``[0, 1]`` (hue 0 for grey pixels)."""
    r, g, b = images.unbind(dim=1)
    value, _ = images.max(dim=1)
    delta = value - images.min(dim=1).values
    saturation = torch.where(value > 0, delta / value.clamp_min(EPS), torch.zeros_like(value))
    safe = delta.clamp_min(EPS)
    sector = torch.where(
        value == r,
        torch.remainder((g - b) / safe, 6.0),
        torch.where(value == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
    )
    hue = torch.where(delta > 0, sector / 6.0, torch.zeros_like(sector))
    return torch.stack([hue, saturation, value], dim=1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hsv`: channel ``n`` (5, 3, 1 for R, G, B) is ``V - V S clamp(min(k, 4 - k), 0, 1)``."""
    hue, saturation, value = hsv.unbind(dim=1)
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(n + hue * 6.0, 6.0)
        channels.append(value - value * saturation * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0))
    return torch.stack(channels, dim=1)


def adjust_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of each RGB image by ``shift`` (per sample, in turns, ``[-0.5, 0.5]``); one channel: unchanged."""
    if images.shape[1] == 1:
        return images
    hsv = rgb_to_hsv(images)
    hue = torch.remainder(hsv[:, 0] + shift.view(-1, 1, 1).to(images.dtype), 1.0)
    return hsv_to_rgb(torch.stack([hue, hsv[:, 1], hsv[:, 2]], dim=1)).clamp_(0, 1)


def _crop_boxes(
    uniforms: np.ndarray, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float]
) -> np.ndarray:
    """``(B, 4)`` boxes ``(top, left, h, w)`` from ``(B, CROP_DRAWS)`` uniforms (see :func:`resized_crop_boxes`)."""
    attempts = CROP_ATTEMPTS
    area = (uniforms[:, :attempts] * (scale[1] - scale[0]) + scale[0]) * (height * width)
    low, high = math.log(ratio[0]), math.log(ratio[1])
    aspect = np.exp(uniforms[:, attempts : 2 * attempts] * (high - low) + low)
    w = np.round(np.sqrt(area * aspect))
    h = np.round(np.sqrt(area / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.argmax(axis=1)  # the first attempt that fits (0 when none does)
    found = fits.any(axis=1)
    rows = np.arange(len(uniforms))
    w, h = w[rows, first], h[rows, first]
    fallback_w, fallback_h = float(width), float(height)
    if width / height < ratio[0]:
        fallback_h = float(round(width / ratio[0]))
    elif width / height > ratio[1]:
        fallback_w = float(round(height * ratio[1]))
    w = np.where(found, w, fallback_w)
    h = np.where(found, h, fallback_h)
    top = np.where(found, np.floor(uniforms[:, -2] * (height - h + 1)), np.floor((height - h) / 2))
    left = np.where(found, np.floor(uniforms[:, -1] * (width - w + 1)), np.floor((width - w) / 2))
    return np.stack([top, left, h, w], axis=1)


def resized_crop_boxes(
    batch: int,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per-sample boxes ``(top, left, h, w)`` of torchvision's ``RandomResizedCrop.get_params``, vectorised.

    Each sample tries 10 (area fraction, log-uniform aspect ratio) draws and keeps the first box that
    fits; when none fits it falls back to the central crop with the aspect ratio clamped to ``ratio``.
    Returns a ``(batch, 4)`` float tensor of integer pixel values.
    """
    return torch.from_numpy(_crop_boxes(_uniforms((batch, CROP_DRAWS), generator), height, width, scale, ratio))


def _crop_coordinates(boxes: np.ndarray, flip: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``grid_sample`` x ``(B, W)`` and y ``(B, H)`` coordinates: crop each box, resize it, mirror it if ``flip``.

    torchvision's resize geometry (``align_corners=False``): output pixel ``u`` reads the crop at pixel-centre
    coordinate ``left + (u + 0.5) * w / W - 0.5``, clamped to the crop so that its border pixels are
    replicated (pixels outside the box are never read).
    """
    top, left, h, w = (boxes[:, k : k + 1] for k in range(4))  # (B, 1) each

    def coordinates(start: np.ndarray, size: np.ndarray, out: int) -> np.ndarray:
        pixel = np.clip(start + (np.arange(out) + 0.5) * size / out - 0.5, start, start + size - 1)
        return (2 * pixel + 1) / out - 1

    xs = coordinates(left, w, width)
    xs = np.where(flip[:, None], xs[:, ::-1], xs)
    return xs, coordinates(top, h, height)


def _resample(images: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Bilinear ``grid_sample`` of ``images`` at the separable coordinates ``xs`` ``(B, W)`` and ``ys`` ``(B, H)``."""
    batch, _, height, width = images.shape
    grid = torch.stack(
        [xs[:, None, :].expand(batch, height, width), ys[:, :, None].expand(batch, height, width)], dim=-1
    )  # (B, H, W, 2)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def crop_resize_flip(images: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Crop each image to its ``(top, left, h, w)`` box, resize it bilinearly to the input size, mirror it if ``flip``.

    One ``grid_sample`` does all three, with torchvision's resize geometry (see :func:`_crop_coordinates`).
    """
    _, _, height, width = images.shape
    xs, ys = _crop_coordinates(boxes.detach().cpu().double().numpy(), flip.cpu().numpy(), height, width)
    device, dtype = images.device, images.dtype
    return _resample(images, torch.from_numpy(xs.copy()).to(device, dtype), torch.from_numpy(ys).to(device, dtype))


class ContrastiveAugment(nn.Module):
    """A random view of every image of a batch, with per-sample parameters, on the batch's device.

    The pipeline is torchvision's ``RandomResizedCrop(size, scale) -> RandomHorizontalFlip(flip_p) ->
    RandomApply([ColorJitter(brightness, contrast, saturation, hue)], jitter_p) -> RandomGrayscale(gray_p)``.
    Each jittered sample applies its four colour operations in its own random order, as torchvision does
    per image. Colour operations work on ``[0, 1]`` pixels: inputs are mapped with ``x * std + mean`` when
    the normalisation is given, otherwise with ``(x - lo) / (hi - lo)`` where ``lo``/``hi`` are the batch's
    per-channel minimum and maximum (an approximation: exact when the batch holds a black and a white pixel
    per channel, which Fashion-MNIST or CIFAR batches of 20 images practically always do). The output is
    mapped back the same way, so it has the input's normalisation, shape and dtype.

    Args:
        mean: per-channel mean the inputs were normalised with (``None``: use the batch range).
        std: per-channel std the inputs were normalised with (required with ``mean``).
        scale: range of the crop's area fraction.
        ratio: range of the crop's aspect ratio.
        flip_p: probability of a horizontal flip.
        brightness, contrast, saturation: jitter factors are drawn from ``[1 - v, 1 + v]``.
        hue: hue shifts are drawn from ``[-hue, hue]`` (turns).
        jitter_p: probability that a sample is colour-jittered.
        gray_p: probability that an RGB sample is turned to grayscale (kept 3-channel).

    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        scale: tuple[float, float] = (0.2, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip_p: float = 0.5,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        hue: float = 0.1,
        jitter_p: float = 0.8,
        gray_p: float = 0.2,
    ) -> None:
        super().__init__()
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std (the inputs' normalisation) or neither")
        if std is not None and any(s <= 0 for s in std):
            raise ValueError(f"std={list(std)} must be positive")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale={scale} must satisfy 0 < low <= high <= 1")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio={ratio} must satisfy 0 < low <= high")
        for name, p in (("flip_p", flip_p), ("jitter_p", jitter_p), ("gray_p", gray_p)):
            if not 0 <= p <= 1:
                raise ValueError(f"{name}={p} must be a probability in [0, 1]")
        if not 0 <= hue <= 0.5 or min(brightness, contrast, saturation) < 0:
            raise ValueError("jitter strengths must be >= 0 and hue <= 0.5")
        self.normalised = mean is not None
        self.register_buffer("mean", torch.tensor(list(mean or [0.0]), dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(list(std or [1.0]), dtype=torch.float32), persistent=False)
        self.scale: tuple[float, float] = (float(scale[0]), float(scale[1]))
        self.ratio: tuple[float, float] = (float(ratio[0]), float(ratio[1]))
        self.flip_p = flip_p
        self.strengths = (brightness, contrast, saturation, hue)
        self.jitter_p, self.gray_p = jitter_p, gray_p

    def _to_pixels(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.normalised:  # x = (pixels - mean) / std, i.e. pixels = (x - offset) / width as below
            width = 1.0 / self.std.view(1, -1, 1, 1)
            offset = -self.mean.view(1, -1, 1, 1) * width
        else:
            offset = x.amin(dim=(0, 2, 3), keepdim=True)
            width = (x.amax(dim=(0, 2, 3), keepdim=True) - offset).clamp_min(EPS)
        offset, width = offset.to(x.dtype), width.to(x.dtype)
        return ((x - offset) / width).clamp(0, 1), offset, width

    @torch.no_grad()
    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """An augmented copy of the ``(B, C, H, W)`` batch ``x`` (C = 1 or 3); gradients do not flow through it.

        Args:
            x: the batch, on any device.
            generator: a CPU generator for the parameters (default: torch's global one).

        """
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected (B, C, H, W) images with 1 or 3 channels, got shape {tuple(x.shape)}")
        batch, channels, height, width = x.shape
        if batch == 0:
            return x.clone()
        rgb = channels == 3
        # Parameters on the host: 22 crop, 1 flip, 1 grayscale, then 1 + 4 + 4 jitter draws per sample.
        u = _uniforms((batch, CROP_DRAWS + 11), generator)
        boxes = _crop_boxes(u[:, :CROP_DRAWS], height, width, self.scale, self.ratio)
        xs, ys = _crop_coordinates(boxes, u[:, CROP_DRAWS] < self.flip_p, height, width)
        gray = (u[:, CROP_DRAWS + 1] < self.gray_p) & rgb
        stages = self._jitter_plan(u[:, CROP_DRAWS + 2 :], rgb)  # (B, S, 5)
        n_stages = stages.shape[1]
        packed = np.concatenate([xs, ys, gray[:, None], stages.reshape(batch, -1)], axis=1).astype(np.float32)
        params = torch.from_numpy(packed).to(x.device, non_blocking=True)  # one copy, no device sync
        xs_t, ys_t = params[:, :width], params[:, width : width + height]
        gray_t = params[:, width + height] > 0.5
        stage_t = params[:, width + height + 1 :].view(batch, n_stages, 5).permute(1, 2, 0)[..., None, None, None]
        pixels, offset, scale = self._to_pixels(x.float())
        out = _resample(pixels, xs_t, ys_t).clamp_(0, 1)
        blends, hue = self.blend_ops(rgb), self.hue_op(rgb)
        for k in range(n_stages):
            factor, weight_gray, weight_mean, shift, hue_mask = stage_t[k]  # (B, 1, 1, 1) each
            if blends:  # f * x + (1 - f) * other; f = 1 for samples whose operation at this stage is not a blend
                luma = grayscale(out)
                other = weight_gray * luma + weight_mean * luma.mean(dim=(1, 2, 3), keepdim=True)
                out = torch.lerp(other, out, factor).clamp_(0, 1)
            if hue:
                out = self._hue_where(out, hue_mask.view(-1) > 0.5, shift.view(-1))
        if rgb and self.gray_p > 0:
            out = torch.where(gray_t.view(-1, 1, 1, 1), grayscale(out).expand_as(out), out)
        return (out * scale + offset).to(x.dtype)

    def blend_ops(self, rgb: bool) -> bool:
        """Whether brightness, contrast or (RGB) saturation can change images."""
        b, c, s, _ = self.strengths
        return b > 0 or c > 0 or (rgb and s > 0)

    def hue_op(self, rgb: bool) -> bool:
        """Whether the hue rotation can change images (RGB only)."""
        return rgb and self.strengths[3] > 0

    def _jitter_plan(self, u: np.ndarray, rgb: bool) -> np.ndarray:
        """Per sample and stage: ``(factor, weight of grayscale, weight of grayscale mean, hue shift, hue?)``.

        ``u``: ``(B, 9)`` uniforms (apply?, four factors, four sort keys of the order). Brightness, contrast and
        saturation are all blends ``f * x + (1 - f) * other`` with ``other`` black, the grayscale mean or the
        grayscale image, so each stage is one blend with every sample's own operation (``f = 1``: none), then a
        hue rotation of the samples whose operation it is. Operations that cannot change the images (strength
        0; saturation and hue of one-channel images, which torchvision leaves unchanged) get no stage; the
        others come in a uniformly random order per sample, as torchvision's per-image permutation.
        """
        b, c, s, h = self.strengths
        active = [i for i, on in enumerate((b > 0, c > 0, s > 0 and rgb, h > 0 and rgb)) if on]
        batch = len(u)
        if not active:
            return np.zeros((batch, 0, 5))
        apply = (u[:, 0] < self.jitter_p)[:, None]  # (B, 1)
        low = np.array([max(0.0, 1 - b), max(0.0, 1 - c), max(0.0, 1 - s), -h])
        high = np.array([1 + b, 1 + c, 1 + s, h])
        factors = low + (high - low) * u[:, 1:5]  # (B, 4): brightness, contrast, saturation factors, hue shift
        order = np.array(active)[np.argsort(u[:, 5:9][:, active], axis=1)]  # (B, S) operation of each stage
        rows = np.arange(batch)[:, None]
        blend = apply & (order < 3)
        factor = np.where(blend, factors[rows, np.minimum(order, 2)], 1.0)
        hue = apply & (order == 3)
        shift = np.where(hue, factors[:, 3:4], 0.0)
        return np.stack([factor, blend & (order == 2), blend & (order == 1), shift, hue], axis=2).astype(np.float64)

    @staticmethod
    def _hue_where(pixels: torch.Tensor, chosen: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """Rotate the hue of the ``chosen`` samples (CPU: only those; accelerators: all, then select: no sync)."""
        if pixels.device.type == "cpu":
            index = chosen.nonzero().squeeze(1)
            if index.numel() == 0:
                return pixels
            return pixels.index_copy(0, index, adjust_hue(pixels[index], shift[index]))
        return torch.where(chosen.view(-1, 1, 1, 1), adjust_hue(pixels, shift), pixels)

    def extra_repr(self) -> str:
        source = "given mean/std" if self.normalised else "batch range"
        return (
            f"scale={self.scale}, flip_p={self.flip_p}, jitter={self.strengths} p={self.jitter_p}, "
            f"gray_p={self.gray_p}, pixels from {source}"
        )


def pixel_statistics(name: str | None) -> tuple[tuple[float, ...], tuple[float, ...]] | tuple[None, None]:
    """The (mean, std) a built-in dataset is normalised with, or ``(None, None)`` for ``None``.

    Raises:
        ValueError: ``name`` is not a dataset with known statistics.

    """
    if name is None:
        return None, None
    from lifelong.data.datasets import STATS

    if name not in STATS:
        raise ValueError(f"pixel_stats={name!r} has no known normalisation; use null or one of: {', '.join(STATS)}")
    return STATS[name]
