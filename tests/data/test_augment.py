"""The batched contrastive augmentation: shapes, ranges, per-sample randomness and each operation by hand."""

from __future__ import annotations

import pytest
import torch

from lifelong.data.augment import (
    ContrastiveAugment,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    crop_resize_flip,
    grayscale,
    hsv_to_rgb,
    pixel_statistics,
    resized_crop_boxes,
    rgb_to_hsv,
)

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def normalised(pixels: torch.Tensor, mean=MEAN, std=STD) -> torch.Tensor:
    return (pixels - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


@pytest.mark.parametrize("channels", [1, 3])
def test_shape_dtype_and_pixel_range_are_kept(channels):
    mean, std = MEAN[:channels], STD[:channels]
    x = normalised(torch.rand(16, channels, 12, 10), mean, std)
    out = ContrastiveAugment(mean, std)(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert out.dtype == x.dtype
    pixels = out * torch.tensor(std).view(1, -1, 1, 1) + torch.tensor(mean).view(1, -1, 1, 1)
    assert pixels.min() >= -1e-5
    assert pixels.max() <= 1 + 1e-5
    assert not torch.allclose(out, x)


def test_every_sample_draws_its_own_parameters_and_a_seed_reproduces_them():
    x = torch.rand(1, 3, 16, 16).expand(8, -1, -1, -1).contiguous()  # the same image 8 times
    augment = ContrastiveAugment()
    out = augment(x, torch.Generator().manual_seed(3))
    distinct = {tuple(out[i].flatten()[:50].tolist()) for i in range(8)}
    assert len(distinct) == 8
    again = augment(x, torch.Generator().manual_seed(3))
    assert torch.equal(out, again)


def test_no_op_settings_give_the_input_back():
    x = normalised(torch.rand(4, 3, 8, 8))
    augment = ContrastiveAugment(MEAN, STD, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0, jitter_p=0, gray_p=0)
    assert torch.allclose(augment(x), x, atol=1e-5)


def test_flip_only_mirrors_every_image():
    x = torch.rand(4, 1, 6, 6)
    augment = ContrastiveAugment((0.0,), (1.0,), scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=1, jitter_p=0)
    assert torch.allclose(augment(x), x.flip(-1), atol=1e-6)


def test_grayscale_always_gives_equal_channels_of_luma():
    pixels = torch.rand(4, 3, 8, 8)
    augment = ContrastiveAugment(
        (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0, jitter_p=0, gray_p=1
    )
    out = augment(pixels)
    luma = 0.299 * pixels[:, 0] + 0.587 * pixels[:, 1] + 0.114 * pixels[:, 2]
    for c in range(3):
        assert torch.allclose(out[:, c], luma, atol=1e-6)


def test_one_channel_images_ignore_saturation_and_hue():
    x = torch.rand(6, 1, 8, 8)
    augment = ContrastiveAugment(
        (0.0,), (1.0,), scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0,
        brightness=0, contrast=0, saturation=0.9, hue=0.5, jitter_p=1, gray_p=1,
    )  # fmt: skip
    assert torch.allclose(augment(x), x, atol=1e-6)


def test_batch_range_mapping_stays_within_the_batch_range():
    x = torch.randn(10, 3, 8, 8) * 3 + 1
    out = ContrastiveAugment()(x, torch.Generator().manual_seed(1))
    low, high = x.amin(dim=(0, 2, 3)), x.amax(dim=(0, 2, 3))
    assert (out.amin(dim=(0, 2, 3)) >= low - 1e-4).all()
    assert (out.amax(dim=(0, 2, 3)) <= high + 1e-4).all()


def test_crop_boxes_respect_the_image_scale_and_ratio():
    boxes = resized_crop_boxes(500, 32, 24, generator=torch.Generator().manual_seed(0))
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all()
    assert (left >= 0).all()
    assert (top + h <= 32).all()
    assert (left + w <= 24).all()
    assert torch.equal(boxes, boxes.round())
    area = h * w / (32 * 24)
    assert area.min() >= 0.2 - 0.05
    assert area.max() <= 1.0
    ratio = w / h
    assert ratio.min() >= 0.75 - 0.1
    assert ratio.max() <= 4 / 3 + 0.1
    assert len(set(map(tuple, boxes.tolist()))) > 400  # per-sample boxes


def test_crop_boxes_fall_back_to_the_centre_when_nothing_fits():
    # an area of 100% with aspect 2 never fits a square image: centre crop with the ratio clamped to 2
    boxes = resized_crop_boxes(3, 8, 8, scale=(1.0, 1.0), ratio=(2.0, 2.0))
    assert boxes.tolist() == [[2.0, 0.0, 4.0, 8.0]] * 3


def test_crop_resize_is_bilinear_within_the_box():
    image = torch.arange(16.0).view(1, 1, 4, 4)  # value = 4 * row + col
    # the 2x2 box at rows 1-2, cols 2-3 resized to 4x4: sample coordinates (u + 0.5) * 2 / 4 - 0.5 clamped to [0, 1]
    out = crop_resize_flip(image, torch.tensor([[1.0, 2.0, 2.0, 2.0]]), torch.tensor([False]))
    weights = torch.tensor([0.0, 0.25, 0.75, 1.0])
    expected = (4 * (1 + weights))[:, None] + (2 + weights)[None, :]
    assert torch.allclose(out[0, 0], expected, atol=1e-5)
    flipped = crop_resize_flip(image, torch.tensor([[1.0, 2.0, 2.0, 2.0]]), torch.tensor([True]))
    assert torch.allclose(flipped[0, 0], expected.flip(-1), atol=1e-5)
    single = crop_resize_flip(image, torch.tensor([[3.0, 1.0, 1.0, 1.0]]), torch.tensor([False]))
    assert torch.allclose(single, torch.full_like(single, 13.0))


def test_colour_operations_by_hand():
    pixels = torch.tensor([0.2, 0.6, 0.9]).view(1, 3, 1, 1).expand(1, 3, 2, 2).clone()
    one = torch.ones(1)
    assert torch.allclose(adjust_brightness(pixels, one * 0.5), pixels * 0.5)
    assert torch.allclose(adjust_brightness(pixels, one * 2.0), (pixels * 2).clamp(max=1))
    luma = 0.299 * 0.2 + 0.587 * 0.6 + 0.114 * 0.9
    assert torch.allclose(adjust_contrast(pixels, one * 0.0), torch.full_like(pixels, luma))
    assert torch.allclose(adjust_saturation(pixels, one * 0.0), torch.full_like(pixels, luma))
    assert torch.allclose(grayscale(pixels), torch.full((1, 1, 2, 2), luma))
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert torch.allclose(adjust_hue(red, one / 3), torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1), atol=1e-6)
    gray_image = torch.rand(2, 1, 3, 3)
    assert torch.equal(adjust_hue(gray_image, torch.ones(2) * 0.3), gray_image)
    assert torch.equal(adjust_saturation(gray_image, torch.zeros(2)), gray_image)


def test_hsv_round_trip_and_known_values():
    rgb = torch.rand(5, 3, 4, 4)
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(rgb)), rgb, atol=1e-5)
    hsv = rgb_to_hsv(torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1))  # blue: hue 2/3, full saturation
    assert torch.allclose(hsv.flatten(), torch.tensor([2 / 3, 1.0, 1.0]))


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="mean and std"):
        ContrastiveAugment(mean=(0.5,))
    with pytest.raises(ValueError, match="scale"):
        ContrastiveAugment(scale=(0.0, 1.0))
    with pytest.raises(ValueError, match="flip_p"):
        ContrastiveAugment(flip_p=2.0)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        ContrastiveAugment()(torch.rand(2, 4, 8, 8))
    with pytest.raises(ValueError, match="pixel_stats"):
        pixel_statistics("imagenet_21k")
    assert pixel_statistics("fashion_mnist") == ((0.2860,), (0.3530,))
